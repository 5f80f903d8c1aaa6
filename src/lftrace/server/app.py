"""The Starlette app of ``lftrace serve``: auth, body limits, ingestion and read routes over one TraceStore.

Every ingestion request is parsed completely before anything is written, then written in one store
transaction (``write_traces(..., merge=True)``): a malformed request (400), an oversized one (413) or a crash
half-way leaves nothing half-written. Store calls are blocking, so they run on Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import zlib
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import is_loopback_host
from ..errors import InputError, LftraceError
from ..model import Trace
from ..prompts import check_new_prompt
from ..store import TraceStore
from . import api, ingest_legacy, ingest_otlp, media, web
from .ingest_otlp import BadRequest

T = TypeVar("T")
MAX_BODY_BYTES = 32 * 1024 * 1024  # one request as sent (Langfuse: requests under 16 MB; some headroom)
MAX_INFLATED_BYTES = 128 * 1024 * 1024  # after gzip: a small gzip bomb must not eat the memory


@dataclass(frozen=True)
class ServerSettings:
    store_path: Path
    public_key: str | None = None
    secret_key: str | None = None
    destinations: Sequence[str] = ()  # outbox destinations for --forward
    max_body_bytes: int = MAX_BODY_BYTES
    loopback_only: bool = True  # no keys configured: accept any key pair, but only from loopback clients
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def keys_configured(self) -> bool:
        return bool(self.public_key and self.secret_key)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": message}, status_code=status)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


# ---------------------------------------------------------------- auth


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    public, sep, secret = decoded.partition(":")
    return (public, secret) if sep else None


class AuthMiddleware:
    """Basic auth on /api/public (except health) and the web view.

    With keys configured, the pair must match. Without keys any pair (or none) is accepted, from loopback
    clients only: the server refuses to bind elsewhere without keys (see run.py), this is the second lock.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/api/public/health", "/favicon.ico"):
            await self.app(scope, receive, send)
            return
        settings = self.settings
        problem: str | None = None
        if settings.keys_configured and scope["path"].startswith(media.SIGNED_PATHS):
            pass  # a presigned upload or download URL (no Basic auth, as a storage bucket's): its signature is checked
        elif settings.keys_configured:
            headers = dict(scope.get("headers") or [])
            credentials = _basic_credentials((headers.get(b"authorization") or b"").decode("latin-1"))
            if credentials is None:
                problem = "missing Basic auth: send Authorization: Basic base64(public_key:secret_key)"
            else:
                ok_public = hmac.compare_digest(credentials[0].encode(), (settings.public_key or "").encode())
                ok_secret = hmac.compare_digest(credentials[1].encode(), (settings.secret_key or "").encode())
                if not (ok_public and ok_secret):
                    problem = "invalid public key or secret key for this lftrace server"
        elif settings.loopback_only:
            client = scope.get("client")
            if not is_loopback_host(client[0] if client else None, subdomains=False):
                problem = "this lftrace server has no keys configured and only accepts loopback clients"
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = error_response(401, problem)
        if not scope["path"].startswith("/api/") and not scope["path"].startswith("/v1/"):
            response.headers["WWW-Authenticate"] = 'Basic realm="lftrace"'
        await response(scope, receive, send)


# ---------------------------------------------------------------- bodies


async def read_body(request: Request, limit: int) -> bytes:
    """The body, inflated if gzip/deflate; 413 past ``limit`` (checked while reading, not after)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HttpError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = (request.headers.get("content-encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(body, MAX_INFLATED_BYTES)
        except zlib.error as exc:
            raise HttpError(400, f"malformed {encoding} body: {exc}") from None
        if inflater.unconsumed_tail:
            raise HttpError(413, f"request body inflates to over {MAX_INFLATED_BYTES} bytes")
    elif encoding not in ("", "identity"):
        raise HttpError(415, f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding")
    return body


def _writing(what: str) -> Callable[[Handler], Handler]:
    """A write endpoint's errors as answers: its own HttpError, 400 for what cannot be read, 503 (naming ``what``)
    when the store cannot take it."""

    def wrap(handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except HttpError as exc:
                return error_response(exc.status, exc.message)
            except (BadRequest, InputError) as exc:
                return error_response(400, str(exc))
            except LftraceError as exc:
                return error_response(503, f"the trace store cannot take {what}: {exc}")

        return answer

    return wrap


Handler = Callable[[Request], Awaitable[Response]]


# the store's fields of a dataset and of an item <- the API's keys
_DATASET_FIELDS = {
    "description": "description",
    "metadata": "metadata",
    "input_schema": "inputSchema",
    "expected_output_schema": "expectedOutputSchema",
}
_DATASET_ITEM_FIELDS = {
    "input": "input",
    "expected_output": "expectedOutput",
    "metadata": "metadata",
    "source_trace_id": "sourceTraceId",
    "source_observation_id": "sourceObservationId",
    "status": "status",
}


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# ---------------------------------------------------------------- store writes


def add_costs(traces: Sequence[Trace]) -> None:
    """Cost of generations that came with usage and a model but no cost (Langfuse prices them server-side too)."""
    from ..pricing import cost_for

    for trace in traces:
        for obs in trace.observations:
            if obs.type == "GENERATION" and obs.usage_details and obs.model and not obs.cost_details:
                obs.cost_details = cost_for(obs.model, obs.usage_details)


class Ingestor:
    """Writes parsed traces into the store: merged with what is there, one transaction per request."""

    def __init__(self, store: TraceStore, destinations: Sequence[str]) -> None:
        self.store = store
        self.destinations = tuple(destinations)
        # One ingestion thread, first come first served: under load a request waits for the ones before it
        # instead of sharing the GIL and the store lock with all of them (which makes every request slow), and
        # a legacy batch's read-modify-write never races another.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lftrace-ingest")
        self.after_write: Callable[[], None] | None = None  # --forward: wake the outbox delivery

    def write(self, traces: list[Trace]) -> None:
        if not traces:
            return
        add_costs(traces)
        self.store.write_traces(traces, self.destinations, merge=True)
        if self.after_write is not None:
            self.after_write()

    async def run(self, work: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(work))

    def ingest_legacy(self, batch: Any) -> ingest_legacy.BatchResult:
        result = ingest_legacy.apply_batch(batch, self.store.get_traces)
        add_costs(result.traces)
        if result.traces:
            # the traces are complete (read back and updated): a plain replace is the merge
            self.store.write_traces(result.traces, self.destinations)
        if result.scores:
            self.store.write_scores(result.scores, self.destinations)
        if (result.traces or result.scores) and self.after_write is not None:
            self.after_write()
        return result


def _otlp_traces(body: bytes, content_type: str) -> list[Trace]:
    if "json" in content_type:
        request = ingest_otlp.parse_json(body)
    elif "protobuf" in content_type or not content_type:
        request = ingest_otlp.parse_protobuf(body)
    else:
        raise HttpError(
            415, f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json"
        )
    return ingest_otlp.request_to_traces(request)


def create_app(settings: ServerSettings, store: TraceStore | None = None) -> Starlette:
    """The app over the store at ``settings.store_path`` (opened here unless given)."""
    store = store if store is not None else TraceStore(settings.store_path)
    ingestor = Ingestor(store, settings.destinations)

    @_writing("the spans")
    async def otlp_traces(request: Request) -> Response:
        body = await read_body(request, settings.max_body_bytes)
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        await ingestor.run(lambda: ingestor.write(_otlp_traces(body, content_type)))
        if "json" in content_type:
            return json_response({})
        return Response(b"", media_type="application/x-protobuf")  # an empty ExportTraceServiceResponse

    async def json_body(request: Request) -> Any:
        body = await read_body(request, settings.max_body_bytes)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"malformed JSON body: {exc}") from None

    @_writing("the batch")
    async def ingestion(request: Request) -> Response:
        data = await json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("batch"), list):
            raise HttpError(400, 'malformed ingestion body: expected {"batch": [events...]}')
        result = await ingestor.run(lambda: ingestor.ingest_legacy(data["batch"]))
        return json_response(result.response(), status=207)

    @_writing("the scores")
    async def create_scores(request: Request) -> Response:
        """``POST /api/public/scores``: one score (200 ``{"id"}``) or, as the official SDK 5 sends them, a list (202
        ``{"message": "Accepted"}``, or 207 with the accepted and rejected counts and why). Stored as the legacy
        endpoint's score-create events are: a score needs a traceId, a sessionId or a datasetRunId."""
        data = await json_body(request)
        single = isinstance(data, dict)
        scores = [data] if single else data
        if not isinstance(scores, list) or not all(isinstance(item, dict) for item in scores):
            raise HttpError(400, "malformed scores body: expected a score object or a list of them")
        events = [ingest_legacy.score_create_event(item) for item in scores]
        result = await ingestor.run(lambda: ingestor.ingest_legacy(events))
        messages = [str(error["message"]) for error in result.errors]
        if single:
            return error_response(400, messages[0]) if messages else json_response({"id": events[0]["body"]["id"]})
        if not messages:
            return json_response({"message": "Accepted"}, status=202)
        errors = [{"message": message} for message in messages]
        return json_response({"accepted": len(result.successes), "rejected": len(errors), "errors": errors}, 207)

    @_writing("the prompt")
    async def create_prompt(request: Request) -> Response:
        """``POST /api/public/v2/prompts``: a new version of a prompt (its first when new), as Langfuse's API."""
        data = await json_body(request)
        if not isinstance(data, dict):
            raise HttpError(400, "malformed prompt: expected a JSON object with name and prompt")
        name, prompt = str(data.get("name") or ""), data.get("prompt")
        kind = check_new_prompt(name, prompt, data.get("type"))
        labels, tags = data.get("labels") or [], data.get("tags")
        if not _strings(labels) or (tags is not None and not _strings(tags)):
            raise HttpError(400, "malformed prompt: labels and tags are lists of strings")
        config, message = data.get("config"), data.get("commitMessage")
        created = await ingestor.run(
            lambda: store.create_prompt(
                name, kind, prompt, config=config, labels=labels, tags=tags, commit_message=message
            )
        )
        return json_response(created)

    @_writing("the labels")
    async def label_prompt(request: Request) -> Response:
        """``PATCH /api/public/v2/prompts/{name}/versions/{version}``: ``{"newLabels": [...]}``."""
        name, version = request.path_params["name"], request.path_params["version"]
        data = await json_body(request)
        new_labels = data.get("newLabels") if isinstance(data, dict) else None
        if not isinstance(new_labels, list) or not _strings(new_labels):
            raise HttpError(400, 'malformed body: expected {"newLabels": ["production", ...]}')
        updated = await ingestor.run(lambda: store.label_prompt(name, version, new_labels))
        if updated is None:
            return error_response(404, f"prompt {name[:200]!r} has no version {version}")
        return json_response(updated)

    @_writing("the dataset")
    async def create_dataset(request: Request) -> Response:
        """``POST /api/public/v2/datasets``: a dataset (an existing name takes the fields given)."""
        data = await json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
            raise HttpError(400, "malformed dataset: expected a JSON object with a name")
        fields = {column: data.get(key) for column, key in _DATASET_FIELDS.items()}
        made = await ingestor.run(lambda: store.create_dataset(data["name"], **fields))
        return json_response({**made, "projectId": api.PROJECT_ID})

    @_writing("the dataset item")
    async def create_dataset_item(request: Request) -> Response:
        """``POST /api/public/dataset-items``: an item of a dataset, made or updated on its id."""
        data = await json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("datasetName"), str):
            raise HttpError(400, "malformed dataset item: expected a JSON object with a datasetName")
        item_id = data.get("id")
        if item_id is not None and (not isinstance(item_id, str) or not 0 < len(item_id) <= 255):
            raise HttpError(400, "malformed dataset item: its id is a string of at most 255 characters")
        status = data.get("status")
        if status is not None and status not in ("ACTIVE", "ARCHIVED"):
            raise HttpError(400, "malformed dataset item: status is ACTIVE or ARCHIVED")
        fields = {column: data.get(key) for column, key in _DATASET_ITEM_FIELDS.items()}
        made = await ingestor.run(lambda: store.upsert_dataset_item(data["datasetName"], item_id, **fields))
        if made is None:
            return error_response(404, f"dataset {data['datasetName'][:200]!r} not found: create it first")
        return json_response(made)

    urls = media.SignedUrls()  # the media's upload and download URLs (the web view shows them too)
    routes = [
        Route("/api/public/v2/datasets", create_dataset, methods=["POST"]),
        Route("/api/public/dataset-items", create_dataset_item, methods=["POST"]),
        Route("/api/public/v2/prompts", create_prompt, methods=["POST"]),
        Route("/api/public/v2/prompts/{name:path}/versions/{version:int}", label_prompt, methods=["PATCH"]),
        Route("/api/public/otel/v1/traces", otlp_traces, methods=["POST"]),
        Route("/v1/traces", otlp_traces, methods=["POST"]),
        Route("/api/public/ingestion", ingestion, methods=["POST"]),
        Route("/api/public/scores", create_scores, methods=["POST"]),
        *media.routes(store, settings.max_body_bytes, read_body, urls),
        *api.routes(store, urls),
        *web.routes(store, urls),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.ingestor = ingestor
    app.state.settings = settings
    app.add_middleware(AuthMiddleware, settings=settings)
    return app
