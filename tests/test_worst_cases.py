"""Worst cases of bounded work: long messages, windows that trim them, deleted stretches,
many-word queries, retries of huge writes, keys of another type, bounds out of range.

Each case is one that once let a single call do work that grew with what the session holds
(the pending records of a MAXBYTES window of long messages, a page of 1 MB messages read at
once, a deleted stretch re-read page after page...). Work is measured as work: the search's
own counters (``COUNT_WORK``), the index hash's fields, the bytes a write remembers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conftest import RawSession
from redis_chat_history import library_source
from search_reference import SEARCHABLE_BYTES, ReferenceSession
from test_bounded_work import budget, counting_library, stored

PENDING_BYTES = budget("PENDING_BYTES")
SEARCH_BYTES = budget("SEARCH_BYTES")
TOKENIZE_COST = budget("TOKENIZE_COST")
TRIM_STEP = budget("TRIM_STEP")
TRIM_BYTES = budget("TRIM_BYTES")
SEARCH_POSTINGS = budget("SEARCH_POSTINGS")
#: Where a PAGED search reply's work counts are: "judged entries bytes postings".
ENTRIES, BYTES, POSTINGS = 1, 2, 3
#: Long enough that a page of them is far over a search call's byte budget.
LONG = 200_000


@pytest.fixture
def counting(redis_server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.function_load(counting_library(), replace=True)
    yield client
    client.function_load(library_source(), replace=True)
    client.close()


def words(count: int, word: str = "filler") -> str:
    return " ".join([word] * count)


def rank(hit: tuple[str, int]) -> tuple[int, ...]:
    """ANY mode's order: more matched words first, then newer first."""
    return (-hit[1], *(-int(part) for part in hit[0].split("-")))


def follow(
    raw: RawSession, model: ReferenceSession, query: str, limit: int = 10, mode: str = "all"
) -> list[list[int]]:
    """Runs a PAGED search to its end, checks it against the model, returns each call's work."""
    hits: list[tuple[str, int]] = []
    work: list[list[int]] = []
    before = None
    while True:
        call: list[Any] = [query, "MODE", mode, "PAGED"]
        if mode == "any":
            floor = hits[limit - 1][1] + 1 if len(hits) >= limit else 1
            call += ["LIMIT", limit, "MINSCORE", floor]
        else:
            call += ["LIMIT", limit - len(hits)]
        if before:
            call += ["BEFORE", before]
        reply = raw.call("search", *call, read_only=True)
        work.append([int(n) for n in reply[0].split()])
        page = [(reply[i].decode(), int(reply[i + 2])) for i in range(2, len(reply), 3)]
        if mode == "any":
            merged = dict([*hits, *page])
            hits = sorted(merged.items(), key=rank)[:limit]
        else:
            hits = page + hits
        if not reply[1]:
            break
        before = reply[1].decode()
        assert len(work) < 10_000, "the search does not end"
    assert [stream_id for stream_id, _ in hits] == model.search(query, limit=limit, mode=mode)
    return work


def append(raw: RawSession, model: ReferenceSession, texts: list[str], *options: Any) -> None:
    jsons = [stored(text) for text in texts]
    ids = raw.call("append", *options, "MESSAGES", *jsons)
    for stream_id, text in zip(ids, jsons, strict=True):
        model.messages.append((stream_id.decode(), json.loads(text)))


def pending_bytes(raw: RawSession) -> int:
    fields = raw.client.hgetall(raw.keys[1])
    return sum(len(v) for k, v in fields.items() if k.startswith(b"\0r"))


def test_a_window_of_long_messages_keeps_its_pending_records_small(counting: redis.Redis) -> None:
    # Each write adds a long message and its window removes one: the byte total stays level,
    # and the records waiting to be folded must not pile up (every search reads them all).
    raw = RawSession(counting, "w:", "window")
    window = 4 * (LONG + 64)
    for i in range(12):
        raw.call("append", "MAXBYTES", window, "MESSAGES", stored(f"m{i} " + words(LONG // 7)))
        assert pending_bytes(raw) < PENDING_BYTES + LONG + 64
    reply = raw.call("search", "absent", "PAGED", read_only=True)
    assert int(reply[0].split()[2]) < PENDING_BYTES + LONG + 64


def test_searches_over_long_messages_read_one_message_past_the_budget(
    counting: redis.Redis,
) -> None:
    raw, model = RawSession(counting, "w:", "long"), ReferenceSession()
    append(raw, model, ["short beginning"])
    for i in range(40):
        append(raw, model, [f"needle{i % 2} " + words(LONG // 7)])
    append(raw, model, ["short ending"])
    one_message = LONG + 64 + TOKENIZE_COST * SEARCHABLE_BYTES
    for query, mode in (("needle0", "all"), ("filler", "all"), ("zzz filler", "any")):
        for work in follow(raw, model, query, limit=30, mode=mode):
            assert work[BYTES] <= SEARCH_BYTES + one_message, (query, work)
    scanned, scanned_model = RawSession(counting, "w:", "long-scan"), ReferenceSession()
    for i in range(12):
        append(scanned, scanned_model, [f"needle{i % 2} " + words(LONG // 7)], "NOINDEX")
    for work in follow(scanned, scanned_model, "needle1"):
        assert work[BYTES] <= SEARCH_BYTES + one_message


def test_a_deleted_stretch_is_not_read_again_page_after_page(counting: redis.Redis) -> None:
    # Pages of deleted messages keep their postings until the sweep; a search that meets them
    # reads on from the oldest entry it has judged, and ends once it reaches the oldest message.
    raw, model = RawSession(counting, "w:", "holes"), ReferenceSession()
    append(raw, model, [f"old filler {i}" for i in range(40)])
    middle = raw.call("append", "MESSAGES", *[stored(f"alpha {i}") for i in range(3000)])
    append(raw, model, [f"new stuff {i}" for i in range(40)])
    for first in range(0, len(middle), 1000):
        assert raw.call("delete", "IDS", *middle[first : first + 1000]) == 1000
    work = follow(raw, model, "alpha")
    assert len(work) == 1
    # each dead page costs a read, and the old messages are not read again for each
    assert work[0][ENTRIES] <= 40 + 3000 // 32 + 2


def test_an_any_query_of_64_words_counts_its_merge(counting: redis.Redis) -> None:
    raw, model = RawSession(counting, "w:", "merge"), ReferenceSession()
    append(raw, model, [f"t{(i // 32) % 64} filler {i}" for i in range(6000)])
    query = " ".join(f"t{i}" for i in range(64))
    for work in follow(raw, model, query, limit=100, mode="any"):
        assert work[POSTINGS] <= SEARCH_POSTINGS + 2 * 64 + 64


def test_text_past_the_searchable_bytes_is_not_searched(counting: redis.Redis) -> None:
    raw, model = RawSession(counting, "w:", "cut"), ReferenceSession()
    head = "x" * (SEARCHABLE_BYTES - 10)
    append(raw, model, [head + " early late" + " tail" * 100, "日本語" * 20000 + " late"])
    append(raw, model, [f"filler {i}" for i in range(100)])  # folds the first two
    for query in ("early", "late", "tail", "日本"):
        follow(raw, model, query)
    assert model.search("early") and not model.search("late") and not model.search("tail")


def test_a_retried_write_of_many_messages_is_remembered_in_a_few_bytes(
    redis_server: Any,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "retry-many")
    jsons = [stored(f"m {i}") for i in range(3000)]
    ids = raw.call("append", "TOKEN", "t-1", "MESSAGES", *jsons)
    remembered = [v for k, v in client.hgetall(raw.keys[1]).items() if k.startswith(b"\0T")]
    # one run per millisecond the write took, not one id per message
    assert len(remembered) == 1 and len(remembered[0]) < 3000
    assert raw.call("append", "TOKEN", "t-1", "MESSAGES", *jsons) == ids
    assert raw.call("len", read_only=True) == 3000
    client.close()


def test_a_trim_removes_a_bounded_number_of_bytes_beyond_what_the_write_added(
    redis_server: Any,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "shrink")
    long = stored(words(LONG // 7))
    for _ in range(6):
        raw.call("append", "MESSAGES", *[long] * 5)
    length = raw.call("len", read_only=True)
    raw.call("append", "MAXBYTES", 1000, "MESSAGES", stored("tiny"))
    removed = length + 1 - raw.call("len", read_only=True)
    assert 1 <= removed <= (TRIM_BYTES + 100) // len(long) + 1
    assert removed < TRIM_STEP
    client.close()


@pytest.mark.parametrize("key", [1, 2])
def test_a_hash_of_another_type_is_refused_before_anything_is_written(
    redis_server: Any, key: int
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", f"typed-{key}")
    raw.call("append", "MESSAGES", stored("first"))
    client.delete(raw.keys[key])
    client.set(raw.keys[key], "not a hash")
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADKEYS"):
        with_id = {"type": "human", "data": {"content": "x", "id": "c1"}}
        raw.call("append", "MESSAGES", json.dumps(with_id))
    assert client.xlen(raw.keys[0]) == 1
    client.close()


OUT_OF_RANGE = ["0", "0-0", "1-18446744073709551616", "99999999999999999999", "2" + "0" * 19]


@pytest.mark.parametrize("bound", OUT_OF_RANGE)
def test_search_refuses_a_bound_nothing_can_be_before_or_out_of_range(
    redis_server: Any, bound: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "bounds")
    raw.call("append", "MESSAGES", stored("alpha"))
    for mode in ("ALL", "ANY"):
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG BEFORE must be"):
            raw.call("search", "alpha", "MODE", mode, "BEFORE", bound, read_only=True)
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG BEFORE must be"):
            raw.call("search", "alpha", "MODE", mode, "BEFORE", bound, "PAGED", read_only=True)
    client.close()


def test_a_long_type_is_found_after_its_unicode_record_is_folded(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "long-type")
    kind = "a" * 64  # the longest type; its index field is one byte longer
    (first,) = raw.call(
        "append", "MESSAGES", json.dumps({"type": kind, "data": {"content": "café au lait"}})
    )
    assert raw.call("search", "lait", "TYPE", kind, read_only=True)[0::2] == [first]
    raw.call("append", "MESSAGES", *[stored(f"filler {i}") for i in range(70)])  # a fold
    assert not client.hget(raw.keys[1], "\0n")
    assert raw.call("search", "lait", "TYPE", kind, read_only=True)[0::2] == [first]
    client.close()


def test_appends_after_an_imported_id_with_a_long_seq_are_remembered_and_searched(
    redis_server: Any,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "long-seq")
    raw.call("import", "ENTRIES", "999999999999999-999999999999998", stored("a"))
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
        raw.call("import", "ENTRIES", "999999999999999-1999999999999999", stored("z"))
    jsons = [stored("b"), stored("c"), stored("d")]
    ids = raw.call("append", "TOKEN", "t-1", "MESSAGES", *jsons)
    assert ids[-1] == b"999999999999999-1000000000000001"  # a 16-digit seq
    assert raw.call("append", "TOKEN", "t-1", "MESSAGES", *jsons) == ids
    assert raw.call("len", read_only=True) == 4
    assert raw.call("search", "c", read_only=True)[0::2] == [ids[1]]
    client.close()


def test_a_rebuild_restarted_while_it_measures_the_longest_message_measures_it_again(
    redis_server: Any,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    source = re.sub(
        r"^local BUILD_STEP = \d+", "local BUILD_STEP = 4", library_source(), flags=re.M
    )
    source = re.sub(r"^local PAGE_MESSAGES = \d+", "local PAGE_MESSAGES = 2", source, flags=re.M)
    client.function_load(source, replace=True)
    raw = RawSession(client, "w:", "restart")
    raw.call("append", "MESSAGES", *[stored(f"small {i}") for i in range(6)])
    raw.call("append", "MESSAGES", *[stored(words(3000)) for _ in range(4)])
    client.unlink(raw.keys[1])  # the index hash, \0M with it, is lost
    raw.call("reindex", "CONTINUE")
    assert not client.hexists(raw.keys[1], "\0M")  # measured by the steps, not known yet
    raw.call("reindex", "RESTART")
    assert not client.hexists(raw.keys[1], "\0M")
    while raw.call("reindex", "CONTINUE")[2] != 1:
        pass
    assert int(client.hget(raw.keys[1], "\0M")) == len(stored(words(3000)))
    client.function_load(library_source(), replace=True)
    client.close()


def test_a_json_that_spells_id_or_tool_with_escapes_is_read_as_it_decodes(
    redis_server: Any,
) -> None:
    """Keys and values written with \\u escapes: a trimmed message's client id goes with it,
    and a tool-safe window does not start with a tool result spelled that way."""
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    raw = RawSession(client, "w:", "escapes")
    escaped_id = '{"type":"human","data":{"content":"first","\\u0069d":"c1"}}'
    raw.call("append", "MESSAGES", escaped_id)
    assert client.hget(raw.keys[2], "c1") is not None
    raw.call("append", "MAXLEN", 1, "MESSAGES", stored("second"))
    assert client.hlen(raw.keys[2]) == 0  # the id went with its message

    call = {"name": "f", "args": {}, "id": "t1", "type": "tool_call"}
    ai = json.dumps({"type": "ai", "data": {"content": "", "tool_calls": [call]}})
    tool = '{"type":"\\u0074ool","data":{"content":"r","tool_call_id":"t1"}}'
    raw.call("append", "MESSAGES", ai, tool, stored("after"))
    raw.call("append", "MAXLEN", 3, "TOOLSAFE", "MESSAGES", stored("last"))
    window = [json.loads(fields[b"m"]) for _, fields in client.xrange(raw.keys[0])]
    assert window[0]["type"] != "tool"
    client.close()
