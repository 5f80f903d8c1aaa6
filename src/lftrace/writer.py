"""The background writer: the only place traces are prepared and written.

The handler hands finished traces to ``submit`` (a queue put, ~1 us) and goes
back to the user's program. This thread does the expensive part in batches:
turn captured objects into JSON-able values, apply the user's mask, price
generations, and commit to the store (PERF_FACTS.md: ~15-30 us of CPU per span
that must not run on the user's thread).

With an export helper process (export_process.py), preparing and committing move there too: the writer hands
it each finished trace as captured, in one orjson pass (``Helper.capturable``), and keeps that JSON until the
helper says the trace is in the store; a helper that dies or hangs leaves it to be prepared and written here.
Cachegrind, bench/overhead.py's agent: this thread's instructions per span fell from ~180k (preparing, then
``Helper.shippable``) to ~73k. Masked traces, parts of running traces and traces the helper cannot take as
captured are prepared here, then shipped prepared or written here.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import orjson

from .errors import StoreError
from .media import Extractor, media_hint
from .model import Observation, Score, Trace
from .sanitize import encodable
from .sharing import INT64, Converter, Extended, as_json, inline_json, is_json_text


class _Serialisers(NamedTuple):
    """serialize's converters, imported when the writer first prepares a trace."""

    to_jsonable: Callable[[Any], Any]  # a JSON-able copy
    json_bytes: Callable[[Any], bytes | None]  # the same value's JSON text in one pass (None: orjson refused it)


log = logging.getLogger("lftrace")

MASK_FAILED = "<fully masked due to failed mask function>"


MAX_UNWRITTEN = 10_000  # traces kept in memory while the store cannot be written (then the oldest are dropped)
RETRY_FIRST_S = 0.5  # first retry of an unwritable store; doubles up to RETRY_MAX_S
RETRY_MAX_S = 30.0
MAX_QUEUED_PARTS = 2  # parts of running traces queued before submit_fragment waits for the writer
# ... and when the parts are sent while the run goes on (Settings.streams_parts): a part is handed over once the one
# before it is written. While the program runs, this thread wins the GIL back after each SQLite call (~80 per part)
# only when the program's switch interval (5 ms) ends: a 400-observation part took 0.42 s to write for 12 ms of
# CPU, and the export helper could send it only then. Waiting for it gives this thread the GIL at once. Store only,
# two: the wait made a 1,000-step run slower (its parts' SQLite work no longer runs beside the program's). With
# BUSY_SWITCH_INTERVAL_S since, 2 or 3 here measured no different (1,000 steps exporting: 1.77 against 1.82x plain).
MAX_QUEUED_STREAMED_PARTS = 1
PART_WAIT_S = 10.0
# While this thread prepares and commits a part of a running trace (a long run's), the process's switch interval is
# this short (then put back: a finished trace's batch leaves it alone).
# At Python's 5 ms this thread got a few percent of the GIL while the program ran: a 1,000-step loop's parts took
# 0.12-0.43 s of wall time to prepare for 5-15 ms of CPU, so 1,900 of its 2,513 observations were still unwritten
# when the run ended (flush: ~0.1 s). At 0.5 ms each part is written as it comes (prepare: 9-48 ms of wall time;
# flush: 0.02-0.04 s), and the program's thread is asked to switch more often only while a part is being written.
BUSY_SWITCH_INTERVAL_S = 0.0005
SHARED_LIST_ITEMS = 8  # metadata lists of texts up to this long are shared between observations (_short_lists_shared)
SHARED_LISTS_KEPT = 1024  # ... of this many different contents (then the table starts over)
LINGER_S = 0.05  # after a trace arrives, wait this long for more to write them in one transaction (flush: at once)


def _shorter_switches() -> float | None:
    """Shorten the switch interval to ``BUSY_SWITCH_INTERVAL_S``; the interval to put back (None: it was as short)."""
    current = sys.getswitchinterval()
    if current <= BUSY_SWITCH_INTERVAL_S:
        return None
    sys.setswitchinterval(BUSY_SWITCH_INTERVAL_S)
    return current


def _restore_switches(previous: float | None) -> None:
    """Put back the interval ``_shorter_switches`` replaced, unless someone set another one since."""
    if previous is not None and abs(sys.getswitchinterval() - BUSY_SWITCH_INTERVAL_S) < 1e-7:
        sys.setswitchinterval(previous)


SHIP_WAIT_S = 2.0  # a flush waits this long for the helper to write what it was handed (then writes it here)


class Helper(Protocol):
    """What the writer needs of the export helper process (``export_process.DeliveryProcess``)."""

    def shippable(self, trace: Trace) -> Any: ...  # the trace as it goes over the pipe; None: written here

    def capturable(self, trace: Trace) -> Any: ...  # a trace not prepared yet, for the helper to prepare; or None

    def ship(self, traces: list[Any]) -> int | None: ...  # a batch handed over: its number; None: no helper

    def written_through(self) -> int: ...  # the number of the last batch it wrote (or tried to)

    def wait_written(self, batch: int, timeout: float) -> tuple[bool, str | None]: ...  # (written, its problem)


class _FlushMarker:
    """Put on the queue by ``flush``: set once everything submitted before it is committed (or kept unwritten)."""

    def __init__(self, dropped: int) -> None:
        self.done = threading.Event()
        self.dropped_before = dropped
        self.ok = True


class _Fragment:
    """Finished observations of a trace still running: merged into the stored trace, not queued for export."""

    __slots__ = ("trace",)

    def __init__(self, trace: Trace) -> None:
        self.trace = trace


class _Scores:
    """Scores of sessions or dataset runs (``Score.standalone``): stored on their own, each queued for export."""

    __slots__ = ("scores",)

    def __init__(self, scores: list[Score]) -> None:
        self.scores = scores


class _Captured:
    """A finished trace the helper is to prepare (``Helper.capturable``): its JSON form, all the writer keeps of it.
    Written here after all (the helper went away) it is read back and prepared (``shipping.uncaptured``)."""

    __slots__ = ("form", "id")

    def __init__(self, trace_id: str, form: Any) -> None:
        self.id = trace_id
        self.form = form


def _is_data_problem(exc: BaseException) -> bool:
    """The traces were refused (a value SQLite cannot take), not the store: other traces can still be written."""
    if isinstance(exc, StoreError):
        return exc.data_problem
    return isinstance(exc, UnicodeError | OverflowError | ValueError | TypeError | RecursionError)


class TraceWriter:
    """Prepares and commits traces on one background thread.

    A store that cannot be written (disk full, read-only, permissions, file size limit) does not lose traces:
    they stay in memory (at most ``MAX_UNWRITTEN``) and are retried every 0.5 s, backing off to 30 s, and with
    every later write, for as long as the process lives; one warning says why. A trace the store refuses
    (a value SQLite cannot take) is repaired (lone surrogates escaped, out-of-range integers clamped) and written
    alone; it never blocks other traces.
    """

    def __init__(
        self,
        open_store: Callable[[], Any],
        destinations: Callable[[], Sequence[str]],
        *,
        mask: Callable[..., Any] | None = None,
        media: bool = True,
        batch_size: int = 512,
        linger: float = LINGER_S,
        on_written: Callable[[list[Trace], list[str], list[str]], None] | None = None,
        helper: Callable[[], Helper | None] | None = None,
        streamed_parts: bool = False,
        parsed_values: bool = False,
    ) -> None:
        self._open_store = open_store
        self._destinations = destinations
        self._mask = mask
        self._batch_size = max(1, batch_size)
        self._linger = linger
        self._on_written = on_written
        self._helper = helper
        # batches handed to the helper and not yet written by it: (number, traces), oldest first; and the trace
        # ids among them (a trace id written here later waits for the helper: versions land in order)
        self._shipped: deque[tuple[int, list[Trace | _Captured]]] = deque()
        self._shipped_ids: set[str] = set()
        self._shipped_to: Helper | None = None
        self.helper_error: str | None = None  # why the helper did not write all it was handed at the last flush
        self._queue: queue.SimpleQueue[Trace | _Fragment | _Scores | _FlushMarker | None] = queue.SimpleQueue()
        self._urgent = threading.Event()  # set with what must not wait for a batch's linger: a flush, a part, stop
        self._converter = Converter(share_within_trace=mask is None)  # only used on the writer thread
        self._media = Extractor(enabled=media)  # likewise
        self._ser: _Serialisers | None = None  # imported at the first prepare (not per value: ~0.7 us each)
        # the traces this writer prepares were read from JSON (the export helper's captured ones): no captured
        # lists in them to thaw before their values are written as JSON text (``sharing.inline_json``)
        self._parsed_values = parsed_values
        self._shared_lists: dict[tuple[str, ...], list[str]] = {}  # metadata's short lists of texts, by content
        # id() of prepared traces that are parts of a running trace (alive in the batch or in _unwritten until
        # written or dropped): stored without queuing them for export
        self._parts: set[int] = set()
        self._queued_parts = 0  # parts submitted and not written yet (submit_fragment waits while too many)
        self._max_queued_parts = MAX_QUEUED_STREAMED_PARTS if streamed_parts else MAX_QUEUED_PARTS
        self._parts_queued = threading.Condition()
        self._pace_parts = True  # off after one wait timed out (a stuck disk)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # prepared, refused by an unwritable store; oldest first. A list, not keyed by id: fragments of one trace
        # (written while a run goes on, or arriving in several requests) are all kept and merged in order.
        self._unwritten: list[Trace] = []
        self._scores: list[Score] = []  # standalone scores not written yet (kept, and retried, as traces are)
        self._retry_delay = RETRY_FIRST_S
        self._next_retry = 0.0
        self.write_error: Exception | None = None  # why the last write failed (None once the store takes writes)
        self.written = 0
        self.failed_writes = 0
        self.dropped = 0  # traces that could not be stored at all (logged one by one)

    # -- called from the user's threads -------------------------------------------------
    def submit(self, trace: Trace) -> None:
        self._ensure_thread()
        self._queue.put(trace)

    def submit_fragment(self, trace: Trace) -> None:
        """Part of a trace still running (``client._submit_fragment``): merged into the store, exported at the end.

        Back-pressure: a run that makes parts faster than this thread writes them (a CPU-bound loop holds the GIL;
        this thread gets it every 5 ms) waits here while ``MAX_QUEUED_PARTS`` (``MAX_QUEUED_STREAMED_PARTS``) are
        queued, so a long run's memory stays bounded. The wait hands the GIL to this thread, so run + flush take
        no longer; it gives up after ``PART_WAIT_S`` (a stuck disk must not stop the program).
        """
        self._ensure_thread()
        try:
            with self._parts_queued:
                if self._queued_parts >= self._max_queued_parts and self._pace_parts:
                    thread = self._thread
                    if thread is not None and thread.is_alive():
                        caught_up = self._parts_queued.wait_for(
                            lambda: self._queued_parts < self._max_queued_parts, timeout=PART_WAIT_S
                        )
                        if not caught_up:  # a stuck store: never stall the program again, let parts queue up
                            self._pace_parts = False
                            log.warning(
                                "lftrace: the trace store took over %.0f s to write a part of a long run; "
                                "no longer waiting for it (memory may grow until it catches up)",
                                PART_WAIT_S,
                            )
        finally:  # Ctrl-C or SIGTERM during the wait: the part is handed over all the same (its steps are kept)
            with self._parts_queued:
                self._queued_parts += 1
            self._queue.put(_Fragment(trace))
            self._urgent.set()

    def submit_scores(self, scores: list[Score]) -> None:
        """Scores of sessions or dataset runs (no trace): written with the next batch, queued for export."""
        self._ensure_thread()
        self._queue.put(_Scores(scores))

    def forked(self) -> None:
        """In a process made with fork(): the writer thread is not here, and its queue and locks may have been
        taken mid-use. Start afresh; what the parent had queued or kept unwritten is the parent's to write."""
        self._queue = queue.SimpleQueue()
        self._urgent = threading.Event()
        self._thread = None
        self._start_lock = threading.Lock()
        self._parts_queued = threading.Condition()
        self._queued_parts = 0
        self._parts = set()
        self._unwritten = []
        self._scores = []
        self._shipped = deque()
        self._shipped_ids = set()
        self._shipped_to = None
        self._converter = Converter(share_within_trace=self._mask is None)
        self._media = Extractor(enabled=self._media.enabled)

    @property
    def unwritten(self) -> int:
        """Traces held in memory because the store could not be written."""
        return len(self._unwritten)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every trace submitted so far was tried. True only if all of them are in the store.

        False: some are held in memory because the store cannot be written (``write_error`` says why; they are
        retried), or a trace could not be stored at all, or ``timeout`` passed.
        """
        if self._thread is None:
            return not self._unwritten
        marker = _FlushMarker(self.dropped)
        self._queue.put(marker)
        self._urgent.set()
        return marker.done.wait(timeout) and marker.ok

    def stop(self, timeout: float | None = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._urgent.set()
        self._thread.join(timeout)
        self._thread = None
        if self._shipped:  # the thread did not get to it (timeout): written here, now
            self._settle_shipped()
        if self._unwritten or self._scores:
            log.error(
                "lftrace: %d trace(s) and %d score(s) could not be written to the store and are lost (%s)",
                len(self._unwritten),
                len(self._scores),
                self.write_error,
            )

    # -- the writer thread --------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lftrace-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                if self._unwritten or self._scores:
                    item = self._queue.get(timeout=max(self._next_retry - time.monotonic(), 0.01))
                else:
                    item = self._queue.get()
            except queue.Empty:  # time to retry the unwritten traces
                self._write([])
                self._write_scores()
                continue
            # a part of a running trace: the program goes on beside this thread (see BUSY_SWITCH_INTERVAL_S)
            previous_interval = _shorter_switches() if isinstance(item, _Fragment) else None
            try:
                stopping = self._work(item)
            finally:
                _restore_switches(previous_interval)

    def _work(self, item: Trace | _Fragment | _Scores | _FlushMarker | None) -> bool:
        """Prepare and commit one batch, starting with ``item`` (the queue's next items join it); True once the
        writer was told to stop."""
        stopping = False
        # each trace is prepared as it is taken (its captured objects let go at once, before they age into the
        # garbage collector's older generations); the batch is committed in one transaction
        prepared: list[Trace | _Captured] = []
        markers: list[_FlushMarker] = []
        deadline: float | None = None
        while True:
            if item is None:
                stopping = True
            elif isinstance(item, _FlushMarker):
                markers.append(item)
            elif isinstance(item, _Scores):
                self._scores += item.scores
            else:
                self._prepare_item(item, prepared)
            # a part of a long run is converted and written on its own: converting several at once would hold
            # each one's lists (the conversation so far, per observation) in memory together
            if len(prepared) >= self._batch_size or isinstance(item, _Fragment):
                break
            try:
                if markers or stopping or not prepared:  # someone waits: write what is queued now
                    item = self._queue.get_nowait()
                else:
                    if deadline is None:
                        deadline = time.monotonic() + self._linger
                    item = self._lingered(deadline)
            except queue.Empty:
                break
        self._write(prepared)
        self._write_scores()
        if isinstance(item, _Fragment):  # a part ends a batch: it is written (or kept unwritten) now
            with self._parts_queued:
                self._queued_parts -= 1
                self._parts_queued.notify_all()
        if markers or stopping:
            self._settle_shipped()
        for marker in markers:
            marker.ok = (
                not self._unwritten
                and not self._scores
                and self.dropped == marker.dropped_before
                and not self.helper_error
            )
            marker.done.set()
        return stopping

    def _lingered(self, deadline: float) -> Trace | _Fragment | _Scores | _FlushMarker | None:
        """The next item, waiting until ``deadline`` for one (queue.Empty: none came).

        Without an export helper the wait sleeps through the traces submitted meanwhile and takes them all when it
        ends: woken by each one, this thread took the GIL from the program once per trace to prepare it
        (bench/overhead.py's agent, interleaved: store only 60-67 -> 52-59 us per span, exporting from a thread
        77-85 -> 69-79). A flush, a part of a running trace or ``stop`` wakes it at once (``_urgent``). With the
        helper each trace is taken as it comes: it only costs one orjson pass here, and taken at the linger's end
        all together they reached the helper later (the flush at a block's end 7-9 -> 14-16 ms, 67-76 -> 80-92 us).
        """
        if self._helper is not None and self._helper() is not None:
            return self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        self._urgent.wait(max(deadline - time.monotonic(), 0.0))
        self._urgent.clear()
        return self._queue.get_nowait()

    def _write_scores(self) -> None:
        """Commit the standalone scores waiting; an unwritable store keeps them for the next try, as traces."""
        if not self._scores or (self._unwritten and time.monotonic() < self._next_retry):
            return
        try:
            self._open_store().write_scores(self._scores, self._destinations())
        except Exception as exc:
            if _is_data_problem(exc):
                self.dropped += len(self._scores)
                log.warning("lftrace: could not store %d score(s): %s", len(self._scores), exc)
            else:
                first = self.write_error is None
                self.write_error = exc
                self._next_retry = time.monotonic() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
                if first:
                    log.warning(
                        "lftrace: could not write %d score(s) to the store: %s; retrying", len(self._scores), exc
                    )
                del self._scores[: max(len(self._scores) - MAX_UNWRITTEN, 0)]
                return
        self._scores = []
        if not self._unwritten:
            self._written_again()

    def _prepare_item(self, item: Trace | _Fragment, prepared: list[Trace | _Captured]) -> None:
        trace = item.trace if isinstance(item, _Fragment) else item
        try:
            if isinstance(item, _Fragment):
                prepared.append(self.prepare(trace, complete=False))
                self._parts.add(id(trace))
            else:
                prepared.append(self._captured(trace) or self.prepare(trace))
        except Exception:  # one broken trace must not sink the batch
            log.warning("lftrace: could not prepare trace %s", trace.id, exc_info=True)

    def _captured(self, trace: Trace) -> _Captured | None:
        """The trace for the export helper to prepare, when there is one and it can take the trace as captured (no
        mask: the user's function runs in this process). On the user's GIL that one orjson pass costs ~1/4 of
        preparing the trace here and shipping it prepared (bench/overhead.py's agent)."""
        if self._mask is not None or self._helper is None or self._unwritten:
            return None
        helper = self._helper()
        form = helper.capturable(trace) if helper is not None else None
        return _Captured(trace.id, form) if form is not None else None

    def _ready(self, items: Sequence[Trace | _Captured]) -> list[Trace]:
        """Traces to write here: the captured ones prepared now (the helper did not take them)."""
        ready: list[Trace] = []
        for item in items:
            if not isinstance(item, _Captured):
                ready.append(item)
                continue
            from .shipping import uncaptured

            try:
                ready += uncaptured(item.form, self.prepare)
            except Exception:
                log.warning("lftrace: could not prepare trace %s", item.id, exc_info=True)
        return ready

    def _write(self, prepared: list[Trace | _Captured]) -> None:
        helper = self._helper() if self._helper is not None else None
        if helper is None or self._unwritten or not prepared:
            self._settle_shipped()  # a helper gone since: what it was handed is written here first, in order
            self._write_here(prepared)
        else:
            self._write_here(self._ship(helper, prepared))

    def write_prepared(self, traces: list[Trace]) -> str | None:
        """Commit traces another writer prepared (the export helper's, for the program), now, on this thread.

        None when they (and any kept unwritten before) are in the store, else why not."""
        dropped = self.dropped
        self._write_here(traces)
        if self._unwritten:
            return f"the store cannot be written: {self.write_error}"
        if self.dropped != dropped:
            return f"{self.dropped - dropped} trace(s) could not be stored"
        return None

    # -- handing traces to the export helper --------------------------------------------------
    def _ship(self, helper: Helper, prepared: list[Trace | _Captured]) -> list[Trace | _Captured]:
        """Hand the helper what it can write; return the rest (parts of running traces, long shared lists, all
        of it when the helper is gone), to be written here."""
        if self._shipped_to not in (None, helper):
            self._settle_shipped()
        self._reap_shipped()
        forms = [
            trace.form
            if isinstance(trace, _Captured)
            else None
            if id(trace) in self._parts
            else helper.shippable(trace)
            for trace in prepared
        ]
        shipped = [trace for trace, form in zip(prepared, forms, strict=True) if form is not None]
        here = [trace for trace, form in zip(prepared, forms, strict=True) if form is None]
        if shipped and here and not {t.id for t in shipped}.isdisjoint(t.id for t in here):
            return self._here_after_shipped(prepared)  # one trace id both ways in a batch: all here, in order
        if shipped:
            batch = helper.ship([form for form in forms if form is not None])
            if batch is None:  # no helper (any more)
                return self._here_after_shipped(prepared)
            self._shipped.append((batch, shipped))
            self._shipped_ids.update(t.id for t in shipped)
            self._shipped_to = helper
        if here and not self._shipped_ids.isdisjoint(t.id for t in here):
            return self._here_after_shipped(here)  # an earlier version of a trace went to the helper
        return here

    def _here_after_shipped(self, traces: list[Trace | _Captured]) -> list[Trace | _Captured]:
        self._settle_shipped()
        return traces

    def _reap_shipped(self) -> None:
        """Forget the batches the helper has written (it says so on its pipe; this does not wait)."""
        helper = self._shipped_to
        if helper is None or not self._shipped:
            return
        through = helper.written_through()
        while self._shipped and self._shipped[0][0] <= through:
            _, traces = self._shipped.popleft()
            self.written += len(traces)
        if not self._shipped:
            self._shipped_ids.clear()
            self._shipped_to = None

    def _settle_shipped(self) -> None:
        """Wait until the helper wrote every batch handed to it (``SHIP_WAIT_S`` at most); what it did not write
        (it died, or hung and was stopped) is written here."""
        if not self._shipped and self.helper_error and self._helper is not None:
            self._ask_helper_again()
        helper = self._shipped_to
        if helper is None or not self._shipped:
            return
        done, error = helper.wait_written(self._shipped[-1][0], SHIP_WAIT_S)
        if done:
            self.helper_error = error
            self._reap_shipped()
            return
        rest = [trace for _, traces in self._shipped for trace in traces]
        self._shipped.clear()
        self._shipped_ids.clear()
        self._shipped_to = None
        log.info("lftrace: the export helper did not write %d trace(s); writing them here", len(rest))
        self._write_here(rest)

    def _ask_helper_again(self) -> None:
        """The helper could not write some traces it was handed (``helper_error``): hand it an empty batch, so it
        tries them again and says whether the store takes them now (a flush after the disk was freed is True)."""
        assert self._helper is not None
        helper = self._helper()
        batch = helper.ship([]) if helper is not None else None
        if helper is None or batch is None:
            return  # no helper any more: what it held is gone with it, and the error stays said
        self._shipped.append((batch, []))
        self._shipped_to = helper

    def _write_here(self, items: Sequence[Trace | _Captured]) -> None:
        prepared = self._ready(items)
        if self._unwritten:
            prepared = self._unwritten + prepared
        if not prepared:
            return
        fresh: set[str] = set()
        try:
            fresh = self._commit(prepared)
            self._unwritten = []
        except Exception as exc:
            if not _is_data_problem(exc):
                self._keep_unwritten(prepared, exc)
                return
            prepared, fresh = self._commit_one_by_one(prepared)
            if self._unwritten:
                return
        self._written_again()
        whole = [t for t in prepared if id(t) not in self._parts]
        running = list(dict.fromkeys(t.id for t in prepared if id(t) in self._parts))
        self._parts.clear()  # every part of this batch is written (or dropped) by now
        if self._on_written is not None and (whole or running):
            try:
                merged = list(dict.fromkeys(t.id for t in whole if t.id not in fresh))
                self._on_written([t for t in whole if t.id in fresh], merged, running)
            except Exception:
                log.debug("lftrace: on_written hook failed", exc_info=True)

    def _commit(self, traces: list[Trace]) -> set[str]:
        """Write (merge) the traces; the ids that were new to the store.

        Parts of running traces first. They queue the trace for export too, but the store holds its delivery while
        the run goes on (``running_in``): it goes out whole when the run ends, or as far as it got once its process
        is gone (killed, crashed: an incomplete trace is not left behind by ``push``).
        """
        parts = [t for t in traces if id(t) in self._parts]
        whole = [t for t in traces if id(t) not in self._parts] if parts else traces
        for attempt in range(3):
            try:
                store = self._open_store()
                if parts:
                    store.write_traces(parts, destinations=self._destinations(), merge=True, running=True)
                    parts = []
                # merge: runs sharing a trace id (trace_context, spans around runs, other processes) add up, and
                # so do the parts of a long run written while it went on
                fresh: set[str] = (
                    store.write_traces(whole, destinations=self._destinations(), merge=True) if whole else set()
                )
                self.written += len(whole)
                return fresh
            except Exception as exc:
                # a store problem that does not go away at once (disk full, read-only, bad data): no point waiting
                if attempt == 2 or isinstance(exc, StoreError) or _is_data_problem(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _commit_one_by_one(self, traces: list[Trace]) -> tuple[list[Trace], set[str]]:
        """After a batch was refused for its data: each trace alone, repaired if needed; the written ones."""
        written: list[Trace] = []
        fresh: set[str] = set()
        for index, trace in enumerate(traces):
            try:
                try:
                    fresh |= self._commit([trace])
                except Exception as exc:
                    if not _is_data_problem(exc):
                        raise
                    log.info("lftrace: trace %s has values the store refused (%s); storing them escaped", trace.id, exc)
                    fresh |= self._commit([repair_trace(trace)])
            except Exception as exc:
                if not _is_data_problem(exc):  # the store itself failed meanwhile: keep the rest for the retry
                    self._keep_unwritten(traces[index:], exc)
                    return written, fresh
                self.dropped += 1
                log.error("lftrace: trace %s cannot be stored and was dropped: %s", trace.id, exc)
                continue
            written.append(trace)
        self._unwritten = []
        return written, fresh

    def _keep_unwritten(self, traces: list[Trace], exc: Exception) -> None:
        first = self.write_error is None
        self._unwritten = list(traces)  # every trace tried, in order (those before were written)
        if len(self._unwritten) > MAX_UNWRITTEN:
            lost = self._unwritten[: len(self._unwritten) - MAX_UNWRITTEN]
            del self._unwritten[: len(lost)]
            self.dropped += len(lost)
            log.error(
                "lftrace: more than %d traces wait for the store; dropped the oldest %d (%s...)",
                MAX_UNWRITTEN,
                len(lost),
                lost[0].id,
            )
        self.failed_writes += 1
        self.write_error = exc
        if first:  # one warning per outage, not one per retry
            log.warning(
                "lftrace: could not write %d trace(s) to the store: %s; keeping them in memory and retrying "
                "(every %.1f-%.0f s, up to %d traces, while this process runs)",
                len(self._unwritten),
                exc,
                RETRY_FIRST_S,
                RETRY_MAX_S,
                MAX_UNWRITTEN,
            )
        else:
            log.debug("lftrace: store still not writable: %s", exc)
        self._next_retry = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def _written_again(self) -> None:
        if self.write_error is not None and not self._unwritten:
            log.warning("lftrace: the store takes writes again; every waiting trace is written")
        self.write_error = None
        self._retry_delay = RETRY_FIRST_S

    def prepare(self, trace: Trace, *, complete: bool = True) -> Trace:
        """JSON-able values, masked; generations priced. Mutates and returns the trace.

        ``complete=False``: a part of a running trace, whose end is not known yet. Its growing lists are
        ``sharing.Extended`` (only the store reads a part, and its packer takes them as they are); a whole trace
        gets plain lists, as the export and the helper read it from memory.
        """
        from .pricing import cost_for
        from .serialize import MEDIA_SINK
        from .serialize import forget as forget_messages

        media = self._media
        MEDIA_SINK.extractor = media  # LangfuseMedia objects leave their bytes here as they are converted
        self._converter.extend = not complete and self._mask is None
        try:
            self._convert_trace(trace, self._serialisers(), cost_for)
        finally:  # let go of the captured lists and messages
            self._converter.extend = False
            forget_messages()
            MEDIA_SINK.extractor = None
            trace.media = (*trace.media, *media.end_trace())
        ends = [o.end_time for o in trace.observations if o.end_time is not None]
        if complete and ends and (trace.end_time is None or max(ends) > trace.end_time):
            trace.end_time = max(ends)
        return trace

    def _convert_trace(self, trace: Trace, ser: _Serialisers, cost_for: Callable[..., Any]) -> None:
        media = self._media
        media.begin("input", None)
        trace.input = self._prepared(trace.input, ser)
        media.begin("output", None)
        trace.output = self._prepared(trace.output, ser)
        media.begin("metadata", None)
        trace.metadata = self._masked(ser.to_jsonable(trace.metadata)) if trace.metadata else trace.metadata
        if self._mask is not None:  # everything else that can hold user data
            trace.name = self._masked_text(trace.name)
            trace.session_id = self._masked_text(trace.session_id)
            trace.user_id = self._masked_text(trace.user_id)
            if trace.tags:
                masked_tags = self._masked(list(trace.tags))
                trace.tags = [str(t) for t in masked_tags] if isinstance(masked_tags, list) else [str(masked_tags)]
        for obs in trace.observations:
            self._prepare_observation(obs, ser, cost_for)

    def _prepared(self, value: Any, ser: _Serialisers) -> Any:
        """A captured input/output as stored and exported: as JSON text from here on where the store keeps it
        whole (sharing.as_json: serialised once, for the store and the export), else JSON-able."""
        if self._mask is None:  # a mask needs the JSON-able value to work on
            refuse = media_hint if self._media.enabled else None  # media: the converter takes it out
            direct = inline_json(value, ser.json_bytes, refuse=refuse, parsed=self._parsed_values)
            if direct is not None:
                return direct
        return as_json(self._masked(self._convert(value, self._with_media)))

    def _serialisers(self) -> _Serialisers:
        if self._ser is None:
            from .serialize import json_bytes, to_jsonable

            self._ser = _Serialisers(to_jsonable, json_bytes)
        return self._ser

    def _with_media(self, value: Any) -> Any:
        """``to_jsonable(value)`` with its media taken out; walked only when its JSON text hints at media."""
        to_jsonable, json_bytes = self._serialisers()
        media = self._media
        if not media.enabled or type(value) is str:  # nothing to take out / one startswith
            return media.extract(to_jsonable(value))
        data = json_bytes(value)
        if data is None:  # orjson refused it: the Python walk
            return media.extract(to_jsonable(value))
        converted = orjson.loads(data)
        return media.extract(converted) if media_hint(data) else converted

    def _convert(self, value: Any, to_jsonable: Callable[[Any], Any]) -> Any:
        # Lists that extend a list converted just before (a growing conversation) only convert their new items.
        return self._converter.convert(value, to_jsonable)

    def _prepare_observation(self, obs: Observation, ser: _Serialisers, cost_for: Callable[..., Any]) -> None:
        media = self._media
        media.begin("input", obs.id)
        obs.input = self._prepared(obs.input, ser)
        media.begin("output", obs.id)
        obs.output = self._prepared(obs.output, ser)
        if obs.metadata:
            media.begin("metadata", obs.id)
            metadata = ser.to_jsonable(obs.metadata)
            obs.metadata = self._masked(metadata) if self._mask is not None else self._short_lists_shared(metadata)
        if obs.model_parameters:
            obs.model_parameters = self._masked(ser.to_jsonable(obs.model_parameters))
        if obs.status_message and self._mask is not None:  # exception texts quote user data
            obs.status_message = self._masked_text(obs.status_message)
        if obs.type == "GENERATION" and obs.model and obs.usage_details and not obs.cost_details:
            try:
                obs.cost_details = cost_for(obs.model, obs.usage_details)
            except Exception:
                log.debug("lftrace: pricing failed for %s", obs.model, exc_info=True)

    def _short_lists_shared(self, metadata: Any) -> Any:
        """``metadata`` with each short list of texts that an earlier observation's metadata held too replaced by
        that same list object (LangGraph's ``langgraph_triggers`` and ``langgraph_path``, the same at most steps).

        The lists ``to_jsonable`` made are then freed at once instead of living until the trace or part is
        written: in a long run they were ~2 of the ~4 containers each observation kept alive, and each one kept
        alive counts toward the garbage collector's next young collection, which walks the young conversation-
        sized lists of the step. Not with a mask (it may change the values in place); nothing changes a prepared
        observation's metadata in place after this."""
        if type(metadata) is not dict:
            return metadata
        shared = self._shared_lists
        for key, value in metadata.items():
            if type(value) is list and 0 < len(value) <= SHARED_LIST_ITEMS and all(type(v) is str for v in value):
                seen = shared.get(value_key := tuple(value))
                if seen is None:
                    if len(shared) >= SHARED_LISTS_KEPT:
                        shared.clear()
                    shared[value_key] = value
                else:
                    metadata[key] = seen  # the same key: no change in the dict's size while it is walked
        return metadata

    def _masked_text(self, value: str | None) -> str | None:
        """A text field (name, session id, status message) through the mask; stays a string."""
        if value is None or self._mask is None:
            return value
        masked = self._masked(value)
        return masked if isinstance(masked, str) or masked is None else str(masked)

    def _masked(self, value: Any) -> Any:
        if self._mask is None or value is None:
            return value
        try:
            return self._mask(data=value)
        except Exception:
            log.warning("lftrace: the mask function raised; the value was fully masked", exc_info=True)
            return MASK_FAILED


def _repaired_value(value: Any) -> Any:
    if is_json_text(value):  # written by orjson: valid UTF-8, nothing to repair
        return value
    if type(value) is Extended:
        value = value.flat()
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else str(value)
    if isinstance(value, dict):
        return {encodable(str(k)): _repaired_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_repaired_value(v) for v in value]
    return encodable(str(value))


def _repair_fields(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        name, value = f.name, getattr(obj, f.name)
        if name in ("observations", "media"):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            setattr(obj, name, max(INT64[0], min(value, INT64[1])))  # a column: clamp, keep the type
        else:
            setattr(obj, name, _repaired_value(value))


def repair_trace(trace: Trace) -> Trace:
    """The trace with every value SQLite refuses made storable, in place (so export sends the same)."""
    _repair_fields(trace)
    for obs in trace.observations:
        _repair_fields(obs)
    return trace
