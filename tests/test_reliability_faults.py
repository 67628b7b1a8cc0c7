"""Server trouble and retries, against real redis-server processes.

Every fault is real: a connection cut by ``CLIENT KILL`` from a second connection while a
reply is on its way, a server stalled by ``DEBUG SLEEP``, a long script (``BUSY``), a
server loading its data (``LOADING``), a replica (``READONLY``), a full ``maxmemory``
(``OOM``), a stopped server. Each must raise the package's exception for it, retry only
what is transient within the policy's bounds, and leave every message stored exactly once
or not at all.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from redis.backoff import ConstantBackoff

from conftest import RawSession
from redis_chat_history import (
    InvalidInputError,
    ReadOnlyReplicaError,
    RedisChatMessageHistory,
    RedisTimeoutError,
    RedisUnavailableError,
    RetryPolicy,
    ServerBusyError,
    ServerOutOfMemoryError,
    library_source,
)
from redis_chat_history.cli import main
from redis_chat_history.local_server import (
    LocalRedis,
    free_port,
    redis_server_path,
    start_redis,
    stop_redis,
)

#: Quick, generous retries for tests whose fault ends by itself within a second.
PATIENT = RetryPolicy(retries=30, backoff=ConstantBackoff(0.05))


# -- servers and tools ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LocalRedis]:
    """A server that allows DEBUG from loopback, says BUSY after 100 ms of script, and
    syncs replicas at once."""
    server = start_redis(
        [
            *("--enable-debug-command", "local"),
            *("--busy-reply-threshold", "100"),
            *("--repl-diskless-sync-delay", "0"),
        ]
    )
    yield server
    stop_redis(server)


@pytest.fixture
def faulty(faulty_server: LocalRedis) -> Iterator[redis.Redis]:
    """A raw client on the flushed faulty server, with the library loaded."""
    client = redis.Redis.from_url(faulty_server.url)
    client.flushall()
    client.function_load(library_source(), replace=True)
    yield client
    client.close()


def fresh(url: str) -> str:
    """``url`` with a unique client name, so a history gets a client of its own."""
    return f"{url}/0?client_name=t{uuid.uuid4().hex}"


def session_dump(client: redis.Redis, prefix: str = "chat:", session: str = "s") -> list[Any]:
    """Everything stored for a session, raw: (stream id, JSON) pairs."""
    return [(i, fields) for i, fields in client.xrange(f"{prefix}{{{session}}}:m")]


def contents(history: RedisChatMessageHistory) -> list[str]:
    return [str(m.content) for m in history.messages]


def fcalls(client: redis.Redis, counter: str = "calls") -> int:
    """How many FCALLs the server has run (``calls``) or refused before running them
    (``rejected_calls``)."""
    return int(client.info("commandstats").get("cmdstat_fcall", {}).get(counter, 0))


def in_background(action: Callable[[], Any], delay: float) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class Relay:
    """A TCP relay between clients and a redis-server that can hold back the server's replies.

    With ``holding`` set, bytes from the server are kept instead of forwarded; when the
    server side of a connection is closed (by ``CLIENT KILL``), the client side is closed
    too and the held reply is never delivered: the client sent a command, the server ran
    it, and the reply was lost.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.holding = threading.Event()
        self.upstream_ports: list[int] = []
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.upstream_ports.append(upstream.getsockname()[1])
            self._sockets += [downstream, upstream]
            threading.Thread(
                target=self._pump, args=(downstream, upstream, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, downstream, True), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.holding.is_set():
                    self.held.set()
                    continue
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def relay(faulty: redis.Redis, faulty_server: LocalRedis) -> Iterator[Relay]:
    proxy = Relay(faulty_server.port)
    yield proxy
    proxy.close()


def cut_when_reply_held(relay: Relay, killer: redis.Redis) -> threading.Thread:
    """In the background: once the server has replied to a held call, ``CLIENT KILL`` the
    relay's server-side connections from a second connection, then let replies through."""

    def cut() -> None:
        assert relay.held.wait(5), "no reply was held"
        for port in list(relay.upstream_ports):
            with contextlib.suppress(redis.ResponseError):  # that connection may be gone
                killer.client_kill_filter(addr=f"127.0.0.1:{port}")
        relay.holding.clear()

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    return thread


# -- retries without duplicates ------------------------------------------------------------------


@pytest.mark.parametrize("with_ids", [True, False], ids=["own-ids", "no-ids"])
def test_reply_lost_to_client_kill_is_retried_and_stored_once(
    faulty: redis.Redis, relay: Relay, with_ids: bool
) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(relay.url), retry=PATIENT)
    assert len(history) == 0  # connected, library checked
    sent: list[BaseMessage] = [HumanMessage("first"), AIMessage("second")]
    if with_ids:
        sent = [m.model_copy(update={"id": f"client-{i}"}) for i, m in enumerate(sent)]
    before = fcalls(faulty)
    relay.holding.set()
    cutter = cut_when_reply_held(relay, faulty)
    history.add_messages(sent)
    cutter.join(5)
    assert fcalls(faulty) - before == 2, "the append ran, its reply was lost, and it ran again"
    stored = history.messages
    assert [m.content for m in stored] == ["first", "second"], "stored exactly once"
    # the retry was recognised by the call's token, ids or not
    assert [m.id for m in stored] == (["client-0", "client-1"] if with_ids else [None, None])
    assert [m.id for m in sent] == (["client-0", "client-1"] if with_ids else [None, None])


async def test_reply_lost_is_retried_and_stored_once_async(
    faulty: redis.Redis, relay: Relay
) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(relay.url), retry=PATIENT)
    assert await history.alen() == 0
    relay.holding.set()
    cutter = cut_when_reply_held(relay, faulty)
    await history.aadd_messages([HumanMessage("async once")])
    cutter.join(5)
    assert [m.content for m in await history.aget_messages()] == ["async once"]


def test_without_ids_a_plain_redis_py_client_stores_a_lost_reply_twice(
    faulty: redis.Redis, relay: Relay
) -> None:
    """Why ids matter: a client made by ``redis.Redis(host, port)`` retries every command up
    to 10 times by default, resending a command whose reply was lost."""
    client = redis.Redis(host="127.0.0.1", port=relay.port)
    session = RawSession(client, "chat:", "s")
    session.call("len", read_only=True)
    relay.holding.set()
    cutter = cut_when_reply_held(relay, faulty)
    session.call("append", "MESSAGES", '{"type":"human","data":{"content":"no id"}}')
    cutter.join(5)
    assert len(session_dump(faulty)) == 2
    client.close()


def test_a_given_client_that_retries_by_itself_stores_a_lost_reply_once(
    faulty: redis.Redis, relay: Relay
) -> None:
    """The same client as above, given to a history: its own retry resends the append, and
    the ids the history assigned keep it from being stored twice."""
    client = redis.Redis(host="127.0.0.1", port=relay.port)
    history = RedisChatMessageHistory("s", redis_client=client, retry=None)
    assert len(history) == 0
    relay.holding.set()
    cutter = cut_when_reply_held(relay, faulty)
    history.add_messages([HumanMessage("no id given")])
    cutter.join(5)
    assert contents(history) == ["no id given"]
    client.close()


@contextlib.contextmanager
def stalled(url: str, seconds: float) -> Iterator[None]:
    """The server runs ``DEBUG SLEEP seconds`` from another connection: the block runs once
    the server has stopped answering, and the exit waits for it to answer again."""
    client = redis.Redis.from_url(url)
    connection = client.connection_pool.get_connection()
    connection.send_command("DEBUG", "SLEEP", seconds)
    probe = redis.Redis.from_url(url, socket_timeout=0.05)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            probe.ping()
            time.sleep(0.005)
        except redis.TimeoutError:
            break  # asleep
    probe.close()
    try:
        yield
    finally:
        assert connection.read_response() == b"OK"
        client.connection_pool.release(connection)
        client.close()


def test_timeout_of_a_stalled_server_is_retried_and_stored_once(
    faulty: redis.Redis, faulty_server: LocalRedis
) -> None:
    url = fresh(faulty_server.url) + "&socket_timeout=0.2"
    history = RedisChatMessageHistory("s", redis_url=url, retry=PATIENT)
    assert len(history) == 0
    with stalled(faulty_server.url, 0.7):
        started = time.monotonic()
        history.add_messages([HumanMessage("while stalled")])
        assert time.monotonic() - started >= 0.3, "the first attempts timed out"
    assert contents(history) == ["while stalled"]


def test_timeout_without_retries_is_redis_timeout_error(
    faulty: redis.Redis, faulty_server: LocalRedis
) -> None:
    url = fresh(faulty_server.url) + "&socket_timeout=0.2"
    history = RedisChatMessageHistory("s", redis_url=url, retry=None)
    assert len(history) == 0
    with (
        stalled(faulty_server.url, 0.5),
        pytest.raises(RedisTimeoutError, match=r"did not answer in time.*stored once"),
    ):
        history.add_messages([HumanMessage("maybe", id="m-1")])
    history.add_messages([HumanMessage("maybe", id="m-1")])  # the caller's own retry
    assert contents(history) == ["maybe"]


# -- down, busy, loading, read-only, out of memory ----------------------------------------------


def test_redis_down_gives_up_within_the_policy_bound() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    history = RedisChatMessageHistory("s", redis_url=fresh(url), retry=RetryPolicy(retries=3))
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=r"no Redis answered.*gave up after 4 attempts"):
        history.add_messages([HumanMessage("lost?")])
    assert time.monotonic() - started < 2.0, "3 retries wait at most 0.1 + 0.2 + 0.4 s"
    with pytest.raises(RedisUnavailableError) as single:
        RedisChatMessageHistory("s", redis_url=fresh(url), retry=None).messages  # noqa: B018
    assert "gave up" not in str(single.value)


def test_redis_back_up_during_retries_gets_the_message_once(tmp_path: Path) -> None:
    server = start_redis(directory=tmp_path)
    history = RedisChatMessageHistory("s", redis_url=fresh(server.url), retry=PATIENT)
    history.add_messages([HumanMessage("before")])
    stop_redis(server, remove_directory=False)
    restarted: list[LocalRedis] = []
    thread = in_background(
        lambda: restarted.append(start_redis(port=server.port, directory=tmp_path)), 0.3
    )
    try:
        history.add_messages([HumanMessage("after")])  # fresh server: library loaded again
        thread.join()
        assert contents(history) == ["after"], "the restarted server kept nothing (no persistence)"
    finally:
        thread.join()
        for again in restarted:
            stop_redis(again)


def busy_script(url: str) -> threading.Thread:
    """Start a script that runs until SCRIPT KILL; return once the server says BUSY."""

    def spin() -> None:
        with pytest.raises(redis.ResponseError, match=r"killed"):
            redis.Redis.from_url(url).eval("while true do end", 0)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    probe = redis.Redis.from_url(url)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            probe.get("probe")
        except redis.ResponseError as error:
            assert str(error).startswith("BUSY")
            break
        time.sleep(0.02)
    probe.close()
    return thread


def script_kill(url: str) -> None:
    redis.Redis.from_url(url).script_kill()


def test_busy_without_retries_is_server_busy_error_and_writes_nothing(
    faulty: redis.Redis, faulty_server: LocalRedis
) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(faulty_server.url), retry=None)
    history.add_messages([HumanMessage("kept")])
    spinner = busy_script(faulty_server.url)
    try:
        with pytest.raises(ServerBusyError, match=r"busy running a long script.*BUSY"):
            history.add_messages([HumanMessage("refused")])
    finally:
        script_kill(faulty_server.url)
        spinner.join()
    assert contents(history) == ["kept"]


async def test_busy_is_retried_until_the_script_ends(
    faulty: redis.Redis, faulty_server: LocalRedis
) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(faulty_server.url), retry=PATIENT)
    assert await history.alen() == 0
    spinner = busy_script(faulty_server.url)
    in_background(lambda: script_kill(faulty_server.url), 0.3)
    await history.aadd_messages([HumanMessage("after the script")])
    spinner.join()
    assert [m.content for m in await history.aget_messages()] == ["after the script"]


def spawn_loading_server(directory: Path, port: int) -> LocalRedis:
    """Start redis-server on an existing dump.rdb, slowed to take about a second to load, and
    return as soon as it accepts connections (while it still answers LOADING)."""
    command = [
        redis_server_path(),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--logfile", str(directory / "redis.log"),
        "--key-load-delay", "300", "--loading-process-events-interval-bytes", "1024",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.01)
    return LocalRedis(
        url=f"redis://127.0.0.1:{port}", port=port, directory=directory, process=process
    )


@pytest.fixture
def loading_server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A server restarted on a saved data set (the library and 2000 keys), still loading."""
    server = start_redis(directory=tmp_path)
    client = redis.Redis.from_url(server.url)
    client.function_load(library_source())
    RedisChatMessageHistory("s", redis_url=server.url).add_messages([HumanMessage("saved")])
    with client.pipeline(transaction=False) as pipe:
        for i in range(2000):
            pipe.set(f"filler:{i}", i)
        pipe.execute()
    client.save()
    client.close()
    stop_redis(server, remove_directory=False)
    loading = spawn_loading_server(tmp_path, server.port)
    yield loading
    stop_redis(loading)


def test_loading_without_retries_is_server_busy_error(loading_server: LocalRedis) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(loading_server.url), retry=None)
    with pytest.raises(ServerBusyError, match=r"loading its data set"):
        history.add_messages([HumanMessage("too early")])


def test_loading_is_retried_until_the_data_is_in(loading_server: LocalRedis) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(loading_server.url), retry=PATIENT)
    history.add_messages([HumanMessage("after loading")])
    assert contents(history) == ["saved", "after loading"], "library and data survived the restart"


@pytest.fixture
def replica(faulty: redis.Redis, faulty_server: LocalRedis) -> Iterator[LocalRedis]:
    """A replica of the faulty server (which has the library), fully synced."""
    server = start_redis(["--replicaof", "127.0.0.1", str(faulty_server.port)])
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + 10
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "replica did not sync"
        time.sleep(0.02)
    client.close()
    yield server
    stop_redis(server)


def test_readonly_replica_is_refused_clearly_and_writes_nothing(
    faulty: redis.Redis, faulty_server: LocalRedis, replica: LocalRedis
) -> None:
    primary = RedisChatMessageHistory("s", redis_url=fresh(faulty_server.url))
    primary.add_messages([HumanMessage("on the primary")])
    history = RedisChatMessageHistory(
        "s", redis_url=fresh(replica.url), retry=RetryPolicy(retries=2)
    )
    deadline = time.monotonic() + 5
    while history.messages == []:  # replication is asynchronous
        assert time.monotonic() < deadline
        time.sleep(0.02)
    refused = "read-only replica.*point the URL at the primary.*gave up after 3 attempts"
    with pytest.raises(ReadOnlyReplicaError, match=refused):
        history.add_messages([HumanMessage("refused")])
    assert contents(history) == ["on the primary"]
    assert len(session_dump(faulty)) == 1


def test_readonly_retry_drops_only_idle_connections(
    faulty_server: LocalRedis, replica: LocalRedis
) -> None:
    """A READONLY reply reconnects the pool's idle connections; one that another thread
    holds is left alone, mid-use."""
    client = redis.Redis.from_url(replica.url)
    held = client.connection_pool.get_connection()
    held.send_command("CLIENT", "ID")
    held_id = held.read_response()
    history = RedisChatMessageHistory(
        "s", redis_client=client, retry=RetryPolicy(retries=2, backoff=ConstantBackoff(0))
    )
    with pytest.raises(ReadOnlyReplicaError, match="gave up after 3 attempts"):
        history.add_messages([HumanMessage("refused")])
    held.send_command("CLIENT", "ID")  # the same server connection: it was not closed
    assert held.read_response() == held_id
    client.connection_pool.release(held)
    client.close()


def test_readonly_is_retried_until_the_replica_is_promoted(replica: LocalRedis) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(replica.url), retry=PATIENT)
    assert len(history) == 0
    in_background(lambda: redis.Redis.from_url(replica.url).replicaof("NO", "ONE"), 0.3)
    history.add_messages([HumanMessage("after the failover")])
    assert contents(history) == ["after the failover"]


async def test_readonly_is_retried_until_the_replica_is_promoted_async(
    replica: LocalRedis,
) -> None:
    history = RedisChatMessageHistory("s", redis_url=fresh(replica.url), retry=PATIENT)
    assert await history.alen() == 0
    in_background(lambda: redis.Redis.from_url(replica.url).replicaof("NO", "ONE"), 0.3)
    await history.aadd_messages([HumanMessage("after the failover")])
    assert [m.content for m in await history.aget_messages()] == ["after the failover"]


@pytest.fixture
def full_server() -> Iterator[redis.Redis]:
    """A server at its 3 MB maxmemory (noeviction) with the library loaded."""
    server = start_redis(["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
    client = redis.Redis.from_url(server.url)
    client.function_load(library_source())
    RedisChatMessageHistory("s", redis_url=server.url).add_messages([HumanMessage("kept")])
    filler = 0
    for size in (100_000, 10_000, 1_000, 100, 10):
        try:
            while True:
                client.set(f"filler:{filler}", b"x" * size)
                filler += 1
        except redis.OutOfMemoryError:
            pass
    yield client
    client.close()
    stop_redis(server)


def test_out_of_memory_is_refused_at_once_and_writes_nothing(full_server: redis.Redis) -> None:
    url = "redis://127.0.0.1:{}".format(full_server.connection_pool.connection_kwargs["port"])
    history = RedisChatMessageHistory("s", redis_url=fresh(url), retry=PATIENT)
    assert contents(history) == ["kept"], "reads still work"
    rejected = fcalls(full_server, "rejected_calls")
    with pytest.raises(ServerOutOfMemoryError, match=r"maxmemory.*nothing was written") as caught:
        history.add_messages([HumanMessage("refused")])
    assert "gave up" not in str(caught.value), "OOM is not retried"
    assert fcalls(full_server, "rejected_calls") - rejected == 1
    assert contents(history) == ["kept"]


def test_a_message_over_max_message_bytes_is_refused_before_sending(
    faulty: redis.Redis, faulty_server: LocalRedis
) -> None:
    history = RedisChatMessageHistory(
        "s", redis_url=fresh(faulty_server.url), max_message_bytes=1000
    )
    history.add_messages([HumanMessage("x" * 800)])
    before = fcalls(faulty)
    with pytest.raises(
        InvalidInputError, match=r"message 2 is .* bytes, over the limit of 1000"
    ) as caught:
        history.add_messages([HumanMessage("fits"), HumanMessage("x" * 1000)])
    assert caught.value.code == "TOOBIG"
    assert fcalls(faulty) == before, "nothing was sent"
    assert len(history) == 1


@pytest.mark.parametrize("limit", [0, -1, 1048577, 1.5, True])
def test_max_message_bytes_must_be_within_the_library_limit(limit: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"max_message_bytes"):
        RedisChatMessageHistory("s", max_message_bytes=limit)


@pytest.mark.parametrize("retries", [-1, 101, 1.0, True])
def test_retry_policy_is_bounded(retries: Any) -> None:
    with pytest.raises(ValueError, match=r"retries must be an integer from 0 to 100"):
        RetryPolicy(retries=retries)


def test_cli_retries_option() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    runner = CliRunner()
    once = runner.invoke(main, ["--url", url, "--retries", "0", "show", "s"])
    assert once.exit_code == 1
    assert "no Redis answered" in once.output and "gave up" not in once.output
    thrice = runner.invoke(main, ["--url", url, "--retries", "2", "show", "s"])
    assert thrice.exit_code == 1
    assert "gave up after 3 attempts" in thrice.output
    bad = runner.invoke(main, ["--url", url, "--retries", "-1", "show", "s"])
    assert bad.exit_code == 2


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
        (redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"), True),
        (redis.exceptions.ResponseError("ERR CHATHIST_BADARG bad"), False),
        (redis.exceptions.AuthenticationError("WRONGPASS"), False),
    ],
)
def test_cluster_failover_replies_are_transient(error: Exception, transient: bool) -> None:
    from redis_chat_history._retry import is_transient

    assert is_transient(error) is transient
