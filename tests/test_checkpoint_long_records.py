"""A long record is read only by the calls that reply it (library 1.7): a record holds its
count of writes or names its parent by its place only while it takes at most
SMALL_RECORD_BYTES, so a write, a put or drop of a checkpoint beside it, a put of it again
and a read of its writes never read it (MONITOR shows every command a function runs), and
its writes read the same whatever its length."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source

pytest.importorskip("langgraph")

SMALL_RECORD_BYTES = int(
    re.search(r"^CP\.SMALL_RECORD_BYTES = (\d+)$", library_source(), re.M).group(1)  # type: ignore[union-attr]
)
LONG = 1 << 20
MARK = "end-of-calls"


def record_of(size: int, parent: str | None = None) -> bytes:
    """A record of about ``size`` bytes (its payload padded), with a "P" line if it has a
    parent."""
    header = f"P{parent}\n".encode() if parent else b""
    head = str(len(header)).encode() + b"\n" + header
    return head + b"p" * max(1, size - len(head))


def commands_run(client: redis.Redis, calls: Callable[[], Any]) -> list[list[str]]:
    """The commands the functions ran while ``calls`` ran (MONITOR's "lua" lines), each as
    its name and arguments."""
    run: list[list[str]] = []
    with client.monitor() as monitor:
        calls()
        client.echo(MARK)
        while True:
            command = monitor.next_command()
            if command["command"] == f"ECHO {MARK}":
                return run
            if command.get("client_type") == "lua":
                run.append(command["command"].split(" "))


def reads_of(run: list[list[str]], key: str, member: bytes) -> list[list[str]]:
    """The commands of ``run`` that read the record of ``member`` in the hash ``key``."""
    field = "c" + member.decode().replace("\0", "\\x00")
    return [c for c in run if c[0] == "HGET" and c[1] == key and c[2] == field]


@pytest.fixture
def thread(loaded: redis.Redis) -> Iterator[tuple[redis.Redis, cp.Keys]]:
    yield loaded, cp.thread_keys("long:", "t")


def fcall(client: redis.Redis, function: str, keys: cp.Keys, *args: Any) -> Any:
    return client.execute_command("FCALL", function, 6, *keys, *args)


def write(client: redis.Redis, keys: cp.Keys, member: bytes, task: str, value: bytes) -> Any:
    return fcall(client, cp.CP_WRITES, keys, "INRECORD", "WRITES", member, 1,
                 task, 0, "", "ch", value)  # fmt: skip


def writes_of(client: redis.Redis, keys: cp.Keys, member: bytes) -> list[tuple[str, bytes]]:
    """A checkpoint's writes, read on from the first (a long record spends a get's budget)."""
    found, k = [], 1
    while k:
        reply = client.execute_command("FCALL_RO", cp.CP_MORE, 6, *keys, "WRITES", member, k)
        k = int(reply[0])
        found += [cp.decode_write(raw) for raw in reply[1:]]
    return [(w.task_id, w.value) for w in found]


def test_no_call_but_a_reply_reads_a_long_record(thread: tuple[redis.Redis, cp.Keys]) -> None:
    client, keys = thread
    first, long, later = (cp.member("", i) for i in ("0001", "0002", "0003"))
    fcall(client, cp.CP_PUT, keys, "CHECKPOINT", first, record_of(100))
    fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", long, record_of(LONG, "0001"))

    # its writes: the count stays in :w, and its record is never read
    run = commands_run(client, lambda: [write(client, keys, long, t, b"v") for t in "ab"])
    assert reads_of(run, keys[3], long) == []
    assert client.hget(keys[4], long) is not None
    assert b"\nP0001\n" in (client.hget(keys[3], cp.record_field(long)) or b"")  # no "P" alone

    # a put after it, before it (its place changes), of it again, a read of its writes,
    # a drop of the one before it
    def around() -> None:
        fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", later, record_of(100, "0002"))
        fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", cp.member("", "00015"),
              record_of(100, "0001"))  # fmt: skip
        fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", long, record_of(LONG, "0001"))
        client.execute_command("FCALL_RO", cp.CP_MORE, 6, *keys, "WRITES", long, 1)
        fcall(client, cp.CP_DROP, keys, cp.member("", "00015"))

    run = commands_run(client, around)
    assert reads_of(run, keys[3], long) == []
    assert writes_of(client, keys, long) == [("a", b"v"), ("b", b"v")]
    assert fcall(client, cp.CP_DROP, keys, long)[0] == 1
    assert client.hget(keys[4], long) is None


def test_a_count_too_long_for_its_record_stays_in_writes(
    thread: tuple[redis.Redis, cp.Keys],
) -> None:
    """A record that would pass SMALL_RECORD_BYTES with its count leaves it in :w; a record
    that held one and is put again longer gives it back to :w; a put again short takes it."""
    client, keys = thread
    member = cp.member("", "0001")
    edge = record_of(SMALL_RECORD_BYTES - 50)
    fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", member, edge)
    write(client, keys, member, "t", b"v" * 100)
    assert client.hget(keys[4], member) is not None
    assert client.hget(keys[3], cp.record_field(member)) == edge

    short = record_of(200)
    fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", member, short)
    assert client.hget(keys[4], member) is None
    held = client.hget(keys[3], cp.record_field(member)) or b""
    assert len(held) > len(short) and cp.held_count(held) is not None

    fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", member, edge)
    assert client.hget(keys[4], member) is not None
    assert client.hget(keys[3], cp.record_field(member)) == edge
    assert writes_of(client, keys, member) == [("t", b"v" * 100)]


def test_a_copy_refuses_a_long_record_that_holds_a_count(
    thread: tuple[redis.Redis, cp.Keys],
) -> None:
    client, keys = thread
    source = cp.thread_keys("long:", "s")
    member = cp.member("", "0001")
    fcall(client, cp.CP_PUT, source, "INRECORD", "CHECKPOINT", member, record_of(100))
    write(client, source, member, "t", b"v")
    held = client.hget(source[3], cp.record_field(member)) or b""
    assert cp.held_count(held) is not None
    header, _, rest = held.partition(b"\n")
    count = cp.held_count(held) or b""
    payload = rest[int(header) : len(rest) - len(count)]
    forged = header + b"\n" + rest[: int(header)] + payload + b"p" * SMALL_RECORD_BYTES + count
    with pytest.raises(redis.ResponseError, match=r"CHATHIST_BADARG.*count of writes"):
        fcall(client, cp.CP_LOAD, keys, "C", cp.record_field(member), forged)
    assert client.exists(keys[3]) == 0
    fcall(client, cp.CP_LOAD, keys, "C", cp.record_field(member), held)
    assert writes_of(client, keys, member) == [("t", b"v")]


LANGGRAPH_ID = "1f1f1136-9ebe-6f05-8018-28090defc1e6"


@pytest.mark.parametrize("change", ["drop the parent", "put one between", "copy"])
def test_a_record_that_names_its_parent_by_place_keeps_room_for_its_id(
    loaded: redis.Redis, change: str
) -> None:
    """A record with "P" alone holds a count only if its parent's id still fits once written
    back (a pin before its place changes, a dump): for records of every length near
    SMALL_RECORD_BYTES, its writes read the same after a drop of its parent or a put before
    it, and a copy of it loads."""
    client = loaded
    parent = cp.member("", LANGGRAPH_ID)
    child = cp.member("", "2" + LANGGRAPH_ID[1:])
    for slack in range(0, 200, 8):
        keys = cp.thread_keys("long:", f"{change}-{slack}")
        fcall(client, cp.CP_PUT, keys, "CHECKPOINT", parent, record_of(100))
        fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", child,
              record_of(SMALL_RECORD_BYTES - slack, LANGGRAPH_ID))  # fmt: skip
        assert b"\nP\n" in (client.hget(keys[3], cp.record_field(child)) or b"")
        write(client, keys, child, "t", b"v" * 60)
        if change == "drop the parent":
            fcall(client, cp.CP_DROP, keys, parent)
        elif change == "put one between":
            fcall(client, cp.CP_PUT, keys, "CHECKPOINT", cp.member("", "1f2"), record_of(100))
        else:
            reply = client.execute_command("FCALL_RO", cp.CP_DUMP, 6, *keys, "C", 0)
            fields = [part for k in range(1, len(reply), 2) for part in ("C", *reply[k : k + 2])]
            count = client.hget(keys[4], child)
            fields += ["W", child, count] if count else []
            keys = cp.thread_keys("long:", f"copy-{slack}")
            fcall(client, cp.CP_LOAD, keys, *fields)
        assert len(client.hget(keys[3], cp.record_field(child)) or b"") <= SMALL_RECORD_BYTES, slack
        assert writes_of(client, keys, child) == [("t", b"v" * 60)], slack


# -- headers and names no bound keeps short --------------------------------------------


def lines_record(lines: int, line: bytes = b"Vc") -> bytes:
    """A record whose header has ``lines`` lines (``V`` lines: values the payload holds)."""
    header = (line + b"\n") * lines
    return str(len(header)).encode() + b"\n" + header + b"p"


def header_record(lines: list[bytes]) -> bytes:
    header = b"".join(line + b"\n" for line in lines)
    return str(len(header)).encode() + b"\n" + header + b"p"


def test_a_header_is_at_most_1001_lines_and_1_mib(thread: tuple[redis.Redis, cp.Keys]) -> None:
    """Every parse of a stored record is bounded: a put refuses a header of more than 1000
    lines or 1 MiB, a load one of more than 1001 (a held count's "W" line), and neither
    stores anything then."""
    client, keys = thread
    member = cp.member("", "a")
    for record, problem in (
        (lines_record(1001), "more than 1000 header lines"),
        (lines_record(9, b"V" + b"c" * 120_000), "header longer than 1048576 bytes"),
        # placeholders resolve to stream ids: a header that would outgrow the bound then
        (
            header_record([b"Mm\t" + b" ".join([b"#1..#1"] * 4000)] + [b"V" + b"c" * 127_000] * 8),
            "header longer than 1048576 bytes",
        ),
    ):
        with pytest.raises(redis.ResponseError, match=problem):
            fcall(client, cp.CP_PUT, keys, "CHECKPOINT", member, record, "MESSAGES",
                  '{"type": "human", "data": {"content": "x"}}')  # fmt: skip
    for record, problem in (
        (lines_record(1002), "more than 1001 header lines"),
        (lines_record(10**5, b""), "more than 1001 header lines"),
        (lines_record(9, b"V" + b"c" * 120_000), "header longer than 1048576 bytes"),
    ):
        with pytest.raises(redis.ResponseError, match=f"CHATHIST_BADARG field 1 .*{problem}"):
            fcall(client, cp.CP_LOAD, keys, "C", cp.record_field(member), record)
    assert client.exists(*keys) == 0
    fcall(client, cp.CP_LOAD, keys, "C", cp.record_field(member), lines_record(1001))
    fcall(client, cp.CP_PUT, keys, "CHECKPOINT", cp.member("", "b"), lines_record(1000))
    assert client.hlen(keys[3]) == 2


def test_a_page_of_long_headers_spends_its_budget_on_their_lines(
    client: redis.Redis,
) -> None:
    """A list reads records of 1000 header lines (one entry of its budget per 8 lines) until
    the budget is spent, then ends its page: its work does not grow with the headers."""
    from conftest import checkpoint_library
    from test_checkpoint_bounded import READ_ENTRIES

    client.function_load(checkpoint_library(count_work=True), replace=True)
    keys = cp.thread_keys("long:", "lines")
    for n in range(64):
        fcall(client, cp.CP_PUT, keys, "CHECKPOINT", cp.member("", f"{n:04d}"), lines_record(1000))
    work, reply = client.execute_command("FCALL_RO", cp.CP_LIST, 6, *keys, "", "", 64)
    entries, _ = map(int, work.split())
    assert entries <= READ_ENTRIES + 1000 // 8
    assert len(reply) - 1 == READ_ENTRIES // (1000 // 8) + 1 and reply[0] != b""
    client.function_load(library_source(), replace=True)


def test_a_drop_reads_long_group_names_within_its_budget(client: redis.Redis) -> None:
    """Task ids are not bounded: a drop reads and deletes groups whose names (a task id
    each) take at most READ_BYTES and one more, then stops; calls again finish it."""
    from conftest import checkpoint_library

    client.function_load(checkpoint_library(count_work=True, READ_BYTES=100_000), replace=True)
    keys = cp.thread_keys("long:", "names")
    member = cp.member("", "a")
    fcall(client, cp.CP_PUT, keys, "CHECKPOINT", member, record_of(100))
    for n in range(6):
        fcall(client, cp.CP_WRITES, keys, "WRITES", member, 1,
              f"{n}" + "t" * 60_000, 0, "", "ch", b"v")  # fmt: skip
    calls = 0
    while True:
        work, (_, done) = fcall(client, cp.CP_DROP, keys, member)
        calls += 1
        assert int(work) <= 2 * 2  # two groups a call: 120 KB of names, READ_BYTES and one
        if done:
            break
    assert calls == 3 and client.exists(keys[3], keys[4]) == 0
    client.function_load(library_source(), replace=True)


def test_a_list_before_a_checkpoint_of_another_namespace_keeps_to_its_own(
    thread: tuple[redis.Redis, cp.Keys],
) -> None:
    client, keys = thread
    for ns in ("ns1", "ns2", "ns3"):
        fcall(client, cp.CP_PUT, keys, "CHECKPOINT", cp.member(ns, "a"), record_of(10))

    def listed(ns: str, before: bytes) -> list[bytes]:
        reply = client.execute_command("FCALL_RO", cp.CP_LIST, 6, *keys, ns, before, 10)
        return [item[0] for item in reply[1:]]

    assert listed("ns1", cp.member("ns3", "a")) == [cp.member("ns1", "a")]
    assert listed("ns3", cp.member("ns1", "a")) == []
    assert listed("ns2", cp.member("ns2", "b")) == [cp.member("ns2", "a")]
    assert listed("ALL", cp.member("ns3", "a")) == [cp.member("ns2", "a"), cp.member("ns1", "a")]


LOADED_RUNS = 4096 + 2 * 10000  # CP.SEGMENTS and two per message of a batch


def many_runs(count: int, short: bool = True) -> bytes:
    """Runs of one entry each: "<a>" (a value's form, 1.8) or "<a>..<a>" (a record's)."""
    ids = [f"{1000 + k}-0" for k in range(count)]
    return " ".join(i if short else f"{i}..{i}" for i in ids).encode()


def test_a_load_takes_no_more_runs_in_a_field_than_a_put_stores(
    thread: tuple[redis.Redis, cp.Keys],
) -> None:
    """A reply looks at every run it gives: a copied record, value or group holds at most
    the runs one put or write may store (1.8), counted over a record's M lines and the
    count of writes it holds."""
    client, keys = thread
    source = library_source()
    assert "CP.LOADED_RUNS = 4096 + 2 * MAX_BATCH_MESSAGES" in source
    assert re.search(r"^local MAX_BATCH_MESSAGES = 10000 ", source, re.M)
    member = cp.member("", "many")

    def record(runs: bytes) -> bytes:
        header = b"Mmessages\t" + runs + b"\n"
        return str(len(header)).encode() + b"\n" + header + b"payload"

    def group(runs: bytes) -> bytes:
        value = b"\x01M" + runs
        return b"0:" + b"8:messages" + str(len(value)).encode() + b":" + value

    too_many = many_runs(LOADED_RUNS + 1)
    for which, field, value in [
        ("C", cp.record_field(member), record(many_runs(LOADED_RUNS + 1, short=False))),
        ("C", b"b\0messages\0v1", b"\x01T" + too_many + b"\ntemplate"),
        ("W", member + b"\0=t\x000", group(too_many)),
    ]:
        with pytest.raises(redis.ResponseError, match=f"more than {LOADED_RUNS} runs"):
            fcall(client, cp.CP_LOAD, keys, which, field, value)
    assert client.exists(*keys) == 0
    fcall(
        client,
        cp.CP_LOAD,
        keys,
        "C",
        cp.record_field(member),
        record(many_runs(LOADED_RUNS, False)),
    )
    assert client.hlen(keys[3]) == 1
    # a record holds runs as a put stores them: "<a>..<a>" (replies give records as stored)
    with pytest.raises(redis.ResponseError, match="malformed runs"):
        fcall(client, cp.CP_LOAD, keys, "C", cp.record_field(member), record(b"1-0..2-0 3-0"))
