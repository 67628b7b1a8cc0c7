"""redis-chat-history: chat message history for LLM apps, kept inside Redis.

A Redis Functions library (Lua, Redis 7+, no modules) stores each conversation;
this package loads it and exposes :class:`RedisChatMessageHistory`, a LangChain
chat history, and the ``redis-chat-history`` command.

The names that need LangChain (:class:`RedisChatMessageHistory`, :class:`StoredMessage`)
are imported on first use, so ``import redis_chat_history`` (and the command line,
which never needs them) does not load LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    ChatHistoryError,
    ConflictError,
    InvalidInputError,
    LibraryError,
    LibraryIncompatibleError,
    PermissionDeniedError,
    ReadOnlyReplicaError,
    RedisTimeoutError,
    RedisUnavailableError,
    ServerBusyError,
    ServerError,
    ServerOutOfMemoryError,
    UnreadableMessageError,
)
from ._library import library_source
from ._protocol import LIBRARY_VERSION, MAX_MESSAGE_BYTES, session_keys
from ._retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from ._langchain import StoredMessage
    from .history import RedisChatMessageHistory

#: Public names that import LangChain, and the module each comes from (loaded on first use).
_LAZY = {"RedisChatMessageHistory": ".history", "StoredMessage": "._langchain"}

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RETRY",
    "LIBRARY_VERSION",
    "MAX_MESSAGE_BYTES",
    "ChatHistoryError",
    "ConflictError",
    "InvalidInputError",
    "LibraryError",
    "LibraryIncompatibleError",
    "PermissionDeniedError",
    "ReadOnlyReplicaError",
    "RedisChatMessageHistory",
    "RedisTimeoutError",
    "RedisUnavailableError",
    "RetryPolicy",
    "ServerBusyError",
    "ServerError",
    "ServerOutOfMemoryError",
    "StoredMessage",
    "UnreadableMessageError",
    "__version__",
    "library_source",
    "session_keys",
]


def __getattr__(name: str) -> Any:
    """Import a LangChain-backed public name the first time it is asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
