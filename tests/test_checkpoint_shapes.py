"""Shaped values (library 1.6): the caller's input is kept once.

``graph.invoke({"messages": [{"role": "user", "content": text}]})`` leaves the text in the
``__start__`` channel's value, in the ``__start__`` task's write and in the message stored in
the session. The put that stores the message names the other two (SHAPE, SHAPEBLOB): the
library keeps their template, with runs naming the message whose content each long text is.
Readers see exactly the values sent.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph")

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history.checkpoint import RedisChatSaver, _shapes
from test_checkpoint_graphs import agent, thread

SERDE = JsonPlusSerializer()
LONG = "question " + "z" * 300


def typed(value: Any) -> bytes:
    kind, data = SERDE.dumps_typed(value)
    return kind.encode() + b"\0" + data


def untyped(raw: bytes) -> Any:
    kind, _, data = raw.partition(b"\0")
    return SERDE.loads_typed((kind.decode(), data))


def shape_of(value: Any) -> _shapes.Shape | None:
    return _shapes.make_shape(value, typed(value), typed, untyped)


def test_a_value_with_long_texts_is_shaped_and_filled_back() -> None:
    value = {"messages": [{"role": "user", "content": LONG}], "n": 3, "short": "hi"}
    shape = shape_of(value)
    assert shape is not None
    assert len(shape.digests) == 1 and shape.digests[0] == _shapes.text_digest(LONG)
    assert LONG.encode() not in shape.template
    assert _shapes.fill(untyped(shape.template), [LONG]) == value
    # a message the session no longer holds: its text reads as empty
    assert _shapes.fill(untyped(shape.template), [None])["messages"][0]["content"] == ""


def test_values_that_are_not_shaped() -> None:
    assert shape_of({"messages": [{"role": "user", "content": "short"}]}) is None
    assert shape_of(42) is None
    # a text that looks like a placeholder: the value is kept as it is
    assert shape_of({"a": LONG, "b": "\x00\x01chathist-text:0"}) is None
    # a message's string content is a text too; other objects are kept whole
    assert shape_of([HumanMessage(LONG)]) is not None
    assert shape_of((LONG,)) is None


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=200),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_any_shaped_value_fills_back_to_what_its_bytes_read(value: Any) -> None:
    shape = shape_of(value)
    if shape is None:
        return
    texts: list[str] = []
    _shapes._walk(
        value, lambda text: texts.append(text) or text if _shapes.long_text(text) else text
    )
    assert _shapes.fill(untyped(shape.template), texts) == untyped(typed(value))


def stored_values(client: redis.Redis, thread_id: str) -> list[bytes]:
    """Every channel value and pending write value of a thread, as stored."""
    keys = cp.thread_keys("chat:", thread_id)
    values = [v for f, v in client.hscan_iter(keys[3]) if f.startswith(b"b")]
    values += [w.value for w in cp.decode_write_fields(client.hscan_iter(keys[4]))]
    return values


def without_ids(value: Any) -> Any:
    """A value with each message as (type, content): add_messages gives dict input random
    ids, and the scripted model's answers get random run ids, so two runs differ there."""
    if isinstance(value, BaseMessage):
        return (value.type, value.content)
    if isinstance(value, dict):
        return {key: without_ids(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_ids(item) for item in value]
    return value


def history(saver: Any, thread_id: str) -> list[Any]:
    """A thread's checkpoints as LangGraph reads them: values, metadata, pending writes."""
    return [
        without_ids(
            [
                t.checkpoint["channel_values"],
                t.metadata,
                sorted((w[1], repr(without_ids(w[2]))) for w in t.pending_writes or []),
            ]
        )
        for t in saver.list(thread(thread_id))
    ]


def test_an_agent_keeps_its_input_once_and_reads_as_in_memory(
    redis_url: str, client: redis.Redis
) -> None:
    """Agent turns with dict input: the __start__ values and writes are stored shaped (the
    input's text only in the session; a write that reaches the server after the put that
    would shape it keeps its bytes), and every checkpoint of the thread reads as
    InMemorySaver's, with a saver that remembers nothing."""
    savers = {"memory": InMemorySaver(), "redis": RedisChatSaver(redis_url)}
    for saver in savers.values():
        graph = agent(saver, 4)
        for turn in range(4):
            text = f"question {turn} " + "q" * 400
            graph.invoke({"messages": [{"role": "user", "content": text}]}, thread("shape"))
    shaped = [v for v in stored_values(client, "shape") if v.startswith(cp.SHAPE_MARK)]
    assert shaped
    assert not any(b"q" * 400 in value for value in shaped)
    assert history(RedisChatSaver(redis_url), "shape") == history(savers["memory"], "shape")


def test_shaped_values_read_back_exactly(redis_url: str, client: redis.Redis) -> None:
    """The same graph run twice on one saver's Redis: every pending write and value of every
    checkpoint reads back as it was sent (the saver that wrote them checks nothing)."""
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 3)
    sent: list[Any] = []
    original = saver._writes_plan

    def recording(config: Any, writes: Any, task_id: str, task_path: str) -> Any:
        sent.append((config["configurable"]["checkpoint_id"], task_id, list(writes)))
        return original(config, writes, task_id, task_path)

    saver._writes_plan = recording  # type: ignore[method-assign]
    for turn in range(3):
        graph.invoke({"messages": [{"role": "user", "content": LONG + str(turn)}]}, thread("exact"))
    fresh = RedisChatSaver(redis_url)
    checked = 0
    for checkpoint_id, task_id, writes in sent:
        config = {
            "configurable": {
                "thread_id": "exact",
                "checkpoint_ns": "",
                "checkpoint_id": checkpoint_id,
            }
        }
        got = fresh.get_tuple(config)
        assert got is not None
        read = [
            (channel, value) for task, channel, value in got.pending_writes or [] if task == task_id
        ]
        for channel, value in writes:
            assert (channel, value) in read
            checked += 1
        start = got.checkpoint["channel_values"].get("__start__")
        if start is not None:
            assert start["messages"][0]["content"].startswith(LONG)
    assert checked >= 9
    assert any(v.startswith(cp.SHAPE_MARK) for v in stored_values(client, "exact"))


def test_a_copied_thread_reads_its_shaped_values(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 2)
    for turn in range(2):
        graph.invoke({"messages": [{"role": "user", "content": LONG + str(turn)}]}, thread("orig"))
    assert any(v.startswith(cp.SHAPE_MARK) for v in stored_values(client, "orig"))
    saver.copy_thread("orig", "copy")
    assert history(RedisChatSaver(redis_url), "copy") == history(RedisChatSaver(redis_url), "orig")


def test_shaped_values_settled_by_a_put_and_a_message_gone(
    redis_url: str, client: redis.Redis
) -> None:
    """A parent's input value and write name the message its child's put stores: both are
    shaped and read back equal; once a user deletes that message from the session, its
    text reads as empty (as a list loses a deleted message)."""
    from test_checkpoint_settle import checkpoint, config

    saver = RedisChatSaver(redis_url)
    value = {"messages": [{"role": "user", "content": LONG}]}
    parent = checkpoint([], 1)
    parent["channel_values"]["__start__"] = value
    parent["channel_versions"]["__start__"] = "00000001.1"
    first = saver.put(config("gone"), parent, {}, {"__start__": "00000001.1"})
    saver.put_writes(first, [("messages", value["messages"])], "start-task")
    child = checkpoint([HumanMessage(LONG, id="h1")], 2)
    saver.put(first, child, {}, {"messages": "00000002.0"})
    stored = stored_values(client, "gone")
    assert len([v for v in stored if v.startswith(cp.SHAPE_MARK)]) == 2
    assert not any(LONG.encode() in v for v in stored)
    got = RedisChatSaver(redis_url).get_tuple(first)
    assert got is not None
    assert got.checkpoint["channel_values"]["__start__"] == value
    assert got.pending_writes == [("start-task", "messages", value["messages"])]
    keys = cp.thread_keys("chat:", "gone")
    client.xdel(keys[0], client.xrange(keys[0])[0][0])
    got = RedisChatSaver(redis_url).get_tuple(first)
    assert got is not None
    assert got.checkpoint["channel_values"]["__start__"]["messages"][0]["content"] == ""
    assert got.pending_writes == [("start-task", "messages", [{"role": "user", "content": ""}])]


def put_parent_with_blob(client: redis.Redis, blob_value: bytes) -> tuple[Any, ...]:
    keys = cp.thread_keys("chat:", "lua")
    field = b"b\0__start__\x0001.0"
    record = cp.Record()
    record.blobs["__start__"] = "01.0"
    client.fcall(
        cp.CP_PUT,
        6,
        *keys,
        "CHECKPOINT",
        b"\0p1",
        record.encode() + b"x",
        "BLOB",
        field,
        blob_value,
    )
    return keys


def test_shapeblob_shapes_the_value_it_names_and_only_that(loaded: redis.Redis) -> None:
    client = loaded
    value = b"msgpack\0" + LONG.encode()
    keys = put_parent_with_blob(client, value)
    field = b"b\0__start__\x0001.0"
    message = b'{"type":"human","data":{"content":"' + LONG.encode() + b'"}}'
    sha1 = hashlib.sha1(value).hexdigest()
    record = cp.Record()
    record.runs["messages"] = "#1..#1"
    stale = ["SHAPEBLOB", field, "0" * 40, "#1..#1", b"msgpack\0stale"]
    shape = ["SHAPEBLOB", field, sha1, "#1..#1 #1..#1", b"msgpack\0tpl"]
    reply = client.fcall(
        cp.CP_PUT,
        6,
        *keys,
        "CHECKPOINT",
        b"\0c1",
        record.encode(),
        *stale,
        *shape,
        "MESSAGES",
        message,
    )
    stream_id = reply[1].decode()
    # runs stay one per text (not joined), the template follows
    assert client.hget(keys[3], field) == (
        b"\x01T" + f"{stream_id}..{stream_id} {stream_id}..{stream_id}".encode() + b"\nmsgpack\0tpl"
    )
    got = client.fcall(cp.CP_GET, 6, *keys, b"\0p1")
    assert got[1] and [e for e in got[4]] == [stream_id.encode(), message]


@pytest.mark.parametrize(
    "args, error",
    [
        (["SHAPEBLOB", b"c\0x", "0" * 40, "#1..#1", b"t"], "SHAPEBLOB needs a field"),
        (["SHAPEBLOB", b"b\0ch\0v", "zz", "#1..#1", b"t"], "SHAPEBLOB needs a field"),
        (["SHAPEBLOB", b"b\0ch\0v", "0" * 40, "", b"t"], "SHAPEBLOB 1 has malformed runs"),
        (["SHAPE", b"\0p1", b"task\x000", "0" * 40, "", b"t"], "SHAPE 1 has malformed runs"),
        (["BLOB", b"b\0ch\0v", b"\x01Tforged\nx"], "shaped value"),
    ],
)
def test_bad_shapes_are_refused_and_nothing_is_written(
    loaded: redis.Redis, args: list[Any], error: str
) -> None:
    keys = cp.thread_keys("chat:", "bad")
    message = b'{"type":"human","data":{"content":"x"}}'
    with pytest.raises(redis.ResponseError, match=error):
        loaded.fcall(cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\0c1", b"0\n", *args, "MESSAGES", message)
    assert loaded.exists(*keys) == 0


def test_a_forged_shaped_write_is_refused(loaded: redis.Redis) -> None:
    keys = cp.thread_keys("chat:", "bad")
    with pytest.raises(redis.ResponseError, match="shaped value"):
        loaded.fcall(
            cp.CP_WRITES, 6, *keys, "WRITES", b"\0c1", 1, "t", 0, "", "ch", b"\x01T#1..#1\nx"
        )
    assert loaded.exists(*keys) == 0
