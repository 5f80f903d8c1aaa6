"""Trace and span ids: 32 and 16 lowercase hex characters, random, as OpenTelemetry and Langfuse make them.

Tried and left: trace ids leading with the time (UUIDv7-style) kept a store write at ~18 us per span as the store
grew (random ids: 18 -> 26-31 us at 3,600 traces, the indexes on trace ids take random inserts), but the short
ids `list` prints and users type (`show 3f9c2a1b`) then collide for every trace made within a minute. Integer keys
inside the store would give the same locality with random ids.
"""

from __future__ import annotations

import os
from collections import deque


class _IdPool:
    """Random hex from ``os.urandom``, fetched 512 ids at a time.

    ``os.urandom`` releases the GIL (a syscall); with the writer thread busy, every release can cost the user's
    thread a GIL hand-off (measured: ~200 us per id). One syscall per 512 ids avoids that. ``deque.popleft`` and
    ``extend`` are atomic, so threads never share an id; a forked child clears the pool so parent and child
    never hand out the same ids.
    """

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._ids.clear)

    def span_id(self) -> str:
        try:
            return self._ids.popleft()
        except IndexError:
            blob = os.urandom(8 * 512).hex()
            self._ids.extend(blob[i : i + 16] for i in range(0, len(blob), 16))
            return self._ids.popleft()

    def trace_id(self) -> str:
        return self.span_id() + self.span_id()


_pool = _IdPool()
new_span_id = _pool.span_id
new_trace_id = _pool.trace_id
