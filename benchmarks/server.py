"""The Redis a benchmark runs against: a throwaway local redis-server, or one given by URL."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import Any

import redis

from redis_chat_history.local_server import LocalRedis, start_redis, stop_redis

from .measure import GC_LIBRARY


@contextmanager
def bench_server(
    url: str | None, prefixes: tuple[str, ...], start: Callable[[], LocalRedis] = start_redis
) -> Iterator[str]:
    """Yield a server URL: ``url`` (keys under ``prefixes`` deleted after), or a throwaway one
    (made by ``start``: by default a plain redis-server).

    The throwaway server runs with no persistence and is stopped (and its directory
    removed) at the end, whatever happens.
    """
    if url:
        try:
            yield url
        finally:
            client = redis.Redis.from_url(url)
            with suppress(redis.ResponseError):
                client.function_delete(GC_LIBRARY)
            for prefix in prefixes:
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.unlink(key)
            client.close()
        return
    server = start()
    try:
        yield server.url
    finally:
        stop_redis(server)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_environment(client: redis.Redis, library: str | None) -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    info: dict[str, Any] = client.info("server")
    return {
        "redis_server": info.get("redis_version"),
        "valkey_server": info.get("valkey_version"),  # Valkey says redis_version 7.2.4
        "chathist_library": library,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        # How busy the machine was (other processes inflate wall times, not the counts).
        "load_average_1_5_15_min": list(os.getloadavg()),
        "packages": {
            name: _version(name)
            for name in (
                "redis",
                "langchain-core",
                "langchain-community",
                "langchain-redis",
                "langgraph-checkpoint-redis",
                "matplotlib",
            )
        },
    }
