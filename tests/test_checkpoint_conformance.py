"""langgraph-checkpoint-conformance 0.0.2 against RedisChatSaver on a real Redis 7."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

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


@pytest.mark.parametrize("capability", CAPABILITIES)
async def test_conformance(redis_url: str, capability: str) -> None:
    """Every test of the capability passes, none skipped."""

    @checkpointer_test(name="RedisChatSaver")
    async def saver() -> AsyncGenerator[RedisChatSaver, None]:
        yield RedisChatSaver(redis_url)

    report = await validate(saver, capabilities={capability}, progress=ProgressCallbacks.quiet())
    result = report.results[capability]
    assert result.detected, f"{capability} not detected"
    assert result.passed, result.failures
    assert result.tests_failed == 0 and result.tests_passed > 0
