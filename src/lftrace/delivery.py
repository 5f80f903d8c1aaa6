"""Outbox delivery: per destination, claim -> export -> mark, bounded by a deadline.

The store is the outbox: every trace written gets a 'pending' row per destination. ``Deliverer.deliver``
claims batches (a lease, so two processes flushing one store never send a trace twice), exports them and
marks the rows: delivered; pending again on 429/5xx/connection errors (retried with exponential backoff
and jitter, honouring Retry-After, but never past the deadline); failed on other 4xx (kept with the
server's message, retried only by ``lftrace push``). Nothing is ever deleted.

Backoff between calls is kept in memory (``_not_before``) so a new process - ``lftrace push`` - always
tries at once; only a server's explicit Retry-After is written to the store.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .config import redact_urls
from .errors import LftraceError
from .model import ScoreItem, score_key, scored

if TYPE_CHECKING:
    from .config import Settings
    from .exporters.otlp import ExportResult
    from .model import Trace
    from .store import TraceStore

log = logging.getLogger("lftrace.delivery")

BATCH_TRACES = 100  # traces per claim (the exporter further splits requests at ~4 MB)
MIN_ATTEMPT_S = 0.05  # don't start an export with less time than this left
PAGED_OVER = 1000  # traces with more observations are exported page by page, streamed from the store
PAGE_OBSERVATIONS = 200  # observations per page (each request is further split at ~4 MB)
RECENT_TRACES = 256  # just-written traces kept in memory for export, so delivery need not read them back
RUNNING_TRACES = 1024  # running traces whose sent parts are remembered (the oldest forgotten: sent whole at the end)
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_IN_CALL_S = 2.0
BACKOFF_MAX_BETWEEN_CALLS_S = 60.0
MAX_RETRY_AFTER_S = 300.0  # a server's Retry-After is honoured up to 5 minutes, never more
DEADLINE_REACHED = "delivery deadline reached"  # a reason's start: the request had what was left of the deadline
MAX_ATTEMPTS_IN_CALL = 4  # per batch and call: a long `lftrace push` deadline must not hammer a dead server
# ... and 1 while the destination is known to be down (the call before ended with it unavailable, none has reached it
# since): a program that flushes after every request pays one failed attempt per flush during an outage (a refused
# connection: ~1 ms), not the in-call backoff (0.1 + 0.2 + 0.4 s); the first call after an answer retries again
ATTEMPTS_WHILE_DOWN = 1
# ... and also from the start of a process when the store says a delivery to it ended unavailable this recently and
# nothing has got through since: each `lftrace run` (a fresh process) of a CI job during an outage would otherwise
# pay the in-call backoff again. `lftrace push` (the explicit retry) always retries in full.
DOWN_REMEMBERED_S = 300.0


def _encoded(exporter: Any, trace: Trace) -> Any:
    """The trace as ``exporter`` sends it, if it can encode ahead (OTLP exporters), else the trace itself."""
    encode = getattr(exporter, "encoded", None)
    if encode is None:
        return trace
    try:
        return encode(trace)
    except Exception:  # a trace that cannot be encoded: delivery reads it from the store and reports the problem
        log.debug("lftrace: could not encode trace %s ahead of delivery", trace.id, exc_info=True)
        return trace


class Exporter(Protocol):
    def export(self, traces: Sequence[Any], *, timeout: float | None = None) -> ExportResult: ...

    def close(self) -> None: ...


@dataclass
class Destination:
    name: str  # "langfuse:{base_url}" or "otlp:{endpoint}": the outbox key
    exporter: Exporter


def destinations_for(settings: Settings) -> list[Destination]:
    """Langfuse when both keys are set, the OTLP endpoint when set; both can be on."""
    from .exporters.attributes import with_cost
    from .exporters.otlp import LangfuseExporter, OtlpExporter

    resource = {"deployment.environment.name": settings.environment}
    if settings.release:
        resource["service.version"] = settings.release
    out: list[Destination] = []
    if settings.langfuse_enabled:
        assert settings.public_key and settings.secret_key
        exporter = LangfuseExporter(
            settings.base_url,
            settings.public_key,
            settings.secret_key,
            settings.timeout,
            resource,
            compression=settings.langfuse_compression or settings.otlp_compression,
            extra_headers=settings.langfuse_headers,
            path=settings.langfuse_otlp_path,
        )
        exporter.profile = with_cost(exporter.profile, settings.export_cost)
        out.append(Destination(langfuse_destination_name(settings.base_url), exporter))
    if settings.otlp_endpoint:
        otlp = OtlpExporter(
            settings.otlp_endpoint,
            settings.otlp_headers,
            settings.timeout,
            resource,
            compression=settings.otlp_compression,
        )
        otlp.profile = with_cost(otlp.profile, settings.export_cost)
        out.append(Destination(otlp_destination_name(settings.otlp_endpoint), otlp))
    return out


def langfuse_destination_name(base_url: str) -> str:
    """The outbox key (stored, printed): a password or key inside the URL never appears in it."""
    from .config import redact_url

    return f"langfuse:{redact_url(base_url.rstrip('/'))}"


def otlp_destination_name(endpoint: str) -> str:
    from .config import redact_url

    return f"otlp:{redact_url(endpoint)}"


def destination_names(settings: Settings) -> list[str]:
    """The outbox keys ``destinations_for`` would use, without building exporters."""
    names = []
    if settings.langfuse_enabled:
        names.append(langfuse_destination_name(settings.base_url))
    if settings.otlp_endpoint:
        names.append(otlp_destination_name(settings.otlp_endpoint))
    return names


def _items(count: int, scores: int) -> str:
    """``3 traces``, ``1 trace and 2 scores``, ``2 scores``: outbox rows, the standalone scores among them apart."""
    traces = count - scores
    parts = [f"{traces} trace{'s' * (traces != 1)}"] if traces or not scores else []
    parts += [f"{scores} score{'s' * (scores != 1)}"] if scores else []
    return " and ".join(parts)


@dataclass
class DestinationReport:
    name: str
    delivered: int = 0  # by this call
    pending: int = 0  # left in the outbox after this call
    failed: int = 0
    last_error: str | None = None
    blocked: list[str] = field(default_factory=list)  # why waiting rows could not be sent by this call
    delivered_scores: int = 0  # of ``delivered``: standalone scores (a session's, a dataset run's), not traces
    waiting_scores: int = 0  # of ``pending`` + ``failed``: the same


@dataclass
class DeliveryReport:
    destinations: list[DestinationReport] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return sum(d.delivered for d in self.destinations)

    @property
    def pending(self) -> int:
        return sum(d.pending for d in self.destinations)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.destinations)

    @property
    def last_error(self) -> str | None:
        for d in self.destinations:
            if d.last_error and (d.pending or d.failed):
                return d.last_error
        return None

    def summary(self) -> str:
        """One line for the CLI: 'delivered 3 traces' or 'queued: 2 traces pending (reason)' (standalone scores
        counted apart: 'delivered 1 trace and 2 scores')."""
        if self.pending or self.failed:
            waiting = self.pending + self.failed
            blocked = [why for d in self.destinations for why in d.blocked]
            detail = "; ".join(([self.last_error] if self.last_error else []) + blocked)
            reason = f" ({detail})" if detail else ""
            kind = "pending" if not self.failed else ("failed" if not self.pending else "pending or failed")
            scores = sum(d.waiting_scores for d in self.destinations)
            return f"queued: {_items(waiting, scores)} {kind}{reason}"
        if not self.delivered:
            return "nothing to deliver"
        return f"delivered {_items(self.delivered, sum(d.delivered_scores for d in self.destinations))}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryReport:
        """The report ``to_dict`` wrote (sent by the delivery helper process)."""
        names = {f.name for f in dataclasses.fields(DestinationReport)}
        return cls([DestinationReport(**{k: v for k, v in d.items() if k in names}) for d in data["destinations"]])

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "pending": self.pending,
            "failed": self.failed,
            "last_error": self.last_error,
            "destinations": [vars(d) for d in self.destinations],
        }


class Deliverer:
    """Drains the outbox to each destination; ``deliver`` on flush, a background thread in between."""

    def __init__(
        self,
        store: TraceStore,
        destinations: Sequence[Destination],
        settings: Settings,
        *,
        recall_outages: bool = True,
    ) -> None:
        self.store = store
        self.destinations = list(destinations)
        self.settings = settings
        from .store import lease_owner

        self.owner = lease_owner()  # host, pid and start time: a claim dies with this process
        self._lock = threading.Lock()  # one delivery at a time in this process (flush waits for the background)
        self._not_before: dict[str, float] = {}  # destination -> monotonic time before which we don't retry
        self._failures: dict[str, int] = {}  # consecutive retryable failures per destination
        # destinations whose recent outage (another process's, in the store) is yet to be looked up: see
        # DOWN_REMEMBERED_S; empty for `lftrace push`
        self._to_recall: set[str] = {d.name for d in self.destinations} if recall_outages else set()
        # trace id -> {destination: the trace as its exporter sends it}; insertion-ordered; bounded by RECENT_TRACES
        self._recent: dict[str, dict[str, Any]] = {}
        self._recent_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written_since_wake = 0
        self.eager = False  # wake on every write, not per flush_at traces (the export helper, to this machine)
        # parts of running traces (the export helper sends them as they are written, see send_running):
        # (trace id, destination) -> last_written position sent; ids written since, to send
        self._sent_through: dict[tuple[str, str], int] = {}
        self._running: set[str] = set()
        self.stream_running = False  # send parts of running traces as they are written (the export helper)
        self._media_sent: set[tuple[str, str, str]] = set()  # (destination, trace id, media id) uploaded

    # ------------------------------------------------------------ foreground
    def deliver_now(self, include_failed: bool = False) -> DeliveryReport:
        return self.deliver(time.monotonic() + self.settings.timeout, include_failed=include_failed)

    def deliver(
        self, deadline: float, include_failed: bool = False, *, respect_backoff: bool = False
    ) -> DeliveryReport:
        """Export what is due before ``deadline`` (time.monotonic()); never raises for export problems.

        ``respect_backoff`` (the background thread): skip destinations still backing off, and leave out of the
        report what is left in the outbox (nobody reads it; counting reads every outbox row).
        """
        report = DeliveryReport([DestinationReport(d.name) for d in self.destinations])
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            self._fill_counts(report)
            return report
        try:
            for dest, dest_report in zip(self.destinations, report.destinations, strict=True):
                if respect_backoff and self._not_before.get(dest.name, 0.0) > time.monotonic():
                    continue
                self._deliver_destination(dest, dest_report, deadline, include_failed)
        finally:
            self._lock.release()
        if not respect_backoff:
            self._fill_counts(report)
        return report

    def _fill_counts(self, report: DeliveryReport) -> None:
        try:
            counts = self.store.waiting_counts([d.name for d in report.destinations])
        except LftraceError as exc:
            log.warning("lftrace: cannot read delivery counts: %s", exc)
            return
        for d in report.destinations:
            entry = counts.get(d.name, {})
            d.pending = int(entry.get("pending", 0))
            d.failed = int(entry.get("failed", 0))
            d.waiting_scores = int(entry.get("scores", 0))
            d.last_error = d.last_error or entry.get("last_error")
            if d.pending or d.failed:
                try:
                    d.blocked = self.store.undeliverable_reasons(d.name)
                except LftraceError as exc:
                    log.debug("lftrace: cannot read why deliveries wait: %s", exc)

    def _deliver_destination(
        self, dest: Destination, report: DestinationReport, deadline: float, include_failed: bool
    ) -> None:
        seen: set[str] = set()  # tried in this call: a failed batch must not be claimed again and again
        self._recall_outage(dest.name)
        while time.monotonic() + MIN_ATTEMPT_S < deadline:
            lease = max(60.0, (deadline - time.monotonic()) * 2)
            limit = BATCH_TRACES + len(seen)
            revisions = dict(
                self.store.claim_revisions(dest.name, self.owner, limit, lease, include_failed=include_failed)
            )
            claimed = list(revisions)
            again = [i for i in claimed if i in seen]
            ids = [i for i in claimed if i not in seen][:BATCH_TRACES]
            unused = again + [i for i in claimed if i not in seen][BATCH_TRACES:]
            if unused:
                self.store.release(dest.name, unused)
            if not ids:
                return
            seen.update(ids)
            try:
                if not self._export_claimed(dest, ids, revisions, report, deadline):
                    return  # retryable: the rest waits for the next call; rejected keys/URL: the rest would fail too
            except BaseException:
                # Ctrl-C or SIGTERM mid-export (a notebook's interrupt, a program that goes on): the batch is
                # claimable again at once, by this process too, not only when its lease runs out
                self._release_quietly(dest.name, ids)
                raise

    def _export_claimed(
        self,
        dest: Destination,
        ids: list[str],
        revisions: Mapping[str, int],
        report: DestinationReport,
        deadline: float,
    ) -> bool:
        """Export one claimed batch: long traces page by page (only what their parts sent while they ran did not
        cover), the rest in one go. True to go on."""
        counts = self.store.observation_counts(ids)
        paged = [i for i in ids if counts.get(i, 0) > PAGED_OVER or (i, dest.name) in self._sent_through]
        for trace_id in paged:
            if not self._export_pages(dest, trace_id, report, deadline):
                return False
        ids = [i for i in ids if i not in paged]
        if not ids:
            return True
        traces, missing = self._load(ids, revisions, dest.name)
        if missing:
            self.store.mark_failed(dest.name, missing, "trace could not be read from the local store")
        if not traces:
            return True
        return self._export_batch(dest, traces, report, deadline)

    def _release_quietly(self, destination: str, ids: Sequence[str]) -> None:
        """Give claimed rows back (delivered ones keep their status: a release only clears the claim)."""
        try:
            self.store.release(destination, ids)
        except Exception:  # the lease still expires on its own
            log.debug("lftrace: could not release %d claimed traces", len(ids), exc_info=True)

    def _export_pages(self, dest: Destination, trace_id: str, report: DestinationReport, deadline: float) -> bool:
        """A long trace, streamed from the store a page at a time (bounded memory); delivered after its last page.

        The spans of a trace may arrive in several requests (OTLP spans are independent); a page that fails
        leaves the trace to be sent again whole later (Langfuse upserts spans by id). True to go on.
        """
        sent = False
        through = self._sent_through.get((trace_id, dest.name))
        upto = None if through is None else self.store.last_written(trace_id)
        written = None if through is None else (through, through if upto is None else upto)
        try:
            pages = self.store.trace_pages(trace_id, PAGE_OBSERVATIONS, as_text=True, written=written, open_before=True)
            for page in pages:  # what the parts did not send: written since, and the open ones they skipped
                if not self._export_batch(dest, [page], report, deadline, page=True):
                    return False
                sent = True
        finally:  # the lists kept to read its pages (and parts) are not needed again
            self.store.forget_text_lists()
        if not sent and written is None:
            self.store.mark_failed(dest.name, [trace_id], "trace could not be read from the local store")
            return True
        self._sent_through.pop((trace_id, dest.name), None)
        self.store.mark_delivered(dest.name, [trace_id])
        report.delivered += 1
        return True

    def running_written(self, trace_ids: Sequence[str]) -> None:
        """Parts of these running traces were just written: with ``stream_running``, send them soon (``wake``)."""
        if self.stream_running and trace_ids:
            with self._recent_lock:
                self._running.update(trace_ids)
            self.wake()

    def send_running(self, deadline: float) -> None:
        """Send what was written of running traces since their last part was sent, page by page.

        A long run's spans then go out while it runs, as OpenTelemetry exporters send spans as they end, instead
        of all after it; the trace's delivery at its end sends only the rest (its outbox row is made then). A part
        that fails is left for that delivery: the positions sent are kept in memory only, so a new process
        sends a trace whole (Langfuse and collectors upsert spans by id).
        """
        with self._recent_lock:
            pending, self._running = self._running, set()
        for trace_id in pending:
            upto = self.store.last_written(trace_id, running=True)
            if upto is None:  # ended meanwhile (maybe delivered already): its delivery sends what parts did not
                continue
            for dest in self.destinations:
                if self._not_before.get(dest.name, 0.0) > time.monotonic() or time.monotonic() > deadline:
                    continue
                key = (trace_id, dest.name)
                after = self._sent_through.get(key, -1)
                if upto <= after:
                    continue
                pages = self.store.trace_pages(
                    trace_id, PAGE_OBSERVATIONS, as_text=True, written=(after, upto), ids=False
                )
                for page in pages:
                    # the run's own root is stored open with its first part: it goes once, whole, at the run's end
                    page.observations = [o for o in page.observations if o.end_time is not None]
                    # its observations' parents may be running still: not roots (those carry the trace's fields)
                    page.ids = frozenset(o.parent_id for o in page.observations if o.parent_id)
                    if page.observations and not self._send_part(dest, page, deadline):
                        break
                else:
                    self._sent_through[key] = upto
        while len(self._sent_through) > RUNNING_TRACES * max(len(self.destinations), 1):
            del self._sent_through[next(iter(self._sent_through))]

    def _send_part(self, dest: Destination, page: Any, deadline: float) -> bool:
        """One page of a running trace, tried once. A failure holds parts back from this destination for a while
        (the trace's delivery at its end retries as usual); True if sent."""
        timeout = max(min(self.settings.timeout, deadline - time.monotonic()), 0.05)
        try:
            ok = dest.exporter.export([page], timeout=timeout).ok
        except Exception:  # an exporter bug: the trace is sent whole at its end
            log.debug("lftrace: sending part of trace %s failed", page.id, exc_info=True)
            ok = False
        if not ok:
            self._not_before[dest.name] = time.monotonic() + BACKOFF_MAX_IN_CALL_S
        return ok

    def written(self, traces: Sequence[Trace], merged: Sequence[str], running: Sequence[str] = ()) -> None:
        """The writer committed ``traces`` (new to the store), merged into ``merged`` and wrote parts of the
        ``running`` ones: deliver them in batches.

        The background thread is woken once ``flush_at`` traces wait (else its interval timer, or a flush, sends
        them). Waking per trace cost ~400 us of CPU per span in bench/overhead.py.
        """
        self.remember(traces, forget=merged)
        self.running_written(running)
        if traces or merged:
            self.note_written(len(traces) + len(merged))

    def note_written(self, count: int) -> None:
        self._written_since_wake += count
        if self.eager or self._written_since_wake >= self.settings.flush_at:
            self._written_since_wake = 0
            self.wake()

    def remember(self, traces: Sequence[Trace], forget: Sequence[str] = ()) -> None:
        """Traces just committed as new by this process's writer: exported from memory instead of read back.

        ``forget``: ids just merged into (the stored trace is no longer the copy in memory).
        """
        # Encoded now (the writer thread), kept as bytes: holding the traces themselves until the next flush kept
        # their objects alive long enough to age into the garbage collector's oldest generation (~2 us each later)
        ready = [(trace.id, {d.name: _encoded(d.exporter, trace) for d in self.destinations}) for trace in traces]
        with self._recent_lock:
            for trace_id, versions in ready:
                self._recent.pop(trace_id, None)
                self._recent[trace_id] = versions  # the newest version of a rewritten trace
            for trace_id in forget:
                self._recent.pop(trace_id, None)
            while len(self._recent) > RECENT_TRACES:
                del self._recent[next(iter(self._recent))]

    def _load(
        self, ids: Sequence[str], revisions: Mapping[str, int] | None = None, destination: str = ""
    ) -> tuple[list[Any], list[str]]:
        """The claimed traces (recently written ones from memory, the rest in one read); gone ids as missing.

        The memory copy is used only at revision 0 (written once): another process may have merged a fragment into
        a shared trace id since, and then only the store has the whole trace.
        """
        revisions = revisions or {}
        with self._recent_lock:  # used once per destination: a retry reads the store's current version
            cached = {}
            for i in ids:
                versions = self._recent.get(i)
                if versions is not None and destination in versions:
                    cached[i] = versions.pop(destination)
                    if not versions:
                        del self._recent[i]
        cached = {i: t for i, t in cached.items() if revisions.get(i, 0) == 0}
        rest = [i for i in ids if i not in cached]
        found: dict[str, Any] = self._standalone_scores(rest)
        rest = [i for i in rest if i not in found]
        found.update({t.id: t for t in self.store.get_traces(rest)} if rest else {})
        found.update(cached)
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    def _standalone_scores(self, keys: Sequence[str]) -> dict[str, Any]:
        """The claimed outbox keys that are standalone scores (``model.score_key``), as items to export."""
        score_ids = [score_id for key in keys if (score_id := scored(key)) is not None]
        if not score_ids:
            return {}
        return {score_key(s.id): ScoreItem(score_key(s.id), [s]) for s in self.store.standalone_scores(score_ids)}

    def _recall_outage(self, destination: str) -> None:
        """Once per destination and process: a delivery that ended unavailable within ``DOWN_REMEMBERED_S`` (this
        process's or another's, still pending) counts as this process's own last call, so the next attempts are
        ``ATTEMPTS_WHILE_DOWN``. One indexed lookup; a store that cannot say changes nothing."""
        if destination not in self._to_recall:
            return
        self._to_recall.discard(destination)
        if self._failures.get(destination):
            return
        try:
            down = self.store.failed_to_reach_since(destination, time.time_ns() - int(DOWN_REMEMBERED_S * 1e9))
        except LftraceError as exc:
            log.debug("lftrace: cannot read %s's last deliveries: %s", destination, exc)
            return
        if down:
            self._failures[destination] = 1

    def _export_batch(
        self, dest: Destination, traces: list[Any], report: DestinationReport, deadline: float, *, page: bool = False
    ) -> bool:
        """Export one claimed batch, retrying transient failures within the deadline; True to go on.

        Delivered -> True. Rejected (marked failed): 401/403/404 -> False (the next batches would fail too),
        another 4xx -> True (only this batch is bad). Still failing at the deadline (back to pending) -> False.
        ``page``: one page of a long trace: sent is not yet delivered (the caller marks it after the last page),
        and True means sent.
        """
        ids = [t.id for t in traces]
        attempt = 0
        attempts = ATTEMPTS_WHILE_DOWN if self._failures.get(dest.name) else MAX_ATTEMPTS_IN_CALL
        while True:
            remaining = deadline - time.monotonic()
            try:
                timeout = max(min(self.settings.timeout, remaining), 0.05)
                result = self._send_media(dest, ids, timeout)  # first: the spans name the media
                if result.ok:
                    result = dest.exporter.export(traces, timeout=max(min(timeout, deadline - time.monotonic()), 0.05))
            except Exception as exc:  # an exporter bug must not leave the batch claimed
                from .exporters.otlp import ExportResult

                result = ExportResult(ok=False, retryable=True, message=f"export failed: {exc!r}")
            if result.message:  # a credential inside a URL or echoed by the server is never stored or printed
                result = dataclasses.replace(result, message=redact_urls(result.message))
            if result.ok:
                if not page:
                    self.store.mark_delivered(dest.name, ids)
                    report.delivered += len(ids)
                    report.delivered_scores += sum(isinstance(t, ScoreItem) for t in traces)
                self._failures.pop(dest.name, None)
                self._not_before.pop(dest.name, None)
                return True
            if result.timed_out and timeout < self.settings.timeout:
                # the request had only what was left of the deadline: say so, or "timed out after 0.1s" reads as
                # a server that answers in 0.1 s or never (a long run's last parts when a flush's time runs out)
                result = dataclasses.replace(result, message=f"{DEADLINE_REACHED}: {result.message}")
            report.last_error = result.message
            if not result.retryable:
                self.store.mark_failed(dest.name, ids, result.message)
                log.warning("lftrace: %s rejected %d traces: %s", dest.name, len(ids), result.message)
                # a batch-specific 400 lets the next batches go; rejected keys or a wrong URL would fail them all
                return not page and result.status not in (None, 401, 403, 404)
            attempt += 1
            retry_after = clamp_retry_after(result.retry_after)
            wait = retry_after if retry_after is not None else _backoff(attempt, BACKOFF_MAX_IN_CALL_S)
            if attempt < attempts and time.monotonic() + wait + MIN_ATTEMPT_S < deadline:
                time.sleep(wait)
                continue
            # out of time: back to pending; a server's Retry-After is kept in the store for other processes
            failures = self._failures[dest.name] = self._failures.get(dest.name, 0) + 1
            between = max(wait, _backoff(failures, BACKOFF_MAX_BETWEEN_CALLS_S))
            self._not_before[dest.name] = time.monotonic() + between
            next_ns = time.time_ns() + int(retry_after * 1e9) if retry_after else time.time_ns()
            self.store.mark_retry(dest.name, ids, result.message, next_ns)
            log.info("lftrace: %s unavailable (%s); %d traces stay queued", dest.name, result.message, len(ids))
            return False

    def _send_media(self, dest: Destination, ids: Sequence[str], timeout: float) -> Any:
        """The media of these traces (images, files the writer took out of their data) to a destination that takes
        media (Langfuse's media API); each once per process. Ok when there is nothing to send."""
        from .exporters.otlp import ExportResult

        upload = getattr(dest.exporter, "upload_media", None)
        if upload is None:
            return ExportResult(ok=True)
        found = self.store.trace_media([i for i in ids if scored(i) is None])
        links = [
            (tid, link)
            for tid, media in found.items()
            for link in media
            if (dest.name, tid, link.media_id) not in self._media_sent
        ]
        if not links:
            return ExportResult(ok=True)
        where = [({"traceId": tid, "observationId": link.observation_id}, link) for tid, link in links]
        result = upload(where, timeout=timeout)
        if result.ok:
            self._media_sent.update((dest.name, tid, link.media_id) for tid, link in links)
        return result

    # ------------------------------------------------------------ background
    def start_background(self, interval: float) -> None:
        """Deliver every ``interval`` seconds (or on ``wake()``) on a daemon thread, off the user's path."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="lftrace-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                deadline = time.monotonic() + self.settings.timeout
                if self._running:
                    with self._lock:  # one export at a time (a flush's delivery waits for it)
                        self.send_running(deadline)
                self.deliver(deadline, respect_backoff=True)
            except Exception:  # a store problem must not kill the thread
                log.warning("lftrace: background delivery failed", exc_info=True)

    def stop_background(self) -> None:
        """Let the background thread end after what it is doing (without waiting); ``deliver`` still works."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread (waits for an export in flight, bounded) and close the exporters."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.settings.timeout + 1)
            self._thread = None
        for dest in self.destinations:
            try:
                dest.exporter.close()
            except Exception:
                log.debug("lftrace: closing %s failed", dest.name, exc_info=True)


def clamp_retry_after(seconds: float | None) -> float | None:
    """A server's Retry-After made safe: None when absent or not a finite number (``inf``, ``nan``), else within
    0..MAX_RETRY_AFTER_S. A hostile or broken server must not crash delivery or pin a trace for years."""
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None if math.isnan(value) else MAX_RETRY_AFTER_S
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


def _backoff(attempt: int, cap: float) -> float:
    """Exponential with full jitter between half and the whole step."""
    step = min(cap, BACKOFF_BASE_S * (2 ** max(attempt - 1, 0)))
    return step * (0.5 + random.random() / 2)
