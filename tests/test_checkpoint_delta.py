"""get_delta_channel_history (what LangGraph's DeltaChannel replays) walks the parent chain in
library calls of a page of ancestors each (chathist_cp_chain), and answers exactly what the
base class's walk of get_tuple calls answers: on a DeltaChannel graph, for every checkpoint of
its history, with budgets of one entry, and on records written before 1.5 (no parent line)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypedDict

import pytest
import redis

pytest.importorskip("langgraph.channels.delta")

from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from conftest import checkpoint_library
from redis_chat_history import _checkpoint_protocol as cp
from redis_chat_history import library_source
from redis_chat_history.checkpoint import RedisChatSaver, _payload

CHANNELS = ["items", "count", "never-written"]


def add_all(state: Any, writes: Any) -> list[Any]:
    items = list(state or [])
    for write in writes:
        items.extend(write if isinstance(write, list) else [write])
    return items


class State(TypedDict):
    items: Annotated[list, DeltaChannel(add_all, snapshot_frequency=4)]
    count: int


def step(state: State) -> dict[str, Any]:
    return {"items": [f"item {state.get('count', 0)}"], "count": state.get("count", 0) + 1}


def run_graph(saver: RedisChatSaver, thread_id: str, turns: int = 10) -> Any:
    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread_id}}
    for turn in range(turns):
        graph.invoke({"count": turn}, config)
    return graph, config


def base_walk(saver: RedisChatSaver, config: Any) -> Any:
    return BaseCheckpointSaver.get_delta_channel_history(saver, config=config, channels=CHANNELS)


def fcalls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        stats.get(name, {}).get("calls", 0) for name in ("cmdstat_fcall", "cmdstat_fcall_ro")
    )


def test_it_answers_as_the_base_walk_for_every_checkpoint(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    graph, config = run_graph(saver, "delta")
    state = graph.get_state(config)
    assert state.values["items"] == [f"item {i}" for i in range(10)]
    history = list(graph.get_state_history(config))
    assert len(history) > 20
    for snapshot in history:
        assert saver.get_delta_channel_history(
            config=snapshot.config, channels=CHANNELS
        ) == base_walk(saver, snapshot.config)
    latest = {"configurable": {"thread_id": "delta", "checkpoint_ns": ""}}
    assert saver.get_delta_channel_history(config=latest, channels=CHANNELS) == base_walk(
        saver, latest
    )
    mine = asyncio.run(saver.aget_delta_channel_history(config=state.config, channels=CHANNELS))
    assert mine == base_walk(saver, state.config)
    assert saver.get_delta_channel_history(config=state.config, channels=[]) == {}


def test_one_call_walks_the_chain(redis_url: str, client: redis.Redis) -> None:
    """A chain of fewer than 64 ancestors takes one library call; the base walk a call per
    ancestor."""
    saver = RedisChatSaver(redis_url)
    graph, config = run_graph(saver, "delta-calls")
    state = graph.get_state(config)
    before = fcalls(client)
    mine = saver.get_delta_channel_history(config=state.config, channels=CHANNELS)
    ours = fcalls(client) - before
    before = fcalls(client)
    assert base_walk(saver, state.config) == mine
    theirs = fcalls(client) - before
    assert ours == 1 and theirs > 10, (ours, theirs)


def test_small_budgets_and_records_without_a_parent_line(
    redis_url: str, client: redis.Redis
) -> None:
    saver = RedisChatSaver(redis_url)
    graph, config = run_graph(saver, "delta-old")
    history = [snapshot.config for snapshot in graph.get_state_history(config)]
    expected = [base_walk(saver, item) for item in history]
    # a library that reads one entry and walks two ancestors per call
    client.function_load(checkpoint_library(READ_ENTRIES=1, CP_PAGE=2), replace=True)
    assert [saver.get_delta_channel_history(config=c, channels=CHANNELS) for c in history] == (
        expected
    )
    # records as a saver before 1.5 wrote them: the parent's id in the payload, no P line
    keys = cp.thread_keys("chat:", "delta-old")
    key, dumped, cursor = keys[3], [], b"0"
    while True:  # (a dump gives a record's parent id, which the stored record may leave out)
        cursor, *items = client.execute_command("FCALL_RO", cp.CP_DUMP, 6, *keys, "C", cursor)
        dumped += zip(items[0::2], items[1::2], strict=True)
        if cursor == b"0":
            break
    for field, value in dumped:
        if field.startswith(b"c"):
            record = cp.Record.decode(value)
            kind, _, data = _payload.unpack(record.payload).partition(b"\0")
            body = saver.serde.loads_typed((kind.decode(), data))
            body["p"], record.parent = record.parent, None
            kind, data = saver.serde.dumps_typed(body)
            record.payload = _payload.pack(kind.encode() + b"\0" + data)
            client.hset(key, field, record.encode())
    client.function_load(library_source(), replace=True)
    assert [saver.get_delta_channel_history(config=c, channels=CHANNELS) for c in history] == (
        expected
    )


def test_parent_links_that_loop_end_the_walk(redis_url: str, client: redis.Redis) -> None:
    """A thread whose records' parent lines make a loop (written by hand: LangGraph never
    does) gives an answer, not an endless walk: the library's calls are a page each, and
    the saver stops at an ancestor it has seen."""
    saver = RedisChatSaver(redis_url)
    graph, config = run_graph(saver, "delta-loop", turns=3)
    history = [snapshot.config for snapshot in graph.get_state_history(config)]
    key = cp.thread_keys("chat:", "delta-loop")[3]
    newest = history[0]["configurable"]["checkpoint_id"]
    oldest = cp.member("", history[-1]["configurable"]["checkpoint_id"])
    record = cp.Record.decode(client.hget(key, cp.record_field(oldest)))
    record.parent = newest  # the root now names the newest as its parent
    client.hset(key, cp.record_field(oldest), record.encode())
    found = saver.get_delta_channel_history(config=history[0], channels=["never-written"])
    assert found == {"never-written": {"writes": []}}


def put_values(saver: RedisChatSaver, config: Any, cid: str, values: dict[str, Any]) -> Any:
    from langgraph.checkpoint.base import empty_checkpoint

    checkpoint = empty_checkpoint()
    checkpoint["id"] = cid
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = {k: saver.get_next_version(None, None) for k in values}
    return saver.put(config, checkpoint, {}, dict(checkpoint["channel_versions"]))


def test_a_write_stored_twice_counts_once_whatever_the_channels_asked(redis_url: str) -> None:
    """(T, 1) stored twice, in two groups, first for channel a, then for b: readers keep the
    first, so a walk for b alone has no write of b (writes of channels not asked for are
    replied without their value, so the first copy is still seen)."""
    saver = RedisChatSaver(redis_url)
    root = {"configurable": {"thread_id": "twice", "checkpoint_ns": ""}}
    first = put_values(saver, root, "1", {})
    saver.put_writes(first, [("a", 1), ("a", 2)], "T")
    saver.put_writes(first, [("z", 0)], "U")
    saver.put_writes(first, [("a", 3), ("b", 4)], "T")  # (T, 1) again, in a new group
    second = put_values(saver, first, "2", {})
    for channels in (["b"], ["a", "b"], ["a"]):
        assert saver.get_delta_channel_history(config=second, channels=channels) == (
            BaseCheckpointSaver.get_delta_channel_history(saver, config=second, channels=channels)
        )


def test_a_value_gone_from_under_its_record_does_not_stop_the_walk(
    redis_url: str, client: redis.Redis
) -> None:
    """A B line whose value is absent (deleted by hand, a drop racing a put) is no seed:
    the walk goes on past it, for that channel too, as the base walk does."""
    saver = RedisChatSaver(redis_url)
    root = {"configurable": {"thread_id": "gone", "checkpoint_ns": ""}}
    c1 = put_values(saver, root, "1", {"big": "a" * 300})
    saver.put_writes(c1, [("big", "w1")], "T1")
    c2 = put_values(saver, c1, "2", {"small": 1})
    saver.put_writes(c2, [("big", "w2")], "T2")
    c3 = put_values(saver, c2, "3", {"big": "b" * 300})
    saver.put_writes(c3, [("big", "w3")], "T3")
    c4 = put_values(saver, c3, "4", {})
    key = cp.thread_keys("chat:", "gone")[3]
    record = cp.Record.decode(client.hget(key, cp.record_field(cp.member("", "3"))))
    client.hdel(key, cp.blob_field("", "big", record.blobs["big"]))
    channels = ["big", "never"]
    found = saver.get_delta_channel_history(config=c4, channels=channels)
    assert found == BaseCheckpointSaver.get_delta_channel_history(
        saver, config=c4, channels=channels
    )
    assert [write[2] for write in found["big"]["writes"]] == ["w1", "w2", "w3"]


def test_a_chain_call_stays_inside_the_read_budget(client: redis.Redis) -> None:
    """70 ancestors whose headers hold 999 lines of channels not asked for: a chain call
    counts their lines (one entry per 8) and stops at its budget, a page at most."""
    client.function_load(checkpoint_library(count_work=True), replace=True)
    keys = cp.thread_keys("chat:", "chain-work")
    lines = "".join(f"Vc{i}\n" for i in range(998))
    for n in range(70):
        header = lines + (f"Pc{n - 1}\n" if n else "")
        client.execute_command(
            "FCALL", cp.CP_PUT, 6, *keys, "CHECKPOINT", cp.member("", f"c{n}"),
            f"{len(header.encode())}\n{header}payload",
        )  # fmt: skip
    work, reply = client.execute_command(
        "FCALL_RO", cp.CP_CHAIN, 6, *keys, "AT", cp.member("", "c69"), "wanted"
    )
    entries, read = map(int, work.split())
    ancestors = len(reply) - 1
    assert 1 <= ancestors < 64 and reply[0] == cp.member("", f"c{69 - ancestors}")
    assert entries <= 512 + 125 and read <= 262144 + 8000, work
    client.function_load(library_source(), replace=True)


class WordState(TypedDict):
    messages: Annotated[list, DeltaChannel(add_all, snapshot_frequency=4)]
    count: int


def word_step(state: WordState) -> dict[str, Any]:
    return {"messages": [f"item {state.get('count', 0)}"], "count": state.get("count", 0) + 1}


def test_a_channel_named_as_a_compact_word_is_walked_with_its_writes(redis_url: str) -> None:
    """A channel whose name the saver could store as a word code ("messages"): the chain
    still picks its writes by name (the saver keeps a write's channel as it is)."""
    from langgraph.checkpoint.memory import InMemorySaver

    def history(saver: Any) -> list[Any]:
        builder = StateGraph(WordState)
        builder.add_node("step", word_step)
        builder.add_edge(START, "step")
        builder.add_edge("step", END)
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "words"}}
        for turn in range(6):
            graph.invoke({"count": turn}, config)
        return [state.values.get("messages") for state in graph.get_state_history(config)]

    saver = RedisChatSaver(redis_url)
    assert history(saver) == history(InMemorySaver())
    latest = saver.get_tuple({"configurable": {"thread_id": "words"}})
    assert latest is not None
    channels = ["messages", "count"]
    assert saver.get_delta_channel_history(config=latest.config, channels=channels) == (
        BaseCheckpointSaver.get_delta_channel_history(
            saver, config=latest.config, channels=channels
        )
    )
