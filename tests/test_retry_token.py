"""Retries named by a TOKEN (library 1.3): exactly-once appends and imports, with state that
stays small however long the session grows (raw FCALL)."""

from __future__ import annotations

import json

import pytest
import redis

from conftest import RawSession


def stored(text: str) -> str:
    return json.dumps({"type": "human", "data": {"content": text}})


def test_a_retried_append_stores_nothing_and_replies_the_same_ids(raw: RawSession) -> None:
    first = raw.call("append", "TOKEN", "call-1", "MESSAGES", stored("a"), stored("b"))
    again = raw.call("append", "TOKEN", "call-1", "MESSAGES", stored("a"), stored("b"))
    assert again == first
    assert raw.call("len", read_only=True) == 2
    other = raw.call("append", "TOKEN", "call-2", "MESSAGES", stored("a"))
    assert other != first[:1] and raw.call("len", read_only=True) == 3


def test_a_retried_import_replies_its_ids(raw: RawSession) -> None:
    entries = ["5-0", stored("x"), "6-0", stored("y")]
    assert raw.call("import", "TOKEN", "imp", "ENTRIES", *entries) == [b"5-0", b"6-0"]
    assert raw.call("import", "TOKEN", "imp", "ENTRIES", *entries) == [b"5-0", b"6-0"]
    with pytest.raises(redis.ResponseError, match="not after the session's last id"):
        raw.call("import", "ENTRIES", *entries)  # without the token it is a new import
    assert raw.call("len", read_only=True) == 2


def test_a_token_is_kept_for_the_next_64_to_128_writes_and_the_state_stays_small(
    raw: RawSession,
) -> None:
    replies = {}
    for i in range(300):
        replies[i] = raw.call("append", "TOKEN", f"t{i}", "MESSAGES", stored(f"m{i}"))
    fields = raw.client.hkeys(raw.keys[1])
    tokens = [field for field in fields if field.startswith(b"\0T")]
    assert 64 <= len(tokens) <= 128
    for i in range(299, 299 - 64, -1):  # the latest 64 are always kept
        assert raw.call("append", "TOKEN", f"t{i}", "MESSAGES", stored(f"m{i}")) == replies[i]
    assert raw.call("len", read_only=True) == 300
    raw.call("append", "TOKEN", "t0", "MESSAGES", stored("m0"))  # long gone: a new write
    assert raw.call("len", read_only=True) == 301
    assert not raw.client.exists(raw.keys[2])  # no per-message map for messages without ids


@pytest.mark.parametrize("token", ["", "a b", "x" * 65, "semi;colon", "new\nline"])
def test_a_bad_token_is_refused_and_nothing_is_written(raw: RawSession, token: str) -> None:
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG TOKEN must be"):
        raw.call("append", "TOKEN", token, "MESSAGES", stored("a"))
    assert raw.call("len", read_only=True) == 0
