"""Redis Cluster specifics: sending a session's FCALL to its slot, and the library per node.

Every key of a session shares one hash tag, so each call belongs to one slot. redis-py's
cluster clients find the slot of an FCALL by asking a node (``COMMAND GETKEYS``, the
whole call included) before sending it; here the slot is computed from the first key
and the call goes straight to the node that serves it: the primary, or a replica when
the client's ``load_balancing_strategy`` (or ``read_from_replicas``) allows one and the
call is read-only. MOVED, ASK and TRYAGAIN replies are still handled by redis-py, and a
node that does not answer makes it refresh its view of the cluster, so the next attempt
(the history's retry policy decides whether there is one) goes where the slot is now.
When the client's view has no node for the slot, the call takes redis-py's own route.

Functions are not propagated between shards: each primary holds its own copy of the
library (its replicas get it by replication), so checking and loading go node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio.cluster
import redis.cluster
from redis.commands import READ_COMMANDS
from redis.exceptions import ResponseError, SlotNotCoveredError

from ._library import library_source
from ._protocol import LIBRARY_NAME, VERSION, Call, as_text

_CLUSTER_TYPES = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)

PRIMARY = "primary"
REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class NodeLibrary:
    """The library as one node sees it: its address, role, and version (None: missing)."""

    address: str
    role: str
    version: str | None


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py cluster client (sync or asyncio)."""
    return isinstance(client, _CLUSTER_TYPES)


def slot_node(client: Any, call: Call, primary: bool = False) -> Any:
    """The node that should serve ``call``: its slot's primary, or a replica for a read.

    A replica is chosen only for a read-only call, when the client was set up to read
    from replicas and ``primary`` is false, with the client's own load balancing.
    """
    slot = client.keyslot(call.keys[0])
    command_name = call.command()[0]
    replicas = call.read_only and not primary and command_name in READ_COMMANDS
    strategy = client.load_balancing_strategy if replicas else None
    return client.nodes_manager.get_node_from_slot(
        slot, bool(replicas and client.read_from_replicas), strategy
    )


def send(client: Any, call: Call, primary: bool = False) -> Any:
    """Send ``call`` on a sync cluster client, to its slot's node (see the module's notes)."""
    if not call.keys:
        return client.execute_command(*call.command())
    try:
        node = slot_node(client, call, primary)
    except SlotNotCoveredError:
        return client.execute_command(*call.command())
    return client.execute_command(*call.command(), target_nodes=node)


async def asend(client: Any, call: Call, primary: bool = False) -> Any:
    """Async twin of :func:`send`."""
    if not call.keys:
        return await client.execute_command(*call.command())
    await client.initialize()
    try:
        node = slot_node(client, call, primary)
    except SlotNotCoveredError:
        return await client.execute_command(*call.command())
    return await client.execute_command(*call.command(), target_nodes=node)


def _is_missing(error: ResponseError) -> bool:
    return "function not found" in str(error).lower()


@dataclass(frozen=True, slots=True)
class _Member:
    host: str
    port: int
    role: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


#: Flags of a CLUSTER NODES entry that serves no clients.
_NOT_SERVING = frozenset({"handshake", "noaddr", "fail"})


def _members(table: dict[str, Any], default_host: str) -> list[_Member]:
    """Every serving node of a parsed CLUSTER NODES reply, primaries first.

    Unlike CLUSTER SLOTS (what redis-py's view is built from), CLUSTER NODES lists
    primaries that serve no slot yet: a node just added, before resharding.
    """
    members = []
    for address, entry in table.items():
        flags = set(entry["flags"].split(","))
        if flags & _NOT_SERVING:
            continue
        host, _, port = address.split("@")[0].rpartition(":")
        role = PRIMARY if "master" in flags else REPLICA
        members.append(_Member(host or default_host, int(port), role))
    return sorted(members, key=lambda member: (member.role != PRIMARY, member.address))


def _from_view(nodes: Sequence[Any]) -> list[_Member]:
    members = [
        _Member(node.host, int(node.port), PRIMARY if node.server_type == "primary" else REPLICA)
        for node in nodes
    ]
    return sorted(members, key=lambda member: (member.role != PRIMARY, member.address))


def members(client: Any) -> list[_Member]:
    """Every node of the cluster, asked of one node (redis-py's own view if it may not ask)."""
    try:
        table = client.execute_command("CLUSTER NODES")
    except ResponseError:
        return _from_view(client.get_nodes())
    return _members(table, client.get_default_node().host)


async def amembers(client: Any) -> list[_Member]:
    """Async twin of :func:`members`."""
    await client.initialize()
    try:
        table = await client.execute_command("CLUSTER NODES")
    except ResponseError:
        return _from_view(client.get_nodes())
    return _members(table, client.get_default_node().host)


def _run_on(client: Any, member: _Member, *args: Any) -> Any:
    """Run one command on one node, through the client's connection settings."""
    node = client.get_node(host=member.host, port=member.port)
    if node is not None:
        return client.execute_command(*args, target_nodes=node)
    node = redis.cluster.ClusterNode(  # type: ignore[no-untyped-call]
        member.host, member.port, member.role
    )
    try:
        return client.execute_command(*args, target_nodes=node)
    finally:
        if node.redis_connection is not None:
            node.redis_connection.close()


async def _arun_on(client: Any, member: _Member, *args: Any) -> Any:
    """Async twin of :func:`_run_on`."""
    node = client.get_node(host=member.host, port=member.port)
    if node is not None:
        return await client.execute_command(*args, target_nodes=node)
    node = redis.asyncio.cluster.ClusterNode(
        member.host, member.port, member.role, **client.connection_kwargs
    )
    try:
        return await client.execute_command(*args, target_nodes=node)
    finally:
        await node.disconnect()


def node_libraries(client: Any, replicas: bool = True) -> list[NodeLibrary]:
    """The library's version on every primary (and replica) of the cluster, one call each."""
    found = []
    for member in members(client):
        if member.role == REPLICA and not replicas:
            continue
        try:
            version: str | None = as_text(_run_on(client, member, "FCALL_RO", VERSION, 0))
        except ResponseError as error:
            if not _is_missing(error):
                raise
            version = None
        found.append(NodeLibrary(member.address, member.role, version))
    return found


async def anode_libraries(client: Any, replicas: bool = True) -> list[NodeLibrary]:
    """Async twin of :func:`node_libraries`."""
    found = []
    for member in await amembers(client):
        if member.role == REPLICA and not replicas:
            continue
        try:
            reply = await _arun_on(client, member, "FCALL_RO", VERSION, 0)
            version: str | None = as_text(reply)
        except ResponseError as error:
            if not _is_missing(error):
                raise
            version = None
        found.append(NodeLibrary(member.address, member.role, version))
    return found


def load_primaries(client: Any) -> list[str]:
    """FUNCTION LOAD REPLACE the library on every primary; their addresses."""
    primaries = [member for member in members(client) if member.role == PRIMARY]
    for member in primaries:
        reply = _run_on(client, member, "FUNCTION LOAD", "REPLACE", library_source())
        _check_loaded(reply, member.address)
    return [member.address for member in primaries]


async def aload_primaries(client: Any) -> list[str]:
    """Async twin of :func:`load_primaries`."""
    primaries = [member for member in await amembers(client) if member.role == PRIMARY]
    for member in primaries:
        reply = await _arun_on(client, member, "FUNCTION LOAD", "REPLACE", library_source())
        _check_loaded(reply, member.address)
    return [member.address for member in primaries]


def _check_loaded(reply: Any, where: str) -> None:
    if as_text(reply) != LIBRARY_NAME:
        raise ResponseError(f"FUNCTION LOAD on {where} replied {reply!r}, not {LIBRARY_NAME!r}")
