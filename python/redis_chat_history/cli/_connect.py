"""A fresh client and transport per command run, and errors as one line.

Every package or redis-py error becomes a one-line :class:`click.ClickException`
(exit status 1) naming where Redis was looked for, never with a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import redis

from .. import _protocol as protocol
from .._clients import open_sync, redact_url
from .._errors import ChatHistoryError, InvalidInputError
from .._retry import RetryPolicy, no_client_retry
from .._transport import SyncTransport, translate
from ._target import Target

#: Seconds to wait for a TCP connection before saying Redis is unreachable.
CONNECT_TIMEOUT = 5.0


def shown_url(url: str) -> str:
    """``url`` fit for output: password masked, query and fragment (may hold one) dropped."""
    try:
        parts = urlsplit(url)
        return redact_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    except ValueError:
        return "<unparsable Redis URL>"


@contextmanager
def friendly_errors(where: str) -> Iterator[None]:
    """Turn the package's and redis-py's errors into a one-line message and exit status 1."""
    try:
        yield
    except (ChatHistoryError, redis.RedisError) as error:
        raise click.ClickException(str(translate(error, where))) from None


def open_client(url: str) -> Any:
    """A new client for ``url`` (a cluster client for a cluster node's URL, Sentinel-managed
    for ``redis+sentinel://``), or a clear error for a malformed URL or a silent server."""
    try:
        with friendly_errors(shown_url(url)):
            return open_sync(url, socket_connect_timeout=CONNECT_TIMEOUT, retry=no_client_retry())
    except ValueError as error:
        raise click.ClickException(
            f"invalid Redis URL {shown_url(url)}: {error}; pass --url (or set REDIS_URL) "
            "like redis://[[user]:password@]host[:port][/db], rediss://..., unix:///path "
            "or redis+sentinel://host[:port][,host[:port]...]/service"
        ) from None


@contextmanager
def connected(target: Target) -> Iterator[SyncTransport]:
    """A transport on a fresh client for ``target``, closed afterwards; errors become messages."""
    client = open_client(target.url)
    transport = SyncTransport(client, RetryPolicy(retries=target.retries))
    try:
        with friendly_errors(transport.where):
            yield transport
    finally:
        client.close()


def keys_of(prefix: str, session: str) -> tuple[str, str, str]:
    """The session's keys, or a usage error naming what is wrong with SESSION or --prefix."""
    try:
        return protocol.session_keys(prefix, session)
    except InvalidInputError as error:
        raise click.UsageError(str(error)) from None
