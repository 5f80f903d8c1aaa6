"""The Langfuse-compatible client: owns settings, the store, the writer and delivery.

``Langfuse(...)`` and ``get_client()`` keep the official SDK's names and
arguments, so code written for ``langfuse`` works with only the import changed.
Without keys everything goes to the local store; with keys (or an OTLP
endpoint) the store doubles as the outbox that delivery drains.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sdk as _sdk
from .batch_evaluation import BatchEvaluationApi
from .config import Settings, mask_secret, redact_url
from .errors import InputError, LftraceError, StoreError, TraceNotFound
from .experiments import ExperimentApi
from .model import Score, Trace, TraceSummary
from .pricing import keep_rates_beside
from .prompts import PromptApi, PromptCache
from .writer import TraceWriter

if TYPE_CHECKING:
    from .delivery import Deliverer
    from .export_process import DeliveryProcess
    from .public_api import AsyncPublicApi, PublicApi
    from .store import TraceStore

log = logging.getLogger("lftrace")

_clients: dict[str | None, Langfuse] = {}
_default: Langfuse | None = None
_made_for_runs: list[Langfuse] = []  # clients client_for() had to make (not the default one)
_client_for_lock = threading.Lock()  # `lftrace test` cases start on several threads: make one client, not four
_registry_lock = threading.Lock()


class Langfuse(_sdk.TracingApi, PromptApi, ExperimentApi, BatchEvaluationApi):
    """The client. Arguments win over ``LANGFUSE_*`` environment variables, which win over ``.env``."""

    def __init__(
        self,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        host: str | None = None,
        base_url: str | None = None,
        environment: str | None = None,
        release: str | None = None,
        sample_rate: float | None = None,
        tracing_enabled: bool | None = None,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        timeout: float | None = None,
        debug: bool | None = None,
        store: str | Path | None = None,
        mask: Callable[..., Any] | None = None,
        otlp_endpoint: str | None = None,
        otlp_headers: dict[str, str] | None = None,
        **sdk_only: Any,
    ) -> None:
        # Arguments of the official SDK that have no meaning here (httpx_client, media_upload_thread_count, ...)
        # are accepted so that code written for it keeps working; additional_headers and otel_compression apply.
        self.settings = Settings.resolve(
            {
                "public_key": public_key,
                "secret_key": secret_key,
                "host": host,
                "base_url": base_url,
                "environment": environment,
                "release": release,
                "sample_rate": sample_rate,
                "tracing_enabled": tracing_enabled,
                "flush_at": flush_at,
                "flush_interval": flush_interval,
                "timeout": timeout,
                "debug": debug,
                "store": store,
                "otlp_endpoint": otlp_endpoint,
                "otlp_headers": otlp_headers,
                # the SDK's names for Langfuse's own request headers and compression
                "langfuse_headers": sdk_only.pop("additional_headers", None),
                "langfuse_compression": sdk_only.pop("otel_compression", None),
            }
        )
        if sdk_only:
            log.debug("lftrace: ignoring Langfuse SDK arguments %s", sorted(sdk_only))
        self.settings.announce()  # a .env decided where traces (and keys) go: say so, on stderr
        if self.settings.dotenv is not None:
            log.debug("lftrace: read settings from %s", self.settings.dotenv)
        if self.settings.debug:
            logging.getLogger("lftrace").setLevel(logging.DEBUG)
        self.mask = mask
        self._store: TraceStore | None = None
        self._project_id: str | None = None  # of the Langfuse keys, for get_trace_url
        self._prompt_cache = PromptCache()
        self._api: PublicApi | None = None
        self._store_lock = threading.Lock()
        self._deliverer: Deliverer | DeliveryProcess | None = None
        self._destinations: list[str] | None = None
        self._retired: list[Deliverer] = []  # thread delivery a long run moved to the export helper
        self._deliverer_lock = threading.Lock()
        self._closed = False
        self._writer = TraceWriter(
            self._open_store,
            self._destination_names,
            mask=mask,
            media=self.settings.media_upload_enabled,
            batch_size=self.settings.flush_at,
            on_written=self._on_written,
            helper=self._helper,
            streamed_parts=self.settings.streams_parts,
        )
        keep_rates_beside(self.settings.store)  # the next process prices from the rates this one measures
        self.last_delivery: Any = None  # the DeliveryReport of the last flush, for the CLI
        self._store_checked = False
        self._delivered_through = 0  # the writer's count of written traces when delivery last started
        _register(self)
        atexit.register(self._at_exit)

    def __repr__(self) -> str:
        s = self.settings
        base_url = redact_url(s.base_url)
        return f"Langfuse(public_key={mask_secret(s.public_key)!r}, base_url={base_url!r}, store={str(s.store)!r})"

    @property
    def api(self) -> PublicApi:
        """Langfuse's public API under the SDK client's names (``api.observations.get_many(trace_id=...)``, ...):
        Langfuse's with keys, else answered over the local store, as ``lftrace serve`` answers (public_api.py)."""
        if self._api is None:
            from .public_api import PublicApi

            self._api = PublicApi(self)
        return self._api

    def resolve_media_references(
        self,
        *,
        obj: Any,
        resolve_with: str = "base64_data_uri",
        max_depth: int = 10,
        content_fetch_timeout_seconds: int = 5,
    ) -> Any:
        """``obj`` with its media reference strings replaced by data URIs (``LangfuseMedia.resolve_media_references``
        with this client, as the SDK's method)."""
        from .media import LangfuseMedia

        return LangfuseMedia.resolve_media_references(
            obj=obj,
            langfuse_client=self,
            resolve_with=resolve_with,  # type: ignore[arg-type]
            max_depth=max_depth,
            content_fetch_timeout_seconds=content_fetch_timeout_seconds,
        )

    def _media_fetcher(self, timeout: float) -> Callable[[str], tuple[bytes, str] | None]:
        """How ``LangfuseMedia.resolve_media_references`` gets media by id: Langfuse's media API and its download
        URL with keys (no auth sent to the URL: it is presigned), else the store through ``api``."""
        api = self.api
        remote = self.settings.langfuse_enabled

        def fetch(media_id: str) -> tuple[bytes, str] | None:
            record = api.media.get(media_id=media_id)
            if remote:
                import httpx

                got = httpx.get(record.url, timeout=timeout)
            else:
                got = api.http().get(record.url)  # the store's own server, in this process
            from .exporters.otlp import release

            try:
                got.raise_for_status()
                return got.content, str(record.content_type)
            finally:  # the download is not kept until a garbage collection (httpx's response cycle)
                release(got)

        return fetch

    @property
    def async_api(self) -> AsyncPublicApi:
        """``api``, awaited (``await langfuse.async_api.observations.get_many(...)``)."""
        from .public_api import AsyncPublicApi

        return AsyncPublicApi(self.api)

    def iter_observation_pages(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        max_items: int | None = None,
        fields: str | None = None,
        expand_metadata: str | None = None,
        name: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        type: str | None = None,
        trace_id: str | None = None,
        level: str | None = None,
        parent_observation_id: str | None = None,
        is_root_observation: bool | None = None,
        environment: str | Sequence[str] | None = None,
        from_start_time: datetime | None = None,
        to_start_time: datetime | None = None,
        version: str | None = None,
        filter: str | None = None,
        request_options: Any = None,
    ) -> Iterator[Any]:
        """The pages of ``api.observations.get_many(...)`` (``GET /api/public/v2/observations``), one request per
        page, until an answer has no ``meta.cursor``, as the SDK 5 method pages them: every page is yielded, an
        empty one too; ``max_items`` stops after that many rows (the last request asks only for what is left, so
        its cursor resumes right after them); ``cursor`` resumes where a saved ``page.meta.cursor`` left off."""
        query = _observation_query(locals())
        get_many = self.api.observations.get_many
        fetched = 0
        while max_items is None or fetched < max_items:
            wanted = limit if max_items is None else min(limit, max_items - fetched)
            page = get_many(limit=wanted, cursor=cursor, request_options=request_options, **query)
            fetched += len(page.data or ())
            yield page
            cursor = page.meta.cursor if page.meta is not None else None
            if not cursor:
                return

    def aiter_observation_pages(self, **kwargs: Any) -> AsyncIterator[Any]:
        """``iter_observation_pages`` (same arguments), each request awaited on a worker thread."""
        return _awaited(self.iter_observation_pages(**kwargs))

    # -- what the callback handler uses ------------------------------------------------
    @property
    def tracing_active(self) -> bool:
        return self.settings.tracing_enabled and not self._closed

    def should_sample(self, trace_id: str) -> bool:
        """Deterministic by trace id, like OpenTelemetry's TraceIdRatioBased sampler."""
        rate = self.settings.sample_rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return int(trace_id[-16:], 16) < rate * (1 << 64)

    def _submit(self, trace: Trace) -> None:
        """Hand a finished (or partial) trace to the writer thread; never blocks, never raises."""
        try:
            self._writer.submit(trace)
        except Exception:
            log.warning("lftrace: could not queue trace %s", getattr(trace, "id", "?"), exc_info=True)

    def _submit_scores(self, scores: list[Score]) -> None:
        """Scores of a session or a dataset run (no trace) to the writer thread; never blocks, never raises."""
        try:
            self._writer.submit_scores(scores)
        except Exception:
            log.warning("lftrace: could not queue %d score(s)", len(scores), exc_info=True)

    def _submit_fragment(self, trace: Trace) -> None:
        """Finished observations of a still running trace: stored (merged into the trace) but not exported yet.

        The trace row stays open (no end) until ``_submit`` hands over the rest; only then is it queued for export.
        """
        try:
            self._writer.submit_fragment(trace)
        except Exception:
            log.warning("lftrace: could not queue part of trace %s", getattr(trace, "id", "?"), exc_info=True)

    # -- the SDK's public surface ------------------------------------------------------
    def flush(self, *, deliver: bool = True, deliver_within: float | None = None) -> bool:
        """Block until every finished trace is committed to the store, then deliver (bounded by timeout).

        Returns True when every trace is in the store. False when the store could not be written (disk full,
        read-only, permissions): the traces stay in memory and are retried, ``write_error`` says why, and one
        warning is logged. Delivery problems do not make it False: those traces are safe in the outbox.
        ``deliver=False`` only writes (``lftrace test`` delivers once, after its cases).

        Delivery is bounded by one deadline, ``timeout`` seconds from the start of the delivery (or
        ``deliver_within``, when shorter), whatever the backend does (slow, hung, trickling its answer); what is
        not sent by then stays queued.
        """
        written = self._writer.flush()
        if deliver:
            self._deliver(deliver_within)
        return written

    def _deliver(self, within: float | None = None) -> None:
        deliverer = self._get_deliverer()
        if deliverer is None:
            return
        self._delivered_through = self._writer.written
        seconds = self.settings.timeout if within is None else min(within, self.settings.timeout)
        try:
            self.last_delivery = deliverer.deliver(deadline=time.monotonic() + seconds)
        except Exception as exc:  # the trace is on disk and stays queued: export must not break flush
            log.warning("lftrace: delivery failed: %s (traces stay queued; run `lftrace push`)", exc)

    @property
    def write_error(self) -> Exception | None:
        """Why traces wait in memory instead of the store (None when the store takes writes)."""
        if self._writer.write_error is None and self._writer.helper_error:
            return StoreError(self._writer.helper_error)
        return self._writer.write_error

    def shutdown(self) -> None:
        if self._closed:
            return
        self._writer.flush()
        if self._writer.written != self._delivered_through:
            # only what was written since the last delivery: `lftrace run` delivers once, not again at exit
            self._deliver()
        self._closed = True
        if self._api is not None:
            self._api.close()
        self._writer.stop()
        for deliverer in [*self._retired, self._deliverer]:
            if deliverer is not None:
                deliverer.stop()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def auth_check(self) -> bool:
        """True when the Langfuse server accepts the keys (the SDK's ``auth_check``)."""
        if not self.settings.langfuse_enabled:
            return False
        from .exporters.langfuse_api import projects

        try:
            projects(
                self.settings.base_url,
                self.settings.public_key or "",
                self.settings.secret_key or "",
                timeout=self.settings.timeout,
                headers=self.settings.langfuse_headers,
            )
        except Exception as exc:
            log.warning("lftrace: auth check failed: %s", exc)
            return False
        return True

    def get_trace(self, trace_id: str, *, inputs: bool = True) -> Trace:
        """A stored trace by full id or unique prefix (``last`` for the newest). ``inputs=False``: without its
        observations' inputs (a long run's are most of it; ``store.load_inputs`` fills in those wanted)."""
        self._writer.flush()
        store = self._read_store(trace_id)
        if trace_id == "last":
            last = store.last_trace_id()
            if last is None:
                raise TraceNotFound(f"no traces in {self.settings.store} yet (run `lftrace run ...` first)")
            trace_id = last
        return store.get_trace(trace_id, inputs=inputs)

    def get_trace_url(self, *, trace_id: str | None = None) -> str | None:
        """The trace's page in Langfuse, as the SDK gives it: ``{host}/project/{projectId}/traces/{id}`` for
        ``trace_id``, or the current trace (inside a span). None without Langfuse keys, outside a trace, or when
        Langfuse cannot tell the project (asked once, then kept in the store)."""
        final = trace_id or self.get_current_trace_id()
        if not final:
            return None
        if self._project_id is None:
            from .exporters.langfuse_api import cached_project_id

            try:
                store: TraceStore | None = self._open_store()
            except LftraceError:  # no store: no cache, still a link
                store = None
            self._project_id = cached_project_id(self.settings, store)
        if self._project_id is None:
            return None
        return f"{self.settings.base_url.rstrip('/')}/project/{self._project_id}/traces/{final}"

    def list_traces(
        self,
        limit: int = 50,
        name: str | None = None,
        level: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        tag: str | None = None,
        since: datetime | timedelta | str | int | None = None,
    ) -> list[TraceSummary]:
        """Stored traces, newest first, filters combined with AND."""
        self._writer.flush()
        if not self.settings.store.exists():
            return []
        return self._open_store().list_traces(
            limit=limit,
            name=name,
            level=level,
            session_id=session_id,
            user_id=user_id,
            tag=tag,
            since_ns=parse_since(since),
        )

    def check_store(self) -> None:
        """Open the store for writing now: StoreError if it is corrupted, foreign or cannot be written."""
        if not self._store_checked:
            self._open_store().check_writable()
            self._store_checked = True

    def prepare_delivery(self) -> None:
        """Start delivering now (the export helper process takes ~0.1 s to start): a command about to run a graph
        calls it, so that the flush after the run does not wait for that. Nothing without a backend."""
        self._get_deliverer()

    @property
    def store(self) -> TraceStore:
        return self._open_store()

    # -- internals -----------------------------------------------------------------------
    def _open_store(self) -> TraceStore:
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    from .store import TraceStore

                    self._store = TraceStore(self.settings.store)
        return self._store

    def _read_store(self, trace_id: str) -> TraceStore:
        if self._store is None and not self.settings.store.exists():
            raise TraceNotFound(f"no trace '{trace_id}': the store {self.settings.store} does not exist yet")
        return self._open_store()

    def _destination_names(self) -> Sequence[str]:
        """The outbox keys of a trace written now (the writer's first write starts the delivery too)."""
        if self._get_deliverer() is None:
            return ()
        if self._destinations is None:
            from .delivery import destination_names

            self._destinations = destination_names(self.settings)
        return self._destinations

    def _get_deliverer(self) -> Deliverer | DeliveryProcess | None:
        """Only built when a backend is configured, so offline runs never start a helper or import exporters.

        Delivery runs in a helper process (export_process.py) when ``export_process.wanted`` says so, else on a
        thread of this one.
        """
        if self._deliverer is None and (self.settings.langfuse_enabled or self.settings.otlp_endpoint):
            with self._deliverer_lock:
                if self._deliverer is None:
                    from . import export_process

                    if export_process.wanted(self.settings):
                        self._deliverer = export_process.DeliveryProcess(self._open_store, self.settings)
                    else:
                        from .delivery import Deliverer, destinations_for

                        deliverer = Deliverer(self._open_store(), destinations_for(self.settings), self.settings)
                        deliverer.start_background(self.settings.flush_interval)
                        self._deliverer = deliverer
        return self._deliverer

    def _helper(self) -> DeliveryProcess | None:
        """The export helper process, when delivery runs in one: the writer hands it traces to commit too (its
        first write starts it)."""
        deliverer = self._get_deliverer()
        if deliverer is None:
            return None
        from .export_process import DeliveryProcess

        return deliverer if isinstance(deliverer, DeliveryProcess) and deliverer.accepting() else None

    def _on_written(self, traces: list[Trace], merged: list[str], running: list[str]) -> None:
        deliverer = self._deliverer
        if deliverer is None:
            return
        if running:
            deliverer = self._helper_for_long_runs(deliverer)
        deliverer.written(traces, merged, running)

    def _helper_for_long_runs(self, current: Deliverer | DeliveryProcess) -> Deliverer | DeliveryProcess:
        """A long run (parts written while it goes on) moves delivery from a thread of this process to the export
        helper, which sends the parts as they are written and so takes the export off the run's path (measured on
        2 cores before the helper became the default there: 4,000 steps exporting took 1.70x the plain run
        instead of 2.61x, bench/long_run.py). So this happens on one CPU only, and not with
        LFTRACE_EXPORT_PROCESS=false; with true, or 2 CPUs or more, the helper is there from the start."""
        from .delivery import Deliverer

        if self.settings.export_process is not None or not isinstance(current, Deliverer):
            return current
        with self._deliverer_lock:
            if self._deliverer is current:
                from .export_process import DeliveryProcess

                self._deliverer = DeliveryProcess(self._open_store, self.settings)
                self._retired.append(current)
                current.stop_background()  # a flush already in it finishes; the outbox's leases keep both apart
            return self._deliverer or current

    def _at_exit(self) -> None:
        try:
            self.shutdown()
        except Exception:
            log.debug("lftrace: shutdown at exit failed", exc_info=True)

    def _forked(self) -> None:
        """In a child made with fork() (multiprocessing, gunicorn or Celery workers): none of the parent's threads
        run here and its SQLite connection must not be used here (SQLite's rule), so the writer, the store and the
        delivery (a thread, or a helper process of the child's own) start afresh, on first use."""
        self._writer.forked()
        self._store_lock = threading.Lock()
        self._deliverer_lock = threading.Lock()
        # the parent's connection and helper: kept, never used nor closed here (a close could flush a half-written
        # buffer into the parent's helper, or close a descriptor number reused since)
        _inherited.extend(x for x in (self._store, self._deliverer, *self._retired) if x is not None)
        self._store = None
        self._deliverer = None
        self._retired = []


def _register(client: Langfuse) -> None:
    global _default
    with _registry_lock:
        _clients.setdefault(client.settings.public_key, client)
        if _default is None or _default._closed:
            _default = client
        _every_client.add(client)


_every_client: weakref.WeakSet[Langfuse] = weakref.WeakSet()
_inherited: list[Any] = []  # what a forked child holds of its parent's clients (Langfuse._forked)


def _after_fork_in_child() -> None:
    global _registry_lock, _client_for_lock
    _registry_lock = threading.Lock()  # another thread of the parent may have held them at the fork
    _client_for_lock = threading.Lock()
    for client in list(_every_client):
        client._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_client(*, public_key: str | None = None) -> Langfuse:
    """The configured client (the first one created, or the one for ``public_key``); made from the environment if none."""
    with _registry_lock:
        if public_key is not None and public_key in _clients and not _clients[public_key]._closed:
            return _clients[public_key]
        if public_key is None and _default is not None and not _default._closed:
            return _default
    return Langfuse(public_key=public_key)


# what a command decides for its runs; every other setting comes from the environment as usual
_RUN_FIELDS = ("store", "sample_rate", "tracing_enabled")


def client_for(settings: Settings) -> Langfuse:
    """The client that traces a run started by a command (``lftrace run``, ``lftrace test``), given its settings.

    The default client when it already agrees on the store, sampling and tracing switch (so a client the user's
    code configured, with keys or a mask, keeps doing its job); otherwise one made for these settings, once,
    and reused by later calls. It is handed to the runner explicitly: nothing global is changed for it.
    """
    wanted = tuple(getattr(settings, name) for name in _RUN_FIELDS)

    def fits(client: Langfuse | None) -> bool:
        return (
            client is not None
            and not client._closed
            and tuple(getattr(client.settings, n) for n in _RUN_FIELDS) == wanted
        )

    with _client_for_lock:
        with _registry_lock:
            candidates = [_default, *_made_for_runs]
        for client in candidates:
            if fits(client):
                assert client is not None
                return client
        return _make_for_run(settings)


def _make_for_run(settings: Settings) -> Langfuse:
    # with no default client yet this one becomes the default, so get_client() in the user's code finds it too
    client = Langfuse(**{name: getattr(settings, name) for name in _RUN_FIELDS})
    with _registry_lock:
        _made_for_runs.append(client)
    return client


_sdk.client_factory = get_client  # @observe finds the client without importing this module


def reset_clients() -> None:
    """Shut down and forget every client (tests, and the CLI between commands)."""
    global _default
    with _registry_lock:
        every = [*_clients.values(), *([_default] if _default else []), *_made_for_runs]
        clients = list({id(c): c for c in every}.values())
        _clients.clear()
        _made_for_runs.clear()
        _default = None
    for client in clients:
        try:
            client.shutdown()
        except Exception:
            log.debug("lftrace: shutdown failed", exc_info=True)


_SINCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: datetime | timedelta | str | int | None, *, now: datetime | None = None) -> int | None:
    """``30s``/``15m``/``1h``/``2d``/``1w``, an ISO date or datetime, a timedelta or datetime -> ns since epoch."""
    if value is None or value == "":
        return None
    now = now or datetime.now(UTC)
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int((now - value).timestamp() * 1e9)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1e9)
    match = _SINCE_RE.match(value)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int((now - timedelta(seconds=seconds)).timestamp() * 1e9)
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since '{value}' is not a duration or date (use e.g. 30m, 1h, 2d, 1w or 2026-11-26)"
        ) from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


async def _awaited(pages: Iterator[Any]) -> AsyncIterator[Any]:
    done = object()
    while (page := await asyncio.to_thread(next, pages, done)) is not done:
        yield page


_PAGING = ("self", "limit", "cursor", "max_items", "request_options")


def _observation_query(arguments: dict[str, Any]) -> dict[str, Any]:
    """``iter_observation_pages``'s filters, as ``api.observations.get_many`` takes them (None: left out)."""
    return {key: value for key, value in arguments.items() if key not in _PAGING and value is not None}
