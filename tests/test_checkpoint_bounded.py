"""The chathist_cp_* calls do bounded work, whatever the thread holds (1.4).

Raw FCALLs on a library with its work counter on (``COUNT_WORK``): a read's reply is then
``["<entries> <bytes>", reply]``, a drop's ``["<write fields deleted>", reply]``, a write's
``["<fields looked at>", reply]``. A thread of thousands of messages, checkpoints and pending
writes is read, listed and dropped to the end through continuations, and every call is checked
against the shipped budgets. Then RedisChatSaver runs on a library whose budgets are tiny, so
that every get and list goes through chathist_cp_more, and must give what it gives with the
shipped budgets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conftest import checkpoint_library
from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source

pytest.importorskip("langgraph")

from redis_chat_history.checkpoint import RedisChatSaver
from test_checkpoint_graphs import agent, thread

MESSAGES = 3000
CHECKPOINTS = 70
WRITES = 1500  # pending writes of the newest checkpoint, stored by three calls


def budget(name: str) -> int:
    found = re.search(rf"^CP\.{name} = (\d+)$", library_source(), re.M)
    assert found, name
    return int(found.group(1))


READ_ENTRIES, READ_BYTES, READ_STEP, DROP_FIELDS = (
    budget("READ_ENTRIES"),
    budget("READ_BYTES"),
    budget("READ_STEP"),
    budget("DROP_FIELDS"),
)
KEYS = cp.thread_keys("b:", "big")


def stored(i: int) -> bytes:
    return json.dumps({"type": "human", "data": {"content": f"message {i} " + "x" * 40}}).encode()


class Thread:
    """Raw calls on the big thread, each returning (work, reply)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def call(self, function: str, *args: Any, read_only: bool = False) -> tuple[Any, Any]:
        verb = "FCALL_RO" if read_only else "FCALL"
        reply = self.client.execute_command(verb, function, len(KEYS), *KEYS, *args)
        return reply[0].decode(), reply[1]


@pytest.fixture(scope="module")
def big(redis_server: Any) -> Iterator[tuple[Thread, list[bytes], list[bytes]]]:
    """A thread of 3000 messages, 70 checkpoints (each a run from the first message), and
    1500 pending writes on the newest; the stream ids and the members, oldest first."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.function_load(checkpoint_library(count_work=True), replace=True)
    ids: list[bytes] = []
    for first in range(0, MESSAGES, 500):
        batch = [stored(i) for i in range(first, first + 500)]
        ids += client.execute_command("FCALL", "chathist_append", 3, *KEYS[:3], "MESSAGES", *batch)
    members = []
    for n in range(CHECKPOINTS):
        end = ids[(n + 1) * MESSAGES // CHECKPOINTS - 1].decode()
        header = f"Mmessages\t{ids[0].decode()}..{end}\n"
        record = f"{len(header)}\n{header}payload {n}"
        name = cp.member("", f"c{n:03d}")
        client.execute_command("FCALL", "chathist_cp_put", 6, *KEYS, "CHECKPOINT", name, record)
        members.append(name)
    thread_calls = Thread(client)
    for first in range(0, WRITES, 500):
        args: list[Any] = []
        for i in range(first, first + 500):
            args += [f"task{i}", 0, "", "ch", f"value {i}"]
        work, added = thread_calls.call("chathist_cp_writes", "WRITES", members[-1], 500, *args)
        assert added == 500
        assert int(work) == 501  # its own writes and the count, not the 1000 stored before
    yield thread_calls, ids, members
    client.function_flush()
    client.flushall()
    client.close()


def assert_read_bounded(work: str) -> None:
    entries, read = map(int, work.split())
    assert entries <= READ_ENTRIES, work
    # bytes are checked between steps: one step (64 entries of about 60 bytes here) past
    assert read <= READ_BYTES + READ_STEP * 100, work


def follow(thread_calls: Thread, item: list[Any], pool: cp.Entries) -> tuple[cp.RawCheckpoint, int]:
    """Completes a checkpoint of a reply through chathist_cp_more; returns it and the calls."""
    raw = cp.decode_checkpoint(item, pool)
    assert raw is not None
    calls = 0
    while (call := cp.pending_call(KEYS, raw)) is not None:
        work, reply = thread_calls.call(cp.CP_MORE, *call.args, read_only=True)
        assert_read_bounded(work)
        cp.apply_more(raw, reply)
        calls += 1
    return raw, calls


def test_get_of_a_long_thread_takes_bounded_calls_and_is_complete(big: Any) -> None:
    thread_calls, ids, _members = big
    work, reply = thread_calls.call("chathist_cp_get", "LATEST", "", read_only=True)
    assert_read_bounded(work)
    assert int(work.split()[0]) == READ_ENTRIES  # the budget ran out: the rest is left
    assert reply[5] or reply[6]
    raw, calls = follow(thread_calls, reply, cp.Entries())
    assert calls >= (WRITES + MESSAGES) // READ_ENTRIES - 1
    assert [w.task_id for w in raw.writes] == [f"task{i}" for i in range(WRITES)]
    items = cp.view_of(raw.record.runs["messages"], raw.entries)
    assert [item[0].encode() for item in items] == ids
    assert [item[1] for item in items] == [stored(i) for i in range(MESSAGES)]


def test_list_pages_stay_inside_the_budget_and_read_every_run(big: Any) -> None:
    thread_calls, ids, members = big
    before = b""
    seen: list[bytes] = []
    pages = 0
    while True:
        work, reply = thread_calls.call("chathist_cp_list", "ALL", before, 64, read_only=True)
        assert_read_bounded(work)
        pages += 1
        pool = cp.Entries()
        for item in reply[1:]:
            raw, _ = follow(thread_calls, item, pool)
            n = members.index(raw.name)
            items = cp.view_of(raw.record.runs["messages"], raw.entries)
            assert len(items) == (n + 1) * MESSAGES // CHECKPOINTS
            assert items[-1][0].encode() == ids[len(items) - 1]
            seen.append(raw.name)
        before = reply[0]
        if not before:
            break
        assert pages < 2 * CHECKPOINTS
    assert seen == members[::-1]
    assert pages > CHECKPOINTS // 64  # pages end early once their budget is spent


def test_a_run_inside_one_already_read_is_not_read_again(big: Any) -> None:
    """The newest checkpoints' runs all start at the first message: once a page has read
    the longest, the shorter ones cost nothing more."""
    thread_calls, _ids, members = big
    before = members[-1]  # skip the one with 1500 writes
    work, reply = thread_calls.call("chathist_cp_list", "", before, 2, read_only=True)
    entries = int(work.split()[0])
    first = cp.decode_checkpoint(reply[1])
    assert first is not None
    assert entries <= READ_ENTRIES and first.more  # the longest run is left for later
    # a small thread: both runs read, the second from the first's entries
    work, reply = thread_calls.call("chathist_cp_list", "", members[2], 2, read_only=True)
    entries = int(work.split()[0])
    assert entries == 2 * MESSAGES // CHECKPOINTS  # c001's run, then c000's inside it: 0
    pool = cp.Entries()
    newer, older = (cp.decode_checkpoint(item, pool) for item in reply[1:])
    assert newer is not None and older is not None and not newer.more and not older.more
    assert len(cp.view_of(older.record.runs["messages"], pool)) == MESSAGES // CHECKPOINTS


def test_dropping_a_checkpoint_with_many_writes_takes_bounded_steps(big: Any) -> None:
    thread_calls, _ids, members = big
    newest = members[-1]
    remaining = [newest, members[0]]
    calls = 0
    deleted = 0
    while remaining:
        work, (gone, done) = thread_calls.call("chathist_cp_drop", *remaining)
        assert int(work) <= DROP_FIELDS
        deleted += gone
        remaining = remaining[done:]
        calls += 1
        assert calls < 10 * WRITES // DROP_FIELDS
    assert calls >= 2 * WRITES // DROP_FIELDS
    assert deleted == 2
    client = thread_calls.client
    assert client.hlen(KEYS[4]) == 0  # no pending writes left behind
    assert client.zcard(KEYS[5]) == CHECKPOINTS - 2
    assert client.execute_command("FCALL_RO", "chathist_cp_get", 6, *KEYS, newest) == []


# -- the saver on tiny budgets -------------------------------------------------------------

TINY = {"READ_ENTRIES": 1, "READ_BYTES": 1, "READ_STEP": 1, "DROP_FIELDS": 2}


def snapshot(saver: RedisChatSaver, name: str) -> list[Any]:
    """What a reader sees of a thread: every checkpoint tuple, newest first."""
    return [
        (item.config, item.checkpoint, item.metadata, item.parent_config, item.pending_writes)
        for item in saver.list(thread(name))
    ]


def test_saver_on_tiny_budgets_sees_what_it_sees_on_the_shipped_ones(
    redis_url: str, client: redis.Redis
) -> None:
    client.function_load(checkpoint_library(**TINY), replace=True)
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 6)
    for turn in range(6):
        graph.invoke({"messages": [{"role": "user", "content": f"q{turn}"}]}, thread("tiny"))
    tiny_state = graph.get_state(thread("tiny"))
    tiny_history = snapshot(saver, "tiny")
    assert len(tiny_state.values["messages"]) == 24

    client.function_load(library_source(), replace=True)
    shipped = RedisChatSaver(redis_url)
    assert snapshot(shipped, "tiny") == tiny_history
    assert agent(shipped, 0).get_state(thread("tiny")).values == tiny_state.values

    client.function_load(checkpoint_library(**TINY), replace=True)
    saver = RedisChatSaver(redis_url)
    saver.copy_thread("tiny", "copy")
    copied = snapshot(saver, "copy")
    assert [(item[1], item[4]) for item in copied] == [(item[1], item[4]) for item in tiny_history]
    saver.prune(["tiny"])
    assert len(list(saver.list(thread("tiny")))) == 1
    assert client.hlen(cp.thread_keys("chat:", "tiny")[4]) <= 3 * 4  # the latest's writes
