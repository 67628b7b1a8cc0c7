"""A checkpoint record leaves out what its header says (its id, the versions of the channels
stored as values), holds small channel values itself, is deflated with the payload's
dictionary, and reads back as the checkpoint that was put, versions in their order; a
record written in full (before this) reads as it is."""

from __future__ import annotations

from typing import Any

import pytest
import redis

pytest.importorskip("langgraph")

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source
from redis_chat_history.checkpoint import RedisChatSaver, _payload
from redis_chat_history.checkpoint._saver import INLINE_BYTES

CHECKPOINT_ID = "1ef00001-0000-6000-8000-000000000000"


def checkpoint() -> Any:
    body = empty_checkpoint()
    body["id"] = CHECKPOINT_ID
    body["channel_values"] = {
        "zeta": "z" * (2 * INLINE_BYTES),
        "messages": [HumanMessage("hi", id="h1")],
        "alpha": "a",
    }
    body["channel_versions"] = {"zeta": "00000002.1", "messages": "00000001.0", "alpha": 3}
    body["versions_seen"] = {"node": {"zeta": "00000002.1"}}
    return body


def config() -> Any:
    return {"configurable": {"thread_id": "records", "checkpoint_ns": ""}}


def test_a_compact_record_reads_back_as_the_checkpoint_put(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    body = checkpoint()
    versions = {"zeta": "00000002.1", "messages": "00000001.0", "alpha": 3}
    stored = saver.put(config(), body, {"step": 1}, versions)

    found = saver.get_tuple(stored)

    assert found is not None
    got = found.checkpoint
    assert got["id"] == CHECKPOINT_ID
    assert list(got["channel_versions"].items()) == list(body["channel_versions"].items())
    assert got["versions_seen"] == body["versions_seen"]
    assert got["channel_values"] == body["channel_values"]
    # the record holds neither the id nor the string versions its header holds
    record = client.hget(
        cp.thread_keys("chat:", "records")[3], cp.record_field(cp.member("", CHECKPOINT_ID))
    )
    assert record is not None
    stored = cp.Record.decode(record)
    # alpha, small, is in the payload; zeta's line names its version and its bytes (1.7)
    assert list(stored.blobs) == ["zeta"] and stored.blobs["zeta"].startswith("00000002.1:")
    assert stored.payload.startswith(_payload.MARK)
    payload = _payload.unpack(stored.payload)
    assert CHECKPOINT_ID.encode() not in payload and b"00000002.1" in payload  # versions_seen
    assert payload.count(b"00000002.1") == 1


def test_small_values_live_in_records_and_large_ones_once_per_version(
    redis_url: str, client: redis.Redis
) -> None:
    """A small value is held by every record of its version (no field of its own); a large
    one is stored once, and a child whose parent names it names it too, without sending it
    again; a channel with a version and no value has neither."""
    saver = RedisChatSaver(redis_url)
    thread = {"configurable": {"thread_id": "inline", "checkpoint_ns": ""}}
    first = empty_checkpoint()
    first["id"] = "1ef00001-0000-6000-8000-00000000000a"
    first["channel_values"] = {"big": "b" * 1000, "flag": None, "small": [1, 2]}
    first["channel_versions"] = {"big": "1", "flag": "1", "small": "1", "gone": "1"}
    parent = saver.put(thread, first, {"step": 0}, dict(first["channel_versions"]))
    second = empty_checkpoint()
    second["id"] = "1ef00001-0000-6000-8000-00000000000b"
    second["channel_values"] = {"big": "b" * 1000, "flag": True, "small": [1, 2]}
    second["channel_versions"] = {"big": "1", "flag": "2", "small": "1", "gone": "1"}
    child = saver.put(parent, second, {"step": 1}, {"flag": "2"})

    fields = client.hkeys(cp.thread_keys("chat:", "inline")[3])
    blob_fields = [f for f in fields if f.startswith(b"b")]
    # (named by the version and its bytes' SHA-1, 1.7)
    assert len(blob_fields) == 1 and blob_fields[0].startswith(cp.blob_field("", "big", "1:"))
    for config, body in ((parent, first), (child, second)):
        found = saver.get_tuple(config)
        assert found is not None
        assert found.checkpoint["channel_values"] == body["channel_values"]
        assert found.checkpoint["channel_versions"] == body["channel_versions"]
    record = client.hget(
        cp.thread_keys("chat:", "inline")[3], cp.record_field(cp.member("", second["id"]))
    )
    assert record is not None
    assert cp.Record.decode(record).blobs == {"big": blob_fields[0].split(b"\0")[-1].decode()}

    # a saver that never saw the parent stores the large value again rather than guess
    fresh = RedisChatSaver(redis_url)
    third = {**second, "id": "1ef00001-0000-6000-8000-00000000000c"}
    third["channel_versions"] = {**second["channel_versions"], "flag": "3"}
    last = fresh.put(child, third, {"step": 2}, {"flag": "3"})
    found = fresh.get_tuple(last)
    assert found is not None and found.checkpoint["channel_values"]["big"] == "b" * 1000


def test_two_branches_that_give_a_channel_the_same_version_keep_their_values(
    redis_url: str, client: redis.Redis
) -> None:
    """Versions are a counter alone (1.7): a fork (time travel) gives a channel the version
    the other branch gave it too, with another value; values are stored by version and
    bytes, so each branch reads its own (the same value is stored once)."""
    saver = RedisChatSaver(redis_url)
    thread = {"configurable": {"thread_id": "forks", "checkpoint_ns": ""}}
    root = empty_checkpoint()
    root["id"] = "1ef00002-0000-6000-8000-00000000000a"
    root["channel_values"] = {"big": "r" * 1000}
    root["channel_versions"] = {"big": saver.get_next_version(None, None)}
    parent = saver.put(thread, root, {"step": 0}, dict(root["channel_versions"]))
    version = saver.get_next_version(root["channel_versions"]["big"], None)
    assert version == "00000002"
    branches = {}
    for suffix, fill in (("b", "x"), ("c", "y"), ("d", "x")):
        child = empty_checkpoint()
        child["id"] = f"1ef00002-0000-6000-8000-00000000000{suffix}"
        child["channel_values"] = {"big": fill * 1000}
        child["channel_versions"] = {"big": version}
        branches[suffix] = (saver.put(parent, child, {"step": 1}, {"big": version}), fill)
    for stored, fill in branches.values():
        for reader in (saver, RedisChatSaver(redis_url)):
            found = reader.get_tuple(stored)
            assert found is not None
            assert found.checkpoint["channel_values"]["big"] == fill * 1000
            assert found.checkpoint["channel_versions"] == {"big": version}
    fields = [f for f in client.hkeys(cp.thread_keys("chat:", "forks")[3]) if f.startswith(b"b")]
    assert len(fields) == 3  # r, x (twice, stored once) and y


def test_values_and_writes_are_stored_deflated_when_that_is_shorter(
    redis_url: str, client: redis.Redis
) -> None:
    """A channel value stored on its own and a pending write that are neither messages nor
    shaped are deflated with the payload's dictionary when that is shorter (a short one
    stays as it is), and read back the same."""
    saver = RedisChatSaver(redis_url)
    thread = {"configurable": {"thread_id": "deflated", "checkpoint_ns": ""}}
    body = empty_checkpoint()
    body["id"] = "1ef00003-0000-6000-8000-00000000000a"
    # (texts shorter than a shaped value's 128 bytes: a value with longer ones is kept as
    # it is, for the put that may store them as messages to shape it)
    big = {"documents": [{"title": f"doc {n}", "tags": ["lorem", "ipsum"] * 8} for n in range(9)]}
    body["channel_values"] = {"context": big}
    body["channel_versions"] = {"context": saver.get_next_version(None, None)}
    stored = saver.put(thread, body, {"step": 0}, dict(body["channel_versions"]))
    saver.put_writes(stored, [("context", big), ("flag", None)], "task-1")
    keys = cp.thread_keys("chat:", "deflated")
    values = [v for f, v in client.hscan_iter(keys[3]) if f.startswith(b"b")]
    writes = cp.decode_write_fields(client.hscan_iter(keys[4]))
    writes += cp.decode_record_fields(client.hscan_iter(keys[3]))
    assert len(values) == 1 and values[0].startswith(_payload.MARK)
    by_channel = {w.channel: w.value for w in writes}
    assert by_channel["context"].startswith(_payload.MARK)
    assert len(by_channel["context"]) < len(repr(big)) / 4
    assert not by_channel["flag"].startswith(_payload.MARK)  # deflating a null saves nothing
    for reader in (saver, RedisChatSaver(redis_url)):
        found = reader.get_tuple(stored)
        assert found is not None
        assert found.checkpoint["channel_values"] == {"context": big}
        assert [(w[1], w[2]) for w in found.pending_writes or []] == [
            ("context", big),
            ("flag", None),
        ]


def test_the_payload_dictionary_never_changes() -> None:
    """Records deflated with MARK's dictionary need exactly these bytes to be read: a new
    dictionary needs a new mark, and the old pair stays readable."""
    import hashlib
    import zlib

    assert _payload.MARK_1 == b"\x01z1\0"
    assert hashlib.sha1(_payload.DICTIONARY_1).hexdigest() == (
        "1a77ac694b937e2e0b046ac8908fb72ad7941bb2"
    )
    assert _payload.MARK == b"\x01z2\0"
    assert hashlib.sha1(_payload.DICTIONARY).hexdigest() == (
        "bce58e5c00dbf279947104067c2e8ca6839acec8"
    )
    sample = b"msgpack\0" + b"x" * 300
    assert _payload.unpack(_payload.pack(sample)) == sample
    # a payload written with the first dictionary reads as before
    deflater = zlib.compressobj(
        6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _payload.DICTIONARY_1
    )
    old = _payload.MARK_1 + deflater.compress(sample) + deflater.flush()
    assert len(old) < len(sample) and _payload.unpack(old) == sample
    assert _payload.pack(b"ab") == b"ab"  # too short to shrink: kept as it is


def test_a_record_written_in_full_reads_as_it_is(redis_url: str, client: redis.Redis) -> None:
    saver = RedisChatSaver(redis_url)
    client.function_load(library_source(), replace=True)
    body = checkpoint()
    body.pop("channel_values")
    body["channel_versions"] = {"zeta": "00000002.1"}
    kind, data = saver.serde.dumps_typed({"c": body, "m": {"step": 1}, "p": None})
    header = cp.Record(blobs={"zeta": "00000002.1"}, payload=kind.encode() + b"\0" + data)
    keys = cp.thread_keys("chat:", "full")
    name = cp.member("", CHECKPOINT_ID)
    value = saver.serde.dumps_typed(7)
    client.execute_command(
        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", name, header.encode(),
        "BLOB", cp.blob_field("", "zeta", "00000002.1"), value[0].encode() + b"\0" + value[1],
    )  # fmt: skip

    found = saver.get_tuple({"configurable": {"thread_id": "full", "checkpoint_ns": ""}})

    assert found is not None
    assert found.checkpoint["id"] == CHECKPOINT_ID
    assert found.checkpoint["channel_versions"] == {"zeta": "00000002.1"}
    assert found.checkpoint["channel_values"] == {"zeta": 7}


def test_a_list_too_fragmented_for_runs_is_stored_as_a_value(
    redis_url: str, client: redis.Redis
) -> None:
    """A checkpoint keeping every other message of 10,000 (5,000 runs, more than a call may
    resolve) stores its list as a value; it reads back the same, and the session keeps
    every message once."""
    saver = RedisChatSaver(redis_url)
    messages = [HumanMessage(f"m{i}", id=f"id{i}") for i in range(10_000)]
    first = empty_checkpoint()
    first["id"] = "1ef00001-0000-6000-8000-000000000001"
    first["channel_values"] = {"messages": messages}
    first["channel_versions"] = {"messages": "00000001.0"}
    parent = saver.put(config(), first, {"step": 0}, {"messages": "00000001.0"})
    second = empty_checkpoint()
    second["id"] = "1ef00001-0000-6000-8000-000000000002"
    second["channel_values"] = {"messages": messages[::2]}
    second["channel_versions"] = {"messages": "00000002.0"}
    stored = saver.put(parent, second, {"step": 1}, {"messages": "00000002.0"})

    found = saver.get_tuple(stored)

    assert found is not None
    assert [m.id for m in found.checkpoint["channel_values"]["messages"]] == [
        m.id for m in messages[::2]
    ]
    record = client.hget(
        cp.thread_keys("chat:", "records")[3], cp.record_field(cp.member("", second["id"]))
    )
    assert record is not None
    blobs = cp.Record.decode(record).blobs
    assert list(blobs) == ["messages"] and blobs["messages"].startswith("00000002.0:")
    assert client.xlen(cp.thread_keys("chat:", "records")[0]) == 10_000


# -- the order set in pages (1.6) ---------------------------------------------------------------


def test_the_order_set_in_pages_lists_as_a_sorted_set_of_members_would() -> None:
    """Checkpoints added and dropped in any order, in two namespaces, with pages of 3 ids
    (the shipped 64 split and fill the same way): every list page, from every cursor, and
    LATEST are those of a sorted set of one member per checkpoint."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conftest import checkpoint_library
    from redis_chat_history.local_server import start_redis, stop_redis

    ids = st.sampled_from([f"{n:02d}" for n in range(12)] + ["1", "10a", "7"])
    step = st.tuples(st.sampled_from(["put", "drop"]), st.sampled_from(["", "sub"]), ids)
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        client.function_load(checkpoint_library(ORDER_PAGE=3), replace=True)
        counter = iter(range(10**6))

        @settings(max_examples=80, deadline=None)
        @given(st.lists(step, max_size=30))
        def check(steps: list[tuple[str, str, str]]) -> None:
            keys = cp.thread_keys("o:", f"t{next(counter)}")
            model: set[bytes] = set()
            for action, ns, ident in steps:
                member = cp.member(ns, ident)
                if action == "put":
                    client.execute_command(
                        "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", member, "0\n"
                    )
                    model.add(member)
                else:
                    client.execute_command("FCALL", cp.CP_DROP, 6, *keys, member)
                    model.discard(member)
            pages = client.zrange(keys[5], 0, -1)
            assert all(page.count(b"\0") <= 3 for page in pages)
            for ns in ("", "sub", "ALL"):
                mine = sorted(
                    (m for m in model if ns == "ALL" or m.split(b"\0")[0] == ns.encode()),
                    reverse=True,
                )
                for before in [b"", *mine, cp.member(ns if ns != "ALL" else "", "05")]:
                    for count in (1, 2, 5):
                        reply = client.execute_command(
                            "FCALL_RO", cp.CP_LIST, 6, *keys, ns, before, count
                        )
                        got = [item[0] for item in reply[1:]]
                        want = [m for m in mine if not before or m < before][:count]
                        assert got == want, (ns, before, count)
                if ns != "ALL":
                    latest = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, "LATEST", ns)
                    assert (latest[0] if latest else None) == (mine[0] if mine else None)

        check()
    finally:
        stop_redis(server)


def test_a_parent_stored_by_its_place_reads_as_its_id() -> None:
    """A record whose parent is the id before it in the order set is stored with "P" alone
    (1.7); puts, puts again, drops and copies in any order (two namespaces, pages of 3 ids)
    never change the parent a get, a list, a chain walk or a dump gives."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conftest import checkpoint_library
    from redis_chat_history.local_server import start_redis, stop_redis

    idents = [f"{n:02d}" for n in range(10)] + ["1", "05a"]
    step = st.tuples(
        st.sampled_from(["put", "put", "put", "drop", "copy"]),
        st.sampled_from(["", "sub"]),
        st.sampled_from(idents),
        st.sampled_from(["before", "before", "other", "none"]),
        st.sampled_from(idents),
    )
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        client.function_load(checkpoint_library(ORDER_PAGE=3), replace=True)
        counter = iter(range(10**6))

        def fcall(name: str, keys: cp.Keys, *args: Any) -> Any:
            return client.execute_command("FCALL", name, 6, *keys, *args)

        def dump(keys: cp.Keys) -> list[tuple[bytes, bytes]]:
            fields, cursor = [], b"0"
            while True:
                cursor, *items = fcall(cp.CP_DUMP, keys, "C", cursor)
                fields += zip(items[0::2], items[1::2], strict=True)
                if cursor == b"0":
                    return fields

        def check_thread(keys: cp.Keys, model: dict[bytes, str | None]) -> None:
            for member, parent in model.items():
                reply = fcall(cp.CP_GET, keys, member)
                assert cp.Record.decode(reply[1]).parent == parent, (member, parent)
                chain = fcall(cp.CP_CHAIN, keys, "PARENT", member, "messages")
                ns = member.split(b"\0")[0]
                want = cp.member(ns.decode(), parent) if parent else None
                if want in model:
                    assert chain[1][0] == want
            for ns in ("", "sub"):
                listed = fcall(cp.CP_LIST, keys, ns, b"", 64)[1:]
                for item in listed:
                    assert cp.Record.decode(item[1]).parent == model[item[0]]
            for field, value in dump(keys):
                if field.startswith(b"c"):
                    assert cp.Record.decode(value).parent == model[field[1:]]

        @settings(max_examples=80, deadline=None)
        @given(st.lists(step, max_size=25))
        def check(steps: list[tuple[str, str, str, str, str]]) -> None:
            run = next(counter)
            keys = cp.thread_keys("p:", f"t{run}")
            model: dict[bytes, str | None] = {}
            for action, ns, ident, choice, other in steps:
                member = cp.member(ns, ident)
                if action == "drop":
                    fcall(cp.CP_DROP, keys, member)
                    model.pop(member, None)
                elif action == "copy":
                    target = cp.thread_keys("p:", f"t{run}-copy")
                    fields = dump(keys)
                    if fields:
                        args = [part for field, value in fields for part in ("C", field, value)]
                        fcall(cp.CP_LOAD, target, *args)
                    check_thread(target, model)
                    client.delete(*target)
                else:
                    mine = sorted(m for m in model if m.split(b"\0")[0] == ns.encode())
                    earlier = [m for m in mine if m < member]
                    parent = {
                        "before": earlier[-1].split(b"\0")[1].decode() if earlier else None,
                        "other": other,
                        "none": None,
                    }[choice]
                    header = f"P{parent}\n".encode() if parent else b""
                    record = str(len(header)).encode() + b"\n" + header + b"payload"
                    fcall(cp.CP_PUT, keys, "CHECKPOINT", member, record)
                    model[member] = parent
                check_thread(keys, model)

        check()
        # the common case, each checkpoint's parent the one before it, is stored by place
        keys = cp.thread_keys("p:", "line")
        parent = None
        for n in range(5):
            header = f"P{parent}\n".encode() if parent else b""
            fcall(cp.CP_PUT, keys, "CHECKPOINT", cp.member("", f"{n:02d}"),
                  str(len(header)).encode() + b"\n" + header)  # fmt: skip
            parent = f"{n:02d}"
        stored = [v for f, v in client.hscan_iter(keys[3]) if f.startswith(b"c")]
        assert sum(b"\nP\n" in value for value in stored) == 4
    finally:
        stop_redis(server)


def test_the_order_set_work_of_a_put_and_a_list_does_not_grow_with_the_thread() -> None:
    """A put reads and rewrites one page of the order set, a list of 5 reads a page or two,
    however many checkpoints the thread holds (commands inside the function are counted by
    INFO commandstats)."""
    from redis_chat_history.local_server import start_redis, stop_redis

    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        client.function_load(library_source(), replace=True)
        keys = cp.thread_keys("o:", "many")
        for n in range(1000):
            member = cp.member("", f"{n:08d}")
            client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", member, "0\n")

        def calls(name: str) -> int:
            stats = client.info("commandstats").get(f"cmdstat_{name}", {})
            return int(stats.get("calls", 0))

        client.config_resetstat()
        member = cp.member("", "00001000")
        client.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", member, "0\n")
        assert calls("zrevrangebylex") == 1 and calls("zadd") <= 2 and calls("zrem") <= 1
        client.config_resetstat()
        reply = client.execute_command("FCALL_RO", cp.CP_LIST, 6, *keys, "", "", 5)
        assert len(reply) == 6 and calls("zrevrangebylex") <= 2
    finally:
        stop_redis(server)


@pytest.mark.parametrize("seed", range(4))
def test_parents_read_as_put_through_random_puts_writes_drops_and_a_copy(
    client: redis.Redis, seed: int
) -> None:
    """Puts of ids anywhere in the order (mostly after the id before them, as an agent
    does), puts again, writes that move counts into records and out, drops that stop on
    their budget, in two namespaces with order pages of 2 ids: every parent that get, list,
    dump and a copy read is the one its put named."""
    import random

    from conftest import checkpoint_library
    from test_checkpoint_long_records import fcall, record_of

    client.function_load(checkpoint_library(ORDER_PAGE=2, DROP_FIELDS=2), replace=True)
    rng = random.Random(seed)
    keys = cp.thread_keys("fz:", f"t{seed}")
    parents: dict[tuple[str, str], str | None] = {}

    def parent_of(record: bytes) -> str | None:
        return cp.Record.decode(record).parent

    for _ in range(150):
        ns = rng.choice(["", "a"])
        ids = sorted(i for (n, i) in parents if n == ns)
        choice = rng.random()
        if choice < 0.55 or not ids:
            new = f"{rng.randrange(1000):03d}{rng.choice(['', 'x', 'xy'])}"
            before = [i for i in ids if i < new]
            parent = before[-1] if before and rng.random() < 0.8 else None
            if parent is None and ids and rng.random() < 0.5:
                parent = rng.choice(ids)
            record = record_of(rng.choice([100, 100, 3000]), parent)
            fcall(client, cp.CP_PUT, keys, "INRECORD", "CHECKPOINT", cp.member(ns, new), record)
            parents[(ns, new)] = parent
        elif choice < 0.75:
            member = cp.member(ns, rng.choice(ids))
            for task in range(rng.choice([1, 1, 3])):
                value = b"v" * rng.choice([10, 200])
                fcall(client, cp.CP_WRITES, keys, "INRECORD", "WRITES", member, 1,
                      f"task{task}", 0, "", "ch", value)  # fmt: skip
        else:
            doomed = rng.sample(ids, min(len(ids), rng.choice([1, 1, 2, 3])))
            members = [cp.member(ns, i) for i in doomed]
            while members:
                members = members[int(fcall(client, cp.CP_DROP, keys, *members)[1]) :]
            for i in doomed:
                del parents[(ns, i)]
        for (n, i), parent in parents.items():
            reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, cp.member(n, i))
            assert parent_of(reply[1]) == parent, (n, i)

    target, cursor = cp.thread_keys("fz:", f"copy{seed}"), b"0"
    while True:
        reply = client.execute_command("FCALL_RO", cp.CP_DUMP, 6, *keys, "C", cursor)
        cursor, fields = reply[0], []
        for k in range(1, len(reply), 2):
            fields += ["C", reply[k], reply[k + 1]]
            if reply[k].startswith(b"c"):
                assert parent_of(reply[k + 1]) == parents[cp.split_member(reply[k][1:])]
        if fields:
            fcall(client, cp.CP_LOAD, target, *fields)
        if cursor in (b"0", 0):
            break
    for (n, i), parent in parents.items():
        reply = client.execute_command("FCALL_RO", cp.CP_GET, 6, *target, cp.member(n, i))
        assert parent_of(reply[1]) == parent
    for ns in ("", "a"):
        before = b""
        while True:
            reply = client.execute_command("FCALL_RO", cp.CP_LIST, 6, *keys, ns, before, 3)
            for item in reply[1:]:
                assert parent_of(item[1]) == parents[cp.split_member(item[0])]
            before = reply[0]
            if not before:
                break
    client.function_load(library_source(), replace=True)


def test_an_id_holding_the_byte_ff_is_refused(loaded: redis.Redis) -> None:
    """0xFF (never in UTF-8) bounds a namespace's pages of the order set: an id holding it
    would not be found there, so a put, a get and a drop refuse it and change nothing."""
    keys = cp.thread_keys("ff:", "t")
    for member in (b"\0\xffa", b"ns\0a\xff"):
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
            loaded.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", member, "0\n")
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
            loaded.execute_command("FCALL_RO", cp.CP_GET, 6, *keys, member)
    assert loaded.exists(*keys) == 0


def test_an_id_holding_a_newline_is_refused(loaded: redis.Redis) -> None:
    """A "P" line could not name a parent whose id holds a newline (1.7.1)."""
    keys = cp.thread_keys("nl:", "t")
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
        loaded.execute_command("FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", b"\x001\nVq", "0\np")
    assert loaded.exists(*keys) == 0
