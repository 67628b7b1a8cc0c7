"""The shared test vectors (tests/vectors/*.json) run through raw FCALL with redis-py.

The same files are run by the Node.js client (clients/node/test/vectors.test.js); their format
is described in tests/vectors/README.md. Keys and call arguments are built by
``redis_chat_history._protocol``, the one place the Python package encodes the protocol, so the
vectors check it too.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.messages import messages_from_dict

from redis_chat_history import InvalidInputError, library_source
from redis_chat_history import _langchain as lc
from redis_chat_history import _protocol as protocol
from redis_chat_history.local_server import LocalRedis

VECTORS = Path(__file__).resolve().parent / "vectors"
STREAM_ID = re.compile(r"\d+-\d+")
SERVER_FILES = sorted(VECTORS.glob("chathist-*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def server_cases() -> list[Any]:
    cases = []
    for path in SERVER_FILES:
        document = load(path)
        for case in document["cases"]:
            cases.append(pytest.param(document, case, id=f"{path.stem}: {case['name']}"))
    return cases


# -- the interpreter ------------------------------------------------------------------------------


class Run:
    """One case's state: the ids it captured, and how to build and check each step."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ids: dict[str, str] = {}

    def arg(self, form: Any) -> list[bytes]:
        """The argument(s) a form stands for (``$many`` spreads into several)."""
        if isinstance(form, dict) and "$many" in form:
            return self.arg(form["$many"]) * form["times"]
        return [self.value(form).encode("utf-8")]

    def value(self, form: Any) -> str:
        if isinstance(form, str):
            return form
        if "$id" in form:
            return self.ids[form["$id"]]
        if "$ms" in form:
            return str(int(self.ids[form["$ms"]].split("-")[0]) + form.get("add", 0))
        if "$repeat" in form:
            return str(form["$repeat"]) * form["times"]
        if "$concat" in form:
            return "".join(self.value(part) for part in form["$concat"])
        raise AssertionError(f"unknown argument form {form!r}")

    def match(self, expected: Any, actual: Any, where: str) -> None:
        """Assert that a reply matches its expected form, binding captured ids."""
        if isinstance(actual, bytes):
            actual = actual.decode("utf-8")
        if expected is None or isinstance(expected, str | bool | int):
            assert actual == expected and type(actual) is type(expected), (where, actual)
        elif isinstance(expected, list):
            assert isinstance(actual, list), (where, actual)
            assert len(actual) == len(expected), (where, len(actual), len(expected))
            for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
                self.match(want, got, f"{where}[{i}]")
        elif "$id" in expected:
            assert isinstance(actual, str) and STREAM_ID.fullmatch(actual), (where, actual)
            name = expected["$id"]
            if name is not None:
                assert self.ids.setdefault(name, actual) == actual, (where, name, actual)
        elif "$between" in expected:
            low, high = expected["$between"]
            assert isinstance(actual, int) and low <= actual <= high, (where, actual)
        elif "$match" in expected:
            assert isinstance(actual, str) and re.fullmatch(expected["$match"], actual, re.S), (
                where,
                actual,
            )
        elif "$each" in expected:
            assert isinstance(actual, list) and len(actual) == expected["length"], where
            for i, got in enumerate(actual):
                self.match(expected["$each"], got, f"{where}[{i}]")
        else:
            raise AssertionError(f"unknown reply form {expected!r}")

    def command(self, step: dict[str, Any]) -> list[bytes]:
        """The whole command a step sends."""
        if "command" in step:
            return [part for form in step["command"] for part in self.arg(form)]
        function = step.get("fcall") or step["fcall_ro"]
        if "session" in step:
            keys = list(protocol.session_keys(self.prefix, step["session"]))
        else:
            keys = step.get("keys", [])
        args = [part for form in step.get("args", []) for part in self.arg(form)]
        verb = "FCALL" if "fcall" in step else "FCALL_RO"
        return (
            [verb.encode(), function.encode(), str(len(keys)).encode()]
            + [key.encode("utf-8") for key in keys]
            + args
        )

    def step(self, client: redis.Redis, step: dict[str, Any], where: str) -> None:
        if step.get("assert") == "increasing":
            ids = [tuple(map(int, self.ids[name].split("-"))) for name in step["ids"]]
            assert ids == sorted(set(ids)), (where, ids)
            return
        command = self.command(step)
        try:
            reply = client.execute_command(*command)
        except redis.ResponseError as error:
            assert "error" in step, (where, str(error))
            # redis-py drops the "ERR " code from the text; every vector error carries it.
            self.match(step["error"], "ERR " + str(error), where)
            return
        assert "error" not in step, (where, "expected an error, got", reply)
        self.match(step["reply"], normalize(reply), where)


def normalize(reply: Any) -> Any:
    """RESP2 and RESP3 replies of redis-py as plain lists, text and integers."""
    if isinstance(reply, list | tuple):
        return [normalize(item) for item in reply]
    if isinstance(reply, bytes):
        return reply.decode("utf-8")
    return reply


# -- server vectors -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[2, 3], ids=["resp2", "resp3"])
def vector_client(
    request: pytest.FixtureRequest, redis_server: LocalRedis
) -> Iterator[redis.Redis]:
    """A raw client (RESP2, then RESP3) on the shared server with the shipped library loaded."""
    client = redis.Redis.from_url(redis_server.url, protocol=request.param)
    client.function_load(library_source(), replace=True)
    yield client
    client.close()


@pytest.mark.parametrize(("document", "case"), server_cases())
def test_server_vector(vector_client: redis.Redis, document: dict[str, Any], case: Any) -> None:
    assert protocol.version_tuple(protocol.LIBRARY_VERSION) >= protocol.version_tuple(
        document["library"]
    ), "vectors written for a newer library than the one shipped"
    vector_client.function_load(library_source(), replace=True)
    vector_client.flushall()
    run = Run(document["prefix"])
    for number, step in enumerate(case["steps"], 1):
        run.step(vector_client, step, f"{case['name']}, step {number}")


def test_every_function_of_the_library_has_vectors() -> None:
    called = {
        step.get("fcall") or step.get("fcall_ro")
        for path in SERVER_FILES
        for case in load(path)["cases"]
        for step in case["steps"]
    }
    functions = set(re.findall(r"function_name = '(\w+)'", library_source()))
    assert functions and functions <= called, functions - called


# -- encoding vectors (no server) -----------------------------------------------------------------

ENCODING = load(VECTORS / "encoding.json")


@pytest.mark.parametrize("vector", ENCODING["keys"], ids=lambda v: repr(v["session"]))
def test_key_layout_vector(vector: dict[str, Any]) -> None:
    if "error" in vector:
        with pytest.raises(InvalidInputError) as info:
            protocol.session_keys(vector["prefix"], vector["session"])
        assert info.value.code == vector["error"]
    else:
        keys = protocol.session_keys(vector["prefix"], vector["session"])
        assert list(keys) == vector["keys"]


def build(vector: dict[str, Any]) -> protocol.Call:
    """The Python package's call for an encoding vector's description."""
    keys = protocol.session_keys(vector["prefix"], vector["session"])
    params = vector.get("params", {})
    builders = {
        "append": lambda: protocol.append_call(
            keys,
            lc.to_stored(messages_from_dict(params["messages"])),
            params.get("ttl"),
            index=not params.get("noindex", False),
            max_messages=params.get("maxlen"),
            max_bytes=params.get("maxbytes"),
        ),
        "range": lambda: protocol.range_call(keys, **params),
        "search": lambda: protocol.search_call(
            keys,
            params["query"],
            params.get("limit", 10),
            mode=params.get("mode", "all"),
            message_type=params.get("type"),
            before=params.get("before"),
        ),
        "reindex": lambda: protocol.reindex_call(keys),
        "clear": lambda: protocol.clear_call(keys),
        "len": lambda: protocol.len_call(keys),
        "version": protocol.version_call,
    }
    return builders[vector["call"]]()


def contains(actual: Any, expected: Any) -> bool:
    """True when every field of ``expected`` is in ``actual`` with the same value."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


#: Calls the Python package does not send (it has no API for them); the Node client runs them.
NOT_IN_PYTHON = {"delete", "import", "ttl", "expire"}
PYTHON_CALLS = [vector for vector in ENCODING["calls"] if vector["call"] not in NOT_IN_PYTHON]


def test_only_the_listed_calls_are_left_to_other_clients() -> None:
    assert {vector["call"] for vector in ENCODING["calls"]} - {
        vector["call"] for vector in PYTHON_CALLS
    } == NOT_IN_PYTHON


@pytest.mark.parametrize("vector", PYTHON_CALLS, ids=lambda v: v["name"])
def test_call_encoding_vector(vector: dict[str, Any]) -> None:
    call = build(vector)
    assert call.function == vector["function"]
    assert call.read_only == vector["read_only"]
    expected_keys = [] if vector["call"] == "version" else vector["keys"]
    assert list(call.keys) == expected_keys
    args = [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in call.args]
    assert len(args) == len(vector["args"]), args
    for got, want in zip(args, vector["args"], strict=True):
        if isinstance(want, dict):
            assert contains(json.loads(got), want["$json"]), (got, want)
        else:
            assert got == want


# -- the redis-cli walkthrough of docs/PROTOCOL.md ------------------------------------------------

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"


def walkthrough() -> tuple[str, list[str]]:
    """The walkthrough's bash block and the output the doc says it prints."""
    section = PROTOCOL_DOC.read_text(encoding="utf-8").split("## Walkthrough with redis-cli")[1]
    script, printed = re.findall(r"```(?:bash)?\n(.*?)```", section, re.S)[:2]
    return script, printed.splitlines()


def shape(line: str) -> str:
    """A printed line with what differs on every run (ids, TTL, version) made generic."""
    line = re.sub(r"\b\d{13}-\d+\b", "<id>", line)
    line = re.sub(r"^\d+\.\d+\.\d+$", "<version>", line)
    return re.sub(r"^35\d{5}$", "<pttl>", line)


def test_protocol_walkthrough_runs_as_documented(redis_url: str) -> None:
    script, printed = walkthrough()
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    script = script.replace("redis-cli ", f"redis-cli -p {port} ")
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=PROTOCOL_DOC.parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line]
    assert [shape(line) for line in lines] == [shape(line) for line in printed]
    ids = [line for line in lines if re.fullmatch(r"\d+-\d+", line)]
    assert ids[2] == ids[0], "the retried message kept its first id"


def test_protocol_doc_lists_every_function_with_its_flags() -> None:
    flag_names = {
        "": "",
        ", flags = API.READ_ONLY": "no-writes",
        ", flags = API.FREES": "allow-oom",
    }
    registered = {
        name: flag_names[flags]
        for name, flags in re.findall(
            r"register_function\{function_name = '(\w+)', callback = [\w.]+(, flags = [\w.]+)?\}",
            library_source(),
        )
    }
    documented = {
        name: flag.strip("` ")
        for name, flag in re.findall(
            r"^\| `(chathist_\w+)` \| [\d.]+ \|([^|]*)\|", PROTOCOL_DOC.read_text(), re.M
        )
    }
    assert len(registered) >= 11
    assert documented == registered
    for name in registered:
        assert f"### {name}" in PROTOCOL_DOC.read_text(), name
