"""Sending protocol calls: FCALL with load-on-first-use, retry on a missing library,
and translation of redis-py errors into the package's own exceptions.

The sync and async executors differ only in ``await``; the decisions (what an
error means, whether the server's library will do) are shared functions.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Sequence
from functools import cached_property
from typing import Any, NoReturn

import redis
import redis.asyncio
from redis.exceptions import (
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)

from . import _cluster as cluster
from ._errors import (
    ChatHistoryError,
    ConflictError,
    InvalidInputError,
    LibraryError,
    LibraryIncompatibleError,
    PermissionDeniedError,
    ReadOnlyReplicaError,
    RedisTimeoutError,
    RedisUnavailableError,
    ServerBusyError,
    ServerError,
    ServerOutOfMemoryError,
)
from ._library import library_source
from ._protocol import (
    LIBRARY_VERSION,
    Call,
    as_text,
    check_compatible,
    conflict_last_id,
    error_code,
    version_call,
)
from ._retry import NO_RETRY, RetryPolicy, is_busy, is_transient, needs_new_connection

_FUNCTION_MISSING = "function not found"
#: What talking to Redis may raise, and so what becomes one of the package's errors.
#: Anything else (a TypeError from a wrong argument, say) propagates as itself.
REDIS_FAILURES: tuple[type[Exception], ...] = (
    redis.RedisError,
    RedisClusterException,
    ChatHistoryError,
    socket.timeout,
)
# Clients whose server library has been checked in this process.
_checked_sync: weakref.WeakSet[Any] = weakref.WeakSet()
_checked_async: weakref.WeakSet[Any] = weakref.WeakSet()


def describe(client: Any) -> str:
    """Where a client connects, as ``host:port`` or a socket path, never with a password."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return str(kwargs["path"])
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    nodes = getattr(client, "get_nodes", None)
    if callable(nodes):
        return ",".join(f"{node.host}:{node.port}" for node in nodes()) or "a Redis Cluster"
    return "the configured Redis"


#: How servers word an ACL refusal of a command run inside a function (redis-py maps the
#: ``NOPERM`` prefix to NoPermissionError only when the reply starts with it). Redis 7.0:
#: "The user executing the script can't run this command or subcommand script: ...";
#: Valkey 8: "ACL failure in script: User app has no permissions to run the 'xadd' command".
_ACL_REFUSALS = ("user executing the script can't run", "acl failure in script")


def _is_acl_refusal(error: Exception) -> bool:
    """True when a command run inside a function was refused by the caller's ACL."""
    if not isinstance(error, ResponseError):
        return False
    text = str(error).lower()
    return any(wording in text for wording in _ACL_REFUSALS)


def final_error(error: Exception, where: str, attempts: int) -> ChatHistoryError:
    """The package's exception for the last failure of a call tried ``attempts`` times."""
    cause = error.__cause__ if isinstance(error, ChatHistoryError) else error
    final = translate(error, where)
    if attempts > 1 and cause is not None and is_transient(cause):
        final = type(final)(f"{final} (gave up after {attempts} attempts)")
    final.__cause__ = cause
    return final


def is_function_missing(error: ResponseError) -> bool:
    """True when Redis says the called function does not exist (library not loaded)."""
    return _FUNCTION_MISSING in str(error).lower()


def translate(error: Exception, where: str) -> ChatHistoryError:
    """The package's exception for a redis-py error raised while talking to ``where``."""
    if isinstance(error, ChatHistoryError):
        return error
    if isinstance(error, redis.AuthenticationError):
        return RedisUnavailableError(f"Redis at {where} refused the credentials: {error}")
    if isinstance(error, BusyLoadingError):
        return ServerBusyError(
            f"Redis at {where} is loading its data set into memory (LOADING); try again shortly"
        )
    if isinstance(error, redis.TimeoutError):
        return RedisTimeoutError(
            f"Redis at {where} did not answer in time ({error}); if it was a write, sending "
            "the same messages again is safe: each is stored once"
        )
    if isinstance(error, redis.ConnectionError):
        return RedisUnavailableError(
            f"no Redis answered at {where} ({error}); start one or pass --url / redis_url"
        )
    if isinstance(error, NoPermissionError) or _is_acl_refusal(error):
        return PermissionDeniedError(
            f"Redis at {where} denied the call to this user ({error}); its ACL must allow "
            "the session's keys and the commands of the chathist library "
            "(docs/operations.md: Access control)"
        )
    if isinstance(error, ReadOnlyError):
        return ReadOnlyReplicaError(
            f"Redis at {where} is a read-only replica (READONLY), as an old primary is after a "
            "failover; nothing was written: point the URL at the primary"
        )
    if isinstance(error, OutOfMemoryError):
        return ServerOutOfMemoryError(
            f"Redis at {where} is over its maxmemory and refused the write (OOM); nothing was "
            "written: raise maxmemory, set an eviction policy, or give sessions a ttl"
        )
    if is_busy(error):
        return ServerBusyError(
            f"Redis at {where} is busy running a long script or function (BUSY); nothing was "
            "written: try again when it ends, or stop it with SCRIPT KILL / FUNCTION KILL"
        )
    if isinstance(error, ResponseError):
        coded = error_code(str(error))
        if coded and coded[0] == "CONFLICT":
            return ConflictError(coded[1], conflict_last_id(coded[1]))
        if coded:
            return InvalidInputError(coded[1], coded[0])
        return ServerError(f"Redis at {where} replied with an error: {error}")
    return ServerError(f"unexpected error talking to Redis at {where}: {error!r}")


def refuse_load(error: Exception, where: str) -> NoReturn:
    """Raise the error for a FUNCTION LOAD that the server refused."""
    if isinstance(error, NoPermissionError):
        raise LibraryError(
            f"the chathist library is not loaded on {where} and this Redis user may not "
            "run FUNCTION LOAD: ask an operator to run `redis-chat-history load`"
        ) from error
    raise translate(error, where) from error


def judge_version(server_version: str, where: str) -> bool:
    """Whether the server's library must be (re)loaded; raises if it is incompatible."""
    verdict = check_compatible(server_version)
    if verdict == "incompatible":
        raise LibraryIncompatibleError(
            f"Redis at {where} runs chathist {server_version}, a newer major version than "
            f"this package's {LIBRARY_VERSION}: upgrade redis-chat-history (never downgraded)"
        )
    return verdict == "upgrade"


def needs_load(versions: Sequence[str | None], where: str) -> bool:
    """Whether the library must be loaded, given its version on each primary (None: not
    loaded there); raises if one is incompatible."""
    return any(version is None or judge_version(version, where) for version in versions)


def first_error(replies: Sequence[Any]) -> list[Any]:
    """A pipeline's replies, or its first error raised as Redis sent it (no pipeline wording)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return list(replies)


class SyncTransport:
    """Runs protocol calls on a sync redis-py client (standalone or cluster).

    Transient failures are retried by ``retry`` (none by default); see ``_retry``.
    """

    def __init__(self, client: Any, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or NO_RETRY

    @cached_property
    def where(self) -> str:
        """Where the client connects, for messages; worked out only when one is needed."""
        return describe(self.client)

    def run(self, call: Call) -> Any:
        """Send ``call``, retrying transient failures as the retry policy says."""
        return self._retrying(call)

    def run_all(self, calls: Sequence[Call]) -> list[Any]:
        """Send ``calls`` in one pipeline (one round trip, not a transaction); replies in order.

        Loaded and retried as :meth:`run` is (a retry sends every call again, so use it
        for calls that may be repeated: reads, TTL changes); the first error reply is
        raised, as the package's exception, after every call has run.
        """
        return list(self._retrying(tuple(calls)))

    def _retrying(self, work: Call | tuple[Call, ...]) -> Any:
        """Send one call or a pipeline of calls, retrying transient failures."""
        attempts = [0]

        def failed(error: Exception, failures: int) -> None:
            attempts[0] = failures
            if needs_new_connection(error):
                pool = getattr(self.client, "connection_pool", None)
                if pool is not None:  # idle connections only: others may be in use elsewhere
                    pool.disconnect(inuse_connections=False)

        try:
            return self.retry.sync_retry().call_with_retry(
                lambda: self._attempt(work), failed, is_transient, with_failure_count=True
            )
        except REDIS_FAILURES as error:
            final = final_error(error, self.where, attempts[0])
            raise final from final.__cause__

    def _attempt(self, work: Call | tuple[Call, ...]) -> Any:
        """Send ``work``; load the library first if needed, and once more if it vanished."""
        if self.client not in _checked_sync:
            self.ensure_library()
        try:
            return self._deliver(work)
        except ResponseError as error:
            if not is_function_missing(error):
                raise
            self.ensure_library()
            return self._deliver(work, primary=True)

    def _deliver(self, work: Call | tuple[Call, ...], primary: bool = False) -> Any:
        return self._send(work, primary) if isinstance(work, Call) else self._send_all(work)

    def _send(self, call: Call, primary: bool = False) -> Any:
        """Send ``call`` once; ``primary``: never to a replica (a cluster's node just loaded)."""
        if cluster.is_cluster(self.client):
            return cluster.send(self.client, call, primary)
        return self.client.execute_command(*call.command())

    def _send_all(self, calls: Sequence[Call]) -> list[Any]:
        if cluster.is_cluster(self.client):
            # Each call straight to its slot's node, one by one: a cluster pipeline would
            # first ask a node for the keys of every FCALL.
            return [self._send(call) for call in calls]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.command())
        return first_error(pipe.execute(raise_on_error=False))

    def server_version(self) -> str | None:
        """The loaded library's version, or None when it is not loaded."""
        try:
            return as_text(self._send(version_call()))
        except REDIS_FAILURES as error:
            if isinstance(error, ResponseError) and is_function_missing(error):
                return None
            raise translate(error, self.where) from error

    def node_libraries(
        self, replicas: bool = True, reachable: bool = False
    ) -> list[cluster.NodeLibrary]:
        """The library on each node: every primary and replica of a cluster, else the server.

        ``reachable``: leave out cluster nodes that do not answer now instead of failing.
        """
        if not cluster.is_cluster(self.client):
            return [cluster.NodeLibrary(self.where, "server", self.server_version())]
        try:
            return cluster.node_libraries(self.client, replicas, reachable)
        except REDIS_FAILURES as error:
            raise translate(error, self.where) from error

    def load(self) -> str:
        """FUNCTION LOAD REPLACE the shipped library (on every primary of a cluster).

        On a cluster, primaries that turn out to be replicas or go away are passed over
        and the topology read again (see :func:`cluster.deploy`). Returns the version.
        """
        self.deploy(replicas=False)
        return LIBRARY_VERSION

    def deploy(self, replicas: bool = True) -> cluster.Deployment:
        """FUNCTION LOAD REPLACE the shipped library, and on a cluster wait until every
        node (primaries only unless ``replicas``) has it, following topology changes.

        What was loaded, verified and passed over is returned, for ``load`` to report.
        """
        try:
            if cluster.is_cluster(self.client):
                return cluster.deploy(self.client, replicas)
            self.client.function_load(library_source(), replace=True)
        except REDIS_FAILURES as error:
            refuse_load(error, self.where)
        node = cluster.NodeLibrary(self.where, "server", LIBRARY_VERSION)
        return cluster.Deployment((self.where,), (node,), ())

    def ensure_library(self) -> None:
        """Make sure the server (every primary of a cluster) runs a compatible library.

        Ours is loaded where it is missing or older.
        """
        versions = [node.version for node in self.node_libraries(replicas=False)]
        if needs_load(versions, self.where):
            self.load()
        _checked_sync.add(self.client)


class AsyncTransport:
    """Runs protocol calls on a ``redis.asyncio`` client; the twin of SyncTransport."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or NO_RETRY

    @cached_property
    def where(self) -> str:
        """Where the client connects, for messages; worked out only when one is needed."""
        return describe(self.client)

    async def run(self, call: Call) -> Any:
        """Send ``call``, retrying transient failures as the retry policy says."""
        return await self._retrying(call)

    async def run_all(self, calls: Sequence[Call]) -> list[Any]:
        """Async twin of :meth:`SyncTransport.run_all`."""
        return list(await self._retrying(tuple(calls)))

    async def _retrying(self, work: Call | tuple[Call, ...]) -> Any:
        """Send one call or a pipeline of calls, retrying transient failures."""
        attempts = [0]

        async def failed(error: Exception, failures: int) -> None:
            attempts[0] = failures
            if needs_new_connection(error):
                pool = getattr(self.client, "connection_pool", None)
                if pool is not None:  # idle connections only: others may be in use elsewhere
                    await pool.disconnect(inuse_connections=False)

        try:
            return await self.retry.async_retry().call_with_retry(
                lambda: self._attempt(work), failed, is_transient, with_failure_count=True
            )
        except REDIS_FAILURES as error:
            final = final_error(error, self.where, attempts[0])
            raise final from final.__cause__

    async def _attempt(self, work: Call | tuple[Call, ...]) -> Any:
        """Send ``work``; load the library first if needed, and once more if it vanished."""
        if self.client not in _checked_async:
            await self.ensure_library()
        try:
            return await self._deliver(work)
        except ResponseError as error:
            if not is_function_missing(error):
                raise
            await self.ensure_library()
            return await self._deliver(work, primary=True)

    async def _deliver(self, work: Call | tuple[Call, ...], primary: bool = False) -> Any:
        if isinstance(work, Call):
            return await self._send(work, primary)
        return await self._send_all(work)

    async def _send(self, call: Call, primary: bool = False) -> Any:
        """Send ``call`` once; ``primary``: never to a replica (a cluster's node just loaded)."""
        if cluster.is_cluster(self.client):
            return await cluster.asend(self.client, call, primary)
        return await self.client.execute_command(*call.command())

    async def _send_all(self, calls: Sequence[Call]) -> list[Any]:
        if cluster.is_cluster(self.client):
            return [await self._send(call) for call in calls]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.command())
        return first_error(await pipe.execute(raise_on_error=False))

    async def server_version(self) -> str | None:
        """The loaded library's version, or None when it is not loaded."""
        try:
            return as_text(await self._send(version_call()))
        except REDIS_FAILURES as error:
            if isinstance(error, ResponseError) and is_function_missing(error):
                return None
            raise translate(error, self.where) from error

    async def node_libraries(
        self, replicas: bool = True, reachable: bool = False
    ) -> list[cluster.NodeLibrary]:
        """The library on each node: every primary and replica of a cluster, else the server.

        ``reachable``: leave out cluster nodes that do not answer now instead of failing.
        """
        if not cluster.is_cluster(self.client):
            return [cluster.NodeLibrary(self.where, "server", await self.server_version())]
        try:
            return await cluster.anode_libraries(self.client, replicas, reachable)
        except REDIS_FAILURES as error:
            raise translate(error, self.where) from error

    async def load(self) -> str:
        """FUNCTION LOAD REPLACE the shipped library (on every primary of a cluster).

        On a cluster, primaries that turn out to be replicas or go away are passed over
        and the topology read again (see :func:`cluster.deploy`). Returns the version.
        """
        await self.deploy(replicas=False)
        return LIBRARY_VERSION

    async def deploy(self, replicas: bool = True) -> cluster.Deployment:
        """FUNCTION LOAD REPLACE the shipped library, and on a cluster wait until every
        node (primaries only unless ``replicas``) has it, following topology changes.

        What was loaded, verified and passed over is returned, for ``load`` to report.
        """
        try:
            if cluster.is_cluster(self.client):
                return await cluster.adeploy(self.client, replicas)
            await self.client.function_load(library_source(), replace=True)
        except REDIS_FAILURES as error:
            refuse_load(error, self.where)
        node = cluster.NodeLibrary(self.where, "server", LIBRARY_VERSION)
        return cluster.Deployment((self.where,), (node,), ())

    async def ensure_library(self) -> None:
        """Make sure the server (every primary of a cluster) runs a compatible library.

        Ours is loaded where it is missing or older.
        """
        versions = [node.version for node in await self.node_libraries(replicas=False)]
        if needs_load(versions, self.where):
            await self.load()
        _checked_async.add(self.client)
