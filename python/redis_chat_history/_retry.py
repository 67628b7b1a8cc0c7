"""Which failures are worth another try, and how long to wait between tries.

A :class:`RetryPolicy` is a number of retries and a backoff from ``redis.backoff``;
it builds redis-py's own ``redis.retry.Retry`` (sync) and ``redis.asyncio.retry.Retry``
(async), which do the waiting. Only transient failures are retried: the connection
dropped or timed out, the server is loading its data (``LOADING``), busy running a
script (``BUSY``), or a read-only replica (``READONLY``, as after a failover, until
the address leads to the new primary). Everything else (bad input, ``OOM``,
``NOPERM``, wrong password, an untrusted TLS certificate) fails at once.

Retrying an append is safe because every append carries a token (``TOKEN``) and the
library replays the reply of a write whose token it has seen (the latest 64 or
more per session), so an append whose first attempt was stored but whose reply was lost is not
stored twice. Messages that carry a client id (``data.id``) are also stored at most once
per session.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio.retry
import redis.retry
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from ._errors import ChatHistoryError

#: Most retries a policy may ask for: enough for any real outage, never an endless loop.
MAX_RETRIES = 100


def _default_backoff() -> AbstractBackoff:
    return ExponentialWithJitterBackoff(cap=1.0, base=0.05)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to retry a call after a transient failure, and how long to wait.

    ``retries`` is the number of further attempts after the first (0: never retry).
    ``backoff`` is any ``redis.backoff`` class; the default waits a random time of up
    to 0.1 s, 0.2 s, 0.4 s ... before retry 1, 2, 3 ..., never more than 1 s, so the
    default three retries give up within about 0.7 s of waiting.
    """

    retries: int = 3
    backoff: AbstractBackoff = field(default_factory=_default_backoff)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.retries, int)
            or isinstance(self.retries, bool)
            or not 0 <= self.retries <= MAX_RETRIES
        ):
            raise ValueError(f"retries must be an integer from 0 to {MAX_RETRIES}")
        if not isinstance(self.backoff, AbstractBackoff):
            raise ValueError("backoff must be a redis.backoff class, e.g. ExponentialBackoff()")

    def sync_retry(self) -> Any:
        """This policy as a ``redis.retry.Retry`` covering every transient failure."""
        return redis.retry.Retry(self.backoff, self.retries, _CAUGHT)

    def async_retry(self) -> Any:
        """This policy as a ``redis.asyncio.retry.Retry`` covering every transient failure."""
        return redis.asyncio.retry.Retry(self.backoff, self.retries, _CAUGHT)


#: The policy a history uses unless told otherwise.
DEFAULT_RETRY = RetryPolicy()
#: One attempt only.
NO_RETRY = RetryPolicy(retries=0, backoff=NoBackoff())

# What redis-py's Retry catches; ``is_transient`` then decides.
_CAUGHT: tuple[Any, ...] = (RedisError, ChatHistoryError, socket.timeout)
_NOT_TRANSIENT = (AuthenticationError, AuthorizationError)
# CLUSTERDOWN and TRYAGAIN pass once a failover or a slot migration completes.
_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    ReadOnlyError,
    MasterDownError,
    ClusterDownError,
    TryAgainError,
)


def is_busy(error: BaseException) -> bool:
    """True for the server's ``BUSY`` reply (a script or function is running too long)."""
    return isinstance(error, ResponseError) and str(error).startswith("BUSY ")


def is_transient(error: BaseException) -> bool:
    """Whether a failure may go away by itself, so the same call is worth another try.

    A package error is judged by the redis-py error it was made from.
    """
    if isinstance(error, ChatHistoryError):
        cause = error.__cause__
        return cause is not None and is_transient(cause)
    if isinstance(error, _NOT_TRANSIENT) or isinstance(
        error.__context__, ssl.SSLCertVerificationError
    ):
        return False  # wrong credentials or an untrusted certificate stay so
    return isinstance(error, _TRANSIENT) or is_busy(error)


def needs_new_connection(error: BaseException) -> bool:
    """Whether the next attempt should reconnect: a read-only reply means the address
    led to a replica, and only a new connection can reach the primary behind it."""
    if isinstance(error, ChatHistoryError) and error.__cause__ is not None:
        return needs_new_connection(error.__cause__)
    return isinstance(error, ReadOnlyError)


def no_client_retry() -> Any:
    """A redis-py sync ``Retry`` that never retries, for clients whose calls this package
    retries itself (so the user's policy is the only one)."""
    return redis.retry.Retry(NoBackoff(), 0)


def no_async_client_retry() -> Any:
    """The ``redis.asyncio`` twin of :func:`no_client_retry`."""
    return redis.asyncio.retry.Retry(NoBackoff(), 0)
