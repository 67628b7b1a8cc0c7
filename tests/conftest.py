"""Fixtures: real redis-server processes started by the suite, on free loopback ports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redis_chat_history import library_source, session_keys
from redis_chat_history.local_server import LocalRedis, start_redis, stop_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """One plain Redis for the whole run (tests isolate themselves by flushing)."""
    server = start_redis()
    yield server
    stop_redis(server)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalRedis]:
    """A redis-server of the test module's own, for tests that change its users or config."""
    started = start_redis()
    yield started
    stop_redis(started)


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> Iterator[str]:
    """The URL of a freshly flushed server (data and functions)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.function_flush()
    client.close()
    yield redis_server.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client (bytes replies) on the flushed server."""
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def loaded(client: redis.Redis) -> redis.Redis:
    """A raw client on a server with the shipped library loaded."""
    client.function_load(library_source(), replace=True)
    return client


def source_with_version(version: str) -> str:
    """The shipped library's source relabelled as ``version`` (an older or newer release)."""
    source, replaced = re.subn(
        r"^local LIBRARY_VERSION = '[^']+'$",
        f"local LIBRARY_VERSION = '{version}'",
        library_source(),
        flags=re.MULTILINE,
    )
    assert replaced == 1
    return source


def load_library_as(client: redis.Redis, version: str) -> None:
    """Load the shipped library relabelled as ``version``."""
    client.function_load(source_with_version(version), replace=True)


class RawSession:
    """Calls the library through raw FCALL, the way another language would."""

    def __init__(self, client: redis.Redis, prefix: str, session_id: str) -> None:
        self.client = client
        self.keys = session_keys(prefix, session_id)

    def call(self, function: str, *args: Any, read_only: bool = False) -> Any:
        send = self.client.fcall_ro if read_only else self.client.fcall
        return send(f"chathist_{function}", len(self.keys), *self.keys, *args)


@pytest.fixture
def raw(loaded: redis.Redis) -> RawSession:
    """A raw FCALL view of session "s1" under prefix "chat:"."""
    return RawSession(loaded, "chat:", "s1")
