"""Messages are stored without the fields that hold their class's default.

``message_to_dict`` writes every field of a message: ``"additional_kwargs": {}``,
``"name": null``, ``data.type`` again... about 100 to 200 bytes of each stored message. The
stored dict leaves them out, and ``messages_from_dict`` fills them in again: the same message
is read. Sessions written whole before read the same, and a checkpointer that meets their
messages in a thread knows them (it does not store them a second time).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

from redis_chat_history import RedisChatMessageHistory
from redis_chat_history import _langchain as lc
from redis_chat_history._protocol import encode_stored

texts = st.text(max_size=20)
maybe_texts = st.none() | texts
small_dicts = st.dictionaries(
    st.sampled_from(["a", "b", "model"]), st.integers() | texts, max_size=2
)
contents = texts | st.lists(texts | st.fixed_dictionaries({"type": st.just("text"), "text": texts}))
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"name": texts, "args": small_dicts, "id": texts, "type": st.just("tool_call")}
    ),
    max_size=2,
)


@st.composite
def messages(draw: Any) -> BaseMessage:
    """LangChain messages of every class, each optional field default or not."""
    common = {
        "content": draw(contents),
        "id": draw(maybe_texts),
        "name": draw(maybe_texts),
        "additional_kwargs": draw(small_dicts),
        "response_metadata": draw(small_dicts),
    }
    kind = draw(st.sampled_from(["human", "ai", "chunk", "system", "chat", "tool", "function"]))
    if kind == "human":
        return HumanMessage(**common, example=draw(st.booleans()))
    if kind in ("ai", "chunk"):
        cls = AIMessage if kind == "ai" else AIMessageChunk
        usage = draw(
            st.none()
            | st.fixed_dictionaries(
                {"input_tokens": st.integers(0, 9), "output_tokens": st.integers(0, 9)}
            ).map(lambda u: {**u, "total_tokens": u["input_tokens"] + u["output_tokens"]})
        )
        if kind == "chunk":
            return cls(**common, usage_metadata=usage)
        return cls(**common, tool_calls=draw(tool_calls), usage_metadata=usage)
    if kind == "system":
        return SystemMessage(**common)
    if kind == "chat":
        return ChatMessage(**common, role=draw(st.text(min_size=1, max_size=8)))
    if kind == "function":
        return FunctionMessage(**{**common, "name": draw(texts)})
    return ToolMessage(
        **common,
        tool_call_id=draw(texts),
        artifact=draw(st.none() | small_dicts),
        status=draw(st.sampled_from(["success", "error"])),
    )


@settings(max_examples=400, deadline=None)
@given(messages())
def test_a_stored_message_reads_back_equal_and_never_longer(message: BaseMessage) -> None:
    stored = lc.stored_dict(message)
    assert messages_from_dict([json.loads(lc.encode_message(message))]) == [message]
    whole = encode_stored(message_to_dict(message))
    assert len(lc.encode_message(message)) <= len(whole)
    assert "content" in stored["data"]
    # JSON stored whole before (message_to_dict) has the same canonical bytes
    assert lc.canonical_json(whole) == lc.encode_message(message)
    assert lc.canonical_json(lc.encode_message(message)) == lc.encode_message(message)


def test_defaults_are_left_out_and_what_differs_is_kept() -> None:
    plain = HumanMessage("hi", id="h1")
    assert lc.stored_dict(plain) == {"type": "human", "data": {"content": "hi", "id": "h1"}}
    tool = ToolMessage("18 C", tool_call_id="c1", status="error", artifact={"raw": 18})
    assert lc.stored_dict(tool)["data"] == {
        "content": "18 C",
        "tool_call_id": "c1",
        "artifact": {"raw": 18},
        "status": "error",
    }
    # a default with a value is kept (LangChain.js has none for a tool message's status)
    assert lc.stored_dict(ToolMessage("x", tool_call_id="c1"))["data"]["status"] == "success"
    # a value of another type that compares equal to the default is kept (0 == False)
    odd = {"type": "human", "data": {"content": "x", "example": 0}}
    assert lc.compact_stored(odd) == odd
    # a type messages_from_dict does not build is kept whole
    other = {"type": "generic", "data": {"content": "x", "name": None}}
    assert lc.compact_stored(other) is other


class Custom(HumanMessage):
    """A subclass: its defaults may differ from HumanMessage's, so it is stored whole."""

    name: str | None = "custom"


def test_a_subclass_is_stored_whole() -> None:
    message = Custom("x", name=None)
    assert lc.stored_dict(message) == message_to_dict(message)


def test_the_history_stores_the_compact_form(redis_url: str, client: redis.Redis) -> None:
    history = RedisChatMessageHistory("compact", redis_url=redis_url)
    sent = [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1")]
    history.add_messages(sent)
    entries = client.xrange("chat:{compact}:m")
    assert [entry[1][b"m"] for entry in entries] == [
        b'{"type":"human","data":{"content":"hi","id":"h1"}}',
        b'{"type":"ai","data":{"content":"hello","id":"a1"}}',
    ]
    assert history.messages == sent


def test_a_session_stored_whole_reads_the_same(redis_url: str, client: redis.Redis) -> None:
    """Sessions of earlier versions hold whole dicts: read, extended and read again."""
    old = [SystemMessage("be brief", id="s1"), HumanMessage("hi", id="h1")]
    for message in old:
        client.xadd("chat:{whole}:m", {"m": encode_stored(message_to_dict(message))})
    history = RedisChatMessageHistory("whole", redis_url=redis_url)
    assert history.messages == old
    history.add_messages([AIMessage("hello", id="a1")])
    assert history.messages == [*old, AIMessage("hello", id="a1")]


def test_a_saver_knows_messages_stored_whole_before(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread written by an earlier version (whole dicts) goes on without storing its
    messages again: a new saver (nothing remembered) recognises them in the stream."""
    pytest.importorskip("langgraph")
    from redis_chat_history.checkpoint import RedisChatSaver
    from test_checkpoint_settle import checkpoint, config

    with monkeypatch.context() as patch:
        patch.setattr(lc, "stored_dict", message_to_dict)
        old = RedisChatSaver(redis_url)
        history = [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1", name="bot")]
        first = old.put(config("t"), checkpoint(history, 1), {}, {"messages": "00000001.0"})
    stream = "chat:{t}:m"
    assert b'"additional_kwargs":{}' in client.xrange(stream)[0][1][b"m"]
    new = RedisChatSaver(redis_url)
    longer = [*history, HumanMessage("more", id="h2")]
    second = new.put(first, checkpoint(longer, 2), {}, {"messages": "00000002.0"})
    assert client.xlen(stream) == 3
    assert (
        client.xrange(stream)[2][1][b"m"] == b'{"type":"human","data":{"content":"more","id":"h2"}}'
    )
    got = new.get_tuple(second)
    assert got is not None and got.checkpoint["channel_values"]["messages"] == longer


@pytest.mark.parametrize(
    "edited",
    [
        {"content": "x", "id": "m", "artifact": None, "tool_call_id": "c", "status": "success"},
        {"content": "x", "id": "m", "tool_call_id": "c", "status": "success", "extra": False},
        {"content": "x", "id": "m", "tool_call_id": "c", "status": "success", "artifact": {}},
        {"content": "x", "id": "m", "tool_call_id": "c", "status": "success", "artifact": [1.0]},
        {"content": [], "id": "m", "tool_call_id": "c", "status": "success", "artifact": []},
    ],
)
def test_an_edit_of_an_empty_field_is_an_edit(
    redis_url: str, client: redis.Redis, edited: dict[str, object]
) -> None:
    """The library takes a whole dict and its compact form as the same message, byte for
    byte: any other difference (an empty value changed, 1 and 1.0, {} and []) is an edit,
    stored anew."""
    pytest.importorskip("langgraph")
    from redis_chat_history import _checkpoint_protocol as cp
    from redis_chat_history.checkpoint import RedisChatSaver

    RedisChatSaver(redis_url).put(  # loads the library
        {"configurable": {"thread_id": "load", "checkpoint_ns": ""}},
        {"v": 1, "id": "1", "ts": "", "channel_values": {}, "channel_versions": {},
         "versions_seen": {}, "updated_channels": None},
        {},
        {},
    )  # fmt: skip
    keys = cp.thread_keys("chat:", "edits")
    first = {"content": "x", "id": "m", "tool_call_id": "c", "status": "success", "artifact": [1]}
    stored = encode_stored({"type": "tool", "data": first})
    client.fcall("chathist_append", 3, *keys[:3], "MESSAGES", stored)
    message = encode_stored({"type": "tool", "data": edited})
    client.fcall(cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\0c1", b"17\nMmessages\t#1..#1\n",
                 "MESSAGES", message)  # fmt: skip
    assert client.xlen(keys[0]) == 2
