"""Shared redis-py clients, one per URL, so histories built per request reuse one pool."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

DEFAULT_URL = "redis://localhost:6379"

_lock = threading.Lock()
_sync_clients: dict[str, redis.Redis] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def default_url() -> str:
    """``$REDIS_URL`` when set, else ``redis://localhost:6379``."""
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for errors, logs and output."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sync_client(url: str) -> redis.Redis:
    """The process-wide sync client for ``url`` (created on first use, no round trip)."""
    with _lock:
        client = _sync_clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url)
            _sync_clients[url] = client
        return client


def async_client(url: str) -> Any:
    """The ``redis.asyncio`` client for ``url`` on the running event loop.

    Async connections belong to one event loop, so clients are shared per loop.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async_clients.setdefault(loop, {})
        client = per_loop.get(url)
        if client is None:
            client = redis.asyncio.Redis.from_url(url)
            per_loop[url] = client
        return client
