"""Paging and ranges of a session: page(), latest(), their async twins, against a real server.

Sessions with chosen stream ids (and so chosen times) are written with raw XADD, the way
any other client may write the stream; the library reads them like its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage

from redis_chat_history import InvalidInputError, RedisChatMessageHistory, StoredMessage
from redis_chat_history import _langchain as lc
from redis_chat_history import _protocol as protocol
from redis_chat_history._transport import AsyncTransport, SyncTransport
from test_history import commandstats, delta

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Stream ids of the fixture session: several per millisecond, gaps between milliseconds.
IDS = [
    "1000-0",
    "1000-1",
    "1000-2",
    "1001-0",
    "1003-0",
    "1003-1",
    "1007-0",
    "1010-0",
    "1010-1",
    "1010-5",
    "1011-0",
    "1020-0",
]


def at(milliseconds: float) -> datetime:
    """The aware UTC datetime ``milliseconds`` after the epoch (fractions kept as microseconds)."""
    return EPOCH + timedelta(microseconds=round(milliseconds * 1000))


def key(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return (int(ms), int(seq))


@pytest.fixture
def timed(client: redis.Redis, redis_url: str) -> RedisChatMessageHistory:
    """Session "timed" whose messages have the stream ids in IDS (content = the id)."""
    history = RedisChatMessageHistory("timed", redis_url=redis_url)
    for stream_id in IDS:
        stored = lc.encode_message(HumanMessage(stream_id))
        client.xadd(history.keys[0], {protocol.MESSAGE_FIELD: stored}, id=stream_id)
    return history


def ids(records: list[StoredMessage]) -> list[str]:
    return [record.id for record in records]


# -- latest ------------------------------------------------------------------------------------


def test_latest_returns_typed_records_oldest_first(redis_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    history.add_messages([HumanMessage(f"m{i}", id=f"id-{i}") for i in range(6)])
    records = history.latest(3)
    assert all(isinstance(record, StoredMessage) for record in records)
    assert [record.message for record in records] == [
        HumanMessage(f"m{i}", id=f"id-{i}") for i in (3, 4, 5)
    ]
    for record in records:
        assert record.timestamp == protocol.id_time(record.id)
        assert record.timestamp.tzinfo is timezone.utc
        assert abs(record.timestamp - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert history.latest(0) == []
    assert ids(history.latest(100)) == ids(history.page())
    assert len(history.page()) == 6


def test_latest_needs_a_non_negative_count(timed: RedisChatMessageHistory) -> None:
    for bad in (-1, None, 1.5, True, "3"):
        with pytest.raises(InvalidInputError):
            timed.latest(bad)  # type: ignore[arg-type]


async def test_async_twins_read_the_same_pages(timed: RedisChatMessageHistory) -> None:
    assert await timed.alatest(4) == timed.latest(4)
    assert await timed.apage(3, before="1010-0") == timed.page(3, before="1010-0")
    assert ids(await timed.apage(since=at(1003), until=at(1010))) == [
        "1003-0",
        "1003-1",
        "1007-0",
    ]


# -- paging by id ------------------------------------------------------------------------------


def test_page_back_through_a_session_visits_every_message_once(
    timed: RedisChatMessageHistory,
) -> None:
    seen: list[str] = []
    page = timed.page(5)
    while page:
        seen = ids(page) + seen
        page = timed.page(5, before=page[0].id)
    assert seen == IDS


def test_page_forward_through_a_session_visits_every_message_once(
    timed: RedisChatMessageHistory,
) -> None:
    seen: list[str] = []
    page = timed.page(4, after="0-0")
    while page:
        seen += ids(page)
        page = timed.page(4, after=page[-1].id)
    assert seen == IDS


def test_a_bare_millisecond_bounds_whole_milliseconds(timed: RedisChatMessageHistory) -> None:
    assert ids(timed.page(before="1003")) == ["1000-0", "1000-1", "1000-2", "1001-0"]
    assert ids(timed.page(after="1010")) == ["1011-0", "1020-0"]
    assert ids(timed.page(after="1000-1", before="1003-1")) == ["1000-2", "1001-0", "1003-0"]


# -- time ranges -------------------------------------------------------------------------------


def test_since_is_inclusive_and_until_exclusive(timed: RedisChatMessageHistory) -> None:
    assert ids(timed.page(since=at(1010))) == ["1010-0", "1010-1", "1010-5", "1011-0", "1020-0"]
    assert ids(timed.page(until=at(1003))) == ["1000-0", "1000-1", "1000-2", "1001-0"]
    assert ids(timed.page(since=at(1003), until=at(1007))) == ["1003-0", "1003-1"]
    # Fractions of a millisecond: a message at ms 1003 is before 1003.5, after 1002.5.
    assert ids(timed.page(since=at(1002.5), until=at(1003.5))) == ["1003-0", "1003-1"]
    assert ids(timed.page(since=at(1003.5), until=at(1007.001))) == ["1007-0"]


def test_since_with_a_limit_pages_forward_until_with_a_limit_pages_back(
    timed: RedisChatMessageHistory,
) -> None:
    assert ids(timed.page(2, since=at(1003))) == ["1003-0", "1003-1"]
    assert ids(timed.page(2, until=at(1010))) == ["1003-1", "1007-0"]


def test_the_tighter_of_an_id_and_a_time_bound_wins(timed: RedisChatMessageHistory) -> None:
    assert ids(timed.page(after="1007-0", since=at(1003))) == ids(timed.page(after="1007-0"))
    assert ids(timed.page(after="1000-0", since=at(1010))) == ids(timed.page(since=at(1010)))
    assert ids(timed.page(before="1003-1", until=at(1010))) == ids(timed.page(before="1003-1"))
    assert ids(timed.page(before="1020-0", until=at(1001))) == ["1000-0", "1000-1", "1000-2"]


def test_timezones_are_honoured(timed: RedisChatMessageHistory) -> None:
    plus_two = timezone(timedelta(hours=2))
    assert ids(timed.page(since=at(1010).astimezone(plus_two))) == ids(timed.page(since=at(1010)))


def test_empty_ranges_and_the_epoch(timed: RedisChatMessageHistory) -> None:
    assert timed.page(since=at(1021)) == []
    assert timed.page(until=EPOCH) == []
    assert timed.page(before="0-0") == []
    assert timed.page(since=at(1010), until=at(1003)) == []
    assert ids(timed.page(since=EPOCH)) == IDS
    assert timed.page(0, since=EPOCH) == []
    assert RedisChatMessageHistory("none", redis_url=timed.redis_url).page(5) == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"since": datetime(2024, 1, 1)},  # naive: ambiguous
        {"until": datetime(2024, 1, 1)},
        {"since": "2024-01-01"},
        {"before": "yesterday"},
        {"after": "12-"},
        {"after": "1-2-3"},
        {"before": " 12"},
        {"before": "12\n"},
        {"limit": -1},
        {"limit": 2.5},
    ],
)
def test_bad_bounds_are_invalid_input_and_send_nothing(
    client: redis.Redis, timed: RedisChatMessageHistory, arguments: dict[str, object]
) -> None:
    timed.page(1)  # the library is checked; later calls send only the page
    before = commandstats(client)
    with pytest.raises(InvalidInputError):
        timed.page(**arguments)  # type: ignore[arg-type]
    assert delta(before, commandstats(client)) == {}


def test_a_page_is_one_fcall_ro_that_reads_only_the_page(
    client: redis.Redis, timed: RedisChatMessageHistory
) -> None:
    timed.page(1)
    before = commandstats(client)
    assert len(timed.page(3, before="1010-0")) == 3
    assert delta(before, commandstats(client)) == {"fcall_ro": 1}
    call = protocol.page_call(timed.keys, 3, before="1010-0", until=at(1011))
    assert call.function == protocol.RANGE
    assert call.args == ("COUNT", 3, "BEFORE", "1010-0")


def test_page_without_a_limit_is_the_whole_range_and_messages_is_unchanged(
    timed: RedisChatMessageHistory,
) -> None:
    assert ids(timed.page()) == IDS
    assert [message.content for message in timed.messages] == IDS
    timed.add_messages([AIMessage("new", id="new-1")])
    assert timed.latest(1)[0].message == AIMessage("new", id="new-1")


# -- the model: any combination of bounds gives what filtering the whole session gives ---------

bound_ids = st.sampled_from([*IDS, "0-0", "999-9", "1002-0", "1010-3", "1020-1", "1003", "1010"])
bound_times = st.floats(min_value=995, max_value=1025).map(lambda ms: at(round(ms, 3)))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.none() | st.integers(0, 14),
    before=st.none() | bound_ids,
    after=st.none() | bound_ids,
    since=st.none() | bound_times,
    until=st.none() | bound_times,
)
def test_page_matches_filtering_the_whole_session(
    timed: RedisChatMessageHistory,
    limit: int | None,
    before: str | None,
    after: str | None,
    since: datetime | None,
    until: datetime | None,
) -> None:
    def inside(stream_id: str) -> bool:
        ms, seq = key(stream_id)
        moment = at(ms)
        return (
            (before is None or (ms, seq) < protocol.stream_id_key(before, 0))
            and (after is None or (ms, seq) > protocol.stream_id_key(after, 2**64 - 1))
            and (since is None or moment >= since)
            and (until is None or moment < until)
        )

    expected = [stream_id for stream_id in IDS if inside(stream_id)]
    if limit is not None:
        lower = after is not None or since is not None
        expected = expected[:limit] if lower else expected[max(0, len(expected) - limit) :]
    page = timed.page(limit, before=before, after=after, since=since, until=until)
    assert ids(page) == expected
    assert [record.message.content for record in page] == expected


@given(
    prefix=st.text(
        st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=8
    ),
    session=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
)
def test_session_ids_are_recovered_from_their_keys(prefix: str, session: str) -> None:
    messages_key = protocol.session_keys(prefix, session)[0]
    assert protocol.session_from_key(prefix, messages_key) == session
    assert protocol.session_from_key(prefix, messages_key.encode()) == session
    assert protocol.session_from_key(prefix + "x", messages_key) is None


# -- pipelines -----------------------------------------------------------------------------------


def test_run_all_is_one_round_trip_and_reloads_a_vanished_library(
    client: redis.Redis, timed: RedisChatMessageHistory
) -> None:
    transport = SyncTransport(redis.Redis.from_url(timed.redis_url))
    calls = [protocol.len_call(timed.keys), protocol.latest_call(timed.keys, 1)]
    assert transport.run_all(calls)[0] == len(IDS)
    client.function_flush()
    count, last = transport.run_all(calls)
    assert count == len(IDS) and protocol.decode_pairs(last)[0][0] == IDS[-1]
    with pytest.raises(InvalidInputError):
        transport.run_all([protocol.len_call(timed.keys), protocol.range_call(timed.keys, -1)])
    transport.client.close()


async def test_async_run_all(timed: RedisChatMessageHistory) -> None:
    client = redis.asyncio.Redis.from_url(timed.redis_url)
    transport = AsyncTransport(client)
    replies = await transport.run_all([protocol.len_call(timed.keys)] * 3)
    assert replies == [len(IDS)] * 3
    await client.aclose()
