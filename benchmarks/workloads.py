"""The single-client workloads of the comparison, each run the same way for every store.

Every workload returns :class:`Row` records: client time (median of repeats), server
time and commands per operation (INFO commandstats), and workload-specific extras.
Sessions of the read workloads are filled in bulk first and reused: the read sessions
also serve search, memory per message and the append-cost-versus-size windows.
"""

from __future__ import annotations

import itertools
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Any

import redis
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from .corpus import DISTINCT, Corpus
from .measure import (
    Job,
    ServerCost,
    Timing,
    measure_interleaved,
    memory_usage,
    reset_stats,
    server_cost,
)
from .stores import Store

TURN_HISTORY = 20
#: Measured rounds of appends at each session size (median of their means).
WINDOW_ROUNDS = 3


@dataclass
class Settings:
    """Sizes and repeats of a run (small by default: a quick run takes under a minute)."""

    repeats: int = 5
    min_seconds: float = 0.08
    read_sizes: tuple[int, ...] = (100, 1000, 10000)
    latest_size: int = 100000
    latest_count: int = 20
    window: int = 192  # a multiple of the library's 64-append fold
    ttl: int = 3600
    processes: int = 2
    load_sessions: int = 1000
    load_seconds: float = 1.0
    turn_sessions: int = 50


@dataclass
class Row:
    """One store's result on one workload."""

    workload: str
    store: str
    timing: Timing | None = None
    server: ServerCost | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def work_us(self) -> float | None:
        """Client CPU plus server time per operation: the work, less waiting for a busy CPU."""
        if self.timing is None:
            return None
        return self.timing.cpu_us + (self.server.usec_per_op if self.server else 0.0)


@dataclass
class Bench:
    """What the workloads share: the server, the corpus, the settings, the jobs to time."""

    client: redis.Redis
    corpus: Corpus
    settings: Settings
    pending: list[tuple[Row, Job]] = field(default_factory=list)

    def run(self, store: Store, workload: str, operation: Any, max_ops: int = 100000) -> Row:
        """Warm ``operation`` up (one call) and queue it as ``workload`` of ``store``.

        The returned row gets its figures from :meth:`measure_pending`.
        """
        operation()
        row = Row(workload, store.name)
        self.pending.append((row, Job(store, operation, max_ops)))
        return row

    def measure_pending(self) -> None:
        """Time every queued job, rounds taking turns, and fill in their rows."""
        queued, self.pending = self.pending, []
        results = measure_interleaved(
            self.client,
            [job for _, job in queued],
            self.settings.repeats,
            self.settings.min_seconds,
        )
        for (row, _), (timing, cost) in zip(queued, results, strict=True):
            row.timing, row.server = timing, cost


def read_session(size: int) -> str:
    """The session id of the ``size``-message read session."""
    return f"read-{size}"


def append_one(bench: Bench, store: Store) -> Row:
    """Append one message at a time to one session (one history object, reused)."""
    history = store.history("append-one")
    messages = itertools.cycle(bench.corpus.messages(DISTINCT))
    return bench.run(store, "append_1", lambda: history.add_message(next(messages)))


def append_turn(bench: Bench, store: Store) -> Row:
    """Append a chat turn (a human and an AI message) at a time."""
    history = store.history("append-turn")
    pairs = bench.corpus.messages(DISTINCT)
    turns = itertools.cycle([pairs[i : i + 2] for i in range(0, len(pairs), 2)])
    return bench.run(store, "append_turn", lambda: history.add_messages(next(turns)))


def runnable_turn(bench: Bench, store: Store) -> Row:
    """A full RunnableWithMessageHistory turn with a fake chat model.

    The history object is built per request (as the runnable does), the model sees the
    session's history (20 messages at the start), and the turn appends two messages.
    Commands per turn are counted after a warm-up turn on each session.
    """
    replies = [str(m.content) for m in bench.corpus.messages(2000)[1::2]]
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant."),
            MessagesPlaceholder("history"),
            ("human", "{input}"),
        ]
    )
    with warnings.catch_warnings():
        # Deprecated in favour of LangGraph, yet what most apps with a chat history run.
        warnings.simplefilter("ignore", DeprecationWarning)
        chain = RunnableWithMessageHistory(
            prompt | FakeListChatModel(responses=replies),
            store.history,
            input_messages_key="input",
            history_messages_key="history",
        )
    sessions = [f"turn-{i}" for i in range(bench.settings.turn_sessions)]
    for session in sessions:
        store.fill(session, store.encoded(bench.corpus, TURN_HISTORY))
    questions = itertools.cycle(str(m.content) for m in bench.corpus.messages(2000)[::2])
    order = itertools.cycle(sessions)

    def turn() -> None:
        chain.invoke({"input": next(questions)}, {"configurable": {"session_id": next(order)}})

    for _ in sessions:
        turn()
    return bench.run(store, "runnable_turn", turn)


def fill_read_sessions(bench: Bench, store: Store) -> None:
    """Fill the read sessions (each size) and the large session for the latest-N read."""
    for size in (*bench.settings.read_sizes, bench.settings.latest_size):
        store.clear(read_session(size))
        store.fill(read_session(size), store.encoded(bench.corpus, size))


def read_all(bench: Bench, store: Store, *, size: int) -> Row:
    """Read a whole session of ``size`` messages through a history built per request."""
    session = read_session(size)

    def read() -> list[BaseMessage]:
        return store.history(session).messages

    row = bench.run(store, f"read_{size}", read, max_ops=2000)
    row.extra["messages"] = len(read())
    return row


def read_latest(bench: Bench, store: Store) -> Row:
    """Read the latest ``latest_count`` messages of the large session."""
    size, count = bench.settings.latest_size, bench.settings.latest_count
    row = bench.run(store, "read_latest", lambda: store.latest(read_session(size), count))
    row.extra.update(session_messages=size, count=count)
    return row


def search(bench: Bench, store: Store, query: str) -> Row:
    """Search the largest read session for ``query`` (latest 10 hits)."""
    size = max(bench.settings.read_sizes)
    row = bench.run(store, "search", lambda: store.search(read_session(size), query), max_ops=2000)
    row.extra.update(
        session_messages=size, query=query, hits=len(store.search(read_session(size), query))
    )
    return row


def memory_per_message(bench: Bench, store: Store) -> Row:
    """Bytes per message of the largest read session (MEMORY USAGE, SAMPLES 0, every key)."""
    size = max(bench.settings.read_sizes)
    session = read_session(size)
    used = memory_usage(bench.client, store.keys(session))
    json_bytes = sum(len(j) for j in store.encoded(bench.corpus, size))
    return Row(
        "memory",
        store.name,
        extra={
            "bytes_per_message": used / size,
            "json_bytes_per_message": json_bytes / size,
            "ratio_to_json": used / json_bytes,
            "session_messages": size,
        },
    )


def append_cost_by_size(bench: Bench, store: Store) -> Row:
    """Server time per one-message append at each session size.

    After an unmeasured round, ``WINDOW_ROUNDS`` rounds; in each, ``window`` appends at
    every size in turn (so drift of a shared machine spreads over the sizes alike). The
    figure for a size is the median of its rounds' means. A round is long enough to hold
    the library's periodic work (it folds pending index postings every 64
    appends), so the figure is the amortized cost.
    """
    settings = bench.settings
    sizes = sorted({*settings.read_sizes, settings.latest_size})
    texts = bench.corpus.messages(DISTINCT)
    windows = (texts[i : i + settings.window] for i in itertools.count(0, settings.window))

    def next_window() -> list[BaseMessage]:
        # Fresh text each round (as a conversation goes on), from the start when used up.
        window = next(windows)
        return window if len(window) == settings.window else texts[: settings.window]

    histories = {size: store.history(read_session(size)) for size in sizes}
    for history in histories.values():
        history.add_messages(next_window())
    rounds: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(WINDOW_ROUNDS):
        for size, history in histories.items():
            messages = next_window()
            reset_stats(bench.client)
            for message in messages:
                history.add_message(message)
            rounds[size].append(server_cost(bench.client, store, len(messages)).usec_per_op)
    by_size = {str(size): statistics.median(values) for size, values in rounds.items()}
    values = list(by_size.values())
    return Row(
        "append_by_size",
        store.name,
        extra={
            "usec_per_append": by_size,
            "window": settings.window,
            "rounds": WINDOW_ROUNDS,
            "max_over_min": max(values) / min(values) if min(values) else 0.0,
        },
    )
