"""Timing and server-side measurements: medians of repeats, INFO commandstats, memory.

Client time is wall-clock time per operation, the median over repeats (each repeat runs
the operation until a minimum time has passed). Server time and command counts come
from INFO commandstats after CONFIG RESETSTAT, so they cover exactly the operations
measured: ``usec`` of a command counts the time the server spent executing it (for
FCALL, the whole function including the commands it runs inside).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import redis

from .stores import Store


@dataclass
class Timing:
    """Client-side time of one operation: median over repeats, with the spread."""

    median_us: float
    min_us: float
    max_us: float
    operations: int
    #: Client CPU time per operation (median): unlike wall time, not inflated when other
    #: processes hold the CPU.
    cpu_us: float = 0.0

    @property
    def ops_per_second(self) -> float:
        """Operations per second at the median time."""
        return 1e6 / self.median_us if self.median_us else 0.0


@dataclass
class ServerCost:
    """Commands sent and server time used per operation, from INFO commandstats."""

    commands_per_op: float
    usec_per_op: float
    by_command: dict[str, float] = field(default_factory=dict)


def time_operation(
    operation: Callable[[], Any], repeats: int, min_seconds: float, max_ops: int = 100000
) -> Timing:
    """Run ``operation`` in ``repeats`` rounds of at least ``min_seconds`` each (at least once)."""
    per_op: list[float] = []
    cpu: list[float] = []
    total = 0
    for _ in range(repeats):
        count = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        elapsed = 0.0
        while count == 0 or (elapsed < min_seconds and count < max_ops):
            operation()
            count += 1
            elapsed = time.perf_counter() - start
        per_op.append(elapsed / count * 1e6)
        cpu.append((time.process_time() - cpu_start) / count * 1e6)
        total += count
    return Timing(
        statistics.median(per_op), min(per_op), max(per_op), total, statistics.median(cpu)
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``values`` (nearest rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


#: A one-function library that runs a full Lua garbage collection. Functions share one
#: Lua VM, so garbage left by an earlier workload (a 10,000-message read makes tens of
#: MB) would otherwise be collected, a step every 50 calls, during the next one.
GC_LIBRARY = "chathistbench"
_GC_SOURCE = (
    f"#!lua name={GC_LIBRARY}\n"
    "redis.register_function('chathistbench_gc', function() collectgarbage('collect') return 1 end)"
)


def load_gc_helper(client: redis.Redis) -> bool:
    """Load the garbage-collection helper library; False if the server refuses it."""
    try:
        client.function_load(_GC_SOURCE, replace=True)
    except redis.ResponseError:
        return False
    return True


def reset_stats(client: redis.Redis) -> None:
    """Start a measured round: collect the Lua garbage, then zero INFO commandstats."""
    with suppress(redis.ResponseError):  # helper not loaded: rounds pay for earlier garbage
        client.fcall("chathistbench_gc", 0)
    client.config_resetstat()


def command_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """INFO commandstats as ``{command: {"calls": n, "usec": t}}`` (``cmdstat_`` dropped)."""
    raw: dict[str, Any] = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for name, v in raw.items()
    }


def server_cost(client: redis.Redis, store: Store, operations: int) -> ServerCost:
    """The store's commands and server time per operation since the last reset."""
    stats = {name: v for name, v in command_stats(client).items() if store.counts(name)}
    operations = max(1, operations)
    return ServerCost(
        commands_per_op=sum(v["calls"] for v in stats.values()) / operations,
        usec_per_op=sum(v["usec"] for v in stats.values()) / operations,
        by_command={name: v["calls"] / operations for name, v in sorted(stats.items())},
    )


@dataclass(frozen=True)
class Job:
    """An operation of one store to time: at most ``max_ops`` calls per round."""

    store: Store
    operation: Callable[[], Any]
    max_ops: int = 100000


def measure_interleaved(
    client: redis.Redis, jobs: Sequence[Job], repeats: int, min_seconds: float
) -> list[tuple[Timing, ServerCost]]:
    """Client time and server cost of each job, the jobs' rounds taking turns.

    Round 1 of every job, then round 2 of every job, and so on: the load of a shared
    machine drifts over all stores alike. Stats are reset before each round; each
    figure is the median over rounds, so a round in which another process took the
    CPU does not skew it.
    """
    rounds: list[list[Timing]] = [[] for _ in jobs]
    costs: list[list[ServerCost]] = [[] for _ in jobs]
    for _ in range(repeats):
        for i, job in enumerate(jobs):
            reset_stats(client)
            rounds[i].append(time_operation(job.operation, 1, min_seconds, job.max_ops))
            costs[i].append(server_cost(client, job.store, rounds[i][-1].operations))
    results: list[tuple[Timing, ServerCost]] = []
    for timings, job_costs in zip(rounds, costs, strict=True):
        per_op = [r.median_us for r in timings]
        timing = Timing(
            statistics.median(per_op),
            min(per_op),
            max(per_op),
            sum(r.operations for r in timings),
            statistics.median(r.cpu_us for r in timings),
        )
        middle = sorted(job_costs, key=lambda cost: cost.usec_per_op)[len(job_costs) // 2]
        results.append((timing, middle))
    return results


def median_usec(
    client: redis.Redis, counts: Callable[[str], bool], action: Callable[[], int], rounds: int
) -> float:
    """Median over ``rounds`` of the server usec per call during ``action``.

    ``action`` runs the calls of one round and returns how many it made; ``counts``
    says which commandstats names are its work.
    """
    values: list[float] = []
    for _ in range(max(1, rounds)):
        reset_stats(client)
        calls = action()
        stats = command_stats(client)
        usec = sum(value["usec"] for name, value in stats.items() if counts(name))
        values.append(usec / max(1, calls))
    return statistics.median(values)


def memory_usage(client: redis.Redis, keys: Sequence[str]) -> int:
    """Bytes the keys use (MEMORY USAGE with SAMPLES 0: every element counted)."""
    total = 0
    for key in keys:
        used = client.memory_usage(key, samples=0)
        total += int(used or 0)
    return total


def library_version(client: redis.Redis) -> str | None:
    """The chathist library's version on the server, or None when it is not loaded."""
    try:
        value = client.fcall_ro("chathist_version", 0)
    except redis.ResponseError:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
