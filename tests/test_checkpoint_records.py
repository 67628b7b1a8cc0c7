"""A checkpoint record leaves out what its header says (its id, the versions of the channels
stored as values) and reads back as the checkpoint that was put, versions in their order; a
record written in full (before this) reads as it is."""

from __future__ import annotations

from typing import Any

import pytest
import redis

pytest.importorskip("langgraph")

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source
from redis_chat_history.checkpoint import RedisChatSaver

CHECKPOINT_ID = "1ef00001-0000-6000-8000-000000000000"


def checkpoint() -> Any:
    body = empty_checkpoint()
    body["id"] = CHECKPOINT_ID
    body["channel_values"] = {"zeta": 1, "messages": [HumanMessage("hi", id="h1")], "alpha": "a"}
    body["channel_versions"] = {"zeta": "00000002.1", "messages": "00000001.0", "alpha": 3}
    body["versions_seen"] = {"node": {"zeta": "00000002.1"}}
    return body


def config() -> Any:
    return {"configurable": {"thread_id": "records", "checkpoint_ns": ""}}


def test_a_compact_record_reads_back_as_the_checkpoint_put(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    body = checkpoint()
    versions = {"zeta": "00000002.1", "messages": "00000001.0", "alpha": 3}
    stored = saver.put(config(), body, {"step": 1}, versions)

    found = saver.get_tuple(stored)

    assert found is not None
    got = found.checkpoint
    assert got["id"] == CHECKPOINT_ID
    assert list(got["channel_versions"].items()) == list(body["channel_versions"].items())
    assert got["versions_seen"] == body["versions_seen"]
    assert got["channel_values"]["zeta"] == 1 and got["channel_values"]["alpha"] == "a"
    # the record holds neither the id nor the string versions its header holds
    record = client.hget(cp.thread_keys("chat:", "records")[3], b"c" + cp.member("", CHECKPOINT_ID))
    assert record is not None
    payload = cp.Record.decode(record).payload
    assert CHECKPOINT_ID.encode() not in payload and b"00000002.1" in payload  # versions_seen
    assert payload.count(b"00000002.1") == 1


def test_a_record_written_in_full_reads_as_it_is(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url)
    client.function_load(library_source(), replace=True)
    body = checkpoint()
    body.pop("channel_values")
    body["channel_versions"] = {"zeta": "00000002.1"}
    kind, data = saver.serde.dumps_typed({"c": body, "m": {"step": 1}, "p": None})
    header = cp.Record(blobs={"zeta": "00000002.1"}, payload=kind.encode() + b"\0" + data)
    keys = cp.thread_keys("chat:", "full")
    name = cp.member("", CHECKPOINT_ID)
    value = saver.serde.dumps_typed(7)
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, header.encode(),
        "BLOB", cp.blob_field("", "zeta", "00000002.1"), value[0].encode() + b"\0" + value[1],
    )  # fmt: skip

    found = saver.get_tuple({"configurable": {"thread_id": "full", "checkpoint_ns": ""}})

    assert found is not None
    assert found.checkpoint["id"] == CHECKPOINT_ID
    assert found.checkpoint["channel_versions"] == {"zeta": "00000002.1"}
    assert found.checkpoint["channel_values"] == {"zeta": 7}


def test_a_list_too_fragmented_for_runs_is_stored_as_a_value(
    redis_url: str, client: redis.Redis
) -> None:
    """A checkpoint keeping every other message of 10,000 (5,000 runs, more than a call may
    resolve) stores its list as a value; it reads back the same, and the session keeps
    every message once."""
    saver = RedisChatSaver(redis_url)
    messages = [HumanMessage(f"m{i}", id=f"id{i}") for i in range(10_000)]
    first = empty_checkpoint()
    first["id"] = "1ef00001-0000-6000-8000-000000000001"
    first["channel_values"] = {"messages": messages}
    first["channel_versions"] = {"messages": "00000001.0"}
    parent = saver.put(config(), first, {"step": 0}, {"messages": "00000001.0"})
    second = empty_checkpoint()
    second["id"] = "1ef00001-0000-6000-8000-000000000002"
    second["channel_values"] = {"messages": messages[::2]}
    second["channel_versions"] = {"messages": "00000002.0"}
    stored = saver.put(parent, second, {"step": 1}, {"messages": "00000002.0"})

    found = saver.get_tuple(stored)

    assert found is not None
    assert [m.id for m in found.checkpoint["channel_values"]["messages"]] == [
        m.id for m in messages[::2]
    ]
    record = client.hget(cp.thread_keys("chat:", "records")[3], b"c" + cp.member("", second["id"]))
    assert record is not None and cp.Record.decode(record).blobs == {"messages": "00000002.0"}
    assert client.xlen(cp.thread_keys("chat:", "records")[0]) == 10_000
