"""Throwaway Redis Cluster and Sentinel setups on loopback ports, for tests and trials.

Built with plain commands (``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER
REPLICATE``; a ``sentinel monitor`` config), so nothing beyond ``redis-server`` is
needed. Every node listens on 127.0.0.1 only, in its own temp dir, and every wait is
bounded by a deadline; :func:`stop_cluster` / :func:`stop_sentinel` stop every process.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redis_chat_history._errors import RedisUnavailableError
from redis_chat_history.local_server import LocalRedis, free_port, start_redis, stop_redis

SLOTS = 16384
#: Seconds any wait for the cluster or sentinel to settle may take before giving up.
SETTLE_TIMEOUT = 20.0


@dataclass
class ClusterNode:
    """One node of a local cluster: its server, cluster-bus port and node id."""

    server: LocalRedis
    bus_port: int
    node_id: str

    @property
    def port(self) -> int:
        """The client port."""
        return self.server.port

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.server.port}"

    def client(self) -> redis.Redis:
        """A new plain client on this node alone (close it after use)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


@dataclass
class LocalCluster:
    """A running local cluster; ``nodes`` grows when nodes are added."""

    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (a cluster client discovers the rest)."""
        return f"redis://{self.nodes[0].address}"

    def node(self, port: int) -> ClusterNode:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def primaries(self) -> list[ClusterNode]:
        """Nodes that are primaries right now (asked of each node)."""
        return [node for node in self.nodes if _role(node) == "master"]

    def replicas(self) -> list[ClusterNode]:
        """Nodes that are replicas right now (asked of each node)."""
        return [node for node in self.nodes if _role(node) != "master"]


def _role(node: ClusterNode) -> str:
    with node.client() as client:
        return str(client.execute_command("ROLE")[0].decode())


def wait_for(what: str, check: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> None:
    """Poll ``check`` until it is true, or raise naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"local cluster: timed out waiting for {what}")
        time.sleep(0.05)


def two_free_ports() -> tuple[int, int]:
    """Two distinct TCP ports on 127.0.0.1 that nothing listens on right now (both held
    while the second is chosen: one at a time, the OS may give the same port twice)."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return int(first.getsockname()[1]), int(second.getsockname()[1])


def start_node(extra_args: Sequence[str] = ()) -> ClusterNode:
    """Start one empty cluster-enabled node (no slots, knows no other node)."""
    port, bus_port = two_free_ports()
    server = start_redis(
        [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus_port),
            "--cluster-node-timeout", "2000",
            "--cluster-require-full-coverage", "yes",
            "--repl-diskless-sync-delay", "0",
            # Replicas are listed in CLUSTER SLOTS once their replication offset is non-zero:
            # ping them every second rather than every ten.
            "--repl-ping-replica-period", "1",
            *extra_args,
        ],
        port=port,
    )  # fmt: skip
    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        node_id = client.execute_command("CLUSTER MYID").decode()
    return ClusterNode(server=server, bus_port=bus_port, node_id=node_id)


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    bounds = [SLOTS * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def _knows_everyone(nodes: Sequence[ClusterNode]) -> bool:
    ids = {node.node_id for node in nodes}
    for node in nodes:
        with node.client() as client:
            table = client.execute_command("CLUSTER NODES")
        known = {entry["node_id"] for entry in table.values() if "handshake" not in entry["flags"]}
        if not ids <= known:
            return False
    return True


def _is_settled(nodes: Sequence[ClusterNode], replicas_per_slot: int) -> bool:
    """Every node says the cluster is ok and sees every slot with its replicas."""
    for node in nodes:
        with node.client() as client:
            if client.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                return False
            slots = client.execute_command("CLUSTER SLOTS")
            covered = sum(int(entry[1]) - int(entry[0]) + 1 for entry in slots)
            if covered != SLOTS or any(len(entry) - 3 < replicas_per_slot for entry in slots):
                return False
            replication = client.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
    return True


def meet(cluster: LocalCluster, node: ClusterNode) -> None:
    """Introduce ``node`` to the cluster and wait until every node knows every other."""
    cluster.nodes.append(node)  # from now on stop_cluster stops it too
    with cluster.nodes[0].client() as client:
        client.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
    wait_for("every node to know every other", lambda: _knows_everyone(cluster.nodes))
    wait_for("every node to see a healthy cluster", lambda: _is_settled(cluster.nodes, 0))


def start_cluster(primaries: int = 3, replicas_per_primary: int = 1) -> LocalCluster:
    """Start a cluster of ``primaries`` primaries (slots split evenly), each with replicas."""
    cluster = LocalCluster()
    try:
        heads = [start_node() for _ in range(primaries)]
        followers = [start_node() for _ in range(primaries * replicas_per_primary)]
        cluster.nodes.extend(heads + followers)
        for epoch, (node, (first, last)) in enumerate(
            zip(heads, _slot_ranges(primaries), strict=True), 1
        ):
            with node.client() as client:
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
                client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        with heads[0].client() as client:
            for node in cluster.nodes[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
        wait_for("every node to know every other", lambda: _knows_everyone(cluster.nodes))
        for index, node in enumerate(followers):
            with node.client() as client:
                client.execute_command("CLUSTER REPLICATE", heads[index % primaries].node_id)
        wait_for("the cluster to settle", lambda: is_settled(cluster, replicas_per_primary))
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def is_settled(cluster: LocalCluster, replicas_per_slot: int = 1) -> bool:
    """Whether every node reports a healthy cluster with ``replicas_per_slot`` replicas."""
    return _is_settled(cluster.nodes, replicas_per_slot)


def failover(cluster: LocalCluster, replica: ClusterNode) -> None:
    """Promote ``replica`` with ``CLUSTER FAILOVER`` and wait until the cluster agrees."""
    with replica.client() as client:
        client.execute_command("CLUSTER FAILOVER")
    wait_for(f"{replica.address} to become a primary", lambda: _role(replica) == "master")
    wait_for("the cluster to settle after the failover", lambda: is_settled(cluster))


def move_slot(cluster: LocalCluster, slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """Move one slot and its keys from ``source`` to ``target``, as resharding does."""
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in cluster.nodes:
            with node.client() as client:
                if _role(node) == "master":
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
    wait_for(
        f"slot {slot} to be served by {target.address}", lambda: _owner(cluster, slot) == target
    )


def _owner(cluster: LocalCluster, slot: int) -> ClusterNode | None:
    owners = set()
    for node in cluster.nodes:
        with node.client() as client:
            for entry in client.execute_command("CLUSTER SLOTS"):
                if int(entry[0]) <= slot <= int(entry[1]):
                    owners.add(int(entry[2][1]))
    return cluster.node(owners.pop()) if len(owners) == 1 else None


def create_with_redis_cli(
    nodes: Sequence[ClusterNode], replicas_per_primary: int = 1
) -> LocalCluster:
    """Make a cluster of ``nodes`` the way an operator would: ``redis-cli --cluster create
    ... --cluster-replicas N --cluster-yes``, returning as soon as redis-cli does, before the
    cluster settles (gossip may still list the replicas-to-be as slot-less primaries).

    Nodes that were in a cluster before are emptied and reset first (``FLUSHALL``,
    ``CLUSTER RESET HARD``, ``FUNCTION FLUSH``), so one set of processes serves many
    creations; their new node ids are read back.
    """
    for node in nodes:
        with node.client() as client:
            if _role(node) == "master":
                client.flushall()
    for node in nodes:
        with node.client() as client:
            client.execute_command("CLUSTER RESET", "HARD")
            client.function_flush()
            client.flushall()
            node.node_id = client.execute_command("CLUSTER MYID").decode()
    subprocess.run(
        [
            "redis-cli", "--cluster", "create", *(node.address for node in nodes),
            "--cluster-replicas", str(replicas_per_primary), "--cluster-yes",
        ],
        check=True, capture_output=True, timeout=SETTLE_TIMEOUT,
    )  # fmt: skip
    return LocalCluster(nodes=list(nodes))


def stop_cluster(cluster: LocalCluster) -> None:
    """Stop every node of the cluster and delete their directories."""
    for node in cluster.nodes:
        stop_redis(node.server)


# -- Sentinel --------------------------------------------------------------------------


@dataclass
class LocalSentinel:
    """A primary with one replica, watched by one Sentinel under ``service``."""

    primary: LocalRedis
    replica: LocalRedis
    sentinel: LocalRedis
    service: str

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the service."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"


def start_sentinel(service: str = "mymaster") -> LocalSentinel:
    """Start a primary, a replica of it, and a Sentinel monitoring the pair."""
    started: list[LocalRedis] = []
    try:
        primary = start_redis(["--repl-diskless-sync-delay", "0"])
        started.append(primary)
        replica = start_redis(
            ["--replicaof", "127.0.0.1", str(primary.port), "--repl-diskless-sync-delay", "0"]
        )
        started.append(replica)
        sentinel_port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="redis-chat-history-sentinel-"))
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
        )
        sentinel = start_redis(
            ["--sentinel"], port=sentinel_port, directory=directory, config_file=config
        )
        started.append(sentinel)
        setup = LocalSentinel(primary, replica, sentinel, service)
        wait_for("the replica to sync", lambda: _link_up(replica))
        wait_for("the sentinel to see the replica", lambda: _sentinel_sees_replica(setup))
        return setup
    except BaseException:
        for server in started:
            stop_redis(server)
        raise


def _link_up(server: LocalRedis) -> bool:
    with redis.Redis.from_url(server.url) as client:
        return bool(client.info("replication").get("master_link_status") == "up")


def _sentinel_sees_replica(setup: LocalSentinel) -> bool:
    with redis.Redis.from_url(setup.sentinel.url) as client:
        replicas = client.execute_command("SENTINEL REPLICAS", setup.service)
    return len(replicas) >= 1


def stop_sentinel(setup: LocalSentinel) -> None:
    """Stop the Sentinel, the replica and the primary, and delete their directories."""
    for server in (setup.sentinel, setup.replica, setup.primary):
        stop_redis(server)
