"""The comparison run: every store, every workload, on one server, in one process run.

Workloads run store after store within each workload (not store by store), so slow
drift of a shared machine spreads over all stores alike.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from redis_chat_history._protocol import version_tuple
from redis_chat_history._transport import SyncTransport
from redis_chat_history.local_server import start_redis

from .corpus import DISTINCT, Corpus, rare_and_common
from .goals import check_goals
from .load import LoadPlan, run_load
from .measure import ServerCost, Timing, library_version, load_gc_helper
from .peers import PEER_PREFIX, peer_setup, run_peer_worker, start_stack_server
from .report import extra_tables, goals_table, row_dict, timing_table, write_chart, write_json
from .server import bench_server, describe_environment
from .stores import (
    FloorStore,
    LangchainCommunityStore,
    LangchainRedisStore,
    OursStore,
    Store,
    langchain_community_unavailable,
    langchain_redis_unavailable,
)
from .workloads import (
    Bench,
    Row,
    Settings,
    append_cost_by_size,
    append_one,
    append_turn,
    fill_read_sessions,
    memory_per_message,
    read_all,
    read_latest,
    runnable_turn,
    search,
)

PREFIX = "bench:"
NOINDEX_VERSION = (1, 1, 0)
#: Seconds the peers' process may take (a quick run takes about a minute).
PEER_TIMEOUT = 1800.0


def row_from_json(item: dict[str, Any]) -> Row:
    """A row of the peers' process (benchmarks.peer_worker) as a :class:`Row`."""
    timing, server = item.get("timing"), item.get("server")
    return Row(
        item["workload"],
        item["store"],
        Timing(**timing) if timing else None,
        ServerCost(**server) if server else None,
        item.get("extra", {}),
    )


def merge_rows(rows: list[Row], extra: list[Row]) -> list[Row]:
    """``rows`` with ``extra`` placed in their workloads' groups, before the floor."""
    merged: list[Row] = []
    for workload in dict.fromkeys(row.workload for row in rows):
        group = [row for row in rows if row.workload == workload]
        merged += [row for row in group if row.store != "floor"]
        merged += [row for row in extra if row.workload == workload]
        merged += [row for row in group if row.store == "floor"]
    return merged


def peer_notes(reply: dict[str, Any]) -> list[str]:
    """What the peers' run says beyond its rows: its failures and how it measured."""
    if "error" in reply:
        return [f"peers: {reply['error']}"]
    notes = [
        f"{error['store']} failed at {error['workload']}: {error['error']}"
        for error in reply.get("errors", [])
    ]
    versions = ", ".join(f"{name} {version}" for name, version in reply["versions"].items())
    notes.append(
        f"peers ({versions}) ran in their own process after the other stores' rounds, on the "
        "same server: seed workloads only (no latest-20 read, append cost by size or load); "
        "langgraph-checkpoint-redis is a one-node MessagesState graph's thread "
        "(update_state to append, get_state to read; search reads the thread and filters "
        "in Python); langchain-redis's memory leaves out its RediSearch index (not a key)"
    )
    return notes


def make_stores(
    url: str, client: redis.Redis, ttl: int, notes: list[str], peers: bool = False
) -> list[Store]:
    """The stores this server and environment can run, with a note for each one left out
    (with ``peers``, langchain-redis runs in the peers' process instead)."""

    def prefix(name: str) -> str:
        return f"{PREFIX}{name}:"

    version = library_version(client) or "0"
    stores: list[Store] = [OursStore(url, prefix("ours"), ttl)]
    if version_tuple(version) >= NOINDEX_VERSION:
        stores.append(OursStore(url, prefix("noindex"), ttl, index=False))
    else:
        notes.append(
            f"ours-noindex not run: the search index is not available in library "
            f"{version} (it arrives in 1.1.0); search is a scan"
        )
    missing = langchain_community_unavailable()
    if missing:
        notes.append(missing)
    else:
        stores.append(LangchainCommunityStore(url, prefix("lcc"), ttl))
    missing = None if peers else langchain_redis_unavailable(client)
    if missing:
        notes.append(missing)
    elif not peers:
        stores.append(LangchainRedisStore(url, prefix("lcr"), ttl))
    stores.append(FloorStore(url, prefix("floor"), ttl))
    return stores


def run_comparison(
    url: str | None,
    settings: Settings,
    out: Path,
    chart: bool,
    load: bool,
    echo: Callable[[str], None],
    peers: bool = False,
) -> dict[str, Any]:
    """Run every workload for every store; print the tables; write JSON (and PNG).

    With ``peers``, langchain-redis and langgraph-checkpoint-redis are measured too, in
    their own virtualenv's process (:mod:`benchmarks.peers`), on the same server: without
    ``url``, a throwaway Valkey with RediSearch and RedisJSON for every store.
    """
    started = time.time()
    notes: list[str] = []
    setup = peer_setup() if peers else None
    if isinstance(setup, str):
        notes.append(f"langchain-redis and langgraph-checkpoint-redis not run: {setup}")
        setup = None
    start = functools.partial(start_stack_server, setup) if setup else start_redis
    peer_labels: dict[str, str] = {}
    peer_reply: dict[str, Any] = {}
    with bench_server(url, (PREFIX, PEER_PREFIX), start) as server_url:
        client = redis.Redis.from_url(server_url)
        SyncTransport(client).ensure_library()
        load_gc_helper(client)
        library = library_version(client)
        stores = make_stores(server_url, client, settings.ttl, notes, peers=setup is not None)
        corpus = Corpus()
        bench = Bench(client, corpus, settings)
        rows: list[Row] = []
        steps: list[tuple[str, Callable[[Store], Row | None]]] = [
            ("append one message", lambda s: append_one(bench, s)),
            ("append a chat turn", lambda s: append_turn(bench, s)),
            ("RunnableWithMessageHistory turn", lambda s: runnable_turn(bench, s)),
            ("filling the read sessions", lambda s: fill_read_sessions(bench, s)),
        ]
        steps += [
            (f"read {size:,}", functools.partial(read_all, bench, size=size))
            for size in settings.read_sizes
        ]
        query = rare_and_common(corpus.messages(min(10000, max(settings.read_sizes))))[0]
        steps += [
            ("read latest 20", lambda s: read_latest(bench, s)),
            ("search", lambda s: search(bench, s, query)),
            ("memory", lambda s: memory_per_message(bench, s)),
            # Last: it appends to the read sessions.
            ("append cost by size", lambda s: append_cost_by_size(bench, s)),
        ]
        for name, step in steps:
            echo(f"... {name}")
            for store in stores:
                try:
                    row = step(store)
                except Exception as error:  # a store's failure is a result, not the run's end
                    notes.append(f"{store.name} failed at {name}: {type(error).__name__}: {error}")
                    bench.pending = [(r, job) for r, job in bench.pending if job.store is not store]
                    continue
                if row is not None:
                    rows.append(row)
            bench.measure_pending()
        if setup is not None:
            echo("... langchain-redis and langgraph-checkpoint-redis (their own process)")
            peer_reply = run_peer_worker(
                setup, server_url, {"settings": asdict(settings)}, PEER_TIMEOUT
            )
            rows = merge_rows(rows, [row_from_json(item) for item in peer_reply.get("rows", [])])
            peer_labels = peer_reply.get("labels", {})
            notes.extend(peer_notes(peer_reply))
        load_results: dict[str, dict[str, Any]] = {}
        if load:
            echo(
                f"... concurrent load ({settings.processes} processes, "
                f"{settings.load_sessions} sessions, {settings.load_seconds:g} s each)"
            )
            for store in stores:
                plan = LoadPlan(
                    store,
                    settings.processes,
                    settings.load_sessions,
                    settings.load_seconds,
                    corpus.messages(DISTINCT),
                )
                load_results[store.name] = run_load(plan).as_dict()
        environment = describe_environment(client, library)
        client.close()
    verdicts = [
        v
        for variant in ("ours", "ours-noindex")
        if any(s.name == variant for s in stores)
        for v in check_goals(rows, variant)
    ]
    notes.append(
        "langchain-community builds a new Redis client per history object (and sends "
        "INFO to check for a cluster): the cost of its per-request construction is counted"
    )
    notes.append(
        "langchain-community and the floor have no server-side search: their search rows read "
        "the whole session and filter in Python"
    )
    notes.append(
        "langchain-community's API has no latest-N read: its latest-20 row is a raw LRANGE "
        "on its list"
    )
    text = "\n".join(
        [
            timing_table(rows),
            extra_tables(rows, load_results),
            goals_table(verdicts),
            "",
            "notes",
            *[f"  - {note}" for note in notes],
        ]
    )
    echo("")
    echo(text)
    document: dict[str, Any] = {
        "kind": "comparison",
        "settings": asdict(settings),
        "environment": environment,
        "stores": {**{store.name: store.label for store in stores}, **peer_labels},
        "peers": peer_reply,
        "rows": [row_dict(rows, row) for row in rows],
        "load": load_results,
        "goals": [v.as_dict() for v in verdicts],
        "notes": notes,
        "seconds": time.time() - started,
    }
    write_json(out / "bench.json", document)
    echo(f"\nJSON: {out / 'bench.json'}")
    if chart:
        why = write_chart(out / "bench.png", rows, [*(s.name for s in stores), *peer_labels])
        echo(why or f"chart: {out / 'bench.png'}")
    (out / "bench.txt").write_text(text + "\n", encoding="utf-8")
    return document
