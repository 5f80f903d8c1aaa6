"""The background writer: the only place traces are prepared and written.

The handler hands finished traces to ``submit`` (a queue put, ~1 us) and goes
back to the user's program. This thread does the expensive part in batches:
turn captured objects into JSON-able values, apply the user's mask, price
generations, and commit to the store (PERF_FACTS.md: ~15-30 us of CPU per span
that must not run on the user's thread).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .model import Observation, Trace

log = logging.getLogger("lftrace")

MASK_FAILED = "<fully masked due to failed mask function>"


class _FlushMarker:
    """Put on the queue by ``flush``: set once everything submitted before it is committed."""

    def __init__(self) -> None:
        self.done = threading.Event()


class TraceWriter:
    def __init__(
        self,
        open_store: Callable[[], Any],
        destinations: Callable[[], Sequence[str]],
        *,
        mask: Callable[..., Any] | None = None,
        batch_size: int = 512,
        on_written: Callable[[list[Trace], list[str]], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self._destinations = destinations
        self._mask = mask
        self._batch_size = max(1, batch_size)
        self._on_written = on_written
        self._queue: queue.SimpleQueue[Trace | _FlushMarker | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending_retry: list[Trace] = []
        self.written = 0
        self.failed_writes = 0

    # -- called from the user's threads -------------------------------------------------
    def submit(self, trace: Trace) -> None:
        self._ensure_thread()
        self._queue.put(trace)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every trace submitted so far is committed (or failed loudly). True if drained."""
        if self._thread is None:
            return True
        marker = _FlushMarker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

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
            item = self._queue.get()
            batch: list[Trace] = []
            markers: list[_FlushMarker] = []
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, _FlushMarker):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            for marker in markers:
                marker.done.set()

    def _write(self, batch: list[Trace]) -> None:
        batch = self._pending_retry + batch
        self._pending_retry = []
        if not batch:
            return
        prepared: list[Trace] = []
        for trace in batch:
            try:
                prepared.append(self.prepare(trace))
            except Exception:  # one broken trace must not sink the batch
                log.warning("lftrace: could not prepare trace %s", trace.id, exc_info=True)
        fresh: set[str] = set()
        for attempt in range(3):
            try:
                # merge: runs sharing a trace id (trace_context, spans around runs, other processes) add up
                fresh = self._open_store().write_traces(prepared, destinations=self._destinations(), merge=True)
                self.written += len(prepared)
                break
            except Exception as exc:
                if attempt == 2:
                    # Keep them for the next batch: a trace is never dropped because one write failed.
                    self.failed_writes += 1
                    self._pending_retry = prepared
                    log.error("lftrace: could not write %d trace(s) to the store (%s); will retry", len(prepared), exc)
                    return
                time.sleep(0.05 * (attempt + 1))
        if self._on_written is not None:
            try:
                merged = list(dict.fromkeys(t.id for t in prepared if t.id not in fresh))
                self._on_written([t for t in prepared if t.id in fresh], merged)
            except Exception:
                log.debug("lftrace: on_written hook failed", exc_info=True)

    def prepare(self, trace: Trace) -> Trace:
        """JSON-able values, masked; generations priced. Mutates and returns the trace."""
        from .pricing import cost_for
        from .serialize import to_jsonable

        trace.input = self._masked(to_jsonable(trace.input))
        trace.output = self._masked(to_jsonable(trace.output))
        trace.metadata = self._masked(to_jsonable(trace.metadata)) if trace.metadata else trace.metadata
        for obs in trace.observations:
            self._prepare_observation(obs, to_jsonable, cost_for)
        ends = [o.end_time for o in trace.observations if o.end_time is not None]
        if ends and (trace.end_time is None or max(ends) > trace.end_time):
            trace.end_time = max(ends)
        return trace

    def _prepare_observation(
        self, obs: Observation, to_jsonable: Callable[[Any], Any], cost_for: Callable[..., Any]
    ) -> None:
        obs.input = self._masked(to_jsonable(obs.input))
        obs.output = self._masked(to_jsonable(obs.output))
        if obs.metadata:
            obs.metadata = self._masked(to_jsonable(obs.metadata))
        if obs.model_parameters:
            obs.model_parameters = to_jsonable(obs.model_parameters)
        if obs.type == "GENERATION" and obs.model and obs.usage_details and not obs.cost_details:
            try:
                obs.cost_details = cost_for(obs.model, obs.usage_details)
            except Exception:
                log.debug("lftrace: pricing failed for %s", obs.model, exc_info=True)

    def _masked(self, value: Any) -> Any:
        if self._mask is None or value is None:
            return value
        try:
            return self._mask(data=value)
        except Exception:
            log.warning("lftrace: the mask function raised; the value was fully masked", exc_info=True)
            return MASK_FAILED
