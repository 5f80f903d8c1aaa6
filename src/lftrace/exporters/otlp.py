"""OTLP/HTTP export: POST the encoded requests (protobuf, gzip) and turn the answer into an ``ExportResult``.

``export(traces) -> ExportResult`` never raises: encode (encode.py), send each request, report. httpx is
imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .._version import __version__
from ..config import is_loopback, mask_secret
from ..model import Trace
from .encode import MAX_PLAIN_REQUEST_BYTES, MAX_REQUEST_BYTES, EncodedTrace, Exportable, iter_batches
from .plainhttp import PlainConnectError, PlainHttp, PlainResponse, PlainTimeout, usable_for

log = logging.getLogger("lftrace")


@dataclass(frozen=True)
class ExportResult:
    """What one export attempt did. ``retryable`` is meaningful only when ``ok`` is False."""

    ok: bool
    retryable: bool = False
    status: int | None = None  # HTTP status; None when no answer came (connection error, timeout)
    message: str = ""
    retry_after: float | None = None  # seconds, from the server's Retry-After
    answer: str = ""  # the body of a 207 (a batch accepted in part says there what it rejected)
    timed_out: bool = False  # no whole answer within the request's time limit


_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "x-langfuse-public-key", "cookie")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to print: auth-like values masked."""
    return {k: (mask_secret(v) if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None when absent or not a finite time.
    Delivery clamps it to a sane maximum (``delivery.clamp_retry_after``)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _body_summary(text: str) -> str:
    """The server's message, short: JSON ``message``/``error`` if any, else the first line (HTML stripped)."""
    text = text.strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if isinstance(data.get(key), str):
                return data[key][:300]
        return text[:300]
    if text.lstrip().startswith("<"):
        import re

        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return f"HTML page{': ' + title.group(1).strip()[:100] if title else ''} (is this the right URL?)"
    return text.splitlines()[0][:300]


def shutdown_connections(client: Any) -> None:
    """Shut down the sockets of an httpx client's pool: a read blocked on them ends at once (closing alone may not
    wake it). Best effort: reaches into httpcore's pool, and does nothing if its shape changed."""
    if client is None:
        return
    if isinstance(client, PlainHttp):
        client.shutdown()
        return
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    for connection in list(getattr(pool, "connections", None) or []):
        stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
        try:
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            continue


def call_with_deadline(work: Any, seconds: float, on_late: Any) -> tuple[bool, Any]:
    """Run ``work()`` on a daemon thread for at most ``seconds``: (True, its result or exception) when it ended,
    else ``on_late()`` is called (to shut its connections) and (False, None)."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, work()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    worker = threading.Thread(target=run, name="lftrace-http", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:  # past the deadline: whatever the worker ends with now (an error from the shut socket) is moot
        on_late()
        worker.join(0.5)
        return False, None
    ok, value = box[0]
    if not ok:
        raise value
    return True, value


class OtlpExporter:
    """POST protobuf (gzip unless the endpoint is local) to an OTLP/HTTP traces endpoint. ``export`` never raises."""

    profile = "otlp"

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        resource_attributes: Mapping[str, Any] | None = None,
        *,
        compression: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        # gzip, or none: by default none for an endpoint on this machine (a local collector, Phoenix, `lftrace
        # serve`), where it only costs CPU; OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION decides otherwise
        self.gzip = compression == "gzip" or (compression is None and not is_loopback(endpoint))
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.resource_attributes = dict(resource_attributes or {})
        self._client: Any = None
        self._plain: PlainHttp | None = None  # requests to this machine (plainhttp.py); the rest go through httpx
        self._worker: _Worker | None = None
        # every value a server might echo back: auth-like headers, and any other header value long enough to be
        # a key (a vendor's API-key header); lftrace's own short values (versions) stay readable
        self._secrets = [v for k, v in self.headers.items() if v and (k.lower() in _SECRET_HEADERS or len(v) >= 8)]
        from urllib.parse import urlparse

        password = urlparse(endpoint).password  # https://user:pass@host: the password is a secret too
        if password:
            self._secrets.append(password)

    def _http_for(self, url: str) -> Any:
        """The HTTP client for ``url``: the standard library's for plain http to this machine, else httpx."""
        if usable_for(url):  # a few microseconds against a request's ~400: not cached (media URLs differ per upload)
            if self._plain is None:
                self._plain = PlainHttp()
            return self._plain
        return self._http()

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            # plain http needs no CA bundle: loading it costs ~25 ms per client
            verify = not self.endpoint.startswith("http://")
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False, verify=verify)
        return self._client

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def encoded(self, trace: Trace) -> EncodedTrace:
        """``trace`` as this exporter will send it (``export`` takes it in place of the trace)."""
        return EncodedTrace(trace, self.profile)

    def export(self, traces: Sequence[Exportable], *, timeout: float | None = None) -> ExportResult:
        """Send every span of ``traces``; the result is ok only if every request succeeded."""
        if not traces:
            return ExportResult(ok=True, message="nothing to send")
        max_bytes = MAX_REQUEST_BYTES if self.gzip else MAX_PLAIN_REQUEST_BYTES
        requests = iter_batches(traces, self.resource_attributes, profile=self.profile, max_bytes=max_bytes)
        result = ExportResult(ok=True)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        flight: _Flight | None = None
        # One deadline for the whole export, however many requests it takes. Each request is made while the one
        # before it is on the wire (a long run's export is hundreds of them): at most two exist at a time.
        while True:
            try:
                request = next(requests, None)
            except Exception as exc:  # a bug or a corrupt trace: don't retry forever
                if flight is not None:
                    self._wait(flight)
                return ExportResult(ok=False, retryable=False, message=f"could not encode traces: {exc!r}")
            if flight is not None:
                result = self._wait(flight)
                flight = None
                if not result.ok:
                    return result
            if request is None:
                return result
            flight = self._begin(_Request(request), max(deadline - time.monotonic(), 0.05))

    def send(
        self,
        body: bytes,
        *,
        timeout: float | None = None,
        url: str | None = None,
        content_type: str = "application/x-protobuf",
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
    ) -> ExportResult:
        """POST one request and wait at most ``timeout`` seconds in all, whatever the server does.

        httpx's timeouts bound each network operation: a server that trickles its answer a byte at a time
        never trips them. So the request runs on a worker thread; at the deadline the connection is shut
        down (which ends the worker's read at once) and the result is a retryable timeout.

        ``headers``: the request's headers instead of this exporter's (auth) ones, and the body as it is (no
        gzip): a request to another host, such as a presigned upload URL.
        """
        limit = timeout if timeout is not None else self.timeout
        return self._wait(self._begin(_Request(body, url, content_type, method, headers), limit))

    def _begin(self, request: _Request, limit: float) -> _Flight:
        """Start sending ``request`` on the exporter's worker thread; ``_wait`` gives its result within ``limit``
        seconds."""
        flight = _Flight(time.monotonic() + limit, limit)

        def job() -> None:
            flight.box.append(self._post(request, limit))

        worker = self._worker
        if worker is None or not worker.usable():
            worker = self._worker = _Worker()
            weakref.finalize(self, worker.retire)  # an exporter dropped without close() leaves no thread behind
        if not worker.submit(job, flight.done):  # busy with another thread's request: a thread of its own
            worker = _Worker(keep=False)
            worker.submit(job, flight.done)
        flight.worker = worker
        return flight

    def _wait(self, flight: _Flight) -> ExportResult:
        if flight.done.wait(max(flight.until - time.monotonic(), 0.0)) and flight.box:
            return flight.box[0]
        self._abandon()
        # the shut-down socket ends the read; don't wait longer than that, and if the worker is still stuck
        # let it go (it ends when its request does) so that the next request gets a new one
        if not flight.done.wait(0.5) and flight.worker is self._worker and self._worker is not None:
            self._worker.retire()
            self._worker = None
        return ExportResult(
            ok=False,
            retryable=True,
            message=f"timed out after {flight.limit:.1f}s (the server at {self.endpoint} did not finish answering)",
            timed_out=True,
        )

    def _abandon(self) -> None:
        """Shut down the connections of a request past its deadline, and start a new client next time."""
        client, self._client = self._client, None
        plain, self._plain = self._plain, None
        shutdown_connections(client)
        shutdown_connections(plain)

    def _post(self, request: _Request, timeout: float) -> ExportResult:
        body, url, content_type = request.body, request.url, request.content_type
        headers = {**(self.headers if request.headers is None else request.headers), "Content-Type": content_type}
        headers["User-Agent"] = f"lftrace/{__version__}"
        if self.gzip and request.headers is None:
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body, compresslevel=3)  # 1-3: half the CPU of 5, ~1.4x the bytes
        target = url or self.endpoint  # what the messages name: the scores API's URL is not the spans'
        try:
            client = self._http_for(target)
            if not isinstance(client, PlainHttp):
                import httpx
            response = client.request(request.method, target, content=body, headers=headers, timeout=timeout)
        except Exception as exc:
            reason = type(exc).__name__
            if isinstance(exc, PlainTimeout) or ("httpx" in locals() and isinstance(exc, httpx.TimeoutException)):
                message = f"timed out after {timeout or self.timeout:.1f}s"
                return ExportResult(ok=False, retryable=True, message=self._scrub(message), timed_out=True)
            elif isinstance(exc, PlainConnectError) or ("httpx" in locals() and isinstance(exc, httpx.ConnectError)):
                message = f"cannot connect to {target}"
            elif "httpx" in locals() and isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
                return ExportResult(ok=False, retryable=False, message=f"invalid URL {target}: {exc}")
            else:
                message = f"{reason}: {exc}"
            return ExportResult(ok=False, retryable=True, message=self._scrub(message))
        try:
            return self._result(response, target, content_type)
        finally:
            if not isinstance(response, PlainResponse):
                release(response)

    def _result(self, response: Any, target: str, content_type: str) -> ExportResult:
        status = response.status_code
        if 200 <= status < 300:
            answer = response.text[:65536] if status == 207 or content_type == "application/json" else ""
            return ExportResult(ok=True, status=status, answer=answer)
        summary = self._scrub(_body_summary(response.text))
        message = f"HTTP {status} from {target}" + (f": {summary}" if summary else "")
        retryable = status in (408, 429) or status >= 500
        if status in (401, 403):
            message += self._auth_hint()
        return ExportResult(
            ok=False,
            retryable=retryable,
            status=status,
            message=message,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    def _auth_hint(self) -> str:
        return " (check the authorization in OTEL_EXPORTER_OTLP_HEADERS)"

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.retire()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._plain is not None:
            self._plain.close()
            self._plain = None


def release(response: Any) -> None:
    """Let go of a read and closed httpx response's request, and so of its body, now.

    httpx's ``Response`` and the ``BoundSyncStream`` it reads from refer to each other (encode/httpx#3733, open
    for httpx 0.28-0.29), so a response, its request and the request's body live until the garbage collector's
    next full enough pass. An exporter mostly moves bytes and makes few objects the collector counts: it runs
    rarely, and the bodies piled up (25 requests of ~1 MB alive at once, 22 MB of 68 MB at the peak of a
    4,000-step trace's push). Replacing the response's stream, no longer read, breaks the cycle.
    """
    try:
        import httpx

        response.stream = httpx.ByteStream(b"")
    except Exception:  # another client's response, or an httpx without the attribute: the collector frees it
        pass


class _Request(NamedTuple):
    """One HTTP request of an exporter. ``headers``: sent instead of the exporter's own (auth) headers, and the
    body as it is (no gzip): a request to another host, such as a presigned upload URL."""

    body: bytes
    url: str | None = None  # None: the exporter's endpoint
    content_type: str = "application/x-protobuf"
    method: str = "POST"
    headers: Mapping[str, str] | None = None


@dataclass
class _Flight:
    """A request on its way: the worker sending it, the time by which it must be answered, its result once
    there (``done`` is set when ``box`` holds it or the request failed)."""

    until: float
    limit: float
    worker: _Worker | None = None
    box: list[ExportResult] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class _Worker:
    """The daemon thread an exporter sends its requests on, one at a time, kept between requests: handing a
    request to a waiting thread costs about a third of starting a thread for it (a long run's export is
    hundreds of requests). ``keep=False``: a thread for one request only."""

    def __init__(self, *, keep: bool = True) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event] | None] = queue.SimpleQueue()
        self._busy = threading.Lock()  # held from submit until the job has ended
        self._pid = os.getpid()
        self._keep = keep
        self._retired = False
        self.thread = threading.Thread(target=self._loop, name="lftrace-export", daemon=True)
        self.thread.start()

    def usable(self) -> bool:
        """Alive and of this process (a forked child has the parent's object but not its thread)."""
        return not self._retired and self._pid == os.getpid() and self.thread.is_alive()

    def submit(self, job: Callable[[], None], done: threading.Event) -> bool:
        """Run ``job`` on this thread, then set ``done``; False (and nothing done) if it is running another one."""
        if not self._busy.acquire(blocking=False):
            return False
        self._jobs.put((job, done))
        return True

    def retire(self) -> None:
        """End the thread once its current job (if any) has ended; it takes no more."""
        self._retired = True
        self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, done = item
            try:
                job()
            except BaseException:  # the job reports its own errors; nothing may end the thread
                log.debug("lftrace: export worker job failed", exc_info=True)
            # free before done: the caller's next request, made as soon as done is set, finds the thread idle
            self._busy.release()
            done.set()
            del item, job, done  # the job holds its exporter: don't keep it alive while waiting for the next
            if not self._keep:
                return


class LangfuseExporter(OtlpExporter):
    """OtlpExporter at ``{base_url}/api/public/otel/v1/traces`` with Langfuse's auth and headers."""

    profile = "langfuse"

    def __init__(
        self,
        base_url: str,
        public_key: str,
        secret_key: str,
        timeout: float = 5.0,
        resource_attributes: Mapping[str, Any] | None = None,
        *,
        compression: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        path: str = "/api/public/otel/v1/traces",
    ) -> None:
        token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
        headers = {
            "Authorization": f"Basic {token}",
            "x-langfuse-ingestion-version": "4",
            "x-langfuse-sdk-name": "lftrace",
            "x-langfuse-sdk-version": __version__,
            "x-langfuse-public-key": public_key,
            **(extra_headers or {}),  # the SDK's additional_headers: merged over these, as it merges them
        }
        super().__init__(
            base_url.rstrip("/") + path,
            headers,
            timeout,
            resource_attributes,
            compression=compression,
        )
        self.base_url = base_url.rstrip("/")
        self.public_key = public_key
        self._secrets += [secret_key, token, *(v for v in (extra_headers or {}).values() if len(v) >= 4)]
        self._scores_api = True  # False once the server showed it has no POST /api/public/scores for a list

    def export(self, traces: Sequence[Exportable], *, timeout: float | None = None) -> ExportResult:
        """The spans over OTLP, then the traces' scores (OTLP has no scores) to the scores API.

        Score ids are stable, so sending a trace's scores again (a merged trace is delivered again) updates them
        rather than adding copies.
        """
        result = super().export(traces, timeout=timeout)
        scores = [score for trace in traces for score in trace.scores]
        if not result.ok or not scores:
            return result
        for start in range(0, len(scores), SCORES_PER_REQUEST):
            result = self._send_scores(scores[start : start + SCORES_PER_REQUEST], timeout)
            if not result.ok:
                return result
        return result

    def _send_scores(self, scores: Sequence[Any], timeout: float | None) -> ExportResult:
        """``POST /api/public/scores`` with a list, as the official SDK 5 sends them (Langfuse Cloud removed the
        legacy ingestion endpoint on 2026-11-16): 202, or 207 saying which it rejected. A server without it (a
        self-hosted Langfuse v3: 404, 405, or 400 for a list) gets ``score-create`` events on
        ``/api/public/ingestion``, from then on."""
        if self._scores_api:
            result = self.send(
                json.dumps([score_body(score) for score in scores]).encode(),
                timeout=timeout,
                url=f"{self.base_url}/api/public/scores",
                content_type="application/json",
            )
            if result.ok:
                return _score_rejections(result, len(scores), self._scrub)
            if result.status not in (400, 404, 405):
                return result
            self._scores_api = False
        return self.send(
            json.dumps({"batch": [score_event(score) for score in scores]}).encode(),
            timeout=timeout,
            url=f"{self.base_url}/api/public/ingestion",
            content_type="application/json",
        )

    def upload_media(
        self, links: Sequence[tuple[dict[str, Any], Any]], *, timeout: float | None = None
    ) -> ExportResult:
        """Media (``(where, media.MediaLink)``; where: ``{"traceId", "observationId"}`` or ``{"datasetId",
        "datasetItemId"}``) to Langfuse's media API, as the SDK uploads it:
        announce it where it appears (``POST /api/public/media``), PUT its bytes to the upload URL Langfuse
        answers with (none: Langfuse has them already), then report the upload (``PATCH``).

        A failure worth retrying (no answer, 5xx, 429) stops here: the traces wait and their spans are not sent
        yet. Langfuse refusing one media (another 4xx) is logged and the rest go on: its reference stays in the
        spans. Everything within one ``timeout``.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        for where, link in links:
            announce = {
                **where,
                "contentType": link.content_type,
                "contentLength": len(link.content),
                "sha256Hash": link.sha256,
                "field": link.field,
            }
            result = self.send(
                json.dumps(announce).encode(),
                timeout=max(deadline - time.monotonic(), 0.05),
                url=f"{self.base_url}/api/public/media",
                content_type="application/json",
            )
            if not result.ok:
                if result.retryable:
                    return result
                log.warning("lftrace: Langfuse refused media %s (%s): %s", link.media_id, where, result.message)
                continue
            try:
                answer = json.loads(result.answer or "{}")
            except ValueError:
                answer = {}
            upload_url = answer.get("uploadUrl") if isinstance(answer, dict) else None
            if isinstance(answer, dict) and answer.get("mediaId") not in (None, link.media_id):
                log.warning(
                    "lftrace: Langfuse gave media %s the id %s; not uploaded", link.media_id, answer.get("mediaId")
                )
                continue
            if not isinstance(upload_url, str) or not upload_url:
                continue  # Langfuse has these bytes already
            result = self._put_media(link, upload_url, deadline)
            if not result.ok and result.retryable:
                return result
        return ExportResult(ok=True)

    def _put_media(self, link: Any, upload_url: str, deadline: float) -> ExportResult:
        headers = {"x-amz-checksum-sha256": link.sha256}  # presigned for it (S3); Azure wants a block blob
        if "storage.googleapis.com" not in upload_url:  # GCS refuses headers it does not know
            headers["x-ms-blob-type"] = "BlockBlob"
        started = time.monotonic()
        put = self.send(
            link.content,
            timeout=max(deadline - started, 0.05),
            url=upload_url,
            content_type=link.content_type,
            method="PUT",
            headers=headers,
        )
        if put.status is None:  # no answer: nothing to report, try again later
            return put
        report = {
            "uploadedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "uploadHttpStatus": put.status,
            "uploadHttpError": None if put.ok else put.message,
            "uploadTimeMs": int((time.monotonic() - started) * 1000),
        }
        patched = self.send(
            json.dumps(report).encode(),
            timeout=max(deadline - time.monotonic(), 0.05),
            url=f"{self.base_url}/api/public/media/{link.media_id}",
            content_type="application/json",
            method="PATCH",
        )
        if not put.ok:
            return put
        return patched if not patched.ok and patched.retryable else ExportResult(ok=True)

    def _auth_hint(self) -> str:
        return (
            f" (Langfuse rejected the keys for {self.base_url}: check LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, "
            f"{mask_secret(self.public_key)})"
        )


SCORES_PER_REQUEST = 100


def score_body(score: Any) -> dict[str, Any]:
    """A score as ``POST /api/public/scores`` takes it (the official SDK's fields: text for categorical and text
    scores, else a number; None left out)."""
    from ..model import iso_from_ns

    text = score.data_type in ("CATEGORICAL", "TEXT", "CORRECTION")
    body: dict[str, Any] = {
        "id": score.id,
        "traceId": score.trace_id,
        "observationId": score.observation_id,
        "sessionId": score.session_id,
        "datasetRunId": score.dataset_run_id,
        "name": score.name,
        "value": score.string_value if text else score.value,
        "dataType": score.data_type,
        "comment": score.comment,
        "metadata": score.metadata,
        "configId": score.config_id,
        "environment": score.environment,
        "timestamp": iso_from_ns(score.timestamp),
    }
    return {k: v for k, v in body.items() if v is not None}


def score_event(score: Any) -> dict[str, Any]:
    """One ``score-create`` event of the legacy ingestion API (self-hosted Langfuse v3)."""
    body = score_body(score)
    return {"id": f"{score.id}-create", "type": "score-create", "timestamp": body.pop("timestamp"), "body": body}


def _score_rejections(result: ExportResult, sent: int, scrub: Callable[[str], str]) -> ExportResult:
    """A 207 of the scores API that rejected some: not retryable (they would be rejected again), with why (the
    server's words, scrubbed of the keys)."""
    try:
        answer = json.loads(result.answer) if result.answer else {}
    except ValueError:
        answer = {}
    rejected = answer.get("rejected") if isinstance(answer, dict) else None
    if not isinstance(rejected, int) or rejected <= 0:
        return result
    errors = answer.get("errors")
    reasons = (
        "; ".join(str(e.get("message")) for e in errors[:3] if isinstance(e, dict)) if isinstance(errors, list) else ""
    )
    return ExportResult(
        ok=False,
        retryable=False,
        status=207,
        message=scrub(f"Langfuse rejected {rejected} of {sent} scores" + (f": {reasons[:500]}" if reasons else "")),
    )
