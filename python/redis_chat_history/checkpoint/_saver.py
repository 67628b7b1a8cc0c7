"""RedisChatSaver: LangGraph checkpoints kept by the chathist library (1.4).

Every operation is a plan: a generator that yields protocol calls and receives their
replies. The sync methods run plans on a sync transport, the async ones on an async
transport, so no method body is written twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Generator, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from langchain_core.messages import BaseMessage, messages_from_dict
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from .. import _checkpoint_protocol as cp
from .. import _langchain as lc
from .._clients import async_client, default_url, sync_client
from .._errors import InvalidInputError
from .._protocol import DEFAULT_KEY_PREFIX, Call, as_text, range_call
from .._retry import DEFAULT_RETRY, RetryPolicy
from .._transport import AsyncTransport, SyncTransport
from . import _payload, _shapes
from ._ordering import ThreadLocks

Plan = Generator[Call | list[Call], Any, Any]
#: A checkpoint's lists of messages: by channel, each message's (stream id, digest, run).
View = dict[str, list[tuple[str, bytes, str]]]
#: Lists of message views remembered per checkpoint, so a put sends only new messages.
VIEWS_KEPT = 512
#: Channel values of at most this many serialized bytes are kept in the record that
#: holds their version (each record holds them again while the version stands); larger
#: ones are stored once per version as a value of their own, which a record names.
#: An agent's small channels (branch flags, pending sends) change at nearly every step,
#: and a value of its own costs a hash field (name and overhead) besides its bytes.
INLINE_BYTES = 128
COPY_PAGE = 500
#: Checkpoints one drop call names (the library takes up to ``cp.MAX_FIELDS``): each costs
#: the server a record, an order-set page and the record after it (to write its parent's
#: id into it), up to about 100 µs, so a call of 100 stays near 10 ms at worst.
DROP_PAGE = 100
_TAG = re.compile(rb"\{([^{}]+)\}:k$")


def _typed(serde: Any, value: Any) -> bytes:
    kind, data = serde.dumps_typed(value)
    return bytes(kind.encode() + b"\0" + data)


def _untyped(serde: Any, raw: bytes) -> Any:
    """A value from its serialized bytes, deflated (``_payload.pack``) or not."""
    kind, _, data = _payload.unpack(raw).partition(b"\0")
    return serde.loads_typed((kind.decode(), data))


def _body(serde: Any, record: cp.Record) -> dict[str, Any]:
    """The body a record's payload holds: ``c`` the checkpoint (see :func:`_compact`),
    ``m`` its metadata, ``p`` its parent's id (in the header's ``P`` line since 1.5, unless
    too long for it), ``v`` the channel values it holds itself (serialized, by channel)."""
    body: dict[str, Any] = _untyped(serde, _payload.unpack(record.payload))
    if record.parent is not None:
        body["p"] = record.parent
    return body


def _blob_tag(version: str | int | float, typed: bytes) -> str:
    """What a record's ``B`` line and the value's field name a stored channel value by: its
    version, and the start of its bytes' SHA-1. Versions are a counter alone (since 1.7 of
    the library): two branches of a thread may give a channel the same version, and the
    SHA-1 keeps their values apart (the same value is stored once): 64 bits of it, so that
    even a thousand branches at one version have odds of about 1e-13 that two values share
    a name (one would replace the other)."""
    return f"{version}:{hashlib.sha1(typed).hexdigest()[:16]}"


def _blob_version(tag: str | None) -> str | None:
    """The channel version a ``B`` line names (a line of a version alone: that version)."""
    return tag.rpartition(":")[0] if tag is not None and ":" in tag else tag


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _timestamp_micros(ts: Any) -> int | None:
    """A checkpoint's ``ts`` as microseconds since the epoch, if that number gives back
    the very text (LangGraph's UTC ``isoformat()``); else None."""
    if not isinstance(ts, str):
        return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    micros = (moment - _EPOCH) // _MICROSECOND
    return micros if _timestamp_text(micros) == ts else None


def _timestamp_text(micros: int) -> str:
    return (_EPOCH + micros * _MICROSECOND).isoformat()


def _compact(body: dict[str, Any], blobs: dict[str, str]) -> dict[str, Any]:
    """A checkpoint without what its record's header already says: its id (the record's
    name) and the versions of the channels stored as values (their ``B`` lines), left as
    None in ``channel_versions`` so that the names and their order stay; and its ``ts`` as
    a number (``t``, microseconds) when that gives back the same text. About 100 bytes of
    a 490-byte record in an agent's conversation."""
    versions = {
        name: None
        if isinstance(version, str) and _blob_version(blobs.get(name)) == version
        else version
        for name, version in body["channel_versions"].items()
    }
    compact = {key: value for key, value in body.items() if key != "id"}
    compact["channel_versions"] = versions
    micros = _timestamp_micros(body.get("ts"))
    if micros is not None and "t" not in body:
        del compact["ts"]
        compact["t"] = micros
    return compact


def _expanded(stored: dict[str, Any], blobs: dict[str, str], checkpoint_id: str) -> dict[str, Any]:
    """The checkpoint :func:`_compact` stored (a record written in full reads as it is)."""
    checkpoint = dict(stored)
    checkpoint.setdefault("id", checkpoint_id)
    if "ts" not in checkpoint and isinstance(checkpoint.get("t"), int):
        checkpoint["ts"] = _timestamp_text(checkpoint.pop("t"))
    checkpoint["channel_versions"] = {
        name: _blob_version(blobs[name]) if version is None else version
        for name, version in stored["channel_versions"].items()
    }
    return checkpoint


def _message_list(value: Any) -> list[bytes] | None:
    """The stored-message JSON of each item if ``value`` is a non-empty list of LangChain
    messages that survive the round trip through stored-message JSON; else None."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, BaseMessage) for item in value):
        return None
    return [lc.encode_message(item) for item in value]


def _message_key(json_bytes: bytes) -> bytes:
    """The digest a message is known by: of its canonical JSON, so that a message stored
    whole (before 1.6, or a subclass) and its compact form are the same message."""
    return cp.digest(lc.canonical_json(json_bytes))


def _messages(jsons: Sequence[bytes]) -> list[BaseMessage]:
    return messages_from_dict([json.loads(item) for item in jsons])


class Written(NamedTuple):
    """A pending write the next put may settle: a list of messages (``digests`` of their
    JSON), or a value that can be shaped (``shape``, whose digests are its texts')."""

    task_id: str
    write_index: int
    value_sha1: str
    digests: list[bytes]
    first: int
    shape: _shapes.Shape | None = None


def _evict(table: OrderedDict[Any, Any], key: Any) -> None:
    """Marks key as a per-checkpoint table's newest entry and keeps the VIEWS_KEPT newest."""
    table.move_to_end(key)
    while len(table) > VIEWS_KEPT:
        table.popitem(last=False)


def _within_budget(
    settles: list[cp.Settle], shapes: list[cp.BlobShape], room: int
) -> tuple[list[cp.Settle], list[cp.BlobShape]]:
    """The SETTLEs and SHAPEs a put sends: as many as the library's budgets take (the run
    segments its record leaves, and MAX_FIELDS of them), in order. Each only saves memory:
    one left out keeps its value."""
    kept_settles: list[cp.Settle] = []
    kept_shapes: list[cp.BlobShape] = []
    items: list[cp.Settle | cp.BlobShape] = [*settles, *shapes]
    for item in items:
        cost = cp.segments([item.runs])
        if cost <= room and len(kept_settles) + len(kept_shapes) < cp.MAX_FIELDS:
            if isinstance(item, cp.Settle):
                kept_settles.append(item)
            else:
                kept_shapes.append(item)
            room -= cost
    return kept_settles, kept_shapes


def _long_texts(
    values: Mapping[str, Any], plans: Mapping[str, cp.ListPlan], new_only: bool = False
) -> Iterator[tuple[bytes, str]]:
    """The messages of a put's lists whose content is a long text, newest first: (digest of
    the content, its ``#k`` if the put stores it, else its stream id); ``new_only``: only
    those the put stores. Work: the lists, a digest per long text looked at."""
    for name, plan in plans.items():
        for message, ident in zip(reversed(values[name]), reversed(plan.ids), strict=True):
            content = message.content
            if new_only and not ident.startswith("#"):
                continue
            if isinstance(content, str) and _shapes.long_text(content):
                yield _shapes.text_digest(content), ident


def _texts_known(values: Mapping[str, Any], plans: Mapping[str, cp.ListPlan]) -> dict[bytes, str]:
    """The messages of a put that a shaped value may name: the digest of each long text
    content -> its ``#k`` (stored by the put) or stream id, the newest holding it (the one
    a window trims last)."""
    known: dict[bytes, str] = {}
    for digest, ident in _long_texts(values, plans):
        known.setdefault(digest, ident)
    return known


def _new_texts(
    values: Mapping[str, Any], plans: Mapping[str, cp.ListPlan], stored: Sequence[str]
) -> list[tuple[bytes, str]]:
    """The long texts of the messages a put stored: (digest of the content, stream id)."""
    return [
        (digest, stored[int(ident[1:]) - 1])
        for digest, ident in _long_texts(values, plans, new_only=True)
    ]


class RedisChatSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer on plain Redis 7+ (no modules), sync and async in one object.

    A thread's checkpoints live beside its chat session, under the same hash tag: the
    messages of a ``messages`` channel (any channel whose value is a list of LangChain
    messages) are stored once, in the session's stream, and a checkpoint keeps runs of
    stream ids. ``RedisChatMessageHistory(thread_id)``, the CLI and other languages read
    the conversation as a chat history. Other channels are stored once per version,
    serialized by ``serde``. Each put and put_writes is one atomic FCALL.

    Args:
        redis_url: Where Redis is; defaults to ``$REDIS_URL``, then ``redis://localhost:6379``.
        key_prefix: Prefix of every key (the chat sessions' prefix, ``chat:`` by default).
        ttl: Seconds of inactivity after which a thread expires; every write renews it.
        search_index: Keep a search index of a new thread's messages (as
            ``RedisChatMessageHistory``'s ``search_index``): without one a thread takes less
            memory (the index keeps its newest messages' stream ids until it folds them in)
            and is searched by a scan.
        refresh_ttl_on_read: Renew ``ttl`` on reads too (get_tuple, list).
        redis_client: A ready sync client to use instead of ``redis_url``.
        async_redis_client: A ready ``redis.asyncio`` client for the async methods.
        serde: The serializer of channel values, writes and metadata
            (LangGraph's ``JsonPlusSerializer`` by default).
        retry: How transient failures are retried (a :class:`RetryPolicy`, None for none).
        **kwargs: Options of the redis-py client made from ``redis_url``.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: int | None = None,
        search_index: bool = True,
        refresh_ttl_on_read: bool = False,
        redis_client: Any | None = None,
        async_redis_client: Any | None = None,
        serde: Any | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        **kwargs: Any,
    ) -> None:
        super().__init__(serde=serde)
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
            raise InvalidInputError("ttl must be None or a positive integer of seconds")
        if refresh_ttl_on_read and not ttl:
            raise InvalidInputError("refresh_ttl_on_read needs a ttl to renew")
        cp.thread_keys(key_prefix, "check")  # refuses a prefix with braces now
        self.redis_url = redis_url or default_url()
        self.key_prefix = key_prefix
        self.ttl = ttl
        self.search_index = search_index
        self.refresh_ttl_on_read = refresh_ttl_on_read
        self.retry = retry
        self.redis_options = kwargs
        self._redis_client = redis_client
        self._async_redis_client = async_redis_client
        #: Per checkpoint: its message view and the values its record names (channel ->
        #: version), so that a put of its child sends only what is new.
        self._views: OrderedDict[tuple[str, str, str], tuple[View, dict[str, str]]]
        self._views = OrderedDict()
        #: Writes whose value is a list of messages or can be shaped, per checkpoint, so
        #: that the next put can settle them.
        self._written: OrderedDict[tuple[str, str, str], list[Written]] = OrderedDict()
        #: Channel values a put stored that can be shaped, per checkpoint: (field, shape).
        self._shapes: OrderedDict[tuple[str, str, str], list[tuple[bytes, _shapes.Shape]]]
        self._shapes = OrderedDict()
        #: The long texts a put stored as new messages, per parent checkpoint: (digest,
        #: stream id). The parent's writes may be saved after that put (LangGraph runs
        #: both on background workers); a write holding those texts is then stored
        #: shaped at once (SHAPED) instead of waiting for a put that already ran.
        self._late: OrderedDict[tuple[str, str, str], list[tuple[bytes, str]]] = OrderedDict()
        self._lock = threading.Lock()
        #: A thread's puts and put_writes run one at a time (see ``_ordering``).
        self._order = ThreadLocks()
        self.writes_in_session = False

    def __repr__(self) -> str:
        return f"RedisChatSaver(key_prefix={self.key_prefix!r}, ttl={self.ttl!r})"

    # -- running plans -------------------------------------------------------------------

    @property
    def redis_client(self) -> Any:
        """The sync client in use (shared per URL and options unless one was given)."""
        return self._redis_client or sync_client(self.redis_url, **self.redis_options)

    def _drive(self, plan: Plan) -> Any:
        transport = SyncTransport(self.redis_client, self.retry)
        try:
            work = next(plan)
            while True:
                reply = transport.run_all(work) if isinstance(work, list) else transport.run(work)
                work = plan.send(reply)
        except StopIteration as done:
            return done.value

    @property
    def _async_on_threads(self) -> bool:
        """True when the async methods run the sync client on threads (only a sync client
        was given)."""
        return self._async_redis_client is None and self._redis_client is not None

    async def _adrive(self, plan: Plan) -> Any:
        if self._async_on_threads:
            return await asyncio.to_thread(self._drive, plan)
        client = self._async_redis_client or await async_client(
            self.redis_url, **self.redis_options
        )
        transport = AsyncTransport(client, self.retry)
        try:
            work = next(plan)
            while True:
                if isinstance(work, list):
                    reply = await transport.run_all(work)
                else:
                    reply = await transport.run(work)
                work = plan.send(reply)
        except StopIteration as done:
            return done.value

    def _drive_in_order(self, config: RunnableConfig, plan: Plan) -> Any:
        """Runs a put or put_writes plan while no other of its thread runs here."""
        with self._order.sync(str(config["configurable"]["thread_id"])):
            return self._drive(plan)

    async def _adrive_in_order(self, config: RunnableConfig, plan: Plan) -> Any:
        """Async twin of :meth:`_drive_in_order`."""
        if self._async_on_threads:
            return await asyncio.to_thread(self._drive_in_order, config, plan)
        async with self._order.in_loop(str(config["configurable"]["thread_id"])):
            return await self._adrive(plan)

    def _complete(self, keys: cp.Keys, raw: cp.RawCheckpoint) -> Plan:
        """Reads what a get or list reply left for later (bounded calls of chathist_cp_more)."""
        while (call := cp.pending_call(keys, raw)) is not None:
            cp.apply_more(raw, (yield call))

    def _read(self, keys: cp.Keys, call: Call) -> Plan:
        """A read, with the TTL renewal in the same round trip when asked for."""
        if self.refresh_ttl_on_read and self.ttl:
            replies = yield [call, cp.touch_call(keys, self.ttl)]
            return replies[0]
        return (yield call)

    # -- message views -------------------------------------------------------------------

    def _remember(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        view: View,
        blobs: dict[str, str],
    ) -> None:
        key = (thread_id, ns, checkpoint_id)
        with self._lock:
            self._views[key] = (view, blobs)
            _evict(self._views, key)

    def _keep(self, table: OrderedDict[Any, list[Any]], key: Any, items: list[Any]) -> None:
        """Adds items to a per-checkpoint table of the saver, the latest VIEWS_KEPT kept."""
        with self._lock:
            table.setdefault(key, []).extend(items)
            _evict(table, key)

    def _settles(
        self,
        thread_id: str,
        ns: str,
        parent: str,
        plans: dict[str, cp.ListPlan],
        values: Mapping[str, Any],
    ) -> tuple[list[cp.Settle], list[cp.BlobShape]]:
        """The parent's writes of message lists that this put stores whole: the library
        replaces their values by runs of the stored entries (each message kept once); and
        the parent's writes and values whose long texts are this put's messages' (shaped)."""
        with self._lock:
            written = self._written.pop((thread_id, ns, parent), [])
            stored = self._shapes.pop((thread_id, ns, parent), [])
        if not written and not stored:
            return [], []
        new: dict[bytes, str] = {}
        for plan in plans.values():
            for ident, key in zip(plan.ids, plan.digests, strict=True):
                if ident.startswith("#"):
                    new.setdefault(key, ident)
        # the digests of the put's long texts, made only if a write or value is shaped
        texts = (
            _texts_known(values, plans)
            if stored or any(item.shape is not None for item in written)
            else {}
        )
        settles = []
        for item in written:
            runs: str | None
            if item.shape is not None:
                runs = _shapes.refs_for(item.shape, texts)
            elif all(key in new for key in item.digests):
                runs = " ".join(f"{new[key]}..{new[key]}" for key in item.digests)
            else:
                runs = None
            if runs:
                settles.append(
                    cp.Settle(
                        cp.member(ns, parent),
                        item.task_id,
                        item.write_index,
                        item.value_sha1,
                        runs,
                        item.first,
                        item.shape.template if item.shape else None,
                    )
                )
        shapes = []
        for field, shape in stored:
            runs = _shapes.refs_for(shape, texts)
            if runs:
                shapes.append(cp.BlobShape(field, shape.value_sha1, runs, shape.template))
        return settles, shapes

    def _shape(self, value: Any, typed: bytes) -> _shapes.Shape | None:
        """The shape of a value serialized as ``typed``, if it holds long texts."""
        if len(typed) < _shapes.SHAPE_MIN_BYTES:
            return None
        return _shapes.make_shape(
            value,
            typed,
            lambda item: _payload.pack(_typed(self.serde, item)),  # a template, deflated
            lambda raw: _untyped(self.serde, raw),
        )

    def _filled(self, raw: cp.RawCheckpoint, value: bytes) -> Any:
        """A stored value read: a shaped one with its texts filled in from the session."""
        shaped = cp.shaped(value)
        if shaped is None:
            return _untyped(self.serde, value)
        runs, template = shaped
        texts: list[str | None] = []
        for run in runs:
            found = [json_bytes for _, json_bytes in raw.entries.run(run)]
            content = json.loads(found[0]).get("data", {}).get("content") if found else None
            texts.append(content if isinstance(content, str) else None)
        return _shapes.fill(_untyped(self.serde, template), texts)

    def _view_of(self, raw: cp.RawCheckpoint) -> View:
        view = {}
        for channel, runs in raw.record.runs.items():
            view[channel] = [
                (stream_id, _message_key(json_bytes), f"{channel}:{run}")
                for stream_id, json_bytes, run in cp.view_of(runs, raw.entries)
            ]
        return view

    # -- decoding ------------------------------------------------------------------------

    def _values(
        self, raw: cp.RawCheckpoint, body: dict[str, Any], channels: Collection[str] | None = None
    ) -> dict[str, Any]:
        """The channel values of a checkpoint read whole (or of ``channels`` only, a set,
        for a read that asked for those alone)."""
        values: dict[str, Any] = {
            channel: _untyped(self.serde, blob)
            for channel, blob in body.get("v", {}).items()
            if channels is None or channel in channels
        }
        for channel, blob in raw.blobs.items():
            if not blob.startswith(b"empty\0") and (channels is None or channel in channels):
                values[channel] = self._filled(raw, blob)
        for channel, runs in raw.record.runs.items():
            if channels is None or channel in channels:
                values[channel] = _messages([item[1] for item in cp.view_of(runs, raw.entries)])
        return values

    def _pending(
        self, raw: cp.RawCheckpoint, channels: Collection[str] | None = None
    ) -> list[PendingWrite]:
        """A checkpoint's pending writes in ``writes_sort_key`` order (of ``channels`` only)."""
        writes = sorted(
            cp.resolve_writes(raw.writes),
            key=lambda w: writes_sort_key(w.task_path, w.task_id, w.index),
        )
        pending: list[PendingWrite] = []
        for write in writes:
            if channels is not None and write.channel not in channels:
                continue
            if write.value.startswith(cp.REFS_MARK):
                runs = write.value[2:].decode()
                value: Any = _messages([item[1] for item in cp.view_of(runs, raw.entries)])
            else:
                value = self._filled(raw, write.value)
            pending.append((write.task_id, write.channel, value))
        return pending

    def _tuple(
        self, thread_id: str, raw: cp.RawCheckpoint, body: dict[str, Any] | None = None
    ) -> CheckpointTuple:
        """The checkpoint tuple of a complete read (``body``: its record's, if decoded)."""
        body = body if body is not None else _body(self.serde, raw.record)
        checkpoint = _expanded(body["c"], raw.record.blobs, raw.checkpoint_id)
        checkpoint["channel_values"] = self._values(raw, body)
        pending = self._pending(raw)
        parent = body.get("p")
        ns = raw.checkpoint_ns
        self._remember(thread_id, ns, raw.checkpoint_id, self._view_of(raw), raw.record.blobs)
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": raw.checkpoint_id,
                }
            },
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=body["m"],
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            ),
            pending_writes=pending,
        )

    # -- plans ---------------------------------------------------------------------------

    def _get_plan(self, config: RunnableConfig) -> Plan:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        keys = cp.thread_keys(self.key_prefix, thread_id)
        ns = configurable.get("checkpoint_ns", "")
        reply = yield from self._read(keys, cp.get_call(keys, ns, get_checkpoint_id(config)))
        raw = cp.decode_checkpoint(reply)
        if raw is None:
            return None
        yield from self._complete(keys, raw)
        return self._tuple(thread_id, raw)

    def _list_plan(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Generator[Call | list[Call], Any, list[CheckpointTuple]]:
        if config is None:
            raise InvalidInputError("list needs a config with a thread_id")
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        keys = cp.thread_keys(self.key_prefix, thread_id)
        ns = configurable.get("checkpoint_ns")
        cursor = None
        if before is not None and get_checkpoint_id(before):
            before_ns = before["configurable"].get("checkpoint_ns", ns or "")
            cursor = cp.member(before_ns, str(get_checkpoint_id(before)))
        found: list[CheckpointTuple] = []
        while limit is None or len(found) < limit:
            wanted = cp.LIST_PAGE if filter or limit is None else limit - len(found)
            reply = yield from self._read(keys, cp.list_call(keys, ns, cursor, wanted))
            cursor, page = cp.decode_page(reply)
            for raw in page:
                body = _body(self.serde, raw.record)
                if filter and any(body["m"].get(k) != v for k, v in filter.items()):
                    continue
                yield from self._complete(keys, raw)
                found.append(self._tuple(thread_id, raw, body))
                if limit is not None and len(found) >= limit:
                    break
            if cursor is None:
                break
        return found

    def _put_plan(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Plan:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        parent = configurable.get("checkpoint_id")
        keys = cp.thread_keys(self.key_prefix, thread_id)
        body: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = body.pop("channel_values")
        lists = {name: jsons for name, value in values.items() if (jsons := _message_list(value))}
        known: dict[bytes, list[tuple[str, str, int]]] = {}
        view: View = {}
        parent_blobs: dict[str, str] = {}
        if parent:
            cached = self._views.get((thread_id, ns, parent))
            if cached is not None:
                view, parent_blobs = cached
            elif lists:
                reply = yield cp.get_call(keys, ns, parent)
                raw = cp.decode_checkpoint(reply)
                if raw is not None:
                    yield from self._complete(keys, raw)
                    view, parent_blobs = self._view_of(raw), raw.record.blobs
        if lists:
            for items in view.values():
                for position, (stream_id, key, run) in enumerate(items):
                    known.setdefault(key, []).append((stream_id, run, position))
        # the parent's id in the header lets the library walk a chain (cp_chain)
        linkable = parent and len(str(parent).encode()) <= 64 and not re.search(r"[\t\n\0]", parent)
        record = cp.Record(parent=parent if linkable else None)
        messages: list[bytes] = []
        plans: dict[str, cp.ListPlan] = {}
        for name, jsons in lists.items():
            keys_of = [_message_key(item) for item in jsons]
            plan = cp.plan_list(jsons, known, len(messages) + 1, keys_of)  # type: ignore[arg-type]
            plans[name] = plan
            record.runs[name] = plan.runs
            messages += plan.new
        inline: dict[str, bytes] = {}
        blobs: list[tuple[bytes, bytes]] = []
        shaped: list[tuple[bytes, _shapes.Shape]] = []
        for name, version in body["channel_versions"].items():
            if name in lists:
                continue
            if name not in new_versions and _blob_version(parent_blobs.get(name)) == str(version):
                # stored by an ancestor, named by the parent
                record.blobs[name] = parent_blobs[name]
            elif name in values:
                typed = _typed(self.serde, values[name])
                if len(typed) <= INLINE_BYTES:
                    inline[name] = typed
                else:
                    record.blobs[name] = _blob_tag(version, typed)
                    field = cp.blob_field(ns, name, record.blobs[name])
                    if (shape := self._shape(values[name], typed)) is not None:
                        blobs.append((field, typed))  # kept as sent, to be shaped
                        shaped.append((field, shape))
                    else:
                        blobs.append((field, _payload.pack(typed)))
        if plans and cp.segments(plan.runs for plan in plans.values()) > cp.segments_allowed(
            len(messages)
        ):
            # Runs too fragmented for one call to resolve (many edits or removals in a long
            # list): the lists are stored as values this time; their new messages still go
            # to the session.
            for name in plans:
                typed = _typed(self.serde, values[name])
                del record.runs[name]
                record.blobs[name] = _blob_tag(body["channel_versions"][name], typed)
                blobs.append((cp.blob_field(ns, name, record.blobs[name]), typed))
            plans = {}
        stored_body: dict[str, Any] = {
            "c": _compact(body, record.blobs),
            "m": get_checkpoint_metadata(config, metadata),
        }
        if record.parent is None:
            stored_body["p"] = parent  # None, or an id the header cannot hold
        if inline:
            # (no "V" lines: a chain walk stops at the values the header names, and the
            # client at these; saving 30 bytes a record is worth the walk's detour)
            stored_body["v"] = inline
        record.payload = _payload.pack(_typed(self.serde, stored_body))
        settles, shapes = (
            self._settles(thread_id, ns, parent, plans, values) if parent and plans else ([], [])
        )
        settles, shapes = _within_budget(
            settles, shapes, cp.segments_allowed(len(messages)) - cp.segments(record.runs.values())
        )
        if shaped:  # before the call: a put of the next checkpoint may run meanwhile
            self._keep(self._shapes, (thread_id, ns, checkpoint["id"]), shaped)
        reply = yield cp.put_call(
            keys,
            cp.member(ns, checkpoint["id"]),
            record.encode(),
            blobs,
            messages,
            self.ttl,
            settles,
            noindex=not self.search_index,
            shapes=shapes,
            in_record=True,
        )
        stored = [as_text(item) for item in reply[1:]]
        stored_record = cp.Record.decode(
            reply[0] if isinstance(reply[0], bytes) else reply[0].encode()
        )
        stored_view: View = {}
        for channel, plan in plans.items():
            ids = [stored[int(i[1:]) - 1] if i.startswith("#") else i for i in plan.ids]
            numbers = cp.numbered(ids, stored_record.runs[channel])
            stored_view[channel] = [
                (stream_id, key, f"{channel}:{number}")
                for stream_id, key, number in zip(ids, plan.digests, numbers, strict=True)
            ]
        self._remember(thread_id, ns, checkpoint["id"], stored_view, stored_record.blobs)
        if parent and plans:
            late = _new_texts(values, plans, stored)
            if late:
                self._keep(self._late, (thread_id, ns, parent), late)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _writes_plan(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Plan:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        keys = cp.thread_keys(self.key_prefix, thread_id)
        name = cp.member(configurable.get("checkpoint_ns", ""), str(configurable["checkpoint_id"]))
        encoded: list[tuple[str, int, str, str, bytes]] = []
        messages: list[bytes] = []
        lists: list[Written] = []
        # the library names a call's group by its first write's index (a group it splits,
        # or whose first write was stored before, is named otherwise: SETTLE then misses
        # the write, which keeps its value; memory, never correctness)
        first_index = WRITES_IDX_MAP.get(writes[0][0], 0) if writes else 0
        known: list[bytes] = []
        if_known: list[tuple[int, int, int]] = []
        shaped: list[tuple[int, str, bytes]] = []
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = str(configurable["checkpoint_id"])
        with self._lock:
            late = dict(self._late.get((thread_id, ns, checkpoint_id), []))
        for idx, (channel, value) in enumerate(writes):
            # A write of messages is not stored in the session here: LangGraph may save
            # a step's writes before the checkpoint they belong to, and the session must
            # hold messages in the conversation's order. Each message is kept once all the
            # same: if the session holds them already (the next checkpoint was saved
            # first), the write keeps runs of their entries (IFKNOWN); else it keeps its
            # value until the next put that stores them settles it (SETTLE). The library
            # also takes message runs here (REFS_MARK), for clients that can promise the
            # order (writes_in_session).
            jsons = _message_list(value)
            with_ids = bool(jsons) and all(item.id for item in value)
            if jsons and with_ids and self.writes_in_session:
                first = len(messages) + 1
                messages += jsons
                data = cp.REFS_MARK + f"#{first}..#{len(messages)}".encode()
            else:
                data = _typed(self.serde, value)
                index = WRITES_IDX_MAP.get(channel, idx)
                if jsons and with_ids and not self.writes_in_session:
                    digests = [_message_key(item) for item in jsons]
                    sha1 = hashlib.sha1(data).hexdigest()
                    lists.append(Written(task_id, index, sha1, digests, first_index))
                    if_known.append((len(encoded) + 1, len(known) + 1, len(known) + len(jsons)))
                    known += jsons
                elif (shape := self._shape(value, data)) is not None:
                    # a value holding messages' texts (the caller's input as dicts): shaped
                    # now if the next put stored those messages already, else by that put
                    runs = _shapes.refs_for(shape, late) if late else None
                    if runs:
                        shaped.append((len(encoded) + 1, runs, shape.template))
                    else:
                        lists.append(
                            Written(task_id, index, shape.value_sha1, [], first_index, shape)
                        )
                elif not jsons:
                    data = _payload.pack(data)  # deflated when that is shorter
            encoded.append((task_id, WRITES_IDX_MAP.get(channel, idx), task_path, channel, data))
        if lists:  # before the call: a put of the next checkpoint may run meanwhile
            self._keep(self._written, (thread_id, ns, checkpoint_id), lists)
        yield cp.writes_call(
            keys,
            name,
            encoded,
            messages,
            self.ttl,
            known,
            if_known,
            noindex=not self.search_index,
            in_record=True,
            shaped=shaped,
        )

    def _copy_plan(self, source: str, target: str) -> Plan:
        source_keys = cp.thread_keys(self.key_prefix, source)
        target_keys = cp.thread_keys(self.key_prefix, target)
        after = "0-0"
        while True:  # the session's messages first, under their stream ids
            reply = yield range_call(source_keys[:3], count=COPY_PAGE, after=after)
            entries = [(as_text(reply[i]), reply[i + 1]) for i in range(0, len(reply), 2)]
            if entries:
                yield cp.load_call(target_keys, [], entries, self.ttl, not self.search_index)
                after = entries[-1][0]
            if len(entries) < COPY_PAGE:
                break
        # :w, :c, then :w again: a count of writes moves between a checkpoint's record and
        # :w (library 1.7) when its checkpoint is put again or takes a second group, so a
        # count that moves once while the copy runs is in a pass over one or the other (a
        # count found in both places is read from :w, as the library reads it)
        for which in ("W", "C", "W"):
            cursor: Any = "0"
            while True:
                reply = yield cp.dump_call(source_keys, which, cursor)
                cursor = reply[0]
                items = reply[1:]
                fields = [(which, items[i], items[i + 1]) for i in range(0, len(items), 2)]
                if fields:
                    yield cp.load_call(target_keys, fields, [], self.ttl, not self.search_index)
                if as_text(cursor) == "0":
                    break

    def _fields(self, keys: cp.Keys) -> Generator[Call | list[Call], Any, list[bytes]]:
        """Every ``:c`` field name of a thread, a bounded page per call."""
        names: list[bytes] = []
        cursor: Any = "0"
        while True:
            reply = yield cp.dump_call(keys, "C", cursor)
            cursor = reply[0]
            names += [item if isinstance(item, bytes) else item.encode() for item in reply[1::2]]
            if as_text(cursor) == "0":
                return names

    def _drop(self, keys: cp.Keys, members: list[bytes], blobs: list[bytes]) -> Plan:
        """Deletes checkpoints and values in bounded calls: a call deletes what it names and
        a bounded number of their writes, and says how many of its checkpoints are done."""
        for first in range(0, len(blobs), cp.MAX_FIELDS):
            yield cp.drop_call(keys, [], blobs[first : first + cp.MAX_FIELDS])
        while members:
            _, done = yield cp.drop_call(keys, members[:DROP_PAGE])
            members = members[int(done) :]

    def _prune_plan(self, thread_ids: Sequence[str], strategy: str) -> Plan:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError("strategy must be 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            keys = cp.thread_keys(self.key_prefix, str(thread_id))
            if strategy == "delete":
                yield cp.delete_call(keys, keep_messages=True)
                continue
            names = yield from self._fields(keys)
            members = [m for m in map(cp.record_member, names) if m is not None]
            latest: dict[str, bytes] = {}
            for name in members:
                ns, checkpoint_id = cp.split_member(name)
                if ns not in latest or cp.split_member(latest[ns])[1] < checkpoint_id:
                    latest[ns] = name
            keep: set[bytes] = set()
            for name in latest.values():
                ns, checkpoint_id = cp.split_member(name)
                raw = cp.decode_checkpoint((yield cp.get_call(keys, ns, checkpoint_id)))
                if raw is not None:
                    keep |= {cp.blob_field(ns, ch, v) for ch, v in raw.record.blobs.items()}
            old = [name for name in members if name not in set(latest.values())]
            blobs = [name for name in names if name.startswith(b"b") and name not in keep]
            yield from self._drop(keys, old, blobs)

    def _runs_plan(self, run_ids: Sequence[str]) -> Generator[Call | list[Call], Any, None]:
        wanted = set(run_ids)
        if not wanted:
            return
        for key in self._thread_keys():
            match = _TAG.search(key)
            if not match:
                continue
            tag = match.group(1).decode()
            thread_id = re.sub(
                r"%25|%7B|%7D", lambda m: {"%25": "%", "%7B": "{", "%7D": "}"}[m.group(0)], tag
            )
            keys = cp.thread_keys(self.key_prefix, thread_id)
            doomed: list[bytes] = []
            cursor: Any = "0"
            while True:
                reply = yield cp.dump_call(keys, "C", cursor)
                cursor = reply[0]
                items = reply[1:]
                for i in range(0, len(items), 2):
                    name = items[i] if isinstance(items[i], bytes) else items[i].encode()
                    member = cp.record_member(name)
                    if member is None:
                        continue
                    body = _body(self.serde, cp.Record.decode(items[i + 1]))
                    if body["m"].get("run_id") in wanted:
                        doomed.append(member)
                if as_text(cursor) == "0":
                    break
            yield from self._drop(keys, doomed, [])

    def _delta_plan(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> Generator[Call | list[Call], Any, dict[str, DeltaChannelHistory]]:
        """The base class's walk up the parent chain, a page of ancestors per call: the
        library follows each record's parent and replies only these channels' values and
        writes, and leaves a channel out once an ancestor holds it."""
        if len(set(channels)) > cp.CHAIN_CHANNELS:  # walks of at most 64 channels each
            names = list(dict.fromkeys(channels))
            merged: dict[str, DeltaChannelHistory] = {}
            for first in range(0, len(names), cp.CHAIN_CHANNELS):
                part = names[first : first + cp.CHAIN_CHANNELS]
                merged.update((yield from self._delta_plan(config, part)))
            return {channel: merged[channel] for channel in channels}
        if not channels:
            return {}
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        keys = cp.thread_keys(self.key_prefix, thread_id)
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:  # the latest checkpoint's chain
            raw = cp.decode_checkpoint((yield cp.get_call(keys, ns, None)))
            checkpoint_id = raw.checkpoint_id if raw is not None else None
        collected: dict[str, list[PendingWrite]] = {channel: [] for channel in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        start, name = "PARENT", cp.member(ns, checkpoint_id) if checkpoint_id else None
        seen = {checkpoint_id}  # parent links that loop (a corrupt thread) end the walk
        while remaining and name is not None:
            reply = yield from self._read(keys, cp.chain_call(keys, start, name, sorted(remaining)))
            following, ancestors = cp.decode_chain(reply)
            parent, restart = None, False
            for raw in ancestors:
                if raw.checkpoint_id in seen:
                    remaining.clear()
                    break
                seen.add(raw.checkpoint_id)
                yield from self._complete(keys, raw)
                body = _body(self.serde, raw.record)
                for write in reversed(self._pending(raw, remaining)):
                    collected[write[1]].append(write)
                values = self._values(raw, body, remaining)
                for channel in [c for c in remaining if c in values]:
                    seeds[channel] = values[channel]
                    remaining.discard(channel)
                parent = body.get("p")
                held = (*raw.record.runs, *raw.record.blobs, *raw.record.held)
                if any(channel in remaining for channel in held):
                    # the library stopped walking for a channel whose value this client
                    # finds empty or absent: the rest of the reply lacks its writes
                    restart = True
                    break
                if not remaining:
                    break
            if restart:
                start, name = "AT", cp.member(ns, parent) if parent else None
            elif start == "PARENT" and not ancestors and following is None:
                # no parent line (a record written before 1.5), or a root: its payload says
                raw = cp.decode_checkpoint((yield cp.get_call(keys, ns, checkpoint_id)))
                parent = _body(self.serde, raw.record).get("p") if raw else None
                start, name = "AT", cp.member(ns, parent) if parent else None
            elif following is not None:
                start, name = "AT", following
            elif ancestors and parent:
                # the library stopped where the client goes on: a record without a parent
                # line (written before 1.5) or a value the client found empty
                start, name = "AT", cp.member(ns, parent)
            else:
                name = None
        result: dict[str, DeltaChannelHistory] = {}
        for channel in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[channel]))}
            if channel in seeds:
                entry["seed"] = seeds[channel]
            result[channel] = entry
        return result

    def _thread_keys(self) -> list[bytes]:
        """The ``:k`` key of every thread under the prefix (SCAN, every primary)."""
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix)
        client = self.redis_client
        return [
            key if isinstance(key, bytes) else key.encode()
            for key in client.scan_iter(match=f"{escaped}{{*}}:k", count=500, _type="zset")
        ]

    # -- the BaseCheckpointSaver interface -----------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (the latest of its thread and namespace without
        a ``checkpoint_id``), with its pending writes; one call."""
        return self._drive(self._get_plan(config))  # type: ignore[no-any-return]

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async twin of :meth:`get_tuple`."""
        return await self._adrive(self._get_plan(config))  # type: ignore[no-any-return]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """A thread's checkpoints, newest first (one namespace, or all without one in
        ``config``), matching every ``filter`` item of the metadata; paged calls."""
        yield from self._drive(self._list_plan(config, filter, before, limit))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async twin of :meth:`list`."""
        for item in await self._adrive(self._list_plan(config, filter, before, limit)):
            yield item

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint: its new messages, new channel values and record in one FCALL."""
        plan = self._put_plan(config, checkpoint, metadata, new_versions)
        return self._drive_in_order(config, plan)  # type: ignore[no-any-return]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async twin of :meth:`put`."""
        plan = self._put_plan(config, checkpoint, metadata, new_versions)
        return await self._adrive_in_order(config, plan)  # type: ignore[no-any-return]

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for a checkpoint in one FCALL (messages in the session)."""
        self._drive_in_order(config, self._writes_plan(config, writes, task_id, task_path))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async twin of :meth:`put_writes`."""
        await self._adrive_in_order(config, self._writes_plan(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread: its checkpoints, writes and chat session (one UNLINK)."""
        self._drive(_one(cp.delete_call(cp.thread_keys(self.key_prefix, str(thread_id)))))

    async def adelete_thread(self, thread_id: str) -> None:
        """Async twin of :meth:`delete_thread`."""
        await self._adrive(_one(cp.delete_call(cp.thread_keys(self.key_prefix, str(thread_id)))))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by these runs, in every thread
        under the prefix: a SCAN, then bounded pages per thread."""
        self._drive(self._runs_plan(run_ids))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async twin of :meth:`delete_for_runs` (the key SCAN runs in a thread)."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread (messages under their stream ids, checkpoints, writes, values)
        to another thread id that has no messages yet; bounded pages."""
        self._drive(self._copy_plan(str(source_thread_id), str(target_thread_id)))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async twin of :meth:`copy_thread`."""
        await self._adrive(self._copy_plan(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: keep each namespace's newest checkpoint (and the values it
        needs); ``delete``: drop every checkpoint. The chat session stays either way."""
        self._drive(self._prune_plan(thread_ids, strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async twin of :meth:`prune`."""
        await self._adrive(self._prune_plan(thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """What ``DeltaChannel`` replays: each channel's writes along the parent chain up to
        the nearest ancestor holding a value (the seed). The base class reads every
        ancestor whole, a call each; here one call walks a page of 64 ancestors and
        replies only these channels."""
        return self._drive(self._delta_plan(config, channels))  # type: ignore[no-any-return]

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async twin of :meth:`get_delta_channel_history`."""
        return await self._adrive(self._delta_plan(config, channels))  # type: ignore[no-any-return]

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A short increasing version: a counter. (Before 1.7 of the library, a random part
        kept the versions two branches of a thread made apart, for the values stored by
        version; values are now told apart by their bytes, see ``_blob_tag``. A version of
        that form goes on with the counter.)"""
        if current is None:
            number = 0
        elif isinstance(current, int | float):
            number = int(current)
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:08d}"


def _one(call: Call) -> Plan:
    return (yield call)
