"""The goals the comparison's numbers must show, checked against a run's rows.

A goal whose comparison store did not run is reported as ``n/a`` with the reason,
never silently passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .workloads import Row


@dataclass(frozen=True)
class Verdict:
    """One goal's outcome: the measured value against the target, PASS, FAIL or n/a."""

    goal: str
    store: str
    value: float | None
    target: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class Rows:
    """Lookup of a run's rows by workload and store."""

    def __init__(self, rows: list[Row]) -> None:
        self._rows = {(row.workload, row.store): row for row in rows}

    def get(self, workload: str, store: str) -> Row | None:
        """The row, or None when that store did not run that workload."""
        return self._rows.get((workload, store))

    def ops(self, workload: str, store: str) -> float | None:
        """Operations per second (median) of a row."""
        row = self.get(workload, store)
        return row.timing.ops_per_second if row and row.timing else None

    def by_work(self, workload: str, store: str, other: str) -> str:
        """The same ratio by client CPU + server time, less sensitive to a busy machine."""
        mine_row, their_row = self.get(workload, store), self.get(workload, other)
        mine = mine_row.work_us if mine_row else None
        theirs = their_row.work_us if their_row else None
        return f"by cpu+server time: {theirs / mine:.2f}x" if mine and theirs else ""


def _verdict(
    goal: str,
    store: str,
    value: float | None,
    target: str,
    passed: Callable[[float], bool],
    missing: str,
    detail: str = "",
) -> Verdict:
    if value is None:
        return Verdict(goal, store, None, target, "n/a", missing)
    return Verdict(goal, store, value, target, "PASS" if passed(value) else "FAIL", detail)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def check_goals(rows: list[Row], ours: str = "ours") -> list[Verdict]:
    """Every goal of the comparison for our store named ``ours``."""
    at = Rows(rows)
    lc_missing = "langchain-community did not run"
    verdicts = [
        _verdict(
            "append one message: throughput vs the floor",
            ours,
            _ratio(at.ops("append_1", ours), at.ops("append_1", "floor")),
            ">= 0.8x",
            lambda v: v >= 0.8,
            "the floor did not run",
            detail=at.by_work("append_1", ours, "floor"),
        ),
        _verdict(
            "append a chat turn: throughput vs langchain-community",
            ours,
            _ratio(at.ops("append_turn", ours), at.ops("append_turn", "langchain-community")),
            ">= 1.5x",
            lambda v: v >= 1.5,
            lc_missing,
            detail=at.by_work("append_turn", ours, "langchain-community"),
        ),
    ]
    turn = at.get("runnable_turn", ours)
    verdicts.append(
        _verdict(
            "RunnableWithMessageHistory turn: Redis commands",
            ours,
            turn.server.commands_per_op if turn and turn.server else None,
            "exactly 2",
            lambda v: abs(v - 2) < 1e-9,
            "the turn did not run",
            detail=_commands(turn),
        )
    )
    lc_turn = at.get("runnable_turn", "langchain-community")
    if lc_turn and lc_turn.server:
        verdicts.append(
            Verdict(
                "RunnableWithMessageHistory turn: Redis commands",
                "langchain-community",
                lc_turn.server.commands_per_op,
                "3+ (for comparison)",
                "info",
                _commands(lc_turn),
            )
        )
    verdicts.append(
        _verdict(
            "read 1,000 messages: throughput vs langchain-community",
            ours,
            _ratio(at.ops("read_1000", ours), at.ops("read_1000", "langchain-community")),
            ">= 1.0x",
            lambda v: v >= 1.0,
            lc_missing + " (or read size 1000 not in the run)",
            detail=at.by_work("read_1000", ours, "langchain-community"),
        )
    )
    latest = at.get("read_latest", ours)
    verdicts.append(
        _verdict(
            "read latest 20 of the large session: server ms",
            ours,
            latest.server.usec_per_op / 1000 if latest and latest.server else None,
            "<= 0.3 ms",
            lambda v: v <= 0.3,
            "not run",
            detail=f"session of {latest.extra.get('session_messages')} messages" if latest else "",
        )
    )
    flat = at.get("append_by_size", ours)
    verdicts.append(
        _verdict(
            "server time per append flat as the session grows (max/min)",
            ours,
            flat.extra.get("max_over_min") if flat else None,
            "<= 1.3x",
            lambda v: v <= 1.3,
            "not run",
            detail=_sizes(flat),
        )
    )
    return verdicts


def _commands(row: Row | None) -> str:
    if row is None or row.server is None:
        return ""
    return ", ".join(f"{name} {calls:g}" for name, calls in row.server.by_command.items())


def _sizes(row: Row | None) -> str:
    if row is None:
        return ""
    values: dict[str, float] = row.extra.get("usec_per_append", {})
    return ", ".join(f"{int(size):,}: {usec:.1f} us" for size, usec in values.items())
