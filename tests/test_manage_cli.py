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

from redis_chat_history import RedisChatMessageHistory
from redis_chat_history import _langchain as lc
from redis_chat_history.cli import _output, main
from redis_chat_history.cli import sessions as cli_sessions
from test_history import every_kind_of_message

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], env={"REDIS_URL": None})


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def listed(text: str) -> list[dict[str, Any]]:
    """The rows of ``list --json`` (streamed in SCAN order), sorted by session."""
    return sorted(json_lines(text), key=lambda row: row["session"])


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
    assert lines[0].split() == ["SESSION", "MESSAGES", "LAST", "ACTIVITY", "(UTC)", "TTL"]
    assert [line[: line.index("  ")] for line in lines[1:]] == ["alice", "b{r}ace%7B", "ünï code"]
    last = sessions["alice"].latest(1)[0].timestamp
    assert lines[1].split()[1:] == ["2", f"{last:%Y-%m-%d}", f"{last:%H:%M:%S}", "-"]
    assert [line.split()[-4] for line in lines[1:]] == ["2", "1", "3"]


def test_list_shows_the_ttl(redis_url: str, sessions: dict[str, RedisChatMessageHistory]) -> None:
    sessions["alice"].set_ttl(3 * 3600 + 5 * 60)
    sessions["ünï code"].set_ttl(42)
    lines = invoke(redis_url, "list").stdout.splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["3h05m", "-", "42s"]
    rows = listed(invoke(redis_url, "list", "--json").stdout)
    assert 3 * 3600_000 < rows[0]["ttl_ms"] <= (3 * 3600 + 5 * 60) * 1000
    assert rows[1]["ttl_ms"] is None


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (1, "1s"),
        (59_001, "1m00s"),
        (3_600_000, "1h00m"),
        (90_061_000, "1d01h"),
        (7 * 86_400_000, "7d00h"),
    ],
)
def test_duration_text(milliseconds: int | None, text: str) -> None:
    assert _output.duration_text(milliseconds) == text


def test_list_json_for_scripts(
    redis_url: str, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    result = invoke(redis_url, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = listed(result.stdout)
    assert [row["session"] for row in rows] == ["alice", "b{r}ace%7B", "ünï code"]
    alice = sessions["alice"].latest(1)[0]
    assert rows[0] == {
        "session": "alice",
        "messages": 2,
        "last_id": alice.id,
        "last_activity": alice.timestamp.isoformat(timespec="milliseconds"),
        "ttl_ms": None,
    }
    other = listed(invoke(redis_url, "list", "--json", "--prefix", "chat:x").stdout)
    assert [(row["session"], row["messages"]) for row in other] == [("other", 1)]


def test_list_with_glob_characters_in_the_prefix(redis_url: str) -> None:
    RedisChatMessageHistory("s", redis_url=redis_url, key_prefix="a*[b]?:").add_user_message("x")
    RedisChatMessageHistory("t", redis_url=redis_url, key_prefix="aZ[b]?:").add_user_message("x")
    RedisChatMessageHistory("u", redis_url=redis_url, key_prefix="a*b?:").add_user_message("x")
    rows = listed(invoke(redis_url, "list", "--json", "--prefix", "a*[b]?:").stdout)
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
    rows = listed(invoke(redis_url, "list", "--json").stdout)
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
        # A shell's background job starts with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default so Ctrl-C reaches it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
        records = lc.decode_entries(entries)
        assert [record.message.content for record in records] == ["a", "b"]
        client.close()


# -- import --------------------------------------------------------------------------------------


def export_text(url: str, *args: str) -> str:
    result = invoke(url, "export", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_export_then_import_restores_every_session_exactly(
    redis_url: str, client: redis.Redis, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    alice = sessions["alice"]
    alice.add_messages(every_kind_of_message())
    client.fcall(  # written by another client: a type LangChain lacks, fields it does not know
        "chathist_append",
        3,
        *alice.keys,
        "MESSAGES",
        '{"type":"banana","data":{"content":"x","extra":{"n":1.5,"big":12345678901234567890}}}',
    )
    before = {name: stored_dicts(client, history) for name, history in sessions.items()}
    exported = export_text(redis_url, "--all")
    client.flushall()
    result = CliRunner().invoke(
        main, ["--url", redis_url, "import", "-"], input=exported, env={"REDIS_URL": None}
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"imported {len(exported.splitlines())} messages into 3 sessions\n"
    for name in ("alice", "b{r}ace%7B", "ünï code"):
        assert stored_dicts(client, sessions[name]) == before[name]
    kinds = every_kind_of_message()
    assert [m.content for m in alice.messages[2:-1]] == [m.content for m in kinds]
    assert export_text(redis_url, "--all") == exported
    assert [hit.message.content for hit in alice.search("alice")] == [
        "Hi, I am Alice",
        "Hello Alice!",
    ]
    assert alice.delete_messages(message_ids=["run-42"]) == 1  # the id map came back too


def test_import_refuses_ids_not_after_the_session_and_replace_overwrites(
    redis_url: str, tmp_path: Path, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    dump = tmp_path / "alice.jsonl"
    assert invoke(redis_url, "export", "alice", "-o", str(dump)).exit_code == 0
    sessions["alice"].add_user_message("newer")
    refused = invoke(redis_url, "import", str(dump))
    assert refused.exit_code == 1
    assert "session 'alice'" in refused.stderr and "--replace" in refused.stderr
    assert "0 messages imported before it" in refused.stderr
    assert len(sessions["alice"]) == 3
    replaced = invoke(redis_url, "import", str(dump), "--replace", "--progress")
    assert replaced.exit_code == 0, replaced.output
    assert "importing" in replaced.stderr
    assert [m.content for m in sessions["alice"].messages] == ["Hi, I am Alice", "Hello Alice!"]


def test_import_into_another_session_prefix_and_ttl(
    redis_url: str, client: redis.Redis, sessions: dict[str, RedisChatMessageHistory]
) -> None:
    exported = export_text(redis_url, "alice")
    result = CliRunner().invoke(
        main,
        ["--url", redis_url, "import", "--session", "copy", "--prefix", "new:", "--ttl", "600"],
        input=exported,
        env={"REDIS_URL": None},
    )
    assert result.exit_code == 0, result.output
    copy = RedisChatMessageHistory("copy", redis_url=redis_url, key_prefix="new:")
    assert [r.id for r in copy.page()] == [r.id for r in sessions["alice"].page()]
    ttl = copy.get_ttl()
    assert ttl is not None and 590 < ttl <= 600


def test_import_in_batches(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = RedisChatMessageHistory("many", redis_url=redis_url)
    history.add_messages([HumanMessage(f"m{i}") for i in range(10)])
    exported = export_text(redis_url, "many")
    history.clear()
    monkeypatch.setattr(cli_sessions, "IMPORT_BATCH", 3)
    before = client.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
    result = CliRunner().invoke(
        main, ["--url", redis_url, "import"], input=exported, env={"REDIS_URL": None}
    )
    assert result.exit_code == 0, result.output
    assert client.info("commandstats")["cmdstat_fcall"]["calls"] - before == 4
    assert export_text(redis_url, "many") == exported


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "line 2: not JSON"),
        ("[1]", "line 2: not a JSON object"),
        ('{"session": "", "id": "1-1", "message": {}}', '"session"'),
        ('{"session": "s", "id": "1", "message": {}}', '"id"'),
        ('{"session": "s", "id": "1-x", "message": {}}', '"id"'),
        ('{"session": "s", "id": "1-1", "message": "m"}', '"message"'),
        ('{"session": "s", "id": "1-1", "timestamp": "2020", "message": {}}', '"timestamp"'),
    ],
)
def test_a_bad_line_is_reported_and_nothing_of_its_batch_is_written(
    redis_url: str, client: redis.Redis, line: str, error: str
) -> None:
    good = json.dumps(
        {"session": "s", "id": "1-0", "message": {"type": "human", "data": {"content": "a"}}}
    )
    result = CliRunner().invoke(
        main,
        ["--url", redis_url, "import"],
        input=f"{good}\n{line}\n",
        env={"REDIS_URL": None},
    )
    assert result.exit_code == 1
    assert error in result.stderr
    assert client.dbsize() == 0


def test_a_message_the_library_refuses_is_reported(redis_url: str, client: redis.Redis) -> None:
    line = json.dumps({"session": "s", "id": "1-0", "message": {"type": "human", "data": {}}})
    result = CliRunner().invoke(
        main, ["--url", redis_url, "import"], input=line + "\n", env={"REDIS_URL": None}
    )
    assert result.exit_code == 1
    assert "session 's'" in result.stderr and "data.content" in result.stderr
    assert client.dbsize() == 0


# -- delete and ttl ------------------------------------------------------------------------------


def test_delete_command_by_stream_id_and_by_message_id(redis_url: str) -> None:
    history = RedisChatMessageHistory("d", redis_url=redis_url)
    history.add_messages([HumanMessage(f"m{i}", id=f"id{i}") for i in range(4)])
    first, second = (record.id for record in history.page(2, after="0-0"))
    result = invoke(redis_url, "delete", "d", first, second, "1-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted 2 messages from session 'd'\n"
    result = invoke(redis_url, "delete", "d", "--message-ids", "id3", "nope")
    assert result.stdout == "deleted 1 message from session 'd'\n"
    assert [m.content for m in history.messages] == ["m2"]
    assert invoke(redis_url, "delete", "d", "not-an-id").exit_code == 2
    assert invoke(redis_url, "delete", "d").exit_code == 2
    assert len(history) == 1


def test_ttl_command_reads_sets_and_drops(redis_url: str) -> None:
    history = RedisChatMessageHistory("t", redis_url=redis_url)
    missing = invoke(redis_url, "ttl", "t")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    history.add_user_message("hi")
    assert invoke(redis_url, "ttl", "t").stdout == "none\n"
    assert invoke(redis_url, "ttl", "t", "--set", "3600").stdout in ("1h00m\n", "59m59s\n")
    ttl = history.get_ttl()
    assert ttl is not None and 3590 < ttl <= 3600
    assert invoke(redis_url, "ttl", "t", "--persist").stdout == "none\n"
    assert history.get_ttl() is None
    assert invoke(redis_url, "ttl", "t", "--set", "5", "--persist").exit_code == 2
    assert invoke(redis_url, "ttl", "t", "--set", "0").exit_code == 2


def test_export_reports_an_entry_that_is_not_json(redis_url: str, client: redis.Redis) -> None:
    history = RedisChatMessageHistory("bad", redis_url=redis_url)
    history.add_messages([HumanMessage("fine", id="1")])
    client.xadd(history.keys[0], {"m": "not json"})
    result = invoke(redis_url, "export", "bad")
    assert result.exit_code == 1
    assert "session 'bad' holds an entry" in result.stderr and "Traceback" not in result.output


def fcall_ro_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_fcall_ro", {}).get("calls", 0))


def test_list_limit_stops_after_n_sessions(redis_url: str, client: redis.Redis) -> None:
    for i in range(40):
        RedisChatMessageHistory(f"s{i:02}", redis_url=redis_url).add_user_message("x")
    client.config_resetstat()
    rows = json_lines(invoke(redis_url, "list", "--json", "--limit", "3").stdout)
    assert len(rows) == len({row["session"] for row in rows}) == 3
    # three reads per listed session, and the one version check of the library
    assert fcall_ro_calls(client) == 3 * 3 + 1, "only the listed sessions' details were read"
    table = invoke(redis_url, "list", "--limit", "5").stdout.splitlines()
    assert table[0].startswith("SESSION")
    assert len(table) == 1 + 5
    assert invoke(redis_url, "list", "--limit", "0").exit_code == 2


def test_list_json_streams_sessions_as_they_are_found(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch's lines are written before the next batch of sessions is read."""
    monkeypatch.setattr(cli_sessions, "LIST_BATCH", 4)
    for i in range(12):
        RedisChatMessageHistory(f"s{i:02}", redis_url=redis_url).add_user_message("x")
    written_before_batch: list[int] = []
    infos = cli_sessions._infos
    lines: list[str] = []

    def counting(*args: Any) -> Any:
        written_before_batch.append(len(lines))
        return infos(*args)

    monkeypatch.setattr(cli_sessions, "_infos", counting)
    monkeypatch.setattr(cli_sessions.click, "echo", lambda text, **_: lines.append(text))
    result = invoke(redis_url, "list", "--json")
    assert result.exit_code == 0, result.output
    assert written_before_batch == [0, 4, 8]
    assert sorted(json.loads(line)["session"] for line in lines) == [f"s{i:02}" for i in range(12)]
