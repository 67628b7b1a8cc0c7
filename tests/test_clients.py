"""Shared clients: redis-py options passed through, and no network I/O under the global lock."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from redis_chat_history import RedisChatMessageHistory, RedisTimeoutError


def fresh(url: str) -> str:
    """``url`` with a query no other test uses, so the shared client is this test's own."""
    return f"{url}?client_name=t{time.monotonic_ns()}"


def client_names(client: redis.Redis) -> list[str]:
    return [entry.get("name", "") for entry in client.client_list()]


def test_options_reach_the_redis_client(redis_url: str, client: redis.Redis) -> None:
    history = RedisChatMessageHistory(
        "s", redis_url=redis_url, client_name="rch-options", socket_timeout=2.5
    )
    history.add_user_message("hello")
    assert "rch-options" in client_names(client)
    assert history.redis_client.connection_pool.connection_kwargs["socket_timeout"] == 2.5


async def test_options_reach_the_async_client(redis_url: str, client: redis.Redis) -> None:
    history = RedisChatMessageHistory("s", redis_url=redis_url, client_name="rch-async-options")
    await history.aadd_messages([])
    assert await history.alen() == 0
    assert "rch-async-options" in client_names(client)


def test_histories_with_other_options_get_other_clients(redis_url: str) -> None:
    first = RedisChatMessageHistory("s", redis_url=redis_url, client_name="one")
    same = RedisChatMessageHistory("t", redis_url=redis_url, client_name="one")
    other = RedisChatMessageHistory("s", redis_url=redis_url, client_name="two")
    assert first.redis_client is same.redis_client
    assert first.redis_client is not other.redis_client


def test_a_wrong_option_type_propagates_as_itself(redis_url: str) -> None:
    """A TypeError from bad usage is not dressed up as a Redis error."""
    history = RedisChatMessageHistory("s", redis_url=fresh(redis_url), socket_timeout="soon")
    with pytest.raises(TypeError):
        history.add_user_message("never sent")


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A TCP port that accepts connections (into its backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_silent_server_does_not_hold_up_clients_of_other_urls(
    silent_url: str, redis_url: str
) -> None:
    stuck = RedisChatMessageHistory("s", redis_url=silent_url, socket_timeout=2, retry=None)
    failures: list[BaseException] = []

    def wait_on_silence() -> None:
        try:
            len(stuck)
        except RedisTimeoutError as error:
            failures.append(error)

    waiting = threading.Thread(target=wait_on_silence)
    waiting.start()
    time.sleep(0.3)  # the other thread is now waiting for the silent server's INFO reply
    assert waiting.is_alive()
    started = time.monotonic()
    history = RedisChatMessageHistory("s", redis_url=fresh(redis_url))
    history.add_user_message("not held up")
    assert len(history) == 1
    assert time.monotonic() - started < 1.5, "client creation waited for another URL's I/O"
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert len(failures) == 1


def test_two_threads_making_one_client_share_the_first(redis_url: str) -> None:
    url = fresh(redis_url)
    barrier = threading.Barrier(8)
    made: list[object] = []

    def make() -> None:
        barrier.wait()
        made.append(RedisChatMessageHistory("s", redis_url=url).redis_client)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(made) == 8
    shared = RedisChatMessageHistory("s", redis_url=url).redis_client
    assert shared in made
    assert shared.ping()
