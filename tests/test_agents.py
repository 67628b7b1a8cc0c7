"""ChatHistoryMiddleware with LangChain v1's create_agent, on a real Redis and real
langchain/langgraph (issue #18): memory across processes, tool-call-safe windows,
stopped streams and resumes, concurrent runs, summarization, sync and async."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain.agents", reason="the agents extra (langchain >= 1.5)")

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware, SummarizationMiddleware
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent_models import RecordingModel, lookup
from redis_chat_history import ConflictError, RedisChatMessageHistory
from redis_chat_history.agents import ChatHistoryMiddleware, is_summary
from redis_chat_history.offline_model import add, multiply

ROOT = Path(__file__).resolve().parents[1]
TOOLS = [add, multiply, lookup]
TURNS = ["Hi, my name is Alice.", "What is 2 + 3 and 4 * 5?", "Please look up 7 and 9."]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def thread(session: str) -> Any:
    return {"configurable": {"thread_id": session}}


def agent_for(middleware: list[Any], model: RecordingModel | None = None, **options: Any) -> Any:
    return create_agent(model or RecordingModel(), TOOLS, middleware=middleware, **options)


def stored(redis_url: str, session: str) -> list[BaseMessage]:
    return RedisChatMessageHistory(session, redis_url=redis_url).messages


def dicts(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [message_to_dict(message) for message in messages]


def in_call_order(messages: list[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with each run of tool results in the order of their AI message's calls.

    Parallel tool calls run at once and each result is appended as soon as it exists, so
    the session holds them in the order the tools finished, and so does a later run's state
    that loaded them; the run that made the calls holds them in the order of the calls.
    Everything else is compared as it is.
    """
    ordered: list[BaseMessage] = []
    calls: list[str] = []
    run: list[ToolMessage] = []
    for message in [*messages, None]:
        if isinstance(message, ToolMessage):
            run.append(message)
            continue
        position = {call_id: index for index, call_id in enumerate(calls)}
        ordered += sorted(run, key=lambda m: position.get(m.tool_call_id, len(calls)))
        run = []
        if message is None:
            break
        calls = (
            [str(call["id"]) for call in message.tool_calls]
            if isinstance(message, AIMessage)
            else []
        )
        ordered.append(message)
    return ordered


def assert_once_each(messages: list[BaseMessage]) -> None:
    ids = [message.id for message in messages]
    assert None not in ids
    assert len(ids) == len(set(ids)), ids


def assert_tool_safe(window: list[BaseMessage]) -> None:
    """No tool result in ``window`` without its AI message before it."""
    called: set[str] = set()
    for message in window:
        if isinstance(message, AIMessage):
            called |= {str(call["id"]) for call in message.tool_calls}
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in called, [m.type for m in window]


# -- memory across processes -----------------------------------------------------------------


FRESH_PROCESS = """
import json, sys
from langchain.agents import create_agent
from langchain_core.messages import message_to_dict
from agent_models import RecordingModel, lookup
from redis_chat_history.agents import ChatHistoryMiddleware
from redis_chat_history.offline_model import add, multiply

model = RecordingModel()
middleware = [ChatHistoryMiddleware(sys.argv[1])]
agent = create_agent(model, [add, multiply, lookup], middleware=middleware)
result = agent.invoke(
    {"messages": [{"role": "user", "content": "What's my name?"}]},
    {"configurable": {"thread_id": sys.argv[2]}},
)
print(json.dumps({
    "prompt": [message_to_dict(m) for m in model.prompts[0]],
    "answer": result["messages"][-1].content,
}))
"""


def test_three_turns_with_tools_then_a_new_process_gets_the_whole_conversation(
    redis_url: str,
) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url)])
    for text in TURNS:
        result = agent.invoke(user(text), thread("alice"))
    conversation = result["messages"]
    assert [m.type for m in conversation] == [
        *("human", "ai"),
        *("human", "ai", "tool", "tool", "ai"),
        *("human", "ai", "tool", "ai"),
    ]
    artifact = conversation[-2]
    assert isinstance(artifact, ToolMessage) and artifact.artifact == {
        "rows": [7, 9],
        "source": "test",
    }

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "python")])}
    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, redis_url, "alice"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    seen = json.loads(run.stdout)

    # Every message of the three turns, in order (parallel tool results as their tools
    # finished), every field as the first process had it (ids, tool calls, usage, response
    # metadata, additional kwargs, names, artifacts).
    prompt = in_call_order(messages_from_dict(seen["prompt"][:-1]))
    assert dicts(prompt) == dicts(in_call_order(conversation))
    assert seen["prompt"][-1]["data"]["content"] == "What's my name?"
    assert seen["answer"] == "Your name is Alice."
    transcript = stored(redis_url, "alice")
    assert dicts(in_call_order(transcript[: len(conversation)])) == dicts(
        in_call_order(conversation)
    )
    assert [m.type for m in transcript[len(conversation) :]] == ["human", "ai"]
    assert_once_each(transcript)


def test_the_session_comes_from_the_context_or_the_thread(redis_url: str) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url)])
    agent.invoke(user("Hi, my name is Bob."), context={"session_id": "bob"})
    answer = agent.invoke(user("What's my name?"), thread("bob"))["messages"][-1]
    assert answer.content == "Your name is Bob."
    assert [m.type for m in stored(redis_url, "bob")] == ["human", "ai"] * 2

    with pytest.raises(ValueError, match="needs a session"):
        agent.invoke(user("Hello"))


def test_importing_the_package_does_not_import_langchain_agents() -> None:
    code = (
        "import sys, redis_chat_history\n"
        "redis_chat_history.RedisChatMessageHistory\n"
        "assert 'langchain.agents' not in sys.modules and 'langgraph' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# -- costs -----------------------------------------------------------------------------------


def fcalls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("fcall", "fcall_ro")
    }


def test_a_turn_costs_one_read_and_one_append_per_message_producing_step(
    redis_url: str, client: redis.Redis
) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url)])
    agent.invoke(user("Hi, my name is Alice."), thread("cost"))  # loads the library
    client.config_resetstat()
    agent.invoke(user("What is 2 + 3 and 4 * 5?"), thread("cost"))
    # One read; appends: the input, the AI message with two tool calls, each tool result
    # (two tool calls run as two steps), the final AI message.
    assert fcalls(client) == {"fcall_ro": 1, "fcall": 5}


# -- tool-call-safe windows ------------------------------------------------------------------


@st.composite
def tool_heavy_turns(draw: st.DrawFn) -> list[BaseMessage]:
    """A conversation of turns: human, then AI messages calling 0-3 tools, each followed by
    its results, then a final AI message."""
    messages: list[BaseMessage] = []
    for turn in range(draw(st.integers(1, 5))):
        messages.append(HumanMessage(f"question {turn}"))
        for step in range(draw(st.integers(0, 2))):
            calls = [
                {"name": "add", "args": {"a": i, "b": step}, "id": f"c{turn}_{step}_{i}"}
                for i in range(draw(st.integers(1, 3)))
            ]
            messages.append(AIMessage("", tool_calls=calls))
            messages += [
                ToolMessage(str(i), tool_call_id=str(c["id"])) for i, c in enumerate(calls)
            ]
        messages.append(AIMessage(f"answer {turn}"))
    return messages


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=tool_heavy_turns())
def test_history_windows_of_every_size_never_start_with_orphan_tool_results(
    redis_url: str, conversation: list[BaseMessage]
) -> None:
    history = RedisChatMessageHistory("windows", redis_url=redis_url)
    history.clear()
    history.add_messages(conversation)
    for size in range(len(conversation) + 2):
        window = [record.message for record in history.latest(size, tool_safe=True)]
        assert_tool_safe(window)
        if window:
            assert window[-1].content == conversation[-1].content
        plain = history.latest(size)
        assert len(plain) == min(size, len(conversation))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=tool_heavy_turns())
def test_agent_windows_of_every_size_never_start_with_orphan_tool_results(
    redis_url: str, conversation: list[BaseMessage]
) -> None:
    RedisChatMessageHistory("agent-windows", redis_url=redis_url).clear()
    RedisChatMessageHistory("agent-windows", redis_url=redis_url).add_messages(conversation)
    for size in range(1, len(conversation) + 2):
        model = RecordingModel()
        agent = agent_for([ChatHistoryMiddleware(redis_url, load_last=size)], model)
        agent.invoke(user("Hello"), thread("agent-windows"))
        prompt = model.prompts[0]
        assert prompt[-1].content == "Hello"
        assert_tool_safe(prompt)
        assert not isinstance(prompt[0], ToolMessage)
        # The window is the latest messages: it ends where the conversation ends.
        assert prompt[-2].content == conversation[-1].content
        history = RedisChatMessageHistory("agent-windows", redis_url=redis_url)
        added = history.messages[len(conversation) :]  # this run's input and answer
        assert [m.type for m in added] == ["human", "ai"]
        history.delete_messages(message_ids=[str(m.id) for m in added])


def test_a_stored_window_trims_tool_results_with_their_call(redis_url: str) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url, max_messages=3)])
    agent.invoke(user("What is 2 + 3 and 4 * 5?"), thread("trim"))
    kept = stored(redis_url, "trim")
    # [human, AI with two calls, tool, tool, AI] within 3: never [tool, tool, AI].
    assert [m.type for m in kept] == ["ai"]
    assert_tool_safe(kept)


# -- stopped streams, resumes, human in the loop ----------------------------------------------


def test_a_stream_stopped_after_the_tool_call_keeps_it_and_resuming_stores_no_duplicate(
    redis_url: str,
) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url)], checkpointer=InMemorySaver())
    for chunk in agent.stream(user("What is 2 + 3 and 4 * 5?"), thread("s"), stream_mode="updates"):
        if "model" in chunk:
            break  # the caller stops right after the AI message with the tool calls
    kept = stored(redis_url, "s")
    assert [m.type for m in kept] == ["human", "ai"]
    assert isinstance(kept[1], AIMessage) and len(kept[1].tool_calls) == 2

    result = agent.invoke(None, thread("s"))  # resume from the checkpoint
    transcript = stored(redis_url, "s")
    assert [m.type for m in transcript] == ["human", "ai", "tool", "tool", "ai"]
    assert dicts(in_call_order(transcript)) == dicts(in_call_order(result["messages"]))
    assert_once_each(transcript)


def test_a_stream_stopped_after_the_first_tool_result_keeps_it(redis_url: str) -> None:
    agent = agent_for([ChatHistoryMiddleware(redis_url)])
    for chunk in agent.stream(user("Please look up 1 and 2."), thread("t"), stream_mode="updates"):
        if "tools" in chunk:
            break
    assert [m.type for m in stored(redis_url, "t")] == ["human", "ai", "tool"]
    # A later turn, in a new agent without a checkpointer, continues after it.
    agent_for([ChatHistoryMiddleware(redis_url)]).invoke(user("Hello"), thread("t"))
    transcript = stored(redis_url, "t")
    assert [m.type for m in transcript] == ["human", "ai", "tool", "human", "ai"]
    assert_once_each(transcript)


def test_human_in_the_loop_with_a_checkpointer_writes_the_transcript_once(
    redis_url: str,
) -> None:
    middleware = [
        ChatHistoryMiddleware(redis_url),
        HumanInTheLoopMiddleware(interrupt_on={"add": True}),
    ]
    agent = agent_for(middleware, checkpointer=InMemorySaver())
    first = agent.invoke(user("What is 2 + 3?"), thread("hitl"))
    assert "__interrupt__" in first
    assert [m.type for m in stored(redis_url, "hitl")] == ["human", "ai"]
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), thread("hitl"))
    agent.invoke(user("What is 4 * 5?"), thread("hitl"))  # the next turn, same checkpoint
    transcript = stored(redis_url, "hitl")
    assert [m.type for m in transcript] == [
        "human",
        "ai",
        "tool",
        "ai",
        "human",
        "ai",
        "tool",
        "ai",
    ]
    assert transcript[3].content == "2 + 3 = 5." and transcript[-1].content == "4 * 5 = 20."
    assert_once_each(transcript)


# -- concurrent runs -------------------------------------------------------------------------


def concurrent_turns(redis_url: str, middleware: ChatHistoryMiddleware) -> list[Any]:
    """Two runs on one thread at once: both read the session, then their models answer
    only once both have started, so their appends meet."""
    meet = threading.Barrier(2, timeout=30)
    results: list[Any] = [None, None]

    def run(index: int, text: str) -> None:
        model = RecordingModel(before_answer=meet.wait)
        try:
            results[index] = agent_for([middleware], model).invoke(user(text), thread("both"))
        except Exception as error:  # reported by the test
            results[index] = error
            meet.abort()

    threads = [
        threading.Thread(target=run, args=(0, "What is 2 + 3?")),
        threading.Thread(target=run, args=(1, "What is 4 * 5?")),
    ]
    for each in threads:
        each.start()
    for each in threads:
        each.join(60)
    return results


def test_two_concurrent_runs_on_one_thread_lose_nothing_and_double_nothing(
    redis_url: str,
) -> None:
    middleware = ChatHistoryMiddleware(redis_url)
    results = concurrent_turns(redis_url, middleware)

    assert middleware.conflicts >= 1  # detected with IFLAST
    transcript = stored(redis_url, "both")
    assert_once_each(transcript)
    produced = [r["messages"] for r in results]
    assert {m.id for m in transcript} == {m.id for run in produced for m in run}
    assert len(transcript) == 8
    for run in produced:  # each run's messages keep their order
        ids = [m.id for m in run]
        assert [m.id for m in transcript if m.id in ids] == ids
    assert {m.content for m in transcript if m.type == "ai" and m.content} == {
        "2 + 3 = 5.",
        "4 * 5 = 20.",
    }


def test_on_conflict_raise_reports_the_other_writer(redis_url: str) -> None:
    middleware = ChatHistoryMiddleware(redis_url, on_conflict="raise")
    results = concurrent_turns(redis_url, middleware)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors and all(
        isinstance(e, (ConflictError, threading.BrokenBarrierError)) for e in errors
    )
    assert any(isinstance(e, ConflictError) and e.code == "CONFLICT" for e in errors)
    assert_once_each(stored(redis_url, "both"))


def test_a_conditional_append_that_conflicts_writes_nothing(redis_url: str) -> None:
    history = RedisChatMessageHistory("cond", redis_url=redis_url)
    history.add_user_message("first")
    last = history.latest(1)[0].id
    history._run(history._append_call([HumanMessage("second")], if_last=last))
    with pytest.raises(ConflictError) as caught:
        history._run(history._append_call([HumanMessage("third")], if_last=last))
    assert caught.value.last_id == history.latest(1)[0].id != last
    assert [m.content for m in history.messages] == ["first", "second"]


# -- summarization ---------------------------------------------------------------------------


def summarizer(messages: list[BaseMessage]) -> str:
    return f"SUMMARY of {len(messages)} messages"


def test_with_summarization_the_transcript_is_complete_and_the_model_sees_the_summary(
    redis_url: str,
) -> None:
    model = RecordingModel()
    middleware = [
        ChatHistoryMiddleware(redis_url),
        SummarizationMiddleware(
            model=model, summarizer=summarizer, trigger=("messages", 6), keep=("messages", 2)
        ),
    ]
    agent = agent_for(middleware, model)
    produced: list[BaseMessage] = []
    for text in [*TURNS, "What's my name?"]:
        result = agent.invoke(user(text), thread("summary"))
        produced += [
            m
            for m in result["messages"]
            if not is_summary(m) and m.id not in {p.id for p in produced}
        ]

    transcript = stored(redis_url, "summary")
    assert not any(is_summary(m) or "SUMMARY" in str(m.content) for m in transcript)
    assert [m.type for m in transcript] == [
        *("human", "ai"),
        *("human", "ai", "tool", "tool", "ai"),
        *("human", "ai", "tool", "ai"),
        *("human", "ai"),
    ]
    assert_once_each(transcript)
    last_prompt = model.prompts[-1]
    assert is_summary(last_prompt[0]) and "SUMMARY" in str(last_prompt[0].content)
    assert len(last_prompt) < len(transcript)


# -- async -----------------------------------------------------------------------------------


async def test_async_runs_and_streams(redis_url: str) -> None:
    middleware = ChatHistoryMiddleware(redis_url)
    agent = agent_for([middleware])
    await agent.ainvoke(user("Hi, my name is Alice."), thread("async"))
    async for chunk in agent.astream(
        user("What is 2 + 3 and 4 * 5?"), thread("async"), stream_mode="updates"
    ):
        if "tools" in chunk:
            break
    assert [m.type for m in stored(redis_url, "async")][:4] == ["human", "ai", "human", "ai"]
    fresh = agent_for([ChatHistoryMiddleware(redis_url)])
    result = await fresh.ainvoke(user("What's my name?"), thread("async"))
    assert result["messages"][-1].content == "Your name is Alice."
    transcript = stored(redis_url, "async")
    assert_once_each(transcript)
    assert_tool_safe(transcript)
    assert transcript[-2].content == "What's my name?"


# -- the demo --------------------------------------------------------------------------------


def test_the_demo_leads_with_an_agent_turn_with_tool_calls(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_chat_history.demo import run_demo

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_demo(redis_url)
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("== An agent that remembers: create_agent with ChatHistoryMiddleware ==")
    assert lines[start + 1 : start + 13] == [
        "User: Hi, my name is Alice.",
        "AI: Hello Alice! How can I assist you today?",
        "User: What is 2 + 3 and 4 * 5?",
        "AI calls: add({'a': 2, 'b': 3}), multiply({'a': 4, 'b': 5})",
        "Tool add: 5",
        "Tool multiply: 20",
        "AI: 2 + 3 = 5 and 4 * 5 = 20.",
        "A new agent object (no checkpointer, nothing in memory), same thread_id:",
        "User: What's my name?",
        "AI: Your name is Alice.",
        "Stored in Redis: 9 messages (human, ai, human, ai, tool, tool, ai, human, ai)",
        "",
    ]
    assert start < lines.index("== Basic usage of RedisChatMessageHistory ==")


def test_the_demo_pauses_a_checkpointed_agent_and_resumes_it(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_chat_history.demo import run_demo

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_demo(redis_url)
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "== A LangGraph checkpointer: create_agent with RedisChatSaver, paused and resumed =="
    )
    assert lines[start + 1 : start + 7] == [
        "Paused: multiply({'a': 6, 'b': 7}) waits for approval",
        "A new agent object and saver (as another process would), resumed with an approval:",
        "Tool multiply: 42",
        "AI: 6 * 7 = 42.",
        "The thread is a chat session: 4 messages, each stored once",
        "",
    ]
