"""Interoperability with Node.js: the client in clients/node against a real server.

- The Node client runs its own tests and the shared vectors (tests/vectors) through `node --test`.
- Node writes LangChain.js messages; Python's RedisChatMessageHistory reads every field back.
- Python writes every kind of LangChain message; Node reads them, and `@langchain/core`'s
  `mapStoredMessagesToChatMessages` turns the stored JSON into LangChain.js messages.

Node.js (18.19 or newer) and npm are required: without them these tests fail, they never skip.
`npm ci` runs here when clients/node has no node_modules matching its lock file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from redis_chat_history import InvalidInputError, RedisChatMessageHistory, session_keys
from redis_chat_history import _protocol as protocol
from test_history import every_kind_of_message

NODE_CLIENT = Path(__file__).resolve().parents[1] / "clients" / "node"
VECTORS = Path(__file__).resolve().parent / "vectors"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: the Node.js interoperability tests need Node.js >= 18.19 "
            "and npm (.ci/run installs them with apt-get)"
        )
    return path


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with clients/node's packages installed from its lock file."""
    node = tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    assert (major, minor) >= (18, 19), f"Node.js {version.stdout.strip()} is older than 18.19"
    installed = NODE_CLIENT / "node_modules" / ".package-lock.json"
    lock = NODE_CLIENT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_CLIENT,
            check=True,
            timeout=300,
        )
    return node


def run_node(node: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [node, *args],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def node_tap(node: str, test_file: str, redis_url: str) -> tuple[int, str]:
    """Run one Node test file (one at a time: they flush the same server); its pass count."""
    output = run_node(
        node, "--test", "--test-reporter=tap", test_file, env={"REDIS_URL": redis_url}
    )
    assert re.search(r"^# fail 0$", output, re.M), output[-3000:]
    assert re.search(r"^# skipped 0$", output, re.M), output[-3000:]
    passed = re.search(r"^# pass (\d+)$", output, re.M)
    assert passed, output[-3000:]
    return int(passed.group(1)), output


def test_node_client_passes_the_shared_vectors(node: str, redis_url: str) -> None:
    passed, output = node_tap(node, "test/vectors.test.js", redis_url)
    cases = sum(
        len(json.loads(path.read_text(encoding="utf-8"))["cases"])
        for path in VECTORS.glob("chathist-*.json")
    )
    assert passed == 2 * cases, "every server vector ran in RESP2 and in RESP3"
    assert "# Subtest: vectors over RESP3" in output


# Text with the characters the key layout treats specially, and any other Unicode.
key_text = st.text(alphabet=st.sampled_from("{}%:7Bb") | st.characters(codec="utf-8"), max_size=12)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pairs=st.lists(st.tuples(key_text, key_text), min_size=100, max_size=100))
def test_node_and_python_build_the_same_keys(node: str, pairs: list[tuple[str, str]]) -> None:
    result = subprocess.run(
        [node, "interop/keys.mjs"],
        cwd=NODE_CLIENT,
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for (prefix, session), from_node in zip(pairs, json.loads(result.stdout), strict=True):
        try:
            assert list(session_keys(prefix, session)) == from_node, (prefix, session)
        except InvalidInputError as error:
            assert from_node == {"error": error.code}, (prefix, session)


def test_node_client_passes_the_encoding_vectors(node: str, redis_url: str) -> None:
    passed, _ = node_tap(node, "test/protocol.test.js", redis_url)
    encoding = json.loads((VECTORS / "encoding.json").read_text(encoding="utf-8"))
    assert passed >= len(encoding["keys"]) + len(encoding["calls"])


def test_node_client_loads_the_library_and_maps_errors(node: str, redis_url: str) -> None:
    passed, _ = node_tap(node, "test/client.test.js", redis_url)
    assert passed >= 4


# -- Node writes, Python reads -------------------------------------------------------------------

NODE_WRITTEN: list[BaseMessage] = [
    SystemMessage("You are terse.", id="sys-1"),
    HumanMessage(
        "What's the weather in Paris? ünïcödé 😀",
        id="h-1",
        name="alice",
        additional_kwargs={"locale": "fr", "nested": {"list": [1, 2.5, None, True]}},
        response_metadata={"source": "web"},
    ),
    AIMessage(
        "",
        id="run-42",
        name="assistant",
        tool_calls=[
            {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
        ],
        invalid_tool_calls=[
            {
                "name": "broken",
                "args": '{"city": ',
                "id": "call_2",
                "error": "bad JSON",
                "type": "invalid_tool_call",
            }
        ],
        usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
        additional_kwargs={"refusal": None},
    ),
    ToolMessage(
        "18 °C, cloudy",
        tool_call_id="call_1",
        status="success",
        artifact={"raw": {"temp": 18.5, "unit": "C"}, "ok": [1, "é"]},
        name="get_weather",
    ),
    ToolMessage("timeout", tool_call_id="call_2", status="error"),
    AIMessage("It is 18 °C and cloudy.", response_metadata={"logprobs": None}),
    ChatMessage("Looks fine to me.", role="critic", id="c-1"),
    HumanMessage(
        [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    ),
]


def test_node_writes_and_python_reads_every_field(
    node: str, redis_url: str, client: redis.Redis
) -> None:
    written = json.loads(
        run_node(node, "interop/write.mjs", redis_url, "chat:", "from-node", "600")
    )
    history = RedisChatMessageHistory("from-node", redis_url=redis_url)

    assert history.messages == NODE_WRITTEN
    assert len(history) == len(NODE_WRITTEN)
    keys = session_keys("chat:", "from-node")
    stored = client.xrange(keys[0])
    assert [entry_id.decode() for entry_id, _ in stored] == written["ids"]
    assert [json.loads(fields[b"m"]) for _, fields in stored] == written["stored"]
    for key in (keys[0], keys[2]):
        assert 590_000 < client.pttl(key) <= 600_000, "the Node client sent TTL 600"
    hits = history.search_messages("paris weather")
    assert [hit["id"] for hit in hits] == [written["ids"][1]]
    assert hits[0]["message"] == NODE_WRITTEN[1]
    assert hits[0]["timestamp"] == protocol.id_time(written["ids"][1])

    # A retried append from Node (same message ids) stores nothing new.
    again = json.loads(run_node(node, "interop/write.mjs", redis_url, "chat:", "from-node"))
    with_ids = [i for i, message in enumerate(NODE_WRITTEN) if message.id]
    assert [again["ids"][i] for i in with_ids] == [written["ids"][i] for i in with_ids]
    assert len(history) == len(NODE_WRITTEN) + len(NODE_WRITTEN) - len(with_ids)


# -- Python writes, Node reads -------------------------------------------------------------------

JS_TYPES = {"chat": "generic", "AIMessageChunk": "ai", "HumanMessageChunk": "human"}
JS_CLASSES = {
    "system": "SystemMessage",
    "human": "HumanMessage",
    "ai": "AIMessage",
    "tool": "ToolMessage",
    "generic": "ChatMessage",
    "function": "FunctionMessage",
}


def expected_in_js(message: BaseMessage) -> dict[str, Any]:
    """The fields LangChain.js must show for a message LangChain Python stored."""
    data = message.model_dump()
    js_type = JS_TYPES.get(message.type, message.type)
    expected = {
        "type": js_type,
        "class": JS_CLASSES[js_type],
        "content": message.content,
        "id": message.id,
        "name": message.name,
        "additional_kwargs": message.additional_kwargs,
        "response_metadata": message.response_metadata,
    }
    for field in ("tool_calls", "invalid_tool_calls", "usage_metadata", "tool_call_id"):
        if field in data:
            expected[field] = data[field]
    if isinstance(message, ToolMessage):
        expected["status"] = message.status
        expected["artifact"] = message.artifact
    if isinstance(message, ChatMessage):
        expected["role"] = message.role
    return expected


def test_python_writes_and_node_reads_with_langchain_js(node: str, redis_url: str) -> None:
    messages = every_kind_of_message()
    history = RedisChatMessageHistory("from-python", redis_url=redis_url, key_prefix="app:")
    history.add_messages(messages)
    python_hits = history.search_messages("paris")

    read = json.loads(run_node(node, "interop/read.mjs", redis_url, "app:", "from-python", "paris"))

    # Messages keep the id they were given, or none (retries are recognised by token).
    back = history.messages
    assert back == messages
    assert read["len"] == len(messages)
    assert len(read["messages"]) == len(messages)
    for message, seen in zip(back, read["messages"], strict=True):
        expected = expected_in_js(message)
        assert {key: seen[key] for key in expected} == expected, message.type
    assert [hit["stream_id"] for hit in read["search"]] == [hit["id"] for hit in python_hits]
    assert [hit["time"][:23] for hit in read["search"]] == [
        hit["timestamp"].isoformat(timespec="milliseconds")[:23] for hit in python_hits
    ]
