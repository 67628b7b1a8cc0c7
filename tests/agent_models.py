"""Chat models and tools for the agent tests (importable by the subprocess they start)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

from redis_chat_history.offline_model import OfflineChatModel, message_text

_LOCK = threading.Lock()
_LOOKUP = re.compile(r"look up (\d+) and (\d+)")


@tool(response_format="content_and_artifact")
def lookup(a: int, b: int) -> tuple[str, dict[str, Any]]:
    """Look two numbers up (a tool whose result carries an artifact)."""
    return f"looked up {a} and {b}", {"rows": [a, b], "source": "test"}


class RecordingModel(OfflineChatModel):
    """The offline model, remembering every prompt it got, with the fields real providers
    fill in (usage, response metadata, additional kwargs, a name)."""

    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    #: Called before each answer (a test makes two runs meet here).
    before_answer: Callable[[], None] | None = None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with _LOCK:
            self.prompts.append(list(messages))
        if self.before_answer is not None:
            self.before_answer()
        asked = _LOOKUP.search(message_text(messages[-1])) if messages else None
        if (
            asked
            and isinstance(messages[-1], HumanMessage)
            and "lookup" in kwargs.get("tool_names", ())
        ):
            call = ToolCall(
                name="lookup",
                args={"a": int(asked.group(1)), "b": int(asked.group(2))},
                id=f"lookup_{len(messages)}",
                type="tool_call",
            )
            result = ChatResult(
                generations=[ChatGeneration(message=AIMessage("", tool_calls=[call]))]
            )
        else:
            result = super()._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        rich = message.model_copy(
            update={
                "usage_metadata": {
                    "input_tokens": len(messages),
                    "output_tokens": 7,
                    "total_tokens": len(messages) + 7,
                },
                "response_metadata": {"model_name": "offline-demo", "finish_reason": "stop"},
                "additional_kwargs": {"refusal": None, "turn": len(messages)},
                "name": "assistant",
            }
        )
        return ChatResult(generations=[ChatGeneration(message=rich)])
