"""Concurrent load: several processes appending chat turns to many sessions at once.

Each process builds the store's history object per request (as a web app does), appends
a chat turn (two messages) to a session drawn at random, and records the latency of
every append. All processes start together and stop after a fixed time (bounded in
count too), so the run stops by itself. Throughput is all appends over the wall time.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from .measure import percentile
from .stores import Store

MAX_OPS_PER_PROCESS = 200000


@dataclass(frozen=True)
class LoadPlan:
    """One store's concurrent run: how many processes, sessions and seconds."""

    store: Store
    processes: int
    sessions: int
    seconds: float
    messages: list[BaseMessage]


@dataclass(frozen=True)
class LoadResult:
    """Throughput (turns per second, all processes) and per-turn latency percentiles."""

    turns: int
    turns_per_second: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready fields."""
        return {
            "turns": self.turns,
            "turns_per_second": self.turns_per_second,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


_PLAN: LoadPlan | None = None


def _worker(job: tuple[int, float]) -> tuple[list[float], float]:
    """One process: append turns until the deadline; returns latencies (s) and busy time."""
    worker, start_at = job
    assert _PLAN is not None
    store, plan = _PLAN.store, _PLAN
    rng = random.Random(worker)
    texts = plan.messages
    turns = [texts[i : i + 2] for i in range(0, len(texts) - 1, 2)]
    while time.time() < start_at:
        time.sleep(0.001)
    latencies: list[float] = []
    began = time.perf_counter()
    deadline = began + plan.seconds
    while time.perf_counter() < deadline and len(latencies) < MAX_OPS_PER_PROCESS:
        session = f"load-{rng.randrange(plan.sessions)}"
        turn = turns[rng.randrange(len(turns))]
        t0 = time.perf_counter()
        store.history(session).add_messages(turn)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - began


def run_load(plan: LoadPlan) -> LoadResult:
    """Run the plan with forked worker processes and merge their latencies."""
    global _PLAN
    _PLAN = plan
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 0.3 + 0.05 * plan.processes
    try:
        with context.Pool(plan.processes) as pool:
            results = pool.map(_worker, [(i, start_at) for i in range(plan.processes)])
    finally:
        _PLAN = None
    latencies = [value for values, _ in results for value in values]
    wall = max(busy for _, busy in results)
    return LoadResult(
        turns=len(latencies),
        turns_per_second=len(latencies) / wall if wall else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )
