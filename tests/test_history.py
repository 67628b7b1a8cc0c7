"""RedisChatMessageHistory, sync and async, against a real redis-server.

Round trips are compared message for message; call counts come from the server's own
``INFO commandstats`` / ``INFO stats``, so "one FCALL" means one FCALL reached Redis.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from redis.cluster import key_slot

from conftest import source_with_version
from redis_chat_history import (
    LIBRARY_VERSION,
    ChatHistoryError,
    InvalidInputError,
    LibraryError,
    LibraryIncompatibleError,
    RedisChatMessageHistory,
    RedisUnavailableError,
    library_source,
)
from redis_chat_history.local_server import free_port

# -- helpers -----------------------------------------------------------------------------------


# Commands that the library's functions run inside Redis; commandstats counts them as well.
# Every command the library's functions run inside the server, read from its source.
INSIDE_FUNCTIONS = {
    name.lower() for name in re.findall(r"redis\.p?call\('([A-Z]+)'", library_source())
}


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command that a client sent, as the server counts them.

    INFO itself and the commands run inside the chathist functions are left out.
    """
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: n for name, n in calls.items() if name not in INSIDE_FUNCTIONS | {"info"}}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two commandstats readings (only those that changed)."""
    return {
        name: after.get(name, 0) - before.get(name, 0)
        for name in after.keys() | before.keys()
        if after.get(name, 0) != before.get(name, 0)
    }


def connections(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def server_version(client: redis.Redis) -> str:
    return client.fcall_ro("chathist_version", 0).decode()


def library_code(client: redis.Redis) -> str:
    (library,) = client.function_list(library="chathist", withcode=True)
    fields = dict(zip(library[0::2], library[1::2], strict=True))
    return fields[b"library_code"].decode()


def every_kind_of_message() -> list[BaseMessage]:
    """One of each LangChain message type, with every field that a chat app stores."""
    return [
        SystemMessage("You are terse.", id="sys-1"),
        HumanMessage(
            "What's the weather in Paris? ünïcödé 😀",
            id="h-1",
            name="alice",
            additional_kwargs={"locale": "fr", "nested": {"list": [1, 2.5, None, True]}},
            response_metadata={"source": "web"},
        ),
        AIMessage(
            "",
            id="run-42",
            name="assistant",
            tool_calls=[
                {
                    "name": "get_weather",
                    "args": {"city": "Paris"},
                    "id": "call_1",
                    "type": "tool_call",
                }
            ],
            invalid_tool_calls=[
                {
                    "name": "broken",
                    "args": '{"city": ',
                    "id": "call_2",
                    "error": "bad JSON",
                    "type": "invalid_tool_call",
                }
            ],
            usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
            response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
            additional_kwargs={"refusal": None},
        ),
        ToolMessage(
            "18 °C, cloudy",
            tool_call_id="call_1",
            status="success",
            artifact={"raw": {"temp": 18.0, "unit": "C"}, "ok": [1, "é"]},
            name="get_weather",
        ),
        ToolMessage("timeout", tool_call_id="call_2", status="error"),
        AIMessage("It is 18 °C and cloudy.", response_metadata={"logprobs": None}),
        ChatMessage("Looks fine to me.", role="critic", id="c-1"),
        FunctionMessage('{"result": 3}', name="add"),
        HumanMessage(
            [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                "a bare string part",
            ]
        ),
        AIMessage(""),
        AIMessageChunk(
            "partial",
            id="chunk-1",
            tool_call_chunks=[
                {
                    "name": "f",
                    "args": '{"a": ',
                    "id": "call_9",
                    "index": 0,
                    "type": "tool_call_chunk",
                }
            ],
        ),
        HumanMessageChunk("chunked human"),
    ]


@pytest.fixture
def fresh_url(redis_url: str) -> str:
    """A URL to the test server that no history has used yet in this process.

    Histories share one client per URL and check the server's library once per client, so a
    distinct URL (here a distinct client name) gives a client that has not checked it yet.
    """
    return f"{redis_url}/0?client_name=t{uuid.uuid4().hex}"


@pytest.fixture
def history(redis_url: str) -> Iterator[RedisChatMessageHistory]:
    yield RedisChatMessageHistory("session-1", redis_url=redis_url)


# -- round trips ---------------------------------------------------------------------------------


def assert_round_trip(back: list[BaseMessage], sent: list[BaseMessage]) -> None:
    """``back`` equals ``sent``, ids included (a message sent without an id comes back
    without one: retries are recognised by the call's token); ``sent`` is unchanged."""
    assert back == sent
    assert sent == every_kind_of_message(), "the caller's messages were not changed"


def test_every_message_type_round_trips_equal(history: RedisChatMessageHistory) -> None:
    messages = every_kind_of_message()
    history.add_messages(messages)
    back = history.messages
    assert_round_trip(back, messages)
    assert len(history) == len(messages)


async def test_every_message_type_round_trips_equal_async(
    history: RedisChatMessageHistory,
) -> None:
    messages = every_kind_of_message()
    await history.aadd_messages(messages)
    back = await history.aget_messages()
    assert_round_trip(back, messages)
    assert history.messages == back, "sync and async read the same session"


def test_add_message_and_order_across_calls(history: RedisChatMessageHistory) -> None:
    history.add_message(HumanMessage("one"))
    history.add_messages([AIMessage("two"), HumanMessage("three")])
    history.add_user_message("four")
    history.add_ai_message("five")
    history.add_messages([])
    assert [m.content for m in history.messages] == ["one", "two", "three", "four", "five"]


def test_a_retried_message_with_an_id_is_stored_once(history: RedisChatMessageHistory) -> None:
    message = HumanMessage("only once", id="msg-1")
    history.add_messages([message])
    history.add_messages([message, AIMessage("reply", id="msg-2")])
    assert history.messages == [message, AIMessage("reply", id="msg-2")]


# -- one call per operation, no call at construction ---------------------------------------------


def test_construction_makes_no_round_trip(client: redis.Redis, fresh_url: str) -> None:
    before_connections, before = connections(client), commandstats(client)
    histories = [
        RedisChatMessageHistory(f"s{i}", redis_url=fresh_url, ttl=60, key_prefix="p:")
        for i in range(5)
    ]
    for history in histories:
        assert history.keys
        repr(history)
    assert connections(client) == before_connections
    assert delta(before, commandstats(client)) == {}


def test_histories_of_one_url_share_one_client_and_one_connection(
    client: redis.Redis, fresh_url: str
) -> None:
    before = connections(client)
    first = RedisChatMessageHistory("a", redis_url=fresh_url)
    second = RedisChatMessageHistory("b", redis_url=fresh_url)
    assert first.redis_client is second.redis_client
    for _ in range(3):
        first.add_messages([HumanMessage("x")])
        assert len(second) == 0
        assert RedisChatMessageHistory("c", redis_url=fresh_url).messages == []
    assert connections(client) - before == 1


async def test_async_histories_of_one_url_share_one_connection(
    client: redis.Redis, fresh_url: str
) -> None:
    before = connections(client)
    for i in range(3):
        history = RedisChatMessageHistory(f"s{i}", redis_url=fresh_url)
        await history.aadd_messages([HumanMessage("x")])
        assert await history.alen() == 1
    assert connections(client) - before == 1


@pytest.mark.parametrize("count", [1, 3, 250])
def test_add_messages_is_one_fcall_whatever_the_count(
    client: redis.Redis, history: RedisChatMessageHistory, count: int
) -> None:
    len(history)  # warm-up: library checked and loaded
    before = commandstats(client)
    history.add_messages([HumanMessage(f"m{i}") for i in range(count)])
    assert delta(before, commandstats(client)) == {"fcall": 1}
    assert len(history) == count


@pytest.mark.parametrize("count", [1, 250])
async def test_aadd_messages_is_one_fcall_whatever_the_count(
    client: redis.Redis, history: RedisChatMessageHistory, count: int
) -> None:
    await history.alen()
    before = commandstats(client)
    await history.aadd_messages([HumanMessage(f"m{i}") for i in range(count)])
    assert delta(before, commandstats(client)) == {"fcall": 1}


def test_reads_are_one_fcall_ro_each(client: redis.Redis, history: RedisChatMessageHistory) -> None:
    history.add_messages([HumanMessage("hello there")])
    for read in (
        lambda: history.messages,
        lambda: len(history),
        lambda: history.search_messages("hello"),
    ):
        before = commandstats(client)
        read()
        assert delta(before, commandstats(client)) == {"fcall_ro": 1}
    before = commandstats(client)
    history.clear()
    assert delta(before, commandstats(client)) == {"fcall": 1}


def conversation(redis_url: str) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    model = FakeListChatModel(responses=["first answer", "second answer", "third answer"])
    return RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: RedisChatMessageHistory(session_id, redis_url=redis_url, ttl=600),
        input_messages_key="question",
        history_messages_key="history",
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_runnable_with_message_history_turn_costs_two_fcalls(
    client: redis.Redis, redis_url: str
) -> None:
    chain = conversation(redis_url)
    config = {"configurable": {"session_id": "chat-1"}}
    chain.invoke({"question": "first?"}, config=config)  # warm-up
    before = commandstats(client)
    answer = chain.invoke({"question": "second?"}, config=config)
    assert answer.content == "second answer"
    assert delta(before, commandstats(client)) == {"fcall": 1, "fcall_ro": 1}
    stored = RedisChatMessageHistory("chat-1", redis_url=redis_url).messages
    assert [(m.type, m.content) for m in stored] == [
        ("human", "first?"),
        ("ai", "first answer"),
        ("human", "second?"),
        ("ai", "second answer"),
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_runnable_with_message_history_turn_costs_two_fcalls_async(
    client: redis.Redis, redis_url: str
) -> None:
    chain = conversation(redis_url)
    config = {"configurable": {"session_id": "chat-2"}}
    await chain.ainvoke({"question": "first?"}, config=config)
    before = commandstats(client)
    answer = await chain.ainvoke({"question": "second?"}, config=config)
    assert answer.content == "second answer"
    assert delta(before, commandstats(client)) == {"fcall": 1, "fcall_ro": 1}
    stored = await RedisChatMessageHistory("chat-2", redis_url=redis_url).aget_messages()
    assert [m.content for m in stored] == ["first?", "first answer", "second?", "second answer"]


# -- TTL -----------------------------------------------------------------------------------------


def test_ttl_is_applied_to_the_session_and_renewed_by_each_append(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("ttl", redis_url=redis_url, ttl=100)
    history.add_messages([HumanMessage("hi", id="m1")])
    stream, _, ids = history.keys
    for key in (stream, ids):
        assert 95_000 < client.pttl(key) <= 100_000
        client.pexpire(key, 3_000)
    history.add_messages([AIMessage("hello")])
    for key in (stream, ids):
        assert 95_000 < client.pttl(key) <= 100_000


async def test_ttl_is_applied_by_aadd_messages(client: redis.Redis, redis_url: str) -> None:
    history = RedisChatMessageHistory("ttl", redis_url=redis_url, ttl=100)
    await history.aadd_messages([HumanMessage("hi")])
    assert 95_000 < client.pttl(history.keys[0]) <= 100_000


def test_no_ttl_keeps_the_session(client: redis.Redis, redis_url: str) -> None:
    for ttl in (None, 0):
        history = RedisChatMessageHistory(f"keep-{ttl}", redis_url=redis_url, ttl=ttl)
        history.add_messages([HumanMessage("hi")])
        assert client.ttl(history.keys[0]) == -1


# -- session ids and keys ------------------------------------------------------------------------

AWKWARD_SESSIONS = [
    ("chat:", "a"),
    ("chat:", "a}"),
    ("chat:", "{a}"),
    ("chat:", "a{"),
    ("chat:", "{"),
    ("chat:", "}"),
    ("chat:", "}{"),
    ("chat:", "%"),
    ("chat:", "%7B"),
    ("chat:", "%7Ba"),
    ("chat:", "%257B"),
    ("chat:", "%7D"),
    ("chat:", "a:b"),
    ("chat:", "a}:m"),
    ("chat:", "a\nb"),
    ("chat:", "a b"),
    ("chat:", "ünï😀"),
    ("chat:", "user_123"),
    ("chat:a", "b"),
    ("chat:", "ab"),
    ("chat:x", "a"),
    ("", "chat:a"),
    ("", "a"),
    ("a", "a"),
]


def test_session_ids_never_collide_and_stay_separate(redis_url: str) -> None:
    histories = [
        RedisChatMessageHistory(session, redis_url=redis_url, key_prefix=prefix)
        for prefix, session in AWKWARD_SESSIONS
    ]
    all_keys = [key for history in histories for key in history.keys]
    assert len(set(all_keys)) == len(all_keys) == 3 * len(AWKWARD_SESSIONS)
    for index, history in enumerate(histories):
        history.add_messages([HumanMessage(f"message of {index}"), AIMessage(str(index))])
    for index, history in enumerate(histories):
        assert [m.content for m in history.messages] == [f"message of {index}", str(index)]


@pytest.mark.parametrize(("prefix", "session"), AWKWARD_SESSIONS)
def test_all_keys_of_a_session_are_in_one_cluster_slot(prefix: str, session: str) -> None:
    keys = RedisChatMessageHistory(session, redis_url="redis://unused", key_prefix=prefix).keys
    assert [key.removeprefix(keys[0][:-2]) for key in keys] == [":m", ":x", ":i"]
    assert len({key_slot(key.encode()) for key in keys}) == 1


def test_default_key_layout(redis_url: str) -> None:
    history = RedisChatMessageHistory("user_123", redis_url=redis_url)
    assert history.keys == ("chat:{user_123}:m", "chat:{user_123}:x", "chat:{user_123}:i")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"session_id": ""},
        {"session_id": None},
        {"session_id": 7},
        {"session_id": "ok", "key_prefix": "chat{"},
        {"session_id": "ok", "key_prefix": "}chat:"},
        {"session_id": "ok", "key_prefix": "{x}:"},
        {"session_id": "ok", "ttl": -1},
        {"session_id": "ok", "ttl": 1.5},
        {"session_id": "ok", "ttl": "60"},
        {"session_id": "ok", "ttl": True},
    ],
    ids=repr,
)
def test_bad_construction_raises_invalid_input(
    client: redis.Redis, redis_url: str, kwargs: dict[str, Any]
) -> None:
    before = connections(client)
    with pytest.raises(InvalidInputError) as info:
        RedisChatMessageHistory(redis_url=redis_url, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ChatHistoryError)
    assert info.value.code in {"BADKEYS", "BADARG"}
    assert connections(client) == before


def test_empty_session_id_and_braces_in_prefix_are_badkeys(redis_url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        RedisChatMessageHistory("", redis_url=redis_url)
    assert info.value.code == "BADKEYS"
    with pytest.raises(InvalidInputError) as info:
        RedisChatMessageHistory("s", redis_url=redis_url, key_prefix="a{b}")
    assert info.value.code == "BADKEYS"


# -- the library on the server -------------------------------------------------------------------


def test_library_is_loaded_on_first_use(client: redis.Redis, fresh_url: str) -> None:
    assert client.function_list() == []
    history = RedisChatMessageHistory("s", redis_url=fresh_url)
    assert history.messages == []
    assert server_version(client) == LIBRARY_VERSION
    assert library_code(client) == library_source()


async def test_library_is_loaded_on_first_async_use(client: redis.Redis, fresh_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh_url)
    await history.aadd_messages([HumanMessage("hi")])
    assert server_version(client) == LIBRARY_VERSION
    assert [m.content for m in await history.aget_messages()] == ["hi"]


def test_library_is_reloaded_after_function_flush(client: redis.Redis, redis_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    history.add_messages([HumanMessage("before flush")])
    client.function_flush()
    history.add_messages([HumanMessage("after flush")])
    client.function_flush()
    assert [m.content for m in history.messages] == ["before flush", "after flush"]
    client.function_flush()
    assert len(history) == 2
    assert server_version(client) == LIBRARY_VERSION


async def test_library_is_reloaded_after_function_flush_async(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    await history.aadd_messages([HumanMessage("before flush")])
    client.function_flush()
    await history.aadd_messages([HumanMessage("after flush")])
    client.function_flush()
    assert [m.content for m in await history.aget_messages()] == ["before flush", "after flush"]


def test_an_older_library_is_upgraded(client: redis.Redis, fresh_url: str) -> None:
    client.function_load(source_with_version("0.9.0"))
    history = RedisChatMessageHistory("s", redis_url=fresh_url)
    history.add_messages([HumanMessage("hi")])
    assert server_version(client) == LIBRARY_VERSION
    assert library_code(client) == library_source()


async def test_an_older_library_is_upgraded_async(client: redis.Redis, fresh_url: str) -> None:
    client.function_load(source_with_version("0.9.0"))
    assert await RedisChatMessageHistory("s", redis_url=fresh_url).alen() == 0
    assert server_version(client) == LIBRARY_VERSION


def test_a_newer_major_library_is_refused_and_kept(client: redis.Redis, fresh_url: str) -> None:
    newer = source_with_version("2.0.0")
    client.function_load(newer)
    history = RedisChatMessageHistory("s", redis_url=fresh_url)
    for operation in (
        lambda: history.messages,
        lambda: history.add_messages([HumanMessage("hi")]),
        lambda: len(history),
    ):
        with pytest.raises(LibraryIncompatibleError) as info:
            operation()
        assert isinstance(info.value, LibraryError)
        assert "2.0.0" in str(info.value) and LIBRARY_VERSION in str(info.value)
    assert server_version(client) == "2.0.0"
    assert library_code(client) == newer
    assert client.dbsize() == 0


async def test_a_newer_major_library_is_refused_and_kept_async(
    client: redis.Redis, fresh_url: str
) -> None:
    newer = source_with_version("2.0.0")
    client.function_load(newer)
    with pytest.raises(LibraryIncompatibleError):
        await RedisChatMessageHistory("s", redis_url=fresh_url).aadd_messages([HumanMessage("x")])
    assert library_code(client) == newer
    assert client.dbsize() == 0


def test_a_newer_minor_library_is_used_as_is(client: redis.Redis, fresh_url: str) -> None:
    newer = source_with_version("1.99.0")
    client.function_load(newer)
    history = RedisChatMessageHistory("s", redis_url=fresh_url)
    history.add_messages([HumanMessage("hi")])
    assert [m.content for m in history.messages] == ["hi"]
    assert server_version(client) == "1.99.0"
    assert library_code(client) == newer


# -- errors --------------------------------------------------------------------------------------


@pytest.fixture
def closed_url() -> str:
    return f"redis://u:s3cret@127.0.0.1:{free_port()}"


def assert_unavailable(error: RedisUnavailableError, url: str) -> None:
    port = url.rsplit(":", 1)[1]
    assert isinstance(error, ChatHistoryError) and isinstance(error, ConnectionError)
    assert f"127.0.0.1:{port}" in str(error)
    for link in exception_chain(error):
        assert "s3cret" not in str(link) and "s3cret" not in repr(link)


def exception_chain(error: BaseException) -> list[BaseException]:
    """The error and every cause and context behind it (each once, even in a cycle)."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        link = todo.pop()
        if any(link is known for known in seen):
            continue
        seen.append(link)
        todo += [e for e in (link.__cause__, link.__context__) if e is not None]
    return seen


def test_unreachable_server_names_the_address_and_hides_the_password(closed_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=closed_url)
    for operation in (
        lambda: history.messages,
        lambda: history.add_messages([HumanMessage("x")]),
        lambda: history.clear(),
    ):
        with pytest.raises(RedisUnavailableError) as info:
            operation()
        assert_unavailable(info.value, closed_url)


def test_unreachable_server_error_keeps_the_redis_error_as_its_cause(closed_url: str) -> None:
    with pytest.raises(RedisUnavailableError) as info:
        len(RedisChatMessageHistory("s", redis_url=closed_url))
    assert info.value.__cause__ is not info.value
    assert isinstance(info.value.__cause__, redis.ConnectionError)


async def test_unreachable_server_async(closed_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=closed_url)
    with pytest.raises(RedisUnavailableError) as info:
        await history.aget_messages()
    assert_unavailable(info.value, closed_url)
    with pytest.raises(RedisUnavailableError) as info:
        await history.aadd_messages([HumanMessage("x")])
    assert_unavailable(info.value, closed_url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:s3cret@127.0.0.1:6390/0",
        "redis://:s3cret@127.0.0.1:6390",
        "redis://127.0.0.1:6390/0?password=s3cret",
        "rediss://u:s3cret@[::1]:6390/2?ssl_cert_reqs=none",
    ],
)
def test_repr_hides_the_password(url: str) -> None:
    text = repr(RedisChatMessageHistory("s", redis_url=url, ttl=5))
    assert "s3cret" not in text
    assert "127.0.0.1:6390" in text or "[::1]:6390" in text
    assert "'s'" in text


def test_oversized_message_is_invalid_input_and_writes_nothing(
    client: redis.Redis, history: RedisChatMessageHistory
) -> None:
    history.add_messages([HumanMessage("kept")])
    with pytest.raises(InvalidInputError) as info:
        history.add_messages([HumanMessage("ok"), HumanMessage("x" * (1024 * 1024 + 1))])
    assert isinstance(info.value, ValueError)
    assert info.value.code == "TOOBIG"
    assert "message 2" in str(info.value)
    assert len(history) == 1


async def test_oversized_message_is_invalid_input_async(history: RedisChatMessageHistory) -> None:
    with pytest.raises(InvalidInputError) as info:
        await history.aadd_messages([HumanMessage("x" * (1024 * 1024 + 1))])
    assert info.value.code == "TOOBIG"
    assert await history.alen() == 0


def test_too_many_messages_in_one_call_is_invalid_input(history: RedisChatMessageHistory) -> None:
    with pytest.raises(InvalidInputError) as info:
        history.add_messages([HumanMessage("x")] * 10_001)
    assert info.value.code == "TOOBIG"
    assert len(history) == 0


@pytest.mark.parametrize("limit", [-1, 1001])
def test_bad_search_limit_is_invalid_input(history: RedisChatMessageHistory, limit: int) -> None:
    with pytest.raises(InvalidInputError) as info:
        history.search_messages("x", limit=limit)
    assert info.value.code == "BADARG"


def test_unencodable_text_is_invalid_input(history: RedisChatMessageHistory) -> None:
    with pytest.raises(InvalidInputError):
        history.add_messages([HumanMessage("half an emoji \ud83d")])


# -- search, len, clear --------------------------------------------------------------------------


def test_search_messages_returns_dicts_oldest_first(history: RedisChatMessageHistory) -> None:
    start = datetime.now(timezone.utc)
    history.add_messages(
        [
            HumanMessage("Book a table in Paris"),
            AIMessage("Which day for PARIS?"),
            HumanMessage("Friday"),
            AIMessage([{"type": "text", "text": "Booked: Paris, Friday"}]),
        ]
    )
    hits = history.search_messages("paris")
    assert [hit["type"] for hit in hits] == ["human", "ai", "ai"]
    assert [hit["content"] for hit in hits] == [
        "Book a table in Paris",
        "Which day for PARIS?",
        [{"type": "text", "text": "Booked: Paris, Friday"}],
    ]
    for hit in hits:
        assert {"id", "type", "content", "timestamp"} <= hit.keys()
        assert re.fullmatch(r"\d+-\d+", hit["id"])
        assert isinstance(hit["timestamp"], datetime)
        assert abs(hit["timestamp"] - start) < timedelta(seconds=30)
        assert hit["timestamp"] == datetime.fromtimestamp(
            int(hit["id"].split("-")[0]) / 1000, tz=timezone.utc
        )
    assert [hit["content"] for hit in history.search_messages("paris FRIDAY")] == [
        [{"type": "text", "text": "Booked: Paris, Friday"}]
    ]
    assert len(history.search_messages("paris", limit=1)) == 1
    assert history.search_messages("london") == []
    assert history.search_messages("") == []


async def test_async_twins(history: RedisChatMessageHistory) -> None:
    other = RedisChatMessageHistory("session-2", redis_url=history.redis_url)
    await history.aadd_messages([HumanMessage("Hello async"), AIMessage("Hi there")])
    await other.aadd_messages([HumanMessage("Hello elsewhere")])
    assert await history.alen() == 2
    assert [m.content for m in await history.aget_messages()] == ["Hello async", "Hi there"]
    hits = await history.asearch_messages("hello")
    assert [(hit["type"], hit["content"]) for hit in hits] == [("human", "Hello async")]
    assert len(await history.asearch_messages("hi", limit=0)) == 0
    await history.aclear()
    assert await history.alen() == 0
    assert await history.aget_messages() == []
    assert await other.alen() == 1


def test_len_and_clear_delete_every_key(
    client: redis.Redis, history: RedisChatMessageHistory
) -> None:
    assert len(history) == 0
    history.add_messages([HumanMessage("a", id="1"), AIMessage("b", id="2")])
    assert len(history) == 2
    assert client.exists(*history.keys) == 3  # messages, index, client ids
    history.clear()
    assert len(history) == 0
    assert client.exists(*history.keys) == 0
    history.clear()


def test_async_clients_of_closed_event_loops_are_released(
    client: redis.Redis, redis_url: str
) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    asyncio.run(history.alen())  # the library is checked and loaded
    gc.collect()
    before = int(client.info("clients")["connected_clients"])
    for _ in range(5):
        assert asyncio.run(history.alen()) == 0
    gc.collect()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        leaked = int(client.info("clients")["connected_clients"]) - before
        if leaked <= 1:
            break
        time.sleep(0.05)
    assert leaked <= 1, f"{leaked} connections of closed event loops are still open"


async def test_a_given_sync_client_serves_sync_and_async_calls(redis_url: str) -> None:
    given = redis.Redis.from_url(redis_url)
    history = RedisChatMessageHistory("s", redis_url="redis://nowhere:1", redis_client=given)
    history.add_messages([HumanMessage("via the given client")])
    assert history.redis_client is given
    assert [m.content for m in history.messages] == ["via the given client"]
    assert await history.alen() == 1
    given.close()


def test_messages_written_by_another_client_are_read(
    loaded: redis.Redis, history: RedisChatMessageHistory
) -> None:
    written = [
        '{"type":"human","data":{"content":"from redis-cli"}}',
        '{"type":"generic","data":{"content":"from LangChain.js","role":"critic"}}',
        '{"type":"banana","data":{"content":"an invented type"}}',
    ]
    loaded.fcall("chathist_append", 3, *history.keys, "MESSAGES", *written)
    assert history.messages == [
        HumanMessage("from redis-cli"),
        ChatMessage("from LangChain.js", role="critic"),
        ChatMessage("an invented type", role="banana"),
    ]


def test_search_pages_before_a_time(history: RedisChatMessageHistory) -> None:
    history.add_messages([HumanMessage("note one")])
    time.sleep(0.005)
    history.add_messages([HumanMessage("note two")])
    second = history.search("note two")[0]
    older = history.search("note", before=second.timestamp)
    assert [hit.message.content for hit in older] == ["note one"]
    with pytest.raises(InvalidInputError):
        history.search("note", before=datetime(2030, 1, 1))
