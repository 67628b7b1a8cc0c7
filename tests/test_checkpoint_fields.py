"""Stored forms of library 1.8 that clients never see: a checkpoint whose id is a canonical
UUID keeps its record under ``c<ns>\\0\\xff`` and the id's 16 bytes (a record stored before
under ``c<ns>\\0<id>`` is read there until it is written again, then moved; dumps, loads,
copies, prunes and drops find records of both forms), and a run of one entry is stored as
``<a>`` and replied as ``<a>..<a>``."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import redis

from redis_chat_history import _checkpoint_protocol as cp

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from redis_chat_history.checkpoint import RedisChatSaver


def ids(count: int) -> list[str]:
    """Checkpoint ids in increasing order, as LangGraph makes them (UUIDs)."""
    return sorted(str(uuid.uuid1()) for _ in range(count))


def config(thread_id: str, checkpoint_id: str | None = None, ns: str = "") -> Any:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def put_chain(saver: RedisChatSaver, thread_id: str, checkpoint_ids: list[str]) -> None:
    """Puts a chain of checkpoints, each the child of the one before, each one message on."""
    parent: Any = config(thread_id)
    messages: list[Any] = []
    for step, checkpoint_id in enumerate(checkpoint_ids):
        messages = [*messages, (HumanMessage if step % 2 else AIMessage)(f"m{step}", id=f"m{step}")]
        checkpoint = empty_checkpoint()
        checkpoint["id"] = checkpoint_id
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": f"{step + 1:08d}"}
        parent = saver.put(parent, checkpoint, {"step": step}, {"messages": f"{step + 1:08d}"})
        saver.put_writes(parent, [("messages", [AIMessage(f"w{step}", id=f"w{step}")])], "task")


def record_fields(client: redis.Redis, thread_id: str) -> list[bytes]:
    return sorted(f for f in client.hkeys(f"chat:{{{thread_id}}}:c") if f.startswith(b"c"))


def to_legacy(client: redis.Redis, thread_id: str, checkpoint_id: str) -> None:
    """Moves a record to the field a library before 1.8 stored it in."""
    key, name = f"chat:{{{thread_id}}}:c", cp.member("", checkpoint_id)
    record = client.hget(key, cp.record_field(name))
    assert record is not None
    client.hdel(key, cp.record_field(name))
    client.hset(key, b"c" + name, record)


def snapshot(saver: RedisChatSaver, thread_id: str) -> list[Any]:
    """What a reader sees of a thread: each checkpoint's id, parent, messages and writes."""
    return [
        (
            item.config["configurable"]["checkpoint_id"],
            (item.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
            [m.content for m in item.checkpoint["channel_values"].get("messages", [])],
            [
                (task, channel, [m.content for m in value])
                for task, channel, value in item.pending_writes or []
            ],
        )
        for item in saver.list(config(thread_id))
    ]


def test_uuid_ids_are_stored_packed_and_other_ids_as_text(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    chain = ids(3)
    put_chain(saver, "packed", chain)
    assert record_fields(client, "packed") == sorted(
        b"c\0\xff" + uuid.UUID(checkpoint_id).bytes for checkpoint_id in chain
    )
    assert [cp.record_member(f) for f in record_fields(client, "packed")] == [
        cp.member("", checkpoint_id) for checkpoint_id in chain
    ]
    texts = ["1", "2", chain[0].upper()]  # upper-case hex is not the canonical form
    put_chain(saver, "text", sorted(texts))
    assert record_fields(client, "text") == sorted(b"c\0" + t.encode() for t in texts)
    assert [item[0] for item in snapshot(saver, "packed")] == chain[::-1]


def test_records_stored_before_are_read_and_moved_when_written(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    chain = ids(4)
    put_chain(saver, "old", chain[:3])
    before = snapshot(saver, "old")
    for checkpoint_id in chain[:3]:
        to_legacy(client, "old", checkpoint_id)
    assert snapshot(saver, "old") == before  # get, list and parents read the old fields
    assert saver.get_tuple(config("old", chain[1])) is not None
    # a put after them (its parent pinned, its writes counted) and a re-put of the oldest
    put_chain(saver, "old", chain[:4])
    fields = record_fields(client, "old")
    assert fields == sorted(cp.record_field(cp.member("", c)) for c in chain)  # all moved
    after = snapshot(saver, "old")
    assert after[1:] == before
    # a drop of an old record (prune keeps the latest) deletes its field of either form
    to_legacy(client, "old", chain[3])
    to_legacy(client, "old", chain[0])
    saver.prune(["old"], strategy="keep_latest")
    # (the kept record was written again: a drop of its parent wrote the parent's id in it)
    assert [cp.record_member(f) for f in record_fields(client, "old")] == [cp.member("", chain[3])]
    assert [item[0] for item in snapshot(saver, "old")] == [chain[3]]


def test_a_copy_and_a_load_take_either_form(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url)
    chain = ids(3)
    put_chain(saver, "src", chain)
    to_legacy(client, "src", chain[1])
    saver.copy_thread("src", "dst")
    assert record_fields(client, "dst") == sorted(cp.record_field(cp.member("", c)) for c in chain)
    assert snapshot(saver, "dst") == snapshot(saver, "src")
    # a dump names records as clients of every 1.x version parse them: c<ns>\0<id>
    reply = client.fcall(cp.CP_DUMP, 6, *cp.thread_keys("chat:", "src"), "C", "0")
    names = [name for name in reply[1::2] if name.startswith(b"c")]
    assert sorted(names) == sorted(b"c\0" + c.encode() for c in chain)
    keys = cp.thread_keys("chat:", "bad")
    forged = b"c\0\xff" + b"x" * 15  # one byte short of a UUID
    with pytest.raises(redis.ResponseError, match="names no checkpoint"):
        client.fcall(cp.CP_LOAD, 6, *keys, "C", forged, b"1\nP")


def test_delete_for_runs_finds_records_of_either_form(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url)
    chain = ids(2)
    for run, checkpoint_id in zip(["r1", "r2"], chain, strict=True):
        checkpoint = empty_checkpoint()
        checkpoint["id"] = checkpoint_id
        saver.put(config("runs"), checkpoint, {"run_id": run}, {})
    to_legacy(client, "runs", chain[0])
    saver.delete_for_runs(["r1", "r2"])
    assert record_fields(client, "runs") == []


RUNS_17 = re.compile(rb"[0-9]+-[0-9]+\.\.[0-9]+-[0-9]+( [0-9]+-[0-9]+\.\.[0-9]+-[0-9]+)*")


def replied_runs(reply: list[Any]) -> list[bytes]:
    """Every runs text of a get reply: its record's M lines, its writes' and values' runs."""
    record = cp.Record.decode(reply[1])
    texts = [runs.encode() for runs in record.runs.values()]
    values = [cp.decode_write(raw).value for raw in reply[2]] + list(reply[3][1::2])
    for value in values:
        found = cp.value_runs(value)
        if found is not None:
            texts.append(found.encode())
    return texts


def test_runs_of_one_entry_are_stored_short_and_replied_as_before(
    redis_url: str, client: redis.Redis
) -> None:
    from test_checkpoint_graphs import agent, thread

    graph = agent(RedisChatSaver(redis_url), 2)
    for turn in range(2):
        graph.invoke(
            {"messages": [{"role": "user", "content": f"q{turn} " + "z" * 200}]}, thread("r")
        )
    stored = b"".join(client.hvals("chat:{r}:c"))
    assert re.search(rb"\x01M[0-9]+-[0-9]+[^.0-9]", stored)  # a write of one message
    keys = cp.thread_keys("chat:", "r")
    replies = 0
    for item in RedisChatSaver(redis_url).list(thread("r")):
        reply = client.fcall(
            cp.CP_GET, 6, *keys, cp.member("", item.config["configurable"]["checkpoint_id"])
        )
        for text in replied_runs(reply):
            assert RUNS_17.fullmatch(text), text
            replies += 1
    assert replies > 10
