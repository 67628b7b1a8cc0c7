"""Every call's work is bounded, whatever the session holds (raw FCALL, shipped budgets).

The library is loaded with its work counter on (``COUNT_WORK``): each PAGED search reply then
starts with what the call did, "judged entries bytes postings". The adversarial cases are the
ones that made one call of library 1.2.1 judge the whole session: two common words never in one
message, a type filter matching nothing, phrases of common words, a 64-token ANY query, and a
scan of an unindexed session. Each is followed to its end and compared with a brute-force scan.
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
from search_reference import ReferenceSession

SESSION_SIZE = 4000


def budget(name: str) -> int:
    """A budget constant of the shipped library."""
    found = re.search(rf"^local {name} = (\d+)", library_source(), re.M)
    assert found, name
    return int(found.group(1))


JUDGED, ENTRIES, POSTINGS = (
    budget("SEARCH_JUDGED"),
    budget("SEARCH_ENTRIES"),
    budget("SEARCH_POSTINGS"),
)
PAGE = budget("PAGE_MESSAGES")


def stored(text: str, message_type: str = "human") -> str:
    return json.dumps({"type": message_type, "data": {"content": text}})


def counting_library() -> str:
    source, count = re.subn(
        r"^local COUNT_WORK = false", "local COUNT_WORK = true", library_source(), flags=re.M
    )
    assert count == 1
    return source


class Session:
    """A session built once for the module, with its reference model."""

    def __init__(self, client: redis.Redis, name: str, texts: list[str], *flags: str) -> None:
        self.raw = RawSession(client, "w:", name)
        self.model = ReferenceSession()
        for first in range(0, len(texts), 500):
            batch = texts[first : first + 500]
            ids = self.raw.call("append", *flags, "MESSAGES", *map(stored, batch))
            for stream_id, text in zip(ids, batch, strict=True):
                self.model.messages.append((stream_id.decode(), json.loads(stored(text))))

    def follow(
        self, query: str, *args: Any, limit: int = 10, mode: str = "all"
    ) -> list[dict[str, int]]:
        """Runs a PAGED search to its end; checks it against the model; returns each call's work."""
        hits: list[tuple[str, int]] = []
        work: list[dict[str, int]] = []
        before = None
        while True:
            call: list[Any] = [query, "MODE", mode, *args, "PAGED"]
            if mode == "any":
                floor = hits[limit - 1][1] + 1 if len(hits) >= limit else 1
                call += ["LIMIT", limit, "MINSCORE", floor]
            else:
                call += ["LIMIT", limit - len(hits)]
            if before:
                call += ["BEFORE", before]
            reply = self.raw.call("search", *call, read_only=True)
            judged, entries, read, postings = map(int, reply[0].split())
            work.append({"judged": judged, "entries": entries, "bytes": read, "postings": postings})
            page = [(reply[i].decode(), int(reply[i + 2])) for i in range(2, len(reply), 3)]
            if mode == "any":
                merged = dict([*hits, *page])
                hits = sorted(
                    merged.items(), key=lambda h: (-h[1], *(-int(p) for p in h[0].split("-")))
                )
                hits = hits[:limit]
            else:
                hits = page + hits
            if not reply[1]:
                break
            before = reply[1].decode()
            assert len(work) < 10 * SESSION_SIZE // JUDGED, "the search does not end"
        message_type = args[args.index("TYPE") + 1] if "TYPE" in args else None
        expected = self.model.search(query, limit=limit, mode=mode, message_type=message_type)
        assert [stream_id for stream_id, _ in hits] == expected
        return work


@pytest.fixture(scope="module")
def sessions(redis_server: Any) -> Iterator[dict[str, Session]]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.function_load(counting_library(), replace=True)
    alternating = [
        f"alpha common {i}" if i % 2 else f"beta common {i}" for i in range(SESSION_SIZE)
    ]
    built = {
        "indexed": Session(client, "indexed", alternating),
        "scanned": Session(client, "scanned", alternating, "NOINDEX"),
    }
    yield built
    client.function_flush()
    client.close()


def assert_bounded(work: list[dict[str, int]], terms: int) -> None:
    """Every call stayed inside its budget. Work is counted per message judged, weighted by
    the query's terms (1 + terms // 8); a call checks its budget between pages, so the last
    page (PAGE messages, or 64 in a scan) may take it past."""
    past = (1 + terms // 8) * max(PAGE, 64)
    for call in work:
        assert call["judged"] <= JUDGED + past, call
        assert call["entries"] <= ENTRIES + past, call
        assert call["postings"] <= POSTINGS + 64 * 128, call


ADVERSARIAL = [
    pytest.param("alpha beta", (), "any", id="two-common-words-any"),
    pytest.param("alpha beta", (), "all", id="two-words-never-together"),
    pytest.param("alpha", ("TYPE", "tool"), "all", id="type-matching-nothing-all"),
    pytest.param("alpha common", ("TYPE", "tool"), "any", id="type-matching-nothing-any"),
    pytest.param('"common alpha"', (), "all", id="phrase-of-common-words"),
    pytest.param(
        " ".join(["alpha", "beta", *(f"w{i}" for i in range(62))]), (), "any", id="64-tokens"
    ),
    pytest.param("common", (), "any", id="one-common-word"),
]


@pytest.mark.parametrize("kind", ["indexed", "scanned"])
@pytest.mark.parametrize(("query", "args", "mode"), ADVERSARIAL)
def test_adversarial_searches_stay_inside_the_budget_and_stay_exact(
    sessions: dict[str, Session], kind: str, query: str, args: tuple[str, ...], mode: str
) -> None:
    work = sessions[kind].follow(query, *args, mode=mode)
    assert_bounded(work, len(set(query.replace('"', "").split())))


def test_a_search_that_must_read_everything_takes_many_short_calls(
    sessions: dict[str, Session],
) -> None:
    """ANY "alpha beta": every message holds one word and none both, so proving that no
    message scores 2 means judging them all; 1.2.1 did it in one call."""
    work = sessions["indexed"].follow("alpha beta", mode="any")
    assert len(work) >= SESSION_SIZE // (JUDGED + PAGE)
    assert sum(call["judged"] for call in work) >= SESSION_SIZE


def test_without_paged_a_long_search_is_refused_not_run(sessions: dict[str, Session]) -> None:
    raw = sessions["indexed"].raw
    with pytest.raises(redis.ResponseError, match="CHATHIST_BUDGET"):
        raw.call("search", "alpha beta", "MODE", "ANY", read_only=True)
    # one that finishes inside the budget answers in the 1.2 form
    reply = raw.call("search", "common", read_only=True)
    assert len(reply) == 1 + 2 * 10  # the work counts, then 10 hits


def test_the_lua_heap_stays_small_after_long_searches(
    sessions: dict[str, Session], redis_server: Any
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    for _ in range(3):
        sessions["indexed"].follow("alpha beta", mode="any", limit=1000)
    assert int(client.info("memory")["used_memory_vm_functions"]) < 8 * 1024 * 1024
    client.close()


# -- bulk work in steps ------------------------------------------------------------


def test_reindex_runs_in_bounded_steps_and_search_stays_exact_meanwhile(
    redis_server: Any,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    session = Session(client, "rebuilt", [f"word{i % 50} filler" for i in range(3000)])
    step = budget("BUILD_STEP")
    reply = session.raw.call("reindex", "RESTART")
    assert reply == [step, 3000, 0]
    assert client.hget(session.raw.keys[1], "\0v") == b"B"
    calls = 1
    while reply[2] == 0:
        expected = session.model.search("word7", limit=5)
        found = session.raw.call("search", "word7", "LIMIT", 5, read_only=True)
        assert [x.decode() for x in found[0::2]] == expected  # scanned while rebuilding
        reply = session.raw.call("reindex", "CONTINUE")
        calls += 1
        assert reply[0] <= min(calls * step, 3000)
    assert calls == -(-3000 // step) + (3000 % step == 0)
    assert client.hget(session.raw.keys[1], "\0v") == b"2"
    assert int(client.hget(session.raw.keys[1], "\0b")) == sum(
        len(stored(f"word{i % 50} filler")) for i in range(3000)
    )
    client.close()


def test_a_lost_index_is_rebuilt_by_later_writes_in_steps(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    session = Session(client, "lost", [f"text {i}" for i in range(1000)])
    client.delete(session.raw.keys[1])  # evicted alone
    step = budget("WRITE_BUILD_STEP")
    writes = 0
    while client.hget(session.raw.keys[1], "\0v") != b"2":
        ids = session.raw.call("append", "MESSAGES", stored(f"more {writes}"))
        session.model.messages.append((ids[0].decode(), json.loads(stored(f"more {writes}"))))
        writes += 1
        assert writes <= 1000 // step + 2
    assert writes >= 1000 // step
    # the byte total was recounted by the same steps
    total = sum(len(json.dumps(m)) for _, m in session.model.messages)
    assert int(client.hget(session.raw.keys[1], "\0b")) == total
    assert [x.decode() for x in session.raw.call("search", "text", "LIMIT", 3)[0::2]] == (
        session.model.search("text", limit=3)
    )
    client.close()


def test_a_window_made_much_smaller_shrinks_a_bounded_step_per_write(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    session = Session(client, "window", [f"old {i}" for i in range(2000)])
    step = budget("TRIM_STEP")
    length = 2000
    writes = 0
    while length > 10:
        session.raw.call("append", "MAXLEN", 10, "MESSAGES", stored("new"))
        writes += 1
        new_length = session.raw.call("len", read_only=True)
        removed = length + 1 - new_length
        # a bounded step beyond what the write added, and progress
        assert removed == min(step + 1, length + 1 - 10)
        length = new_length
    assert length == 10 and writes == -(-(2000 - 10) // step)


def test_clear_and_delete_work_at_maxmemory(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(library_source(), replace=True)
    session = Session(client, "full", [f"text {i}" for i in range(200)])
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used - 1024)
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            session.raw.call("append", "MESSAGES", stored("more"))
        first = session.model.messages[0][0]
        assert session.raw.call("delete", "IDS", first) == 1
        assert session.raw.call("expire", 60) == 1
        assert session.raw.call("clear") == 199
    finally:
        client.config_set("maxmemory", 0)
    client.close()


def test_an_append_reads_the_entries_its_ids_name_within_a_budget(raw: RawSession) -> None:
    """A message whose id is stored is not stored again; checking that its entry still
    exists copies it. Tiny messages naming a long stored one by id: the call checks while
    twice what it carries and 256 KiB last, then trusts the id map (the library clears it of
    what it deletes), so it reads about 3 of the 100 KB entries, not 300, and a retry of a
    call whose first message spends the budget still stores nothing twice."""
    big = json.dumps({"type": "human", "data": {"content": "x" * 400_000, "id": "big"}})
    first = raw.call("append", "MESSAGES", big)
    tiny = json.dumps({"type": "human", "data": {"content": "x", "id": "big"}})
    raw.client.config_resetstat()
    assert raw.call("append", "MESSAGES", *[tiny] * 300) == first * 300
    # XRANGE calls inside the function are counted too: the entries the call read
    reads = raw.client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0)
    assert reads <= 4, reads
    mine = json.dumps({"type": "human", "data": {"content": "mine", "id": "m1"}})
    ids = raw.call("append", "MESSAGES", tiny, mine)
    assert raw.call("append", "MESSAGES", tiny, mine) == ids
    assert raw.client.xlen(raw.keys[0]) == 2


def test_a_search_reads_its_pending_messages_not_what_lies_between_them(
    redis_server: Any,
) -> None:
    """Pending records are stream ids whose texts a search reads back: entries another
    client added between two of them (5000 here) are not read; the search stays exact."""
    client = redis.Redis.from_url(redis_server.url)
    client.function_load(counting_library(), replace=True)
    raw = RawSession(client, "w:", "between")
    raw.call("append", "MESSAGES", stored("first alpha"))
    pipe = client.pipeline(transaction=False)
    for i in range(5000):
        pipe.xadd(raw.keys[0], {"m": stored(f"added by another client {i}")})
    pipe.execute()
    raw.call("append", "MESSAGES", stored("second alpha"))
    reply = raw.call("search", "alpha", "PAGED", read_only=True)
    entries = int(reply[0].split()[1])
    assert entries <= 2 * 2 + 2, entries  # the two records, read twice at most, and the two hits
    assert sorted(reply[i + 1] for i in range(2, len(reply), 3)) == sorted(
        [stored("first alpha").encode(), stored("second alpha").encode()]
    )
    client.function_load(library_source(), replace=True)
