"""RedisChatSaver on a real 3x2 Redis Cluster: the conformance suite, and an agent
thread whose six keys live on one shard."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from redis.cluster import RedisCluster, key_slot

from local_cluster import LocalCluster, start_cluster, stop_cluster
from redis_chat_history import RedisChatMessageHistory
from redis_chat_history._checkpoint_protocol import thread_keys
from redis_chat_history.checkpoint import RedisChatSaver

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    started = start_cluster(primaries=3, replicas_per_primary=1)
    yield started
    stop_cluster(started)


async def test_conformance_on_a_cluster(cluster: LocalCluster) -> None:
    """All eight capabilities pass with the threads spread over three shards."""

    @checkpointer_test(name="RedisChatSaver (cluster)")
    async def saver() -> AsyncGenerator[RedisChatSaver, None]:
        yield RedisChatSaver(cluster.url)

    report = await validate(saver, progress=ProgressCallbacks.quiet())
    for capability, result in report.results.items():
        assert result.detected and result.passed, (capability, result.failures)


def test_a_thread_is_one_slot(cluster: LocalCluster) -> None:
    from test_checkpoint_graphs import agent, thread

    graph = agent(RedisChatSaver(cluster.url), 2)
    for turn in range(2):
        graph.invoke({"messages": [{"role": "user", "content": f"q {turn}"}]}, thread("cl"))
    keys = thread_keys("chat:", "cl")
    assert len({key_slot(key.encode()) for key in keys}) == 1
    client = RedisCluster.from_url(cluster.url)
    try:
        # (:w stays empty here: each checkpoint's record holds its writes, library 1.7)
        assert all(client.exists(key) for key in keys if not key.endswith(":w"))
    finally:
        client.close()
    history = RedisChatMessageHistory("cl", redis_url=cluster.url).messages
    assert len(history) == 8
