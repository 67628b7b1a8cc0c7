"""One thread's puts and pending writes, one at a time within a process.

LangGraph saves a step's writes and the next checkpoint from background workers that may
run in either order, and may overlap. Each order keeps a message once: a put that runs
after the writes of its parent names them (SETTLE) and the library replaces their values
by runs of the messages it stores; writes that run after the put find those messages
stored (IFKNOWN) and keep runs of them. Overlapping, they can miss each other: a put
planned before the writes were sent, then sent after they were stored, settles nothing,
and the writes found nothing stored, so the messages are kept twice (memory, never
correctness). Holding a lock per thread from the plan of a put or put_writes to its last
reply rules that out for the callers of one saver object.

Locks are striped (a fixed number, a thread id hashed to one), so their number does not
grow with the threads a process serves; two threads that share a stripe only wait for
each other's single call.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
import zlib

#: Locks per kind (threads, and each event loop).
STRIPES = 64


class ThreadLocks:
    """A lock per thread id (striped), for sync callers and for each event loop."""

    def __init__(self, stripes: int = STRIPES) -> None:
        self._stripes = stripes
        self._sync = [threading.Lock() for _ in range(stripes)]
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Lock]]
        self._loops = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def _stripe(self, thread_id: str) -> int:
        return zlib.crc32(thread_id.encode()) % self._stripes

    def sync(self, thread_id: str) -> threading.Lock:
        """The lock of ``thread_id`` for callers on threads."""
        return self._sync[self._stripe(thread_id)]

    def in_loop(self, thread_id: str) -> asyncio.Lock:
        """The lock of ``thread_id`` for coroutines of the running event loop (an
        ``asyncio.Lock`` serves one loop)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            # an asyncio.Lock that saw a waiter holds its loop, so the weak keys alone
            # would keep every such loop (and its locks) for the saver's life
            for closed in [other for other in self._loops if other.is_closed()]:
                del self._loops[closed]
            locks = self._loops.get(loop)
            if locks is None:
                locks = self._loops[loop] = [asyncio.Lock() for _ in range(self._stripes)]
        return locks[self._stripe(thread_id)]
