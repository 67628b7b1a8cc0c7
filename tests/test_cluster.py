"""Redis Cluster: a real 3-primary cluster, one replica each, started once for this module.

Sessions over every shard, every operation, sync and async clients (given or from a
URL), reads from replicas, a library missing on one node, a failover and a node added
after deploy. Counts come from each node's own ``INFO commandstats``. The tests run in
file order: the last ones change the cluster (failover, new nodes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from redis.cluster import LoadBalancingStrategy, RedisCluster, key_slot

from local_cluster import (
    ClusterNode,
    LocalCluster,
    failover,
    is_settled,
    meet,
    move_slot,
    start_cluster,
    start_node,
    stop_cluster,
)
from redis_chat_history import LIBRARY_VERSION, RedisChatMessageHistory, library_source
from redis_chat_history.cli import main
from redis_chat_history.local_server import free_port, stop_redis

pytestmark = pytest.mark.cluster

#: Seconds a replica may take to catch up with its primary in these tests.
REPLICATION_WAIT = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One cluster for the module: 3 primaries, 1 replica each, stopped at the end."""
    started = start_cluster(primaries=3, replicas_per_primary=1)
    yield started
    stop_cluster(started)


@pytest.fixture
def rc(cluster: LocalCluster) -> Iterator[RedisCluster]:
    """A plain redis-py cluster client."""
    client = RedisCluster.from_url(cluster.url)
    yield client
    client.close()


@pytest.fixture
def url(cluster: LocalCluster) -> str:
    """A URL no history of this process has used yet (so its client checks the library)."""
    return f"{cluster.url}/0?client_name=t{uuid.uuid4().hex[:12]}"


# -- helpers -----------------------------------------------------------------------------


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def tag_slot(session: str) -> int:
    return int(key_slot(session.encode()))


def owner(cluster: LocalCluster, slot: int) -> ClusterNode:
    """The primary that serves ``slot`` now."""
    with cluster.nodes[0].client() as client:
        for entry in client.execute_command("CLUSTER SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return cluster.node(int(entry[2][1]))
    raise AssertionError(f"slot {slot} is not served")


def session_on(cluster: LocalCluster, node: ClusterNode, label: str = "s") -> str:
    """A fresh session id whose hash tag lands on ``node``'s shard."""
    while True:
        session = unique(label)
        if owner(cluster, tag_slot(session)) == node:
            return session


def stats(node: ClusterNode) -> dict[str, int]:
    with node.client() as client:
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in client.info("commandstats").items()
        }


def calls(before: dict[int, dict[str, int]], cluster: LocalCluster, name: str) -> dict[int, int]:
    """Calls of ``name`` per node port since ``before`` (nodes with none left out)."""
    found = {}
    for node in cluster.nodes:
        count = stats(node).get(name, 0) - before.get(node.port, {}).get(name, 0)
        if count:
            found[node.port] = count
    return found


def all_stats(cluster: LocalCluster) -> dict[int, dict[str, int]]:
    return {node.port: stats(node) for node in cluster.nodes}


def versions(cluster: LocalCluster) -> dict[int, str | None]:
    """The chathist version on every node, replicas included (None: not loaded)."""
    found: dict[int, str | None] = {}
    for node in cluster.nodes:
        with node.client() as client:
            try:
                found[node.port] = client.fcall_ro("chathist_version", 0).decode()
            except redis.ResponseError:
                found[node.port] = None
    return found


def eventually(check: Callable[[], bool], what: str, timeout: float = REPLICATION_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def conversation(session: str) -> list[BaseMessage]:
    return [
        HumanMessage(f"hello from {session}", id=f"{session}-1"),
        AIMessage(
            "",
            id=f"{session}-2",
            tool_calls=[
                {"name": "lookup", "args": {"q": session}, "id": "c1", "type": "tool_call"}
            ],
        ),
        ToolMessage("found it", tool_call_id="c1", id=f"{session}-3"),
        AIMessage(f"the weather in {session} is sunny", id=f"{session}-4"),
    ]


def exercise(history: RedisChatMessageHistory) -> None:
    """Every operation of the library on one session, checked."""
    session = history.session_id
    expected = conversation(session)
    history.add_messages(expected[:2])
    history.add_message(expected[2])
    history.add_messages(expected[3:])
    history.add_messages(expected[:1])  # a retried message with an id is stored once
    assert history.messages == expected
    assert len(history) == 4
    hits = history.search_messages("sunny weather")
    assert [hit["content"] for hit in hits] == [expected[3].content]
    history.clear()
    assert history.messages == [] and len(history) == 0


async def aexercise(history: RedisChatMessageHistory) -> None:
    """Async twin of :func:`exercise`."""
    expected = conversation(history.session_id)
    await history.aadd_messages(expected[:3])
    await history.aadd_messages(expected[3:])
    assert await history.aget_messages() == expected
    assert await history.alen() == 4
    hits = await history.asearch_messages("sunny")
    assert [hit["content"] for hit in hits] == [expected[3].content]
    await history.aclear()
    assert await history.alen() == 0


def keys_on(node: ClusterNode, history: RedisChatMessageHistory) -> int:
    with node.client() as client:
        return int(client.exists(*history.keys))


# -- the cluster as the suite starts it ----------------------------------------------------


def test_the_cluster_has_three_shards_with_a_replica_each(cluster: LocalCluster) -> None:
    primaries, replicas = cluster.primaries(), cluster.replicas()
    assert len(primaries) == 3 and len(replicas) == 3
    for node in replicas:
        with node.client() as client:
            info = client.info("replication")
        assert info["master_link_status"] == "up"
        assert cluster.node(int(info["master_port"])) in primaries


# -- sessions on every shard, every operation ---------------------------------------------


def test_a_url_of_one_node_gives_a_cluster_client(url: str) -> None:
    history = RedisChatMessageHistory(unique("s"), redis_url=url)
    assert isinstance(history.redis_client, RedisCluster)


def test_every_operation_on_a_session_of_each_shard(cluster: LocalCluster, url: str) -> None:
    for node in cluster.primaries():
        history = RedisChatMessageHistory(session_on(cluster, node), redis_url=url, ttl=600)
        history.add_messages([HumanMessage("where am I?", id="m1")])
        assert keys_on(node, history) >= 2  # :m, :i (and the index) on this shard: no MOVED
        with node.client() as client:
            assert 0 < client.ttl(history.keys[0]) <= 600
        history.clear()
        exercise(history)


def test_sessions_spread_over_all_slots_stay_separate(cluster: LocalCluster, url: str) -> None:
    histories = [RedisChatMessageHistory(unique("spread"), redis_url=url) for _ in range(120)]
    shards = {owner(cluster, tag_slot(h.session_id)).port for h in histories}
    assert len(shards) == 3
    for history in histories:
        history.add_messages([HumanMessage(f"only in {history.session_id}")])
    for history in histories:
        assert [m.content for m in history.messages] == [f"only in {history.session_id}"]
        assert len(history) == 1
    for history in histories:
        history.clear()
    assert all(len(history) == 0 for history in histories)


def test_awkward_session_ids_map_to_one_slot_each(cluster: LocalCluster, url: str) -> None:
    for session in ["{user}", "a}b{c", "%7B", "tag{x}", "naïve ✓", "line\nbreak"]:
        history = RedisChatMessageHistory(session, redis_url=url)
        assert len({key_slot(key.encode()) for key in history.keys}) == 1
        exercise(history)


def test_the_1_1_operations_on_a_session_of_each_shard(cluster: LocalCluster, url: str) -> None:
    for node in cluster.primaries():
        session = session_on(cluster, node, "v11")
        history = RedisChatMessageHistory(session, redis_url=url, ttl=600, refresh_ttl_on_read=True)
        history.add_messages(conversation(session))
        records = history.page(2)
        assert [r.message.content for r in records] == [
            "found it",
            f"the weather in {session} is sunny",
        ]
        assert [r.id for r in history.latest(2)] == [r.id for r in records]
        assert len(history.page(10, after=records[0].id)) == 1
        assert [r.message.type for r in history.search("sunny found", mode="any")] == ["ai", "tool"]
        assert [r.message.type for r in history.search("sunny", message_type="ai")] == ["ai"]
        assert history.search("sunny", before=records[1].id) == []
        assert history.reindex() == 4
        assert history.delete_messages(message_ids=[f"{session}-3"]) == 1
        assert history.delete_messages([records[1].id]) == 1
        assert len(history) == 2
        assert 0 < (history.get_ttl() or 0) <= 600
        assert history.set_ttl(None) is True and history.get_ttl() is None
        assert history.set_ttl(30) is True and 0 < (history.get_ttl() or 0) <= 30
        assert [m.content for m in history.messages] == [f"hello from {session}", ""]
        history.clear()
        assert history.set_ttl(30) is False


def test_session_commands_of_the_cli_on_a_cluster(cluster: LocalCluster, tmp_path: Path) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}:"
    sessions = [session_on(cluster, node, "cli") for node in cluster.primaries()]
    for session in sessions:
        history = RedisChatMessageHistory(session, redis_url=cluster.url, key_prefix=prefix)
        history.add_messages(conversation(session))
    listed = invoke(cluster.url, "list", "--prefix", prefix, "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(json.loads(line)["session"] for line in listed.stdout.splitlines()) == sorted(
        sessions
    )
    dump = tmp_path / "sessions.jsonl"
    exported = invoke(cluster.url, "export", "--all", "--prefix", prefix, "-o", str(dump))
    assert exported.exit_code == 0, exported.output
    assert len(dump.read_text().splitlines()) == 12
    other = f"{prefix}copy:"
    imported = invoke(cluster.url, "import", str(dump), "--prefix", other)
    assert imported.exit_code == 0, imported.output
    for session in sessions:
        original = RedisChatMessageHistory(session, redis_url=cluster.url, key_prefix=prefix)
        copy = RedisChatMessageHistory(session, redis_url=cluster.url, key_prefix=other)
        assert [(r.id, r.message) for r in copy.page()] == [
            (r.id, r.message) for r in original.page()
        ]
        original.clear()
        copy.clear()


def test_a_given_sync_cluster_client(rc: RedisCluster) -> None:
    history = RedisChatMessageHistory(unique("given"), redis_client=rc)
    exercise(history)


async def test_a_given_async_cluster_client(cluster: LocalCluster) -> None:
    client = redis.asyncio.cluster.RedisCluster.from_url(cluster.url)
    try:
        history = RedisChatMessageHistory(unique("agiven"), async_redis_client=client)
        await aexercise(history)
    finally:
        await client.aclose()


async def test_async_histories_from_a_cluster_url(url: str) -> None:
    for _ in range(3):
        await aexercise(RedisChatMessageHistory(unique("aurl"), redis_url=url))


def test_each_call_goes_straight_to_its_shard(cluster: LocalCluster, url: str) -> None:
    """One FCALL per write and one FCALL_RO per read, on the session's primary, and
    no ``COMMAND GETKEYS`` round trip (redis-py's own way to find an FCALL's slot)."""
    history = RedisChatMessageHistory(unique("direct"), redis_url=url)
    len(history)  # warm-up: library checked
    home = owner(cluster, tag_slot(history.session_id))
    before = all_stats(cluster)
    history.add_messages([HumanMessage("one"), HumanMessage("two")])
    assert history.messages and len(history) == 2
    assert calls(before, cluster, "fcall") == {home.port: 1}
    assert calls(before, cluster, "fcall_ro") == {home.port: 2}
    assert calls(before, cluster, "command|getkeys") == {}


# -- reads from replicas ---------------------------------------------------------------


def test_reads_go_to_replicas_when_asked(cluster: LocalCluster, url: str) -> None:
    history = RedisChatMessageHistory(unique("ro"), redis_url=url, read_from_replicas=True)
    history.add_messages([HumanMessage("written to the primary")])
    home = owner(cluster, tag_slot(history.session_id))
    replica = next(
        node
        for node in cluster.replicas()
        if int(node.client().info("replication")["master_port"]) == home.port
    )
    eventually(lambda: len(history) == 1, "the replica to catch up")
    before = all_stats(cluster)
    assert [m.content for m in history.messages] == ["written to the primary"]
    assert history.search_messages("primary")[0]["content"] == "written to the primary"
    assert calls(before, cluster, "fcall_ro") == {replica.port: 2}
    history.add_messages([HumanMessage("a write still goes to the primary")])
    assert calls(before, cluster, "fcall") == {home.port: 1}


async def test_async_reads_go_to_replicas_when_asked(cluster: LocalCluster, url: str) -> None:
    history = RedisChatMessageHistory(unique("aro"), redis_url=url, read_from_replicas=True)
    await history.aadd_messages([HumanMessage("x")])
    replicas = {node.port for node in cluster.replicas()}
    deadline = time.monotonic() + REPLICATION_WAIT
    while await history.alen() != 1:
        assert time.monotonic() < deadline
    before = all_stats(cluster)
    assert [m.content for m in await history.aget_messages()] == ["x"]
    assert set(calls(before, cluster, "fcall_ro")) <= replicas


def test_a_given_client_reads_where_its_load_balancing_says(cluster: LocalCluster) -> None:
    client = RedisCluster.from_url(
        cluster.url, load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS
    )
    try:
        history = RedisChatMessageHistory(unique("lb"), redis_client=client)
        history.add_messages([HumanMessage("x")])
        eventually(lambda: len(history) == 1, "the replica to catch up")
        before = all_stats(cluster)
        for _ in range(3):
            assert len(history) == 1
        replicas = {node.port for node in cluster.replicas()}
        assert set(calls(before, cluster, "fcall_ro")) <= replicas
    finally:
        client.close()


# -- the library on every node ----------------------------------------------------------


def flush_functions(cluster: LocalCluster) -> None:
    for node in cluster.primaries():
        with node.client() as client:
            client.function_flush()


def test_first_use_loads_the_library_on_every_primary(cluster: LocalCluster, url: str) -> None:
    flush_functions(cluster)
    eventually(lambda: set(versions(cluster).values()) == {None}, "the flush to replicate")
    RedisChatMessageHistory(unique("first"), redis_url=url).add_messages([HumanMessage("x")])
    eventually(
        lambda: set(versions(cluster).values()) == {LIBRARY_VERSION},
        "every node, replicas included, to have the library",
    )


@pytest.mark.parametrize("read_from_replicas", [False, True])
def test_a_node_that_lost_the_library_gets_it_back(
    cluster: LocalCluster, url: str, read_from_replicas: bool
) -> None:
    histories = {
        node.port: RedisChatMessageHistory(
            session_on(cluster, node), redis_url=url, read_from_replicas=read_from_replicas
        )
        for node in cluster.primaries()
    }
    for history in histories.values():
        history.add_messages([HumanMessage("before the flush")])
    for port, history in histories.items():
        with cluster.node(port).client() as client:
            client.function_flush()  # replicated: the shard's replica loses it too
        eventually(lambda port=port: versions(cluster)[port] is None, "the flush")
        eventually(lambda h=history: _missing_on_shard(cluster, h), "the flush to replicate")
        history.add_messages([HumanMessage("after the flush")])
        assert [m.content for m in history.messages] == ["before the flush", "after the flush"]
    eventually(
        lambda: set(versions(cluster).values()) == {LIBRARY_VERSION}, "every node to have it"
    )


def _missing_on_shard(cluster: LocalCluster, history: RedisChatMessageHistory) -> bool:
    home = owner(cluster, tag_slot(history.session_id))
    shard = [home.port] + [
        node.port
        for node in cluster.replicas()
        if int(node.client().info("replication")["master_port"]) == home.port
    ]
    found = versions(cluster)
    return all(found[port] is None for port in shard)


async def test_async_use_reloads_the_library_per_node(cluster: LocalCluster, url: str) -> None:
    node = cluster.primaries()[1]
    history = RedisChatMessageHistory(session_on(cluster, node), redis_url=url)
    await history.aadd_messages([HumanMessage("one")])
    with node.client() as client:
        client.function_flush()
    await history.aadd_messages([HumanMessage("two")])
    assert [m.content for m in await history.aget_messages()] == ["one", "two"]
    assert versions(cluster)[node.port] == LIBRARY_VERSION


# -- command line ---------------------------------------------------------------------


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args], env={"REDIS_URL": None})


def test_load_and_status_report_every_node(cluster: LocalCluster) -> None:
    flush_functions(cluster)
    eventually(lambda: set(versions(cluster).values()) == {None}, "the flush to replicate")
    missing = invoke(cluster.url, "status", "--json")
    assert missing.exit_code == 1
    report = json.loads(missing.stdout)
    assert report["state"] == "missing" and report["cluster"] is True
    assert len(report["nodes"]) == 6
    assert {node["state"] for node in report["nodes"]} == {"missing"}

    loaded = invoke(cluster.url, "load")
    assert loaded.exit_code == 0, loaded.output
    lines = loaded.stdout.splitlines()
    assert lines[-1] == f"loaded chathist {LIBRARY_VERSION} on 3 primaries; 6 nodes verified"
    for node in cluster.nodes:
        assert any(node.address in line and LIBRARY_VERSION in line for line in lines)
    assert set(versions(cluster).values()) == {LIBRARY_VERSION}

    status = invoke(cluster.url, "status")
    assert status.exit_code == 0, status.output
    assert status.stdout.count(f"chathist {LIBRARY_VERSION}") == 6
    report = json.loads(invoke(cluster.url, "status", "--json").stdout)
    assert report["state"] == "ok" and report["compatible"] is True
    roles = sorted(node["role"] for node in report["nodes"])
    assert roles == ["primary"] * 3 + ["replica"] * 3


def test_status_names_the_node_with_an_older_library(cluster: LocalCluster) -> None:
    node = cluster.primaries()[2]
    with node.client() as client:
        client.function_load(
            library_source().replace(f"'{LIBRARY_VERSION}'", "'0.9.0'"), replace=True
        )
    result = invoke(cluster.url, "status")
    assert result.exit_code == 1
    assert f"{node.address}" in result.stdout and "0.9.0" in result.stdout
    assert invoke(cluster.url, "load").exit_code == 0
    assert set(versions(cluster).values()) == {LIBRARY_VERSION}


# -- access control --------------------------------------------------------------------------

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def documented_rule(user: str) -> str:
    """docs/operations.md's ACL rule for ``user`` plus what its cluster section adds."""
    text = OPERATIONS.read_text(encoding="utf-8")
    rule = re.search(rf"^ACL SETUSER {user} on >\S+ (.+)$", text, re.MULTILINE)
    extra = re.search(r"also need\s+`([^`]+)` on a cluster", text)
    assert rule and extra, "docs/operations.md documents the ACL rules and their cluster additions"
    return f"{rule.group(1)} {extra.group(1)}"


def test_the_documented_acl_rules_work_on_a_cluster(cluster: LocalCluster) -> None:
    prefix = "chat:tenant-c:"
    for node in cluster.nodes:
        with node.client() as client:
            for user in ("app", "deployer"):
                rule = documented_rule(user).replace("<prefix>", prefix)
                client.execute_command("ACL", "SETUSER", user, "on", ">pw", *rule.split())
    try:
        flush_functions(cluster)
        eventually(lambda: set(versions(cluster).values()) == {None}, "the flush to replicate")
        deployer = f"redis://deployer:pw@{cluster.nodes[0].address}"
        loaded = invoke(deployer, "load")
        assert loaded.exit_code == 0, loaded.output
        assert loaded.stdout.splitlines()[-1].endswith("3 primaries; 6 nodes verified")
        assert invoke(deployer, "status").exit_code == 0

        app = f"redis://app:pw@{cluster.nodes[0].address}"
        for node in cluster.primaries():
            history = RedisChatMessageHistory(
                session_on(cluster, node), redis_url=app, key_prefix=prefix
            )
            exercise(history)
    finally:
        for node in cluster.nodes:
            with node.client() as client:
                client.execute_command("ACL", "DELUSER", "app", "deployer")


def test_load_warns_when_its_user_may_not_tell_a_cluster_apart(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        with node.client() as client:
            client.execute_command(
                "ACL", "SETUSER", "blind", "on", ">pw", "-@all", "+fcall_ro", "+function|load"
            )
    try:
        result = invoke(f"redis://blind:pw@{cluster.nodes[0].address}", "load")
        assert result.exit_code == 0
        assert "may not run INFO" in result.stderr
    finally:
        for node in cluster.nodes:
            with node.client() as client:
                client.execute_command("ACL", "DELUSER", "blind")


# -- scripts/deploy (redis-cli only) ----------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[1] / "scripts" / "deploy"
needs_redis_cli = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDISCLI_AUTH")}
    return subprocess.run(
        [str(DEPLOY), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def deployed_lines(cluster: LocalCluster) -> list[str]:
    """What deploy prints for the cluster as it is now: primaries first, then replicas."""
    primaries, replicas = cluster.primaries(), cluster.replicas()
    return [
        *sorted(f"{node.address} primary chathist {LIBRARY_VERSION}" for node in primaries),
        *sorted(f"{node.address} replica chathist {LIBRARY_VERSION}" for node in replicas),
        f"deployed chathist {LIBRARY_VERSION} to {len(primaries)} primaries; "
        f"{len(primaries) + len(replicas)} nodes verified",
    ]


@needs_redis_cli
def test_deploy_loads_every_primary_and_checks_every_node(cluster: LocalCluster) -> None:
    flush_functions(cluster)
    eventually(lambda: set(versions(cluster).values()) == {None}, "the flush to replicate")
    result = deploy("-u", cluster.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines[:3]) + sorted(lines[3:6]) + lines[6:] == deployed_lines(cluster)
    assert set(versions(cluster).values()) == {LIBRARY_VERSION}


@needs_redis_cli
def test_deploy_takes_seed_nodes_and_skips_one_that_is_down(cluster: LocalCluster) -> None:
    flush_functions(cluster)
    eventually(lambda: set(versions(cluster).values()) == {None}, "the flush to replicate")
    seeds = f"127.0.0.1:{free_port()},{cluster.replicas()[0].address}"
    result = deploy("-n", seeds)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("3 primaries; 6 nodes verified")
    assert set(versions(cluster).values()) == {LIBRARY_VERSION}
    nobody = deploy("-n", f"127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and "no node answered PING" in nobody.stderr


# -- the cluster changes: failover, new nodes -----------------------------------------------


def test_a_failover_keeps_every_session_and_appends_go_on(cluster: LocalCluster, url: str) -> None:
    histories = [RedisChatMessageHistory(unique("fo"), redis_url=url) for _ in range(30)]
    for history in histories:
        history.add_messages([HumanMessage("before")])
    reader = RedisChatMessageHistory(unique("fo"), redis_url=url, read_from_replicas=True)
    reader.add_messages([HumanMessage("before")])
    old_primary = cluster.primaries()[0]
    replica = next(
        node
        for node in cluster.replicas()
        if int(node.client().info("replication")["master_port"]) == old_primary.port
    )
    failover(cluster, replica)
    assert replica in cluster.primaries() and old_primary in cluster.replicas()
    for history in [*histories, reader]:
        history.add_messages([HumanMessage("after")])
    for history in histories:
        assert [m.content for m in history.messages] == ["before", "after"]
    eventually(lambda: len(reader) == 2, "the reader's replica to catch up")
    assert versions(cluster)[replica.port] == LIBRARY_VERSION


def test_a_node_added_after_deploy_is_fixed_by_load(cluster: LocalCluster) -> None:
    newcomer = start_node()
    meet(cluster, newcomer)  # the module's fixture stops it with the cluster
    eventually(lambda: _primary_count(cluster) == 4, "the new node to be a known primary")
    status = invoke(cluster.url, "status", "--json")
    assert status.exit_code == 1
    states = {node["address"]: node["state"] for node in json.loads(status.stdout)["nodes"]}
    assert states[newcomer.address] == "missing"
    assert {state for address, state in states.items() if address != newcomer.address} == {"ok"}

    assert invoke(cluster.url, "load").exit_code == 0
    assert versions(cluster)[newcomer.port] == LIBRARY_VERSION
    assert invoke(cluster.url, "status").exit_code == 0

    # Resharding: a session's slot moves to the new node, keys and all.
    history = RedisChatMessageHistory(unique("moved"), redis_url=cluster.url)
    history.add_messages([HumanMessage("on the old shard", id="m1")])
    slot = tag_slot(history.session_id)
    move_slot(cluster, slot, owner(cluster, slot), newcomer)
    history.add_messages([HumanMessage("on the new shard")])
    assert [m.content for m in history.messages] == ["on the old shard", "on the new shard"]
    assert keys_on(newcomer, history) >= 2


def test_a_slot_moved_to_a_node_without_the_library_is_served(
    cluster: LocalCluster, url: str
) -> None:
    """The Python client loads the library on the new node when its first call meets it."""
    history = RedisChatMessageHistory(unique("late"), redis_url=url)
    history.add_messages([HumanMessage("before the move")])
    newcomer = start_node()
    meet(cluster, newcomer)  # the module's fixture stops it with the cluster
    eventually(lambda: _primary_count(cluster) == 5, "the new node to be a known primary")
    slot = tag_slot(history.session_id)
    move_slot(cluster, slot, owner(cluster, slot), newcomer)
    assert versions(cluster)[newcomer.port] is None
    history.add_messages([HumanMessage("after the move")])
    assert [m.content for m in history.messages] == ["before the move", "after the move"]
    assert versions(cluster)[newcomer.port] == LIBRARY_VERSION


@needs_redis_cli
def test_deploy_fixes_a_node_added_after_deploy(cluster: LocalCluster) -> None:
    newcomer = start_node()
    meet(cluster, newcomer)  # the module's fixture stops it with the cluster
    eventually(lambda: _primary_count(cluster) == 6, "the new node to be a known primary")
    assert versions(cluster)[newcomer.port] is None
    result = deploy("-u", cluster.url)
    assert result.returncode == 0, result.stderr
    assert f"{newcomer.address} primary chathist {LIBRARY_VERSION}" in result.stdout
    assert set(versions(cluster).values()) == {LIBRARY_VERSION}


def _primary_count(cluster: LocalCluster) -> int:
    with cluster.nodes[0].client() as client:
        table: dict[str, Any] = client.execute_command("CLUSTER NODES")
    return sum("master" in entry["flags"] for entry in table.values())


def test_a_primary_that_dies_is_replaced_and_its_sessions_go_on(
    cluster: LocalCluster, url: str
) -> None:
    """Last: a primary is killed (SIGKILL); its replica takes over once the cluster agrees
    the primary failed, and the next calls (through the retry policy) reach it."""
    victim = cluster.primaries()[1]
    heir = next(
        node
        for node in cluster.replicas()
        if int(node.client().info("replication")["master_port"]) == victim.port
    )
    histories = [
        RedisChatMessageHistory(session_on(cluster, victim, "crash"), redis_url=url)
        for _ in range(3)
    ]
    for history in histories:
        history.add_messages([HumanMessage("before", id="1")])
    with redis.Redis(host="127.0.0.1", port=heir.port, single_connection_client=True) as replica:
        replica.execute_command("READONLY")
        eventually(
            lambda: all(replica.exists(h.keys[0]) for h in histories), "the replica to catch up"
        )
    victim.server.process.kill()
    victim.server.process.wait(timeout=10)
    cluster.nodes.remove(victim)  # stopped; the fixture's teardown stops the rest
    try:
        eventually(lambda: _role_of(heir) == "master", "the replica to take over", timeout=30)
        eventually(lambda: is_settled(cluster, 0), "the cluster to agree", timeout=30)
        for history in histories:
            history.add_messages([HumanMessage("after", id="2")])
            assert [m.content for m in history.messages] == ["before", "after"]
    finally:
        stop_redis(victim.server)


def _role_of(node: ClusterNode) -> str:
    with node.client() as client:
        return str(client.execute_command("ROLE")[0].decode())
