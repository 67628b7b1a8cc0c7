"""The chathist_cp_* calls do bounded work, whatever the thread holds (1.4).

Raw FCALLs on a library with its work counter on (``COUNT_WORK``): a read's reply is then
``["<entries> <bytes>", reply]``, a drop's ``["<write fields deleted>", reply]``, a write's
``["<fields looked at>", reply]``. A thread of thousands of messages, checkpoints and pending
writes is read, listed and dropped to the end through continuations, and every call is checked
against the shipped budgets. Then RedisChatSaver runs on a library whose budgets are tiny, so
that every get and list goes through chathist_cp_more, and must give what it gives with the
shipped budgets. Last, a thread of 200 KB messages and pending writes: every read takes at most
its byte budget and one message or write more (entries are read as many at once as the budget
has room for at the session's longest message, "\0M"), and the saver sees the same checkpoints
whatever the budgets.
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
        # the count, a name per write and the newest group per task (its own, new): not
        # the 1000 writes stored before; of stored bytes, at most the newest group's name
        looked, read = work.split()
        assert looked == "1501" and int(read) <= len("task1499\x000")
    yield thread_calls, ids, members
    client.function_flush()
    client.flushall()
    client.close()


def assert_read_bounded(work: str) -> None:
    entries, read = map(int, work.split())
    assert entries <= READ_ENTRIES, work
    # bytes are checked after each entry and write: one (of about 60 bytes here) past
    assert read <= READ_BYTES + 100, work


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
    # the order set's pages (1.6) name the checkpoints left
    assert sum(page.count(b"\0") for page in client.zrange(KEYS[5], 0, -1)) == CHECKPOINTS - 2
    assert client.execute_command("FCALL_RO", "chathist_cp_get", 6, *KEYS, newest) == []


# -- the saver on tiny budgets -------------------------------------------------------------

TINY = {"READ_ENTRIES": 1, "READ_BYTES": 1, "READ_STEP": 1, "DROP_FIELDS": 2}


def snapshot(saver: RedisChatSaver, name: str) -> list[Any]:
    """What a reader sees of a thread: every checkpoint tuple, newest first."""
    return [
        (item.config, item.checkpoint, item.metadata, item.parent_config, item.pending_writes)
        for item in saver.list(thread(name))
    ]


def test_shaped_values_read_on_tiny_budgets_as_on_the_shipped_ones(
    redis_url: str, client: redis.Redis
) -> None:
    """Long questions: the input's values and writes are shaped; read with one-entry
    budgets, each value, write and run comes in a call of its own, and reads the same."""
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 4)
    for turn in range(4):
        question = f"q{turn} " + "w" * 400
        graph.invoke({"messages": [{"role": "user", "content": question}]}, thread("shaped"))
    keys = cp.thread_keys("chat:", "shaped")
    stored = [v for _, v in client.hscan_iter(keys[3])]
    stored += [w.value for w in cp.decode_write_fields(client.hscan_iter(keys[4]))]
    stored += [w.value for w in cp.decode_record_fields(client.hscan_iter(keys[3]))]
    assert sum(value.startswith(cp.SHAPE_MARK) for value in stored) >= 4
    shipped = snapshot(RedisChatSaver(redis_url), "shaped")
    client.function_load(checkpoint_library(**TINY), replace=True)
    assert snapshot(RedisChatSaver(redis_url), "shaped") == shipped


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


# -- long messages: a read takes at most its byte budget and one message more ---------------

LONG = 200_000  # bytes of text in each long message and long pending write
LONG_MESSAGES = 36
LONG_CHECKPOINTS = 12
LONG_KEYS = cp.thread_keys("l:", "long")
HUGE = {"READ_ENTRIES": 1 << 20, "READ_BYTES": 1 << 40, "READ_STEP": 1 << 20}


def long_message(i: int) -> bytes:
    return json.dumps({"type": "human", "data": {"content": f"long {i} " + "z" * LONG}}).encode()


def netstring(text: bytes) -> bytes:
    return str(len(text)).encode() + b":" + text


class LongThread:
    """Raw calls on the thread of long messages; every read's work is checked against
    READ_BYTES and the longest item it can read past the budget (a message or a write)."""

    def __init__(self, client: redis.Redis, ids: list[bytes], longest: int) -> None:
        self.client = client
        self.ids = ids
        self.longest = longest
        self.reads: list[int] = []

    def call(self, function: str, *args: Any) -> Any:
        work, reply = self.client.execute_command(
            "FCALL_RO", function, len(LONG_KEYS), *LONG_KEYS, *args
        )
        entries, read = map(int, work.decode().split())
        assert entries <= READ_ENTRIES, work
        assert read <= READ_BYTES + self.longest, (function, args[:1], read)
        self.reads.append(read)
        return reply

    def follow(self, item: list[Any], pool: cp.Entries) -> cp.RawCheckpoint:
        raw = cp.decode_checkpoint(item, pool)
        assert raw is not None
        while (call := cp.pending_call(LONG_KEYS, raw)) is not None:
            cp.apply_more(raw, self.call(cp.CP_MORE, *call.args))
        return raw


def long_writes() -> list[list[Any]]:
    """The newest checkpoint's pending writes: long values between short ones, and one
    whose value is a run of the last six messages."""
    writes: list[list[Any]] = []
    for i in range(12):
        value = f"value {i} " + ("w" * LONG if i % 2 else "short")
        writes.append([f"task{i}", i, "", "ch", value])
    return writes


@pytest.fixture
def long_thread(client: redis.Redis) -> LongThread:
    """36 messages of 200 KB, 12 checkpoints (each a run from the first message, three
    messages longer than the one before) and 13 pending writes on the newest."""
    client.function_load(checkpoint_library(count_work=True), replace=True)
    ids: list[bytes] = []
    for first in range(0, LONG_MESSAGES, 4):
        batch = [long_message(i) for i in range(first, first + 4)]
        ids += client.execute_command(
            "FCALL", "chathist_append", 3, *LONG_KEYS[:3], "MESSAGES", *batch
        )
    members = []
    for n in range(LONG_CHECKPOINTS):
        end = ids[(n + 1) * LONG_MESSAGES // LONG_CHECKPOINTS - 1].decode()
        header = f"Mmessages\t{ids[0].decode()}..{end}\n"
        record = f"{len(header)}\n{header}payload {n}"
        name = cp.member("", f"c{n:03d}")
        client.execute_command(
            "FCALL", "chathist_cp_put", 6, *LONG_KEYS, "CHECKPOINT", name, record
        )
        members.append(name)
    writes = long_writes()
    refs = b"\1M" + ids[-6] + b".." + ids[-1]
    writes.append(["task-refs", 0, "", "messages", refs])
    args = [part for write in writes for part in write]
    reply = client.execute_command(
        "FCALL", "chathist_cp_writes", 6, *LONG_KEYS, "WRITES", members[-1], len(writes), *args
    )
    assert reply[1] == len(writes)
    longest_write = max(
        len(f"{w[0]}\0{w[1]}")
        + len(
            b"".join(
                netstring(str(part).encode() if not isinstance(part, bytes) else part)
                for part in w[2:]
            )
        )
        for w in writes
    )
    longest = max(max(len(long_message(i)) for i in range(LONG_MESSAGES)), longest_write)
    assert longest_write > LONG and longest < READ_BYTES  # the budget has room for one of each
    return LongThread(client, ids, longest)


def complete_latest(thread_calls: LongThread) -> cp.RawCheckpoint:
    return thread_calls.follow(thread_calls.call("chathist_cp_get", "LATEST", ""), cp.Entries())


def assert_latest_is_whole(thread_calls: LongThread, raw: cp.RawCheckpoint) -> None:
    items = cp.view_of(raw.record.runs["messages"], raw.entries)
    assert [item[0].encode() for item in items] == thread_calls.ids
    assert [item[1] for item in items] == [long_message(i) for i in range(LONG_MESSAGES)]
    assert [(w.task_id, w.channel) for w in raw.writes] == [
        *((f"task{i}", "ch") for i in range(12)),
        ("task-refs", "messages"),
    ]
    assert [w.value for w in raw.writes[:12]] == [str(w[4]).encode() for w in long_writes()]
    refs = raw.writes[12].runs
    assert refs is not None
    assert [item[1] for item in cp.view_of(refs, raw.entries)] == [
        long_message(i) for i in range(LONG_MESSAGES - 6, LONG_MESSAGES)
    ]


def test_get_of_long_messages_reads_one_past_the_budget_at_most(long_thread: LongThread) -> None:
    raw = complete_latest(long_thread)
    assert_latest_is_whole(long_thread, raw)
    # every call read something, and about as much as its budget lets it (2 items or so)
    total = LONG_MESSAGES * LONG + 6 * LONG
    assert len(long_thread.reads) >= total // (READ_BYTES + long_thread.longest)
    assert all(read > 0 for read in long_thread.reads), long_thread.reads

    # the same checkpoint, read in one call by a library whose budget has room for it all
    client = long_thread.client
    client.function_load(checkpoint_library(count_work=True, **HUGE), replace=True)
    work, whole = client.execute_command(
        "FCALL_RO", "chathist_cp_get", len(LONG_KEYS), *LONG_KEYS, "LATEST", ""
    )
    assert int(work.split()[1]) > LONG_MESSAGES * LONG  # all of it, in this one call
    unbounded = cp.decode_checkpoint(whole)
    assert unbounded is not None and unbounded.complete
    assert unbounded.writes == raw.writes
    assert cp.view_of(unbounded.record.runs["messages"], unbounded.entries) == cp.view_of(
        raw.record.runs["messages"], raw.entries
    )


def test_a_session_without_its_longest_length_is_read_one_entry_at_a_time(
    long_thread: LongThread,
) -> None:
    """Without "\\0M" (a session of library 1.2, or a rebuild measuring it again) entries
    are read one at a time: still one message past the budget at most."""
    client = long_thread.client
    assert client.hdel(LONG_KEYS[1], "\0M") == 1
    assert_latest_is_whole(long_thread, complete_latest(long_thread))


def test_list_of_long_messages_reads_one_past_the_budget_at_most(long_thread: LongThread) -> None:
    before = b""
    seen = 0
    while True:
        reply = long_thread.call("chathist_cp_list", "ALL", before, 64)
        pool = cp.Entries()
        for item in reply[1:]:
            raw = long_thread.follow(item, pool)
            n = int(raw.checkpoint_id[1:])
            items = cp.view_of(raw.record.runs["messages"], raw.entries)
            assert [item[0].encode() for item in items] == long_thread.ids[
                : (n + 1) * LONG_MESSAGES // LONG_CHECKPOINTS
            ]
            assert n == LONG_CHECKPOINTS - 1 - seen
            seen += 1
        before = reply[0]
        if not before:
            break
    assert seen == LONG_CHECKPOINTS


def long_agent_snapshot(redis_url: str, name: str) -> list[Any]:
    return snapshot(RedisChatSaver(redis_url), name)


def test_saver_on_long_messages_sees_the_same_on_every_budget(
    redis_url: str, client: redis.Redis
) -> None:
    """Agent turns of 200 KB questions and answers: the shipped budgets read them a message or
    two per call; a library that reads everything at once and one that reads one item per
    call give the saver the same checkpoints."""
    client.function_load(library_source(), replace=True)
    saver = RedisChatSaver(redis_url)
    graph = agent(saver, 5, size=LONG)
    for turn in range(5):
        question = f"q{turn} " + "q" * LONG
        graph.invoke({"messages": [{"role": "user", "content": question}]}, thread("long"))
    shipped = long_agent_snapshot(redis_url, "long")
    state = agent(RedisChatSaver(redis_url), 0).get_state(thread("long")).values
    assert len(state["messages"]) == 20
    for budgets in (HUGE, TINY):
        client.function_load(checkpoint_library(**budgets), replace=True)
        assert long_agent_snapshot(redis_url, "long") == shipped
        assert agent(RedisChatSaver(redis_url), 0).get_state(thread("long")).values == state


@pytest.mark.parametrize("which", ["C", "W"])
def test_dump_pages_hold_their_byte_budget_and_one_step_more(
    client: redis.Redis, which: str
) -> None:
    """cp_dump (copy_thread, prune, delete_for_runs) of a hash of long values: every page holds
    at most READ_BYTES and one HSCAN step more (a bucket of the hash table: a field or a few),
    and the pages together are the whole hash."""
    budget_bytes = 20_000
    client.function_load(checkpoint_library(count_work=True, READ_BYTES=budget_bytes), replace=True)
    keys = cp.thread_keys("d:", "dump")
    key = keys[3] if which == "C" else keys[4]
    stored = {
        f"b\0ch\0{i:04d}".encode(): bytes([65 + i % 26]) * (50 + i * 37 % 9000) for i in range(300)
    }
    client.hset(key, mapping=stored)  # type: ignore[arg-type]
    longest = max(len(f) + len(v) for f, v in stored.items())
    seen: dict[bytes, bytes] = {}
    cursor: bytes | str = "0"
    pages = 0
    while True:
        work, page = client.execute_command("FCALL_RO", cp.CP_DUMP, 6, *keys, which, cursor)
        fields, read = map(int, work.split())
        # one step past the budget: a bucket of the hash, one field or a few (Valkey 8.1's
        # hashtable keeps up to 7 per bucket, and a step may visit a bucket of each table)
        assert fields <= 64 + 16 and read <= budget_bytes + 16 * longest, work
        cursor = page[0]
        seen.update(zip(page[1::2], page[2::2], strict=True))
        pages += 1
        if cursor == b"0":
            break
    assert seen == stored
    assert pages >= sum(len(f) + len(v) for f, v in stored.items()) // (budget_bytes + 16 * longest)


def test_a_record_of_many_long_values_is_read_in_budgets(client: redis.Redis) -> None:
    """A checkpoint whose record names 40 channel values of up to 120 KB (written by many
    puts): chathist_cp_get and chathist_cp_more BLOBS each read at most their byte budget,
    the record and one value more, and together reply every value. A list page too."""
    client.function_load(checkpoint_library(count_work=True), replace=True)
    keys = cp.thread_keys("v:", "values")
    values = {f"ch{i:02d}": bytes([97 + i % 26]) * (1000 + i * 3001 % 120_000) for i in range(40)}
    for channel, value in values.items():  # each value stored by a put of its own
        member = cp.member("", f"a-{channel}")
        record = cp.Record(blobs={channel: "1"}, payload=b"p").encode()
        client.execute_command(
            "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", member, record,
            "BLOB", cp.blob_field("", channel, "1"), value,
        )  # fmt: skip
    record = cp.Record(blobs=dict.fromkeys(values, "1"), payload=b"all").encode()
    name = cp.member("", "z-all")
    client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, record)
    longest = max(len(v) for v in values.values())
    assert sum(len(v) for v in values.values()) > 4 * READ_BYTES

    def call(*args: Any) -> Any:
        work, reply = client.execute_command("FCALL_RO", *args[:1], 6, *keys, *args[1:])
        read = int(work.decode().split()[1])
        assert read <= READ_BYTES + len(record) + longest, (args[:2], read)
        return reply

    for first in (call(cp.CP_GET, "LATEST", ""), call(cp.CP_LIST, "", "", 64)[1]):
        raw = cp.decode_checkpoint(first)
        assert raw is not None and raw.next_blob > 1
        calls = 0
        while (more := cp.pending_call(keys, raw)) is not None:
            cp.apply_more(raw, call(cp.CP_MORE, *more.args))
            calls += 1
        assert raw.blobs == values
        assert calls >= 4
    # a value deleted meanwhile is left out, and a checkpoint gone ends the read
    assert client.execute_command("FCALL_RO", cp.CP_MORE, 6, *keys, "BLOBS", b"\0gone", 1)[1] == [0]


def test_a_record_of_many_runs_leaves_those_past_the_budget_for_more(
    client: redis.Redis,
) -> None:
    """3000 runs that do not meet (every other message): a get looks at runs until its
    budget is spent and names the others as ranges for chathist_cp_more, unread."""
    client.function_load(checkpoint_library(count_work=True), replace=True)
    keys = cp.thread_keys("r:", "runs")
    ids: list[bytes] = []
    for first in range(0, 6000, 1000):
        batch = [stored(i) for i in range(first, first + 1000)]
        ids += client.execute_command("FCALL", "chathist_append", 3, *keys[:3], "MESSAGES", *batch)
    runs = " ".join(f"{i.decode()}..{i.decode()}" for i in ids[::2])
    header = f"Mmessages\t{runs}\n"
    name = cp.member("", "many")
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, f"{len(header)}\n{header}p"
    )
    work, reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, "LATEST", "")
    assert_read_bounded(work.decode())
    raw = cp.decode_checkpoint(reply)
    assert raw is not None
    assert len(raw.entries) <= READ_ENTRIES and len(raw.more) >= 3000 - READ_ENTRIES
    while (call := cp.pending_call(keys, raw)) is not None:
        work, more = client.execute_command("FCALL_RO", cp.CP_MORE, 6, *keys, *call.args)
        assert_read_bounded(work.decode())
        cp.apply_more(raw, more)
    assert [
        item[0].encode() for item in cp.view_of(raw.record.runs["messages"], raw.entries)
    ] == ids[::2]


def test_a_record_of_many_absent_values_counts_each_it_looks_at(client: redis.Redis) -> None:
    client.function_load(checkpoint_library(count_work=True), replace=True)
    keys = cp.thread_keys("r:", "absent")
    record = cp.Record(blobs={f"c{i}": "1" for i in range(1000)}, payload=b"p").encode()
    client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", "a"), record)
    work, reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, "LATEST", "")
    assert int(work.split()[0]) <= READ_ENTRIES
    raw = cp.decode_checkpoint(reply)
    # (its header's 1000 lines spend one entry of the budget per 8 lines)
    assert raw is not None and raw.next_blob == READ_ENTRIES - 1000 // 8 + 1


def test_writes_past_their_placeholders_or_arguments_are_refused_before_writing(
    client: redis.Redis,
) -> None:
    client.function_load(library_source(), replace=True)
    keys = cp.thread_keys("r:", "refused")
    name = cp.member("", "c1")
    one = json.dumps({"type": "human", "data": {"content": "hi"}})
    # runs that resolve through more segments than the call may read
    runs = " ".join(["#1..#1"] * 5000)
    header = f"Mmessages\t{runs}\n"
    with pytest.raises(redis.ResponseError, match="CHATHIST_TOOBIG runs of more than 4098"):
        client.execute_command(
            "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, f"{len(header)}\n{header}p",
            "MESSAGES", one,
        )  # fmt: skip
    with pytest.raises(redis.ResponseError, match="CHATHIST_TOOBIG runs of more than 4098"):
        client.execute_command(
            "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", name, 1,
            "t", 0, "", "messages", b"\1M" + runs.encode(), "MESSAGES", one,
        )  # fmt: skip
    # (1.8) a SHAPED write's runs count against the same bound
    single = " ".join(["1-0"] * 5000)
    with pytest.raises(redis.ResponseError, match="CHATHIST_TOOBIG runs of more than 4098"):
        client.execute_command(
            "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", name, 1,
            "t", 0, "", "messages", b"v", "SHAPED", 1, single, b"template", "MESSAGES", one,
        )  # fmt: skip
    # a count of writes the arguments do not hold
    for args in (["t", 0, "", "ch", "v"], ["t", 0, "", "ch"]):
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG expected 2 writes"):
            client.execute_command("FCALL", cp.CP_WRITES, 6, *keys, "WRITES", name, 2, *args)
    # a BLOB without its value before MESSAGES
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG expected BLOB"):
        client.execute_command(
            "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, "0\np",
            "BLOB", "b\0ch\0" + "1", "MESSAGES", one,
        )  # fmt: skip
    assert client.exists(*keys) == 0


def test_a_settle_of_a_write_longer_than_the_call_can_hash_keeps_the_write(
    client: redis.Redis,
) -> None:
    """SETTLE hashes at most twice the JSON the put carries and the read budget: a pending
    write far longer keeps its bytes (memory, never correctness), each named once."""
    import hashlib

    client.function_load(library_source(), replace=True)
    keys = cp.thread_keys("r:", "settle")
    parent = cp.member("", "p")
    client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", parent, "0\np")
    value = b"v" * (3 * READ_BYTES)
    client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", parent, 1, "t", 0, "", "messages", value
    )
    one = json.dumps({"type": "human", "data": {"content": "hi", "id": "h1"}})
    sha1 = hashlib.sha1(value).hexdigest()
    settles = ["SETTLE", parent, "t\x000", sha1, "#1..#1"] * 3
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", "c"), "0\np", *settles,
        "MESSAGES", one,
    )  # fmt: skip
    entry = client.hget(keys[4], cp.member("", "p") + b"\0=t\x000")
    assert entry is not None and entry.endswith(value)


def test_the_saver_knows_the_segments_a_call_may_resolve() -> None:
    assert budget("SEGMENTS") == cp.SEGMENTS
