"""The demo: an agent that remembers, then the seed notebook's flow (langchain-redis's
"Redis Chat Message History") run on this package.

:func:`run_demo` first runs ``create_agent`` with :class:`ChatHistoryMiddleware`: two turns,
the second with tool calls, then a new agent object (nothing in memory, no checkpointer)
that answers from the conversation kept in Redis; then an agent with the LangGraph checkpointer
:class:`~redis_chat_history.checkpoint.RedisChatSaver` that pauses for approval of a tool call
and is resumed by a new agent object. Then it prints what the notebook prints:
basic usage, a chain with ``RunnableWithMessageHistory`` (LangChain's older API), a custom
configuration, search and clear. The model is ``ChatOpenAI`` when ``OPENAI_API_KEY`` is set
and ``langchain-openai`` is installed, otherwise
:class:`~redis_chat_history.offline_model.OfflineChatModel`, which answers
deterministically from the history it is given and calls the demo's tools.

Every run uses session ids of its own and deletes them at the end, so a rerun
against a persistent Redis prints the same and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
import warnings
from typing import Any, cast

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from ._clients import redact_url, sync_client
from ._errors import ChatHistoryError
from .history import RedisChatMessageHistory
from .local_server import local_redis, redis_server_path
from .offline_model import TOOLS, OfflineChatModel


def choose_model() -> tuple[BaseChatModel, str]:
    """The chat model for the demo and a line saying which one it is and why.

    ``ChatOpenAI()`` when ``OPENAI_API_KEY`` is set and ``langchain_openai`` imports;
    otherwise the offline deterministic model.
    """
    if not os.environ.get("OPENAI_API_KEY"):
        reason = "OPENAI_API_KEY is not set"
    else:
        try:
            openai = importlib.import_module("langchain_openai")
        except ImportError:
            reason = "langchain-openai is not installed"
        else:
            model = cast(BaseChatModel, openai.ChatOpenAI())
            return model, "ChatOpenAI (OPENAI_API_KEY is set)"
    return OfflineChatModel(), f"OfflineChatModel, offline and deterministic ({reason})"


def run_demo(redis_url: str | None) -> None:
    """Run the seed notebook's flow against ``redis_url``, printing what it prints.

    With ``redis_url`` None, a throwaway server is started on a free loopback port for
    the run and stopped afterwards (redis-server, or the one ``$RCH_REDIS_SERVER``
    names). URLs are printed with any password replaced by ``***``.
    """
    if redis_url is not None:
        _run_flow(redis_url)
        return
    name = os.path.basename(redis_server_path())
    with local_redis() as server:
        print(f"Started a throwaway {name} at {server.url} (no Redis URL was given).")
        try:
            _run_flow(server.url)
        finally:
            # The shared client for this URL outlives the server: drop its connections.
            sync_client(server.url).close()
    print(f"Stopped the throwaway {name}; its data is gone.")


def _section(title: str) -> None:
    print(f"\n== {title} ==")


def _show(message: BaseMessage) -> str:
    """One line of the agent's transcript: who said what, or which tools were called."""
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = ", ".join(f"{call['name']}({call['args']})" for call in message.tool_calls)
        return f"AI calls: {calls}"
    if isinstance(message, ToolMessage):
        return f"Tool {message.name}: {message.content}"
    who = {"human": "User", "ai": "AI"}.get(message.type, message.type)
    return f"{who}: {message.content}"


def _run_agent(redis_url: str, llm: BaseChatModel, session: str) -> None:
    """Two agent turns (the second with tool calls), then a new agent on the same thread."""
    _section("An agent that remembers: create_agent with ChatHistoryMiddleware")
    try:
        from langchain.agents import create_agent

        from .agents import ChatHistoryMiddleware
    except ImportError:
        print("Skipped: needs the agents extra (pip install 'redis-chat-history[agents]').")
        return
    tools = list(TOOLS.values())
    config: Any = {"configurable": {"thread_id": session}}
    agent = create_agent(llm, tools, middleware=[ChatHistoryMiddleware(redis_url)])
    for text in ("Hi, my name is Alice.", "What is 2 + 3 and 4 * 5?"):
        result = agent.invoke({"messages": [{"role": "user", "content": text}]}, config)
        turn = result["messages"]
        start = max(i for i, m in enumerate(turn) if m.type == "human")
        for message in turn[start:]:
            print(_show(message))
    print("A new agent object (no checkpointer, nothing in memory), same thread_id:")
    fresh = create_agent(llm, tools, middleware=[ChatHistoryMiddleware(redis_url)])
    result = fresh.invoke({"messages": [{"role": "user", "content": "What's my name?"}]}, config)
    for message in result["messages"][-2:]:
        print(_show(message))
    stored = RedisChatMessageHistory(session, redis_url=redis_url).messages
    print(f"Stored in Redis: {len(stored)} messages ({', '.join(m.type for m in stored)})")


def _run_checkpointer(redis_url: str, llm: BaseChatModel, thread: str) -> None:
    """An agent with RedisChatSaver that pauses for approval of a tool call, resumed by a
    new agent object and saver (as another process would), then the thread read as a chat
    session; the thread is deleted at the end."""
    _section("A LangGraph checkpointer: create_agent with RedisChatSaver, paused and resumed")
    try:
        from langchain.agents import create_agent
        from langchain.agents.middleware import HumanInTheLoopMiddleware
        from langgraph.types import Command

        from .checkpoint import RedisChatSaver
    except ImportError:
        print("Skipped: needs the agents extra (pip install 'redis-chat-history[agents]').")
        return
    config: Any = {"configurable": {"thread_id": thread}}

    def new_agent() -> Any:
        return create_agent(
            llm,
            list(TOOLS.values()),
            checkpointer=RedisChatSaver(redis_url),
            middleware=[HumanInTheLoopMiddleware(interrupt_on={"multiply": True})],
        )

    try:
        first = new_agent().invoke(
            {"messages": [{"role": "user", "content": "What is 6 * 7?"}]}, config
        )
        if not first.get("__interrupt__"):
            print(_show(first["messages"][-1]), "(the model called no tool that needs approval)")
            return
        for action in first["__interrupt__"][0].value["action_requests"]:
            print(f"Paused: {action['name']}({action['args']}) waits for approval")
        print("A new agent object and saver (as another process would), resumed with an approval:")
        done = new_agent().invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
        for message in done["messages"][-2:]:
            print(_show(message))
        stored = RedisChatMessageHistory(thread, redis_url=redis_url).messages
        print(f"The thread is a chat session: {len(stored)} messages, each stored once")
    finally:
        RedisChatSaver(redis_url).delete_thread(thread)


def _run_flow(redis_url: str) -> None:
    run = uuid.uuid4().hex[:12]
    # The notebook's session ids, made unique to this run.
    user_session, alice_session, custom_session = (
        f"{name}-{run}" for name in ("user_123", "alice_123", "user_456")
    )
    print(f"Connecting to Redis at: {redact_url(redis_url)}")

    history = RedisChatMessageHistory(session_id=user_session, redis_url=redis_url)
    custom_history = RedisChatMessageHistory(
        custom_session,
        redis_url=redis_url,
        key_prefix="custom_prefix:",
        ttl=3600,  # Set TTL to 1 hour
        index_name="custom_index",
    )
    alice_history = RedisChatMessageHistory(alice_session, redis_url=redis_url)
    agent_history = RedisChatMessageHistory(f"agent-{run}", redis_url=redis_url)

    def delete_sessions() -> None:
        for session in (history, alice_history, custom_history, agent_history):
            session.clear()

    try:
        llm, description = choose_model()
        _run_agent(redis_url, llm, agent_history.session_id)
        _run_checkpointer(redis_url, llm, f"checkpointed-{run}")

        _section("Basic usage of RedisChatMessageHistory")
        history.add_user_message("Hello, AI assistant!")
        history.add_ai_message("Hello! How can I assist you today?")
        print("Chat History:")
        for message in history.messages:
            print(f"{type(message).__name__}: {message.content}")

        _section("RedisChatMessageHistory with a language model (RunnableWithMessageHistory)")
        print(f"Language model: {description}")
        prompt = ChatPromptTemplate.from_messages(
            [
                ("system", "You are a helpful AI assistant."),
                MessagesPlaceholder(variable_name="history"),
                ("human", "{input}"),
            ]
        )
        chain = prompt | llm

        def get_redis_history(session_id: str) -> BaseChatMessageHistory:
            return RedisChatMessageHistory(session_id, redis_url=redis_url)

        with warnings.catch_warnings():
            # langchain-core 1.x deprecates this class in favour of LangGraph; the notebook
            # being reproduced uses it, and it works, so the warning is not repeated here.
            warnings.filterwarnings("ignore", "RunnableWithMessageHistory is deprecated")
            chain_with_history = RunnableWithMessageHistory(
                chain, get_redis_history, input_messages_key="input", history_messages_key="history"
            )
        config: Any = {"configurable": {"session_id": alice_session}}
        response1 = chain_with_history.invoke({"input": "Hi, my name is Alice."}, config=config)
        print("AI Response 1:", response1.content)
        response2 = chain_with_history.invoke({"input": "What's my name?"}, config=config)
        print("AI Response 2:", response2.content)

        _section("Custom Redis configuration")
        custom_history.add_user_message("This is a message with custom configuration.")
        print("Custom History:", custom_history.messages)

        _section("Searching messages")
        history.add_user_message("Tell me about artificial intelligence.")
        history.add_ai_message("Artificial Intelligence (AI) is a branch of computer science...")
        search_results = history.search_messages("artificial intelligence")
        print("Search Results:")
        for result in search_results:
            print(f"{result['type']}: {result['content'][:50]}...")

        _section("Clearing history")
        history.clear()
        print("Messages after clearing:", history.messages)
    except BaseException:
        # Best effort: the error that stopped the demo matters more than the cleanup.
        with contextlib.suppress(ChatHistoryError):
            delete_sessions()
        raise
    delete_sessions()
    print("\nDeleted the sessions this run created.")
