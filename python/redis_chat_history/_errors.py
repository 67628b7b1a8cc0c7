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


class ConflictError(InvalidInputError):
    """A conditional append (``IFLAST``) found another message at the session's end than
    the one it expected: another writer got there first. Nothing was written.

    ``last_id`` is the stream id of the session's newest message at that moment
    (``"0-0"``: the session is empty); read what came after the id you expected, then
    append again after ``last_id``.
    """

    def __init__(self, message: str, last_id: str | None = None) -> None:
        super().__init__(message, "CONFLICT")
        self.last_id = last_id


class ServerError(ChatHistoryError):
    """Redis replied with an error that is not about the call's input."""


class RedisTimeoutError(RedisUnavailableError):
    """Redis did not answer in time (slow or stalled); a write may or may not have happened.

    Retrying the same messages is safe: each carries an id, stored at most once.
    """


class ServerBusyError(ServerError):
    """Redis could not serve the call now: loading its data (``LOADING``) or running a
    long script or function (``BUSY``). Transient: retried by the retry policy."""


class ReadOnlyReplicaError(ServerError):
    """Redis is a read-only replica (``READONLY``), as an old primary is after a failover."""


class ServerOutOfMemoryError(ServerError):
    """Redis is over its ``maxmemory`` and refuses writes (``OOM``); nothing was written."""


class PermissionDeniedError(ServerError):
    """The Redis user's ACL does not allow the call (``NOPERM``): a key outside its key
    pattern, or a command it may not run."""


class UnreadableMessageError(ChatHistoryError, ValueError):
    """A stored message is not JSON that this package can read (another client stored it,
    bypassing the checks a strict JSON parser would make). ``stream_id`` names it."""

    def __init__(self, message: str, stream_id: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
