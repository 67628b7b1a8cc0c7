"""The commands that manage conversations: list, export and tail, against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, HumanMessage

from redis_chat_history import RedisChatMessageHistory, cli_sessions
from redis_chat_history import _protocol as protocol
from redis_chat_history.cli import main

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], env={"REDIS_URL": None})


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def stored_dicts(client: redis.Redis, history: RedisChatMessageHistory) -> list[dict[str, Any]]:
    """What the session's stream holds, read with raw XRANGE: (id, stored dict) per message."""
    return [
        {"id": entry_id.decode(), "message": json.loads(fields[b"m"])}
        for entry_id, fields in client.xrange(history.keys[0])
    ]


@pytest.fixture
def sessions(redis_url: str) -> dict[str, RedisChatMessageHistory]:
    """Three sessions under "chat:" (odd ids included) and one under another prefix."""
    made = {
        "alice": RedisChatMessageHistory("alice", redis_url=redis_url),
        "b{r}ace%7B": RedisChatMessageHistory("b{r}ace%7B", redis_url=redis_url),
        "ünï code": RedisChatMessageHistory("ünï code", redis_url=redis_url),
        "other": RedisChatMessageHistory("other", redis_url=redis_url, key_prefix="chat:x"),
    }
    made["alice"].add_messages([HumanMessage("Hi, I am Alice"), AIMessage("Hello Alice!")])
    made["b{r}ace%7B"].add_messages([HumanMessage("braces")])
    made["ünï code"].add_messages([HumanMessage(f"n{i}") for i in range(3)])
    made["other"].add_messages([HumanMessage("elsewhere")])
    return made


# -- list ----------------------------------------------------------------------------------------


def test_list_is_a_table_of_sessions_under_the_prefix(
    redis_url: str, client: redis.Redis, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    client.set("chat:{not-a-stream}:m", "x")  # matches the pattern, but is no session
    client.xadd("chat:{a}:x:m", {"m": "{}"})  # a stream whose tag is not a session's
    result = invoke(redis_url, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "MESSAGES", "LAST", "ACTIVITY", "(UTC)"]
    assert [line[: line.index("  ")] for line in lines[1:]] == ["alice", "b{r}ace%7B", "ünï code"]
    last = sessions["alice"].latest(1)[0].timestamp
    assert lines[1].split()[1:] == ["2", f"{last:%Y-%m-%d}", f"{last:%H:%M:%S}"]
    assert [line.split()[-3] for line in lines[1:]] == ["2", "1", "3"]


def test_list_json_for_scripts(
    redis_url: str, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    result = invoke(redis_url, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.stdout)
    assert [row["session"] for row in rows] == ["alice", "b{r}ace%7B", "ünï code"]
    alice = sessions["alice"].latest(1)[0]
    assert rows[0] == {
        "session": "alice",
        "messages": 2,
        "last_id": alice.id,
        "last_activity": alice.timestamp.isoformat(timespec="milliseconds"),
    }
    other = json_lines(invoke(redis_url, "list", "--json", "--prefix", "chat:x").stdout)
    assert [(row["session"], row["messages"]) for row in other] == [("other", 1)]


def test_list_with_glob_characters_in_the_prefix(redis_url: str) -> None:
    RedisChatMessageHistory("s", redis_url=redis_url, key_prefix="a*[b]?:").add_user_message("x")
    RedisChatMessageHistory("t", redis_url=redis_url, key_prefix="aZ[b]?:").add_user_message("x")
    RedisChatMessageHistory("u", redis_url=redis_url, key_prefix="a*b?:").add_user_message("x")
    rows = json_lines(invoke(redis_url, "list", "--json", "--prefix", "a*[b]?:").stdout)
    assert [row["session"] for row in rows] == ["s"]


def test_list_of_no_sessions_says_so_on_stderr(redis_url: str) -> None:
    result = invoke(redis_url, "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no sessions" in result.stderr
    assert invoke(redis_url, "list", "--json").stdout == ""
    assert invoke(redis_url, "list", "--prefix", "a{b").exit_code == 2


def test_list_of_many_sessions_uses_batched_pipelines(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_sessions, "LIST_BATCH", 7)
    for i in range(30):
        RedisChatMessageHistory(f"s{i:02}", redis_url=redis_url).add_messages(
            [HumanMessage("x")] * (i % 4 + 1)
        )
    rows = json_lines(invoke(redis_url, "list", "--json").stdout)
    assert [(row["session"], row["messages"]) for row in rows] == [
        (f"s{i:02}", i % 4 + 1) for i in range(30)
    ]


# -- export --------------------------------------------------------------------------------------


def test_export_writes_one_json_line_per_message(
    redis_url: str, client: redis.Redis, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    alice = sessions["alice"]
    alice.add_messages(
        [
            AIMessage(
                "",
                id="run-1",
                tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1", "type": "tool_call"}],
                usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
            )
        ]
    )
    result = invoke(redis_url, "export", "alice")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    assert [{"id": line["id"], "message": line["message"]} for line in lines] == stored_dicts(
        client, alice
    )
    for line, record in zip(lines, alice.page(), strict=True):
        assert line["session"] == "alice"
        assert line["timestamp"] == record.timestamp.isoformat(timespec="milliseconds")
    assert result.stderr == "exported 3 messages from 1 session\n"


def test_export_all_sessions_under_a_prefix(
    redis_url: str, client: redis.Redis, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    result = invoke(redis_url, "export", "--all")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    expected = [
        {"session": name, **entry}
        for name in ("alice", "b{r}ace%7B", "ünï code")
        for entry in stored_dicts(client, sessions[name])
    ]
    assert [{key: line[key] for key in ("session", "id", "message")} for line in lines] == expected
    assert "from 3 sessions" in result.stderr


def test_export_pages_through_a_long_session(
    redis_url: str, client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_sessions, "EXPORT_PAGE", 4)
    history = RedisChatMessageHistory("long", redis_url=redis_url)
    history.add_messages([HumanMessage(f"m{i}") for i in range(13)])
    history.add_messages([HumanMessage(f"m{i}") for i in range(13, 16)])
    out = tmp_path / "long.jsonl"
    result = invoke(redis_url, "export", "long", "-o", str(out), "--progress")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = json_lines(out.read_text(encoding="utf-8"))
    assert [line["message"]["data"]["content"] for line in lines] == [f"m{i}" for i in range(16)]
    assert [line["id"] for line in lines] == [record.id for record in history.page()]
    assert "exporting" in result.stderr  # the progress bar's label (stderr is no terminal here)


def test_export_of_an_empty_session_and_usage_errors(redis_url: str) -> None:
    result = invoke(redis_url, "export", "nobody")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "exported 0 messages from 1 session\n"
    assert invoke(redis_url, "export").exit_code == 2
    assert invoke(redis_url, "export", "a", "--all").exit_code == 2
    assert invoke(redis_url, "export", "a", "--prefix", "x{").exit_code == 2


# -- tail ----------------------------------------------------------------------------------------


def tail_process(url: str, *args: str) -> subprocess.Popen[str]:
    """``redis-chat-history tail ...`` as a separate process, reading this checkout's package."""
    environment = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "PYTHONUNBUFFERED": "1"}
    environment.pop("REDIS_URL", None)
    code = "from redis_chat_history.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--url", url, "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def wait_until_following(client: redis.Redis, timeout: float = 20) -> None:
    """Return once some client is blocked in XREAD (the tail is following)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = client.client_list()
        if any(entry["cmd"] == "xread" and "b" in entry["flags"] for entry in clients):
            return
        time.sleep(0.02)
    raise AssertionError("no client started following the stream")


def test_tail_prints_the_latest_then_new_messages_as_they_arrive(
    redis_url: str, client: redis.Redis
) -> None:
    history = RedisChatMessageHistory("live", redis_url=redis_url)
    history.add_messages([HumanMessage(f"old {i}") for i in range(5)])
    process = tail_process(redis_url, "live", "-n", "2", "--count", "3", "--timeout", "20")
    try:
        assert process.stdout is not None
        first = [process.stdout.readline() for _ in range(2)]
        assert [line.rstrip("\n").split("] ", 1)[1] for line in first] == [
            "human: old 3",
            "human: old 4",
        ]
        history.add_messages([AIMessage("new 1")])
        assert process.stdout.readline().endswith("] ai: new 1\n")
        wait_until_following(client)  # blocked on XREAD again before the next append
        history.add_messages([HumanMessage("new 2"), AIMessage("new 3"), AIMessage("never")])
        rest, errors = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    assert [line.split("] ", 1)[1] for line in rest.splitlines()] == [
        "human: new 2",
        "ai: new 3",
    ]


def test_tail_from_an_id_in_json_with_a_timeout(redis_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    history.add_messages([HumanMessage(f"m{i}") for i in range(4)])
    start = history.page()[1].id
    began = time.monotonic()
    result = invoke(redis_url, "tail", "s", "--from", start, "--json", "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began >= 0.5
    records = json_lines(result.stdout)
    assert [record["content"] for record in records] == ["m2", "m3"]
    assert [record["id"] for record in records] == [record.id for record in history.page()[2:]]
    assert invoke(redis_url, "tail", "s", "--from", "nope").exit_code == 2


def test_tail_of_an_empty_session_waits_for_its_first_message(
    redis_url: str, client: redis.Redis
) -> None:
    process = tail_process(redis_url, "new", "--count", "1", "--timeout", "20")
    try:
        wait_until_following(client)
        RedisChatMessageHistory("new", redis_url=redis_url).add_ai_message("first")
        out, errors = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    assert out.endswith("] ai: first\n") and out.count("\n") == 1


def test_ctrl_c_ends_a_tail_cleanly(redis_url: str, client: redis.Redis) -> None:
    RedisChatMessageHistory("s", redis_url=redis_url).add_user_message("hello")
    process = tail_process(redis_url, "s")
    try:
        assert process.stdout is not None
        assert process.stdout.readline().endswith("] human: hello\n")
        wait_until_following(client)
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "Traceback" not in errors and errors == ""


def test_tail_reads_entries_of_both_resp_versions(redis_url: str) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url)
    history.add_messages([HumanMessage("a"), AIMessage("b")])
    for version in (2, 3):
        client = redis.Redis.from_url(redis_url, protocol=version)
        reply = client.xread({history.keys[0]: "0-0"}, count=10, block=10)
        entries = [entry for batch in cli_sessions._stream_entries(reply) for entry in batch]
        records = protocol.decode_entries(entries)
        assert [record.message.content for record in records] == ["a", "b"]
        client.close()
