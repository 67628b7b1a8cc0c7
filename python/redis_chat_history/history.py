"""RedisChatMessageHistory: a LangChain chat history kept by the chathist library."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from . import _langchain as lc
from . import _protocol as protocol
from ._clients import async_client, default_url, redact_url, sync_client
from ._errors import InvalidInputError
from ._langchain import StoredMessage
from ._retry import DEFAULT_RETRY, RetryPolicy
from ._transport import AsyncTransport, SyncTransport

DEFAULT_KEY_PREFIX = protocol.DEFAULT_KEY_PREFIX
DEFAULT_INDEX_NAME = "idx:chat_history"


class RedisChatMessageHistory(BaseChatMessageHistory):
    """Chat message history of one session, stored in Redis by the chathist library.

    A drop-in for langchain-redis's class of the same name, on plain Redis 7+ with no
    modules. Construction makes no round trip, histories for one URL share a
    connection pool, and every operation is one atomic server-side call: reading a
    session, appending any number of messages (with the TTL refresh), searching,
    clearing. The library is loaded on first use when the server lacks it.

    Args:
        session_id: The conversation's id; any non-empty string.
        redis_url: Where Redis is; defaults to ``$REDIS_URL``, then ``redis://localhost:6379``.
            A Redis Cluster node's URL gives a cluster client; ``redis+sentinel://``
            a Sentinel-managed one.
        key_prefix: Prefix of the session's keys (no braces).
        ttl: Seconds of inactivity after which the whole session expires; each append
            renews it. None keeps the session until cleared.
        index_name: Accepted for compatibility with langchain-redis; search needs no
            separate index here.
        redis_client: A ready sync client (``redis.Redis`` or ``redis.cluster.RedisCluster``)
            to use instead of ``redis_url``.
        async_redis_client: A ready ``redis.asyncio`` client for the async methods.
        retry: How transient failures (connection lost, timeout, ``LOADING``, ``BUSY``,
            ``READONLY``) are retried: a :class:`RetryPolicy`, by default 3 retries with
            exponential backoff; None for a single attempt. Appends are safe to retry:
            each call carries a token, and the library stores a retried call's
            messages once.
        max_message_bytes: The largest stored-message JSON this history sends (at most,
            and by default, the library's 1 MiB); a larger message raises
            :class:`InvalidInputError` before anything is sent.
        search_index: Keep a token index of a new session so that search costs
            O(matches), not O(session). False saves memory and append time for apps that
            never search; search then scans the session.
        read_from_replicas: On Redis Cluster (from ``redis_url``), send reads to the
            replicas of the session's shard (they may lag the primary by a moment).
            A given cluster client reads where its ``load_balancing_strategy`` says.
        max_messages: Keep at most this many messages: each append removes the oldest
            beyond it in the same atomic call (search index and id map included).
        max_bytes: Keep the stored JSON of the session within this many bytes, removing
            the oldest messages in the append (the newest message always stays).
        refresh_ttl_on_read: Renew ``ttl`` on reads of messages too (``messages``,
            ``page``, ``latest``, search), not only on appends; the renewal rides in the
            same round trip. Needs ``ttl``.
        **kwargs: Options of the redis-py client made from ``redis_url`` (as
            langchain-redis passes them to ``Redis.from_url``): ``socket_timeout``,
            ``client_name``, ``ssl_ca_certs``... Histories with the same URL and options
            share one client. Ignored when ``redis_client`` is given.
    """

    def __init__(
        self,
        session_id: str,
        redis_url: str | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: int | None = None,
        index_name: str = DEFAULT_INDEX_NAME,
        redis_client: Any | None = None,
        *,
        async_redis_client: Any | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
        search_index: bool = True,
        read_from_replicas: bool = False,
        max_messages: int | None = None,
        max_bytes: int | None = None,
        refresh_ttl_on_read: bool = False,
        **kwargs: Any,
    ) -> None:
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0):
            raise InvalidInputError("ttl must be None or a non-negative integer of seconds")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidInputError("retry must be a RetryPolicy or None")
        if (
            not isinstance(max_message_bytes, int)
            or isinstance(max_message_bytes, bool)
            or not 1 <= max_message_bytes <= protocol.MAX_MESSAGE_BYTES
        ):
            raise InvalidInputError(
                f"max_message_bytes must be an integer from 1 to {protocol.MAX_MESSAGE_BYTES}"
            )
        self.retry = retry
        self.max_message_bytes = max_message_bytes
        self.max_messages = protocol.check_count(
            max_messages, "max_messages", 1, protocol.MAX_WINDOW_MESSAGES
        )
        self.max_bytes = protocol.check_count(max_bytes, "max_bytes", 1, protocol.MAX_WINDOW_BYTES)
        if refresh_ttl_on_read and not ttl:
            raise InvalidInputError("refresh_ttl_on_read needs a ttl to renew")
        self.refresh_ttl_on_read = bool(refresh_ttl_on_read)
        self.session_id = session_id
        self.key_prefix = key_prefix
        self.ttl = ttl
        self.index_name = index_name
        self.redis_url = redis_url or default_url()
        self._keys = protocol.session_keys(key_prefix, session_id)
        self._redis_client = redis_client
        self._async_redis_client = async_redis_client
        self.search_index = search_index
        self.read_from_replicas = read_from_replicas
        self.redis_options = kwargs

    def __repr__(self) -> str:
        return (
            f"RedisChatMessageHistory(session_id={self.session_id!r}, "
            f"redis_url={redact_url(self.redis_url)!r}, key_prefix={self.key_prefix!r}, "
            f"ttl={self.ttl!r})"
        )

    @property
    def keys(self) -> tuple[str, str, str]:
        """The session's Redis keys: messages stream, search index, client-id map."""
        return self._keys

    @property
    def redis_client(self) -> Any:
        """The sync client in use (shared per URL and options unless one was given)."""
        return self._redis_client or sync_client(
            self.redis_url, self.read_from_replicas, **self.redis_options
        )

    async def _async_transport(self) -> AsyncTransport | None:
        """The async transport; None when only a sync client was given (the URL may not
        lead to it), so calls run on that client in a thread."""
        if self._async_redis_client is None and self._redis_client is not None:
            return None
        client = self._async_redis_client or await async_client(
            self.redis_url, self.read_from_replicas, **self.redis_options
        )
        return AsyncTransport(client, self.retry)

    def _send(self, calls: list[protocol.Call]) -> Any:
        """Send one call, or several in one pipeline; the first call's reply."""
        transport = SyncTransport(self.redis_client, self.retry)
        return transport.run(calls[0]) if len(calls) == 1 else transport.run_all(calls)[0]

    async def _asend(self, calls: list[protocol.Call]) -> Any:
        """Async twin of :meth:`_send`."""
        transport = await self._async_transport()
        if transport is None:
            return await asyncio.to_thread(self._send, calls)
        if len(calls) == 1:
            return await transport.run(calls[0])
        return (await transport.run_all(calls))[0]

    def _refreshing(self, call: protocol.Call) -> list[protocol.Call]:
        """A read, followed by the TTL renewal when ``refresh_ttl_on_read`` asks for one."""
        if self.refresh_ttl_on_read and self.ttl:
            return [call, protocol.expire_call(self._keys, self.ttl)]
        return [call]

    def _run(self, call: protocol.Call) -> Any:
        return self._send([call])

    async def _arun(self, call: protocol.Call) -> Any:
        return await self._asend([call])

    def _read(self, call: protocol.Call) -> Any:
        """Send a read (and the TTL renewal with it, in one pipeline); its reply."""
        return self._send(self._refreshing(call))

    async def _aread(self, call: protocol.Call) -> Any:
        return await self._asend(self._refreshing(call))

    # -- reading ---------------------------------------------------------------

    def _follow(self, first: protocol.Call | None, feed: Any, next_call: Any) -> None:
        """Sends a series of bounded calls (a paged read or search): the first with the
        TTL renewal when ``refresh_ttl_on_read`` asks for one, the rest plainly."""
        call, reading = first, True
        while call is not None:
            feed(self._read(call) if reading else self._run(call))
            call, reading = next_call(), False

    async def _afollow(self, first: protocol.Call | None, feed: Any, next_call: Any) -> None:
        """Async twin of :meth:`_follow`."""
        call, reading = first, True
        while call is not None:
            feed(await self._aread(call) if reading else await self._arun(call))
            call, reading = next_call(), False

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first: pages of
        ``protocol.READ_PAGE`` messages, so no single call grows with the session."""
        reader = protocol.SessionReader(self._keys)
        self._follow(reader.next_call(), reader.feed, reader.next_call)
        return lc.decode_messages(reader.items)

    async def aget_messages(self) -> list[BaseMessage]:
        """Async twin of :attr:`messages`."""
        reader = protocol.SessionReader(self._keys)
        await self._afollow(reader.next_call(), reader.feed, reader.next_call)
        return lc.decode_messages(reader.items)

    def __bool__(self) -> bool:
        """Always true: a history object is a handle, whether or not it has messages yet."""
        return True

    def __len__(self) -> int:
        """The number of messages in the session."""
        return int(self._run(protocol.len_call(self._keys)))

    async def alen(self) -> int:
        """The number of messages in the session."""
        return int(await self._arun(protocol.len_call(self._keys)))

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        mode: str = "all",
        message_type: str | None = None,
        before: str | datetime | None = None,
    ) -> list[StoredMessage]:
        """Messages found by their words, with their ids and times.

        Words match case-insensitively (accents kept; Chinese, Japanese and Korean
        by character); "quoted words" must appear together. ``mode="all"`` (the
        default) gives the latest ``limit`` messages holding every word, oldest first;
        ``mode="any"`` those holding the most words, best first. ``message_type``
        keeps one type (``"human"``, ``"ai"``, ``"tool"``, ``"system"``); ``before``
        (an id or an aware datetime) pages to older matches: pass the oldest hit's id.

        Usually one call; a search that must judge many messages (common words that
        never meet, on a long session) takes several short ones, so that Redis serves
        its other clients in between, with the same answer.
        """
        pager = protocol.SearchPager(
            self._keys, query, limit, mode=mode, message_type=message_type, before=before
        )
        self._follow(pager.next_call(), pager.feed, pager.next_call)
        return lc.decode_stored(pager.reply())

    async def asearch(
        self,
        query: str,
        *,
        limit: int = 10,
        mode: str = "all",
        message_type: str | None = None,
        before: str | datetime | None = None,
    ) -> list[StoredMessage]:
        """Async twin of :meth:`search`."""
        pager = protocol.SearchPager(
            self._keys, query, limit, mode=mode, message_type=message_type, before=before
        )
        await self._afollow(pager.next_call(), pager.feed, pager.next_call)
        return lc.decode_stored(pager.reply())

    def search_messages(self, query: str, limit: int = 10, **options: Any) -> list[dict[str, Any]]:
        """:meth:`search` with hits as dicts (``id``, ``timestamp``, ``type``, ``content``,
        ``message``), the shape langchain-redis returns."""
        pager = protocol.SearchPager(self._keys, query, limit, **options)
        self._follow(pager.next_call(), pager.feed, pager.next_call)
        return lc.decode_search(pager.reply())

    async def asearch_messages(
        self, query: str, limit: int = 10, **options: Any
    ) -> list[dict[str, Any]]:
        """Async twin of :meth:`search_messages`."""
        pager = protocol.SearchPager(self._keys, query, limit, **options)
        await self._afollow(pager.next_call(), pager.feed, pager.next_call)
        return lc.decode_search(pager.reply())

    def reindex(self, progress: Callable[[protocol.ReindexProgress], None] | None = None) -> int:
        """Rebuild the session's search index (for sessions written without one), as a
        series of short calls (at most 512 messages each); ``progress`` is called after
        each. Searches stay exact meanwhile. Returns the number of messages indexed."""
        step = protocol.decode_reindex(self._run(protocol.reindex_call(self._keys, "RESTART")))
        while True:
            if progress:
                progress(step)
            if step.complete:
                return step.total
            reply = self._run(protocol.reindex_call(self._keys, "CONTINUE"))
            step = protocol.decode_reindex(reply)

    async def areindex(
        self, progress: Callable[[protocol.ReindexProgress], None] | None = None
    ) -> int:
        """Async twin of :meth:`reindex`."""
        reply = await self._arun(protocol.reindex_call(self._keys, "RESTART"))
        step = protocol.decode_reindex(reply)
        while True:
            if progress:
                progress(step)
            if step.complete:
                return step.total
            reply = await self._arun(protocol.reindex_call(self._keys, "CONTINUE"))
            step = protocol.decode_reindex(reply)

    # -- pages and ranges --------------------------------------------------------

    def page(
        self,
        limit: int | None = None,
        *,
        before: str | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredMessage]:
        """One page of the session, oldest first, each with its stream id and time.

        ``before`` / ``after`` are stream ids (``StoredMessage.id``), exclusive;
        ``since`` (inclusive) and ``until`` (exclusive) are timezone-aware datetimes.
        With ``limit`` and a lower bound (``after`` / ``since``): the first ``limit``
        messages after it, to page forward; otherwise the latest ``limit`` before the
        upper bound, to page back (pass the first record's id as ``before``). One call;
        the server reads only the page, never the whole session.
        """
        call = protocol.page_call(
            self._keys, limit, before=before, after=after, since=since, until=until
        )
        return lc.decode_stored(self._read(call))

    async def apage(
        self,
        limit: int | None = None,
        *,
        before: str | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredMessage]:
        """Async twin of :meth:`page`."""
        call = protocol.page_call(
            self._keys, limit, before=before, after=after, since=since, until=until
        )
        return lc.decode_stored(await self._aread(call))

    def latest(self, n: int, *, tool_safe: bool = False) -> list[StoredMessage]:
        """The latest ``n`` messages, oldest first, with their ids and times (one call).

        ``tool_safe=True`` reads the window to give a model: it never starts with tool
        results whose AI message falls outside it (they are left out; a window of tool
        results only reaches back to their AI message instead), so OpenAI and Anthropic
        accept it. It may then hold a few messages fewer, or more, than ``n``.
        """
        call = protocol.latest_call(self._keys, n, tool_safe=tool_safe)
        return lc.decode_stored(self._read(call))

    async def alatest(self, n: int, *, tool_safe: bool = False) -> list[StoredMessage]:
        """Async twin of :meth:`latest`."""
        call = protocol.latest_call(self._keys, n, tool_safe=tool_safe)
        return lc.decode_stored(await self._aread(call))

    # -- writing ---------------------------------------------------------------

    def _append_call(
        self, messages: Sequence[BaseMessage], *, if_last: str | None = None
    ) -> protocol.Call:
        """The append of ``messages`` under a fresh token (a retry of the call is stored
        once), checked against ``max_message_bytes``. A window never starts with tool
        results whose call it dropped. ``if_last``: only if the session's newest stream id
        is that one (``"0-0"``: empty), else :class:`ConflictError` and nothing written."""
        call = protocol.append_call(
            self._keys,
            lc.to_stored(messages),
            self.ttl,
            index=self.search_index,
            max_messages=self.max_messages,
            max_bytes=self.max_bytes,
            token=protocol.new_token(),
            if_last=if_last,
            tool_safe=self.max_messages is not None or self.max_bytes is not None,
        )
        protocol.check_message_sizes(call, self.max_message_bytes)
        return call

    def _write_calls(self, messages: Sequence[BaseMessage]) -> list[protocol.Call]:
        """The calls that apply ``messages`` in order: appends, and deletions for
        ``RemoveMessage`` items (by ``message.id``; ``REMOVE_ALL_MESSAGES`` clears)."""
        calls: list[protocol.Call] = []
        for removing, run in lc.split_removals(messages):
            if not removing:
                calls.append(self._append_call(run))
            elif any(message.id == lc.REMOVE_ALL_MESSAGES for message in run):
                calls.append(protocol.clear_call(self._keys))
            else:
                delete = protocol.delete_call(
                    self._keys, message_ids=[str(message.id) for message in run]
                )
                calls += [delete] if delete else []
        return calls

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` atomically in one call, renewing the session's TTL.

        The call carries a token, so a retry after a lost reply stores nothing twice
        (messages keep the ``id`` they have, or none). With ``max_messages`` /
        ``max_bytes``, the oldest messages beyond the window go in the same call, and an
        AI message's tool results go with it. A ``RemoveMessage(id=...)`` in the list
        deletes the stored message with that ``id`` (``REMOVE_ALL_MESSAGES`` every
        message), as LangGraph's ``add_messages`` does; the list is then applied in
        order, one atomic call per run of additions or removals.
        """
        for call in self._write_calls(messages):
            self._run(call)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async twin of :meth:`add_messages`."""
        for call in self._write_calls(messages):
            await self._arun(call)

    def add_message(self, message: BaseMessage) -> None:
        """Store one message (one call)."""
        self.add_messages([message])

    def clear(self) -> None:
        """Delete the session: its messages and every key it had."""
        self._run(protocol.clear_call(self._keys))

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self._arun(protocol.clear_call(self._keys))

    # -- deleting messages and TTL -----------------------------------------------

    def delete_messages(self, ids: Sequence[str] = (), *, message_ids: Sequence[str] = ()) -> int:
        """Delete messages by stream id (``StoredMessage.id``) or by LangChain ``message.id``.

        One atomic call, whatever the number (up to 10000); the search index and the
        id map are kept right, and unknown ids are ignored. Returns how many went.
        """
        call = protocol.delete_call(self._keys, ids, message_ids=message_ids)
        return int(self._run(call)) if call else 0

    async def adelete_messages(
        self, ids: Sequence[str] = (), *, message_ids: Sequence[str] = ()
    ) -> int:
        """Async twin of :meth:`delete_messages`."""
        call = protocol.delete_call(self._keys, ids, message_ids=message_ids)
        return int(await self._arun(call)) if call else 0

    def get_ttl(self) -> float | None:
        """Seconds until the session expires; None if it has no TTL or does not exist."""
        return protocol.decode_ttl(self._run(protocol.ttl_call(self._keys)))

    async def aget_ttl(self) -> float | None:
        """Async twin of :meth:`get_ttl`."""
        return protocol.decode_ttl(await self._arun(protocol.ttl_call(self._keys)))

    def set_ttl(self, seconds: int | None) -> bool:
        """Make the whole session expire in ``seconds`` from now, or never (None).

        Acts on the stored session now; the ``ttl`` option still renews it on each
        append. Returns whether the session exists.
        """
        return bool(self._run(protocol.expire_call(self._keys, seconds)))

    async def aset_ttl(self, seconds: int | None) -> bool:
        """Async twin of :meth:`set_ttl`."""
        return bool(await self._arun(protocol.expire_call(self._keys, seconds)))
