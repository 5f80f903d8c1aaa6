"""Ctrl-C and SIGTERM reach the main thread's handler even when the kernel gives them to another thread.

Python runs a signal's handler in the main thread, the next time that thread runs bytecode. The kernel may
deliver a process's SIGTERM or SIGINT to any thread that does not block it: a LangGraph worker running a node,
lftrace's writer. Python then only marks the signal, and a main thread asleep in a lock (LangGraph's
``invoke()`` waiting for its parallel branches in ``concurrent.futures.wait``) or in an event loop's select
does not wake up: a run stopped by a CI runner's SIGTERM hung until its branches returned (1 run in ~15, under
load; the async run's select, 1 in ~10).

``Forwarding(signums)``: while its block runs, a wakeup fd tells a watcher thread of every signal, whichever
thread caught it. When the main thread's handler has not run ``GRACE_S`` later, the watcher sends the signal to
the main thread itself (``pthread_kill``), which interrupts its wait. Handlers say they ran (``ran``). Nothing
changes where a wakeup fd is set already (asyncio's, for its own signal handlers), outside the main thread, or
where there is no ``pthread_kill``. Stdlib only.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterable

GRACE_S = 0.2  # a handler not run this long after its signal is taken for one that will not run by itself
RECENT_S = 0.5  # a handler run this long before the watcher reads a signal counts for that signal
_NEVER = float("-inf")


class Forwarding:
    """``with Forwarding(signums):`` forwards them to the main thread when another thread caught them. The
    handlers call ``ran(signum)`` first thing (it may be called before the block starts)."""

    def __init__(self, signums: Iterable[int]) -> None:
        self._watched = frozenset(signums)
        self._handled: dict[int, float] = {}  # signal -> when the main thread's handler last ran
        self._echoes: dict[int, int] = {}  # signals the watcher sent itself, whose bytes come back
        self._stopping = threading.Event()
        self._main = threading.main_thread().ident
        self._writable: socket.socket | None = None

    def ran(self, signum: int) -> None:
        self._handled[signum] = time.monotonic()

    def __enter__(self) -> Forwarding:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
            return self
        readable, writable = socket.socketpair()
        writable.setblocking(False)
        try:
            earlier = signal.set_wakeup_fd(writable.fileno(), warn_on_full_buffer=False)
        except ValueError:  # an embedded interpreter
            earlier = None
        if earlier != -1:  # another wakeup fd (kept as it was), or none could be set
            if earlier is not None:
                signal.set_wakeup_fd(earlier)
            readable.close()
            writable.close()
            return self
        self._writable = writable
        threading.Thread(target=self._watch, args=(readable,), name="lftrace-signals", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        writable, self._writable = self._writable, None
        if writable is None:
            return
        self._stopping.set()
        current = signal.set_wakeup_fd(-1)
        if current != writable.fileno():  # set by another since (asyncio's handlers): theirs stays
            signal.set_wakeup_fd(current)
        writable.close()  # the watcher reads the end and stops

    def _watch(self, readable: socket.socket) -> None:
        with readable:
            while True:
                try:
                    data = readable.recv(64)  # one byte per signal; b"" once the block closed the other end
                except OSError:
                    return
                if not data or self._stopping.is_set():
                    return
                for signum in data:
                    if signum not in self._watched:
                        continue
                    if self._echoes.get(signum):
                        self._echoes[signum] -= 1
                        continue
                    try:
                        self._forward(signum)
                    except OSError:  # the main thread is gone
                        return

    def _unhandled(self, signum: int, seen: float) -> bool:
        return self._handled.get(signum, _NEVER) < seen - RECENT_S

    def _forward(self, signum: int) -> None:
        seen = time.monotonic()
        while self._unhandled(signum, seen) and time.monotonic() - seen < GRACE_S:
            time.sleep(0.01)
        if self._unhandled(signum, seen) and not self._stopping.is_set() and self._main is not None:
            self._echoes[signum] = self._echoes.get(signum, 0) + 1
            signal.pthread_kill(self._main, signum)
