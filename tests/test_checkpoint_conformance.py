"""langgraph-checkpoint-conformance 0.0.2 against RedisChatSaver on a real Redis 7: with the
shipped library, and with one whose read and drop budgets are tiny, so that every get and
list goes on through chathist_cp_more and every drop takes steps."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
import redis

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from conftest import checkpoint_library
from redis_chat_history.checkpoint import RedisChatSaver

CAPABILITIES = [
    "put",
    "put_writes",
    "get_tuple",
    "list",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
]


TINY = {"READ_ENTRIES": 1, "READ_BYTES": 1, "READ_STEP": 1, "DROP_FIELDS": 2}


@pytest.mark.parametrize("budgets", ["shipped", "tiny"])
@pytest.mark.parametrize("capability", CAPABILITIES)
async def test_conformance(redis_url: str, capability: str, budgets: str) -> None:
    """Every test of the capability passes, none skipped."""
    if budgets == "tiny":
        client = redis.Redis.from_url(redis_url)
        client.function_load(checkpoint_library(**TINY), replace=True)
        client.close()

    @checkpointer_test(name="RedisChatSaver")
    async def saver() -> AsyncGenerator[RedisChatSaver, None]:
        yield RedisChatSaver(redis_url)

    report = await validate(saver, capabilities={capability}, progress=ProgressCallbacks.quiet())
    result = report.results[capability]
    assert result.detected, f"{capability} not detected"
    assert result.passed, result.failures
    assert result.tests_failed == 0 and result.tests_passed > 0
