"""Bad input through raw FCALL, as a careless or hostile client in another language sends it.

Named cases first (wrong key counts, keys of another session or of a foreign layout,
non-UTF-8 bytes, malformed or deeply nested JSON, huge messages and batches, bad TTLs,
empty and 10 KB session ids), then hypothesis-generated argument lists. For every call:
the server keeps running with the library loaded; a call that replies an error has
written nothing (every key dumped before and after); and every session stays readable
by this package.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_chat_history import (
    RedisChatMessageHistory,
    UnreadableMessageError,
    library_source,
    session_keys,
)
from redis_chat_history import _langchain as lc
from redis_chat_history import _protocol as protocol
from redis_chat_history.local_server import LocalRedis

S = session_keys("chat:", "s")
T = session_keys("chat:", "t")
TYPED = session_keys("chat:", "typed")
LONG_ID = "x" * 10240
HUGE = json.dumps({"type": "human", "data": {"content": "x" * (1 << 20)}})
BATCH = [json.dumps({"type": "human", "data": {"content": "b"}})] * 10001
GOOD = json.dumps({"type": "human", "data": {"content": "good", "id": "good-1"}})
FUNCTIONS = ["append", "range", "search", "clear", "len", "version"]
NEW_FUNCTIONS = ["delete", "import", "ttl", "expire", "reindex"]  # chathist 1.1
#: Generated calls per run.
EXAMPLES = 400


@pytest.fixture(scope="module")
def client(server: LocalRedis) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(server.url)
    connection.flushall()
    connection.function_load(library_source(), replace=True)
    yield connection
    connection.close()


def seed(client: redis.Redis) -> None:
    """A known state: session s (3 messages, one with an id, a TTL), session t (1 message),
    and a string where session "typed" keeps its messages."""
    client.flushall()
    client.fcall(
        "chathist_append", 3, *S, "TTL", 1000, "MESSAGES",
        GOOD, '{"type":"ai","data":{"content":"answer"}}', '{"type":"human","data":{"content":[]}}',
    )  # fmt: skip
    client.fcall("chathist_append", 3, *T, "MESSAGES", '{"type":"human","data":{"content":"t"}}')
    client.set(TYPED[0], "not a stream")


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, bool]]:
    """Every key's serialized value and whether it has a TTL."""
    keys = list(client.scan_iter(count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
    return {key: (replies[2 * i], replies[2 * i + 1] >= 0) for i, key in enumerate(keys)}


def assert_all_sessions_readable(client: redis.Redis) -> None:
    """Every stream of the keyspace reads back as LangChain messages through the package."""
    for key in client.scan_iter(match="*:m", _type="stream"):
        base = key.decode("utf-8", "surrogateescape")[:-2]
        keys = (base + ":m", base + ":x", base + ":i")
        reply = client.fcall_ro("chathist_range", 3, *keys)
        records = lc.decode_stored(reply)
        assert len(records) == client.xlen(key)


def send(
    client: redis.Redis, command: str, function: str, numkeys: int, keys: Any, args: Any
) -> Any:
    return client.execute_command(command, f"chathist_{function}", numkeys, *keys, *args)


def outcome(
    client: redis.Redis, command: str, function: str, numkeys: int, keys: Any, args: Any
) -> str | None:
    """Send one call; assert the invariants; return the error reply's text or None."""
    before = snapshot(client)
    try:
        send(client, command, function, numkeys, keys, args)
        error = None
    except redis.ResponseError as refused:
        error = str(refused)
        assert snapshot(client) == before, f"an error reply wrote something: {error}"
    assert client.ping()
    assert client.fcall_ro("chathist_version", 0) == protocol.LIBRARY_VERSION.encode()
    assert_all_sessions_readable(client)
    return error


# -- named cases ---------------------------------------------------------------------------------

NAMED: list[tuple[str, str, list[Any], list[Any], str]] = [
    ("no keys", "append", [], ["MESSAGES", GOOD], "BADKEYS"),
    ("two keys", "append", list(S[:2]), ["MESSAGES", GOOD], "BADKEYS"),
    ("four keys", "range", [*S, S[0]], [], "BADKEYS"),
    ("keys of two sessions", "append", [S[0], T[1], S[2]], ["MESSAGES", GOOD], "BADKEYS"),
    ("keys in the wrong order", "len", [S[1], S[0], S[2]], [], "BADKEYS"),
    ("foreign layout", "append", ["messages", "index", "ids"], ["MESSAGES", GOOD], "BADKEYS"),
    ("no hash tag", "clear", ["chat:s:m", "chat:s:x", "chat:s:i"], [], "BADKEYS"),
    (
        "empty session id",
        "append",
        ["chat:{}:m", "chat:{}:x", "chat:{}:i"],
        ["MESSAGES", GOOD],
        "BADKEYS",
    ),
    ("key of another type", "append", list(TYPED), ["MESSAGES", GOOD], "BADKEYS"),
    ("keys to version", "version", list(S), [], "BADKEYS"),
    ("no MESSAGES", "append", list(S), [], "BADARG"),
    ("MESSAGES and nothing", "append", list(S), ["MESSAGES"], "BADARG"),
    ("unknown option", "append", list(S), ["FOO", "1", "MESSAGES", GOOD], "BADARG"),
    ("TTL twice", "append", list(S), ["TTL", "1", "TTL", "2", "MESSAGES", GOOD], "BADARG"),
    ("negative TTL", "append", list(S), ["TTL", "-1", "MESSAGES", GOOD], "BADARG"),
    ("enormous TTL", "append", list(S), ["TTL", "315360001", "MESSAGES", GOOD], "BADARG"),
    ("TTL 2^64", "append", list(S), ["TTL", str(2**64), "MESSAGES", GOOD], "BADARG"),
    ("NaN TTL", "append", list(S), ["TTL", "nan", "MESSAGES", GOOD], "BADARG"),
    ("inf TTL", "append", list(S), ["TTL", "inf", "MESSAGES", GOOD], "BADARG"),
    ("fractional TTL", "append", list(S), ["TTL", "1.5", "MESSAGES", GOOD], "BADARG"),
    ("hex TTL", "append", list(S), ["TTL", "0x10", "MESSAGES", GOOD], "BADARG"),
    ("TTL without value", "append", list(S), ["TTL"], "BADARG"),
    ("not JSON", "append", list(S), ["MESSAGES", "hello"], "BADMSG"),
    ("truncated JSON", "append", list(S), ["MESSAGES", GOOD[:-3]], "BADMSG"),
    ("JSON array", "append", list(S), ["MESSAGES", "[]"], "BADMSG"),
    ("no type", "append", list(S), ["MESSAGES", '{"data":{"content":"x"}}'], "BADMSG"),
    ("empty type", "append", list(S), ["MESSAGES", '{"type":"","data":{"content":"x"}}'], "BADMSG"),
    (
        "type too long",
        "append",
        list(S),
        ["MESSAGES", json.dumps({"type": "t" * 65, "data": {"content": "x"}})],
        "BADMSG",
    ),
    ("no data", "append", list(S), ["MESSAGES", '{"type":"human"}'], "BADMSG"),
    (
        "numeric content",
        "append",
        list(S),
        ["MESSAGES", '{"type":"human","data":{"content":5}}'],
        "BADMSG",
    ),
    (
        "object content",
        "append",
        list(S),
        ["MESSAGES", '{"type":"human","data":{"content":{"a":1}}}'],
        "BADMSG",
    ),
    (
        "lone surrogate escape",
        "append",
        list(S),
        ["MESSAGES", '{"type":"human","data":{"content":"\\ud800"}}'],
        "BADMSG",
    ),
    ("one bad message in a batch", "append", list(S), ["MESSAGES", GOOD, "{", GOOD], "BADMSG"),
    (
        "nested 1000 deep",
        "append",
        list(S),
        ["MESSAGES", '{"type":"human","data":{"content":"x","d":' + "[" * 1000 + "]" * 1000 + "}}"],
        "BADMSG",
    ),
    ("huge message", "append", list(S), ["MESSAGES", HUGE], "TOOBIG"),
    ("huge batch", "append", list(S), ["MESSAGES", *BATCH], "TOOBIG"),
    ("negative COUNT", "range", list(S), ["COUNT", "-1"], "BADARG"),
    ("NaN COUNT", "range", list(S), ["COUNT", "NaN"], "BADARG"),
    ("bad BEFORE", "range", list(S), ["BEFORE", "abc"], "BADARG"),
    ("enormous BEFORE", "range", list(S), ["BEFORE", "9" * 50], "BADARG"),
    ("no query", "search", list(S), [], "BADARG"),
    ("huge query", "search", list(S), ["q" * 5000], "BADARG"),
    ("LIMIT over 1000", "search", list(S), ["x", "LIMIT", "1001"], "BADARG"),
    ("clear with arguments", "clear", list(S), ["now"], "BADARG"),
]


@pytest.mark.parametrize(
    ("function", "keys", "args", "code"),
    [case[1:] for case in NAMED],
    ids=[case[0] for case in NAMED],
)
def test_named_bad_input_is_refused_with_its_code_and_writes_nothing(
    client: redis.Redis, function: str, keys: list[Any], args: list[Any], code: str
) -> None:
    seed(client)
    error = outcome(client, "FCALL", function, len(keys), keys, args)
    assert error is not None and error.startswith(f"CHATHIST_{code} "), error


@pytest.mark.parametrize(
    ("numkeys", "error"),
    [(-1, "can't be negative"), (4, "greater than number of args"), (99, "greater than")],
)
def test_wrong_numkeys_is_refused_by_redis(client: redis.Redis, numkeys: int, error: str) -> None:
    seed(client)
    refused = outcome(client, "FCALL", "len", numkeys, S, [])
    assert refused is not None and error in refused


def test_writer_via_fcall_ro_is_refused(client: redis.Redis) -> None:
    seed(client)
    refused = outcome(client, "FCALL_RO", "append", 3, S, ["MESSAGES", GOOD])
    assert refused is not None and "write flag" in refused


@pytest.mark.parametrize("session", ["", LONG_ID, "{}", "%7B", "a}b{c", "\x00\n\t", "é😀"])
def test_odd_session_ids_are_refused_or_kept_apart(client: redis.Redis, session: str) -> None:
    seed(client)
    if not session:
        with pytest.raises(ValueError, match="non-empty"):
            session_keys("chat:", session)
        return
    history = RedisChatMessageHistory(session, redis_url=client_url(client))
    history.add_user_message(f"in {session!r}")
    assert [m.content for m in history.messages] == [f"in {session!r}"]
    assert client.xlen(S[0]) == 3 and client.xlen(T[0]) == 1


def client_url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}"


# Accepted by the library (it stores every message byte for byte), and still readable here.
ACCEPTED = {
    "non-UTF-8 bytes": b'{"type":"human","data":{"content":"\xff\xfe ok"}}',
    "empty object as content": b'{"type":"human","data":{"content":{}}}',
    "list of numbers as content": b'{"type":"human","data":{"content":[1,2]}}',
    "numeric role": b'{"type":"chat","data":{"content":"x","role":5}}',
    "unknown fields": b'{"type":"human","data":{"content":"x","tool_calls":7,"id":[1]}}',
    "nested 100 deep": b'{"type":"human","data":{"content":"x","d":'
    + b"[" * 100
    + b"]" * 100
    + b"}}",
}


@pytest.mark.parametrize("stored", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_odd_but_accepted_messages_keep_the_session_readable(
    client: redis.Redis, stored: bytes
) -> None:
    seed(client)
    assert outcome(client, "FCALL", "append", 3, S, ["MESSAGES", stored]) is None
    history = RedisChatMessageHistory("s", redis_url=client_url(client))
    assert len(history.messages) == 4
    assert history.search_messages("good")[0]["content"] == "good"


# cjson, the library's decoder, reads these, but strict JSON parsers (JavaScript's, and
# Python's for the first three) refuse them, so a session holding one could not be read
# back: the library refuses them with CHATHIST_BADMSG.
NOT_STRICT_JSON = {
    "hex number": b'{"type":"human","data":{"content":"x","n":0x10}}',
    "bytes after a NUL": b'{"type":"human","data":{"content":"x"}}\x00 trailing',
    "nested 900 deep": b'{"type":"human","data":{"content":"x","d":'
    + b"[" * 900
    + b"]" * 900
    + b"}}",
}


# Python reads NaN and Infinity, JavaScript does not: refused as well.
REFUSED = {
    **NOT_STRICT_JSON,
    "NaN and Infinity": b'{"type":"human","data":{"content":"x","n":NaN,"m":-Infinity}}',
}


@pytest.mark.parametrize("stored", list(REFUSED.values()), ids=list(REFUSED))
def test_json_that_strict_parsers_refuse_is_refused(client: redis.Redis, stored: bytes) -> None:
    seed(client)
    before = snapshot(client)
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADMSG"):
        send(client, "FCALL", "append", 3, S, ["MESSAGES", stored])
    assert snapshot(client) == before


def at_depth(frames_left: int, read: Any) -> Any:
    """Call ``read`` when only ``frames_left`` frames remain before the recursion limit, as
    deep inside a framework's call stack."""
    if len(traceback.extract_stack()) < sys.getrecursionlimit() - frames_left:
        return at_depth(frames_left, read)
    return read()


@pytest.mark.parametrize("stored", list(NOT_STRICT_JSON.values()), ids=list(NOT_STRICT_JSON))
def test_a_message_no_strict_parser_reads_is_reported_by_its_id(
    client: redis.Redis, stored: bytes
) -> None:
    seed(client)
    stream_id = client.xadd(S[0], {"m": stored}).decode()  # as a client bypassing the library
    history = RedisChatMessageHistory("s", redis_url=client_url(client))
    with pytest.raises(UnreadableMessageError, match=f"stored message {stream_id} ") as caught:
        at_depth(850, lambda: history.messages)
    assert caught.value.stream_id == stream_id
    assert isinstance(caught.value, ValueError)


# -- generated argument lists --------------------------------------------------------------------

NAMES = st.sampled_from(
    ["TTL", "ttl", "MESSAGES", "messages", "COUNT", "BEFORE", "AFTER", "LIMIT", "MAXLEN",
     "MAXBYTES", "NOINDEX", "IDS", "MESSAGEIDS", "ENTRIES", "PERSIST", "MODE", "ANY", "TYPE"]
)  # fmt: skip
NUMBERS = st.sampled_from(
    ["-1", "0", "1", "10", "315360000", "315360001", str(2**64), "NaN", "nan", "inf", "-inf",
     "1e3", "1.5", " 5", "5 ", "0x10", "", "-0", "1000", "1001", "10000", "10001"]
) | st.integers(-(2**70), 2**70).map(str)  # fmt: skip
STREAM_IDS = st.sampled_from(
    ["0-0", "0", "0-1", "1-1", "18446744073709551615-18446744073709551615", "-", "+", "(0-1",
     "1-", "-1", "99999999999999999999999-1", "1700000000000"]
)  # fmt: skip

JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
CONTENT = (
    st.text()
    | st.lists(
        st.text() | st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}), max_size=3
    )
    | JSON_VALUE
)
MESSAGE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["human", "ai", "system", "tool", "chat", "x" * 64, "x" * 65, ""])
        | JSON_LEAF,
        "data": st.fixed_dictionaries(
            {"content": CONTENT},
            optional={
                "id": st.sampled_from(["good-1", "new-1", ""]) | JSON_LEAF,
                "extra": JSON_VALUE,
            },
        )
        | JSON_VALUE,
    }
)


@st.composite
def message_bytes(draw: st.DrawFn) -> bytes:
    """A message as another client might send it: good, damaged, or raw bytes."""
    encoded = json.dumps(draw(MESSAGE), ensure_ascii=draw(st.booleans())).encode(
        "utf-8", "surrogatepass"
    )
    damage = draw(st.sampled_from(["none", "none", "cut", "bytes", "invalid-utf8", "raw"]))
    if damage == "cut":
        return encoded[: draw(st.integers(0, len(encoded)))]
    if damage == "bytes":
        at = draw(st.integers(0, len(encoded)))
        return encoded[:at] + draw(st.binary(min_size=1, max_size=4)) + encoded[at:]
    if damage == "invalid-utf8":
        return encoded.replace(b'"', b'"\xc3\x28', 1) if b'":"' in encoded else encoded
    if damage == "raw":
        return draw(st.binary(max_size=60))
    return encoded


TOKEN = (
    NAMES | NUMBERS | STREAM_IDS | message_bytes() | st.binary(max_size=20) | st.text(max_size=20)
)
KEY_TEXT = st.sampled_from(
    [
        *S,
        *T,
        *TYPED,
        "chat:{}:m",
        "chat:{s}:m:x",
        "{s}:m",
        "chat:{s}",
        "chat:{s}:I",
        "",
        "chat:{s}:x",
    ]
)
KEYS = (
    st.sampled_from([S, T, TYPED, session_keys("chat:", LONG_ID), session_keys("p:", "s")])
    | st.text(min_size=1, max_size=12).map(lambda sid: session_keys("other:", sid))
    | st.lists(KEY_TEXT | st.binary(max_size=12), max_size=5).map(tuple)
)


@st.composite
def append_args(draw: st.DrawFn) -> list[Any]:
    """Arguments shaped like an append: [TTL n] MESSAGES m1 m2 ... (sometimes huge)."""
    args: list[Any] = []
    if draw(st.booleans()):
        args += ["TTL", draw(NUMBERS)]
    args.append("MESSAGES")
    size = draw(st.sampled_from(["small"] * 40 + ["huge message", "huge batch"]))
    if size == "huge message":
        return [*args, HUGE]
    if size == "huge batch":
        return [*args, *BATCH]
    return args + draw(st.lists(message_bytes(), max_size=4))


CALLS = st.tuples(
    st.sampled_from(["FCALL", "FCALL", "FCALL_RO"]),
    st.sampled_from(FUNCTIONS + FUNCTIONS + NEW_FUNCTIONS),
    KEYS,
    st.lists(TOKEN, max_size=8) | append_args(),
    st.sampled_from([0, 0, 0, 0, 1, -1]),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=CALLS)
def test_generated_calls_never_crash_corrupt_or_half_write(client: redis.Redis, call: Any) -> None:
    command, function, keys, args, skew = call
    seed(client)
    error = outcome(client, command, function, len(keys) + skew, keys, args)
    if error is not None:
        assert error.startswith(("CHATHIST_", "ERR", "Function not found", "Can not execute")) or (
            "can't be" in error or "Number of keys" in error or "write flag" in error
        ), error
