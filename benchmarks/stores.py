"""The chat-history stores compared, behind one small interface.

- ``ours`` / ``ours-noindex``: this package's :class:`RedisChatMessageHistory`, with the
  library's search index kept up to date on append, or appending with ``NOINDEX``
  (search falls back to a scan) when the library has the option (1.1.0+).
- ``langchain-community``: its ``RedisChatMessageHistory`` (a list, LPUSH + EXPIRE per
  message, a new client per history object), the design most LangChain apps use today.
- ``floor``: raw redis-py doing the least a store can do: one pipelined RPUSH + EXPIRE
  round trip to append, one LRANGE to read; JSON and LangChain conversion included,
  since every store pays for them.

Every store builds its history object per request (as ``RunnableWithMessageHistory``
does), fills sessions in bulk for the read workloads, and says which server commands
are its own (for commands per call and server time from INFO commandstats).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

import redis
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, messages_from_dict

from redis_chat_history import _langchain as lc
from redis_chat_history import _protocol as protocol
from redis_chat_history.history import RedisChatMessageHistory

from .corpus import Corpus, word_tokens

#: Commands a benchmark sends itself (stats, setup): never counted as a store's work.
HARNESS_COMMANDS = frozenset({"config|resetstat", "function|load", "memory|usage"})
_FILL_BATCH = 2000


def matches(message: BaseMessage, wanted: set[str]) -> bool:
    """Whether a message's text holds every query token (the client-side scan)."""
    return wanted <= set(word_tokens(str(message.content)))


def client_search(messages: list[BaseMessage], query: str, limit: int = 10) -> list[BaseMessage]:
    """The latest ``limit`` messages holding every token of ``query``, found in Python."""
    wanted = set(word_tokens(query))
    return [m for m in messages if matches(m, wanted)][-limit:]


class Store:
    """One chat-history design under test."""

    name = ""
    label = ""
    #: Top-level command names this store sends; None: every command not the harness's.
    own_commands: frozenset[str] | None = None

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.client = redis.Redis.from_url(url)

    def history(self, session: str) -> BaseChatMessageHistory:
        """A history object for ``session``, built the way an app builds one per request."""
        raise NotImplementedError

    def keys(self, session: str) -> list[str]:
        """Every Redis key the session occupies."""
        raise NotImplementedError

    def encoded(self, corpus: Corpus, count: int) -> list[bytes]:
        """The first ``count`` corpus messages as this store writes them."""
        return corpus.jsons(count, ids=False)

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        """Store ``jsons`` (from :meth:`encoded`, oldest first) in ``session``, in bulk."""
        raise NotImplementedError

    def latest(self, session: str, count: int) -> list[Any]:
        """The latest ``count`` messages of the session, oldest first."""
        raise NotImplementedError

    def search(self, session: str, query: str) -> list[Any]:
        """The latest 10 messages holding every word of ``query``."""
        return client_search(self.history(session).messages, query)

    def clear(self, session: str) -> None:
        """Delete the session."""
        self.client.delete(*self.keys(session))

    def counts(self, command: str) -> bool:
        """Whether ``command`` (a commandstats name) is this store's own work."""
        if command in HARNESS_COMMANDS:
            return False
        return self.own_commands is None or command in self.own_commands


class OursStore(Store):
    """redis-chat-history: one FCALL per read, one per append of any number of messages."""

    own_commands = frozenset({"fcall", "fcall_ro", "info", "client|setinfo", "hello"})

    def __init__(self, url: str, prefix: str, ttl: int, index: bool = True) -> None:
        super().__init__(url, prefix, ttl)
        self.index = index
        self.name = "ours" if index else "ours-noindex"
        self.label = "redis-chat-history" + ("" if index else " (NOINDEX)")

    def history(self, session: str) -> BaseChatMessageHistory:
        return RedisChatMessageHistory(
            session,
            redis_url=self.url,
            key_prefix=self.prefix,
            ttl=self.ttl,
            search_index=self.index,
        )

    def keys(self, session: str) -> list[str]:
        return list(protocol.session_keys(self.prefix, session))

    def encoded(self, corpus: Corpus, count: int) -> list[bytes]:
        # Every message gets an id (the package gives id-less messages a uuid4).
        return corpus.jsons(count, ids=True)

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        keys = self.keys(session)
        options: list[Any] = ["TTL", self.ttl] + ([] if self.index else ["NOINDEX"])
        for start in range(0, len(jsons), _FILL_BATCH):
            batch = jsons[start : start + _FILL_BATCH]
            self.client.fcall(protocol.APPEND, 3, *keys, *options, "MESSAGES", *batch)

    def latest(self, session: str, count: int) -> list[Any]:
        history = self.history(session)
        assert isinstance(history, RedisChatMessageHistory)
        return history.latest(count)

    def search(self, session: str, query: str) -> list[Any]:
        history = self.history(session)
        assert isinstance(history, RedisChatMessageHistory)
        return history.search_messages(query, limit=10)


class LangchainCommunityStore(Store):
    """langchain-community's RedisChatMessageHistory (list, LPUSH + EXPIRE per message)."""

    name = "langchain-community"
    label = "langchain-community RedisChatMessageHistory"

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        super().__init__(url, prefix, ttl)
        module = importlib.import_module("langchain_community.chat_message_histories.redis")
        self._class: Any = module.RedisChatMessageHistory

    def history(self, session: str) -> BaseChatMessageHistory:
        history: BaseChatMessageHistory = self._class(
            session, url=self.url, key_prefix=self.prefix, ttl=self.ttl
        )
        return history

    def keys(self, session: str) -> list[str]:
        return [self.prefix + session]

    def encoded(self, corpus: Corpus, count: int) -> list[bytes]:
        # Its own encoding: json.dumps with its defaults (ASCII escapes, spaces).
        return [json.dumps(json.loads(item)).encode() for item in corpus.jsons(count, ids=False)]

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        # Newest first, as LPUSH leaves them.
        key = self.keys(session)[0]
        for start in range(0, len(jsons), _FILL_BATCH):
            self.client.lpush(key, *jsons[start : start + _FILL_BATCH])
        self.client.expire(key, self.ttl)

    def latest(self, session: str, count: int) -> list[BaseMessage]:
        # Its API reads only the whole session: this is a raw LRANGE on its list.
        items = self.client.lrange(self.keys(session)[0], 0, count - 1)
        return messages_from_dict([json.loads(item) for item in reversed(items)])


class FloorHistory(BaseChatMessageHistory):
    """The least a Redis chat history can do: RPUSH + EXPIRE in one round trip, LRANGE to read."""

    def __init__(self, client: redis.Redis, key: str, ttl: int) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The whole session, oldest first."""
        return messages_from_dict(
            [json.loads(item) for item in self.client.lrange(self.key, 0, -1)]
        )

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.key, *[lc.encode_message(message) for message in messages])
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def clear(self) -> None:
        """Delete the session."""
        self.client.delete(self.key)


class FloorStore(Store):
    """Raw redis-py, one shared client: the physical limit of a store on this machine."""

    name = "floor"
    label = "floor (raw redis-py: pipelined RPUSH+EXPIRE, LRANGE)"

    def history(self, session: str) -> BaseChatMessageHistory:
        return FloorHistory(self.client, self.keys(session)[0], self.ttl)

    def keys(self, session: str) -> list[str]:
        return [self.prefix + session]

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        key = self.keys(session)[0]
        for start in range(0, len(jsons), _FILL_BATCH):
            self.client.rpush(key, *jsons[start : start + _FILL_BATCH])
        self.client.expire(key, self.ttl)

    def latest(self, session: str, count: int) -> list[BaseMessage]:
        items = self.client.lrange(self.keys(session)[0], -count, -1)
        return messages_from_dict([json.loads(item) for item in items])


class LangchainRedisStore(Store):
    """langchain-redis's RedisChatMessageHistory (RedisJSON documents, RediSearch index)."""

    name = "langchain-redis"
    label = "langchain-redis RedisChatMessageHistory"

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        super().__init__(url, prefix, ttl)
        module = importlib.import_module("langchain_redis")
        self._class: Any = module.RedisChatMessageHistory

    def history(self, session: str) -> BaseChatMessageHistory:
        history: BaseChatMessageHistory = self._class(
            session, redis_url=self.url, key_prefix=self.prefix, ttl=self.ttl
        )
        return history

    def keys(self, session: str) -> list[str]:
        return [key.decode() for key in self.client.scan_iter(match=f"{self.prefix}{session}:*")]

    def fill(self, session: str, jsons: Sequence[bytes]) -> None:
        self.history(session).add_messages(messages_from_dict([json.loads(j) for j in jsons]))

    def latest(self, session: str, count: int) -> list[BaseMessage]:
        messages: list[BaseMessage] = self.history(session).messages
        return messages[-count:]

    def search(self, session: str, query: str) -> list[Any]:
        found: list[Any] = self._class(
            session, redis_url=self.url, key_prefix=self.prefix
        ).search_messages(query, limit=10)
        return found

    def clear(self, session: str) -> None:
        self.history(session).clear()


def langchain_redis_unavailable(client: redis.Redis) -> str | None:
    """Why langchain-redis cannot run against this server, or None when it can."""
    try:
        modules = {entry[b"name"].decode().lower() for entry in client.module_list()}
    except redis.RedisError:
        modules = set()
    missing = [
        name
        for name, module in (("RediSearch 2", "search"), ("RedisJSON", "rejson"))
        if module not in modules
    ]
    if missing:
        return (
            f"langchain-redis not run: it needs {' and '.join(missing)}, which this server "
            "lacks (Debian's Redis 7 has neither); pass --url of a Redis Stack server to include it"
        )
    try:
        importlib.import_module("langchain_redis")
    except ImportError:
        return "langchain-redis not run: the server has its modules; `pip install langchain-redis`"
    return None


def langchain_community_unavailable() -> str | None:
    """Why langchain-community cannot be benchmarked here, or None when it can."""
    try:
        importlib.import_module("langchain_community.chat_message_histories.redis")
    except ImportError:
        return (
            "langchain-community not run: not installed "
            "(`pip install .[bench]`, or use scripts/bench which installs it)"
        )
    return None
