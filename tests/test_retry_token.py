"""Retries named by a TOKEN (library 1.3): exactly-once appends and imports, with state that
stays small however long the session grows (raw FCALL)."""

from __future__ import annotations

import json
import time

import pytest
import redis

from conftest import RawSession
from redis_chat_history import library_source


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


def test_a_write_of_the_last_minute_can_be_retried_and_the_state_stays_small(
    raw: RawSession,
) -> None:
    replies = {}
    for i in range(600):
        replies[i] = raw.call("append", "TOKEN", f"t{i}", "MESSAGES", stored(f"m{i}"))
    kept = raw.client.hget(raw.keys[1], "\0t")
    assert len(kept) <= 16384  # the oldest went first
    lines = kept.split(b"\n")
    assert lines[-1].split()[1] == b"t599"
    oldest = int(lines[0].split()[1][1:])
    assert 0 < oldest < 400
    for i in (599, 500, oldest):
        assert raw.call("append", "TOKEN", f"t{i}", "MESSAGES", stored(f"m{i}")) == replies[i]
    assert raw.call("len", read_only=True) == 600
    assert not raw.client.exists(raw.keys[2])  # no per-message map for messages without ids


def test_tokens_older_than_their_time_are_dropped(client: redis.Redis) -> None:
    source = library_source().replace("local TOKEN_MS = 60000", "local TOKEN_MS = 50")
    client.function_load(source, replace=True)
    raw = RawSession(client, "chat:", "timed")
    first = raw.call("append", "TOKEN", "early", "MESSAGES", stored("a"))
    assert raw.call("append", "TOKEN", "early", "MESSAGES", stored("a")) == first
    time.sleep(0.1)
    raw.call("append", "TOKEN", "later", "MESSAGES", stored("b"))
    assert raw.client.hget(raw.keys[1], "\0t").split()[1] == b"later"
    raw.call("append", "TOKEN", "early", "MESSAGES", stored("a"))  # a new write now
    assert raw.call("len", read_only=True) == 3


@pytest.mark.parametrize("token", ["", "a b", "x" * 65, "semi;colon", "new\nline"])
def test_a_bad_token_is_refused_and_nothing_is_written(raw: RawSession, token: str) -> None:
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG TOKEN must be"):
        raw.call("append", "TOKEN", token, "MESSAGES", stored("a"))
    assert raw.call("len", read_only=True) == 0
