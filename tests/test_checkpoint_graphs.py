"""RedisChatSaver under real LangGraph graphs, on a real Redis: agents, interrupts,
time travel, subgraphs, failed steps, concurrent threads, memory."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
import redis

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents", reason="the agents extra (langchain >= 1.5)")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

from redis_chat_history import RedisChatMessageHistory
from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history.checkpoint import RedisChatSaver


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"result for {query}"


class ToolModel(GenericFakeChatModel):
    """A fake chat model that calls ``lookup`` on every other answer."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolModel:
        return self


def script(turns: int, size: int = 40) -> Iterator[AIMessage]:
    for turn in range(turns):
        call = {"name": "lookup", "args": {"query": f"q{turn}"}, "id": f"call_{turn}"}
        yield AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}])
        yield AIMessage(content=f"answer {turn} " + "y" * size)


def agent(saver: RedisChatSaver, turns: int, size: int = 40) -> Any:
    return create_agent(ToolModel(messages=script(turns, size)), tools=[lookup], checkpointer=saver)


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def test_agent_conversation_is_a_chat_history(redis_url: str) -> None:
    """Three agent turns: the state holds 12 messages, each stored once in the thread's
    session, which RedisChatMessageHistory reads as the same conversation."""
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 3)
    for turn in range(3):
        graph.invoke({"messages": [{"role": "user", "content": f"question {turn}"}]}, thread("t1"))
    state = graph.get_state(thread("t1")).values["messages"]
    assert len(state) == 12
    history = RedisChatMessageHistory("t1", redis_url=redis_url).messages
    assert [m.id for m in history] == [m.id for m in state]
    assert [m.content for m in history] == [m.content for m in state]
    fresh = RedisChatSaver(redis_url)  # no cached views: everything from Redis
    assert fresh.get_tuple(thread("t1")).checkpoint["channel_values"]["messages"] == state


def test_a_thread_without_a_search_index_takes_less_and_is_searched_the_same(
    redis_url: str, client: redis.Redis
) -> None:
    """search_index=False: the thread's session keeps no index (as NOINDEX appends do),
    takes less memory, and a search finds the same messages (by a scan)."""
    for name, indexed in (("indexed", True), ("plain", False)):
        graph = agent(RedisChatSaver(redis_url, search_index=indexed), 3)
        for turn in range(3):
            graph.invoke(
                {"messages": [{"role": "user", "content": f"question {turn} about llamas"}]},
                thread(name),
            )
    assert client.hget("chat:{plain}:x", "\0v") == b"N"
    assert client.hget("chat:{indexed}:x", "\0v") == b"2"
    assert thread_memory(client, "plain") < thread_memory(client, "indexed")
    found = {
        name: [m.message.content for m in RedisChatMessageHistory(name, redis_url=redis_url)
               .search("llamas question")]
        for name in ("indexed", "plain")
    }  # fmt: skip
    assert found["plain"] == found["indexed"] and len(found["plain"]) == 3
    RedisChatSaver(redis_url, search_index=False).copy_thread("plain", "plain-copy")
    assert client.hget("chat:{plain-copy}:x", "\0v") == b"N"


def test_linear_conversation_keeps_one_run(redis_url: str) -> None:
    """A conversation that only grows is one run of stream ids in every checkpoint."""
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 2)
    for turn in range(2):
        graph.invoke({"messages": [{"role": "user", "content": f"q {turn}"}]}, thread("lin"))
    for item in saver.list(thread("lin")):
        client = redis.Redis.from_url(redis_url)
        raw = client.hget(
            "chat:{lin}:c",
            cp.record_field(cp.member("", item.config["configurable"]["checkpoint_id"])),
        )
        header = raw.split(b"\n", 1)[1]
        for line in header.split(b"\n"):
            if line.startswith(b"Mmessages\t"):
                assert b" " not in line, line  # one run: "a..b", or "a" for one message


def test_interrupt_and_resume(redis_url: str) -> None:
    """A node that interrupts: the run stops, a new saver object resumes it."""

    def ask(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("name?")
        return {"messages": [AIMessage(content=f"hello {answer}", id="greet")]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = builder.compile(checkpointer=RedisChatSaver(redis_url))
    first = graph.invoke({"messages": [HumanMessage("hi", id="h1")]}, thread("int"))
    assert first["__interrupt__"][0].value == "name?"
    resumed = builder.compile(checkpointer=RedisChatSaver(redis_url)).invoke(
        Command(resume="Ada"), thread("int")
    )
    assert [m.content for m in resumed["messages"]] == ["hi", "hello Ada"]


def test_time_travel_replay_and_fork(redis_url: str) -> None:
    """History lists every checkpoint; replaying an old one and forking with
    update_state give the right messages, and branches do not mix."""
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 3)
    graph.invoke({"messages": [{"role": "user", "content": "first"}]}, thread("tt"))
    graph.invoke({"messages": [{"role": "user", "content": "second"}]}, thread("tt"))
    history = list(graph.get_state_history(thread("tt")))
    assert len(history) == 10
    after_first = next(s for s in history if s.metadata["step"] == 4)
    assert len(after_first.values["messages"]) == 4
    fork = graph.update_state(after_first.config, {"messages": [HumanMessage("other", id="o1")]})
    forked = graph.get_state(fork).values["messages"]
    assert [m.content for m in forked][-1] == "other" and len(forked) == 5
    latest = graph.get_state(thread("tt")).values["messages"]
    assert [m.content for m in latest][-1] == "other"
    assert len(history[0].values["messages"]) == 8


def test_removed_messages_leave_state_not_transcript(redis_url: str) -> None:
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 1)
    graph.invoke({"messages": [{"role": "user", "content": "q"}]}, thread("rm"))
    messages = graph.get_state(thread("rm")).values["messages"]
    graph.update_state(thread("rm"), {"messages": [RemoveMessage(id=messages[1].id)]})
    assert len(graph.get_state(thread("rm")).values["messages"]) == 3
    assert len(RedisChatMessageHistory("rm", redis_url=redis_url).messages) == 4


class Counter(TypedDict):
    total: Annotated[int, operator.add]
    log: Annotated[list[str], operator.add]


def test_subgraph_namespaces(redis_url: str) -> None:
    """A subgraph's checkpoints live in their own namespace of the thread."""

    def inner(state: Counter) -> dict[str, Any]:
        return {"total": 1, "log": ["inner"]}

    sub = StateGraph(Counter)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    builder = StateGraph(Counter)
    builder.add_node("sub", sub.compile())
    builder.add_edge(START, "sub")
    saver = RedisChatSaver(redis_url)
    graph = builder.compile(checkpointer=saver)
    assert graph.invoke({"total": 0, "log": []}, thread("sub")) == {"total": 1, "log": ["inner"]}
    namespaces = {
        item.config["configurable"]["checkpoint_ns"]
        for item in saver.list({"configurable": {"thread_id": "sub"}})
    }
    assert "" in namespaces and any(ns.startswith("sub:") for ns in namespaces)


def test_pending_writes_after_a_failed_step(redis_url: str) -> None:
    """Two parallel nodes, one fails: the other's write is kept and not run again."""
    calls: list[str] = []

    def good(state: Counter) -> dict[str, Any]:
        calls.append("good")
        return {"log": ["good"]}

    def bad(state: Counter) -> dict[str, Any]:
        calls.append("bad")
        if calls.count("bad") == 1:
            raise RuntimeError("boom")
        return {"log": ["bad"]}

    builder = StateGraph(Counter)
    builder.add_node("good", good)
    builder.add_node("bad", bad)
    builder.add_edge(START, "good")
    builder.add_edge(START, "bad")
    graph = builder.compile(checkpointer=RedisChatSaver(redis_url))
    with pytest.raises(RuntimeError):
        graph.invoke({"total": 0, "log": []}, thread("fail"))
    result = graph.invoke(None, thread("fail"))
    assert sorted(result["log"]) == ["bad", "good"]
    assert calls.count("good") == 1


async def test_concurrent_threads_async(redis_url: str) -> None:
    saver = RedisChatSaver(redis_url)

    async def run(name: str) -> int:
        graph = agent(saver, 2)
        for turn in range(2):
            await graph.ainvoke(
                {"messages": [{"role": "user", "content": f"{name} {turn}"}]}, thread(name)
            )
        return len((await graph.aget_state(thread(name))).values["messages"])

    assert await asyncio.gather(*(run(f"c{i}") for i in range(6))) == [8] * 6
    for i in range(6):
        texts = [m.content for m in RedisChatMessageHistory(f"c{i}", redis_url=redis_url).messages]
        assert texts[0] == f"c{i} 0"


def test_ttl_slides_and_delete_thread(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url, ttl=100)
    agent(saver, 1).invoke({"messages": [{"role": "user", "content": "q"}]}, thread("ttl"))
    for suffix in (":m", ":c", ":k"):
        assert 0 < client.ttl(f"chat:{{ttl}}{suffix}") <= 100
    # (:w exists only once a checkpoint's writes outgrow its record, library 1.7)
    assert client.ttl("chat:{ttl}:w") == -2 or 0 < client.ttl("chat:{ttl}:w") <= 100
    saver.delete_thread("ttl")
    assert client.keys("chat:{ttl}*") == []


def thread_memory(client: redis.Redis, thread_id: str) -> int:
    keys = client.keys(f"chat:{{{thread_id}}}*")
    return sum(client.memory_usage(key, samples=0) or 0 for key in keys)


def test_memory_is_linear_in_the_conversation(redis_url: str, client: redis.Redis) -> None:
    """40 turns of ~500-byte messages: the cost per turn at 40 turns is at most 1.3x
    that at 10. The issue's goal of 2x the messages' JSON is not reached (about 2.25x, see
    docs/checkpoint.md): this bound keeps what holds from regressing."""
    from benchmarks.checkpoint_memory import Conversation

    conversation = Conversation(RedisChatSaver(redis_url), 40)
    conversation.config["configurable"]["thread_id"] = "mem"
    at: dict[int, dict[str, int]] = {}
    for turn in range(1, 41):
        conversation.turn(turn)
        if turn in (10, 40):
            memory = thread_memory(client, "mem")
            at[turn] = {"memory": memory, "json": conversation.json_bytes()}
    ten, forty = at[10], at[40]
    assert forty["memory"] <= 2.4 * forty["json"], forty
    assert forty["memory"] / 40 <= 1.3 * ten["memory"] / 10, (ten, forty)
