"""Redis Sentinel: a primary, a replica and one Sentinel started for this module.

``redis+sentinel://`` URLs (the form langchain-community and RedisVL accept) and
Sentinel-managed clients, sync and async, the command line, a failover, and
``scripts/deploy -n`` on a primary with a replica (no cluster).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage

from local_cluster import LocalSentinel, start_sentinel, stop_sentinel
from redis_chat_history import LIBRARY_VERSION, RedisChatMessageHistory
from redis_chat_history._clients import sentinel_settings
from redis_chat_history.cli import main
from redis_chat_history.local_server import LocalRedis

DEPLOY = Path(__file__).resolve().parents[1] / "scripts" / "deploy"
FAILOVER_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def sentinel() -> Iterator[LocalSentinel]:
    """One Sentinel setup for the module, stopped at the end."""
    setup = start_sentinel()
    yield setup
    stop_sentinel(setup)


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def fresh(setup: LocalSentinel) -> str:
    """A Sentinel URL no history of this process has used yet."""
    return f"{setup.url}?client_name=t{uuid.uuid4().hex[:12]}"


def primary_port(setup: LocalSentinel) -> int:
    with redis.Redis.from_url(setup.sentinel.url) as client:
        _, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", setup.service)
    return int(port)


def server(setup: LocalSentinel, port: int) -> LocalRedis:
    return setup.primary if setup.primary.port == port else setup.replica


# -- URLs ---------------------------------------------------------------------------------


def test_sentinel_urls_are_parsed_as_langchain_users_write_them() -> None:
    sentinels, service, options, for_sentinels = sentinel_settings(
        "redis+sentinel://:p%40ss@h1:26380,h2,[::1]:26381/orders/2?socket_timeout=1.5"
    )
    assert sentinels == [("h1", 26380), ("h2", 26379), ("::1", 26381)]
    assert service == "orders"
    assert options == {"password": "p@ss", "db": 2, "socket_timeout": 1.5}
    assert for_sentinels == {"password": "p@ss", "socket_timeout": 1.5}

    sentinels, service, options, for_sentinels = sentinel_settings(
        "rediss+sentinel://app:pw@h:1?sentinel_password="
    )
    assert (sentinels, service) == ([("h", 1)], "mymaster")
    assert options == {"username": "app", "password": "pw", "db": 0, "ssl": True}
    assert for_sentinels == {"username": "app", "password": None, "ssl": True}


def test_a_sentinel_url_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one sentinel"):
        sentinel_settings("redis+sentinel:///mymaster")


# -- histories ----------------------------------------------------------------------------


def test_every_operation_through_a_sentinel_url(sentinel: LocalSentinel) -> None:
    history = RedisChatMessageHistory(unique("s"), redis_url=fresh(sentinel), ttl=60)
    history.add_messages([HumanMessage("hi", id="1"), AIMessage("sunny weather", id="2")])
    history.add_message(HumanMessage("hi", id="1"))  # stored once
    assert [m.content for m in history.messages] == ["hi", "sunny weather"]
    assert len(history) == 2
    assert [hit["content"] for hit in history.search_messages("weather")] == ["sunny weather"]
    with redis.Redis.from_url(server(sentinel, primary_port(sentinel)).url) as client:
        assert client.exists(history.keys[0]) == 1
    history.clear()
    assert len(history) == 0


async def test_every_operation_through_a_sentinel_url_async(sentinel: LocalSentinel) -> None:
    history = RedisChatMessageHistory(unique("a"), redis_url=fresh(sentinel))
    await history.aadd_messages([HumanMessage("hi", id="1"), AIMessage("there", id="2")])
    assert [m.content for m in await history.aget_messages()] == ["hi", "there"]
    assert [hit["content"] for hit in await history.asearch_messages("there")] == ["there"]
    await history.aclear()
    assert await history.alen() == 0


async def test_sentinel_managed_clients_given_ready(sentinel: LocalSentinel) -> None:
    address = [("127.0.0.1", sentinel.sentinel.port)]
    sync = redis.sentinel.Sentinel(address).master_for(sentinel.service)
    asynchronous = redis.asyncio.sentinel.Sentinel(address).master_for(sentinel.service)
    try:
        history = RedisChatMessageHistory(
            unique("g"), redis_client=sync, async_redis_client=asynchronous
        )
        history.add_messages([HumanMessage("sync", id="1")])
        await history.aadd_messages([HumanMessage("async", id="2")])
        assert [m.content for m in history.messages] == ["sync", "async"]
        assert await history.alen() == 2
    finally:
        sync.close()
        await asynchronous.aclose()


def test_load_and_status_through_a_sentinel_url(sentinel: LocalSentinel) -> None:
    runner = CliRunner()
    loaded = runner.invoke(main, ["--url", sentinel.url, "load"], env={"REDIS_URL": None})
    assert loaded.exit_code == 0, loaded.output
    status = runner.invoke(main, ["--url", sentinel.url, "status", "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["state"] == "ok" and report["version"] == LIBRARY_VERSION


# -- scripts/deploy on a primary and its replica ---------------------------------------------


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
def test_deploy_loads_the_primary_and_checks_its_replica(sentinel: LocalSentinel) -> None:
    primary = server(sentinel, primary_port(sentinel))
    replica = sentinel.replica if primary is sentinel.primary else sentinel.primary
    with redis.Redis.from_url(primary.url) as client:
        client.function_flush()
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDISCLI_AUTH")}
    nodes = f"127.0.0.1:{replica.port},127.0.0.1:{primary.port}"
    result = subprocess.run(
        [str(DEPLOY), "-n", nodes], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"127.0.0.1:{primary.port} primary chathist {LIBRARY_VERSION}",
        f"127.0.0.1:{replica.port} replica chathist {LIBRARY_VERSION}",
        f"deployed chathist {LIBRARY_VERSION} to 1 primaries; 2 nodes verified",
    ]

    only_replica = subprocess.run(
        [str(DEPLOY), "-n", f"127.0.0.1:{replica.port}"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert only_replica.returncode == 1
    assert "no primary found" in only_replica.stderr


# -- failover (last: it swaps the roles) ------------------------------------------------------


def test_a_sentinel_failover_keeps_the_session_and_appends_go_on(sentinel: LocalSentinel) -> None:
    history = RedisChatMessageHistory(unique("fo"), redis_url=fresh(sentinel))
    history.add_messages([HumanMessage("before", id="1")])
    before = primary_port(sentinel)
    old = server(sentinel, before)
    with redis.Redis.from_url(old.url) as client:
        assert client.wait(1, 5000) == 1  # the replica has "before"
    with redis.Redis.from_url(sentinel.sentinel.url) as client:
        client.execute_command("SENTINEL FAILOVER", sentinel.service)
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while primary_port(sentinel) == before:
        assert time.monotonic() < deadline, "the sentinel did not fail over"
        time.sleep(0.05)
    with redis.Redis.from_url(server(sentinel, primary_port(sentinel)).url) as client:
        while client.info("replication")["role"] != "master":
            assert time.monotonic() < deadline, "the new primary did not take the role"
            time.sleep(0.05)
    history.add_messages([HumanMessage("after", id="2")])
    assert [m.content for m in history.messages] == ["before", "after"]
