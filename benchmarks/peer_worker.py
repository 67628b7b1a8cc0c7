"""``python -m benchmarks.peer_worker URL`` in the peers' virtualenv (see :mod:`benchmarks.peers`).

Reads the request as JSON on stdin (``settings``: the comparison's :class:`Settings`), runs
the seed workloads (append one message, append a turn, the ``RunnableWithMessageHistory``
turn, whole-session reads, search at the largest read size, memory per message) for
langchain-redis and langgraph-checkpoint-redis with the comparison's own workload code, and
prints one line of JSON: ``{"rows": [...], "errors": [...], "versions": {...}}``. A workload
that raises is reported in ``errors`` and the others go on.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, messages_from_dict

from .corpus import Corpus, rare_and_common
from .peers import PEER_PREFIX
from .stores import LangchainRedisStore, Store
from .workloads import (
    Bench,
    Row,
    Settings,
    append_one,
    append_turn,
    memory_per_message,
    read_all,
    read_session,
    runnable_turn,
    search,
)

PREFIX = PEER_PREFIX


class CheckpointHistory(BaseChatMessageHistory):
    """A LangGraph thread as a chat history: the ``messages`` of a one-node ``MessagesState``
    graph checkpointed by langgraph-checkpoint-redis (``get_state`` / ``update_state``)."""

    def __init__(self, graph: Any, thread: str) -> None:
        self.graph = graph
        self.config = {"configurable": {"thread_id": thread}}

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The thread's messages at its latest checkpoint."""
        found: list[BaseMessage] = self.graph.get_state(self.config).values.get("messages", [])
        return found

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """One new checkpoint holding the messages added (the reducer appends them)."""
        self.graph.update_state(self.config, {"messages": list(messages)})

    def clear(self) -> None:
        """Delete the thread's checkpoints."""
        self.graph.checkpointer.delete_thread(self.config["configurable"]["thread_id"])


class LanggraphRedisStore(Store):
    """langgraph-checkpoint-redis's RedisSaver, used as a conversation's memory."""

    name = "langgraph-checkpoint-redis"
    label = "langgraph-checkpoint-redis RedisSaver (MessagesState thread)"

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        super().__init__(url, prefix, ttl)
        saver_module: Any = importlib.import_module("langgraph.checkpoint.redis")
        graph_module: Any = importlib.import_module("langgraph.graph")
        StateGraph, MessagesState, START = (
            graph_module.StateGraph,
            graph_module.MessagesState,
            graph_module.START,
        )
        RedisSaver = saver_module.RedisSaver

        self.saver = RedisSaver(redis_url=url)
        self.saver.setup()
        builder = StateGraph(MessagesState)
        builder.add_node("noop", lambda state: {})
        builder.add_edge(START, "noop")
        self.graph = builder.compile(checkpointer=self.saver)
        self.threads: dict[str, str] = {}

    def thread(self, session: str) -> str:
        # A unique thread id per session, so that a key pattern finds its keys alone.
        return self.threads.setdefault(session, f"{session}~{uuid.uuid4().hex[:8]}")

    def history(self, session: str) -> BaseChatMessageHistory:
        return CheckpointHistory(self.graph, self.thread(session))

    def keys(self, session: str) -> list[str]:
        pattern = f"*{self.thread(session)}*"
        return [key.decode() for key in self.client.scan_iter(match=pattern, count=1000)]

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        # One checkpoint with every message (appending in batches would store each batch's
        # whole list again: every checkpoint holds the thread's messages).
        self.history(session).add_messages(messages_from_dict([json.loads(j) for j in jsons]))

    def latest(self, session: str, count: int) -> list[Any]:
        return self.history(session).messages[-count:]

    def clear(self, session: str) -> None:
        self.history(session).clear()


def _row(row: Row) -> dict[str, Any]:
    return {
        "workload": row.workload,
        "store": row.store,
        "timing": asdict(row.timing) if row.timing else None,
        "server": asdict(row.server) if row.server else None,
        "extra": row.extra,
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run(url: str, settings: Settings) -> dict[str, Any]:
    """Every seed workload for each peer; rows, errors and versions."""
    import redis

    client = redis.Redis.from_url(url)
    corpus = Corpus()
    bench = Bench(client, corpus, settings)
    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    stores: list[Store] = []
    makers: list[tuple[str, Callable[[], Store]]] = [
        ("langchain-redis", lambda: LangchainRedisStore(url, f"{PREFIX}lcr:", settings.ttl)),
        (
            "langgraph-checkpoint-redis",
            lambda: LanggraphRedisStore(url, f"{PREFIX}lg:", settings.ttl),
        ),
    ]
    for name, make in makers:
        try:
            stores.append(make())
        except Exception as error:
            errors.append({"store": name, "workload": "setup", "error": _describe(error)})

    def fill(store: Store) -> Row | None:
        for size in settings.read_sizes:
            store.clear(read_session(size))
            store.fill(read_session(size), store.encoded(corpus, size))
        return None

    query = rare_and_common(corpus.messages(min(10000, max(settings.read_sizes))))[0]
    steps: list[tuple[str, Callable[[Store], Row | None]]] = [
        ("append_1", lambda s: append_one(bench, s)),
        ("append_turn", lambda s: append_turn(bench, s)),
        ("runnable_turn", lambda s: runnable_turn(bench, s)),
        ("fill", fill),
        *[
            (f"read_{size}", functools.partial(read_all, bench, size=size))
            for size in settings.read_sizes
        ],
        ("search", lambda s: search(bench, s, query)),
        ("memory", lambda s: memory_per_message(bench, s)),
    ]
    broken: set[str] = set()
    for workload, step in steps:
        for store in stores:
            if store.name in broken:
                continue
            try:
                row = step(store)
            except Exception as error:
                failure = _describe(error)
                errors.append({"store": store.name, "workload": workload, "error": failure})
                bench.pending = [(r, job) for r, job in bench.pending if job.store is not store]
                if workload == "fill":
                    broken.add(store.name)  # nothing to read or search
                continue
            if row is not None:
                rows.append(row)
        bench.measure_pending()
    for store in stores:
        for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
            client.unlink(key)
        if isinstance(store, LanggraphRedisStore):
            for session in list(store.threads):
                store.clear(session)
    client.close()
    return {
        "rows": [_row(row) for row in rows],
        "errors": errors,
        "labels": {store.name: store.label for store in stores},
        "versions": {
            name: _version(name)
            for name in ("langchain-redis", "langgraph-checkpoint-redis", "langgraph", "redis")
        },
    }


def _describe(error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1:]
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(error).__name__}: {error}{where}"


def main() -> None:
    """Read the request on stdin, print the reply as one JSON line."""
    request = json.loads(sys.stdin.read())
    fields = request["settings"]
    settings = Settings(**{**fields, "read_sizes": tuple(fields["read_sizes"])})
    print(json.dumps(run(sys.argv[1], settings)))


if __name__ == "__main__":
    main()
