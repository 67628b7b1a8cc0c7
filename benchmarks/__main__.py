"""``python -m benchmarks [search|bounded|checkpoint] [options]`` (what scripts/bench runs,
from the repository root).

Without a mode: the comparison with langchain-community and the raw redis-py floor.
``search``: the search index benchmark (server time, append cost, memory).
``checkpoint``: LangGraph checkpointers per agent turn (:mod:`benchmarks.checkpoint_memory`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .bounded import BoundedSettings, run_bounded_bench
from .compare import run_comparison
from .search_index import SearchSettings, run_search_bench
from .workloads import Settings

_URL_HELP = (
    "Redis to run against (the benchmark's keys are deleted after; its INFO "
    "commandstats are reset). Default: a throwaway local redis-server."
)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("sizes must be positive integers")
    return sizes


@click.command(name="bench")
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--full", is_flag=True, help="More repeats, longer rounds and load (a few minutes).")
@click.option("--repeats", type=click.IntRange(1, 100), default=None, help="Rounds per workload.")
@click.option(
    "--min-seconds", type=click.FloatRange(0, 60), default=None, help="Least time of one round."
)
@click.option(
    "--sizes",
    default="100,1000,10000",
    show_default=True,
    help="Session sizes of the whole-session reads.",
)
@click.option(
    "--latest-size",
    type=click.IntRange(21, 10_000_000),
    default=100000,
    show_default=True,
    help="Messages in the session whose latest 20 are read.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes of the concurrent load (default 2; 4 with --full).",
)
@click.option(
    "--sessions",
    type=click.IntRange(1, 10_000_000),
    default=1000,
    show_default=True,
    help="Sessions the concurrent load appends to.",
)
@click.option(
    "--load-seconds",
    type=click.FloatRange(0.1, 600),
    default=None,
    help="Seconds of concurrent load per store (default 1; 3 with --full).",
)
@click.option("--no-load", is_flag=True, help="Skip the concurrent load.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for bench.json, bench.txt and bench.png.",
)
@click.option("--no-chart", is_flag=True, help="Do not draw the PNG chart.")
@click.option(
    "--peers",
    is_flag=True,
    help="Also langchain-redis and langgraph-checkpoint-redis (their own virtualenv, "
    ".venv-peers), every store on Valkey with RediSearch and RedisJSON (scripts/bench "
    "installs them).",
)
def compare_command(
    url: str | None,
    full: bool,
    repeats: int | None,
    min_seconds: float | None,
    sizes: str,
    latest_size: int,
    processes: int | None,
    sessions: int,
    load_seconds: float | None,
    no_load: bool,
    out: Path,
    no_chart: bool,
    peers: bool,
) -> None:
    """Benchmark redis-chat-history against langchain-community and the raw redis-py floor.

    `bench search --help`: the benchmark of the library's search index.
    """
    settings = Settings(
        repeats=repeats or (9 if full else 5),
        min_seconds=min_seconds if min_seconds is not None else (0.25 if full else 0.08),
        read_sizes=_sizes(sizes),
        latest_size=latest_size,
        processes=processes or (4 if full else 2),
        load_sessions=sessions,
        load_seconds=load_seconds or (3.0 if full else 1.0),
        window=384 if full else 192,
    )
    run_comparison(
        url, settings, out, chart=not no_chart, load=not no_load, echo=click.echo, peers=peers
    )


@click.command(name="bench search")
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--full", is_flag=True, help="Also measure appends at 100,000 messages; more calls.")
@click.option(
    "--messages",
    type=click.IntRange(100, 1_000_000),
    default=10000,
    show_default=True,
    help="Messages in the searched session.",
)
@click.option(
    "--sizes",
    default=None,
    help="Session sizes of the append windows (default 1000,10000; with --full 1000,10000,100000).",
)
@click.option(
    "--calls",
    type=click.IntRange(1, 100000),
    default=None,
    help="Calls per measured search (default 20; 100 with --full).",
)
@click.option(
    "--window",
    type=click.IntRange(1, 100000),
    default=320,
    show_default=True,
    help="One-message appends per round (7 rounds) at each session size.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for search.json and search.txt.",
)
def search_command(
    url: str | None,
    full: bool,
    messages: int,
    sizes: str | None,
    calls: int | None,
    window: int,
    out: Path,
) -> None:
    """Benchmark the library's search index: search time, append cost, memory."""
    default_sizes = "1000,10000,100000" if full else "1000,10000"
    settings = SearchSettings(
        messages=messages,
        window_sizes=_sizes(sizes or default_sizes),
        calls=calls or (100 if full else 20),
        window=window,
    )
    run_search_bench(url, settings, out, echo=click.echo)


@click.command(name="bench bounded")
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--full", is_flag=True, help="Sizes up to 1,000,000 messages, more repeats.")
@click.option("--sizes", default=None, help="Session sizes (default 1000,10000,100000).")
@click.option(
    "--neighbour-seconds",
    type=click.FloatRange(0, 600),
    default=None,
    help="Seconds of the neighbour load per store (0 skips it; default 3, 10 with --full).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for bounded.json and bounded.txt.",
)
def bounded_command(
    url: str | None, full: bool, sizes: str | None, neighbour_seconds: float | None, out: Path
) -> None:
    """The worst call of every function, a neighbour's latency, append and read costs."""
    default_sizes = "1000,10000,100000,1000000" if full else "1000,10000,100000"
    settings = BoundedSettings(
        sizes=_sizes(sizes or default_sizes),
        repeats=5 if full else 3,
        neighbour_seconds=neighbour_seconds
        if neighbour_seconds is not None
        else (10.0 if full else 3.0),
    )
    run_bounded_bench(url, settings, out, echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the comparison, or to the benchmark the first word names (``search``,
    ``bounded``, ``checkpoint``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["search"]:
        search_command.main(args[1:], prog_name="bench search")
    elif args[:1] == ["bounded"]:
        bounded_command.main(args[1:], prog_name="bench bounded")
    elif args[:1] == ["checkpoint"]:
        # Imported here: it needs langchain and langgraph, which the other modes do not.
        from .checkpoint_memory import main as checkpoint_main

        checkpoint_main(args[1:])
    else:
        compare_command.main(args, prog_name="bench")


if __name__ == "__main__":
    main()
