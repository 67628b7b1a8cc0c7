"""Shared redis-py clients, one per URL, so histories built per request reuse one pool.

A URL leads to one of three kinds of client:

- ``redis+sentinel://`` / ``rediss+sentinel://``: a Sentinel-managed client of the
  service's primary (the format langchain-community and RedisVL accept);
- ``redis://`` / ``rediss://`` of a Redis Cluster node: a cluster client, found out
  with one ``INFO cluster`` the first time the URL is used in the process;
- any other ``redis://``, ``rediss://`` or ``unix://`` URL: a plain client.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.cluster import LoadBalancingStrategy
from redis.connection import parse_url
from redis.exceptions import RedisClusterException

from ._errors import ServerError
from ._retry import no_async_client_retry, no_client_retry
from ._transport import describe, translate

DEFAULT_URL = "redis://localhost:6379"

# Guards the dicts below only: no network I/O is ever done while it is held.
_lock = threading.Lock()
# A client's key: URL, reads from replicas, and the redis-py options it was made with.
ClientKey = tuple[str, bool, tuple[tuple[str, Any], ...]]
_sync_clients: dict[ClientKey, Any] = {}
_async_clients: dict[tuple[ClientKey, int], tuple[weakref.ref[asyncio.AbstractEventLoop], Any]] = {}
# Whether the server of a redis:// URL is a cluster node, found out once per process.
_cluster_urls: dict[str, bool] = {}
# URLs whose user may not run INFO: taken for plain servers, which they may not be.
_unprobed_urls: set[str] = set()

SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_SENTINEL_SERVICE = "mymaster"
#: Reads from replicas: round robin over a slot's replicas (the primary when it has none).
REPLICA_READS = LoadBalancingStrategy.ROUND_ROBIN_REPLICAS


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


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased (``""`` when it has none)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return int(info.get("cluster_enabled", 0)) == 1


def is_cluster(url: str, client: Any) -> bool:
    """Whether the server of ``url`` is a Redis Cluster node, asked once per process.

    ``client`` is a plain client of ``url`` (the one that serves it if it is no
    cluster). A server that refuses INFO to this user is taken for a plain server.
    When nothing answers, the answer is "no" for now and it is asked again next time:
    the plain client's call then fails (or is retried) as any other call would.
    """
    known = _cluster_urls.get(url)
    if known is not None:
        return known
    try:
        reply = client.info("cluster")
    except redis.RedisError as error:
        return _remember_probe(url, None, error)
    return _remember_probe(url, reply, None)


async def ais_cluster(url: str, client: Any) -> bool:
    """Async twin of :func:`is_cluster`."""
    known = _cluster_urls.get(url)
    if known is not None:
        return known
    try:
        reply = await client.info("cluster")
    except redis.RedisError as error:
        return _remember_probe(url, None, error)
    return _remember_probe(url, reply, None)


def _remember_probe(url: str, reply: Any, error: redis.RedisError | None) -> bool:
    """Whether the INFO cluster reply (or the error instead) says cluster; remembered
    unless nothing answered."""
    if isinstance(error, redis.ResponseError):
        _unprobed_urls.add(url)  # INFO refused to this user: taken for a plain server
        known = False
    elif error is not None:
        return False
    else:
        known = _cluster_enabled(reply)
    _cluster_urls[url] = known
    return known


def sentinel_settings(
    url: str,
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """The parts of a Sentinel URL: sentinels, service, client and sentinel options.

    ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...][/service[/db]]``
    (``rediss+sentinel://`` for TLS to both). The user and password serve the primary
    and the sentinels, unless ``?sentinel_password=`` gives the sentinels their own
    (empty: none); other query options are redis-py's, as in any Redis URL.
    """
    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    sentinels = [_host_port(item) for item in hosts.split(",") if item]
    if not sentinels:
        raise ValueError("a Sentinel URL names at least one sentinel host")
    service, _, db = path.strip("/").partition("/")
    tls = scheme.lower() == "rediss+sentinel"
    pairs = parse_qsl(query, keep_blank_values=True)
    sentinel_password = next((v for k, v in pairs if k == "sentinel_password"), None)
    query = urlencode([(k, v) for k, v in pairs if k != "sentinel_password"])
    options: dict[str, Any] = parse_url(  # type: ignore[no-untyped-call]
        f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}sentinel/"
        f"{db or 0}{'?' + query if query else ''}"
    )
    options.pop("host", None)
    options.pop("connection_class", None)
    sentinel_options: dict[str, Any] = {
        key: value
        for key, value in options.items()
        if key.startswith(("socket_", "ssl_")) or key in ("username", "password")
    }
    if sentinel_password is not None:
        sentinel_options["password"] = sentinel_password or None
    if tls:
        options["ssl"] = sentinel_options["ssl"] = True
    return sentinels, service or DEFAULT_SENTINEL_SERVICE, options, sentinel_options


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or host.endswith("[") or (item.startswith("[") and not host.endswith("]")):
        host, port = item, ""
    return host.strip("[]"), int(port) if port else DEFAULT_SENTINEL_PORT


def open_sync(url: str, read_from_replicas: bool = False, **kwargs: Any) -> Any:
    """A new sync client for ``url``: Sentinel-managed, cluster or plain (see the module).

    ``read_from_replicas`` sends a cluster client's reads to replicas; a plain or
    Sentinel-managed client always reads from the primary.
    """
    if scheme_of(url) in SENTINEL_SCHEMES:
        sentinels, service, options, sentinel_options = sentinel_settings(url)
        ssl = options.pop("ssl", False)
        manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            sentinels, sentinel_kwargs=sentinel_options
        )
        if ssl:
            options["connection_class"] = redis.sentinel.SentinelManagedSSLConnection
        return manager.master_for(service, **options, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    plain = redis.Redis.from_url(url, **kwargs)
    if scheme_of(url) not in ("redis", "rediss") or not is_cluster(url, plain):
        return plain
    where = describe(plain)
    plain.close()
    if read_from_replicas:
        kwargs["load_balancing_strategy"] = REPLICA_READS
    try:
        return redis.cluster.RedisCluster.from_url(url, **kwargs)
    except redis.RedisError as error:
        raise translate(error, where) from error
    except RedisClusterException as error:
        raise ServerError(
            f"Redis at {where} is a Redis Cluster node, but the cluster could not be read "
            f"({error}); the Redis user needs CLUSTER SLOTS, CLUSTER NODES, COMMAND and INFO "
            "(docs/operations.md: Running on Redis Cluster)"
        ) from error


def cluster_unknown(url: str) -> bool:
    """Whether ``url``'s user may not run INFO, so a cluster could not be told apart."""
    return url in _unprobed_urls


async def open_async(url: str, read_from_replicas: bool = False, **kwargs: Any) -> Any:
    """A new ``redis.asyncio`` client for ``url``; see :func:`open_sync`."""
    if scheme_of(url) in SENTINEL_SCHEMES:
        sentinels, service, options, sentinel_options = sentinel_settings(url)
        ssl = options.pop("ssl", False)
        manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            sentinels, sentinel_kwargs=sentinel_options
        )
        if ssl:
            options["connection_class"] = redis.asyncio.sentinel.SentinelManagedSSLConnection
        return manager.master_for(service, **options, **kwargs)
    plain = redis.asyncio.Redis.from_url(url, **kwargs)
    if scheme_of(url) not in ("redis", "rediss") or not await ais_cluster(url, plain):
        return plain
    await plain.aclose()
    if read_from_replicas:
        kwargs["load_balancing_strategy"] = REPLICA_READS
    return redis.asyncio.cluster.RedisCluster.from_url(url, **kwargs)


def client_key(url: str, read_from_replicas: bool, options: dict[str, Any]) -> ClientKey:
    """The key under which a shared client is kept: clients made with other redis-py
    options (timeouts, TLS files, a client name) are other clients."""

    def hashable(value: Any) -> Any:
        try:
            hash(value)
        except TypeError:
            return ("unhashable", id(value))
        return value

    return (url, read_from_replicas, tuple(sorted((k, hashable(v)) for k, v in options.items())))


def sync_client(url: str, read_from_replicas: bool = False, **options: Any) -> Any:
    """The process-wide sync client for ``url`` and redis-py ``options`` (made on first use).

    No round trip, except one ``INFO cluster`` for a ``redis://`` URL the first time
    (and a cluster client's discovery of the nodes). That I/O happens outside any lock,
    so a slow or unreachable server never holds up clients of other URLs; when two
    threads make the same client at once, the first one stored wins and the other is
    closed. The client itself never retries (unless ``options`` give it a ``retry``):
    histories retry by their own policy, and only calls that are safe to repeat.
    """
    key = client_key(url, read_from_replicas, options)
    with _lock:
        client = _sync_clients.get(key)
    if client is not None:
        return client
    client = open_sync(url, read_from_replicas, **{"retry": no_client_retry(), **options})
    if not _settled(url):
        return client
    with _lock:
        shared = _sync_clients.setdefault(key, client)
    if shared is not client:
        client.close()  # another thread made one meanwhile
    return shared


async def async_client(url: str, read_from_replicas: bool = False, **options: Any) -> Any:
    """The ``redis.asyncio`` client for ``url`` and ``options`` on the running event loop.

    Async connections belong to one event loop, so clients are shared per loop;
    clients of loops that have closed are dropped when a new one is made. Whether
    the URL leads to a cluster is found out once per process.
    """
    loop = asyncio.get_running_loop()
    key = (client_key(url, read_from_replicas, options), id(loop))
    with _lock:
        entry = _async_clients.get(key)
        if entry is not None and entry[0]() is loop:
            return entry[1]
        for stale in [k for k, (ref, _) in _async_clients.items() if _is_gone(ref)]:
            del _async_clients[stale]
    client = await open_async(
        url, read_from_replicas, **{"retry": no_async_client_retry(), **options}
    )
    with _lock:
        entry = _async_clients.get(key)
        if entry is None or entry[0]() is not loop:
            if _settled(url):
                _async_clients[key] = (weakref.ref(loop), client)
            return client
    await client.aclose()  # another task of this loop made one meanwhile
    return entry[1]


def _settled(url: str) -> bool:
    """Whether the kind of client for ``url`` is known for good (it was asked, if needed)."""
    return scheme_of(url) not in ("redis", "rediss") or url in _cluster_urls


def _is_gone(loop_ref: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    loop = loop_ref()
    return loop is None or loop.is_closed()
