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

    def search_paged(
        self,
        query: str,
        *args: Any,
        limit: int = 10,
        mode: str = "all",
        before: str | bytes | None = None,
    ) -> PagedSearch:
        """A search followed through its PAGED replies to the end, as a client does it:
        ALL mode asks each next call for the hits still missing; ANY mode keeps the best
        ``limit`` and tells the server the score an older hit must beat (MINSCORE)."""
        result = PagedSearch()
        hits: list[tuple[bytes, bytes, int]] = []
        if isinstance(before, str):
            before = before.encode()
        while True:
            call = [query, "MODE", mode, *args, "PAGED"]
            if mode == "any":
                floor = hits[limit - 1][2] + 1 if 0 < limit <= len(hits) else 1
                call += ["LIMIT", limit, "MINSCORE", floor]
            else:
                call += ["LIMIT", limit - len(hits)]
            if before is not None:
                call += ["BEFORE", before]
            reply = self.call("search", *call, read_only=True)
            result.calls += 1
            page = [(reply[i], reply[i + 1], int(reply[i + 2])) for i in range(1, len(reply), 3)]
            if mode == "any":
                merged = {hit[0]: hit for hit in [*hits, *page]}
                hits = sorted(merged.values(), key=lambda hit: (-hit[2], *_id_key(hit[0], -1)))
                hits = hits[:limit]
            else:
                hits = page + hits
            if not reply[0]:
                break
            assert before is None or _id_key(reply[0]) < _id_key(before), "no progress"
            before = reply[0]
        result.hits = hits
        return result


def _id_key(stream_id: bytes, sign: int = 1) -> tuple[int, int]:
    ms, _, seq = stream_id.decode().partition("-")
    return sign * int(ms), sign * int(seq or 0)


class PagedSearch:
    """What a search followed to its end found: hits (id, json, score), and the calls it took."""

    def __init__(self) -> None:
        self.hits: list[tuple[bytes, bytes, int]] = []
        self.calls = 0


@pytest.fixture
def raw(loaded: redis.Redis) -> RawSession:
    """A raw FCALL view of session "s1" under prefix "chat:"."""
    return RawSession(loaded, "chat:", "s1")


def checkpoint_library(count_work: bool = False, **budgets: int) -> str:
    """The shipped library with checkpoint budgets changed (``READ_ENTRIES=3``, ...) and,
    with ``count_work``, its work counter on (replies carry what each call touched)."""
    source = library_source()
    for name, value in budgets.items():
        source, replaced = re.subn(
            rf"^CP\.{name} = \d+$", f"CP.{name} = {value}", source, flags=re.M
        )
        assert replaced == 1, name
    if count_work:
        source, replaced = re.subn(
            r"^local COUNT_WORK = false", "local COUNT_WORK = true", source, flags=re.M
        )
        assert replaced == 1
    return source
