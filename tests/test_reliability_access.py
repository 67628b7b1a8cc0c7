"""Access control: Redis ACL users limited to one tenant's key prefix, and a deployer.

The minimal rules are the ones docs/operations.md documents (the test reads them from there), and
they must cover every command the library runs inside the server (read from its source),
since Redis checks those against the caller's ACL too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage

from redis_chat_history import (
    LibraryError,
    PermissionDeniedError,
    RedisChatMessageHistory,
    library_source,
    session_keys,
)
from redis_chat_history.cli import main
from redis_chat_history.local_server import LocalRedis

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
PASSWORD = "tenant-pw-7f3a"


def documented_rule(user: str) -> str:
    """The ACL rule docs/operations.md gives for ``user`` (``app`` or ``deployer``), without the
    ``ACL SETUSER <user> on >PASSWORD`` head."""
    match = re.search(
        rf"^ACL SETUSER {user} on >\S+ (.+)$", OPERATIONS.read_text(encoding="utf-8"), re.MULTILINE
    )
    assert match, f"docs/operations.md documents no ACL rule for {user}"
    return match.group(1)


def library_commands() -> set[str]:
    """Every command (and XINFO subcommand) the library runs inside the server."""
    source = library_source()
    commands = {name.lower() for name in re.findall(r"redis\.p?call\('([A-Z]+)'", source)}
    subcommands = {
        f"xinfo|{sub.lower()}" for sub in re.findall(r"redis\.p?call\('XINFO', '([A-Z]+)'", source)
    }
    return (commands - {"xinfo"}) | subcommands


@pytest.fixture
def admin(server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.function_flush()
    for user in client.acl_users():
        if user not in ("default", b"default"):
            client.acl_deluser(user)
    yield client
    client.close()


def add_user(admin: redis.Redis, name: str, rule: str, prefix: str = "") -> str:
    """Create ACL user ``name`` with ``rule`` (``<prefix>`` in it replaced); return its URL."""
    rule = rule.replace("<prefix>", prefix)
    admin.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", *rule.split())
    kwargs = admin.connection_pool.connection_kwargs
    return f"redis://{name}:{PASSWORD}@{kwargs['host']}:{kwargs['port']}/0"


def test_the_documented_app_rule_covers_every_command_of_the_library() -> None:
    allowed = {part[1:].lower() for part in documented_rule("app").split() if part.startswith("+")}
    assert library_commands() <= allowed - {"fcall", "fcall_ro"}, library_commands() - allowed
    assert {"fcall", "fcall_ro"} <= allowed
    assert "~<prefix>*" in documented_rule("app").split()


def test_an_app_user_works_on_its_prefix(admin: redis.Redis) -> None:
    admin.function_load(library_source())
    url = add_user(admin, "app", documented_rule("app"), "chat:tenant-a:")
    history = RedisChatMessageHistory("s", redis_url=url, key_prefix="chat:tenant-a:", ttl=600)
    history.add_messages([HumanMessage("hello tenant a", id="h1"), AIMessage("hi there")])
    history.add_messages([HumanMessage("hello tenant a", id="h1")])  # dedup path
    assert [m.content for m in history.messages] == ["hello tenant a", "hi there"]
    assert [hit["content"] for hit in history.search_messages("tenant")] == ["hello tenant a"]
    assert len(history) == 2
    assert history.reindex() == 2
    app = redis.Redis.from_url(url)
    keys = session_keys("chat:tenant-a:", "s")
    for function, args in [
        ("ttl", []),
        ("expire", [60]),
        ("delete", ["MESSAGEIDS", "h1"]),
        ("import", ["ENTRIES", "9999999999999-0", '{"type":"ai","data":{"content":"imported"}}']),
        ("append", ["MAXLEN", 1, "MESSAGES", '{"type":"ai","data":{"content":"last"}}']),
        ("search", ["last", "MODE", "ANY"]),
    ]:
        app.fcall(f"chathist_{function}", 3, *keys, *args)
    app.close()
    assert [m.content for m in history.messages] == ["last"]
    history.clear()
    assert admin.keys("*") == []


def test_an_app_user_is_refused_another_prefix_and_nothing_is_written(admin: redis.Redis) -> None:
    admin.function_load(library_source())
    url = add_user(admin, "app", documented_rule("app"), "chat:tenant-a:")
    other = RedisChatMessageHistory("s", redis_url=url, key_prefix="chat:tenant-b:")
    with pytest.raises(PermissionDeniedError, match=r"denied the call to this user.*ACL") as denied:
        other.add_messages([HumanMessage("into tenant b")])
    assert "NOPERM" in str(denied.value.__cause__) or "permissions" in str(denied.value)
    with pytest.raises(PermissionDeniedError):
        other.messages  # noqa: B018
    assert admin.keys("*") == []


def test_an_app_user_missing_a_command_gets_a_clear_refusal(admin: redis.Redis) -> None:
    admin.function_load(library_source())
    url = add_user(admin, "app", documented_rule("app").replace(" +xadd", ""), "chat:")
    history = RedisChatMessageHistory("s", redis_url=url)
    assert history.messages == []
    with pytest.raises(PermissionDeniedError, match="commands of the chathist library"):
        history.add_messages([HumanMessage("x")])
    assert admin.xlen(history.keys[0]) == 0, "no message stored"
    # Redis does not roll back a function that the ACL stops half-way: what ran before the
    # refused command stays (here the session's index metadata). Hence: the whole rule.
    assert set(admin.keys("*")) <= {history.keys[1].encode()}


def test_an_app_user_cannot_load_the_library_and_is_told_who_can(admin: redis.Redis) -> None:
    url = add_user(admin, "app", documented_rule("app"), "chat:")
    history = RedisChatMessageHistory("s", redis_url=url)
    with pytest.raises(LibraryError, match=r"may not run FUNCTION LOAD.*redis-chat-history load"):
        history.add_messages([HumanMessage("x")])
    result = CliRunner().invoke(main, ["--url", url, "load"])
    assert result.exit_code == 1
    assert "redis-chat-history load" in result.output and "Traceback" not in result.output


def test_the_deployer_rule_loads_and_checks_the_library_and_reads_no_session(
    admin: redis.Redis,
) -> None:
    url = add_user(admin, "deployer", documented_rule("deployer"))
    runner = CliRunner()
    loaded = runner.invoke(main, ["--url", url, "load"])
    assert loaded.exit_code == 0, loaded.output
    assert admin.function_list()[0][1] == b"chathist"
    status = runner.invoke(main, ["--url", url, "status"])
    assert status.exit_code == 0 and "is loaded" in status.output
    show = runner.invoke(main, ["--url", url, "show", "s"])
    assert show.exit_code == 1 and "denied" in show.output
    for output in (loaded.output, status.output, show.output):
        assert PASSWORD not in output


def test_sessions_of_two_prefixes_never_see_each_other(admin: redis.Redis) -> None:
    admin.function_load(library_source())
    a_url = add_user(admin, "app", documented_rule("app"), "chat:tenant-a:")
    b_url = add_user(admin, "app-b", documented_rule("app"), "chat:tenant-b:")
    a = RedisChatMessageHistory("same", redis_url=a_url, key_prefix="chat:tenant-a:")
    b = RedisChatMessageHistory("same", redis_url=b_url, key_prefix="chat:tenant-b:")
    a.add_messages([HumanMessage("secret of a", id="m1")])
    b.add_messages([HumanMessage("secret of b", id="m1")])  # same client id, other tenant
    assert [m.content for m in a.messages] == ["secret of a"]
    assert [m.content for m in b.messages] == ["secret of b"]
    assert a.search_messages("secret b") == [] and b.search_messages("of a") == []
    a.clear()
    assert [m.content for m in b.messages] == ["secret of b"]
    assert all(key.startswith(b"chat:tenant-b:") for key in admin.keys("*"))
