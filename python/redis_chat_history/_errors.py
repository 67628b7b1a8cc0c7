"""The package's exceptions: one base class and a few specific kinds.

Every message says what went wrong and what to do; none carries a password.
"""

from __future__ import annotations


class ChatHistoryError(Exception):
    """Base class of every error raised by redis-chat-history."""


class RedisUnavailableError(ChatHistoryError, ConnectionError):
    """No Redis answered at the configured address (down, unreachable, or timed out)."""


class LibraryError(ChatHistoryError):
    """The server's chathist library is missing and could not be loaded."""


class LibraryIncompatibleError(LibraryError):
    """The server runs a chathist library of another major version than this package."""


class InvalidInputError(ChatHistoryError, ValueError):
    """The library refused the call's arguments; nothing was written.

    ``code`` is the library's stable error code (``BADKEYS``, ``BADARG``, ``BADMSG``,
    ``TOOBIG``), for programs that switch on it.
    """

    def __init__(self, message: str, code: str = "BADARG") -> None:
        super().__init__(message)
        self.code = code


class ServerError(ChatHistoryError):
    """Redis replied with an error that is not about the call's input."""
