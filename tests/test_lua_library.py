"""The chathist library through raw FCALL / FCALL_RO, the way a client in another language uses it.

Every function's header comment in lua/chat_history.lua (and docs/PROTOCOL.md) is the contract
checked here: replies, ordering, TTL, dedup, search, and every error code. An erroring call must
leave the server exactly as it was, which `snapshot` compares key by key (type, content, stream
last id, TTL).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redis_chat_history
from redis_chat_history import session_keys

LUA_FILE = Path(__file__).resolve().parents[1] / "lua" / "chat_history.lua"
MIB = 1024 * 1024


# -- helpers -----------------------------------------------------------------------------------


def msg(content: Any = "hello", type_: str = "human", **data: Any) -> str:
    """A stored-message JSON as LangChain writes it."""
    return json.dumps({"type": type_, "data": {"content": content, **data}})


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ids_of(reply: list[Any]) -> list[str]:
    """The stream ids of a flat ``id, json, id, json`` reply."""
    return [text(item) for item in reply[0::2]]


def contents(reply: list[Any]) -> list[Any]:
    """The ``data.content`` of every message of a flat range/search reply."""
    return [json.loads(item)["data"]["content"] for item in reply[1::2]]


def id_tuple(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def ms_of(stream_id: str) -> int:
    return id_tuple(stream_id)[0]


def snapshot(client: redis.Redis) -> dict[bytes, dict[str, Any]]:
    """Everything an erroring call could have changed: each key's type, content and TTL."""
    state: dict[bytes, dict[str, Any]] = {}
    for key in sorted(client.keys("*")):
        kind = text(client.type(key))
        entry: dict[str, Any] = {"type": kind, "pttl": client.pttl(key)}
        if kind == "stream":
            info = client.xinfo_stream(key)
            entry["value"] = client.xrange(key)
            entry["last"] = info["last-generated-id"]
            entry["added"] = info.get("entries-added")
        elif kind == "hash":
            entry["value"] = client.hgetall(key)
        elif kind == "string":
            entry["value"] = client.get(key)
        else:  # pragma: no cover - the tests create no other types
            entry["value"] = client.dump(key)
        state[key] = entry
    return state


def assert_unchanged(before: dict[bytes, dict[str, Any]], after: dict[bytes, dict[str, Any]]):
    """Same keys, types and contents; TTLs only ran down (never renewed, never set or removed)."""
    assert after.keys() == before.keys()
    for key, old in before.items():
        new = after[key]
        assert {k: v for k, v in new.items() if k != "pttl"} == {
            k: v for k, v in old.items() if k != "pttl"
        }, key
        if old["pttl"] < 0:
            assert new["pttl"] == old["pttl"], key
        else:
            assert 0 <= old["pttl"] - new["pttl"] < 5000, (key, old["pttl"], new["pttl"])


def error_code(error: BaseException) -> str | None:
    match = re.match(r"^(?:ERR )?CHATHIST_([A-Z]+) ", str(error))
    return match.group(1) if match else None


def fcall(client: redis.Redis, function: str, keys: list[str], *args: Any, ro: bool = False):
    send = client.fcall_ro if ro else client.fcall
    return send(f"chathist_{function}", len(keys), *keys, *args)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def populated(raw: Any) -> Any:
    """Session s1 with two messages (one with a client id), a reserved :x hash, every key of
    the session expiring in 500 s, an unrelated session and a key of a foreign type."""
    raw.call("append", "MESSAGES", msg("first"), msg("second", id="client-1"))
    raw.client.hset(raw.keys[1], "reserved", "1")
    for key in raw.keys:
        raw.client.pexpire(key, 500_000)
    other = session_keys("chat:", "other")
    fcall(raw.client, "append", list(other), "MESSAGES", msg("elsewhere"))
    raw.client.set("chat:{str}:m", "not a stream")
    raw.client.set("unrelated", "value")
    return raw


# -- append --------------------------------------------------------------------------------------


def test_append_returns_one_increasing_server_id_per_message_in_batch_order(raw: Any) -> None:
    first = [text(i) for i in raw.call("append", "MESSAGES", msg("a"), msg("b"), msg("c"))]
    second = [text(i) for i in raw.call("append", "MESSAGES", msg("d"))]
    ids = first + second
    assert len(first) == 3 and len(second) == 1
    assert all(re.fullmatch(r"\d+-\d+", i) for i in ids)
    assert [id_tuple(i) for i in ids] == sorted({id_tuple(i) for i in ids})
    now_ms = int(raw.client.time()[0]) * 1000
    assert abs(ms_of(ids[0]) - now_ms) < 5000, "ids come from the server clock"

    reply = raw.call("range")
    assert ids_of(reply) == ids
    assert contents(reply) == ["a", "b", "c", "d"]
    assert raw.client.xlen(raw.keys[0]) == 4


def test_append_stores_each_json_byte_for_byte(raw: Any) -> None:
    odd = '{ "data" : {"content":"ü\\u00fc 😀", "extra": [1, 2.5, null, true]},\n"type":"ai"}'
    raw.call("append", "MESSAGES", odd)
    assert raw.call("range")[1] == odd.encode()


def test_append_ttl_applies_to_every_existing_key_and_a_second_append_renews_it(raw: Any) -> None:
    raw.client.hset(raw.keys[1], "reserved", "1")  # the reserved :x key, if it exists
    raw.call("append", "TTL", "100", "MESSAGES", msg("a", id="m1"))
    for key in raw.keys:
        assert 95_000 < raw.client.pttl(key) <= 100_000, key

    for key in raw.keys:
        raw.client.pexpire(key, 5_000)
    raw.call("append", "TTL", "200", "MESSAGES", msg("b"))  # no client id: :i is not written
    for key in raw.keys:
        assert 195_000 < raw.client.pttl(key) <= 200_000, key


def test_append_ttl_option_is_case_insensitive(raw: Any) -> None:
    raw.call("append", "ttl", "50", "messages", msg("a"))
    assert 45_000 < raw.client.pttl(raw.keys[0]) <= 50_000


def test_append_without_ttl_or_with_ttl_0_leaves_expiry_as_it_is(raw: Any) -> None:
    raw.call("append", "MESSAGES", msg("a"))
    assert raw.client.pttl(raw.keys[0]) == -1, "no TTL: the session does not expire"
    raw.call("append", "TTL", "0", "MESSAGES", msg("b"))
    assert raw.client.pttl(raw.keys[0]) == -1

    raw.client.pexpire(raw.keys[0], 50_000)
    raw.call("append", "TTL", "0", "MESSAGES", msg("c"))
    raw.call("append", "MESSAGES", msg("d"))
    assert 45_000 < raw.client.pttl(raw.keys[0]) <= 50_000
    assert raw.client.xlen(raw.keys[0]) == 4


def test_append_ttl_0_does_not_leave_a_new_key_of_an_expiring_session_persistent(
    raw: Any,
) -> None:
    raw.call("append", "TTL", "100", "MESSAGES", msg("a"))
    raw.call("append", "TTL", "0", "MESSAGES", msg("b", id="m1"))
    for key in (raw.keys[0], raw.keys[2]):
        assert raw.client.pttl(key) > 0, key


def test_dedup_map_does_not_outlive_an_expired_session(raw: Any) -> None:
    raw.call("append", "TTL", "1", "MESSAGES", msg("a"))
    raw.call("append", "MESSAGES", msg("b", id="m1"))
    deadline = time.monotonic() + 3
    while raw.client.exists(raw.keys[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not raw.client.exists(raw.keys[0])
    raw.call("append", "MESSAGES", msg("b again", id="m1"))
    assert contents(raw.call("range")) == ["b again"]


def test_append_is_atomic_a_bad_message_3_writes_nothing(populated: Any) -> None:
    raw = populated
    before = snapshot(raw.client)
    with pytest.raises(redis.ResponseError) as info:
        raw.call("append", "TTL", "1000", "MESSAGES", msg("1"), msg("2"), "{not json", msg("4"))
    assert error_code(info.value) == "BADMSG"
    assert "message 3" in str(info.value)
    assert_unchanged(before, snapshot(raw.client))


@pytest.mark.parametrize("position", [1, 2, 5])
def test_append_error_names_the_position_of_the_bad_message(raw: Any, position: int) -> None:
    batch = [msg(str(i)) for i in range(1, 6)]
    batch[position - 1] = json.dumps({"type": "human", "data": {}})
    with pytest.raises(redis.ResponseError, match=rf"message {position} "):
        raw.call("append", "MESSAGES", *batch)
    assert not raw.client.exists(*raw.keys)


def test_dedup_same_client_id_in_two_calls_is_stored_once(raw: Any) -> None:
    first = raw.call("append", "MESSAGES", msg("a", id="client-1"))
    again = raw.call("append", "TTL", "0", "MESSAGES", msg("a", id="client-1"))
    assert again == first
    assert raw.client.xlen(raw.keys[0]) == 1
    assert raw.client.hget(raw.keys[2], "client-1") == first[0]


def test_dedup_within_one_batch_and_mixed_with_new_messages(raw: Any) -> None:
    stored = raw.call("append", "MESSAGES", msg("old", id="x"))
    reply = [
        text(i)
        for i in raw.call(
            "append",
            "MESSAGES",
            msg("a", id="y"),
            msg("a again", id="y"),
            msg("old again", id="x"),
            msg("no id"),
            msg("no id"),
        )
    ]
    assert reply[0] == reply[1]
    assert reply[2] == text(stored[0])
    assert len({reply[0], reply[3], reply[4]}) == 3
    assert contents(raw.call("range")) == ["old", "a", "no id", "no id"]


def test_dedup_ignores_empty_and_non_string_ids_and_is_per_session(loaded: redis.Redis) -> None:
    one, two = list(session_keys("chat:", "one")), list(session_keys("chat:", "two"))
    fcall(loaded, "append", one, "MESSAGES", msg("e", id=""), msg("e", id=""))
    fcall(loaded, "append", one, "MESSAGES", msg("n", id=7), msg("n", id=7), msg("z", id=None))
    assert loaded.xlen(one[0]) == 5
    assert not loaded.exists(one[2])
    fcall(loaded, "append", one, "MESSAGES", msg("s", id="same"))
    fcall(loaded, "append", two, "MESSAGES", msg("s", id="same"))
    assert loaded.xlen(one[0]) == 6 and loaded.xlen(two[0]) == 1


# -- range ---------------------------------------------------------------------------------------


@pytest.fixture
def ten(raw: Any) -> tuple[Any, list[str]]:
    """Session s1 holding messages "0" .. "9"; returns the raw session and the stream ids."""
    ids = [text(i) for i in raw.call("append", "MESSAGES", *[msg(str(i)) for i in range(10)])]
    return raw, ids


def test_range_whole_session_oldest_first(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    reply = raw.call("range", read_only=True)
    assert ids_of(reply) == ids
    assert contents(reply) == [str(i) for i in range(10)]


def test_range_of_an_empty_session_is_empty(raw: Any) -> None:
    assert raw.call("range", read_only=True) == []
    assert raw.call("range", "COUNT", "5", read_only=True) == []


def test_range_count_gives_the_latest_n_oldest_first(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    reply = raw.call("range", "COUNT", "3", read_only=True)
    assert contents(reply) == ["7", "8", "9"]
    assert ids_of(reply) == ids[7:]
    assert contents(raw.call("range", "count", "100")) == [str(i) for i in range(10)]


def test_range_count_0_is_empty(ten: tuple[Any, list[str]]) -> None:
    raw, _ = ten
    assert raw.call("range", "COUNT", "0", read_only=True) == []


def test_range_before_id_with_count_pages_backwards(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    page = raw.call("range", "BEFORE", ids[5], "COUNT", "3", read_only=True)
    assert contents(page) == ["2", "3", "4"]
    page = raw.call("range", "COUNT", "3", "BEFORE", ids[2])
    assert contents(page) == ["0", "1"]
    assert raw.call("range", "BEFORE", ids[0], "COUNT", "3") == []
    assert contents(raw.call("range", "BEFORE", ids[3])) == ["0", "1", "2"]


def test_range_after_id_is_exclusive_oldest_first(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    assert contents(raw.call("range", "AFTER", ids[6], read_only=True)) == ["7", "8", "9"]
    assert raw.call("range", "AFTER", ids[9]) == []


def test_range_after_with_count_gives_the_first_n_after(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    page = raw.call("range", "AFTER", ids[2], "COUNT", "3", read_only=True)
    assert contents(page) == ["3", "4", "5"]
    assert ids_of(page) == ids[3:6]


def test_range_between_after_and_before(ten: tuple[Any, list[str]]) -> None:
    raw, ids = ten
    assert contents(raw.call("range", "AFTER", ids[1], "BEFORE", ids[5])) == ["2", "3", "4"]


@pytest.fixture
def three_times(raw: Any) -> tuple[Any, list[list[str]]]:
    """Three batches of five messages, each batch stored at a later millisecond."""
    batches = []
    for name in "abc":
        if batches:
            last = ms_of(batches[-1][-1])
            while int(time.time() * 1000) < last + 5:
                time.sleep(0.002)
        batch = [msg(f"{name}{i}") for i in range(5)]
        batches.append([text(i) for i in raw.call("append", "MESSAGES", *batch)])
    assert ms_of(batches[0][-1]) + 3 <= ms_of(batches[1][0])
    assert ms_of(batches[1][-1]) + 3 <= ms_of(batches[2][0])
    return raw, batches


def test_range_accepts_millisecond_times_between_messages(
    three_times: tuple[Any, list[list[str]]],
) -> None:
    raw, (a, b, c) = three_times
    between_ab = str(ms_of(a[-1]) + 1)
    between_bc = str(ms_of(b[-1]) + 1)
    assert ids_of(raw.call("range", "BEFORE", between_ab)) == a
    assert ids_of(raw.call("range", "AFTER", between_ab)) == b + c
    assert ids_of(raw.call("range", "AFTER", between_ab, "BEFORE", between_bc)) == b
    assert ids_of(raw.call("range", "BEFORE", between_bc, "COUNT", "2")) == b[-2:]
    assert ids_of(raw.call("range", "AFTER", between_ab, "COUNT", "2")) == b[:2]


def test_range_before_a_millisecond_time_excludes_messages_stored_at_that_time(
    three_times: tuple[Any, list[list[str]]],
) -> None:
    raw, (a, b, _) = three_times
    assert ids_of(raw.call("range", "BEFORE", str(ms_of(b[0])))) == a


def test_range_after_a_millisecond_time_excludes_messages_stored_at_that_time(
    three_times: tuple[Any, list[list[str]]],
) -> None:
    raw, (a, b, c) = three_times
    same_ms = [i for i in a if id_tuple(i)[1] > 0]
    if not same_ms:  # pragma: no cover - five XADDs in one call share a millisecond
        pytest.skip("the batch did not share a millisecond")
    assert ids_of(raw.call("range", "AFTER", str(ms_of(same_ms[0])))) == [
        i for i in a + b + c if ms_of(i) > ms_of(same_ms[0])
    ]


# -- search --------------------------------------------------------------------------------------


def test_search_is_case_insensitive_and_needs_every_token(raw: Any) -> None:
    raw.call(
        "append",
        "MESSAGES",
        msg("Hello World"),
        msg("hello moon"),
        msg("WORLD, hello!"),
        msg("helloworld"),
    )
    found = raw.call("search", "hello world", read_only=True)
    assert contents(found) == ["Hello World", "WORLD, hello!"]
    assert contents(raw.call("search", "HELLO", read_only=True)) == [
        "Hello World",
        "hello moon",
        "WORLD, hello!",
    ]
    assert raw.call("search", "hello sun", read_only=True) == []
    assert raw.call("search", "hell", read_only=True) == [], "tokens match whole words"


def test_search_reads_text_parts_of_list_content_only(raw: Any) -> None:
    content = [
        {"type": "text", "text": "Weather in Paris"},
        {"type": "image_url", "image_url": {"url": "https://example.com/secret.png"}},
        "plain string part",
    ]
    raw.call("append", "MESSAGES", msg(content, "human"), msg("Paris is nice", "ai"))
    found = raw.call("search", "paris weather", read_only=True)
    assert contents(found) == [content]
    assert contents(raw.call("search", "plain part")) == [content]
    assert raw.call("search", "secret") == []


def test_search_unicode_tokens_and_ascii_folding(raw: Any) -> None:
    raw.call("append", "MESSAGES", msg("Le Café de Flore"), msg("naïve 東京 tower"))
    assert contents(raw.call("search", "CAFé")) == ["Le Café de Flore"]
    assert contents(raw.call("search", "東京")) == ["naïve 東京 tower"]
    assert contents(raw.call("search", "NAïVE TOWER")) == ["naïve 東京 tower"]


def test_search_limit_defaults_to_10_most_recent_matches_oldest_first(raw: Any) -> None:
    batch = []
    for i in range(30):
        batch.append(msg(f"needle {i}") if i % 2 == 0 else msg(f"hay {i}"))
    raw.call("append", "MESSAGES", *batch)
    found = raw.call("search", "needle", read_only=True)
    assert contents(found) == [f"needle {i}" for i in range(10, 30, 2)]
    found = raw.call("search", "needle", "LIMIT", "3", read_only=True)
    assert contents(found) == ["needle 24", "needle 26", "needle 28"]
    assert raw.call("search", "needle", "limit", "0") == []
    assert len(contents(raw.call("search", "needle", "LIMIT", "1000"))) == 15


@pytest.mark.parametrize("query", ["", "   ", "!!! ... ???", "-_-"])
def test_search_query_without_tokens_is_empty(raw: Any, query: str) -> None:
    raw.call("append", "MESSAGES", msg("anything at all"), msg("!!! ... ???"))
    assert raw.call("search", query, read_only=True) == []


def test_search_stays_in_its_session(loaded: redis.Redis) -> None:
    one, two = list(session_keys("chat:", "one")), list(session_keys("chat:", "two"))
    fcall(loaded, "append", one, "MESSAGES", msg("shared word one"))
    fcall(loaded, "append", two, "MESSAGES", msg("shared word two"))
    assert contents(fcall(loaded, "search", one, "shared", ro=True)) == ["shared word one"]


# -- clear, len, version -------------------------------------------------------------------------


def test_clear_returns_the_count_and_deletes_all_three_keys(populated: Any) -> None:
    raw = populated
    assert raw.client.exists(*raw.keys) == 3
    assert raw.call("clear") == 2
    assert raw.client.exists(*raw.keys) == 0
    assert raw.client.exists("chat:{other}:m", "unrelated", "chat:{str}:m") == 3
    assert raw.call("clear") == 0
    assert raw.call("range") == []


def test_len_counts_messages(raw: Any) -> None:
    assert raw.call("len", read_only=True) == 0
    raw.call("append", "MESSAGES", msg("a"), msg("b", id="x"), msg("b", id="x"))
    assert raw.call("len", read_only=True) == 2
    assert raw.call("len") == 2


def test_version_matches_the_package_and_the_lua_source(loaded: redis.Redis) -> None:
    declared = re.search(r"^local LIBRARY_VERSION = '([^']+)'$", LUA_FILE.read_text(), re.M)
    assert declared is not None
    server = text(loaded.fcall_ro("chathist_version", 0))
    assert server == redis_chat_history.LIBRARY_VERSION == declared.group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", server)
    assert text(loaded.fcall("chathist_version", 0)) == server


def test_library_registers_the_documented_functions_with_read_only_flags(
    loaded: redis.Redis,
) -> None:
    (library,) = loaded.function_list(library="chathist")
    library = {text(k): v for k, v in zip(library[0::2], library[1::2], strict=True)}
    flags = {}
    for function in library["functions"]:
        fields = {text(k): v for k, v in zip(function[0::2], function[1::2], strict=True)}
        flags[text(fields["name"])] = {text(f) for f in fields["flags"]}
    assert flags == {
        "chathist_append": set(),
        "chathist_clear": {"allow-oom"},
        "chathist_range": {"no-writes"},
        "chathist_search": {"no-writes"},
        "chathist_len": {"no-writes"},
        "chathist_version": {"no-writes"},
        "chathist_import": set(),
        "chathist_delete": {"allow-oom"},
        "chathist_reindex": set(),
        "chathist_ttl": {"no-writes"},
        "chathist_expire": {"allow-oom"},
        "chathist_cp_put": set(),
        "chathist_cp_writes": set(),
        "chathist_cp_get": {"no-writes"},
        "chathist_cp_list": {"no-writes"},
        "chathist_cp_more": {"no-writes"},
        "chathist_cp_chain": {"no-writes"},
        "chathist_cp_drop": {"allow-oom"},
        "chathist_cp_dump": {"no-writes"},
        "chathist_cp_load": set(),
        "chathist_cp_delete": {"allow-oom"},
        "chathist_cp_touch": set(),
    }


@pytest.mark.parametrize(
    ("function", "args"), [("append", ["MESSAGES", msg("x")]), ("clear", [])], ids=str
)
def test_fcall_ro_refuses_writers(populated: Any, function: str, args: list[str]) -> None:
    raw = populated
    before = snapshot(raw.client)
    with pytest.raises(redis.ResponseError, match="write flag"):
        raw.call(function, *args, read_only=True)
    assert_unchanged(before, snapshot(raw.client))


# -- every error: code prefix, and nothing written ------------------------------------------------

S1 = list(session_keys("chat:", "s1"))
GOOD = msg("good")
BIG = msg("x" * MIB)  # over 1 MiB once wrapped in JSON

# (function, keys, args, code, text that the error must contain)
ERRORS: dict[str, tuple[str, list[str], list[Any], str, str]] = {
    "append/no keys": ("append", [], ["MESSAGES", GOOD], "BADKEYS", "got 0"),
    "append/two keys": ("append", S1[:2], ["MESSAGES", GOOD], "BADKEYS", "got 2"),
    "append/four keys": ("append", [*S1, "chat:{s1}:y"], ["MESSAGES", GOOD], "BADKEYS", "got 4"),
    "append/foreign layout": ("append", ["x", "y", "z"], ["MESSAGES", GOOD], "BADKEYS", "key 1"),
    "append/other session key 2": (
        "append",
        ["chat:{a}:m", "chat:{b}:x", "chat:{a}:i"],
        ["MESSAGES", GOOD],
        "BADKEYS",
        "key 2",
    ),
    "append/other session key 3": (
        "append",
        ["chat:{s1}:m", "chat:{s1}:x", "chat:{other}:i"],
        ["MESSAGES", GOOD],
        "BADKEYS",
        "key 3",
    ),
    "append/keys swapped": (
        "append",
        [S1[0], S1[2], S1[1]],
        ["MESSAGES", GOOD],
        "BADKEYS",
        "key 2",
    ),
    "append/no tag": ("append", ["chat:m", "chat:x", "chat:i"], ["MESSAGES", GOOD], "BADKEYS", ""),
    "append/empty tag": (
        "append",
        ["chat:{}:m", "chat:{}:x", "chat:{}:i"],
        ["MESSAGES", GOOD],
        "BADKEYS",
        "",
    ),
    "append/key of another type": (
        "append",
        ["chat:{str}:m", "chat:{str}:x", "chat:{str}:i"],
        ["MESSAGES", GOOD],
        "BADKEYS",
        "key 1",
    ),
    "append/not json": ("append", S1, ["MESSAGES", GOOD, "nope"], "BADMSG", "message 2"),
    "append/json array": ("append", S1, ["MESSAGES", "[1, 2]"], "BADMSG", "message 1"),
    "append/json string": ("append", S1, ["MESSAGES", '"text"'], "BADMSG", "message 1"),
    "append/empty arg": ("append", S1, ["MESSAGES", ""], "BADMSG", "message 1"),
    "append/missing type": (
        "append",
        S1,
        ["MESSAGES", json.dumps({"data": {"content": "x"}})],
        "BADMSG",
        "type",
    ),
    "append/empty type": ("append", S1, ["MESSAGES", msg("x", "")], "BADMSG", "type"),
    "append/number type": (
        "append",
        S1,
        ["MESSAGES", json.dumps({"type": 1, "data": {"content": "x"}})],
        "BADMSG",
        "type",
    ),
    "append/type over 64 bytes": ("append", S1, ["MESSAGES", msg("x", "t" * 65)], "BADMSG", "type"),
    "append/missing data": (
        "append",
        S1,
        ["MESSAGES", json.dumps({"type": "human", "content": "x"})],
        "BADMSG",
        "data",
    ),
    "append/data not object": (
        "append",
        S1,
        ["MESSAGES", json.dumps({"type": "human", "data": "x"})],
        "BADMSG",
        "data",
    ),
    "append/missing content": (
        "append",
        S1,
        ["MESSAGES", json.dumps({"type": "human", "data": {"id": "1"}})],
        "BADMSG",
        "content",
    ),
    "append/null content": ("append", S1, ["MESSAGES", msg(None)], "BADMSG", "content"),
    "append/number content": ("append", S1, ["MESSAGES", msg(42)], "BADMSG", "content"),
    "append/negative ttl": ("append", S1, ["TTL", "-1", "MESSAGES", GOOD], "BADARG", "TTL"),
    "append/fractional ttl": ("append", S1, ["TTL", "1.5", "MESSAGES", GOOD], "BADARG", "TTL"),
    "append/word ttl": ("append", S1, ["TTL", "ten", "MESSAGES", GOOD], "BADARG", "TTL"),
    "append/ttl over ten years": (
        "append",
        S1,
        ["TTL", "315360001", "MESSAGES", GOOD],
        "BADARG",
        "TTL",
    ),
    "append/ttl twice": (
        "append",
        S1,
        ["TTL", "5", "TTL", "6", "MESSAGES", GOOD],
        "BADARG",
        "twice",
    ),
    "append/ttl without value": ("append", S1, ["TTL"], "BADARG", "TTL"),
    "append/unknown option": ("append", S1, ["FOO", "1", "MESSAGES", GOOD], "BADARG", "FOO"),
    "append/no MESSAGES": ("append", S1, [GOOD], "BADARG", ""),
    "append/no arguments": ("append", S1, [], "BADARG", "MESSAGES"),
    "append/ttl only": ("append", S1, ["TTL", "5"], "BADARG", "MESSAGES"),
    "append/message over 1 MiB": ("append", S1, ["MESSAGES", GOOD, BIG], "TOOBIG", "message 2"),
    "append/batch over 10000": ("append", S1, ["MESSAGES"] + [GOOD] * 10001, "TOOBIG", "10001"),
    "range/bad keys": ("range", ["chat:{a}:m", "chat:{b}:x", "chat:{a}:i"], [], "BADKEYS", ""),
    "range/negative count": ("range", S1, ["COUNT", "-1"], "BADARG", "COUNT"),
    "range/word count": ("range", S1, ["COUNT", "all"], "BADARG", "COUNT"),
    "range/fractional count": ("range", S1, ["COUNT", "1.5"], "BADARG", "COUNT"),
    "range/count twice": ("range", S1, ["COUNT", "1", "COUNT", "2"], "BADARG", "twice"),
    "range/count without value": ("range", S1, ["COUNT"], "BADARG", "COUNT"),
    "range/word before": ("range", S1, ["BEFORE", "yesterday", "COUNT", "2"], "BADARG", "BEFORE"),
    "range/malformed before": ("range", S1, ["BEFORE", "1-2-3"], "BADARG", "BEFORE"),
    "range/negative before": ("range", S1, ["BEFORE", "-5"], "BADARG", "BEFORE"),
    "range/empty after": ("range", S1, ["AFTER", ""], "BADARG", "AFTER"),
    "range/after out of range": ("range", S1, ["AFTER", "9" * 25], "BADARG", "AFTER"),
    "range/unknown option": ("range", S1, ["LIMIT", "3"], "BADARG", "LIMIT"),
    "search/bad keys": ("search", ["x", "y", "z"], ["hello"], "BADKEYS", ""),
    "search/no query": ("search", S1, [], "BADARG", "query"),
    "search/query over 4096 bytes": ("search", S1, ["a" * 4097], "BADARG", "query"),
    "search/limit over 1000": ("search", S1, ["a", "LIMIT", "1001"], "BADARG", "LIMIT"),
    "search/negative limit": ("search", S1, ["a", "LIMIT", "-1"], "BADARG", "LIMIT"),
    "search/unknown option": ("search", S1, ["a", "COUNT", "1"], "BADARG", "COUNT"),
    "clear/bad keys": ("clear", S1[:1], [], "BADKEYS", ""),
    "clear/arguments": ("clear", S1, ["now"], "BADARG", ""),
    "len/bad keys": ("len", ["chat:{a}:m", "chat:{a}:x", "chat:{a}:z"], [], "BADKEYS", ""),
    "len/arguments": ("len", S1, ["x"], "BADARG", ""),
    "version/keys": ("version", ["chat:{s1}:m"], [], "BADKEYS", ""),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_every_error_has_its_code_and_writes_nothing(populated: Any, case: str) -> None:
    function, keys, args, code, fragment = ERRORS[case]
    client = populated.client
    before = snapshot(client)
    with pytest.raises(redis.ResponseError) as info:
        fcall(client, function, keys, *args)
    assert error_code(info.value) == code, str(info.value)[:200]
    assert fragment in str(info.value)
    assert len(str(info.value)) < 500, "error texts stay short (no echo of a large input)"
    assert_unchanged(before, snapshot(client))


def test_append_messages_keyword_without_any_message_is_refused(populated: Any) -> None:
    with pytest.raises(redis.ResponseError) as info:
        populated.call("append", "TTL", "1000", "MESSAGES")
    assert error_code(info.value) == "BADARG"


def test_append_refuses_object_content(raw: Any) -> None:
    with pytest.raises(redis.ResponseError) as info:
        raw.call("append", "MESSAGES", msg({"text": "not a list"}))
    assert error_code(info.value) == "BADMSG"


def test_append_at_the_limits_is_accepted(raw: Any) -> None:
    wrapper = len(msg(""))
    exactly = msg("x" * (MIB - wrapper))
    assert len(exactly.encode()) == MIB
    batch = [msg(str(i)) for i in range(10_000)]
    assert len(raw.call("append", "TTL", "315360000", "MESSAGES", exactly)) == 1
    assert len(raw.call("append", "MESSAGES", *batch)) == 10_000
    assert raw.call("len") == 10_001


# -- property: valid batches are stored in order, bad calls change nothing ------------------------

TYPES = ["human", "ai", "system", "tool", "chat", "function", "AIMessageChunk", "custom"]
contents_strategy = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=20)),
            st.text(max_size=10),
        ),
        max_size=3,
    ),
)
message_strategy = st.builds(
    lambda type_, content, client_id, ascii_only: json.dumps(
        {"type": type_, "data": {"content": content, "id": client_id}},
        ensure_ascii=ascii_only,
    ),
    st.sampled_from(TYPES),
    contents_strategy,
    st.one_of(st.none(), st.sampled_from(["id-a", "id-b", "id-c", "ünï-d"])),
    st.booleans(),
)
BAD_MESSAGES = [
    "not json",
    "[]",
    "{}",
    json.dumps({"data": {"content": "x"}}),
    json.dumps({"type": "human"}),
    json.dumps({"type": "human", "data": {"content": 1}}),
    json.dumps({"type": "", "data": {"content": "x"}}),
]
valid_call = st.tuples(
    st.just("valid"),
    st.lists(message_strategy, min_size=1, max_size=6),
    st.sampled_from([None, "0", "1000"]),
)
bad_message_call = st.tuples(
    st.just("bad message"),
    st.lists(message_strategy, min_size=1, max_size=6),
    st.sampled_from(BAD_MESSAGES),
    st.integers(min_value=0, max_value=6),
)
bad_option_call = st.tuples(
    st.just("bad option"),
    st.lists(message_strategy, min_size=1, max_size=3),
    st.sampled_from([["TTL", "-3"], ["TTL", "x"], ["NOPE", "1"], ["TTL", "1", "TTL", "2"]]),
)


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(calls=st.lists(st.one_of(valid_call, bad_message_call, bad_option_call), max_size=8))
def test_property_stream_holds_exactly_the_valid_batches_in_order(
    raw: Any, calls: list[tuple[Any, ...]]
) -> None:
    raw.client.delete(*raw.keys)
    expected: list[str] = []  # stored JSON texts, in order
    expected_ids: list[str] = []
    by_client_id: dict[str, str] = {}
    for call in calls:
        if call[0] == "valid":
            _, batch, ttl = call
            args = (["TTL", ttl] if ttl is not None else []) + ["MESSAGES", *batch]
            reply = [text(i) for i in raw.call("append", *args)]
            assert len(reply) == len(batch)
            for message, stream_id in zip(batch, reply, strict=True):
                client_id = json.loads(message)["data"]["id"]
                if client_id is not None and client_id in by_client_id:
                    assert stream_id == by_client_id[client_id]
                    continue
                assert not expected_ids or id_tuple(stream_id) > id_tuple(expected_ids[-1])
                expected.append(message)
                expected_ids.append(stream_id)
                if client_id is not None:
                    by_client_id[client_id] = stream_id
            if ttl == "1000":
                assert 990_000 < raw.client.pttl(raw.keys[0]) <= 1_000_000
            continue
        if call[0] == "bad message":
            _, batch, bad, position = call
            position = min(position, len(batch))
            args = ["MESSAGES", *batch[:position], bad, *batch[position:]]
            code = "BADMSG"
        else:
            _, batch, options = call
            args = [*options, "MESSAGES", *batch]
            code = "BADARG"
        before = snapshot(raw.client)
        with pytest.raises(redis.ResponseError) as info:
            raw.call("append", *args)
        assert error_code(info.value) == code
        if code == "BADMSG":
            assert f"message {position + 1} " in str(info.value)
        assert_unchanged(before, snapshot(raw.client))

    reply = raw.call("range", read_only=True)
    assert [item.decode() for item in reply[1::2]] == expected
    assert ids_of(reply) == expected_ids
    assert raw.call("len", read_only=True) == len(expected)
