"""Conversation memory for LangChain v1 agents: :class:`ChatHistoryMiddleware`.

One line in ``create_agent(model, tools, middleware=[ChatHistoryMiddleware(...)])`` keeps
every agent conversation in Redis, in the same sessions as :class:`RedisChatMessageHistory`:

- **Before the run** (``before_agent``) the session's window is read in one call, tool-call
  safe (it never starts with tool results whose AI message it left out), and put before
  the new input: the model sees the conversation so far, in a fresh process, with no
  checkpointer. The input is appended right away.
- **During the run** every message is appended as soon as it exists: each AI message
  (``wrap_model_call``, before the model step ends), each tool result (``wrap_tool_call``),
  and anything else a step put in the state (artificial tool messages of
  human-in-the-loop, a tool error made outside the tool wrapper; ``before_model`` /
  ``after_agent``). A stream the caller stops, or a crash,
  keeps everything produced up to then.
- **Exactly once.** Every append carries a ``TOKEN`` (a retry after a lost reply is
  replayed, not stored again) and the messages' LangChain ids (a step that LangGraph runs
  again on resume stores nothing twice: the library keeps one copy per id); tool results
  get an id made from their AI message and tool call, so a re-run tool dedupes too.
- **Conflicts.** Every append is conditional on the session's newest stream id that this
  run knows (``IFLAST``). When another writer got there first (two runs on one thread at
  once), the library writes nothing and replies ``CONFLICT``; the run then reads what came
  after the id it knew, drops from its batch what is stored already, and appends the rest
  after the new end (``on_conflict="append"``, the default), or raises
  :class:`ConflictError` (``on_conflict="raise"``). Nothing is lost or doubled.

What is stored is what was said: human input, AI messages, tool results. A summary that
``SummarizationMiddleware`` puts in the state (``lc_source: "summarization"``) is not
stored, nor are the removals it makes: the stored transcript keeps the whole conversation
while the model sees the summary. See docs/agents.md.

Needs the ``agents`` extra (``pip install "redis-chat-history[agents]"``, langchain >= 1.5);
``import redis_chat_history`` never imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
)
from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage, ToolMessage
from langgraph.config import get_config
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import NotRequired

from . import _langchain as lc
from . import _protocol as protocol
from ._errors import ConflictError, InvalidInputError
from ._retry import DEFAULT_RETRY, RetryPolicy
from .history import RedisChatMessageHistory

__all__ = ["ChatHistoryMiddleware", "ChatHistoryState", "is_summary"]

logger = logging.getLogger(__name__)

#: How many times one batch is re-appended after conflicts before ConflictError is raised.
MAX_CONFLICT_RETRIES = 8
#: Runs whose after_agent never came (a stream dropped, a crash) kept in memory at most.
MAX_OPEN_RUNS = 1024


class ChatHistoryState(AgentState[Any]):
    """The agent state with the middleware's private record (never in input or output).

    ``chat_history``: ``run`` (this run's key), ``session``, ``last`` (the session's newest
    stream id as this run knows it), ``stored`` (ids of the state's messages known to be
    in the session). Checkpointed with the rest of the state, so a resumed run continues
    from it.
    """

    chat_history: NotRequired[Annotated[dict[str, Any], PrivateStateAttr]]


def is_summary(message: BaseMessage) -> bool:
    """True for a message that a middleware made to stand for others (SummarizationMiddleware's
    summary): the model sees it, the stored transcript does not."""
    return bool(message.additional_kwargs.get("lc_source") == "summarization")


@dataclass
class _Tail:
    """What one run knows of its session's end: the newest stream id and the messages
    stored. Shared by the run's hooks and its tool calls (which may run in parallel)."""

    run: str
    session: str
    last: str = "0-0"
    stored: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    alock: asyncio.Lock | None = None

    def pending(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """The messages of ``messages`` not stored yet, in order (summaries never are)."""
        return [
            message
            for message in messages
            if not isinstance(message, RemoveMessage)
            and not is_summary(message)
            and (message.id is None or message.id not in self.stored)
        ]

    def accept(self, messages: Sequence[BaseMessage], reply: Any) -> None:
        """Records an append's reply: the messages are stored, the end moved."""
        for message in messages:
            if message.id is not None:
                self.stored.add(message.id)
        ids = [protocol.as_text(item) for item in reply]
        self.last = max([self.last, *ids], key=lambda value: protocol.stream_id_key(value, 0))

    def catch_up(self, reply: Any, conflict: ConflictError) -> str | None:
        """Takes a page read after ``last`` (following a conflict): the ids found there are
        stored, ``last`` moves to the newest. The next page's start, or None at the end."""
        records = protocol.decode_records(reply)
        for record in records:
            data = record.stored.get("data")
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                self.stored.add(data["id"])
        if records:
            self.last = records[-1].id
            return self.last if len(records) >= protocol.READ_PAGE else None
        if conflict.last_id is not None:
            # Nothing after what we knew: the session was cleared or trimmed behind us.
            self.last = conflict.last_id
        return None

    def snapshot(self, messages: Sequence[BaseMessage]) -> dict[str, Any]:
        """The record kept in the state: ``stored`` only for messages the state still holds."""
        present = {message.id for message in messages if message.id is not None}
        return {
            "run": self.run,
            "session": self.session,
            "last": self.last,
            "stored": sorted(self.stored & present),
        }


def _messages_of(result: Any) -> list[BaseMessage]:
    """The messages a tool call produced: its ToolMessage, or those of its Command."""
    if isinstance(result, BaseMessage):
        return [result]
    if isinstance(result, Command) and isinstance(result.update, Mapping):
        found = result.update.get("messages") or []
        return [message for message in found if isinstance(message, BaseMessage)]
    return []


def _response_messages(response: Any) -> list[BaseMessage]:
    """The messages a model call produced, each given an id if it has none (the one the
    state will hold, so that the message is known to be stored)."""
    if isinstance(response, ExtendedModelResponse):
        response = response.model_response
    messages = [response] if isinstance(response, BaseMessage) else list(response.result)
    for message in messages:
        if message.id is None:
            message.id = str(uuid.uuid4())
    return messages


def _name_tool_results(request: ToolCallRequest, messages: Sequence[BaseMessage]) -> None:
    """Give tool results without an id one made of their AI message's id and tool call id,
    so that a tool call LangGraph runs again (on resume) is stored once."""
    ai_id = None
    for message in reversed(_state_messages(request.state)):
        if isinstance(message, AIMessage) and any(
            call.get("id") == request.tool_call.get("id") for call in message.tool_calls
        ):
            ai_id = message.id
            break
    for message in messages:
        if isinstance(message, ToolMessage) and message.id is None:
            message.id = f"{ai_id or 'tool'}:{message.tool_call_id}"


def _changed(state: Any, record: dict[str, Any]) -> dict[str, Any] | None:
    """The state update that keeps the run's record current, or None when it is."""
    return None if state.get("chat_history") == record else {"chat_history": record}


def _state_messages(state: Any) -> list[BaseMessage]:
    messages = state.get("messages", []) if isinstance(state, Mapping) else []
    return list(messages)


class ChatHistoryMiddleware(AgentMiddleware[ChatHistoryState, Any]):
    """Keeps a ``create_agent`` conversation in Redis: loads it before a run, appends each
    message as soon as it exists, exactly once, and tells concurrent runs apart.

    The session is the run's ``thread_id`` (``config["configurable"]["thread_id"]``), or
    the ``session_id`` of the runtime context (``context={"session_id": ...}`` or an object
    with that attribute), which wins when both are given.

    Args:
        redis_url: Where Redis is; defaults to ``$REDIS_URL``, then ``redis://localhost:6379``.
        redis_client: A ready sync client instead of ``redis_url``.
        async_redis_client: A ready ``redis.asyncio`` client for ``ainvoke`` / ``astream``.
        key_prefix: Prefix of the session keys, as :class:`RedisChatMessageHistory`.
        ttl: Seconds of inactivity after which a session expires (each append renews it).
        max_messages: Keep at most this many messages in the session (trimmed in the append,
            tool results with their AI message); also the window loaded before a run.
        max_bytes: Keep the session's stored JSON within this many bytes, as the history.
        load_last: The window loaded before a run, in messages (tool-call safe). Default:
            ``max_messages``, else the whole session. Use it to keep a full transcript while
            the model sees only the latest messages.
        on_conflict: ``"append"`` (default): after another writer's messages, read them and
            append this run's after them. ``"raise"``: raise :class:`ConflictError`.
        retry: Retry policy of transient failures (appends are exactly-once).
        search_index: Keep a search index of new sessions (see docs/search.md).
        **redis_options: Options of the redis-py client made from ``redis_url``.
    """

    state_schema = ChatHistoryState

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: Any | None = None,
        async_redis_client: Any | None = None,
        key_prefix: str = protocol.DEFAULT_KEY_PREFIX,
        ttl: int | None = None,
        max_messages: int | None = None,
        max_bytes: int | None = None,
        load_last: int | None = None,
        on_conflict: Literal["append", "raise"] = "append",
        retry: RetryPolicy | None = DEFAULT_RETRY,
        search_index: bool = True,
        **redis_options: Any,
    ) -> None:
        super().__init__()
        if on_conflict not in ("append", "raise"):
            raise InvalidInputError('on_conflict must be "append" or "raise"')
        self.load_last = protocol.check_count(
            load_last if load_last is not None else max_messages,
            "load_last",
            0,
            protocol.MAX_WINDOW_MESSAGES,
        )
        self.on_conflict = on_conflict
        self._options: dict[str, Any] = dict(
            redis_url=redis_url,
            redis_client=redis_client,
            async_redis_client=async_redis_client,
            key_prefix=key_prefix,
            ttl=ttl,
            max_messages=max_messages,
            max_bytes=max_bytes,
            retry=retry,
            search_index=search_index,
            **redis_options,
        )
        RedisChatMessageHistory("check", **self._options)  # options checked now, not mid-run
        #: Conflicts met (and resolved with ``on_conflict="append"``) since construction.
        self.conflicts = 0
        self._runs: OrderedDict[str, _Tail] = OrderedDict()
        self._runs_lock = threading.Lock()

    def history(self, session_id: str) -> RedisChatMessageHistory:
        """The :class:`RedisChatMessageHistory` of a session, with this middleware's options
        (no round trip; histories of one URL share a connection pool)."""
        return RedisChatMessageHistory(session_id, **self._options)

    # -- the session and the run ---------------------------------------------------------

    def session_of(self, runtime: Runtime[Any] | None) -> str:
        """The run's session: the context's ``session_id``, else the config's ``thread_id``."""
        context = getattr(runtime, "context", None)
        if isinstance(context, Mapping):
            session = context.get("session_id")
        else:
            session = getattr(context, "session_id", None)
        if session is None:
            try:
                configurable = get_config().get("configurable") or {}
            except RuntimeError:
                configurable = {}
            session = configurable.get("thread_id")
        if not isinstance(session, str) or not session:
            raise InvalidInputError(
                "ChatHistoryMiddleware needs a session: pass "
                'config={"configurable": {"thread_id": "..."}} or a runtime context with '
                "a session_id"
            )
        return session

    def _open(self, tail: _Tail) -> _Tail:
        with self._runs_lock:
            self._runs[tail.run] = tail
            while len(self._runs) > MAX_OPEN_RUNS:
                self._runs.popitem(last=False)
        return tail

    def _tail(self, state: Any) -> _Tail | None:
        """This run's tail: in memory, or rebuilt from the state's record (a run resumed in
        another process); None before ``before_agent`` ran."""
        record = state.get("chat_history") if isinstance(state, Mapping) else None
        if not record:
            return None
        with self._runs_lock:
            tail = self._runs.get(record["run"])
        if tail is not None:
            return tail
        return self._open(
            _Tail(record["run"], record["session"], record["last"], set(record["stored"]))
        )

    def _close(self, tail: _Tail) -> None:
        with self._runs_lock:
            self._runs.pop(tail.run, None)

    def _start(self, state: Any, runtime: Runtime[Any]) -> tuple[_Tail, bool]:
        """The run's tail, and whether the session must be read (no checkpointed record of
        this session: the state holds only the new input)."""
        session = self.session_of(runtime)
        record = state.get("chat_history") if isinstance(state, Mapping) else None
        tail = _Tail(uuid.uuid4().hex, session)
        if record and record.get("session") == session:
            tail.last, tail.stored = record["last"], set(record["stored"])
            return self._open(tail), False
        return self._open(tail), True

    def _window_call(self, history: RedisChatMessageHistory) -> protocol.Call | None:
        if self.load_last is None:
            return None
        return protocol.latest_call(history.keys, self.load_last, tool_safe=True)

    def _loaded(
        self, tail: _Tail, records: Sequence[lc.StoredMessage], state: Any
    ) -> dict[str, Any]:
        """The state update that puts the loaded window before the new input."""
        loaded: list[BaseMessage] = []
        for record in records:
            message = record.message
            if message.id is None:
                # Stored without a LangChain id (by RedisChatMessageHistory): named by its
                # stream id, and known to be stored.
                message = message.model_copy(update={"id": f"redis:{record.id}"})
            tail.stored.add(str(message.id))
            loaded.append(message)
        if records:
            tail.last = records[-1].id
        return {
            "messages": [
                RemoveMessage(id=REMOVE_ALL_MESSAGES),
                *loaded,
                *_state_messages(state),
            ]
        }

    # -- writing -------------------------------------------------------------------------

    def _conflict(self, tail: _Tail, error: ConflictError, attempt: int) -> None:
        if self.on_conflict == "raise" or attempt >= MAX_CONFLICT_RETRIES:
            raise error
        self.conflicts += 1
        logger.warning(
            "session %r: another writer appended after %s; appending after it (%s)",
            tail.session,
            tail.last,
            error,
        )

    def _write(self, tail: _Tail, messages: Sequence[BaseMessage]) -> bool:
        """Append what of ``messages`` is not stored yet, after the run's known end, in one
        call (more only after a conflict). Whether anything was sent."""
        history = self.history(tail.session)
        with tail.lock:
            todo = tail.pending(messages)
            sent = bool(todo)
            attempt = 0
            while todo:
                try:
                    reply = history._run(history._append_call(todo, if_last=tail.last))
                except ConflictError as error:
                    self._conflict(tail, error, attempt)
                    attempt += 1
                    after: str | None = tail.last
                    while after is not None:
                        page = protocol.range_call(
                            history.keys, count=protocol.READ_PAGE, after=after
                        )
                        after = tail.catch_up(history._run(page), error)
                    todo = tail.pending(todo)
                    continue
                tail.accept(todo, reply)
                todo = []
        return sent

    async def _awrite(self, tail: _Tail, messages: Sequence[BaseMessage]) -> bool:
        """Async twin of :meth:`_write`."""
        history = self.history(tail.session)
        if tail.alock is None:
            tail.alock = asyncio.Lock()
        async with tail.alock:
            todo = tail.pending(messages)
            sent = bool(todo)
            attempt = 0
            while todo:
                try:
                    reply = await history._arun(history._append_call(todo, if_last=tail.last))
                except ConflictError as error:
                    self._conflict(tail, error, attempt)
                    attempt += 1
                    after: str | None = tail.last
                    while after is not None:
                        page = protocol.range_call(
                            history.keys, count=protocol.READ_PAGE, after=after
                        )
                        after = tail.catch_up(await history._arun(page), error)
                    todo = tail.pending(todo)
                    continue
                tail.accept(todo, reply)
                todo = []
        return sent

    def _flush(self, state: Any, *, close: bool = False) -> dict[str, Any] | None:
        tail = self._tail(state)
        if tail is None:
            return None
        messages = _state_messages(state)
        self._write(tail, messages)
        if close:
            self._close(tail)
        return _changed(state, tail.snapshot(messages))

    async def _aflush(self, state: Any, *, close: bool = False) -> dict[str, Any] | None:
        tail = self._tail(state)
        if tail is None:
            return None
        messages = _state_messages(state)
        await self._awrite(tail, messages)
        if close:
            self._close(tail)
        return _changed(state, tail.snapshot(messages))

    # -- hooks ---------------------------------------------------------------------------

    def before_agent(self, state: ChatHistoryState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Load the session's window (one read, tool-call safe) before the new input, and
        append the input (one append)."""
        tail, read = self._start(state, runtime)
        update: dict[str, Any] = {}
        if read:
            history = self.history(tail.session)
            call = self._window_call(history)
            if call is not None:
                records = lc.decode_stored(history._read(call))
            else:
                reader = protocol.SessionReader(history.keys)
                history._follow(reader.next_call(), reader.feed, reader.next_call)
                records = lc.decode_stored(reader.items)
            update = self._loaded(tail, records, state)
        messages = _state_messages(state)
        self._write(tail, messages)
        return {**update, "chat_history": tail.snapshot([*update.get("messages", messages)])}

    async def abefore_agent(
        self, state: ChatHistoryState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async twin of :meth:`before_agent`."""
        tail, read = self._start(state, runtime)
        update: dict[str, Any] = {}
        if read:
            history = self.history(tail.session)
            call = self._window_call(history)
            if call is not None:
                records = lc.decode_stored(await history._aread(call))
            else:
                reader = protocol.SessionReader(history.keys)
                await history._afollow(reader.next_call(), reader.feed, reader.next_call)
                records = lc.decode_stored(reader.items)
            update = self._loaded(tail, records, state)
        messages = _state_messages(state)
        await self._awrite(tail, messages)
        return {**update, "chat_history": tail.snapshot([*update.get("messages", messages)])}

    def before_model(self, state: ChatHistoryState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Append what a step put in the state without passing here (usually nothing: no call)."""
        return self._flush(state)

    async def abefore_model(
        self, state: ChatHistoryState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async twin of :meth:`before_model`."""
        return await self._aflush(state)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Call the model, then append its AI message as soon as it exists (one append),
        before the step ends: a stream stopped right after it keeps it."""
        response = handler(request)
        tail = self._tail(request.state)
        produced = _response_messages(response)
        if tail is not None and produced:
            self._write(tail, produced)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Async twin of :meth:`wrap_model_call`."""
        response = await handler(request)
        tail = self._tail(request.state)
        produced = _response_messages(response)
        if tail is not None and produced:
            await self._awrite(tail, produced)
        return response

    def after_agent(self, state: ChatHistoryState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Append anything left (a tool's error result made outside ``wrap_tool_call``), and
        forget the run."""
        return self._flush(state, close=True)

    async def aafter_agent(
        self, state: ChatHistoryState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async twin of :meth:`after_agent`."""
        return await self._aflush(state, close=True)

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run the tool, then append its result as soon as it exists (one append)."""
        result = handler(request)
        tail = self._tail(request.state)
        produced = _messages_of(result)
        if tail is not None and produced:
            _name_tool_results(request, produced)
            self._write(tail, produced)
        return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of :meth:`wrap_tool_call`."""
        result = await handler(request)
        tail = self._tail(request.state)
        produced = _messages_of(result)
        if tail is not None and produced:
            _name_tool_results(request, produced)
            await self._awrite(tail, produced)
        return result
