"""Many processes writing and reading the same sessions at once, against a real redis-server.

8 writer processes x 500 appends each, into one shared session and into overlapping
sessions, with 2 reader processes reading all the while (and, in one run, every client
connection killed every 50 ms). Checked afterwards: every acknowledged message is stored
exactly once and nothing else is; every read was a prefix of one final order; each
writer's messages are in the order it sent them; search (through the session's index,
built while the writers wrote) finds exactly each writer's messages, in the same order,
and the same as after rebuilding the index from the messages.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis
from langchain_core.messages import HumanMessage
from redis.backoff import ConstantBackoff

from conftest import RawSession
from redis_chat_history import RedisChatMessageHistory, RetryPolicy
from redis_chat_history import _protocol as protocol
from redis_chat_history._transport import SyncTransport
from redis_chat_history.local_server import LocalRedis

WRITERS = 8
APPENDS = 500
READERS = 2
PATIENT = RetryPolicy(retries=50, backoff=ConstantBackoff(0.01))


@pytest.fixture
def url(server: LocalRedis) -> str:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    return server.url


def text(worker: int, number: int) -> str:
    """A message's content: searchable by its writer's token, and naming its position."""
    return f"writer{worker} says number {number}"


def parse(content: str) -> tuple[int, int]:
    words = content.split()
    return int(words[0].removeprefix("writer")), int(words[-1])


def write(url: str, worker: int, sessions: list[str], start: Any, out: Connection) -> None:
    """A writer process: APPENDS appends of one message, cycling over ``sessions``."""
    histories = [RedisChatMessageHistory(s, redis_url=url, retry=PATIENT) for s in sessions]
    acknowledged: list[tuple[str, str]] = []
    start.wait()
    for number in range(APPENDS):
        history = histories[number % len(histories)]
        history.add_message(HumanMessage(text(worker, number)))
        acknowledged.append((history.session_id, text(worker, number)))
    out.send(acknowledged)
    out.close()


def read(url: str, session: str, start: Any, stop: Any, out: Connection) -> None:
    """A reader process: reads the stream ids of the whole session again and again until
    told to stop (raw FCALL_RO through the package's transport, with retries)."""
    transport = SyncTransport(redis.Redis.from_url(url), PATIENT)
    call = protocol.range_call(protocol.session_keys("chat:", session))
    snapshots: list[list[str]] = []
    start.wait()
    while not stop.is_set():
        snapshots.append([id.decode() for id in transport.run(call)[0::2]])
        time.sleep(0.01)
    out.send(snapshots)
    out.close()


def run(
    url: str, plan: dict[int, list[str]], watched: str, kill_every: float | None = None
) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Run the writers of ``plan`` (worker -> sessions) and READERS readers of ``watched``;
    return every acknowledged (session, content) and every reader snapshot."""
    context = multiprocessing.get_context("fork")
    start, stop = context.Event(), context.Event()
    writers, readers = [], []
    for worker, sessions in plan.items():
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=write, args=(url, worker, sessions, start, send))
        writers.append((process, receive))
    for _ in range(READERS):
        receive, send = context.Pipe(duplex=False)
        readers.append(
            (context.Process(target=read, args=(url, watched, start, stop, send)), receive)
        )
    for process, _ in writers + readers:
        process.start()
    killer = Killer(url, kill_every) if kill_every else None
    start.set()
    try:
        acknowledged = [item for _, receive in writers for item in receive.recv()]
        stop.set()
        snapshots = [snapshot for _, receive in readers for snapshot in receive.recv()]
    finally:
        stop.set()
        if killer:
            killer.stop()
        for process, _ in writers + readers:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process, _ in writers + readers)
    return acknowledged, snapshots


class Killer:
    """Kills every other client connection of the server, every ``interval`` seconds."""

    def __init__(self, url: str, interval: float) -> None:
        self.client = redis.Redis.from_url(url)
        self.interval = interval
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.kills += int(self.client.client_kill_filter(_type="normal", skipme=True))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def check(
    url: str,
    acknowledged: list[tuple[str, str]],
    snapshots: list[list[str]],
    watched: str,
) -> None:
    """Exactly once, one total order, each writer's order kept, and search agrees."""
    sessions = sorted({session for session, _ in acknowledged})
    final = {s: RedisChatMessageHistory(s, redis_url=url, retry=PATIENT) for s in sessions}
    for session in sessions:
        messages = final[session].messages
        stored = [str(m.content) for m in messages]
        sent = Counter(content for s, content in acknowledged if s == session)
        kept = Counter(stored)
        assert kept == sent, f"{session}: every acknowledged message once, nothing else"
        assert max(kept.values()) == 1
        for worker in range(WRITERS):
            numbers = [n for w, n in map(parse, stored) if w == worker]
            assert numbers == sorted(numbers), f"writer {worker}'s order is kept"
            hits = final[session].search_messages(f"WRITER{worker}", limit=1000)
            assert [h["content"] for h in hits] == [c for c in stored if parse(c)[0] == worker], (
                "search finds exactly the writer's messages, in the stored order"
            )
    assert len(acknowledged) == WRITERS * APPENDS
    admin = redis.Redis.from_url(url)
    for session in sessions:
        assert admin.hexists(final[session].keys[1], "\x00v"), "indexed: search used the index"
    admin.close()
    before = [final[watched].search_messages(f"writer{w}", limit=1000) for w in (0, WRITERS - 1)]
    assert final[watched].reindex() == len([s for s, _ in acknowledged if s == watched])
    after = [final[watched].search_messages(f"writer{w}", limit=1000) for w in (0, WRITERS - 1)]
    assert after == before, "the index built during the run equals one rebuilt from the messages"
    order = [
        id.decode()
        for id in RawSession(redis.Redis.from_url(url), "chat:", watched).call(
            "range", read_only=True
        )[0::2]
    ]
    assert len(order) == len(set(order)) == len([s for s, _ in acknowledged if s == watched])
    assert len(snapshots) >= READERS, "the readers read while the writers wrote"
    for snapshot in snapshots:
        assert snapshot == order[: len(snapshot)], "every read is a prefix of one order"
    assert any(0 < len(s) < len(order) for s in snapshots), "some reads were mid-run"


def test_eight_writers_into_one_session(url: str) -> None:
    plan = {worker: ["shared"] for worker in range(WRITERS)}
    acknowledged, snapshots = run(url, plan, "shared")
    check(url, acknowledged, snapshots, "shared")


def test_eight_writers_into_overlapping_sessions_while_connections_are_killed(
    url: str,
) -> None:
    """Each writer alternates between two of four sessions (each session has four writers),
    while every connection is killed every 50 ms: retried appends must not duplicate."""
    plan = {worker: [f"s{worker % 4}", f"s{(worker + 1) % 4}"] for worker in range(WRITERS)}
    killed = redis.Redis.from_url(url)
    before = int(killed.info("stats")["total_connections_received"])
    acknowledged, snapshots = run(url, plan, "s0", kill_every=0.05)
    reconnects = int(killed.info("stats")["total_connections_received"]) - before
    killed.close()
    assert reconnects > WRITERS + READERS, "connections were killed and made again"
    check(url, acknowledged, snapshots, "s0")
