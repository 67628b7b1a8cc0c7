"""Pending writes in groups (library 1.5): a call's writes of one task are one field, read
back one write at a time as in 1.4; a checkpoint whose writes 1.4 stored (a field per write,
the count without a name) reads the same and takes new groups; a group too long for a call
to read is left alone, and readers resolve a (task, index) stored twice."""

from __future__ import annotations

import re

import pytest
import redis

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source

pytest.importorskip("langgraph")

from redis_chat_history.checkpoint import RedisChatSaver

MEMBER = cp.member("", "1ef00001-0000-6000-8000-000000000001")
GROUP_BYTES = int(re.search(r"^CP\.GROUP_BYTES = (\d+)$", library_source(), re.M).group(1))  # type: ignore[union-attr]


def put(client: redis.Redis, keys: cp.Keys) -> None:
    client.function_load(library_source(), replace=True)
    client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", MEMBER, "0\np")


def writes(client: redis.Redis, keys: cp.Keys, *items: tuple[str, int, str, str, bytes]) -> int:
    args = [part for item in items for part in item]
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, len(items), *args
    )
    return int(reply)


def stored(client: redis.Redis, keys: cp.Keys) -> list[tuple[str, int, str, bytes]]:
    reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, MEMBER)
    raw = cp.decode_checkpoint(reply)
    assert raw is not None and raw.complete
    return [(w.task_id, w.index, w.channel, w.value) for w in raw.writes]


def test_a_checkpoint_whose_writes_14_stored_reads_the_same_and_takes_groups(
    client: redis.Redis,
) -> None:
    keys = cp.thread_keys("w:", "old")
    put(client, keys)
    w = keys[4]
    client.hset(w, mapping={
        MEMBER: b"2",
        MEMBER + b"\x001": b"t\x000",
        MEMBER + b"\x00=t\x000": b"1:p2:ch2:v0",
        MEMBER + b"\x002": b"t\x00-1",
        MEMBER + b"\x00=t\x00-1": b"1:p9:__error__2:e1",
    })  # fmt: skip

    # a 1.4 write is a group of one: (t, 0) is kept, (t, 1) joins its group, (t, -1) is
    # replaced in its own; task u starts a group, named in a slot as 1.4 named them
    assert writes(client, keys, ("t", 0, "p", "ch", b"X"), ("t", 1, "p", "ch", b"v1")) == 1
    assert writes(client, keys, ("t", -1, "p", "__error__", b"e2")) == 1
    assert writes(client, keys, ("u", 0, "p", "ch", b"w0")) == 1

    assert client.hget(w, MEMBER) == b"3"  # a 1.4 count goes on without a name
    assert client.hget(w, MEMBER + b"\x003") == b"u\x000"
    assert client.hget(w, MEMBER + b"\x00=t\x000") == b"1:p2:ch2:v01:12:ch2:v1"
    assert stored(client, keys) == [
        ("t", 0, "ch", b"v0"),
        ("t", 1, "ch", b"v1"),
        ("t", -1, "__error__", b"e2"),
        ("u", 0, "ch", b"w0"),
    ]

    assert client.execute_command("FCALL", cp.CP_DROP, 6, *keys, MEMBER) == [1, 1]
    assert client.exists(w) == 0


def test_a_group_too_long_to_read_is_left_alone_and_readers_resolve_the_duplicate(
    redis_url: str, client: redis.Redis
) -> None:
    keys = cp.thread_keys("chat:", "long-group")
    put(client, keys)
    long_value = b"bytes\0" + b"x" * GROUP_BYTES
    assert writes(client, keys, ("t", 0, "p", "ch", long_value)) == 1
    # the same first index: the stored group is too long to merge into, so (t, 0) is
    # taken as stored (the first of that group) and (t, 1) starts a group of its own
    v1 = b"bytes\0v1"
    assert writes(client, keys, ("t", 0, "p", "ch", b"bytes\0again"), ("t", 1, "p", "ch", v1)) == 1
    # a negative index is looked for in the group the call reads only: a second copy
    assert writes(client, keys, ("t", -1, "p", "__error__", b"bytes\0e1")) == 1
    v2, e2 = b"bytes\0v2", b"bytes\0e2"
    assert writes(client, keys, ("t", 2, "p", "ch", v2), ("t", -1, "p", "__error__", e2)) == 2
    names = [client.hget(keys[4], MEMBER + b"\x00" + str(k).encode()) for k in (2, 3, 4)]
    assert names == [b"t\x001\x002", b"t\x00-1", b"t\x002"]

    saver = RedisChatSaver(redis_url)
    config = {"configurable": {"thread_id": "long-group", "checkpoint_ns": ""}}
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", MEMBER,
        cp.Record(payload=_payload_of(saver)).encode(),
    )  # fmt: skip
    found = saver.get_tuple({**config, "configurable": {**config["configurable"],
                             "checkpoint_id": cp.split_member(MEMBER)[1]}})  # fmt: skip
    assert found is not None
    values = {(task, channel, value[:6]) for task, channel, value in found.pending_writes}
    assert values == {("t", "ch", b"xxxxxx"), ("t", "ch", b"v1"), ("t", "ch", b"v2"),
                      ("t", "__error__", b"e2")}  # fmt: skip
    assert len(found.pending_writes) == 4  # (t, -1): the later copy only


def _payload_of(saver: RedisChatSaver) -> bytes:
    from langgraph.checkpoint.base import empty_checkpoint

    from redis_chat_history.checkpoint import _payload

    body = empty_checkpoint()
    kind, data = saver.serde.dumps_typed({"c": body, "m": {}, "p": None})
    return _payload.pack(kind.encode() + b"\0" + data)


def test_resolve_writes_keeps_the_first_of_an_index_and_the_last_of_a_negative_one() -> None:
    def write(index: int, value: bytes, task: str = "t") -> cp.StoredWrite:
        return cp.StoredWrite(task, index, "", "ch", value)

    resolved = cp.resolve_writes(
        [write(0, b"a"), write(-1, b"e1"), write(0, b"b"), write(0, b"c", "u"), write(-1, b"e2")]
    )
    assert [(w.task_id, w.index, w.value) for w in resolved] == [
        ("t", 0, b"a"),
        ("t", -1, b"e2"),
        ("u", 0, b"c"),
    ]
