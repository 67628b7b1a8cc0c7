"""redis-chat-history: chat message history for LLM apps, kept inside Redis.

A Redis Functions library (Lua, Redis 7+, no modules) stores each conversation;
this package loads it and exposes :class:`RedisChatMessageHistory`, a LangChain
chat history, and the ``redis-chat-history`` command.
"""

from ._errors import (
    ChatHistoryError,
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
from ._protocol import LIBRARY_VERSION, MAX_MESSAGE_BYTES, StoredMessage, session_keys
from ._retry import DEFAULT_RETRY, RetryPolicy
from .history import RedisChatMessageHistory

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RETRY",
    "LIBRARY_VERSION",
    "MAX_MESSAGE_BYTES",
    "ChatHistoryError",
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
