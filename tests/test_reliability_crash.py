"""A server killed with SIGKILL in the middle of writes, then restarted on its own files.

With ``appendonly yes`` and ``appendfsync always``, Redis writes every call to the AOF
and fsyncs it before replying, so after ``kill -9`` and a restart the chathist library is
still loaded and every acknowledged message is there, in order, once. The one call that
was in flight when the server died may or may not be there (its writer never heard back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from langchain_core.messages import HumanMessage

from redis_chat_history import ChatHistoryError, RedisChatMessageHistory
from redis_chat_history.local_server import LocalRedis, start_redis, stop_redis

DURABLE = ["--appendonly", "yes", "--appendfsync", "always"]
WRITERS = 4
#: Acknowledged appends to wait for before the kill.
BEFORE_KILL = 400


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[LocalRedis]:
    server = start_redis(DURABLE, directory=tmp_path)
    yield server
    stop_redis(server, remove_directory=False)


def kill_and_restart(server: LocalRedis) -> LocalRedis:
    """SIGKILL the server (no shutdown, no final fsync), then start it on the same files."""
    server.process.kill()
    server.process.wait()
    return start_redis(DURABLE, port=server.port, directory=server.directory)


def library_names(url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return [
            dict(zip(lib[0::2], lib[1::2], strict=True))[b"library_name"]
            for lib in client.function_list()
        ]
    finally:
        client.close()


def test_library_survives_a_kill_right_after_it_was_loaded(durable: LocalRedis) -> None:
    assert len(RedisChatMessageHistory("s", redis_url=durable.url)) == 0  # loads it
    restarted = kill_and_restart(durable)
    try:
        assert library_names(restarted.url) == [b"chathist"]
    finally:
        stop_redis(restarted, remove_directory=False)


def test_every_acknowledged_message_survives_kill_9_mid_load(durable: LocalRedis) -> None:
    acknowledged: list[list[str]] = [[] for _ in range(WRITERS)]
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        history = RedisChatMessageHistory(f"s{worker % 2}", redis_url=durable.url, retry=None)
        try:
            for number in range(100_000):
                content = f"w{worker} n{number}"
                history.add_messages([HumanMessage(content), HumanMessage(content + " reply")])
                acknowledged[worker].append(content)
        except ChatHistoryError as error:
            failures.append(error)

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acknowledged)) < BEFORE_KILL:
        assert time.monotonic() < deadline, "writers too slow"
        time.sleep(0.005)
    restarted = kill_and_restart(durable)
    for thread in threads:
        thread.join(10)
    assert len(failures) == WRITERS, "every writer was cut off by the kill"
    try:
        assert library_names(restarted.url) == [b"chathist"]
        for session in ("s0", "s1"):
            stored = [
                str(m.content)
                for m in RedisChatMessageHistory(session, redis_url=restarted.url).messages
            ]
            assert len(stored) == len(set(stored)), "nothing stored twice"
            for worker in range(session == "s1", WRITERS, 2):
                mine = [
                    c for c in stored if c.startswith(f"w{worker} ") and not c.endswith("reply")
                ]
                sent = acknowledged[worker]
                assert mine[: len(sent)] == sent, f"writer {worker}: every acknowledged message"
                assert len(mine) - len(sent) <= 1, "at most the one call in flight in addition"
                replies = [c for c in stored if c.startswith(f"w{worker} ") and c.endswith("reply")]
                assert replies == [c + " reply" for c in mine], "each call all or nothing"
        assert sum(map(len, acknowledged)) >= BEFORE_KILL
    finally:
        stop_redis(restarted, remove_directory=False)
