"""Pending writes of messages are settled by the next put: kept once, in the session (1.4).

A write whose value is a list of messages with ids is stored whole (LangGraph may save it
before the checkpoint it belongs to); the next put that stores the same messages names it
(SETTLE) and the library replaces the value by runs of the stream entries, if the stored value
is still the one the saver sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import empty_checkpoint

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history.checkpoint import RedisChatSaver
from test_checkpoint_graphs import agent, thread


def config(thread_id: str, checkpoint_id: str | None = None) -> Any:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint(messages: list[Any], number: int) -> Any:
    body = empty_checkpoint()
    body["id"] = f"1ef0000{number}-0000-6000-8000-000000000000"
    body["channel_values"] = {"messages": messages}
    body["channel_versions"] = {"messages": f"{number:08d}.0"}
    return body


def write_values(client: redis.Redis, thread_id: str) -> list[bytes]:
    """The values of a thread's pending writes of the channel ``messages``, as stored."""
    keys = cp.thread_keys("chat:", thread_id)
    writes = cp.decode_write_fields(client.hscan_iter(keys[4]))
    writes += cp.decode_record_fields(client.hscan_iter(keys[3]))
    return [w.value for w in writes if w.channel == "messages"]


def test_the_next_put_settles_a_write_and_readers_see_the_same_value(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    human = HumanMessage("hi", id="h1")
    first = saver.put(config("s"), checkpoint([human], 1), {"step": 0}, {"messages": "00000001.0"})
    answer = [AIMessage("hello", id="a1"), ToolMessage("done", tool_call_id="c1", id="t1")]
    saver.put_writes(first, [("messages", answer)], "task-1")
    before = saver.get_tuple(first)
    assert before is not None
    assert not write_values(client, "s")[0].startswith(cp.REFS_MARK)

    saver.put(first, checkpoint([human, *answer], 2), {"step": 1}, {"messages": "00000002.0"})
    (value,) = write_values(client, "s")
    assert value.startswith(cp.REFS_MARK)  # runs of the session's entries, not a copy
    after = RedisChatSaver(redis_url).get_tuple(first)  # no cache: read from Redis
    assert after is not None
    assert after.pending_writes == before.pending_writes
    assert [type(m) for m in after.pending_writes[0][2]] == [AIMessage, ToolMessage]
    assert len(client.xrange(cp.thread_keys("chat:", "s")[0])) == 3  # each message once


def test_a_write_stored_by_another_value_is_not_settled(
    redis_url: str, client: redis.Redis
) -> None:
    """The (task, index) was stored first with other messages (kept as it was): the saver's
    SHA-1 does not match, so the write keeps its bytes."""
    saver, other = RedisChatSaver(redis_url), RedisChatSaver(redis_url)
    human = HumanMessage("hi", id="h1")
    first = saver.put(config("o"), checkpoint([human], 1), {"step": 0}, {"messages": "00000001.0"})
    other.put_writes(first, [("messages", [AIMessage("first", id="a0")])], "task-1")
    saver.put_writes(first, [("messages", [AIMessage("second", id="a1")])], "task-1")
    saver.put(
        first,
        checkpoint([human, AIMessage("second", id="a1")], 2),
        {"step": 1},
        {"messages": "00000002.0"},
    )
    (value,) = write_values(client, "o")
    assert not value.startswith(cp.REFS_MARK)
    found = saver.get_tuple(first)
    assert found is not None
    assert found.pending_writes[0][2][0].content == "first"


def test_an_agent_keeps_each_answer_and_tool_result_once(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 3)
    for turn in range(3):
        graph.invoke({"messages": [{"role": "user", "content": f"q{turn}"}]}, thread("a"))
    history = [(item.config, item.pending_writes) for item in saver.list(thread("a"))]
    fresh = RedisChatSaver(redis_url)
    assert [(item.config, item.pending_writes) for item in fresh.list(thread("a"))] == history
    values = write_values(client, "a")
    settled = [value for value in values if value.startswith(cp.REFS_MARK)]
    # per turn: the tool call, the tool result and the answer; the human input stays
    # whole (a dict without an id, as the caller gave it)
    assert len(settled) == 9 and len(values) == 12


def test_writes_sent_while_the_next_put_is_planned_are_kept_once(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangGraph may save a step's writes and the next checkpoint at the same time, from two
    workers. The put waits between its plan and its call for up to a second, for writes of
    the same thread to be stored meanwhile: they are not (a thread's puts and writes run
    one at a time in a saver), so either the put settles them or they find its messages;
    the answer is kept once either way."""
    import threading

    from redis_chat_history._transport import SyncTransport

    saver = RedisChatSaver(redis_url)
    human = HumanMessage("hi", id="h1")
    first = saver.put(config("r"), checkpoint([human], 1), {"step": 0}, {"messages": "00000001.0"})
    answer = [AIMessage("hello", id="a1"), ToolMessage("done", tool_call_id="c1", id="t1")]
    planned, written = threading.Event(), threading.Event()
    run = SyncTransport.run

    def slow_put(transport: SyncTransport, call: Any) -> Any:
        if call.function == cp.CP_PUT:
            planned.set()
            written.wait(timeout=1.0)
        return run(transport, call)

    def write() -> None:
        planned.wait(timeout=5.0)
        saver.put_writes(first, [("messages", answer)], "task-1")
        written.set()

    monkeypatch.setattr(SyncTransport, "run", slow_put)
    worker = threading.Thread(target=write)
    worker.start()
    saver.put(first, checkpoint([human, *answer], 2), {"step": 1}, {"messages": "00000002.0"})
    worker.join(timeout=10.0)
    (value,) = write_values(client, "r")
    assert value.startswith(cp.REFS_MARK)
    assert len(client.xrange(cp.thread_keys("chat:", "r")[0])) == 3
    found = RedisChatSaver(redis_url).get_tuple(first)
    assert found is not None and [m.id for m in found.pending_writes[0][2]] == ["a1", "t1"]


async def test_async_writes_sent_while_the_next_put_is_planned_are_kept_once(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with aput and aput_writes as two tasks of one event loop."""
    import asyncio
    import contextlib

    from redis_chat_history._transport import AsyncTransport

    saver = RedisChatSaver(redis_url)
    human = HumanMessage("hi", id="h1")
    first = await saver.aput(
        config("ra"), checkpoint([human], 1), {"step": 0}, {"messages": "00000001.0"}
    )
    answer = [AIMessage("hello", id="a1"), ToolMessage("done", tool_call_id="c1", id="t1")]
    planned, written = asyncio.Event(), asyncio.Event()
    run = AsyncTransport.run

    async def slow_put(transport: AsyncTransport, call: Any) -> Any:
        if call.function == cp.CP_PUT:
            planned.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(written.wait(), timeout=1.0)
        return await run(transport, call)

    async def write() -> None:
        await planned.wait()
        await saver.aput_writes(first, [("messages", answer)], "task-1")
        written.set()

    monkeypatch.setattr(AsyncTransport, "run", slow_put)
    child = checkpoint([human, *answer], 2)
    await asyncio.gather(
        saver.aput(first, child, {"step": 1}, {"messages": "00000002.0"}),
        asyncio.wait_for(write(), timeout=10.0),
    )
    (value,) = write_values(client, "ra")
    assert value.startswith(cp.REFS_MARK)
    assert len(client.xrange(cp.thread_keys("chat:", "ra")[0])) == 3


def test_the_locks_keep_no_closed_event_loop() -> None:
    """An asyncio.Lock that had a waiter holds its loop: the saver's locks let go of the
    locks of closed loops (a sync wrapper may run a loop per request)."""
    import asyncio

    from redis_chat_history.checkpoint._ordering import ThreadLocks

    locks = ThreadLocks()

    async def contend() -> None:
        lock = locks.in_loop("t")

        async def hold() -> None:
            async with lock:
                await asyncio.sleep(0.001)

        await asyncio.gather(hold(), hold())

    for _ in range(20):
        asyncio.run(contend())
    assert len(locks._loops) <= 1
