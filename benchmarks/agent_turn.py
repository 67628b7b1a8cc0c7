"""Commands per agent turn: ChatHistoryMiddleware against create_agent with InMemorySaver.

Runs ``create_agent`` on the offline model (a turn without tools, and one whose AI message
calls two tools in parallel) on a throwaway redis-server, and counts per turn:

- for :class:`ChatHistoryMiddleware`: the FCALL / FCALL_RO calls the server received
  (``INFO commandstats``) and every Redis command run, those inside the functions included;
- for LangGraph's ``InMemorySaver`` (the reference: the memory create_agent is shown with):
  its checkpointer calls (``get_tuple``, ``put``, ``put_writes``), each of which a Redis- or
  database-backed saver turns into at least one round trip.

Usage: ``python -m benchmarks.agent_turn [--turns N]`` (needs the agents extra).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis
from langchain.agents import create_agent
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver

from redis_chat_history.agents import ChatHistoryMiddleware
from redis_chat_history.local_server import local_redis
from redis_chat_history.offline_model import TOOLS, OfflineChatModel

QUESTIONS = {"no tools": "Hi, my name is Alice.", "two tool calls": "What is 2 + 3 and 4 * 5?"}


class CountingSaver(InMemorySaver):
    """InMemorySaver that counts the calls a create_agent run makes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def get_tuple(self, config: RunnableConfig) -> Any:
        self.calls["get_tuple"] += 1
        return super().get_tuple(config)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self.calls["put"] += 1
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.calls["put_writes"] += 1
        super().put_writes(config, writes, task_id, task_path)


def _commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    )


def measure(turns: int) -> dict[str, Any]:
    """Average commands (or checkpointer calls) per turn, for each kind of turn."""
    results: dict[str, Any] = {}
    tools = list(TOOLS.values())
    with local_redis() as server:
        client = redis.Redis.from_url(server.url)
        ours = create_agent(
            OfflineChatModel(), tools, middleware=[ChatHistoryMiddleware(server.url)]
        )
        saver = CountingSaver()
        reference = create_agent(OfflineChatModel(), tools, checkpointer=saver)
        warm: Any = {"configurable": {"thread_id": "warm-up"}}
        hello: Any = {"messages": [{"role": "user", "content": "Hello"}]}
        ours.invoke(hello, warm)  # loads the library
        for kind, question in QUESTIONS.items():
            client.config_resetstat()
            saver.calls.clear()
            for turn in range(turns):
                config: Any = {"configurable": {"thread_id": f"{kind}-{turn % 4}"}}
                message: Any = {"messages": [{"role": "user", "content": question}]}
                ours.invoke(message, config)
                reference.invoke(message, config)
            commands = _commands(client)
            commands.pop("config|resetstat", None)
            commands.pop("config", None)
            functions = commands["fcall"] + commands["fcall_ro"]
            results[kind] = {
                "chat_history": {
                    "FCALL_RO": commands["fcall_ro"] / turns,
                    "FCALL": commands["fcall"] / turns,
                    "round trips": functions / turns,
                    "commands, inside the functions too": sum(commands.values()) / turns,
                },
                "InMemorySaver": {
                    name: count / turns for name, count in sorted(saver.calls.items())
                }
                | {"calls": sum(saver.calls.values()) / turns},
            }
        client.close()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Print the per-turn counts as a table and as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="turns of each kind (default 20)")
    args = parser.parse_args(argv)
    results = measure(args.turns)
    for kind, counts in results.items():
        print(f"turn with {kind}:")
        for store, numbers in counts.items():
            shown = ", ".join(f"{name} {value:g}" for name, value in numbers.items())
            print(f"  {store:13} {shown}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
