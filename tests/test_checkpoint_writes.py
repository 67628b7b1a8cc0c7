"""Pending writes in groups (library 1.5): a call's writes of one task are one field, read
back one write at a time as in 1.4; a checkpoint whose writes 1.4 stored (a field per write,
the count without a name) reads the same and takes new groups; a group too long for a call
to read is left alone, and readers resolve a (task, index) stored twice."""

from __future__ import annotations

import re

import pytest
import redis

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source

pytest.importorskip("langgraph")

from redis_chat_history.checkpoint import RedisChatSaver

MEMBER = cp.member("", "1ef00001-0000-6000-8000-000000000001")
GROUP_BYTES = int(re.search(r"^CP\.GROUP_BYTES = (\d+)$", library_source(), re.M).group(1))  # type: ignore[union-attr]


def put(client: redis.Redis, keys: cp.Keys, record: bytes = b"0\np", *flags: str) -> None:
    client.function_load(library_source(), replace=True)
    client.execute_command("FCALL", cp.CP_PUT, 6, *keys, *flags, "CHECKPOINT", MEMBER, record)


def writes(client: redis.Redis, keys: cp.Keys, *items: tuple[str, int, str, str, bytes]) -> int:
    args = [part for item in items for part in item]
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, len(items), *args
    )
    return int(reply)


def stored(client: redis.Redis, keys: cp.Keys) -> list[tuple[str, int, str, bytes]]:
    reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, MEMBER)
    raw = cp.decode_checkpoint(reply)
    assert raw is not None and raw.complete
    return [(w.task_id, w.index, w.channel, w.value) for w in raw.writes]


def test_a_checkpoint_whose_writes_14_stored_reads_the_same_and_takes_groups(
    client: redis.Redis,
) -> None:
    keys = cp.thread_keys("w:", "old")
    put(client, keys)
    w = keys[4]
    client.hset(w, mapping={
        MEMBER: b"2",
        MEMBER + b"\x001": b"t\x000",
        MEMBER + b"\x00=t\x000": b"1:p2:ch2:v0",
        MEMBER + b"\x002": b"t\x00-1",
        MEMBER + b"\x00=t\x00-1": b"1:p9:__error__2:e1",
    })  # fmt: skip

    # a 1.4 write is a group of one: (t, 0) is kept; (t, 1) and the new (t, -1) start
    # groups (neither is the newest group's task and index); u's second call merges
    assert writes(client, keys, ("t", 0, "p", "ch", b"X"), ("t", 1, "p", "ch", b"v1")) == 1
    assert writes(client, keys, ("t", -1, "p", "__error__", b"e2")) == 1
    assert writes(client, keys, ("u", 0, "p", "ch", b"w0")) == 1
    assert writes(client, keys, ("u", 0, "p", "ch", b"Z"), ("u", 1, "p", "ch", b"w1")) == 1

    assert client.hget(w, MEMBER) == b"5"  # a 1.4 count goes on without a name
    slots = [client.hget(w, MEMBER + b"\x00" + str(k).encode()) for k in (3, 4, 5)]
    assert slots == [b"t\x001", b"t\x00-1\x004", b"u\x000"]  # t\0-1 is a 1.4 write's
    assert client.hget(w, MEMBER + b"\x00=u\x000") == b"1:p2:ch2:w01:12:ch2:w1"
    assert stored(client, keys) == [
        ("t", 0, "ch", b"v0"),
        ("t", -1, "__error__", b"e1"),
        ("t", 1, "ch", b"v1"),
        ("t", -1, "__error__", b"e2"),
        ("u", 0, "ch", b"w0"),
        ("u", 1, "ch", b"w1"),
    ]
    reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, MEMBER)
    raw = cp.decode_checkpoint(reply)
    assert raw is not None
    assert [(w.task_id, w.index, w.value) for w in cp.resolve_writes(raw.writes)] == [
        ("t", 0, b"v0"),
        ("t", -1, b"e2"),
        ("t", 1, b"v1"),
        ("u", 0, b"w0"),
        ("u", 1, b"w1"),
    ]

    assert client.execute_command("FCALL", cp.CP_DROP, 6, *keys, MEMBER) == [1, 1]
    assert client.exists(w) == 0


def test_a_group_too_long_to_read_is_left_alone_and_readers_resolve_the_duplicate(
    redis_url: str, client: redis.Redis
) -> None:
    keys = cp.thread_keys("chat:", "long-group")
    put(client, keys)
    long_value = b"bytes\0" + b"x" * GROUP_BYTES
    assert writes(client, keys, ("t", 0, "p", "ch", long_value)) == 1
    # the same first index: the stored group is too long to merge into, so (t, 0) is
    # taken as stored (the first of that group) and (t, 1) starts a group of its own
    v1 = b"bytes\0v1"
    assert writes(client, keys, ("t", 0, "p", "ch", b"bytes\0again"), ("t", 1, "p", "ch", v1)) == 1
    # a negative index is looked for in the group the call reads only: a second copy
    assert writes(client, keys, ("t", -1, "p", "__error__", b"bytes\0e1")) == 1
    v2, e2 = b"bytes\0v2", b"bytes\0e2"
    assert writes(client, keys, ("t", 2, "p", "ch", v2), ("t", -1, "p", "__error__", e2)) == 2
    names = [client.hget(keys[4], MEMBER + b"\x00" + str(k).encode()) for k in (2, 3, 4)]
    assert names == [b"t\x001", b"t\x00-1", b"t\x002"]

    saver = RedisChatSaver(redis_url)
    config = {"configurable": {"thread_id": "long-group", "checkpoint_ns": ""}}
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", MEMBER,
        cp.Record(payload=_payload_of(saver)).encode(),
    )  # fmt: skip
    found = saver.get_tuple({**config, "configurable": {**config["configurable"],
                             "checkpoint_id": cp.split_member(MEMBER)[1]}})  # fmt: skip
    assert found is not None
    values = {(task, channel, value[:6]) for task, channel, value in found.pending_writes}
    assert values == {("t", "ch", b"xxxxxx"), ("t", "ch", b"v1"), ("t", "ch", b"v2"),
                      ("t", "__error__", b"e2")}  # fmt: skip
    assert len(found.pending_writes) == 4  # (t, -1): the later copy only


def _payload_of(saver: RedisChatSaver) -> bytes:
    from langgraph.checkpoint.base import empty_checkpoint

    from redis_chat_history.checkpoint import _payload

    body = empty_checkpoint()
    kind, data = saver.serde.dumps_typed({"c": body, "m": {}, "p": None})
    return _payload.pack(kind.encode() + b"\0" + data)


def test_resolve_writes_keeps_the_first_of_an_index_and_the_last_of_a_negative_one() -> None:
    def write(index: int, value: bytes, task: str = "t") -> cp.StoredWrite:
        return cp.StoredWrite(task, index, "", "ch", value)

    resolved = cp.resolve_writes(
        [write(0, b"a"), write(-1, b"e1"), write(0, b"b"), write(0, b"c", "u"), write(-1, b"e2")]
    )
    assert [(w.task_id, w.index, w.value) for w in resolved] == [
        ("t", 0, b"a"),
        ("t", -1, b"e2"),
        ("u", 0, b"c"),
    ]


# -- bounds and orders under worst-case inputs ---------------------------------------------


def test_a_call_reads_no_stored_group_longer_than_twice_what_it_carries(
    client: redis.Redis,
) -> None:
    """A call merges only into its task's group that is the checkpoint's newest and at most
    twice what it carries (and a little): a tiny write next to a 60 KB group reads none."""
    from conftest import checkpoint_library

    keys = cp.thread_keys("w:", "merge-bound")
    put(client, keys)
    client.function_load(checkpoint_library(count_work=True), replace=True)
    items = [("t", i, "p", "ch", b"v" * 900) for i in range(64)]
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, len(items),
        *[part for item in items for part in item],
    )  # fmt: skip
    assert reply[0].decode().split()[1] == "0"
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, 1, "t", 0, "p", "ch", b"retry"
    )
    assert reply[1] == 0 and reply[0].decode().split()[1] == "0"  # kept, and nothing read
    # a retry of the same writes carries as much as the group holds: it may read it
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, len(items),
        *[part for item in items for part in item],
    )  # fmt: skip
    assert reply[1] == 0 and 0 < int(reply[0].decode().split()[1]) <= 2 * 64 * 905 + 256


def test_a_call_of_many_writes_stores_groups_a_read_can_page(client: redis.Redis) -> None:
    """1000 writes of one task in one call are groups of at most 64 writes: a read replies
    at most its budget and one group more, and the rest comes with chathist_cp_more."""
    from conftest import checkpoint_library

    keys = cp.thread_keys("w:", "many")
    put(client, keys)
    client.function_load(checkpoint_library(count_work=True, READ_ENTRIES=100), replace=True)
    items = [("t", i, "p", "ch", f"value {i}".encode()) for i in range(1000)]
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, len(items),
        *[part for item in items for part in item],
    )  # fmt: skip
    assert reply[1] == 1000
    assert client.hget(keys[4], MEMBER).startswith(b"16\x00")  # ceil(1000 / 64) groups
    work, reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, MEMBER)
    assert 100 <= len(reply[2]) <= 100 + 64 and int(work.split()[0]) <= 100 + 64
    raw = cp.decode_checkpoint(reply)
    assert raw is not None
    while (call := cp.pending_call(keys, raw)) is not None:
        work, more = client.execute_command("FCALL_RO", call.function, 6, *keys, *call.args)
        assert int(work.split()[0]) <= 100 + 64
        cp.apply_more(raw, more)
    assert [w.value for w in raw.writes] == [f"value {i}".encode() for i in range(1000)]


def test_a_long_first_task_id_is_not_copied_into_the_count(client: redis.Redis) -> None:
    """Another call's long task id is neither copied into the count nor read by a call of
    another task (a group's name is read only when as long as the one the call would give)."""
    from conftest import checkpoint_library

    keys = cp.thread_keys("w:", "long-task")
    put(client, keys)
    client.function_load(checkpoint_library(count_work=True), replace=True)
    task = "t" * 100_000
    client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, 1, task, 0, "", "ch", b"v"
    )
    work, added = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, "WRITES", MEMBER, 1, "u", 0, "", "ch", b"w"
    )
    assert added == 1 and work.decode().split()[1] == "0"
    client.function_load(library_source(), replace=True)
    assert client.hget(keys[4], MEMBER) == b"2"  # slot 1 holds the long name, as in 1.4
    assert client.hget(keys[4], MEMBER + b"\x001") == task.encode() + b"\x000"
    assert [write[0] for write in stored(client, keys)] == [task, "u"]
    assert writes(client, keys, ("u", 0, "", "ch", b"again"), ("u", 1, "", "ch", b"w1")) == 1
    assert [write[3] for write in stored(client, keys)] == [b"v", b"w", b"w1"]


def test_one_call_stores_a_task_and_index_once_whatever_the_paths(client: redis.Redis) -> None:
    keys = cp.thread_keys("w:", "paths")
    put(client, keys)
    assert writes(client, keys, ("t", 0, "pA", "ch", b"A"), ("t", 0, "pB", "ch", b"B")) == 1
    assert stored(client, keys) == [("t", 0, "ch", b"A")]


def test_a_settle_hashes_a_stored_value_once_per_call(client: redis.Redis) -> None:
    """SETTLEs naming one write hash it once in a call: after a SETTLE whose SHA-1 does not
    match, another naming the same write in the same call is not looked at (each is a hash
    of up to the call's room, so a thousand of them were a thousand hashes)."""
    import hashlib
    import json

    keys = cp.thread_keys("w:", "settle-once")
    put(client, keys)
    value = b"v" * 1000
    assert writes(client, keys, ("t", 0, "", "messages", value)) == 1
    one = json.dumps({"type": "ai", "data": {"content": "hi", "id": "a1"}})
    good = hashlib.sha1(value).hexdigest()
    settles = ["SETTLE", MEMBER, "t\x000", "0" * 40, "#1..#1"] * 3
    settles += ["SETTLE", MEMBER, "t\x000", good, "#1..#1"]
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", "c2"), "0\np", *settles,
        "MESSAGES", one,
    )  # fmt: skip
    assert stored(client, keys) == [("t", 0, "messages", value)]  # hashed once: no match
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", "c3"), "0\np",
        "SETTLE", MEMBER, "t\x000", good, "#1..#1", "MESSAGES", one,
    )  # fmt: skip
    assert stored(client, keys)[0][3].startswith(cp.REFS_MARK)


@pytest.mark.parametrize(
    "calls",
    [
        # resume writes of one task in three calls: LangGraph keeps the last
        [[("__resume__", "r1")], [("__interrupt__", "i"), ("__resume__", "r2")],
         [("__resume__", "r3")]],
        # an index written again in a later call is kept as first written
        [[("a", "A")], [("__interrupt__", "i"), ("b", "B")], [("a", "A2"), ("c", "C")]],
    ],
)  # fmt: skip
def test_pending_writes_read_as_in_memory_saver_keeps_them(
    redis_url: str, calls: list[list[tuple[str, str]]]
) -> None:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.memory import InMemorySaver

    results = []
    for saver in (InMemorySaver(), RedisChatSaver(redis_url)):
        config = {"configurable": {"thread_id": "as-memory", "checkpoint_ns": ""}}
        stored_config = saver.put(config, empty_checkpoint(), {}, {})  # type: ignore[arg-type]
        for writes_of_call in calls:
            saver.put_writes(stored_config, writes_of_call, "t")
        found = saver.get_tuple(stored_config)
        assert found is not None
        results.append(sorted(found.pending_writes, key=lambda w: (w[1], str(w[2]))))
        if isinstance(saver, RedisChatSaver):
            saver.delete_thread("as-memory")
    assert results[0] == results[1]


def test_a_write_that_would_overflow_a_group_starts_one_of_its_own(client: redis.Redis) -> None:
    """A group holds at most GROUP_BYTES: a long write after short ones is a group alone, and
    the writes after it start another."""
    keys = cp.thread_keys("w:", "overflow")
    put(client, keys)
    items = [
        ("t", 0, "", "ch", b"short"),
        ("t", 1, "", "ch", b"x" * (GROUP_BYTES + 10)),
        ("t", 2, "", "ch", b"after"),
    ]
    assert writes(client, keys, *items) == 3
    count = client.hget(keys[4], MEMBER)
    assert count is not None and count.startswith(b"3\x00")
    assert [item[3] for item in stored(client, keys)] == [item[4] for item in items]


# -- FOLD (1.6): a checkpoint's first group kept in its count ---------------------------------


def fold_writes(
    client: redis.Redis,
    keys: cp.Keys,
    items: list[tuple[str, int, str, str, bytes]],
    fold: bool | str,
) -> int:
    """A write call with FOLD (``fold`` True), without it (False) or with the flag named."""
    args = [part for item in items for part in item]
    flag = [fold] if isinstance(fold, str) and fold else ["FOLD"] if fold else []
    reply = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, *flag, "WRITES", MEMBER, len(items), *args
    )
    return int(reply)


def test_a_folded_first_group_leaves_the_count_once_it_outgrows_it(client: redis.Redis) -> None:
    """The first group stays in the count while it takes at most FOLD_BYTES; a merge that
    makes it longer moves it to a field of its own, and reads are the same throughout."""
    keys = cp.thread_keys("w:", "fold-grows")
    put(client, keys)
    first = [("t", 0, "", "ch", b"a" * 100), ("t", 1, "", "ch", b"b")]
    assert fold_writes(client, keys, first, fold=True) == 2
    assert client.hlen(keys[4]) == 1 and client.hget(keys[4], MEMBER).endswith(b"1:b")
    grown = [("t", 0, "", "ch", b"a" * 100), ("t", 2, "", "ch", b"c" * 4000)]
    assert fold_writes(client, keys, grown, fold=True) == 1
    assert client.hget(keys[4], MEMBER) == b"1\0t\x000"
    assert client.hget(keys[4], MEMBER + b"\0=t\x000") is not None
    assert [w[3] for w in stored(client, keys)] == [b"a" * 100, b"b", b"c" * 4000]


def test_a_first_group_longer_than_the_fold_is_a_field(client: redis.Redis) -> None:
    keys = cp.thread_keys("w:", "fold-long")
    put(client, keys)
    assert fold_writes(client, keys, [("t", 0, "", "ch", b"x" * 5000)], fold=True) == 1
    assert client.hget(keys[4], MEMBER) == b"1\0t\x000"
    assert stored(client, keys) == [("t", 0, "ch", b"x" * 5000)]


def test_a_drop_that_stops_keeps_the_folded_group(client: redis.Redis) -> None:
    """A drop deletes a checkpoint's groups from the last; stopped by its budget, the count
    it leaves still holds the folded first group, which the next drop deletes."""
    from conftest import checkpoint_library

    keys = cp.thread_keys("w:", "fold-drop")
    put(client, keys)
    fold_writes(client, keys, [("t", 0, "", "ch", b"first")], fold=True)
    fold_writes(client, keys, [("u", 0, "", "ch", b"second")], fold=True)
    fold_writes(client, keys, [("v", 0, "", "ch", b"third")], fold=True)
    client.function_load(checkpoint_library(DROP_FIELDS=2), replace=True)
    reply = client.execute_command("FCALL", cp.CP_DROP, 6, *keys, MEMBER)
    assert reply == [1, 0]
    count = client.hget(keys[4], MEMBER)
    assert count is not None and count.startswith(b"2\0t\x000\0=") and count.endswith(b"first")
    while client.execute_command("FCALL", cp.CP_DROP, 6, *keys, MEMBER)[1] != 1:
        pass
    assert client.hlen(keys[4]) == 0
    client.function_load(library_source(), replace=True)


def test_writes_fold_or_not_read_the_same() -> None:
    """Any series of write calls (tasks, indexes, negative ones, values short and long)
    stored with INRECORD (1.7), with FOLD and without either reads back the same, the record
    as it was put, and with fewer fields in that order; so do calls that mix the three (a
    count moving between the record and :w), records short and near SMALL_RECORD_BYTES (a
    count that would make them longer stays in :w), and a put of the record again between
    the calls."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from redis_chat_history.local_server import start_redis, stop_redis

    write = st.tuples(
        st.sampled_from(["t", "u"]),
        st.integers(-2, 4),
        st.sampled_from([b"v", b"w" * 300, b"x" * 3000]),
    )
    flags = st.sampled_from(["INRECORD", "FOLD", False])
    small = int(re.search(r"^CP\.SMALL_RECORD_BYTES = (\d+)$", library_source(), re.M).group(1))  # type: ignore[union-attr]
    records = st.sampled_from([b"0\np", b"0\n" + b"p" * (small - 300)])
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        counter = iter(range(10**6))

        @settings(max_examples=60, deadline=None)
        @given(
            st.lists(st.lists(write, min_size=1, max_size=4), min_size=1, max_size=5),
            st.lists(flags, min_size=5, max_size=5),
            records,
            st.none() | st.tuples(st.integers(0, 4), records),
        )
        def check(
            calls: list[list[tuple[str, int, bytes]]],
            mixed: list[bool | str],
            record: bytes,
            again: tuple[int, bytes] | None,
        ) -> None:
            run = next(counter)
            reads, fields = [], []
            for mode in ("INRECORD", "FOLD", "", "mixed"):
                keys = cp.thread_keys("w:", f"model-{run}-{mode}")
                put(client, keys, record)
                last = record
                for number, call in enumerate(calls):
                    flag = mixed[number] if mode == "mixed" else mode
                    items = [(task, index, "p", "ch", value) for task, index, value in call]
                    fold_writes(client, keys, items, flag)
                    if again and again[0] == number:
                        last = again[1]
                        put(client, keys, last, *(["INRECORD"] if flag == "INRECORD" else []))
                reads.append(stored(client, keys))
                raw = cp.decode_checkpoint(
                    client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, MEMBER)
                )
                assert raw is not None and raw.record.encode() == last
                assert len(client.hget(keys[3], cp.record_field(MEMBER)) or b"") <= max(
                    small, len(last)
                )
                fields.append(client.hlen(keys[3]) + client.hlen(keys[4]))
            assert reads[0] == reads[1] == reads[2] == reads[3]
            assert fields[0] <= fields[1] <= fields[2]

        check()
    finally:
        stop_redis(server)


def test_known_lookups_read_at_most_twice_what_the_call_carries(client: redis.Redis) -> None:
    """KNOWN messages naming a long stored message by its id: the call reads stored entries
    to compare only while twice what it carries and READ_BYTES last (and one entry more)."""
    from conftest import checkpoint_library

    keys = cp.thread_keys("w:", "known-big")
    put(client, keys)
    big = b'{"type":"human","data":{"content":"' + b"x" * 100_000 + b'","id":"big"}}'
    client.execute_command("FCALL", "chathist_append", 3, *keys[:3], "MESSAGES", big)
    client.function_load(checkpoint_library(count_work=True), replace=True)
    small = b'{"type":"human","data":{"content":"x","id":"big"}}'
    args: list[object] = ["WRITES", MEMBER, 1, "t", 0, "", "ch", b"v", "IFKNOWN", 1, 1, 300]
    work, added = client.execute_command(
        "FCALL", cp.CP_WRITES, 6, *keys, *args, "KNOWN", *[small] * 300
    )
    assert added == 1
    read = int(work.decode().split()[1])
    assert read <= 2 * 300 * len(small) + 262144 + len(big)
    client.function_load(library_source(), replace=True)
    assert stored(client, keys) == [("t", 0, "ch", b"v")]  # not known: the value is kept


def test_a_settle_that_outgrows_a_folded_group_moves_it_to_its_field(client: redis.Redis) -> None:
    """A SETTLE's runs may be longer than the value they replace: a folded group that becomes
    longer than FOLD_BYTES leaves the count, which later calls read whole."""
    keys = cp.thread_keys("w:", "settle-grows")
    put(client, keys)
    items = [("t", i, "", "ch", b"v") for i in range(60)]
    assert fold_writes(client, keys, items, fold=True) == 60
    assert client.hlen(keys[4]) == 1
    one = b'{"type":"human","data":{"content":"hi","id":"h1"}}'
    sha1 = __import__("hashlib").sha1(b"v").hexdigest()
    runs = " ".join(["#1..#1"] * 40)
    settles = []
    for i in range(60):
        settles += ["SETTLE", MEMBER, f"t\x00{i}\x000", sha1, runs]
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", "c2"), "0\np",
        *settles, "MESSAGES", one,
    )  # fmt: skip
    count = client.hget(keys[4], MEMBER)
    assert count == b"1\0t\x000"
    group = client.hget(keys[4], MEMBER + b"\0=t\x000")
    assert group is not None and len(group) > 4096
    writes = cp.decode_write_fields(client.hscan_iter(keys[4]))
    assert len(writes) == 60 and all(w.value.startswith(cp.REFS_MARK) for w in writes)


@pytest.mark.parametrize("move", ["into the record", "out of the record"])
@pytest.mark.parametrize("before_dump", [0, 1, 2])
def test_a_copy_keeps_writes_whose_count_moves_while_it_runs(
    redis_url: str, client: redis.Redis, move: str, before_dump: int
) -> None:
    """copy_thread dumps :w, then :c, then :w again: a count that moves once between a
    record and :w (INRECORD, 1.7) while the copy runs, before any of its dumps, is copied
    from one place or the other."""
    from redis_chat_history._transport import SyncTransport

    client.function_load(library_source(), replace=True)
    source_id, target_id = f"src-{move}-{before_dump}", f"dst-{move}-{before_dump}"
    source, target = cp.thread_keys("chat:", source_id), cp.thread_keys("chat:", target_id)
    put(client, source)
    fold_writes(
        client,
        source,
        [("t", 0, "p", "ch", b"v")],
        "FOLD" if move == "into the record" else "INRECORD",
    )
    held = client.hget(source[4], MEMBER) is None
    assert held == (move == "out of the record")

    def change() -> None:
        if move == "into the record":  # the checkpoint put again takes its count
            put(client, source, b"0\np", "INRECORD")
        else:  # a second group moves the count back to :w
            fold_writes(client, source, [("u", 0, "p", "ch", b"w")], "INRECORD")
        assert (client.hget(source[4], MEMBER) is None) != held

    # the copy's plan run call by call, the count moved before its dump number before_dump
    plan = RedisChatSaver(redis_url)._copy_plan(source_id, target_id)
    transport, dumps, work = SyncTransport(client, None), 0, next(plan)
    try:
        while True:
            if not isinstance(work, list) and work.function == cp.CP_DUMP:
                if dumps == before_dump:
                    change()
                dumps += 1
            reply = transport.run_all(work) if isinstance(work, list) else transport.run(work)
            work = plan.send(reply)
    except StopIteration:
        pass
    assert ("t", 0, "ch", b"v") in stored(client, target)
