"""Seed parity: the seed notebook's flow, once on langchain-redis and once on this package.

The notebook (tests/seed_notebook.py) runs twice as a subprocess: with its original import,
``from langchain_redis import RedisChatMessageHistory``, in the peers' virtualenv (langchain-redis
0.2.6, redis-py < 8) against Valkey with RediSearch and RedisJSON loaded; and as it is (this
package) against the suite's plain server. What each prints is compared line by line. The two
only difference is by design (docs/benchmarks.md, "Seed parity"): ``Search Results`` has the
same hits, ours in time order (as the notebook printed them), langchain-redis's in RediSearch's
order (by score; equal scores in document order). Every other line, ``Custom History`` with its
message reprs included, is the same: appends are made safe to retry by a token per call, not by
ids given to the messages.

Skipped, saying why, when the peers are not installed (``RCH_PEERS=1 bash scripts/test``
installs them; CI does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peers import peer_setup, stack_server

SEED_SCRIPT = Path(__file__).with_name("seed_notebook.py")
OUR_IMPORT = "from redis_chat_history import RedisChatMessageHistory"
SEED_IMPORT = "from langchain_redis import RedisChatMessageHistory"
#: Seconds each run of the notebook may take.
RUN_TIMEOUT = 120


def run_notebook(python: str, script: Path, url: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env["REDIS_URL"] = url
    result = subprocess.run(
        [python, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{python} {script} failed:\n{result.stderr[-2000:]}"
    return result.stdout.splitlines()


def search_block(lines: list[str]) -> list[str]:
    start = lines.index("Search Results:") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Messages after"))
    return lines[start:end]


def test_the_seed_notebook_prints_the_same_on_langchain_redis_and_on_this_package(
    redis_url: str, tmp_path: Path
) -> None:
    setup = peer_setup()
    if isinstance(setup, str):
        pytest.skip(f"langchain-redis peers not available: {setup}")
    source = SEED_SCRIPT.read_text(encoding="utf-8")
    assert source.count(OUR_IMPORT) == 1
    original = tmp_path / "seed_notebook_langchain_redis.py"
    original.write_text(source.replace(OUR_IMPORT, SEED_IMPORT), encoding="utf-8")

    with stack_server(setup) as stack:
        theirs = run_notebook(setup.python, original, stack.url)
        stack_url = stack.url
    ours = run_notebook(sys.executable, SEED_SCRIPT, redis_url)

    assert len(ours) == len(theirs), "\n".join(["ours:", *ours, "langchain-redis:", *theirs])
    assert ours[0] == f"Connecting to Redis at: {redis_url}"
    assert theirs[0] == f"Connecting to Redis at: {stack_url}"
    our_hits, their_hits = search_block(ours), search_block(theirs)
    for index, (mine, seed) in enumerate(zip(ours[1:], theirs[1:], strict=True), 1):
        if mine in our_hits:
            continue  # compared as a block below
        else:
            assert mine == seed, f"line {index} differs"
    assert sorted(our_hits) == sorted(their_hits)
    # Ours in time order, as the notebook printed them.
    assert our_hits == [
        "human: Tell me about artificial intelligence....",
        "ai: Artificial Intelligence (AI) is a branch of comput...",
    ]
