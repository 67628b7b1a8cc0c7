"""Windows that never start with an orphan tool result, and conditional appends (library 1.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RawSession


def human(text: str) -> str:
    return json.dumps({"type": "human", "data": {"content": text}})


def ai(text: str, calls: list[str] = ()) -> str:  # type: ignore[assignment]
    tool_calls = [{"id": call, "name": "lookup", "args": {"q": call}} for call in calls]
    return json.dumps({"type": "ai", "data": {"content": text, "tool_calls": tool_calls}})


def tool(call: str) -> str:
    return json.dumps({"type": "tool", "data": {"content": f"result {call}", "tool_call_id": call}})


def transcript(turns: list[int]) -> list[str]:
    """Turns of an agent: a question, an AI message calling tools (when asked to), their
    results, and the answer."""
    messages: list[str] = []
    for number, calls in enumerate(turns):
        ids = [f"call-{number}-{i}" for i in range(calls)]
        messages.append(human(f"question {number}"))
        if ids:
            messages.append(ai("", ids))
            messages.extend(tool(call) for call in ids)
        messages.append(ai(f"answer {number}"))
    return messages


def kinds(reply: list[Any]) -> list[str]:
    return [json.loads(item)["type"] for item in reply[1::2]]


def assert_no_orphan(messages: list[dict[str, Any]]) -> None:
    """Every tool result in the window comes after the AI message that called it."""
    called: set[str] = set()
    for message in messages:
        called.update(call["id"] for call in message["data"].get("tool_calls", []))
        if message["type"] == "tool":
            assert message["data"]["tool_call_id"] in called, messages


turn_lists = st.lists(st.integers(0, 3), min_size=1, max_size=6)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(turn_lists)
def test_latest_windows_of_every_size_start_at_a_valid_point(
    raw: RawSession, turns: list[int]
) -> None:
    raw.client.delete(*raw.keys)
    messages = transcript(turns)
    ids = raw.call("append", "MESSAGES", *messages)
    for size in range(1, len(messages) + 1):
        reply = raw.call("range", "COUNT", size, "TOOLSAFE", read_only=True)
        window = [json.loads(item) for item in reply[1::2]]
        assert_no_orphan(window)
        expected = list(zip(ids, messages, strict=True))[-size:]
        while expected and json.loads(expected[0][1])["type"] == "tool":
            expected.pop(0)
        assert reply[0::2] == [stream_id for stream_id, _ in expected]


@SETTINGS
@given(turn_lists)
def test_pages_read_backward_lose_nothing(raw: RawSession, turns: list[int]) -> None:
    """Paging with BEFORE = the first id of the previous page: each page starts at a valid
    point, and the tool results a page leaves out end the next older page."""
    raw.client.delete(*raw.keys)
    messages = transcript(turns)
    raw.call("append", "MESSAGES", *messages)
    seen: list[bytes] = []
    before: list[Any] = []
    while True:
        reply = raw.call("range", "COUNT", 3, *before, "TOOLSAFE", read_only=True)
        if not reply:
            break
        assert_no_orphan([json.loads(item) for item in reply[1::2]])
        seen = list(reply[1::2]) + seen
        before = ["BEFORE", reply[0]]
    assert [item.decode() for item in seen] == messages


@SETTINGS
@given(turn_lists, st.integers(1, 8))
def test_trims_take_tool_results_with_their_call(
    raw: RawSession, turns: list[int], window: int
) -> None:
    raw.client.delete(*raw.keys)
    for message in transcript(turns):
        raw.call("append", "MAXLEN", window, "TOOLSAFE", "MESSAGES", message)
        stored = [json.loads(item) for item in raw.call("range", read_only=True)[1::2]]
        assert len(stored) <= window
        if len(stored) > 1:  # the newest message always stays
            assert_no_orphan(stored)


def test_toolsafe_is_refused_with_after(raw: RawSession) -> None:
    with pytest.raises(redis.ResponseError, match="TOOLSAFE applies to windows read backward"):
        raw.call("range", "AFTER", "0", "TOOLSAFE", read_only=True)


# -- conditional appends ---------------------------------------------------------------


def test_an_append_conditional_on_the_last_id(raw: RawSession) -> None:
    first = raw.call("append", "IFLAST", "0-0", "MESSAGES", human("one"))
    with pytest.raises(redis.ResponseError, match="CHATHIST_CONFLICT the session's last message"):
        raw.call("append", "IFLAST", "0-0", "MESSAGES", human("two"))
    second = raw.call("append", "IFLAST", first[0], "MESSAGES", human("two"))
    with pytest.raises(redis.ResponseError, match="CHATHIST_CONFLICT"):
        raw.call("append", "IFLAST", first[0], "MESSAGES", human("three"))
    assert raw.call("len", read_only=True) == 2
    assert second[0] > first[0]


def test_a_retried_conditional_append_is_replayed_not_a_conflict(raw: RawSession) -> None:
    ids = raw.call("append", "IFLAST", "0-0", "TOKEN", "run-1", "MESSAGES", human("a"), human("b"))
    again = raw.call(
        "append", "IFLAST", "0-0", "TOKEN", "run-1", "MESSAGES", human("a"), human("b")
    )
    assert again == ids and raw.call("len", read_only=True) == 2


def test_two_writers_racing_on_one_session_one_wins(raw: RawSession) -> None:
    seen = raw.call("append", "MESSAGES", human("start"))[0]
    results = []
    for writer in ("w1", "w2"):
        try:
            results.append(raw.call("append", "IFLAST", seen, "MESSAGES", human(writer)))
        except redis.ResponseError as error:
            results.append(str(error))
    assert isinstance(results[0], list) and "CHATHIST_CONFLICT" in results[1]
    assert kinds(raw.call("range", read_only=True)) == ["human", "human"]


@pytest.mark.parametrize("value", ["", "abc", "12"])
def test_a_bad_iflast_is_refused(raw: RawSession, value: str) -> None:
    with pytest.raises(redis.ResponseError, match="IFLAST must be a stream id"):
        raw.call("append", "IFLAST", value, "MESSAGES", human("x"))
