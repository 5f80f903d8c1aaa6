"""Backend commands: ``push``, ``status``, ``doctor``; and what ``run``/``show --remote`` need from a backend.

``run`` calls ``describe_destination_result(settings, store, trace_id, report)`` to print where the trace went
(the Langfuse URL, or "queued: N traces pending (reason)"); ``show --remote ID`` calls
``fetch_remote_trace(settings, trace_id)``.

httpx, protobuf and the exporters are imported inside the commands, so ``lftrace --help`` stays fast.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..config import Settings, mask_secret, redact_url, redact_urls
from ..errors import BackendError, ConfigError, ExitStatus, LftraceError
from ..sanitize import clean_line
from .app import app, open_store, resolve_settings
from .options import JsonOption

if TYPE_CHECKING:
    from ..delivery import DeliveryReport
    from ..model import Trace
    from ..store import TraceStore

PUSH_DEADLINE_S = 120.0  # `push` is explicit: give a big backlog time, retries stay bounded per batch
NO_BACKEND = (
    "no export backend configured: set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL), "
    "or OTEL_EXPORTER_OTLP_ENDPOINT"
)


def _echo(text: str, err: bool = False) -> None:
    """A line that holds data (destination names, server answers, paths): control sequences shown escaped,
    credentials inside URLs masked."""
    typer.echo(redact_urls(clean_line(text)), err=err)


# ---------------------------------------------------------------- push


@app.command("push")
def push_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
    all_traces: Annotated[
        bool,
        typer.Option("--all", help="Also queue traces recorded before this backend was configured."),
    ] = False,
) -> None:
    """Send every trace not yet delivered (failed ones included) to Langfuse / the OTLP endpoint.

    A second push sends nothing. Exit 6 when a backend is unreachable or rejects the traces (they stay queued).

    [bold]Example[/bold]

      lftrace push --dry-run
      lftrace push --all
    """
    from ..delivery import Deliverer, destinations_for

    settings = resolve_settings()
    destinations = destinations_for(settings)
    if not destinations:
        raise ConfigError(NO_BACKEND)
    store = open_store()
    try:
        if all_traces:
            for dest in destinations:
                added = store.enqueue(dest.name)
                if added:
                    _echo(f"{dest.name}: queued {added} older trace{'s' if added != 1 else ''}")
        if dry_run:
            counts = store.delivery_counts()
            for dest in destinations:
                entry = counts.get(dest.name, {})
                waiting = int(entry.get("pending", 0)) + int(entry.get("failed", 0))
                _echo(f"{dest.name}: would send {waiting} trace{'s' if waiting != 1 else ''} (dry run)")
            return
        deliverer = Deliverer(store, destinations, settings, recall_outages=False)  # the explicit retry: in full
        try:
            report = deliverer.deliver(time.monotonic() + max(PUSH_DEADLINE_S, settings.timeout), include_failed=True)
        finally:
            deliverer.stop()
        for d in report.destinations:
            line = f"{d.name}: delivered {d.delivered}, pending {d.pending}, failed {d.failed}"
            _echo(line + (f" ({d.last_error})" if (d.pending or d.failed) and d.last_error else ""))
        if report.pending or report.failed:
            raise BackendError(report.summary())
    finally:
        store.close()


# ---------------------------------------------------------------- status


@app.command("status")
def status_command(as_json: JsonOption = False) -> None:
    """Show delivered / pending / failed trace counts per destination, with the last error.

    Scores of sessions and dataset runs (they have no trace) are counted apart.

    The counts come from the local store's outbox: nothing is sent (lftrace push sends).

    [bold]Example[/bold]

      lftrace status
      lftrace status --json
    """
    from ..delivery import destination_names
    from ..store import no_deliveries

    settings = resolve_settings()
    configured = destination_names(settings)
    counts: dict[str, dict[str, Any]] = {}
    if settings.store.exists():
        store = open_store()
        try:
            counts = store.delivery_counts()
        finally:
            store.close()
    rows: dict[str, dict[str, Any]] = {name: no_deliveries() for name in configured}
    for name, entry in counts.items():
        rows[name] = {**rows.get(name, {}), **entry}
    if as_json:
        typer.echo(  # JSON stays exact (json.dumps escapes control characters itself)
            json.dumps(
                {
                    "destinations": [
                        {"name": name, "configured": name in configured, **row} for name, row in rows.items()
                    ]
                },
                indent=2,
            )
        )
        return
    if not rows:
        _echo("no export destination configured and nothing queued (traces stay local)")
        return
    for name, row in rows.items():
        note = "" if name in configured else " (not configured now)"
        line = f"{name}{note}: delivered {row['delivered']}, pending {row['pending']}, failed {row['failed']}"
        if row.get("running"):  # queued by a long run's parts: sent when it ends (or once its process is gone)
            line += f", running {row['running']} (sent when the run ends)"
        scores = row["scores"]
        if any(scores.values()):  # scores of sessions and dataset runs have outbox rows of their own
            line += (
                f" (traces); scores of sessions and dataset runs: delivered {scores['delivered']},"
                f" pending {scores['pending']}, failed {scores['failed']}"
            )
        _echo(line)
        waiting = row["pending"] or row["failed"] or scores["pending"] or scores["failed"]
        if row.get("last_error") and waiting:
            _echo(f"  last error: {row['last_error']}")


# ---------------------------------------------------------------- doctor


@app.command("doctor")
def doctor_command() -> None:
    """Check the configuration: Langfuse host and keys, the OTLP endpoint, the local store.

    Says exactly what is wrong; exit 6 when a configured backend is unreachable or rejects the keys.

    [bold]Example[/bold]

      LANGFUSE_BASE_URL=http://localhost:3000 lftrace doctor
    """
    settings = resolve_settings()
    _echo(f"Settings from: {_sources_line(settings)}")
    _echo("Configuration (secrets masked):")
    for key, value in settings.masked().items():
        _echo(f"  {key}: {value}")
    problems = [*_check_langfuse(settings), *_check_otlp(settings)]
    if settings.langfuse_enabled or settings.otlp_endpoint:
        from ..export_process import mode_line

        _echo(f"info  delivery {mode_line(settings)}")
    _check_store(settings)
    if problems:
        _echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
        raise typer.Exit(int(ExitStatus.BACKEND))
    _echo("all checks passed")


def _sources_line(settings: Settings) -> str:
    """Which .env was read and what it set (doctor): the file a user must check when traces go elsewhere."""
    from_dotenv = sorted(name for name, src in settings.sources.items() if src.startswith(".env"))
    if settings.dotenv is None:
        return "arguments and the environment (no .env read)"
    what = f" (it set: {', '.join(from_dotenv)})" if from_dotenv else " (it set nothing the environment had not)"
    return f"the environment and {settings.dotenv}{what}"


def _ok(text: str) -> None:
    _echo(f"ok    {text}")


def _bad(text: str) -> str:
    _echo(f"FAIL  {text}")
    return text


def _check_langfuse(settings: Settings) -> list[str]:
    from ..exporters import langfuse_api

    host = settings.base_url
    if not settings.public_key and not settings.secret_key:
        _echo("off   Langfuse export (set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY to turn it on)")
        return []
    if not (settings.public_key and settings.secret_key):
        missing = "LANGFUSE_SECRET_KEY" if settings.public_key else "LANGFUSE_PUBLIC_KEY"
        return [_bad(f"Langfuse: {missing} is not set (both keys are needed; export is off)")]
    try:
        info = langfuse_api.health(host, timeout=settings.timeout, headers=settings.langfuse_headers)
        _ok(f"Langfuse at {host} is up (status {info.get('status')}, version {info.get('version', '?')})")
    except BackendError as exc:
        return [_bad(str(exc))]
    try:
        pid = langfuse_api.project_id(
            host, settings.public_key, settings.secret_key, timeout=settings.timeout, headers=settings.langfuse_headers
        )
    except BackendError as exc:
        return [_bad(str(exc))]
    _ok(f"Langfuse keys accepted ({mask_secret(settings.public_key)}), project {pid}")
    _cache_project_id(settings, pid)
    return []


def _check_otlp(settings: Settings) -> list[str]:
    if not settings.otlp_endpoint:
        _echo("off   OTLP export (set OTEL_EXPORTER_OTLP_ENDPOINT to turn it on)")
        return []
    from ..exporters.otlp import OtlpExporter

    exporter = OtlpExporter(
        settings.otlp_endpoint, settings.otlp_headers, settings.timeout, compression=settings.otlp_compression
    )
    try:
        result = exporter.send(b"")  # an empty ExportTraceServiceRequest: valid and harmless
    finally:
        exporter.close()
    if result.ok:
        _ok(f"OTLP endpoint {settings.otlp_endpoint} accepts traces")
        return []
    hint = " (the path should end in /v1/traces)" if result.status == 404 else ""
    return [_bad(f"OTLP endpoint: {result.message}{hint}")]


def _check_store(settings: Settings) -> None:
    path = settings.store
    if not path.exists():
        _echo(f"info  store {path} does not exist yet (created by the first `lftrace run`)")
        return
    try:
        store = open_store()
    except LftraceError as exc:
        _echo(f"FAIL  {exc}")
        return
    try:
        try:
            store.verify(full=True)  # PRAGMA quick_check over the whole file, whatever its size
        except LftraceError as exc:
            _echo(f"FAIL  {exc}")
            return
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
        _ok(f"store {path}: {store.count_traces()} traces, {size / 1e6:.1f} MB")
        for name, entry in store.delivery_counts().items():
            _echo(f"      {name}: delivered {entry['delivered']}, pending {entry['pending']}, failed {entry['failed']}")
    finally:
        store.close()


# ---------------------------------------------------------------- for run and show --remote


def _cache_project_id(settings: Settings, project_id: str) -> None:
    if not settings.store.exists():
        return
    try:
        store = open_store()
        try:
            from ..exporters.langfuse_api import project_meta_key

            store.set_meta(project_meta_key(settings), project_id)
        finally:
            store.close()
    except LftraceError:
        pass


def langfuse_trace_url(settings: Settings, trace_id: str, store: TraceStore | None = None) -> str:
    """``{host}/project/{projectId}/traces/{traceId}``; the project id is cached in the store meta.

    Without a project id (server unreachable) ``{host}/trace/{traceId}``, which Langfuse redirects.
    """
    from ..exporters.langfuse_api import cached_project_id

    shown = redact_url(settings.base_url.rstrip("/"))  # printed: a password inside the URL never is
    pid = cached_project_id(settings, store)
    return f"{shown}/project/{pid}/traces/{trace_id}" if pid else f"{shown}/trace/{trace_id}"


def describe_destination_result(
    settings: Settings,
    store: TraceStore,
    trace_id: str,
    report: DeliveryReport | None = None,
) -> list[str]:
    """Lines saying where ``trace_id`` went: a Langfuse URL, the OTLP endpoint, or 'queued: ...'.

    ``report`` is the client's ``last_delivery`` (for the reason of a failure); without it the store's
    last error is used. No destination configured -> no lines (the trace is local only).
    """
    from ..delivery import DEADLINE_REACHED, destination_names

    names = destination_names(settings)
    if not names:
        return []
    state = store.delivery_state(trace_id)
    counts = store.delivery_counts()
    lines: list[str] = []
    for name in names:
        status = state.get(name, "pending")
        entry = counts.get(name, {})
        if status == "delivered":
            if name.startswith("langfuse:"):
                lines.append(langfuse_trace_url(settings, trace_id, store))
            else:
                lines.append(f"sent to {name.split(':', 1)[1]}")
            continue
        waiting = int(entry.get("pending", 0)) + int(entry.get("failed", 0))
        reason = None
        if report is not None:
            reason = next((d.last_error for d in report.destinations if d.name == name and d.last_error), None)
        reason = reason or entry.get("last_error") or "not sent yet"
        noun = "trace" if waiting == 1 else "traces"
        kind = "failed" if status == "failed" else "pending"
        fix = "run `lftrace push` to retry"
        if reason.startswith(DEADLINE_REACHED):  # a slow or long delivery, not a failing one
            fix = "run `lftrace push` to send the rest (LANGFUSE_TIMEOUT gives a run's delivery more time)"
        lines.append(f"queued: {waiting} {noun} {kind} for {name} ({reason}); {fix}")
    return lines


def fetch_remote_trace(settings: Settings, trace_id: str) -> Trace:
    """The trace as Langfuse stored it (for ``lftrace show --remote ID``)."""
    from ..exporters import langfuse_api

    if not (settings.public_key and settings.secret_key):
        raise ConfigError("--remote needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL)")
    return langfuse_api.fetch_trace(
        settings.base_url,
        settings.public_key,
        settings.secret_key,
        trace_id,
        timeout=settings.timeout,
        headers=settings.langfuse_headers,
    )
