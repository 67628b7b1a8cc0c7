"""Output of a comparison run: a table for people, JSON for machines, a PNG chart of the ratios."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .goals import Verdict
from .workloads import Row

TITLES = {
    "append_1": "append 1 message",
    "append_turn": "append a chat turn (2 messages)",
    "runnable_turn": "RunnableWithMessageHistory turn",
    "read_latest": "read latest 20 of the large session",
    "search": "search (latest 10 hits)",
}
CHARTED = (
    "append_1",
    "append_turn",
    "runnable_turn",
    "read_100",
    "read_1000",
    "read_10000",
    "read_latest",
)


def title(workload: str) -> str:
    """A workload's name for people."""
    if workload.startswith("read_") and workload[5:].isdigit():
        return f"read whole session of {int(workload[5:]):,}"
    return TITLES.get(workload, workload)


def _floor(rows: Sequence[Row], row: Row) -> Row | None:
    return next((r for r in rows if r.workload == row.workload and r.store == "floor"), None)


def floor_ratio(rows: Sequence[Row], row: Row) -> float | None:
    """``row``'s throughput as a multiple of the floor's on the same workload."""
    floor = _floor(rows, row)
    if floor is None or floor.timing is None or row.timing is None:
        return None
    return floor.timing.median_us / row.timing.median_us


def floor_work_ratio(rows: Sequence[Row], row: Row) -> float | None:
    """The floor's work per operation over ``row``'s (above 1: less work than the floor)."""
    floor_row = _floor(rows, row)
    floor, own = floor_row.work_us if floor_row else None, row.work_us
    return floor / own if floor is not None and own else None


def row_dict(rows: Sequence[Row], row: Row) -> dict[str, Any]:
    """One row as JSON-ready fields."""
    out: dict[str, Any] = {"workload": row.workload, "store": row.store}
    if row.timing:
        out.update(
            median_us=row.timing.median_us,
            min_us=row.timing.min_us,
            max_us=row.timing.max_us,
            ops_per_second=row.timing.ops_per_second,
            operations=row.timing.operations,
            ratio_to_floor=floor_ratio(rows, row),
            client_cpu_us=row.timing.cpu_us,
            work_us=row.work_us,
            work_ratio_to_floor=floor_work_ratio(rows, row),
        )
    if row.server:
        out.update(
            server_usec_per_op=row.server.usec_per_op,
            commands_per_op=row.server.commands_per_op,
            commands=row.server.by_command,
        )
    out.update(row.extra)
    return out


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def timing_table(rows: Sequence[Row]) -> str:
    """The timed workloads: one line per store, grouped by workload."""
    head = (
        f"{'workload / store':<34} {'median us':>11} {'ops/s':>8} {'x floor':>8} "
        f"{'server us':>10} {'cpu+srv us':>11} {'x floor':>8} {'cmds':>5}"
    )
    lines = [head, "-" * len(head)]
    last = ""
    for row in rows:
        if row.timing is None:
            continue
        if row.workload != last:
            lines.append(title(row.workload))
            last = row.workload
        ratio, work_ratio = floor_ratio(rows, row), floor_work_ratio(rows, row)
        server = row.server
        lines.append(
            f"  {row.store:<32} {row.timing.median_us:>11,.1f} {row.timing.ops_per_second:>8,.0f} "
            f"{_fmt(ratio, '.2f') + 'x' if ratio else '-':>8} "
            f"{_fmt(server.usec_per_op if server else None):>10} "
            f"{_fmt(row.work_us):>11} "
            f"{_fmt(work_ratio, '.2f') + 'x' if work_ratio else '-':>8} "
            f"{_fmt(server.commands_per_op if server else None, '.1f'):>5}"
        )
    return "\n".join(lines)


def extra_tables(rows: Sequence[Row], load: dict[str, dict[str, Any]]) -> str:
    """Memory per message, append server time by session size, and concurrent load."""
    lines = ["", f"{'memory per message (10k session)':<34} {'bytes':>10} {'x JSON':>8}"]
    for row in rows:
        if row.workload == "memory":
            lines.append(
                f"  {row.store:<32} {row.extra['bytes_per_message']:>10,.0f} "
                f"{row.extra['ratio_to_json']:>7.2f}x"
            )
    lines += ["", "server us per 1-message append, by session size"]
    for row in rows:
        if row.workload == "append_by_size":
            sizes = "  ".join(
                f"{int(s):>7,}: {u:6.1f}" for s, u in row.extra["usec_per_append"].items()
            )
            lines.append(f"  {row.store:<32} {sizes}   (max/min {row.extra['max_over_min']:.2f})")
    if load:
        lines += [
            "",
            f"{'concurrent appends of a turn':<34} {'turns/s':>10} {'p50 ms':>8} {'p99 ms':>8}",
        ]
        for store, result in load.items():
            lines.append(
                f"  {store:<32} {result['turns_per_second']:>10,.0f} "
                f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f}"
            )
    return "\n".join(lines)


def goals_table(verdicts: Sequence[Verdict]) -> str:
    """Goals with PASS / FAIL / n/a, the measured value and the target."""
    lines = ["", "goals (medians)"]
    for v in verdicts:
        value = "-" if v.value is None else f"{v.value:.2f}"
        detail = f"  [{v.detail}]" if v.detail else ""
        lines.append(f"  {v.status:<5} {v.goal} ({v.store}): {value} (target {v.target}){detail}")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the run's JSON document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def write_chart(path: Path, rows: Sequence[Row], stores: Sequence[str]) -> str | None:
    """A PNG bar chart of throughput relative to the floor; returns why not, if it could not."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        pyplot: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "no chart: matplotlib is not installed (`pip install .[bench]`)"
    workloads = [w for w in CHARTED if any(r.workload == w for r in rows)]
    shown = [s for s in stores if s != "floor"]
    figure, axes = pyplot.subplots(figsize=(11, 5))
    width = 0.8 / max(1, len(shown))
    for i, store in enumerate(shown):
        values = []
        for workload in workloads:
            row = next((r for r in rows if r.workload == workload and r.store == store), None)
            values.append((floor_ratio(rows, row) or 0.0) if row else 0.0)
        positions = [x + (i - (len(shown) - 1) / 2) * width for x in range(len(workloads))]
        axes.bar(positions, values, width, label=store)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="floor (raw redis-py)")
    axes.set_xticks(
        range(len(workloads)), [title(w) for w in workloads], rotation=20, ha="right", fontsize=8
    )
    axes.set_ylabel("throughput / floor's (higher is better)")
    axes.set_title("redis-chat-history vs alternatives (median of repeats, same server)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None
