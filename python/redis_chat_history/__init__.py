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
    RedisUnavailableError,
    ServerError,
)
from ._library import library_source
from ._protocol import LIBRARY_VERSION, StoredMessage, session_keys
from .history import RedisChatMessageHistory

__version__ = "0.1.0"

__all__ = [
    "LIBRARY_VERSION",
    "ChatHistoryError",
    "InvalidInputError",
    "LibraryError",
    "LibraryIncompatibleError",
    "RedisChatMessageHistory",
    "RedisUnavailableError",
    "ServerError",
    "StoredMessage",
    "__version__",
    "library_source",
    "session_keys",
]
