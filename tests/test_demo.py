"""The demo, the seed notebook run on this package, and the offline chat model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from redis_chat_history import _clients
from redis_chat_history.demo import choose_model, run_demo
from redis_chat_history.local_server import redis_server_path, start_redis, stop_redis
from redis_chat_history.offline_model import (
    FALLBACK_REPLY,
    GREETING_REPLY,
    UNKNOWN_NAME_REPLY,
    OfflineChatModel,
    introduced_name,
    reply_to,
)

SEED_SCRIPT = Path(__file__).with_name("seed_notebook.py")
CUSTOM_HISTORY_START = (
    "Custom History: [HumanMessage(content='This is a message with custom configuration.'"
)

# The seed notebook's output blocks after its first ("Connecting to Redis at: ...") and
# around its API-key cell, in order. The notebook ran on an older langchain-core, whose
# message repr was shorter: the "Custom History" line is compared by its start.
SEED_LINES_AFTER_CONNECTING = [
    "Chat History:",
    "HumanMessage: Hello, AI assistant!",
    "AIMessage: Hello! How can I assist you today?",
]
SEED_LINES_OF_CHAIN = [
    "AI Response 1: Hello Alice! How can I assist you today?",
    "AI Response 2: Your name is Alice.",
    CUSTOM_HISTORY_START,
    "Search Results:",
    "human: Tell me about artificial intelligence....",
    "ai: Artificial Intelligence (AI) is a branch of comput...",
    "Messages after clearing: []",
]


def assert_in_order(lines: list[str], expected: list[str]) -> None:
    """Each expected line occurs in ``lines``, in order (the Custom History one by prefix)."""
    position = 0
    for want in expected:
        for index in range(position, len(lines)):
            line = lines[index]
            if line == want or (want == CUSTOM_HISTORY_START and line.startswith(want)):
                position = index + 1
                break
        else:
            raise AssertionError(
                f"{want!r} not found after line {position} of:\n" + "\n".join(lines)
            )


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def demo_lines(url: str | None, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The demo's output lines, with the message ids it assigns (uuid4) masked."""
    run_demo(url)
    return UUID.sub("<uuid>", capsys.readouterr().out).splitlines()


@pytest.fixture
def no_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# -- the demo ------------------------------------------------------------------


@pytest.mark.usefixtures("no_openai_key")
def test_demo_prints_the_seed_notebook_lines(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = demo_lines(redis_url, capsys)

    assert_in_order(
        lines,
        [
            f"Connecting to Redis at: {redis_url}",
            *SEED_LINES_AFTER_CONNECTING,
            *SEED_LINES_OF_CHAIN,
        ],
    )
    assert (
        "Language model: OfflineChatModel, offline and deterministic (OPENAI_API_KEY is not set)"
        in lines
    )
    (custom,) = [line for line in lines if line.startswith("Custom History:")]
    assert custom.startswith(CUSTOM_HISTORY_START)


@pytest.mark.usefixtures("no_openai_key")
def test_demo_rerun_prints_the_same_and_leaves_no_keys(
    redis_url: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    client.set("someone:else", "kept")

    first = demo_lines(redis_url, capsys)
    second = demo_lines(redis_url, capsys)

    assert first == second
    assert client.keys("*") == [b"someone:else"]


@pytest.mark.usefixtures("no_openai_key")
def test_demo_without_url_runs_on_a_throwaway_server(capsys: pytest.CaptureFixture[str]) -> None:
    lines = demo_lines(None, capsys)
    name = os.path.basename(redis_server_path())  # redis-server, or valkey-server (RCH_SERVER)

    (started,) = [line for line in lines if line.startswith(f"Started a throwaway {name} at ")]
    url = started.split(" at ", 1)[1].split(" ", 1)[0]
    assert url.startswith("redis://127.0.0.1:")
    assert_in_order(
        lines,
        [
            started,
            f"Connecting to Redis at: {url}",
            *SEED_LINES_AFTER_CONNECTING,
            *SEED_LINES_OF_CHAIN,
            f"Stopped the throwaway {name}; its data is gone.",
        ],
    )
    probe = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        probe.ping()
    probe.close()


@pytest.mark.usefixtures("no_openai_key")
def test_demo_never_prints_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    password = "s3cret-demo-pw"
    # The password is set after start: local_server's readiness PING sends none.
    server = start_redis()
    admin = redis.Redis.from_url(server.url)
    admin.config_set("requirepass", password)
    admin.close()
    url = f"redis://:{password}@127.0.0.1:{server.port}"
    try:
        lines = demo_lines(url, capsys)
    finally:
        _clients.sync_client(url).close()
        stop_redis(server)

    assert password not in "\n".join(lines)
    assert f"Connecting to Redis at: redis://:***@127.0.0.1:{server.port}" in lines
    assert_in_order(lines, SEED_LINES_OF_CHAIN)


def test_choose_model_is_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    model, description = choose_model()

    assert isinstance(model, OfflineChatModel)
    assert description.endswith("(OPENAI_API_KEY is not set)")


def test_choose_model_is_offline_without_langchain_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setitem(sys.modules, "langchain_openai", None)  # makes the import fail

    model, description = choose_model()

    assert isinstance(model, OfflineChatModel)
    assert description.endswith("(langchain-openai is not installed)")


def test_choose_model_uses_chat_openai_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeChatOpenAI(OfflineChatModel):
        """Stands in for langchain_openai.ChatOpenAI, which is not installed here."""

    fake = types.ModuleType("langchain_openai")
    fake.ChatOpenAI = FakeChatOpenAI  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langchain_openai", fake)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    model, description = choose_model()

    assert type(model) is FakeChatOpenAI
    assert description == "ChatOpenAI (OPENAI_API_KEY is set)"
    assert "sk-test" not in description


# -- the seed notebook's own code ----------------------------------------------


def test_seed_notebook_runs_unchanged_but_for_the_import(redis_url: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env["REDIS_URL"] = redis_url
    result = subprocess.run(
        [sys.executable, str(SEED_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    expected = [
        f"Connecting to Redis at: {redis_url}",
        *SEED_LINES_AFTER_CONNECTING,
        # The API-key cell's first line; the getpass prompt and its confirmation are skipped.
        "OpenAI API key not found in environment variables.",
        *SEED_LINES_OF_CHAIN,
    ]
    assert len(lines) == len(expected), result.stdout
    for line, want in zip(lines, expected, strict=True):
        if want == CUSTOM_HISTORY_START:
            assert line.startswith(want)
        else:
            assert line == want


def test_seed_notebook_copy_changes_only_what_it_marks() -> None:
    source = SEED_SCRIPT.read_text(encoding="utf-8")
    assert "from langchain_redis import" not in source.replace(
        "`from langchain_redis import RedisChatMessageHistory`", ""
    )
    assert "from redis_chat_history import RedisChatMessageHistory" in source
    assert "getpass(" not in source
    assert source.count("# SUBSTITUTION") >= 4


# -- the offline model ---------------------------------------------------------


ALICE_HISTORY: list[BaseMessage] = [
    SystemMessage("You are a helpful AI assistant."),
    HumanMessage("Hi, my name is Alice."),
    AIMessage("Hello Alice! How can I assist you today?"),
]


def answer(*messages: BaseMessage) -> str:
    content = OfflineChatModel().invoke(list(messages)).content
    assert isinstance(content, str)
    return content


def test_offline_model_greets_a_name_it_is_told() -> None:
    assert (
        answer(SystemMessage("Be kind."), HumanMessage("Hi, my name is Alice."))
        == "Hello Alice! How can I assist you today?"
    )


def test_offline_model_answers_the_name_from_the_history() -> None:
    assert answer(*ALICE_HISTORY, HumanMessage("What's my name?")) == "Your name is Alice."


def test_offline_model_does_not_know_a_name_the_history_lacks() -> None:
    assert answer(HumanMessage("What's my name?")) == UNKNOWN_NAME_REPLY
    assert (
        answer(AIMessage("Hi, my name is Bot."), HumanMessage("What's my name?"))
        == UNKNOWN_NAME_REPLY
    )


def test_offline_model_uses_the_latest_introduction() -> None:
    messages = [
        *ALICE_HISTORY,
        HumanMessage("Actually, my name is Bob."),
        AIMessage("Hello Bob! How can I assist you today?"),
        HumanMessage("Thanks."),
        AIMessage(FALLBACK_REPLY),
        HumanMessage("what is my name"),
    ]
    assert answer(*messages) == "Your name is Bob."


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hi, my name is Alice.", "Alice"),
        ("MY NAME IS alice", "alice"),
        ("my name is Alice Smith, hello", "Alice Smith"),
        ("my name is Zoë and I like tea", "Zoë"),
        ("my name is O'Brien!", "O'Brien"),
        ("I have no name to give", None),
        ("my name is 42", None),
    ],
)
def test_introduced_name(text: str, name: str | None) -> None:
    assert introduced_name(text) == name


@pytest.mark.parametrize(
    "question",
    ["What's my name?", "what is my name", "What\u2019s my name?", "Do you remember my name?"],
)
def test_offline_model_understands_name_questions(question: str) -> None:
    assert answer(*ALICE_HISTORY, HumanMessage(question)) == "Your name is Alice."


def test_offline_model_reads_list_content() -> None:
    intro = HumanMessage(content=[{"type": "text", "text": "Hello, my name is Carol."}])
    assert answer(intro) == "Hello Carol! How can I assist you today?"
    assert answer(intro, HumanMessage(content=["What's my name?"])) == "Your name is Carol."


def test_offline_model_other_prompts() -> None:
    assert answer(HumanMessage("Hello, AI assistant!")) == GREETING_REPLY
    assert answer(HumanMessage("Tell me about artificial intelligence.")) == FALLBACK_REPLY
    assert reply_to([]) == FALLBACK_REPLY
    assert reply_to([SystemMessage("Only a system message.")]) == FALLBACK_REPLY


def test_offline_model_honours_stop_words() -> None:
    model = OfflineChatModel()
    reply = model.invoke([HumanMessage("my name is Alice")], stop=["!"])
    assert reply.content == "Hello Alice"


def test_offline_model_is_deterministic_and_async() -> None:
    model = OfflineChatModel()
    prompt = [*ALICE_HISTORY, HumanMessage("What's my name?")]
    replies = {model.invoke(prompt).content for _ in range(3)}
    assert replies == {"Your name is Alice."}
    assert [r.content for r in model.batch([prompt, prompt[:2]])] == [
        "Your name is Alice.",
        "Hello Alice! How can I assist you today?",
    ]
    assert model._llm_type == "offline-demo"


async def test_offline_model_ainvoke() -> None:
    reply = await OfflineChatModel().ainvoke([*ALICE_HISTORY, HumanMessage("What's my name?")])
    assert reply.content == "Your name is Alice."


class ListHistory(BaseChatMessageHistory):
    """A chat history in a list (langchain-core 1.x deprecates its in-memory one)."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self.messages.extend(messages)

    def clear(self) -> None:
        self.messages = []


def test_offline_model_remembers_only_through_the_history() -> None:
    stores: dict[str, ListHistory] = {}
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Helpful."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        chain = RunnableWithMessageHistory(
            prompt | OfflineChatModel(),
            lambda session_id: stores.setdefault(session_id, ListHistory()),
            input_messages_key="input",
            history_messages_key="history",
        )

    def ask(session: str, text: str) -> object:
        return chain.invoke({"input": text}, {"configurable": {"session_id": session}}).content

    assert ask("a", "Hi, my name is Alice.") == "Hello Alice! How can I assist you today?"
    assert ask("a", "What's my name?") == "Your name is Alice."
    assert ask("b", "What's my name?") == UNKNOWN_NAME_REPLY
    assert len(stores["a"].messages) == 4
