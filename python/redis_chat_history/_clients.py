"""Shared redis-py clients, one per URL, so histories built per request reuse one pool."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio

from ._retry import no_async_client_retry, no_client_retry

DEFAULT_URL = "redis://localhost:6379"

_lock = threading.Lock()
_sync_clients: dict[str, redis.Redis] = {}
_async_clients: dict[tuple[str, int], tuple[weakref.ref[asyncio.AbstractEventLoop], Any]] = {}


def default_url() -> str:
    """``$REDIS_URL`` when set, else ``redis://localhost:6379``."""
    return os.environ.get("REDIS_URL") or DEFAULT_URL


_SECRET_QUERY_KEYS = frozenset({"password", "sentinel_password"})


def redact_url(url: str) -> str:
    """The URL with every password (userinfo or query) replaced by ``***``, fit for output."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{parts.username or ''}:***@{host}"
        query = urlencode(
            [
                (name, "***" if name.lower() in _SECRET_QUERY_KEYS else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
    except ValueError:
        return "<unparsable Redis URL>"
    redacted = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if "://" in url and "://" not in redacted:  # unix:///path loses its empty authority
        redacted = redacted.replace(":", "://", 1)
    return redacted


def sync_client(url: str) -> redis.Redis:
    """The process-wide sync client for ``url`` (created on first use, no round trip).

    The client itself never retries: histories retry by their own policy, and only
    calls that are safe to repeat.
    """
    with _lock:
        client = _sync_clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url, retry=no_client_retry())
            _sync_clients[url] = client
        return client


def async_client(url: str) -> Any:
    """The ``redis.asyncio`` client for ``url`` on the running event loop.

    Async connections belong to one event loop, so clients are shared per loop;
    clients of loops that have closed are dropped when a new one is made.
    """
    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    with _lock:
        entry = _async_clients.get(key)
        if entry is not None and entry[0]() is loop:
            return entry[1]
        for stale in [k for k, (ref, _) in _async_clients.items() if _is_gone(ref)]:
            del _async_clients[stale]
        client = redis.asyncio.Redis.from_url(url, retry=no_async_client_retry())
        _async_clients[key] = (weakref.ref(loop), client)
        return client


def _is_gone(loop_ref: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    loop = loop_ref()
    return loop is None or loop.is_closed()
