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

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis.commands import READ_COMMANDS
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
)

from ._errors import LibraryError
from ._library import library_source
from ._protocol import LIBRARY_NAME, LIBRARY_VERSION, VERSION, Call, as_text

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

#: Errors of a node that cannot serve right now but may soon: it is down or unreachable,
#: loading its data, or its cluster or primary link is down. Tried again next round.
_NOT_NOW = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BusyLoadingError,
    ClusterDownError,
)


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


def node_libraries(
    client: Any, replicas: bool = True, reachable: bool = False
) -> list[NodeLibrary]:
    """The library's version on every primary (and replica) of the cluster, one call each.

    ``reachable``: leave out nodes that do not answer now (down, loading, mid-failover)
    instead of failing, for a look before a deploy that passes over them anyway.
    """
    found = []
    for member in members(client):
        if member.role == REPLICA and not replicas:
            continue
        try:
            version: str | None = as_text(_run_on(client, member, "FCALL_RO", VERSION, 0))
        except _NOT_NOW:
            if not reachable:
                raise
            continue
        except ResponseError as error:
            if not _is_missing(error):
                raise
            version = None
        found.append(NodeLibrary(member.address, member.role, version))
    return found


async def anode_libraries(
    client: Any, replicas: bool = True, reachable: bool = False
) -> list[NodeLibrary]:
    """Async twin of :func:`node_libraries`."""
    found = []
    for member in await amembers(client):
        if member.role == REPLICA and not replicas:
            continue
        try:
            reply = await _arun_on(client, member, "FCALL_RO", VERSION, 0)
            version: str | None = as_text(reply)
        except _NOT_NOW:
            if not reachable:
                raise
            continue
        except ResponseError as error:
            if not _is_missing(error):
                raise
            version = None
        found.append(NodeLibrary(member.address, member.role, version))
    return found


# -- deploying while the cluster changes ---------------------------------------------------
#
# A deploy meets the cluster as some node describes it, and that description can be behind:
# right after ``redis-cli --cluster create`` the future replicas are still listed as primaries
# without slots; during a failover the old primary is listed as one until the news spreads;
# a primary being replaced stops answering before it is marked failed. So a deploy goes in
# rounds, each re-reading the topology, until every listed node answers with the library or
# the time is up: FUNCTION LOAD on each listed primary not loaded yet (one that answers
# READONLY is a replica now: its primary gives it the library by replication; one that does
# not answer is passed over and tried again next round), then FCALL_RO on every node.

#: Seconds a deploy may spend following topology changes and waiting for replication.
SETTLE_TIMEOUT = 10.0
#: Seconds between two rounds of a deploy.
_PAUSE = 0.1
#: Most rounds a deploy may take, whatever the clock says.
_MAX_ROUNDS = 1000


@dataclass(frozen=True, slots=True)
class Skipped:
    """A node a deploy passed over, and why; reported so the operator can look at it."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class Deployment:
    """What a deploy did: the primaries that took FUNCTION LOAD, every node verified with
    its version (as listed by the cluster at the end), and the nodes passed over."""

    loaded: tuple[str, ...]
    nodes: tuple[NodeLibrary, ...]
    skipped: tuple[Skipped, ...]


def _unexpected_reply(reply: Any, where: str) -> ResponseError | None:
    if as_text(reply) == LIBRARY_NAME:
        return None
    return ResponseError(f"FUNCTION LOAD on {where} replied {reply!r}, not {LIBRARY_NAME!r}")


def _reason(error: Exception) -> str:
    """Why a node was passed over, in words for the report."""
    if isinstance(error, ReadOnlyError):
        return "answered READONLY: a replica now, which gets the library from its primary"
    if isinstance(error, BusyLoadingError):
        return "is loading its data set (LOADING)"
    if isinstance(error, ClusterDownError):
        return f"cannot serve now ({error})"
    return f"did not answer ({error})"


class _Rounds:
    """The bookkeeping of a deploy, shared by :func:`deploy` and :func:`adeploy`.

    The drivers do the I/O; this decides what to load, what is still lacking, and
    what to report or raise.
    """

    def __init__(self, replicas: bool, timeout: float) -> None:
        self.replicas = replicas
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.loaded: dict[str, None] = {}  # addresses, in load order
        self.skipped: dict[str, str] = {}  # address -> latest reason
        self.known: list[_Member] = []  # the latest topology, to ask if the client cannot

    def to_check(self, found: list[_Member]) -> list[_Member]:
        """Remember a fresh topology; the nodes to check (replicas only if asked)."""
        self.known = found
        return [m for m in found if self.replicas or m.role == PRIMARY]

    def to_load(self, found: list[_Member]) -> list[_Member]:
        """Listed primaries that have not taken FUNCTION LOAD in this deploy yet."""
        return [m for m in found if m.role == PRIMARY and m.address not in self.loaded]

    def load_done(self, member: _Member) -> None:
        self.loaded[member.address] = None
        self.skipped.pop(member.address, None)

    def passed_over(self, member: _Member, error: Exception) -> None:
        self.skipped[member.address] = _reason(error)

    def finished(self, nodes: list[NodeLibrary], failures: dict[str, str]) -> Deployment | None:
        """The deployment once every checked node has the library, else None (go on), or
        raise naming the nodes still without it once the time is up."""
        lacking = [node for node in nodes if node.version != LIBRARY_VERSION]
        if not lacking:
            if not self.loaded:
                raise LibraryError(
                    "no node of the cluster took FUNCTION LOAD (every one was a replica or "
                    "did not answer), yet every node has the library; run load again"
                )
            skipped = tuple(Skipped(a, r) for a, r in self.skipped.items())
            return Deployment(tuple(self.loaded), tuple(nodes), skipped)
        if time.monotonic() < self.deadline:
            return None
        names = ", ".join(
            f"{node.address} ({node.role}, "
            f"{failures.get(node.address) or node.version or 'not loaded'})"
            for node in lacking
        )
        loaded = ", ".join(self.loaded) or "no primary"
        raise LibraryError(
            f"{LIBRARY_NAME} {LIBRARY_VERSION} was loaded on {loaded}, but after "
            f"{self.timeout:g}s these nodes do not have it: {names}; check that they run and "
            "replicate from a primary of the cluster, then load again"
        )


def _topology(client: Any, known: Sequence[_Member]) -> list[_Member]:
    """Every serving node as the client's node sees it, else as the first known node that
    answers (the client's node may be the primary that just went away)."""
    try:
        return members(client)
    except _NOT_NOW as error:
        last: Exception = error
    for member in known:
        try:
            return _members(_run_on(client, member, "CLUSTER NODES"), member.host)
        except _NOT_NOW as error:
            last = error
    raise last


async def _atopology(client: Any, known: Sequence[_Member]) -> list[_Member]:
    """Async twin of :func:`_topology`."""
    try:
        return await amembers(client)
    except _NOT_NOW as error:
        last: Exception = error
    for member in known:
        try:
            return _members(await _arun_on(client, member, "CLUSTER NODES"), member.host)
        except _NOT_NOW as error:
            last = error
    raise last


def deploy(client: Any, replicas: bool = True, timeout: float = SETTLE_TIMEOUT) -> Deployment:
    """FUNCTION LOAD REPLACE the library on every primary, following topology changes,
    then wait until every node (primaries only unless ``replicas``) answers with it.

    A node that answers READONLY or does not answer is passed over and the topology read
    again, so a failover, a resharding or a cluster still settling does not stop the
    deploy; :class:`LibraryError` names the nodes still without the library after
    ``timeout`` seconds. Any other refusal (NOPERM, a compile error) is raised at once.
    """
    rounds = _Rounds(replicas, timeout)
    for _ in range(_MAX_ROUNDS):
        found = _topology(client, rounds.known)
        for member in rounds.to_load(found):
            try:
                reply = _run_on(client, member, "FUNCTION LOAD", "REPLACE", library_source())
            except (ReadOnlyError, *_NOT_NOW) as error:
                rounds.passed_over(member, error)
                continue
            if (wrong := _unexpected_reply(reply, member.address)) is not None:
                raise wrong
            rounds.load_done(member)
        nodes, failures = [], {}
        for member in rounds.to_check(found):
            try:
                version = as_text(_run_on(client, member, "FCALL_RO", VERSION, 0))
            except _NOT_NOW as error:
                version, failures[member.address] = None, _reason(error)
            except ResponseError as error:
                if not _is_missing(error):
                    raise
                version = None
            nodes.append(NodeLibrary(member.address, member.role, version))
        if (done := rounds.finished(nodes, failures)) is not None:
            return done
        time.sleep(_PAUSE)
    raise LibraryError(f"the deploy gave up after {_MAX_ROUNDS} rounds; load again")


async def adeploy(
    client: Any, replicas: bool = True, timeout: float = SETTLE_TIMEOUT
) -> Deployment:
    """Async twin of :func:`deploy`."""
    rounds = _Rounds(replicas, timeout)
    for _ in range(_MAX_ROUNDS):
        found = await _atopology(client, rounds.known)
        for member in rounds.to_load(found):
            try:
                reply = await _arun_on(client, member, "FUNCTION LOAD", "REPLACE", library_source())
            except (ReadOnlyError, *_NOT_NOW) as error:
                rounds.passed_over(member, error)
                continue
            if (wrong := _unexpected_reply(reply, member.address)) is not None:
                raise wrong
            rounds.load_done(member)
        nodes, failures = [], {}
        for member in rounds.to_check(found):
            try:
                version = as_text(await _arun_on(client, member, "FCALL_RO", VERSION, 0))
            except _NOT_NOW as error:
                version, failures[member.address] = None, _reason(error)
            except ResponseError as error:
                if not _is_missing(error):
                    raise
                version = None
            nodes.append(NodeLibrary(member.address, member.role, version))
        if (done := rounds.finished(nodes, failures)) is not None:
            return done
        await asyncio.sleep(_PAUSE)
    raise LibraryError(f"the deploy gave up after {_MAX_ROUNDS} rounds; load again")
