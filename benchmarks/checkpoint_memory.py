"""Memory, server time and round trips of LangGraph checkpointers over a long agent
conversation: RedisChatSaver against InMemorySaver (the reference) in one run.

Each turn is a human message (~500 B), a tool call, a tool result and an answer
(~500 B), as in issue #19. Run: ``python -m benchmarks.checkpoint_memory [--turns 40]``
(starts its own redis-server).
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, message_to_dict
from langchain_core.tools import tool

TEXT = 480  # characters of each human message and answer


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


def run_conversation(
    saver: Any,
    thread_id: str,
    turns: int,
    *,
    checkpoints: tuple[int, ...],
    measure: Callable[[], int],
    per_turn: Callable[[int], None] | None = None,
) -> dict[int, dict[str, int]]:
    """Run ``turns`` agent turns on ``saver``; at each turn count in ``checkpoints``,
    the memory ``measure`` reports and the messages' JSON bytes."""
    graph = create_agent(_ToolModel(messages=_script(turns)), tools=[lookup], checkpointer=saver)
    config: Any = {"configurable": {"thread_id": thread_id}}
    found: dict[int, dict[str, int]] = {}
    for turn in range(1, turns + 1):
        question = f"question {turn} " + "z" * TEXT
        request: Any = {"messages": [{"role": "user", "content": question}]}
        graph.invoke(request, config)
        if per_turn:
            per_turn(turn)
        if turn in checkpoints:
            state = graph.get_state(config).values["messages"]
            found[turn] = {"memory": measure(), "json": messages_json(state)}
    return found


def breakdown(client: Any, prefix: str) -> dict[str, int]:
    """``MEMORY USAGE`` of each key of a thread by suffix, and the raw bytes of the ``:c``
    hash split into records (``c`` fields) and channel values (``b`` fields)."""
    parts: dict[str, int] = {}
    for key in client.keys(f"{prefix}*"):
        suffix = key.decode().rsplit(":", 1)[-1]
        parts[suffix] = client.memory_usage(key, samples=0) or 0
    records = values = 0
    for field, value in client.hscan_iter(f"{prefix}:c"):
        size = len(field) + len(value)
        if field.startswith(b"c"):
            records += size
        else:
            values += size
    parts["c: records (raw bytes)"] = records
    parts["c: values (raw bytes)"] = values
    return parts


def _commandstats(client: Any) -> tuple[int, int]:
    """(calls, microseconds) of every command so far (INFO commandstats)."""
    stats = client.info("commandstats")
    return (
        sum(v["calls"] for v in stats.values()),
        sum(v["usec"] for v in stats.values()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=40)
    options = parser.parse_args()
    import redis
    from langgraph.checkpoint.memory import InMemorySaver

    from redis_chat_history.checkpoint import RedisChatSaver
    from redis_chat_history.local_server import start_redis, stop_redis

    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        saver = RedisChatSaver(server.url)
        last = [_commandstats(client)]
        client.config_resetstat()
        last = [_commandstats(client)]
        print("RedisChatSaver, per turn: server time (INFO commandstats), commands, memory")
        print(f"{'turn':>4} {'server us':>10} {'commands':>8} {'memory B':>9} {'json B':>8}")

        def report(turn: int) -> None:
            calls, usec = _commandstats(client)
            memory = sum(
                client.memory_usage(k, samples=0) or 0 for k in client.keys("chat:{bench}*")
            )
            print(f"{turn:>4} {usec - last[0][1]:>10} {calls - last[0][0]:>8} {memory:>9}")
            last[0] = _commandstats(client)

        marks = tuple(sorted({10, options.turns}))
        ours = run_conversation(
            saver,
            "bench",
            options.turns,
            checkpoints=marks,
            measure=lambda: sum(
                client.memory_usage(k, samples=0) or 0 for k in client.keys("chat:{bench}*")
            ),
            per_turn=report,
        )
        memory_saver = InMemorySaver()

        def in_memory() -> int:
            parts = (
                {k: dict(v) for k, v in memory_saver.storage.items()},
                dict(memory_saver.writes),
                memory_saver.blobs,
            )
            return len(pickle.dumps(parts))

        reference = run_conversation(
            memory_saver, "bench", options.turns, checkpoints=marks, measure=in_memory
        )
        print("\nturns  saver            memory B   messages JSON B  ratio  per turn B")
        for turn in marks:
            for name, found in (("RedisChatSaver", ours), ("InMemorySaver*", reference)):
                row = found[turn]
                print(
                    f"{turn:>5}  {name:<15} {row['memory']:>9} {row['json']:>16}"
                    f"  {row['memory'] / row['json']:>5.2f}  {row['memory'] // turn:>10}"
                )
        print("* InMemorySaver: bytes of its pickled dicts (it lives in the Python process)")
        print(f"\nRedisChatSaver at {options.turns} turns, by key (MEMORY USAGE ... SAMPLES 0):")
        for name, size in breakdown(client, "chat:{bench}").items():
            print(f"  {name:<24} {size:>9}")
        print("langgraph-checkpoint-plainredis: not measured in this run (needs its own venv)")
    finally:
        stop_redis(server)


if __name__ == "__main__":
    main()
