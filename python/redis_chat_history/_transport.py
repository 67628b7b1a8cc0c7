"""Sending protocol calls: FCALL with load-on-first-use, retry on a missing library,
and translation of redis-py errors into the package's own exceptions.

The sync and async executors differ only in ``await``; the decisions (what an
error means, whether the server's library will do) are shared functions.
"""

from __future__ import annotations

import weakref
from functools import cached_property
from typing import Any, NoReturn

import redis
import redis.asyncio
from redis.exceptions import NoPermissionError, ResponseError

from ._errors import (
    ChatHistoryError,
    InvalidInputError,
    LibraryError,
    LibraryIncompatibleError,
    RedisUnavailableError,
    ServerError,
)
from ._library import library_source
from ._protocol import LIBRARY_VERSION, Call, as_text, check_compatible, error_code, version_call

_FUNCTION_MISSING = "function not found"
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


def is_function_missing(error: ResponseError) -> bool:
    """True when Redis says the called function does not exist (library not loaded)."""
    return _FUNCTION_MISSING in str(error).lower()


def translate(error: Exception, where: str) -> ChatHistoryError:
    """The package's exception for a redis-py error raised while talking to ``where``."""
    if isinstance(error, ChatHistoryError):
        return error
    if isinstance(error, redis.AuthenticationError):
        return RedisUnavailableError(f"Redis at {where} refused the credentials: {error}")
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return RedisUnavailableError(
            f"no Redis answered at {where} ({error}); start one or pass --url / redis_url"
        )
    if isinstance(error, NoPermissionError):
        return ServerError(f"Redis at {where} denied the call to this user: {error}")
    if isinstance(error, ResponseError):
        coded = error_code(str(error))
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


class SyncTransport:
    """Runs protocol calls on a sync redis-py client (standalone or cluster)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @cached_property
    def where(self) -> str:
        """Where the client connects, for messages; worked out only when one is needed."""
        return describe(self.client)

    def run(self, call: Call) -> Any:
        """Send ``call``; load the library first if needed, and once more if it vanished."""
        try:
            if self.client not in _checked_sync:
                self.ensure_library()
            try:
                return self._send(call)
            except ResponseError as error:
                if not is_function_missing(error):
                    raise
                self.ensure_library()
                return self._send(call)
        except ChatHistoryError:
            raise
        except Exception as error:
            raise translate(error, self.where) from error

    def _send(self, call: Call) -> Any:
        send = self.client.fcall_ro if call.read_only else self.client.fcall
        return send(call.function, len(call.keys), *call.keys, *call.args)

    def server_version(self) -> str | None:
        """The loaded library's version, or None when it is not loaded."""
        try:
            return as_text(self._send(version_call()))
        except Exception as error:
            if isinstance(error, ResponseError) and is_function_missing(error):
                return None
            raise translate(error, self.where) from error

    def load(self) -> str:
        """FUNCTION LOAD REPLACE the shipped library; returns the version now loaded."""
        try:
            self.client.function_load(library_source(), replace=True)
        except Exception as error:
            refuse_load(error, self.where)
        return LIBRARY_VERSION

    def ensure_library(self) -> None:
        """Make sure the server runs a compatible library, loading ours if missing or older."""
        version = self.server_version()
        if version is None or judge_version(version, self.where):
            self.load()
        _checked_sync.add(self.client)


class AsyncTransport:
    """Runs protocol calls on a ``redis.asyncio`` client; the twin of SyncTransport."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @cached_property
    def where(self) -> str:
        """Where the client connects, for messages; worked out only when one is needed."""
        return describe(self.client)

    async def run(self, call: Call) -> Any:
        """Send ``call``; load the library first if needed, and once more if it vanished."""
        try:
            if self.client not in _checked_async:
                await self.ensure_library()
            try:
                return await self._send(call)
            except ResponseError as error:
                if not is_function_missing(error):
                    raise
                await self.ensure_library()
                return await self._send(call)
        except ChatHistoryError:
            raise
        except Exception as error:
            raise translate(error, self.where) from error

    async def _send(self, call: Call) -> Any:
        send = self.client.fcall_ro if call.read_only else self.client.fcall
        return await send(call.function, len(call.keys), *call.keys, *call.args)

    async def server_version(self) -> str | None:
        """The loaded library's version, or None when it is not loaded."""
        try:
            return as_text(await self._send(version_call()))
        except Exception as error:
            if isinstance(error, ResponseError) and is_function_missing(error):
                return None
            raise translate(error, self.where) from error

    async def load(self) -> str:
        """FUNCTION LOAD REPLACE the shipped library; returns the version now loaded."""
        try:
            await self.client.function_load(library_source(), replace=True)
        except Exception as error:
            refuse_load(error, self.where)
        return LIBRARY_VERSION

    async def ensure_library(self) -> None:
        """Make sure the server runs a compatible library, loading ours if missing or older."""
        version = await self.server_version()
        if version is None or judge_version(version, self.where):
            await self.load()
        _checked_async.add(self.client)
