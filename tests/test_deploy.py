"""scripts/deploy: loading the library with redis-cli alone, against real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import redis

from redis_chat_history import LIBRARY_VERSION, library_source
from redis_chat_history.local_server import free_port, local_redis

DEPLOY = Path(__file__).resolve().parents[1] / "scripts" / "deploy"
SECRET = "s3cret"

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


def deploy(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run scripts/deploy with $REDIS_URL and $REDISCLI_AUTH unset unless given."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("REDIS_URL", "REDISCLI_AUTH")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(DEPLOY), *args], capture_output=True, text=True, env=environment, timeout=30
    )


def test_deploy_loads_and_is_idempotent(redis_url: str, client: redis.Redis) -> None:
    for _ in range(2):
        result = deploy("-u", redis_url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"deployed chathist {LIBRARY_VERSION} to {redis_url}\n"
        assert result.stderr == ""
    assert [entry[1] for entry in client.function_list()] == [b"chathist"]
    assert client.fcall_ro("chathist_version", 0) == LIBRARY_VERSION.encode()


def test_deploy_reads_redis_url_and_replaces_an_older_library(
    redis_url: str, client: redis.Redis
) -> None:
    older = library_source().replace(f"'{LIBRARY_VERSION}'", "'0.9.0'")
    client.function_load(older, replace=True)
    result = deploy(env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert client.fcall_ro("chathist_version", 0) == LIBRARY_VERSION.encode()


def test_deploy_passes_flags_after_dashdash_to_redis_cli(redis_url: str) -> None:
    assert deploy("-u", redis_url, "--", "-3").returncode == 0
    refused = deploy("-u", redis_url, "--", "--no-such-flag")
    assert refused.returncode == 1 and "--no-such-flag" in refused.stderr


def test_deploy_with_a_password_never_prints_it() -> None:
    password = "p@ss:w%rd"
    with local_redis(["--requirepass", password]) as server:
        url = server.url.replace("redis://", "redis://default:p%40ss%3Aw%25rd@")
        result = deploy("-u", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"deployed chathist {LIBRARY_VERSION} to {server.url}\n"
        assert "p%40ss" not in result.stdout + result.stderr
        assert password not in result.stdout + result.stderr

        no_password = deploy("-u", server.url)
        assert no_password.returncode == 1 and "NOAUTH" in no_password.stderr


def test_deploy_fails_clearly_on_a_closed_port() -> None:
    port = free_port()
    result = deploy("-u", f"redis://user:{SECRET}@127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"Redis at redis://127.0.0.1:{port} did not answer PING" in result.stderr
    assert "Connection refused" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_deploy_wrong_password_is_not_printed(redis_url: str) -> None:
    result = deploy("-u", redis_url.replace("redis://", f"redis://user:{SECRET}@"))
    assert result.returncode == 1
    assert "WRONGPASS" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_deploy_reports_a_refused_load(redis_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.lua"
    broken.write_text("#!lua name=chathist\nlocal LIBRARY_VERSION = '1.0.0'\nnot lua at all\n")
    result = deploy("-u", redis_url, "-f", str(broken))
    assert result.returncode == 1
    assert "refused to load" in result.stderr and "Error compiling function" in result.stderr


def test_deploy_without_redis_cli(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    environment = {"PATH": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1"}
    result = subprocess.run(
        [bash, str(DEPLOY)], capture_output=True, text=True, env=environment, timeout=30
    )
    assert result.returncode == 1
    assert "redis-cli not found" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-u", "localhost:6379"], "must start with redis://"),
        (["stray"], "unexpected argument 'stray'"),
        (["-z"], "unknown option -z"),
        (["-u", "redis://localhost", "-n", "localhost:6379"], "not both"),
        (["-n", "localhost:port"], "is not host:port"),
    ],
)
def test_deploy_usage_errors(args: list[str], message: str) -> None:
    result = deploy(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_deploy_help() -> None:
    result = deploy("-h")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: scripts/deploy")
    assert "REDIS_URL" in result.stdout and "--tls" in result.stdout
