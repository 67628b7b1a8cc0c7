"""Windows (max_messages, max_bytes), deletion, RemoveMessage and TTL control of a history,
against a real server."""

from __future__ import annotations

import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage

from redis_chat_history import InvalidInputError, RedisChatMessageHistory
from redis_chat_history import _langchain as lc
from test_history import commandstats, delta


def contents(history: RedisChatMessageHistory) -> list[str | list[str | dict[str, object]]]:
    return [message.content for message in history.messages]


def stored_bytes(client: redis.Redis, history: RedisChatMessageHistory) -> int:
    return sum(len(fields[b"m"]) for _, fields in client.xrange(history.keys[0]))


# -- windows -------------------------------------------------------------------------------------


def test_max_messages_keeps_the_latest_in_the_same_call(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("w", redis_url=redis_url, max_messages=3)
    history.add_messages([HumanMessage(f"m{i}", id=f"id{i}") for i in range(2)])
    assert contents(history) == ["m0", "m1"]
    before = commandstats(client)
    history.add_messages([HumanMessage(f"m{i}", id=f"id{i}") for i in range(2, 7)])
    assert delta(before, commandstats(client)) == {"fcall": 1}
    assert contents(history) == ["m4", "m5", "m6"]
    # Trimmed messages leave the id map: their ids can be stored again.
    assert sorted(client.hkeys(history.keys[2])) == [b"id4", b"id5", b"id6"]
    history.add_messages([HumanMessage("m0 again", id="id0")])
    assert contents(history) == ["m5", "m6", "m0 again"]


def test_max_messages_keeps_the_index_right(redis_url: str) -> None:
    history = RedisChatMessageHistory("w", redis_url=redis_url, max_messages=2)
    history.add_messages([HumanMessage("apple pie"), HumanMessage("banana"), AIMessage("apple")])
    assert [hit.message.content for hit in history.search("apple")] == ["apple"]
    assert history.search("pie") == []
    assert history.search("banana", mode="any")[0].message.content == "banana"


def test_max_bytes_trims_the_oldest_and_keeps_the_newest(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("b", redis_url=redis_url, max_bytes=1000)
    for i in range(20):
        history.add_messages([HumanMessage(f"message {i} " + "x" * 100, id=f"i{i}")])
        assert stored_bytes(client, history) <= 1000
    kept = contents(history)
    assert kept[-1] == "message 19 " + "x" * 100
    assert 1 < len(kept) < 20
    history.add_messages([HumanMessage("y" * 2000, id="big")])
    assert contents(history) == ["y" * 2000]  # the newest stays, even alone over the limit


async def test_windows_apply_to_async_appends(redis_url: str) -> None:
    history = RedisChatMessageHistory("a", redis_url=redis_url, max_messages=2)
    await history.aadd_messages([HumanMessage(f"m{i}") for i in range(5)])
    assert [m.content for m in await history.aget_messages()] == ["m3", "m4"]


@given(
    batches=st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=6), max_size=8),
    max_messages=st.none() | st.integers(1, 6),
    max_bytes=st.none() | st.integers(1, 2000),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_windows_match_a_model(
    client: redis.Redis,
    redis_url: str,
    batches: list[list[int]],
    max_messages: int | None,
    max_bytes: int | None,
) -> None:
    history = RedisChatMessageHistory(
        "model", redis_url=redis_url, max_messages=max_messages, max_bytes=max_bytes
    )
    history.clear()
    model: list[tuple[str, int]] = []
    for number, batch in enumerate(batches):
        messages = [HumanMessage("z" * size, id=f"{number}-{i}") for i, size in enumerate(batch)]
        history.add_messages(messages)
        model += [(str(m.id), len(lc.encode_message(m))) for m in messages]
        if max_messages is not None:
            model = model[-max_messages:]
        while max_bytes is not None and len(model) > 1 and sum(s for _, s in model) > max_bytes:
            model.pop(0)
    assert [m.id for m in history.messages] == [mid for mid, _ in model]
    assert client.hlen(history.keys[2]) == len(model)


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages": 0},
        {"max_messages": -1},
        {"max_messages": 10**9 + 1},
        {"max_messages": True},
        {"max_bytes": 0},
        {"max_bytes": 2**40 + 1},
        {"max_bytes": 1.5},
        {"refresh_ttl_on_read": True},
        {"refresh_ttl_on_read": True, "ttl": 0},
    ],
)
def test_bad_window_options_are_invalid_input(redis_url: str, options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        RedisChatMessageHistory("s", redis_url=redis_url, **options)  # type: ignore[arg-type]


# -- deleting ------------------------------------------------------------------------------------


def test_delete_by_stream_id_one_or_many_in_one_call(client: redis.Redis, redis_url: str) -> None:
    history = RedisChatMessageHistory("d", redis_url=redis_url)
    history.add_messages([HumanMessage(f"word{i} common", id=f"c{i}") for i in range(6)])
    records = history.page()
    assert history.delete_messages([records[1].id]) == 1
    before = commandstats(client)
    assert history.delete_messages([records[0].id, records[3].id, records[1].id, "1-1"]) == 2
    assert delta(before, commandstats(client)) == {"fcall": 1}
    assert contents(history) == ["word2 common", "word4 common", "word5 common"]
    assert [hit.message.content for hit in history.search("common", limit=10)] == contents(history)
    assert history.search("word3") == []
    assert sorted(client.hkeys(history.keys[2])) == [b"c2", b"c4", b"c5"]
    assert history.delete_messages([]) == 0


async def test_delete_by_message_id_async(redis_url: str) -> None:
    history = RedisChatMessageHistory("d", redis_url=redis_url)
    await history.aadd_messages([HumanMessage("a", id="x"), AIMessage("b", id="y")])
    assert await history.adelete_messages(message_ids=["x", "nope"]) == 1
    assert [m.id for m in await history.aget_messages()] == ["y"]
    await history.aadd_messages([HumanMessage("a again", id="x")])  # the id may come back
    assert [m.content for m in await history.aget_messages()] == ["b", "a again"]
    assert await history.adelete_messages(message_ids=["x", "y"]) == 2
    assert await history.alen() == 0


@pytest.mark.parametrize(
    ("ids", "message_ids"),
    [
        (["12"], []),
        (["abc"], []),
        (["1-1"], ["x"]),
        ("1-1", []),
        ([""], []),
        ([], [""]),
        ([], [3]),
        ([f"1-{i}" for i in range(10001)], []),
    ],
)
def test_bad_deletions_are_invalid_input_and_delete_nothing(
    redis_url: str, ids: list[str], message_ids: list[str]
) -> None:
    history = RedisChatMessageHistory("d", redis_url=redis_url)
    history.add_messages([HumanMessage("keep", id="x")])
    with pytest.raises(InvalidInputError):
        history.delete_messages(ids, message_ids=message_ids)
    assert contents(history) == ["keep"]


def test_remove_message_in_add_messages_deletes_by_message_id(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("r", redis_url=redis_url)
    history.add_messages([HumanMessage("a", id="a"), AIMessage("b", id="b"), HumanMessage("c")])
    before = commandstats(client)
    history.add_messages([RemoveMessage(id="a"), RemoveMessage(id="missing")])
    assert delta(before, commandstats(client)) == {"fcall": 1}
    assert contents(history) == ["b", "c"]
    history.add_messages([HumanMessage("d", id="d"), RemoveMessage(id="b"), AIMessage("e")])
    assert contents(history) == ["c", "d", "e"]


async def test_remove_all_messages_clears_first(redis_url: str) -> None:
    history = RedisChatMessageHistory("r", redis_url=redis_url)
    await history.aadd_messages([HumanMessage("old 1"), HumanMessage("old 2")])
    await history.aadd_messages([RemoveMessage(id=lc.REMOVE_ALL_MESSAGES), HumanMessage("fresh")])
    assert [m.content for m in await history.aget_messages()] == ["fresh"]


def test_remove_message_without_an_id_is_invalid_input(redis_url: str) -> None:
    history = RedisChatMessageHistory("r", redis_url=redis_url)
    history.add_messages([HumanMessage("keep")])
    with pytest.raises(InvalidInputError):
        history.add_messages([HumanMessage("no"), RemoveMessage(id="")])
    assert contents(history) == ["keep"]


# -- TTL -----------------------------------------------------------------------------------------


def test_get_and_set_ttl(client: redis.Redis, redis_url: str) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url)
    assert history.get_ttl() is None  # no session
    assert history.set_ttl(60) is False
    history.add_messages([HumanMessage("hi", id="1")])
    assert history.get_ttl() is None  # no TTL
    assert history.set_ttl(120) is True
    ttl = history.get_ttl()
    assert ttl is not None and 119 < ttl <= 120
    assert all(110_000 < client.pttl(key) <= 120_000 for key in history.keys if client.exists(key))
    assert history.set_ttl(None) is True
    assert history.get_ttl() is None
    assert all(client.pttl(key) == -1 for key in history.keys if client.exists(key))
    for bad in (0, -5, 315360001, 1.5, True):
        with pytest.raises(InvalidInputError):
            history.set_ttl(bad)  # type: ignore[arg-type]


async def test_get_and_set_ttl_async(redis_url: str) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url, ttl=30)
    await history.aadd_messages([HumanMessage("hi")])
    ttl = await history.aget_ttl()
    assert ttl is not None and 29 < ttl <= 30
    assert await history.aset_ttl(None) is True
    assert await history.aget_ttl() is None


def test_refresh_ttl_on_read_renews_in_the_same_round_trip(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url, ttl=100, refresh_ttl_on_read=True)
    history.add_messages([HumanMessage("hello there", id="1")])
    for read in (
        lambda: history.messages,
        lambda: history.latest(1),
        lambda: history.page(5),
        lambda: history.search("hello"),
        lambda: history.search_messages("hello"),
    ):
        assert history.set_ttl(5)
        before = commandstats(client)
        assert read()
        assert delta(before, commandstats(client)) == {"fcall_ro": 1, "fcall": 1}
        ttl = history.get_ttl()
        assert ttl is not None and 99 < ttl <= 100
    plain = RedisChatMessageHistory("t", redis_url=redis_url, ttl=100)
    history.set_ttl(5)
    assert plain.messages
    ttl = plain.get_ttl()
    assert ttl is not None and ttl <= 5


async def test_refresh_ttl_on_async_reads(redis_url: str) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url, ttl=100, refresh_ttl_on_read=True)
    await history.aadd_messages([HumanMessage("hello")])
    for read in (history.aget_messages, lambda: history.alatest(1), lambda: history.apage(1)):
        await history.aset_ttl(5)
        assert await read()
        ttl = await history.aget_ttl()
        assert ttl is not None and 99 < ttl <= 100


def test_a_read_with_refresh_of_a_missing_session_creates_nothing(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url, ttl=100, refresh_ttl_on_read=True)
    assert history.messages == []
    assert client.dbsize() == 0


def test_a_session_expires_with_its_ttl(client: redis.Redis, redis_url: str) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url)
    history.add_messages([HumanMessage("soon gone", id="1")])
    history.set_ttl(1)
    deadline = time.monotonic() + 5
    while client.exists(*history.keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.exists(*history.keys) == 0
    assert history.messages == [] and history.get_ttl() is None


async def test_refresh_on_async_reads_through_a_given_sync_client(redis_url: str) -> None:
    given = redis.Redis.from_url(redis_url)
    history = RedisChatMessageHistory(
        "t", redis_client=given, ttl=100, refresh_ttl_on_read=True, max_messages=1
    )
    await history.aadd_messages([HumanMessage("one"), HumanMessage("two")])
    await history.aset_ttl(5)
    assert [m.content for m in await history.aget_messages()] == ["two"]
    ttl = await history.aget_ttl()
    assert ttl is not None and 99 < ttl <= 100
    given.close()
