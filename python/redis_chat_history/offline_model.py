"""An offline, deterministic chat model for the demo and tests: no network, no API key.

:class:`OfflineChatModel` stands in for ``ChatOpenAI`` when there is no key or no
``langchain-openai``. It "remembers" only through the messages it is given, so it
shows whether a chat history really reached the model: told "my name is Alice", it
greets Alice; asked "What's my name?", it answers from the earlier human messages
of the same prompt, and says it does not know when the history lacks them.

It also calls tools, so an agent (``create_agent``) can run on it: with the tools
:func:`add` and :func:`multiply` bound, a question such as "What is 2 + 3 and 4 * 5?"
gets one AI message calling ``add`` and ``multiply`` (in parallel), and the tool
results get the answer "2 + 3 = 5 and 4 * 5 = 20.".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

# "my name is" in any case, then the name: one word, plus any capitalised words after it
# ("my name is Alice Smith." gives "Alice Smith"; "my name is bob and ..." gives "bob").
_INTRODUCTION = re.compile(
    r"(?i:\bmy\s+name\s+is)\s+([^\W\d_][\w'-]*(?:\s+[A-Z][\w'-]*)*)",
)
_NAME_QUESTION = re.compile(
    r"\b(?:what(?:'|\u2019)?s|what\s+is|do\s+you\s+(?:know|remember))\s+my\s+name\b",
    re.IGNORECASE,
)
_GREETING = re.compile(r"^\s*(?:hi|hello|hey|good\s+(?:morning|afternoon|evening))\b", re.I)

GREETING_REPLY = "Hello! How can I assist you today?"
UNKNOWN_NAME_REPLY = (
    "I don't know your name yet: this conversation has not told me. "
    'Tell me with "my name is ..." and ask again.'
)
FALLBACK_REPLY = (
    "I am an offline demo model without a language model behind me: I can only "
    'remember a name you tell me ("my name is ...") and answer "What\'s my name?".'
)


def message_text(message: BaseMessage) -> str:
    """The text of a message: its string content, or the text parts of list content."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "".join(parts)


def introduced_name(text: str) -> str | None:
    """The name a text introduces with "my name is X", or None."""
    match = _INTRODUCTION.search(text)
    return match.group(1) if match else None


def remembered_name(messages: Sequence[BaseMessage]) -> str | None:
    """The name most recently introduced in the human messages, or None."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            name = introduced_name(message_text(message))
            if name is not None:
                return name
    return None


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


#: The demo's tools, by the operator the model calls each for.
TOOLS: dict[str, BaseTool] = {"+": add, "*": multiply}
_ARITHMETIC = re.compile(r"(-?\d+)\s*([+*])\s*(-?\d+)")


def tool_calls_for(messages: Sequence[BaseMessage], tools: Sequence[str]) -> list[ToolCall]:
    """The tool calls the model makes: one per "a + b" / "a * b" in the last message when it
    is a human one and the tool (``add`` / ``multiply``) is bound; ids unique to the prompt."""
    if not messages or not isinstance(messages[-1], HumanMessage):
        return []
    calls: list[ToolCall] = []
    for left, operator, right in _ARITHMETIC.findall(message_text(messages[-1])):
        name = TOOLS[operator].name
        if name in tools:
            calls.append(
                ToolCall(
                    name=name,
                    args={"a": int(left), "b": int(right)},
                    id=f"call_{len(messages)}_{len(calls)}",
                    type="tool_call",
                )
            )
    return calls


def answer_from_tools(messages: Sequence[BaseMessage]) -> str | None:
    """The answer to tool results that end the prompt, from their AI message's calls
    ("2 + 3 = 5 and 4 * 5 = 20."), or None when the prompt does not end with them."""
    results: dict[str, str] = {}
    index = len(messages) - 1
    while index >= 0 and isinstance(messages[index], ToolMessage):
        message = messages[index]
        assert isinstance(message, ToolMessage)
        results[message.tool_call_id] = message_text(message)
        index -= 1
    if not results or index < 0 or not isinstance(messages[index], AIMessage):
        return None
    ai = messages[index]
    assert isinstance(ai, AIMessage)
    symbols = {tool.name: operator for operator, tool in TOOLS.items()}
    parts = [
        f"{call['args'].get('a')} {symbols.get(call['name'], call['name'])} "
        f"{call['args'].get('b')} = {results[str(call['id'])]}"
        for call in ai.tool_calls
        if call["id"] in results
    ]
    return " and ".join(parts) + "." if parts else None


def reply_to(messages: Sequence[BaseMessage]) -> str:
    """The model's answer to a prompt, a function of the prompt's messages alone.

    The last human message is the one answered; the messages before it are the
    history the model may draw on.
    """
    last = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)),
        None,
    )
    if last is None:
        return FALLBACK_REPLY
    text = message_text(messages[last])
    if _NAME_QUESTION.search(text):
        name = remembered_name(messages[:last])
        return f"Your name is {name}." if name else UNKNOWN_NAME_REPLY
    name = introduced_name(text)
    if name is not None:
        return f"Hello {name}! How can I assist you today?"
    if _GREETING.match(text):
        return GREETING_REPLY
    return FALLBACK_REPLY


class OfflineChatModel(BaseChatModel):
    """A deterministic chat model that answers from the history in its prompt.

    Meant for demos and tests that must run without network or API key: it needs
    nothing but langchain-core, always gives the same answer to the same messages,
    and works anywhere a chat model does (``prompt | OfflineChatModel()``,
    ``RunnableWithMessageHistory``, ``invoke``/``ainvoke``/``batch``).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> model = OfflineChatModel()
        >>> model.invoke([HumanMessage("Hi, my name is Alice.")]).content
        'Hello Alice! How can I assist you today?'
        >>> model.invoke([
        ...     HumanMessage("Hi, my name is Alice."),
        ...     AIMessage("Hello Alice! How can I assist you today?"),
        ...     HumanMessage("What's my name?"),
        ... ]).content
        'Your name is Alice.'
    """

    @property
    def _llm_type(self) -> str:
        return "offline-demo"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The model with ``tools`` it may call (it calls ``add`` and ``multiply``)."""
        names = [convert_to_openai_tool(item)["function"]["name"] for item in tools]
        return self.bind(tool_names=names, **kwargs)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "offline-demo"}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        calls = tool_calls_for(messages, kwargs.get("tool_names") or ())
        text = "" if calls else answer_from_tools(messages) or reply_to(messages)
        for token in stop or ():
            if token and token in text:
                text = text[: text.index(token)]
        message = AIMessage(
            content=text, tool_calls=calls, response_metadata={"model_name": "offline-demo"}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
