"""The redis-chat-history command, run through click's CliRunner against real servers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, HumanMessage

from conftest import load_library_as
from redis_chat_history import LIBRARY_VERSION, RedisChatMessageHistory
from redis_chat_history.cli import main
from redis_chat_history.local_server import free_port

SECRET = "s3cret"


def invoke(url: str | None, *args: str, env: dict[str, str | None] | None = None) -> Result:
    """Run the command with ``--url url`` (None: no --url) and $REDIS_URL unset unless given."""
    options = ["--url", url] if url is not None else []
    environment: dict[str, str | None] = {"REDIS_URL": None, **(env or {})}
    return CliRunner().invoke(main, [*options, *args], env=environment)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def history(redis_url: str) -> RedisChatMessageHistory:
    """Session "s1" holding three messages, written through the package's history class."""
    session = RedisChatMessageHistory("s1", redis_url=redis_url)
    session.add_messages(
        [
            HumanMessage("Hello, I am Ada"),
            AIMessage("Hi Ada! How is the weather?"),
            HumanMessage("Sunny weather today"),
        ]
    )
    return session


# -- load and status ---------------------------------------------------------------


def test_load_twice_is_idempotent(redis_url: str, client: redis.Redis) -> None:
    port = redis_url.rsplit(":", 1)[1]
    for _ in range(2):
        result = invoke(redis_url, "load")
        assert result.exit_code == 0, result.output
        assert result.stdout == f"loaded chathist {LIBRARY_VERSION} on 127.0.0.1:{port}\n"
    assert [entry[1] for entry in client.function_list()] == [b"chathist"]
    assert client.fcall_ro("chathist_version", 0) == LIBRARY_VERSION.encode()


def test_status_before_and_after_load(redis_url: str) -> None:
    before = invoke(redis_url, "status")
    assert before.exit_code == 1
    assert "not loaded" in before.stdout and "redis-chat-history load" in before.stdout
    report = json.loads(invoke(redis_url, "status", "--json").stdout)
    assert report["loaded"] is False and report["compatible"] is False
    assert report["state"] == "missing" and report["version"] is None

    assert invoke(redis_url, "load").exit_code == 0

    after = invoke(redis_url, "status")
    assert after.exit_code == 0
    assert f"chathist {LIBRARY_VERSION} is loaded" in after.stdout
    as_json = invoke(redis_url, "status", "--json")
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert report["loaded"] is True and report["compatible"] is True and report["state"] == "ok"
    assert report["version"] == report["expected"] == LIBRARY_VERSION


@pytest.mark.parametrize(
    ("version", "state", "advice"),
    [("0.9.0", "upgrade", "redis-chat-history load"), ("2.0.0", "incompatible", "upgrade")],
)
def test_status_of_another_version(
    client: redis.Redis, redis_url: str, version: str, state: str, advice: str
) -> None:
    load_library_as(client, version)
    result = invoke(redis_url, "status")
    assert result.exit_code == 1
    assert version in result.stdout and advice in result.stdout
    report = json.loads(invoke(redis_url, "status", "--json").stdout)
    assert report["state"] == state and report["version"] == version


def test_load_leaves_a_newer_library_unless_forced(client: redis.Redis, redis_url: str) -> None:
    load_library_as(client, "1.99.0")
    refused = invoke(redis_url, "load")
    assert refused.exit_code == 1
    assert "1.99.0" in refused.output and "--force" in refused.output
    assert client.fcall_ro("chathist_version", 0) == b"1.99.0"

    forced = invoke(redis_url, "load", "--force")
    assert forced.exit_code == 0, forced.output
    assert client.fcall_ro("chathist_version", 0) == LIBRARY_VERSION.encode()


def test_status_help_documents_exit_status() -> None:
    result = invoke(None, "status", "--help")
    assert result.exit_code == 0
    assert "Exit status" in result.stdout and "0  the library is loaded" in result.stdout


# -- sessions ------------------------------------------------------------------------


def test_show_prints_messages_oldest_first(history: RedisChatMessageHistory) -> None:
    result = invoke(history.redis_url, "show", "s1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("] human: Hello, I am Ada")
    assert lines[1].endswith("] ai: Hi Ada! How is the weather?")
    assert lines[2].endswith("] human: Sunny weather today")

    latest = invoke(history.redis_url, "show", "s1", "--limit", "2")
    assert latest.stdout.splitlines() == lines[1:]


def test_show_json_lines(history: RedisChatMessageHistory) -> None:
    result = invoke(history.redis_url, "show", "s1", "--json")
    assert result.exit_code == 0, result.output
    records = json_lines(result.stdout)
    assert [(r["type"], r["content"]) for r in records] == [
        (message.type, message.content) for message in history.messages
    ]
    for record in records:
        assert set(record) == {"id", "timestamp", "type", "content"}
        assert isinstance(record["timestamp"], str)
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None
        assert isinstance(record["id"], str) and record["id"].split("-")[0].isdigit()


def test_show_other_prefix_and_empty_session(redis_url: str) -> None:
    RedisChatMessageHistory("s2", redis_url=redis_url, key_prefix="app:").add_message(
        HumanMessage("elsewhere")
    )
    assert invoke(redis_url, "show", "s2").stdout == ""
    empty = invoke(redis_url, "show", "s2")
    assert empty.exit_code == 0 and "has no messages" in empty.stderr
    shown = invoke(redis_url, "show", "s2", "--prefix", "app:")
    assert shown.stdout.endswith("] human: elsewhere\n")


def test_search(history: RedisChatMessageHistory) -> None:
    result = invoke(history.redis_url, "search", "s1", "WEATHER")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2

    latest = json_lines(
        invoke(history.redis_url, "search", "s1", "weather", "--limit", "1", "--json").stdout
    )
    assert [(r["type"], r["content"]) for r in latest] == [("human", "Sunny weather today")]

    nothing = invoke(history.redis_url, "search", "s1", "snow")
    assert nothing.exit_code == 0 and nothing.stdout == "" and "matches" in nothing.stderr


def test_search_options(history: RedisChatMessageHistory) -> None:
    def contents(*args: str) -> list[str]:
        result = invoke(history.redis_url, "search", "s1", *args, "--json")
        assert result.exit_code == 0, result.output
        return [record["content"] for record in json_lines(result.stdout)]

    assert contents("weather ada", "--any") == [
        "Hi Ada! How is the weather?",
        "Sunny weather today",
        "Hello, I am Ada",
    ]
    assert contents("weather", "--type", "ai") == ["Hi Ada! How is the weather?"]
    newest = json_lines(invoke(history.redis_url, "search", "s1", "weather", "--json").stdout)[-1]
    assert contents("weather", "--before", newest["id"]) == ["Hi Ada! How is the weather?"]
    assert contents('"weather today"') == ["Sunny weather today"]


def test_reindex_builds_the_index_of_an_unindexed_session(redis_url: str) -> None:
    history = RedisChatMessageHistory("plain", redis_url=redis_url, search_index=False)
    history.add_messages([HumanMessage("one"), AIMessage("two")])
    result = invoke(redis_url, "reindex", "plain")
    assert result.exit_code == 0 and result.stdout == "indexed 2 messages of session 'plain'\n"
    assert [hit.message.content for hit in history.search("two")] == ["two"]


def test_clear_reports_count_and_deletes(history: RedisChatMessageHistory) -> None:
    result = invoke(history.redis_url, "clear", "s1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted 3 messages from session 's1'\n"
    assert history.messages == []
    again = invoke(history.redis_url, "clear", "s1", "--yes")
    assert again.stdout == "deleted 0 messages from session 's1'\n"


def test_bad_session_or_prefix_is_a_usage_error(redis_url: str) -> None:
    assert invoke(redis_url, "show", "").exit_code == 2
    braces = invoke(redis_url, "show", "s1", "--prefix", "a{b}")
    assert braces.exit_code == 2 and "key_prefix" in braces.output


def test_message_of_a_type_langchain_lacks_is_shown(raw: Any, redis_url: str) -> None:
    stored = json.dumps({"type": "user", "data": {"content": "from another client"}})
    raw.call("append", "MESSAGES", stored)
    result = invoke(redis_url, "show", "s1")
    assert result.exit_code == 0, result.output
    assert "from another client" in result.output


def test_stream_entry_that_is_not_json_is_reported(loaded: Any, redis_url: str) -> None:
    loaded.xadd("chat:{s1}:m", {"m": "not json"})
    result = invoke(redis_url, "show", "s1")
    assert result.exit_code == 1
    assert "not a LangChain message" in result.output and "Traceback" not in result.output


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["load"], ["status"], ["status", "--json"], ["show", "s1"], ["search", "s1", "x"],
     ["clear", "s1"]],
)  # fmt: skip
def test_unreachable_server_is_one_actionable_line(command: list[str]) -> None:
    port = free_port()
    result = invoke(f"redis://user:{SECRET}@127.0.0.1:{port}", *command)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert f"no Redis answered at 127.0.0.1:{port}" in result.stderr
    assert "--url" in result.stderr
    assert "Traceback" not in result.output
    assert SECRET not in result.output


def test_wrong_credentials_do_not_print_the_password(redis_url: str) -> None:
    result = invoke(redis_url.replace("redis://", f"redis://user:{SECRET}@"), "status")
    assert result.exit_code == 1
    assert "refused the credentials" in result.stderr
    assert SECRET not in result.output


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@127.0.0.1:notaport",
        f"http://user:{SECRET}@127.0.0.1:6379",
        f"ftp://127.0.0.1/?password={SECRET}",
    ],
)
def test_invalid_url_is_reported_without_the_password(url: str) -> None:
    result = invoke(url, "status")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "invalid Redis URL" in result.stderr and "Traceback" not in result.output
    assert SECRET not in result.output


def test_url_comes_from_redis_url(redis_url: str) -> None:
    result = invoke(None, "load", env={"REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert redis_url.removeprefix("redis://") in result.stdout


@pytest.mark.parametrize(
    ("options", "env", "expected"),
    [
        (["--url", "redis://example:1"], {}, "redis://example:1"),
        ([], {"REDIS_URL": "redis://example:2"}, "redis://example:2"),
        ([], {}, None),
    ],
)
def test_demo_gets_the_url_only_when_chosen(
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    env: dict[str, str | None],
    expected: str | None,
) -> None:
    from redis_chat_history import demo

    seen: list[str | None] = []
    monkeypatch.setattr(demo, "run_demo", seen.append)
    result = CliRunner().invoke(main, [*options, "demo"], env={"REDIS_URL": None, **env})
    assert result.exit_code == 0, result.output
    assert seen == [expected]


# -- options before or after the command -------------------------------------------------


def test_url_prefix_and_retries_are_accepted_after_the_command(redis_url: str) -> None:
    RedisChatMessageHistory("s", redis_url=redis_url, key_prefix="app:").add_user_message("hi")
    after = invoke(None, "show", "s", "--url", redis_url, "--prefix", "app:", "--retries", "0")
    before = invoke(None, "--url", redis_url, "--prefix", "app:", "--retries", "0", "show", "s")
    assert after.exit_code == 0, after.output
    assert after.stdout == before.stdout
    assert after.stdout.endswith("] human: hi\n")
    loaded = invoke(None, "load", "--url", redis_url)
    assert loaded.exit_code == 0, loaded.output
    assert loaded.stdout.startswith(f"loaded chathist {LIBRARY_VERSION} on ")


def test_an_option_after_the_command_wins_over_the_one_before(redis_url: str) -> None:
    RedisChatMessageHistory("s", redis_url=redis_url, key_prefix="b:").add_user_message("in b")
    silent = f"redis://127.0.0.1:{free_port()}"
    result = invoke(silent, "show", "s", "--url", redis_url, "--prefix", "b:")
    assert result.exit_code == 0, result.output
    assert "in b" in result.stdout
    from_env = invoke(None, "status", "--url", silent, env={"REDIS_URL": redis_url})
    assert from_env.exit_code == 1
    assert f"127.0.0.1:{silent.rsplit(':', 1)[1]}" in from_env.stderr


def test_url_after_the_command_counts_as_chosen_for_the_demo(redis_url: str) -> None:
    silent = f"redis://127.0.0.1:{free_port()}"
    result = invoke(None, "demo", "--url", silent)
    assert result.exit_code == 1
    assert "no Redis answered" in result.stderr


def test_an_empty_search_query_is_a_usage_error(
    redis_url: str, history: RedisChatMessageHistory
) -> None:
    for query in ("", "   "):
        result = invoke(redis_url, "search", "s1", query)
        assert result.exit_code == 2, result.output
        assert "QUERY" in result.stderr and "empty" in result.stderr
