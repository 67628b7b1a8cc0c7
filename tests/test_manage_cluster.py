"""Managing conversations on a real Redis Cluster (3 primaries): listing scans every
primary; export, import, tail, deletion, TTL and windows reach each session's shard."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from redis.cluster import RedisCluster

from local_cluster import LocalCluster, start_cluster, stop_cluster
from redis_chat_history import RedisChatMessageHistory
from redis_chat_history.cli import main

pytestmark = pytest.mark.cluster

SESSIONS = [f"user-{i}" for i in range(12)] + ["b{r}ace", "100%"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    started = start_cluster(primaries=3, replicas_per_primary=0)
    yield started
    stop_cluster(started)


@pytest.fixture
def url(cluster: LocalCluster) -> Iterator[str]:
    """The cluster's URL, its data flushed on every primary first."""
    client = RedisCluster.from_url(cluster.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    yield f"{cluster.url}/0?client_name=m{uuid.uuid4().hex[:12]}"


def invoke(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], input=stdin, env={"REDIS_URL": None})


def fill(url: str) -> dict[str, RedisChatMessageHistory]:
    histories = {}
    for number, session in enumerate(SESSIONS):
        history = RedisChatMessageHistory(session, redis_url=url)
        history.add_messages(
            [HumanMessage(f"{session} asks", id=f"q{number}"), AIMessage("answer", id=f"a{number}")]
        )
        histories[session] = history
    return histories


def test_sessions_are_spread_and_list_finds_them_on_every_primary(
    cluster: LocalCluster, url: str
) -> None:
    fill(url)
    result = invoke(url, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(row["session"] for row in rows) == sorted(SESSIONS)
    assert {row["messages"] for row in rows} == {2}


def test_export_and_import_across_shards(url: str) -> None:
    histories = fill(url)
    exported = invoke(url, "export", "--all")
    assert exported.exit_code == 0, exported.output
    for history in histories.values():
        history.clear()
    assert invoke(url, "list", "--json").stdout == ""
    imported = invoke(url, "import", stdin=exported.stdout)
    assert imported.exit_code == 0, imported.output
    assert invoke(url, "export", "--all").stdout == exported.stdout


def test_tail_on_a_shard(url: str) -> None:
    history = fill(url)["user-3"]
    first = history.page()[0].id
    result = invoke(url, "tail", "user-3", "--from", first, "--timeout", "0.3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("] ai: answer")


def test_delete_ttl_window_and_refresh_on_read(url: str) -> None:
    fill(url)
    history = RedisChatMessageHistory(
        "user-5", redis_url=url, ttl=100, refresh_ttl_on_read=True, max_messages=3
    )
    history.add_messages([HumanMessage("more", id="m1"), AIMessage("and more", id="m2")])
    assert [m.id for m in history.messages] == ["a5", "m1", "m2"]
    assert history.set_ttl(5)
    assert history.latest(1)[0].message.content == "and more"
    ttl = history.get_ttl()
    assert ttl is not None and 99 < ttl <= 100
    history.add_messages([RemoveMessage(id="m1")])
    assert history.delete_messages([history.latest(1)[0].id]) == 1
    assert [m.id for m in history.messages] == ["a5"]


async def test_async_refresh_on_read(url: str) -> None:
    fill(url)
    history = RedisChatMessageHistory("user-7", redis_url=url, ttl=100, refresh_ttl_on_read=True)
    assert await history.aset_ttl(5)
    assert len(await history.aget_messages()) == 2
    ttl = await history.aget_ttl()
    assert ttl is not None and 99 < ttl <= 100


def test_each_primary_holds_only_some_sessions(cluster: LocalCluster, url: str) -> None:
    """Why listing must scan every primary: no single node sees every session."""
    fill(url)
    counts = []
    for node in cluster.primaries():
        with node.client() as plain:
            counts.append(len(list(plain.scan_iter(match="chat:{*}:m", _type="stream"))))
    assert sum(counts) == len(SESSIONS)
    assert all(0 < count < len(SESSIONS) for count in counts)
