"""Deploying while the cluster settles (issue #20): ``load`` (CLI and Python) and
scripts/deploy on a real cluster right after ``redis-cli --cluster create``, during a
``CLUSTER FAILOVER``, while a slot migrates, and after a primary is killed.

Without waiting, each of these moments shows the deployer a topology that is behind:
future replicas listed as slot-less primaries, an old primary still listed as one, a
primary that no longer answers. Each case is repeated (loading alternately with the CLI,
scripts/deploy and a history's first use) and must end with the library on every node.
One set of six redis-server processes serves the whole module: each creation resets them,
and functions are flushed between repeats.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from langchain_core.messages import HumanMessage
from redis.backoff import ExponentialWithJitterBackoff
from redis.crc import key_slot

from local_cluster import (
    ClusterNode,
    LocalCluster,
    create_with_redis_cli,
    is_settled,
    start_node,
    wait_for,
)
from redis_chat_history import LIBRARY_VERSION, RedisChatMessageHistory, RetryPolicy
from redis_chat_history.cli import main
from redis_chat_history.local_server import stop_redis

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli"),
]

DEPLOY = Path(__file__).resolve().parents[1] / "scripts" / "deploy"
#: How the library is loaded, in turn: the CLI, scripts/deploy, a history's first use.
WAYS = ("cli", "script", "python")
#: Repeats of each race; before the fix, a load right after creation failed every time.
CREATE_REPEATS = 2
FAILOVER_REPEATS = 3
MIGRATION_REPEATS = 3
#: Seconds a test waits for the cluster to settle or for replicas to catch up.
WAIT = 15.0


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[ClusterNode]]:
    """Six cluster-enabled redis-servers, reused by every creation in this module."""
    started: list[ClusterNode] = []
    try:
        for _ in range(6):
            started.append(start_node())
        yield started
    finally:
        for node in started:
            stop_redis(node.server)


@pytest.fixture(scope="module")
def settled(nodes: list[ClusterNode]) -> LocalCluster:
    """A cluster of the six nodes (3 primaries, 1 replica each), settled."""
    cluster = create_with_redis_cli(nodes)
    wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
    return cluster


# -- helpers -------------------------------------------------------------------------------


def version_of(node: ClusterNode) -> str | None:
    with node.client() as client:
        try:
            return str(client.fcall_ro("chathist_version", 0).decode())
        except redis.ResponseError:
            return None


def versions(cluster: LocalCluster) -> dict[str, str | None]:
    return {node.address: version_of(node) for node in cluster.nodes}


def flush_functions(cluster: LocalCluster) -> None:
    """FUNCTION FLUSH on every primary, and wait until no node has the library."""
    for node in cluster.primaries():
        with node.client() as client:
            client.function_flush()
    wait_for(
        "the flush to replicate",
        lambda: set(versions(cluster).values()) == {None},
        WAIT,
    )


def load(cluster: LocalCluster, way: str, via: ClusterNode | None = None) -> str:
    """Load the library the ``way`` named, through ``via`` (default: the first node), at
    once; assert it succeeded and return what it printed (stdout and stderr)."""
    url = f"redis://{(via or cluster.nodes[0]).address}"
    if way == "cli":
        result = CliRunner().invoke(main, ["--url", url, "load"], env={"REDIS_URL": None})
        assert result.exit_code == 0, result.output
        return result.output
    if way == "script":
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("REDIS_URL", "REDISCLI_AUTH")
        }
        done = subprocess.run(
            [str(DEPLOY), "-u", url], capture_output=True, text=True, env=environment, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr
    # An app's first use while the new cluster still says CLUSTERDOWN: patient retries (a
    # busy machine can take seconds to agree on the slots).
    patient = RetryPolicy(retries=20, backoff=ExponentialWithJitterBackoff(cap=1.0, base=0.1))
    history = RedisChatMessageHistory(
        f"t-{uuid.uuid4().hex[:8]}",
        redis_url=f"{url}/0?client_name=d{uuid.uuid4().hex[:8]}",
        retry=patient,
    )
    history.add_messages([HumanMessage("hello")])
    assert [m.content for m in history.messages] == ["hello"]
    return ""


def assert_everywhere(cluster: LocalCluster, way: str) -> None:
    """Every node has the library: at once after the CLI and scripts/deploy (they verify
    every node), within a bounded wait after a history's first use (it loads primaries
    only; replicas get the library by replication)."""
    if way == "python":
        wait_for(
            "every node to have the library",
            lambda: set(versions(cluster).values()) == {LIBRARY_VERSION},
            WAIT,
        )
    assert versions(cluster) == {node.address: LIBRARY_VERSION for node in cluster.nodes}


# -- the races -----------------------------------------------------------------------------


def test_load_right_after_cluster_create(nodes: list[ClusterNode]) -> None:
    """The issue's report: create with redis-cli, load at once (no wait for the cluster)."""
    cluster = None
    for way in WAYS * CREATE_REPEATS:
        cluster = create_with_redis_cli(nodes)
        load(cluster, way)
        assert_everywhere(cluster, way)
    assert cluster is not None
    wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
    assert len(cluster.primaries()) == 3 and len(cluster.replicas()) == 3


def test_load_during_a_failover(settled: LocalCluster) -> None:
    """CLUSTER FAILOVER on a replica, then load at once: the old primary turns READONLY."""
    cluster = settled
    for repeat in range(FAILOVER_REPEATS):
        wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
        flush_functions(cluster)
        replica = cluster.replicas()[repeat % 3]
        with replica.client() as client:
            client.execute_command("CLUSTER FAILOVER")
        way = WAYS[repeat % len(WAYS)]
        load(cluster, way)
        assert_everywhere(cluster, way)
        wait_for(f"{replica.address} to take over", partial(is_primary, cluster, replica), WAIT)
    wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
    assert versions(cluster) == {node.address: LIBRARY_VERSION for node in cluster.nodes}


def test_load_while_a_slot_migrates(settled: LocalCluster) -> None:
    """A slot half-moved (MIGRATING / IMPORTING, some keys moved): load, then finish it."""
    cluster = settled
    slot = int(key_slot(b"{moving}"))
    for repeat in range(MIGRATION_REPEATS):
        wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
        flush_functions(cluster)
        source = owner(cluster, slot)
        target = next(node for node in cluster.primaries() if node != source)
        with source.client() as src, target.client() as dst:
            for number in range(20):
                src.set(f"{{moving}}:{repeat}:{number}", "x")
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 10)
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            way = WAYS[repeat % len(WAYS)]
            load(cluster, way)
            assert_everywhere(cluster, way)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for node in cluster.primaries():
                with node.client() as client:
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
        wait_for(f"slot {slot} to move", partial(serves, cluster, slot, target), WAIT)
    assert versions(cluster) == {node.address: LIBRARY_VERSION for node in cluster.nodes}


def owner(cluster: LocalCluster, slot: int) -> ClusterNode:
    """The primary serving ``slot``, as the first node sees it."""
    with cluster.nodes[0].client() as client:
        for entry in client.execute_command("CLUSTER SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return cluster.node(int(entry[2][1]))
    raise AssertionError(f"slot {slot} is not served")


def serves(cluster: LocalCluster, slot: int, node: ClusterNode) -> bool:
    """Whether ``node`` serves ``slot`` now."""
    return owner(cluster, slot) == node


def is_primary(cluster: LocalCluster, node: ClusterNode) -> bool:
    """Whether ``node`` is a primary now (asked of each node)."""
    return node in cluster.primaries()


@pytest.mark.parametrize("way", ["cli", "script"])
def test_load_after_a_primary_dies(nodes: list[ClusterNode], way: str) -> None:
    """Last, as it kills a node: a primary is SIGKILLed and the load starts at once; the
    dead node refuses connections until the cluster marks it failed and its replica takes
    over. The load goes on, names the node it passed over, and every live node has the
    library. A fresh node replaces the dead one in the module's set, for the next case."""
    cluster = create_with_redis_cli(nodes)
    wait_for("the cluster to settle", lambda: is_settled(cluster), WAIT)
    victim = next(node for node in cluster.primaries() if node != cluster.nodes[0])
    victim.server.process.kill()
    victim.server.process.wait(timeout=10)
    stop_redis(victim.server)
    nodes[nodes.index(victim)] = start_node()  # the module's fixture stops it at the end
    cluster.nodes.remove(victim)
    output = load(cluster, way)
    assert f"passed over {victim.address}: did not answer" in output
    assert versions(cluster) == {node.address: LIBRARY_VERSION for node in cluster.nodes}
