"""The search index benchmark: server time of search, append cost, memory.

At each session size, two sessions hold the same realistic chat text (the seeded corpus,
message for message): one appended normally (indexed, library 1.1.0+) and one appended
with ``NOINDEX``, which the library searches by a full scan, the method the index
replaces. The sessions grow by bulk appends to their size, then rounds of one-message
appends are timed, every session of every size taking turns round by round; on the
sessions of ``messages`` messages, searches and memory are measured. All times are server
times from INFO commandstats (CONFIG RESETSTAT, N calls, usec per call).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis

from redis_chat_history import _protocol as protocol
from redis_chat_history._transport import SyncTransport

from .corpus import Corpus, rare_and_common
from .measure import library_version, load_gc_helper, median_usec, memory_usage
from .report import write_json
from .server import bench_server, describe_environment

PREFIX = "bench-search:"
INDEX_VERSION = (1, 1, 0)
BULK = 1000
ROUNDS = 5
WINDOW_ROUNDS = 7
SCAN_CALLS = 5
#: Slow log entries kept: more than the calls of one measured window.
SLOWLOG_LENGTH = 100000


@dataclass
class SearchSettings:
    """Sizes of a search benchmark run."""

    messages: int = 10000
    window_sizes: tuple[int, ...] = (1000, 10000)
    calls: int = 20
    window: int = 320  # a multiple of the library's 64-append fold
    ttl: int = 3600


@dataclass
class Goal:
    """One goal: measured value, target, PASS / FAIL / n/a."""

    goal: str
    value: float | None
    target: str
    status: str
    detail: str = ""


class Session:
    """One benchmark session, grown with the corpus's messages in order."""

    def __init__(
        self, client: redis.Redis, name: str, noindex: bool, jsons: list[bytes], ttl: int
    ) -> None:
        self.client = client
        self.keys = protocol.session_keys(PREFIX, name)
        self.options: list[Any] = ["TTL", ttl] + (["NOINDEX"] if noindex else [])
        self.jsons = jsons
        self.size = 0
        #: The longest single append (server usec) of the measured rounds.
        self.slowest = 0
        client.delete(*self.keys)

    def append(self, jsons: list[bytes]) -> None:
        """One append call of ``jsons``."""
        self.client.fcall(protocol.APPEND, 3, *self.keys, *self.options, "MESSAGES", *jsons)
        self.size += len(jsons)

    def grow_to(self, size: int) -> None:
        """Bulk-append the corpus's next messages until the session holds ``size``."""
        for start in range(self.size, size, BULK):
            self.append(self.jsons[start : min(size, start + BULK)])

    def window_round(self, count: int) -> int:
        """One round of ``count`` one-message appends (the corpus's next messages)."""
        jsons = self.jsons[self.size : self.size + count]
        for item in jsons:
            self.append([item])
        return len(jsons)

    def search_usec(self, query: str, calls: int) -> tuple[float, int]:
        """Server usec per search call of ``query`` (LIMIT 10), and the hits of one call."""
        args = (protocol.SEARCH, 3, *self.keys, query, "LIMIT", 10)
        hits = self.client.fcall_ro(*args)
        rounds = max(1, min(ROUNDS, calls))
        per_round = max(1, calls // rounds)

        def searches() -> int:
            for _ in range(per_round):
                self.client.fcall_ro(*args)
            return per_round

        usec = median_usec(self.client, lambda name: name == "fcall_ro", searches, rounds)
        return usec, len(hits) // 2

    def memory_ratio(self) -> tuple[int, int]:
        """Bytes of the session's keys (SAMPLES 0) and bytes of its stored message JSON."""
        json_bytes = sum(len(j) for j in self.jsons[: self.size])
        return memory_usage(self.client, list(self.keys)), json_bytes


def append_durations(client: redis.Redis, key: str) -> list[int]:
    """Server usec of each append to the session of ``key`` in the slow log (which logs
    every call during the run)."""
    return [
        int(entry["duration"])
        for entry in client.slowlog_get(SLOWLOG_LENGTH)
        if bytes(entry["command"]).lower().startswith(b"fcall chathist_append")
        and key.encode() in bytes(entry["command"])
    ]


def append_windows(
    client: redis.Redis, pairs: dict[int, dict[str, Session]], count: int
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Server usec per one-message append of each session, amortized, by session size; and
    the index's cost relative to NOINDEX at each size.

    After an unmeasured round each, ``WINDOW_ROUNDS`` rounds; in each, every session of
    every size does ``count`` appends in turn (the two sessions of a size in alternating
    order), so that a shared machine's drift weighs on all sizes and both sessions alike. A
    session's figure is its median round's mean; a size's ratio is the median of the ratios
    of its two sessions' rounds, run side by side. A round holds a whole number of the
    library's periodic folds of pending postings (every 64 appends).
    """
    for pair in pairs.values():
        for session in pair.values():
            session.window_round(count)  # unmeasured: the bulk appends' garbage is collected
    client.slowlog_reset()
    rounds: dict[int, dict[str, list[float]]] = {
        size: {name: [] for name in pair} for size, pair in pairs.items()
    }
    for turn in range(WINDOW_ROUNDS):
        for size, pair in pairs.items():
            order = list(pair.items())
            for name, session in order if turn % 2 == 0 else reversed(order):
                usec = median_usec(
                    client,
                    lambda command: command == "fcall",
                    partial(session.window_round, count),
                    1,
                )
                rounds[size][name].append(usec)
    usecs: dict[str, dict[str, float]] = {name: {} for name in next(iter(pairs.values()))}
    ratios: dict[str, float] = {}
    for size, pair in pairs.items():
        for name, session in pair.items():
            session.slowest = max(append_durations(client, session.keys[0]), default=0)
            usecs[name][str(size)] = statistics.median(rounds[size][name])
        if "noindex" in pair:
            sides = zip(rounds[size]["index"], rounds[size]["noindex"], strict=True)
            ratios[str(size)] = statistics.median(a / b for a, b in sides if b)
    return usecs, ratios


@contextmanager
def slowlog_everything(client: redis.Redis) -> Iterator[None]:
    """Log every command in the slow log for the block; the server's settings restored after."""
    saved: dict[Any, Any] = dict(client.config_get("slowlog-*"))
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    try:
        yield
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
        client.slowlog_reset()


def window_messages(count: int) -> int:
    """Messages a window adds: its unmeasured round and ``WINDOW_ROUNDS`` rounds of ``count``."""
    return count * (WINDOW_ROUNDS + 1)


def _goal(
    goal: str,
    value: float | None,
    target: str,
    ok: Callable[[float], bool],
    missing: str,
    detail: str = "",
) -> Goal:
    if value is None:
        return Goal(goal, None, target, "n/a", missing)
    return Goal(goal, value, target, "PASS" if ok(value) else "FAIL", detail)


def run_search_bench(
    url: str | None, settings: SearchSettings, out: Path, echo: Callable[[str], None]
) -> dict[str, Any]:
    """Measure, print a table with PASS / FAIL per goal, write search.json and search.txt."""
    started = time.time()
    corpus = Corpus()
    notes: list[str] = []
    with bench_server(url, (PREFIX,)) as server_url:
        client = redis.Redis.from_url(server_url)
        SyncTransport(client).ensure_library()
        load_gc_helper(client)
        version = library_version(client) or "0"
        indexed = protocol.version_tuple(version) >= INDEX_VERSION
        notes.append(
            "every message carries a uuid4 id, as this package sends them: the session's id map "
            "(:i) is part of its memory"
        )
        if not indexed:
            notes.append(
                f"index not available: library {version} < 1.1.0 searches by scan "
                "and rejects NOINDEX; only the scan is measured"
            )
        sizes = sorted({*settings.window_sizes, settings.messages})
        jsons = corpus.jsons(max(sizes) + window_messages(settings.window))
        kinds = {"index": False, "noindex": True} if indexed else {"index": False}
        pairs = {
            size: {
                name: Session(client, f"{name}-{size}", noindex, jsons, settings.ttl)
                for name, noindex in kinds.items()
            }
            for size in sizes
        }
        searches: dict[str, dict[str, Any]] = {}
        memory: dict[str, dict[str, float]] = {}
        rare, common = rare_and_common(corpus.messages(min(settings.messages, 10000)))
        queries = {"rare": rare, "common": common, "two words": f"{common} {rare}"}
        slowest: dict[str, dict[str, int]] = {name: {} for name in kinds}
        timed = {size: pair for size, pair in pairs.items() if size in settings.window_sizes}
        with slowlog_everything(client):
            for size, pair in pairs.items():
                window = window_messages(settings.window) if size in timed else 0
                for name, session in pair.items():
                    echo(f"... {name}: growing to {size:,}")
                    session.grow_to(size - window)
            echo("... timing appends at every size, the sessions taking turns")
            appends, append_ratios = append_windows(client, timed, settings.window)
            for size, pair in timed.items():
                for name, session in pair.items():
                    slowest[name][str(size)] = session.slowest
            for name, session in pairs[settings.messages].items():
                # A scan takes ~0.1 s per 1,000 messages: a few calls are enough.
                calls = settings.calls if name == "index" and indexed else SCAN_CALLS
                searches[name] = {}
                for label, query in queries.items():
                    usec, hits = session.search_usec(query, calls)
                    searches[name][label] = {"query": query, "usec": usec, "hits": hits}
                used, json_bytes = session.memory_ratio()
                memory[name] = {"bytes": used, "json_bytes": json_bytes, "ratio": used / json_bytes}
        environment = describe_environment(client, version)
        client.close()
    goals = judge(indexed, settings, searches, appends, append_ratios, memory)
    text = render(
        settings, queries, searches, appends, append_ratios, slowest, memory, goals, notes
    )
    echo("")
    echo(text)
    document = {
        "kind": "search",
        "settings": asdict(settings),
        "environment": environment,
        "index_available": indexed,
        "queries": queries,
        "search": searches,
        "append_usec": appends,
        "append_ratio": append_ratios,
        "slowest_append_usec": slowest,
        "memory": memory,
        "goals": [asdict(g) for g in goals],
        "notes": notes,
        "seconds": time.time() - started,
    }
    write_json(out / "search.json", document)
    (out / "search.txt").write_text(text + "\n", encoding="utf-8")
    echo(f"\nJSON: {out / 'search.json'}")
    return document


def judge(
    indexed: bool,
    settings: SearchSettings,
    searches: dict[str, dict[str, Any]],
    appends: dict[str, dict[str, float]],
    append_ratios: dict[str, float],
    memory: dict[str, dict[str, float]],
) -> list[Goal]:
    """The search index goals against the measured figures."""
    missing = "index not available (library < 1.1.0)"
    index = searches.get("index", {}) if indexed else {}
    scan = searches.get("noindex", {})

    def ms(label: str) -> float | None:
        return index[label]["usec"] / 1000 if label in index else None

    speedup = (
        scan["rare"]["usec"] / index["rare"]["usec"]
        if "rare" in scan and "rare" in index and index["rare"]["usec"]
        else None
    )
    ratios = list(append_ratios.values()) if indexed else []
    growth = list(appends.get("index", {}).values()) if indexed else []
    sizes = ", ".join(f"{int(s):,}" for s in appends.get("index", {}))
    flat_detail = f"sizes {sizes}" + (
        "" if 100000 in settings.window_sizes else "; 100,000 only with --full"
    )
    return [
        _goal("search, rare token: server ms", ms("rare"), "<= 1 ms", lambda v: v <= 1.0, missing),
        _goal(
            "search, most common token: server ms",
            ms("common"),
            "<= 5 ms",
            lambda v: v <= 5.0,
            missing,
        ),
        _goal(
            "search, rare token: speed-up over the scan (NOINDEX)",
            speedup,
            ">= 20x",
            lambda v: v >= 20,
            missing,
        ),
        _goal(
            "append: server time with index / without (worst size)",
            max(ratios) if ratios else None,
            "<= 2x",
            lambda v: v <= 2.0,
            missing,
        ),
        _goal(
            "append with index: flat as the session grows (max/min)",
            max(growth) / min(growth) if len(growth) > 1 and min(growth) else None,
            "<= 1.3x",
            lambda v: v <= 1.3,
            missing if not indexed else "one session size timed: --sizes needs two or more",
            flat_detail,
        ),
        _goal(
            "memory with index / stored JSON bytes",
            memory["index"]["ratio"] if indexed and "index" in memory else None,
            "<= 2.0x",
            lambda v: v <= 2.0,
            missing,
        ),
        _goal(
            "memory without index (NOINDEX) / stored JSON bytes",
            memory["noindex"]["ratio"] if "noindex" in memory else None,
            "<= 2.0x",
            lambda v: v <= 2.0,
            missing,
        ),
    ]


def render(
    settings: SearchSettings,
    queries: dict[str, str],
    searches: dict[str, dict[str, Any]],
    appends: dict[str, dict[str, float]],
    append_ratios: dict[str, float],
    slowest: dict[str, dict[str, int]],
    memory: dict[str, dict[str, float]],
    goals: list[Goal],
    notes: list[str],
) -> str:
    """The figures and goals as a table for people."""
    lines = [
        f"search of a {settings.messages:,}-message session: server us per call "
        f"(LIMIT 10; median of {ROUNDS} rounds, {settings.calls} calls, {SCAN_CALLS} for a scan)"
    ]
    for label, query in queries.items():
        cells = "  ".join(
            f"{name}: {found[label]['usec']:>9,.1f} us ({found[label]['hits']} hits)"
            for name, found in searches.items()
        )
        lines.append(f"  {label + ' (' + query + ')':<28} {cells}")
    lines += [
        "",
        f"append, server us per one-message call (median of {WINDOW_ROUNDS} rounds of "
        f"{settings.window} calls, the sessions taking turns)",
    ]
    for name, by_size in appends.items():
        cells = "  ".join(f"{int(size):>7,}: {usec:7.1f}" for size, usec in by_size.items())
        lines.append(f"  {name:<10} {cells}")
    if append_ratios:
        cells = "  ".join(f"{int(size):>7,}: {ratio:7.2f}" for size, ratio in append_ratios.items())
        lines.append(f"  {'ratio':<10} {cells}   (index / noindex: median of the rounds' ratios)")
    lines += ["", "slowest single append of those rounds, server ms (SLOWLOG)"]
    for name, longest in slowest.items():
        cells = "  ".join(f"{int(size):>7,}: {usec / 1000:7.2f}" for size, usec in longest.items())
        lines.append(f"  {name:<10} {cells}")
    lines += ["", "memory of the session (3 keys, MEMORY USAGE SAMPLES 0)"]
    for name, figures in memory.items():
        lines.append(
            f"  {name:<10} {figures['bytes']:>12,.0f} bytes  "
            f"JSON {figures['json_bytes']:>12,.0f} bytes  {figures['ratio']:.2f}x"
        )
    lines += ["", "goals"]
    for g in goals:
        value = "-" if g.value is None else f"{g.value:.2f}"
        detail = f"  [{g.detail}]" if g.detail else ""
        lines.append(f"  {g.status:<5} {g.goal}: {value} (target {g.target}){detail}")
    if notes:
        lines += ["", "notes", *[f"  - {note}" for note in notes]]
    return "\n".join(lines)
