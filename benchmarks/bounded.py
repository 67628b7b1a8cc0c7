"""``scripts/bench bounded``: the library as a guest on someone else's Redis.

Four measurements, each against baselines measured in the same run:

- **worst call**: for every function, the slowest call's server time (SLOWLOG) at each
  session size, on adversarial corpora (two common words never in one message, a type
  filter matching nothing, phrases of common words, 64-token ANY queries, scans of
  unindexed sessions) and the bulk jobs (reindex steps, a large trim). The figure is the
  median over repeats of each repeat's slowest call.
- **neighbour**: a probe client's PING latency (p50, p99, max) while writers append
  turns and searchers run those queries, for us, langchain-community and the floor.
- **append**: the server time of a one-message append, with and without the index,
  against a bare Functions call doing XADD + PEXPIRE; and the retry-safety state (the
  tokens kept in ``:x``, the per-message ``:i`` map) against the stream's memory.
- **read**: reading 1,000 messages, us against langchain-community (client time).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

from redis_chat_history import RedisChatMessageHistory, library_source, session_keys
from redis_chat_history import _protocol as protocol

from .measure import percentile
from .server import bench_server
from .stores import langchain_community_unavailable

PREFIX = "bounded:"
FLOOR_LIBRARY = """#!lua name=chathistbench_floor
redis.register_function('chathistbench_floor_append', function(keys, args)
  local id = redis.call('XADD', keys[1], '*', 'm', args[1])
  redis.call('PEXPIRE', keys[1], 3600000)
  return id
end)"""
STEADY_MS, BULK_MS = 2.0, 10.0

#: The adversarial searches: label, query, options.
QUERIES: list[tuple[str, str, tuple[str, ...]]] = [
    ("search two words ANY", "alpha beta", ("MODE", "ANY")),
    ("search two words never together", "alpha beta", ()),
    ("search type matching nothing", "alpha", ("TYPE", "tool", "MODE", "ANY")),
    ("search phrase of common words", '"common alpha"', ()),
    ("search 64 tokens ANY", " ".join(["alpha", *(f"w{i}" for i in range(63))]), ("MODE", "ANY")),
]


@dataclass
class BoundedSettings:
    """What to run: session sizes, repeats, and the neighbour load's length."""

    sizes: tuple[int, ...] = (1000, 10000, 100000)
    repeats: int = 3
    neighbour_seconds: float = 3.0
    neighbour_size: int = 10000
    append_calls: int = 2000
    retry_state_messages: int = 100000


@dataclass
class Worst:
    """The slowest call of one function at one session size, median over repeats."""

    function: str
    size: int
    worst_ms: float
    median_ms: float
    calls: int
    bulk: bool = False

    @property
    def goal_ms(self) -> float:
        return BULK_MS if self.bulk else STEADY_MS


def stored(text: str, message_type: str = "human") -> bytes:
    return json.dumps({"type": message_type, "data": {"content": text}}).encode()


def alternating(i: int) -> bytes:
    """Message i of the adversarial corpus: "alpha" and "beta" never in one message."""
    word = "alpha" if i % 2 else "beta"
    return stored(f"{word} common filler text number {i}")


@contextmanager
def slowlog_everything(client: redis.Redis) -> Iterator[None]:
    """Log every command's duration while the block runs."""
    old: dict[Any, Any] = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1000000)
    try:
        yield
    finally:
        for name, value in old.items():
            client.config_set(name, value)


def fcall_durations(client: redis.Redis) -> list[float]:
    """Server time (ms) of every FCALL logged since the last reset."""
    return [
        entry["duration"] / 1000
        for entry in client.slowlog_get(1000000)
        if protocol.as_text(entry["command"]).startswith("FCALL")
    ]


def build_session(client: redis.Redis, name: str, size: int, *flags: str) -> tuple[str, ...]:
    """A session of ``size`` adversarial messages, appended 1,000 at a time."""
    keys = session_keys(PREFIX, name)
    client.unlink(*keys)
    for first in range(0, size, 1000):
        batch = [alternating(i) for i in range(first, min(first + 1000, size))]
        client.fcall(protocol.APPEND, 3, *keys, *flags, "MESSAGES", *batch)
    return keys


def follow_search(
    client: redis.Redis, keys: tuple[str, ...], query: str, options: tuple[str, ...]
) -> int:
    """Runs one search to its end as the Python client does; returns its calls."""
    mode = "any" if "ANY" in options else "all"
    message_type = options[options.index("TYPE") + 1] if "TYPE" in options else None
    pager = protocol.SearchPager(keys, query, 10, mode=mode, message_type=message_type)
    call = pager.next_call()
    while call is not None:
        pager.feed(client.execute_command(*call.command()))  # type: ignore[no-untyped-call]
        call = pager.next_call()
    return pager.calls


def measure_worst(
    client: redis.Redis, name: str, size: int, repeats: int, run: Callable[[], Any], bulk: bool
) -> Worst:
    """Each repeat's slowest FCALL; the median of those over repeats."""
    worst, medians, calls = [], [], 0
    for _ in range(repeats):
        client.slowlog_reset()
        run()
        durations = fcall_durations(client)
        if not durations:
            continue
        worst.append(max(durations))
        medians.append(statistics.median(durations))
        calls += len(durations)
    return Worst(
        name,
        size,
        statistics.median(worst) if worst else 0.0,
        statistics.median(medians) if medians else 0.0,
        calls // max(1, repeats),
        bulk,
    )


def worst_calls(
    client: redis.Redis, settings: BoundedSettings, echo: Callable[[str], None]
) -> list[Worst]:
    """The worst-call table: every function at every size."""
    rows: list[Worst] = []
    with slowlog_everything(client):
        for size in settings.sizes:
            echo(f"  building sessions of {size:,} messages")
            rows += worst_at_size(client, size, settings.repeats)
    return rows


def worst_at_size(client: redis.Redis, size: int, repeats: int) -> list[Worst]:
    """Every function's worst call on an indexed and an unindexed session of ``size``."""
    keys = build_session(client, f"indexed-{size}", size)
    scanned = build_session(client, f"scanned-{size}", size, "NOINDEX")
    entries: Any = client.xrange(keys[0], "-", "+", count=50)
    ids = [entry[0] for entry in entries]
    rows: list[Worst] = []

    def steady(label: str, run: Callable[[], Any]) -> None:
        rows.append(measure_worst(client, label, size, repeats, run, False))

    def append_turns() -> None:
        for _ in range(100):
            token = protocol.new_token()
            turn = (stored("hello there"), stored("hi", "ai"))
            client.fcall(protocol.APPEND, 3, *keys, "TOKEN", token, "MESSAGES", *turn)

    def pages() -> None:
        for _ in range(50):
            client.fcall_ro(protocol.RANGE, 3, *keys, "COUNT", 20, "BEFORE", ids[-1])

    def latest() -> None:
        for _ in range(50):
            client.fcall_ro(protocol.RANGE, 3, *keys, "COUNT", 20, "TOOLSAFE")

    def small_reads() -> None:
        for _ in range(50):
            client.fcall_ro(protocol.LEN, 3, *keys)
            client.fcall_ro("chathist_ttl", 3, *keys)

    def deletes() -> None:
        for _ in range(5):
            client.fcall("chathist_delete", 3, *keys, "IDS", ids.pop(), ids.pop())

    def rebuild() -> None:
        reply = client.fcall("chathist_reindex", 3, *keys, "RESTART")
        while not int(reply[2]):
            reply = client.fcall("chathist_reindex", 3, *keys, "CONTINUE")

    steady("append a turn", append_turns)
    steady("range a page", pages)
    steady("latest 20", latest)
    steady("len / ttl", small_reads)
    for label, query, options in QUERIES:
        steady(label, partial(follow_search, client, keys, query, options))
    for label, query, options in QUERIES[:2]:
        steady(f"{label} (scan)", partial(follow_search, client, scanned, query, options))
    steady("delete 2 ids", deletes)
    rows.append(measure_worst(client, "reindex (each step)", size, repeats, rebuild, True))
    # Once: the first trim is the long one; a repeat would find nothing to remove.
    trim = measure_worst(
        client, "trim to 10 (each write)", size, 1, lambda: trim_to(client, scanned, 10), True
    )
    rows.append(trim)
    client.unlink(*keys, *scanned)
    return rows


def trim_to(client: redis.Redis, keys: tuple[str, ...], window: int) -> None:
    """Appends with MAXLEN until the session is down to ``window`` (a step per write)."""
    for _ in range(100000):
        client.fcall(protocol.APPEND, 3, *keys, "MAXLEN", window, "MESSAGES", stored("new"))
        if client.xlen(keys[0]) <= window:
            return


# -- the neighbour workload ----------------------------------------------------------------


def _probe(url: str, seconds: float, queue: Any) -> None:
    client = redis.Redis.from_url(url)
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        client.ping()
        latencies.append((time.perf_counter() - start) * 1000)
    queue.put(latencies)


def _writer(url: str, store: str, seconds: float, worker: int) -> None:
    client = redis.Redis.from_url(url)
    end = time.perf_counter() + seconds
    turn = 0
    while time.perf_counter() < end:
        human, ai = stored(f"alpha question {turn}"), stored(f"beta answer {turn}", "ai")
        if store == "ours":
            keys = session_keys(PREFIX, f"w{worker}-{turn % 50}")
            client.fcall(
                protocol.APPEND,
                3,
                *keys,
                "TTL",
                3600,
                "TOKEN",
                protocol.new_token(),
                "MESSAGES",
                human,
                ai,
            )
        else:
            key = f"{PREFIX}{store}:w{worker}-{turn % 50}"
            pipe = client.pipeline(transaction=False)
            (pipe.lpush if store == "langchain-community" else pipe.rpush)(key, human)
            (pipe.lpush if store == "langchain-community" else pipe.rpush)(key, ai)
            pipe.expire(key, 3600)
            pipe.execute()
        turn += 1


def _searcher(url: str, store: str, seconds: float, keys: tuple[str, ...]) -> None:
    client = redis.Redis.from_url(url)
    end = time.perf_counter() + seconds
    round_ = 0
    while time.perf_counter() < end:
        if store == "ours":
            _label, query, options = QUERIES[round_ % len(QUERIES)]
            follow_search(client, keys, query, options)
        else:
            # Without a server-side search, a client reads the whole session to search it.
            for raw in client.lrange(f"{PREFIX}{store}:searched", 0, -1):
                json.loads(raw)
        round_ += 1


def neighbour(
    url: str, settings: BoundedSettings, stores: list[str]
) -> dict[str, dict[str, float]]:
    """The probe's PING latency for each store under the same load."""
    client = redis.Redis.from_url(url)
    keys = build_session(client, "searched", settings.neighbour_size)
    jsons = [alternating(i) for i in range(settings.neighbour_size)]
    for store in stores[1:]:
        for first in range(0, len(jsons), 1000):
            client.rpush(f"{PREFIX}{store}:searched", *jsons[first : first + 1000])
    results: dict[str, dict[str, float]] = {}
    context = multiprocessing.get_context("spawn")
    for store in stores:
        queue = context.Queue()
        seconds = settings.neighbour_seconds
        workers = [context.Process(target=_probe, args=(url, seconds, queue))]
        workers += [
            context.Process(target=_writer, args=(url, store, seconds, w)) for w in range(2)
        ]
        workers.append(context.Process(target=_searcher, args=(url, store, seconds, keys)))
        for process in workers:
            process.start()
        latencies: list[float] = queue.get(timeout=seconds + 60)
        for process in workers:
            process.join(timeout=seconds + 60)
        results[store] = {
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies),
            "pings": float(len(latencies)),
        }
    client.close()
    return results


# -- append cost, retry-safety state, reads ------------------------------------------------


def append_costs(client: redis.Redis, settings: BoundedSettings) -> dict[str, float]:
    """Server µs per one-message append (median over interleaved rounds), and the
    retry-safety state's memory against the stream's."""
    client.function_load(FLOOR_LIBRARY, replace=True)
    rounds: dict[str, list[float]] = {"floor": [], "indexed": [], "noindex": []}
    for round_ in range(5):
        for name in rounds:
            keys = session_keys(PREFIX, f"append-{name}-{round_}")
            client.config_resetstat()
            for i in range(settings.append_calls // 5):
                message = stored(f"hello there, message number {i} about this and that")
                if name == "floor":
                    client.fcall("chathistbench_floor_append", 1, keys[0], message)
                else:
                    flags = ("NOINDEX",) if name == "noindex" else ()
                    client.fcall(
                        protocol.APPEND,
                        3,
                        *keys,
                        "TTL",
                        3600,
                        *flags,
                        "TOKEN",
                        protocol.new_token(),
                        "MESSAGES",
                        message,
                    )
            stats = client.info("commandstats")["cmdstat_fcall"]
            rounds[name].append(float(stats["usec_per_call"]))
    floor = statistics.median(rounds["floor"])
    # Retry-safety state on a long session written a turn per call, each with a token:
    # the fields of the latest 64 to 128 tokens in :x (their bytes, and 16 more each for
    # the hash entry), and an :i entry only for messages that carry an id (none here).
    keys = session_keys(PREFIX, "retry-state")
    pipe = client.pipeline(transaction=False)
    for turn in range(settings.retry_state_messages // 2):
        human = stored(f"question {turn}: hello there, how are you today?")
        ai = stored(f"answer {turn}: fine, thanks for asking.", "ai")
        pipe.fcall(protocol.APPEND, 3, *keys, "TOKEN", protocol.new_token(), "MESSAGES", human, ai)
        if turn % 500 == 499:
            pipe.execute()
    pipe.execute()
    stream = client.memory_usage(keys[0]) or 1
    fields: Any = client.hkeys(keys[1])
    token_fields = [f for f in fields if f.startswith((b"\0T", b"\0S"))]
    tokens = sum(len(f) + len(client.hget(keys[1], f) or b"") + 16 for f in token_fields)
    id_map = client.memory_usage(keys[2]) or 0
    client.unlink(*keys)
    client.function_delete("chathistbench_floor")
    return {
        "floor_us": floor,
        "indexed_us": statistics.median(rounds["indexed"]),
        "noindex_us": statistics.median(rounds["noindex"]),
        "indexed_ratio": statistics.median(rounds["indexed"]) / floor,
        "noindex_ratio": statistics.median(rounds["noindex"]) / floor,
        "retry_state_ratio": (tokens + id_map) / stream,
        "retry_state_bytes": float(tokens + id_map),
        "stream_bytes": float(stream),
    }


def read_costs(url: str, repeats: int) -> dict[str, float]:
    """Client ms to read 1,000 messages: ours and langchain-community's (median)."""
    client = redis.Redis.from_url(url)
    jsons = [stored(f"message {i} with a few words of text in it") for i in range(1000)]
    ours = RedisChatMessageHistory("read", redis_url=url, key_prefix=PREFIX)
    client.fcall(protocol.APPEND, 3, *ours.keys, "MESSAGES", *jsons)
    timings: dict[str, list[float]] = {"ours": []}
    readers: dict[str, Callable[[], Any]] = {"ours": lambda: ours.messages}
    if langchain_community_unavailable() is None:
        from langchain_community.chat_message_histories import (  # type: ignore[import-not-found,unused-ignore]
            RedisChatMessageHistory as Community,
        )

        client.lpush(f"{PREFIX}community:read", *reversed(jsons))
        community = Community("read", url=url, key_prefix=f"{PREFIX}community:")
        readers["langchain-community"] = lambda: community.messages
        timings["langchain-community"] = []
    for _ in range(max(repeats, 5) * 4):
        for name, read in readers.items():
            start = time.perf_counter()
            assert len(read()) == 1000
            timings[name].append((time.perf_counter() - start) * 1000)
    client.close()
    return {f"{name}_ms": statistics.median(values) for name, values in timings.items()}


# -- the run --------------------------------------------------------------------------------


@dataclass
class BoundedReport:
    """Everything measured, for bounded.json and the printed tables."""

    worst: list[Worst] = field(default_factory=list)
    neighbour: dict[str, dict[str, float]] = field(default_factory=dict)
    append: dict[str, float] = field(default_factory=dict)
    read: dict[str, float] = field(default_factory=dict)


def render(report: BoundedReport) -> str:
    """The tables, with each goal's verdict."""
    lines = ["Worst call per function (server ms, median over repeats of each repeat's slowest)"]
    sizes = sorted({row.size for row in report.worst})
    functions = list(dict.fromkeys(row.function for row in report.worst))
    lines.append(f"{'function':<42}" + "".join(f"{size:>12,}" for size in sizes) + "   goal")
    for function in functions:
        cells = {row.size: row for row in report.worst if row.function == function}
        goal = next(iter(cells.values())).goal_ms
        verdict = "met" if all(row.worst_ms <= goal for row in cells.values()) else "NOT MET"
        lines.append(
            f"{function:<42}"
            + "".join(f"{cells[s].worst_ms:>12.2f}" if s in cells else f"{'':>12}" for s in sizes)
            + f"   <= {goal:g} ms: {verdict}"
        )
    if report.neighbour:
        lines += ["", "Neighbour: a probe's PING latency (ms) under writers and searchers"]
        lines.append(f"{'store':<22}{'p50':>8}{'p99':>8}{'max':>8}{'pings':>8}")
        for store, figures in report.neighbour.items():
            lines.append(
                f"{store:<22}{figures['p50_ms']:>8.3f}{figures['p99_ms']:>8.3f}"
                f"{figures['max_ms']:>8.2f}{figures['pings']:>8.0f}"
            )
        ours = report.neighbour.get("ours", {}).get("p99_ms")
        theirs = report.neighbour.get("langchain-community", {}).get("p99_ms")
        if ours and theirs:
            ratio = ours / theirs
            verdict = "met" if ratio <= 1.5 else "NOT MET"
            lines.append(f"our p99 / langchain-community's: {ratio:.2f}x (goal <= 1.5x): {verdict}")
    if report.append:
        a = report.append
        lines += [
            "",
            "One-message append, server us (median of interleaved rounds)",
            f"  bare XADD+PEXPIRE function {a['floor_us']:.1f}; indexed {a['indexed_us']:.1f} "
            f"({a['indexed_ratio']:.2f}x, goal <= 3x: "
            f"{'met' if a['indexed_ratio'] <= 3 else 'NOT MET'}); NOINDEX {a['noindex_us']:.1f} "
            f"({a['noindex_ratio']:.2f}x, goal <= 1.5x: "
            f"{'met' if a['noindex_ratio'] <= 1.5 else 'NOT MET'})",
            f"  retry-safety state at {a['stream_bytes'] / 1e6:.1f} MB of stream: "
            f"{a['retry_state_bytes'] / 1024:.1f} KiB, {a['retry_state_ratio']:.4f}x "
            f"(goal <= 0.1x: {'met' if a['retry_state_ratio'] <= 0.1 else 'NOT MET'})",
        ]
    if report.read:
        r = report.read
        lines += ["", "Read 1,000 messages, client ms (median)"]
        lines += [f"  {name.removesuffix('_ms')}: {value:.2f}" for name, value in r.items()]
        if "langchain-community_ms" in r:
            ratio = r["langchain-community_ms"] / r["ours_ms"]
            verdict = "met" if ratio >= 1.1 else "NOT MET"
            lines.append(f"  ours is {ratio:.2f}x as fast (goal >= 1.1x): {verdict}")
    return "\n".join(lines)


def run_bounded_bench(
    url: str | None, settings: BoundedSettings, out: Path, echo: Callable[[str], None] = print
) -> BoundedReport:
    """Runs every measurement on one server; writes bounded.json and bounded.txt."""
    report = BoundedReport()
    with bench_server(url, (PREFIX,)) as server_url:
        client = redis.Redis.from_url(server_url)
        client.function_load(library_source(), replace=True)
        echo("worst calls")
        report.worst = worst_calls(client, settings, echo)
        echo("append cost")
        report.append = append_costs(client, settings)
        echo("reads")
        report.read = read_costs(server_url, settings.repeats)
        stores = ["ours", "floor"]
        if langchain_community_unavailable() is None:
            stores.insert(1, "langchain-community")
        if settings.neighbour_seconds > 0:
            echo("neighbour load")
            report.neighbour = neighbour(server_url, settings, stores)
        client.close()
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "kind": "bounded",
        "worst": [row.__dict__ | {"goal_ms": row.goal_ms} for row in report.worst],
        "neighbour": report.neighbour,
        "append": report.append,
        "read": report.read,
    }
    (out / "bounded.json").write_text(json.dumps(document, indent=2))
    text = render(report)
    (out / "bounded.txt").write_text(text + "\n")
    echo(text)
    return report
