"""A throwaway redis-server on a free loopback port, for the demo, tests and benchmarks.

The executable is ``redis-server`` on PATH, or the one ``$RCH_REDIS_SERVER`` names (a path,
or a name looked up on PATH): a ``valkey-server`` for example. ``scripts/test`` sets it from
``RCH_SERVER`` (``redis``, ``valkey`` or ``redis8``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from ._errors import RedisUnavailableError


@dataclass(frozen=True)
class LocalRedis:
    """A running local server: its URL, port, data directory and process."""

    url: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: The environment variable naming the server executable to start instead of redis-server.
SERVER_VARIABLE = "RCH_REDIS_SERVER"


def redis_server_path() -> str:
    """The server executable to start ($RCH_REDIS_SERVER, else redis-server on PATH), or a
    clear error saying how to get one."""
    wanted = os.environ.get(SERVER_VARIABLE) or "redis-server"
    path = shutil.which(wanted)
    if path is None:
        if wanted != "redis-server":
            raise RedisUnavailableError(
                f"{SERVER_VARIABLE}={wanted} is not an executable: point it at a redis-server "
                "or valkey-server (7.0 or newer), or unset it"
            )
        raise RedisUnavailableError(
            "redis-server is not on PATH: install Redis 7 or newer "
            "(for example `sudo apt-get install -y redis-server`) or set REDIS_URL"
        )
    return path


def start_redis(
    extra_args: Sequence[str] = (),
    port: int | None = None,
    directory: Path | None = None,
    config_file: Path | None = None,
    executable: str | None = None,
) -> LocalRedis:
    """Start redis-server on loopback in a temp dir (no persistence unless asked).

    ``config_file`` goes first on the command line, as redis-server requires (a
    Sentinel's config, which it rewrites, for example). ``executable`` starts another
    server binary than :func:`redis_server_path`'s.
    """
    port = port or free_port()
    directory = directory or Path(tempfile.mkdtemp(prefix="redis-chat-history-"))
    command = [
        executable or redis_server_path(),
        *([str(config_file)] if config_file is not None else []),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    wait_until_ready(url, process, directory)
    return LocalRedis(url=url, port=port, directory=directory, process=process)


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], directory: Path, timeout: float = 10.0
) -> None:
    """Block until the server answers PING, or raise with the tail of its log."""
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if client.ping():
                    return
            except (redis.AuthenticationError, redis.ResponseError):
                return  # it answers: a password is required, which is the caller's business
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.02)
    finally:
        client.close()
    log = directory / "redis.log"
    tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
    process.kill()
    raise RedisUnavailableError(f"redis-server did not start on {url}:\n{tail}")


def stop_redis(server: LocalRedis, remove_directory: bool = True) -> None:
    """Stop the server and, unless asked not to, delete its directory."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if remove_directory:
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def local_redis(extra_args: Sequence[str] = ()) -> Iterator[LocalRedis]:
    """A throwaway redis-server for the duration of a ``with`` block."""
    server = start_redis(extra_args)
    try:
        yield server
    finally:
        stop_redis(server)
