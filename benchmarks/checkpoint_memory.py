"""Memory, server time and round trips of LangGraph checkpointers over a long agent
conversation, turn by turn: RedisChatSaver (with and without a search index),
langgraph-checkpoint-plainredis's RedisSaver and InMemorySaver (the reference) in one run, on
the same conversation.

Each turn is a human message (~500 B), a tool call, a tool result and an answer (~500 B),
as in issue #19, driven through ``create_agent`` with a scripted model. Each Redis saver
gets a throwaway redis-server of its own, so that the sum of ``MEMORY USAGE key SAMPLES 0``
over every key is exactly its keys and INFO commandstats are exactly its commands.
Writes a plot of memory against turns (``docs/checkpoint_memory.png`` unless ``--out``).

Run: ``bash scripts/bench checkpoint [--turns 40]`` (installs langgraph-checkpoint-plainredis
into .venv), or ``python -m benchmarks.checkpoint_memory [--turns 40]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, message_to_dict
from langchain_core.tools import tool

from redis_chat_history.local_server import start_redis, stop_redis

TEXT = 480  # characters of each human message and answer
THREAD = "bench"
PLAINREDIS = "langgraph-checkpoint-plainredis"
DEFAULT_PLOT = Path(__file__).resolve().parent.parent / "docs" / "checkpoint_memory.png"
#: Turn counts the summary reports (with the last turn).
SUMMARY_TURN = 10

#: The commands RedisChatSaver sends; every other command in commandstats ran inside its
#: functions (FCALL's time already includes theirs).
OURS_SENT = frozenset({"fcall", "fcall_ro", "function|load", "hello", "client|setinfo"})
#: The commands plainredis 0.1.0 only sends queued in MULTI/EXEC (put and put_writes): they
#: count as commands, but their time is already in EXEC's.
PLAINREDIS_QUEUED = frozenset({"set", "zadd", "hset", "expire", "del", "hdel"})
#: The harness's own commands inside a turn's window (the INFO read before it), never a
#: saver's. Its reads of memory and messages come between windows.
HARNESS = frozenset({"info", "config|resetstat"})


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"result for {query}: " + "r" * 200


class _ToolModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> _ToolModel:
        return self


def _script(turns: int) -> Iterator[AIMessage]:
    for turn in range(turns):
        call = {"name": "lookup", "args": {"query": f"q{turn}"}, "id": f"call_{turn}"}
        yield AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}])
        yield AIMessage(content=f"answer {turn} " + "y" * TEXT)


def messages_json(messages: list[Any]) -> int:
    """Bytes of the messages' own stored JSON."""
    return sum(
        len(json.dumps(message_to_dict(m), separators=(",", ":")).encode()) for m in messages
    )


class Conversation:
    """The benchmark's agent on one saver: ``create_agent`` with the scripted model and the
    ``lookup`` tool, one thread. Every saver replays exactly the same turns."""

    def __init__(self, saver: Any, turns: int) -> None:
        model = _ToolModel(messages=_script(turns))
        self.graph = create_agent(model, tools=[lookup], checkpointer=saver)
        self.config: Any = {"configurable": {"thread_id": THREAD}}

    def turn(self, number: int) -> None:
        """One agent turn: the question, the tool call, its result and the answer."""
        question = f"question {number} " + "z" * TEXT
        self.graph.invoke({"messages": [{"role": "user", "content": question}]}, self.config)

    def json_bytes(self) -> int:
        """Bytes of the JSON of the thread's messages so far (read from the saver)."""
        return messages_json(self.graph.get_state(self.config).values["messages"])


@dataclass(frozen=True)
class Turn:
    """One saver after one turn: its memory and the messages' JSON (bytes); for a Redis
    saver also what the turn cost the server (µs, commands) and the client (round trips)."""

    turn: int
    memory: int
    json: int
    server_us: int | None = None
    commands: int | None = None
    round_trips: int | None = None


@dataclass
class Result:
    """A saver's turns; ``parts`` splits a Redis saver's memory at the last turn by key kind."""

    name: str
    turns: list[Turn] = field(default_factory=list)
    parts: dict[str, int] = field(default_factory=dict)


class RoundTrips:
    """Counts the requests redis-py writes to its sockets: one per command, one per
    pipeline (all its commands go in one write), so one per round trip.

    Patches ``AbstractConnection.send_packed_command`` while the ``with`` block runs.
    """

    def __init__(self) -> None:
        self.count = 0
        self._original: Any = None

    def __enter__(self) -> RoundTrips:
        connection: Any = importlib.import_module("redis.connection").AbstractConnection
        self._original = original = connection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> Any:
            self.count += 1
            return original(conn, command, check_health)

        connection.send_packed_command = counted
        return self

    def __exit__(self, *exc: object) -> None:
        importlib.import_module(
            "redis.connection"
        ).AbstractConnection.send_packed_command = self._original


@dataclass(frozen=True)
class RedisSaverSpec:
    """How to make a Redis saver and read its commandstats.

    ``sent``: the commandstats names the client sends (the rest ran inside a function).
    ``timed``: the names whose ``usec`` is the saver's server time without counting a
    command twice (FCALL's and EXEC's time include the commands they run).
    ``parts``: the breakdown of the server's memory at the last turn.
    """

    name: str
    make: Callable[[str], Any]
    sent: Callable[[str], bool]
    timed: Callable[[str], bool]
    parts: Callable[[Any], dict[str, int]]


def _command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """INFO commandstats as ``{command: (calls, usec)}``, the harness's commands left out."""
    raw: dict[str, Any] = client.info("commandstats")
    stats = {name.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for name, v in raw.items()}
    return {name: value for name, value in stats.items() if name not in HARNESS}


def _delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], spec: RedisSaverSpec
) -> tuple[int, int]:
    """(commands sent, server µs) between two commandstats snapshots."""
    calls = usec = 0
    for name, (n, us) in after.items():
        n0, us0 = before.get(name, (0, 0))
        if spec.sent(name):
            calls += n - n0
        if spec.timed(name):
            usec += us - us0
    return calls, usec


def _memory(client: Any) -> int:
    """Sum of ``MEMORY USAGE key SAMPLES 0`` over every key of the server."""
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(count=1000))


def _parts(client: Any, kind: Callable[[str], str]) -> dict[str, int]:
    """``MEMORY USAGE`` summed by key kind, largest first."""
    parts: dict[str, int] = {}
    for key in client.scan_iter(count=1000):
        name = kind(key.decode())
        parts[name] = parts.get(name, 0) + (client.memory_usage(key, samples=0) or 0)
    return dict(sorted(parts.items(), key=lambda item: -item[1]))


def measure_redis_saver(spec: RedisSaverSpec, turns: int) -> Result:
    """Run the conversation on ``spec``'s saver against a fresh redis-server of its own;
    after each turn, what the turn cost and the memory of all the server's keys."""
    result = Result(spec.name)
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        conversation = Conversation(spec.make(server.url), turns)
        client.config_resetstat()
        with RoundTrips() as trips:
            for number in range(1, turns + 1):
                before = _command_stats(client)
                start = trips.count
                conversation.turn(number)
                round_trips = trips.count - start
                commands, usec = _delta(before, _command_stats(client), spec)
                memory = _memory(client)
                row = Turn(number, memory, conversation.json_bytes(), usec, commands, round_trips)
                result.turns.append(row)
        result.parts = spec.parts(client)
        client.close()
    finally:
        stop_redis(server)
    return result


def measure_in_memory(turns: int) -> Result:
    """The reference: InMemorySaver, its memory as the bytes of its pickled dicts (it
    lives in the Python process: no server time, no round trips)."""
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    conversation = Conversation(saver, turns)
    result = Result("InMemorySaver")
    for number in range(1, turns + 1):
        conversation.turn(number)
        parts = ({k: dict(v) for k, v in saver.storage.items()}, dict(saver.writes), saver.blobs)
        result.turns.append(Turn(number, len(pickle.dumps(parts)), conversation.json_bytes()))
    return result


def _ours_parts(client: Any) -> dict[str, int]:
    """RedisChatSaver's memory by key suffix, and the raw bytes of the ``:c`` hash split into
    records (``c`` fields) and channel values (``b`` fields)."""
    parts = _parts(client, lambda key: ":" + key.rsplit(":", 1)[-1])
    records = values = 0
    for key in client.scan_iter(match="*:c", count=1000):
        for name, value in client.hscan_iter(key):
            if name.startswith(b"c"):
                records += len(name) + len(value)
            else:
                values += len(name) + len(value)
    parts[":c records (raw bytes)"] = records
    parts[":c values (raw bytes)"] = values
    return parts


def _plainredis_kind(key: str) -> str:
    """``cp``, ``wr``, ``idx``... of ``lg:cp:...``; ``blob:<channel>`` for a blob."""
    parts = key.split(":")
    return ":".join(parts[1:2] + parts[4:5]) if parts[1:2] == ["blob"] else parts[1]


def ours_spec(search_index: bool = True) -> RedisSaverSpec:
    """RedisChatSaver: one FCALL per put, put_writes and read (``search_index=False``: its
    threads keep no search index)."""
    from redis_chat_history.checkpoint import RedisChatSaver

    return RedisSaverSpec(
        "RedisChatSaver" if search_index else "RedisChatSaver noindex",
        make=lambda url: RedisChatSaver(url, search_index=search_index),
        sent=lambda name: name in OURS_SENT,
        timed=lambda name: name in OURS_SENT,
        parts=_ours_parts,
    )


def plainredis_spec() -> RedisSaverSpec | str:
    """langgraph-checkpoint-plainredis's sync ``RedisSaver(url=...)``, or why not."""
    try:
        module: Any = importlib.import_module("langgraph_checkpoint_plainredis")
    except ImportError:
        return f"{PLAINREDIS} is not installed (`bash scripts/bench checkpoint` installs it)"
    return RedisSaverSpec(
        f"plainredis {metadata.version(PLAINREDIS)}",
        make=lambda url: module.RedisSaver(url=url),
        sent=lambda name: True,
        timed=lambda name: name not in PLAINREDIS_QUEUED,
        parts=lambda client: _parts(client, _plainredis_kind),
    )


def _kb(value: int) -> str:
    return f"{value / 1024:.1f}"


def _cell(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def print_turns(results: Sequence[Result]) -> None:
    """One line per turn: the messages' JSON, then each saver's server µs, round trips,
    commands and memory (KB)."""
    print("Per turn. us: server time (INFO commandstats); rt: round trips; cmd: commands sent;")
    print("KB: MEMORY USAGE SAMPLES 0 of all its keys (InMemorySaver: its dicts, pickled)")
    names = f"{'':>13}" + "".join(f" | {result.name[:24]:<24}" for result in results)
    columns = f"{'turn':>4} {'json KB':>8}" + f" | {'us':>6} {'rt':>3} {'cmd':>4} {'KB':>8}" * len(
        results
    )
    print(names)
    print(columns)
    for index, first in enumerate(results[0].turns):
        line = f"{first.turn:>4} {_kb(first.json):>8}"
        for result in results:
            row = result.turns[index]
            line += (
                f" | {_cell(row.server_us):>6} {_cell(row.round_trips):>3}"
                f" {_cell(row.commands):>4} {_kb(row.memory):>8}"
            )
        print(line)


def _median(values: Sequence[int | None]) -> str:
    present = [value for value in values if value is not None]
    return f"{statistics.median(present):g}" if present else "n/a"


def summary_turns(turns: int) -> tuple[int, ...]:
    """The turn counts the summary reports: 10 (or fewer, if the run is shorter) and the last."""
    return tuple(sorted({min(SUMMARY_TURN, turns), turns}))


def print_summary(results: Sequence[Result]) -> None:
    """At 10 turns and at the last: memory, its ratio to the messages' JSON, memory per
    turn, the growth of that turn; then per-turn medians and the linearity ratio."""
    marks = summary_turns(len(results[0].turns))
    print(
        f"\n{'turns':>5}  {'saver':<30} {'memory B':>10} {'JSON B':>8} {'ratio':>6}"
        f" {'B/turn':>8} {'+B this turn':>12}"
    )
    for mark in marks:
        for result in results:
            row = result.turns[mark - 1]
            growth = row.memory - result.turns[mark - 2].memory if mark > 1 else row.memory
            print(
                f"{mark:>5}  {result.name:<30} {row.memory:>10} {row.json:>8}"
                f" {row.memory / row.json:>6.2f} {row.memory // mark:>8} {growth:>12}"
            )
    first, last = marks[0], marks[-1]
    print(
        f"\n{'saver':<30} {'linearity':>9} {'us/turn':>8} {'rt/turn':>8} {'cmd/turn':>8}"
        f"   (linearity: B/turn at {last} / B/turn at {first}; 1 = linear; medians over turns)"
    )
    for result in results:
        at = {row.turn: row.memory for row in result.turns}
        ratio = f"{(at[last] / last) / (at[first] / first):.2f}" if last != first else "n/a"
        print(
            f"{result.name:<30} {ratio:>9} {_median([r.server_us for r in result.turns]):>8}"
            f" {_median([r.round_trips for r in result.turns]):>8}"
            f" {_median([r.commands for r in result.turns]):>8}"
        )


def print_parts(results: Sequence[Result]) -> None:
    """Each Redis saver's memory at the last turn by key kind (MEMORY USAGE, bytes)."""
    for result in results:
        if result.parts:
            print(f"\n{result.name} at the last turn, MEMORY USAGE by key kind:")
            for name, size in result.parts.items():
                print(f"  {name:<28} {size:>10}")


def check_same_conversation(results: Sequence[Result]) -> None:
    """Warn when a saver's thread does not read back the reference's messages."""
    reference = [row.json for row in results[-1].turns]
    for result in results:
        if [row.json for row in result.turns] != reference:
            print(f"warning: {result.name} reads back other messages than the reference")


def plot(results: Sequence[Result], out: Path) -> str:
    """Memory (KB, log scale) against turns for every saver and the messages' JSON, to
    ``out``; what was written, or why nothing was (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        return f"no plot: matplotlib is not installed ({error}); pip install matplotlib"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        turns = [row.turn for row in result.turns]
        axes.plot(turns, [row.memory / 1024 for row in result.turns], marker=".", label=result.name)
    reference = results[-1].turns
    axes.plot(
        [row.turn for row in reference],
        [row.json / 1024 for row in reference],
        linestyle="--",
        color="black",
        label="messages' JSON",
    )
    axes.set_yscale("log")
    axes.set_xlabel("agent turns (human, tool call, tool result, answer)")
    axes.set_ylabel("memory (KB, log scale)")
    axes.set_title("Checkpointer memory over a create_agent conversation")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return f"plot: {out}"


def run(turns: int) -> list[Result]:
    """Every saver on the same conversation; those that could not run are printed and left
    out. The reference (InMemorySaver) comes last."""
    specs: list[RedisSaverSpec | str] = [ours_spec(), ours_spec(False), plainredis_spec()]
    results: list[Result] = []
    for spec in specs:
        if isinstance(spec, str):
            print(f"not measured: {spec}")
            continue
        results.append(measure_redis_saver(spec, turns))
    results.append(measure_in_memory(turns))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run every saver, print the tables and write the plot."""
    parser = argparse.ArgumentParser(
        prog="bench checkpoint", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=40, help="agent turns (default 40)")
    parser.add_argument("--out", type=Path, default=DEFAULT_PLOT, help="the plot's PNG path")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot")
    options = parser.parse_args(argv)
    if options.turns < 1:
        parser.error("--turns must be at least 1")
    results = run(options.turns)
    check_same_conversation(results)
    print_turns(results)
    print_summary(results)
    print_parts(results)
    if not options.no_plot:
        print("\n" + plot(results, options.out))


if __name__ == "__main__":
    main()
