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
from langgraph.graph import MessagesState

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
    values += [w.value for w in cp.decode_record_fields(client.hscan_iter(keys[3]))]
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


def put_input(saver: RedisChatSaver, thread_id: str) -> tuple[Any, dict[str, Any]]:
    """Puts a thread's first checkpoint, whose __start__ value is the caller's input with a
    long text: its config and that value."""
    from test_checkpoint_settle import checkpoint, config

    value = {"messages": [{"role": "user", "content": LONG}]}
    parent = checkpoint([], 1)
    parent["channel_values"]["__start__"] = value
    parent["channel_versions"]["__start__"] = "00000001.1"
    return saver.put(config(thread_id), parent, {}, {"__start__": "00000001.1"}), value


def test_shaped_values_settled_by_a_put_and_a_message_gone(
    redis_url: str, client: redis.Redis
) -> None:
    """A parent's input value and write name the message its child's put stores: both are
    shaped and read back equal; once a user deletes that message from the session, its
    text reads as empty (as a list loses a deleted message)."""
    from test_checkpoint_settle import checkpoint

    saver = RedisChatSaver(redis_url)
    first, value = put_input(saver, "gone")
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


def test_an_input_write_saved_after_the_next_put_is_shaped_at_once(
    redis_url: str, client: redis.Redis
) -> None:
    """LangGraph may save a step's writes after the next checkpoint (background workers):
    the put that stored the input message ran already, so the input write is stored shaped
    by its own call (SHAPED, 1.8) and reads back equal, on another saver too."""
    from test_checkpoint_settle import checkpoint

    saver = RedisChatSaver(redis_url)
    first, value = put_input(saver, "late")
    child = checkpoint([HumanMessage(LONG, id="h1")], 2)
    saver.put(first, child, {}, {"messages": "00000002.0"})
    saver.put_writes(first, [("messages", value["messages"])], "start-task")
    stored = stored_values(client, "late")
    assert len([v for v in stored if v.startswith(cp.SHAPE_MARK)]) == 2
    assert not any(LONG.encode() in v for v in stored)
    got = RedisChatSaver(redis_url).get_tuple(first)
    assert got is not None
    assert got.pending_writes == [("start-task", "messages", value["messages"])]
    # a saver that did not see the put keeps the write's value (memory, never correctness)
    RedisChatSaver(redis_url).put_writes(first, [("messages", value["messages"])], "other-task")
    got = RedisChatSaver(redis_url).get_tuple(first)
    assert got is not None and ("other-task", "messages", value["messages"]) in got.pending_writes


def test_a_late_input_write_stores_its_runs_as_short_as_a_settled_one(
    redis_url: str, client: redis.Redis
) -> None:
    """SHAPED runs are stored as the library stores any (a run of one entry as "<a>")."""
    from test_checkpoint_settle import checkpoint

    saver = RedisChatSaver(redis_url)
    first, value = put_input(saver, "short")
    saver.put(first, checkpoint([HumanMessage(LONG, id="h1")], 2), {}, {"messages": "00000002.0"})
    saver.put_writes(first, [("messages", value["messages"])], "start-task")
    shaped = [v for v in stored_values(client, "short") if v.startswith(cp.SHAPE_MARK)]
    assert len(shaped) == 2
    assert all(b".." not in v.partition(b"\n")[0] for v in shaped), shaped


def test_a_channel_value_of_bytes_starting_with_1M_is_replied_as_stored(
    loaded: redis.Redis,
) -> None:
    """A BLOB value starting with "\\1M" is bytes (1.5): replies give it as stored, not as
    runs (only a shaped value's runs are replied in their long form)."""
    keys = cp.thread_keys("chat:", "blobm")
    value = b"\x01Mhello world"
    record = b"5\nBx\t1\n"
    loaded.fcall(cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\0c1", record, "BLOB", b"b\0x\x001", value)
    assert loaded.fcall(cp.CP_GET, 6, *keys, b"\0c1")[3] == [b"x", value]
    assert loaded.fcall(cp.CP_MORE, 6, *keys, "BLOBS", b"\0c1", 1)[1:] == [b"x", value]


@pytest.mark.parametrize(
    "shaped",
    [
        ["SHAPED", 2, "1-0", "tpl"],  # no such write
        ["SHAPED", 1, "1-0..2-0", "tpl"],  # a run of two entries
        ["SHAPED", 1, "#1", "tpl"],  # a placeholder
        ["SHAPED", 1, "1-0", ""],  # no template
        ["SHAPED", 1, "", "tpl"],  # no runs
        ["SHAPED", 1, "1-0"],  # no template at all
    ],
)
def test_a_malformed_shaped_write_is_refused(loaded: redis.Redis, shaped: list[Any]) -> None:
    keys = cp.thread_keys("chat:", "bad")
    with pytest.raises(redis.ResponseError, match="SHAPED needs"):
        loaded.fcall(cp.CP_WRITES, 6, *keys, "WRITES", b"\0c1", 1, "t", 0, "", "ch", b"v", *shaped)
    assert loaded.exists(*keys) == 0


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
        b"\x01T" + f"{stream_id} {stream_id}".encode() + b"\nmsgpack\0tpl"
    )
    got = client.fcall(cp.CP_GET, 6, *keys, b"\0p1")
    assert got[1] and [e for e in got[4]] == [stream_id.encode(), message]
    # (stored "<a>", replied "<a>..<a>" as to clients of every 1.x version)
    assert got[3][1::2] == [
        b"\x01T" + f"{stream_id}..{stream_id} {stream_id}..{stream_id}".encode() + b"\nmsgpack\0tpl"
    ]


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


# -- found by a worst-case review --------------------------------------------------------------


def test_a_value_repeating_a_message_text_shapes_once_per_text(
    redis_url: str, client: redis.Redis
) -> None:
    """A value holding one long text 500 times: one placeholder, one run (a run per
    occurrence would spend the library's segment budget for nothing)."""
    from test_checkpoint_settle import checkpoint, config

    saver = RedisChatSaver(redis_url)
    parent = checkpoint([], 1)
    parent["channel_values"]["docs"] = [LONG] * 500
    parent["channel_versions"]["docs"] = "00000001.1"
    first = saver.put(config("rep"), parent, {}, {"docs": "00000001.1"})
    child = checkpoint([HumanMessage(LONG, id="h1")], 2)
    child["channel_values"]["docs"] = [LONG] * 500
    child["channel_versions"]["docs"] = "00000001.1"
    saver.put(first, child, {}, {"messages": "00000002.0"})
    shaped = [v for v in stored_values(client, "rep") if v.startswith(cp.SHAPE_MARK)]
    assert len(shaped) == 1 and shaped[0].partition(b"\n")[0].count(b" ") == 0
    got = RedisChatSaver(redis_url).get_tuple(first)
    assert got is not None and got.checkpoint["channel_values"]["docs"] == [LONG] * 500


def test_a_long_conversation_in_one_invoke_fits_the_segment_budget(redis_url: str) -> None:
    """An invoke with 4200 long dict messages: the put after the input stores 4200 messages
    and would shape the __start__ value and write with 4200 runs each, more than the library
    takes in one call: the saver sends what fits (the rest keeps its bytes)."""
    from langgraph.graph import START, StateGraph

    builder = StateGraph(MessagesState)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    graph = builder.compile(checkpointer=RedisChatSaver(redis_url))
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} " + "y" * 140}
        for i in range(4200)
    ]
    config: Any = {"configurable": {"thread_id": "import"}}
    graph.invoke({"messages": history}, config)
    state = graph.get_state(config).values["messages"]
    assert [m.content for m in state] == [item["content"] for item in history]
    inputs = [
        t.checkpoint["channel_values"]["__start__"]
        for t in RedisChatSaver(redis_url).list(config)
        if "__start__" in t.checkpoint["channel_values"]
    ]
    assert inputs == [{"messages": history}]


def test_messages_stored_whole_before_are_not_stored_again_by_a_put(
    redis_url: str, client: redis.Redis
) -> None:
    """A session written before 1.6 (whole dicts), then a thread's first put holding those
    messages (no parent view to find them in): the library knows each by its id and JSON
    equal but for empty fields, and keeps one entry each."""
    from langchain_core.messages import AIMessage, message_to_dict

    from redis_chat_history import RedisChatMessageHistory
    from redis_chat_history._protocol import encode_stored
    from test_checkpoint_settle import checkpoint, config

    old = [HumanMessage("hello", id="m1"), AIMessage("hi there", id="m2", name="bot")]
    keys = cp.thread_keys("chat:", "upgraded")
    saver = RedisChatSaver(redis_url)
    saver.put(config("warm"), checkpoint([], 1), {}, {})  # loads the library
    whole = [encode_stored(message_to_dict(m)) for m in old]
    client.fcall("chathist_append", 3, *keys[:3], "MESSAGES", *whole)
    saver.put(config("upgraded"), checkpoint(old, 1), {}, {"messages": "00000001.0"})
    stored = RedisChatMessageHistory("upgraded", redis_url=redis_url).messages
    assert stored == old
    # an edit is still an edit: the message is stored anew
    edited = [old[0], AIMessage("hi there", id="m2", name="other")]
    saver.put(config("upgraded"), checkpoint(edited, 2), {}, {"messages": "00000002.0"})
    assert client.xlen(keys[0]) == 3


class MyHuman(HumanMessage):
    """A subclass of a LangChain class: stored whole."""


def test_a_subclass_message_is_known_to_a_saver_that_reads_the_parent(redis_url: str) -> None:
    from test_checkpoint_settle import checkpoint, config

    sent: list[int] = []
    message = MyHuman(LONG, id="sub")
    first = RedisChatSaver(redis_url).put(
        config("sub"), checkpoint([message], 1), {}, {"messages": "00000001.0"}
    )
    original = cp.put_call

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(len(args[4]))  # the messages the put carries
        return original(*args, **kwargs)

    cp.put_call = counting  # type: ignore[assignment]
    try:
        RedisChatSaver(redis_url).put(
            first,
            checkpoint([message, HumanMessage("next", id="n")], 2),
            {},
            {"messages": "00000002.0"},
        )
    finally:
        cp.put_call = original  # type: ignore[assignment]
    assert sent == [1]


def test_a_message_list_blob_is_bytes_and_a_forged_shaped_copy_is_refused(
    loaded: redis.Redis,
) -> None:
    """A BLOB value starting with \\1M is bytes (as in 1.5: no entries replied for it), and
    cp_load refuses a \\1T value that is not a shaped value."""
    keys = cp.thread_keys("chat:", "forged")
    message = b'{"type":"human","data":{"content":"secret"}}'
    record = cp.Record()
    record.blobs["x"] = "1"
    reply = loaded.fcall(cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\0c0", b"0\n", "MESSAGES", message)
    stream_id = reply[1]
    loaded.fcall(
        cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\0c1", record.encode(),
        "BLOB", b"b\0x\x001", b"\x01M" + stream_id + b".." + stream_id,
    )  # fmt: skip
    got = loaded.fcall_ro(cp.CP_GET, 6, *keys, b"\0c1")
    assert got[4] == []
    for value in (b"\x01Tno newline", b"\x01Tzz..zz\nmsgpack\x00\xc0", b"\x01T1-1..1-1\n"):
        with pytest.raises(redis.ResponseError, match="malformed shaped value"):
            loaded.fcall(cp.CP_LOAD, 6, *keys, "C", b"b\0y\x001", value)
    assert not loaded.hexists(keys[3], b"b\0y\x001")


def test_cp_load_refuses_a_malformed_shaped_write(loaded: redis.Redis) -> None:
    """A copied group (in its own field, or folded into a count) whose write value is a
    malformed shaped value is refused like a copied channel value."""
    keys = cp.thread_keys("chat:", "forged-w")
    bad = b"\x01Tno newline"
    group = b"0:" + b"8:messages" + str(len(bad)).encode() + b":" + bad
    for field, value in [
        (b"\0c1\0=t\x000", group),
        (b"\0c1", b"1\0t\x000\0=" + group),
    ]:
        with pytest.raises(redis.ResponseError, match="malformed shaped value"):
            loaded.fcall(cp.CP_LOAD, 6, *keys, "W", field, value)
    assert loaded.exists(*keys) == 0
    good = b"0:8:messages5:bytes"
    assert loaded.fcall(cp.CP_LOAD, 6, *keys, "W", b"\0c1\0=t\x000", good) == 1
