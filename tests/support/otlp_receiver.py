"""A real OTLP/HTTP receiver and fake Langfuse API on 127.0.0.1 for exporter tests.

``Receiver`` runs ``ThreadingHTTPServer`` on a free port in a thread. It decodes OTLP protobuf (gzip or
not) into ``ExportTraceServiceRequest`` objects and records every request. Responses are scriptable:
``receiver.script(Reply(503), Reply(200))`` answers the next OTLP posts in order (then 200 ``{}``);
``receiver.expect_basic(pk, sk)`` makes wrong credentials answer 401 everywhere (as Langfuse does).

It also plays a small Langfuse: ``/api/public/health``, ``/api/public/projects``,
``/api/public/v2/observations`` (cursor pagination, built from the spans it received) and
``/api/public/traces/{id}`` (v1 shape; 404 unless ``v1_traces=True``), and takes scores on ``/api/public/scores``
(202; 404 with ``scores_api=False``) and ``/api/public/ingestion`` (207).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

OTLP_PATHS = ("/v1/traces", "/api/public/otel/v1/traces")


@dataclass
class Reply:
    status: int = 200
    body: str | bytes = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes  # body as received (maybe gzip)
    body: bytes  # decompressed
    status: int  # what we answered
    request: ExportTraceServiceRequest | None = None
    at: float = 0.0  # time.monotonic() when the request arrived

    def spans(self) -> list[Any]:
        if self.request is None:
            return []
        return [s for rs in self.request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict (arrays -> lists)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


def any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self._script: list[Reply] = []
        self.credentials: tuple[str, str] | None = None
        self.project_id = "proj-123"
        self.version = "4.16.0"
        self.health_reply: Reply | None = None  # override /api/public/health
        self.projects_reply: Reply | None = None  # override /api/public/projects
        self.v1_traces = False
        self.v2_observations = True  # False: answer 404 like a v3 server
        self.scores_api = True  # False: POST /api/public/scores answers 404, as a self-hosted Langfuse v3 can
        self.scores_reply: Reply | None = None  # override POST /api/public/scores (a 207 that rejects some)
        self.page_size = 2  # v2 observations page size (small, to exercise pagination)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no Nagle/delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                receiver._handle(self, "POST")

            def do_GET(self) -> None:
                receiver._handle(self, "GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- control
    def script(self, *replies: Reply) -> None:
        with self.lock:
            self._script.extend(replies)

    def expect_basic(self, public_key: str, secret_key: str) -> None:
        self.credentials = (public_key, secret_key)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def otlp_requests(self, ok_only: bool = True) -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path in OTLP_PATHS and r.method == "POST" and (r.status == 200 or not ok_only)
            ]

    def spans(self) -> list[Any]:
        return [s for r in self.otlp_requests() for s in r.spans()]

    def trace_ids(self) -> list[str]:
        return [s.trace_id.hex() for s in self.spans()]

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            time.sleep(0.02)
        return self.spans()

    # ------------------------------------------------------------- serving
    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode()
        return headers.get("authorization") == expected

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in h.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" and raw else raw
        parsed = urlparse(h.path)
        reply = self._route(method, parsed.path, parse_qs(parsed.query), headers)
        request = None
        if parsed.path in OTLP_PATHS and method == "POST" and reply.status == 200:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        with self.lock:
            self.requests.append(Recorded(method, parsed.path, headers, raw, body, reply.status, request, arrived))
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        h.send_response(reply.status)
        content_type = "application/json"
        if payload.lstrip().startswith(b"<"):
            content_type = "text/html"
        h.send_header(
            "Content-Type", reply.headers.pop("Content-Type", content_type) if reply.headers else content_type
        )
        for key, value in reply.headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if path == "/api/public/health":
            return self.health_reply or Reply(200, json.dumps({"status": "OK", "version": self.version}))
        if path in OTLP_PATHS and method == "POST":
            with self.lock:
                scripted = self._script.pop(0) if self._script else None
            if scripted is not None:
                return Reply(scripted.status, scripted.body, dict(scripted.headers), scripted.delay)
            if not self._authorized(headers):
                return Reply(
                    401,
                    json.dumps({"message": "Invalid credentials. Confirm that you've configured the correct host."}),
                )
            return Reply(200, "{}")
        if not path.startswith("/api/public/"):
            return Reply(404, "<html><title>404 Not Found</title></html>")
        if not self._authorized(headers):
            return Reply(
                401, json.dumps({"message": "Invalid credentials. Confirm that you've configured the correct host."})
            )
        if path == "/api/public/ingestion" and method == "POST":  # scores (score-create events), as Langfuse: 207
            return Reply(207, json.dumps({"successes": [], "errors": []}))
        if path == "/api/public/scores" and method == "POST":  # a list of scores, as Langfuse v4 takes them: 202
            if not self.scores_api:
                return Reply(404, json.dumps({"message": "not found"}))
            return self.scores_reply or Reply(202, json.dumps({"message": "Accepted"}))
        if path == "/api/public/projects":
            return self.projects_reply or Reply(
                200,
                json.dumps(
                    {  # as Langfuse answers it (the official SDK's model requires "metadata")
                        "data": [
                            {
                                "id": self.project_id,
                                "name": "demo",
                                "metadata": {},
                                "organization": {"id": "o1", "name": "org"},
                            }
                        ]
                    }
                ),
            )
        if path == "/api/public/v2/observations":
            if not self.v2_observations:
                return Reply(404, json.dumps({"message": "not found"}))
            return self._observations(query)
        if path.startswith("/api/public/traces/"):
            trace_id = path.rsplit("/", 1)[-1]
            observations = self._observations_for(trace_id)
            if not self.v1_traces or not observations:
                return Reply(404, json.dumps({"message": "Trace not found"}))
            return Reply(200, json.dumps(self._v1_trace(trace_id, observations)))
        return Reply(404, json.dumps({"message": "not found"}))

    # ------------------------------------------------------------- fake Langfuse reads
    def _observations_for(self, trace_id: str) -> list[dict[str, Any]]:
        out = []
        for span in self.spans():
            if span.trace_id.hex() != trace_id:
                continue
            a = attributes(span.attributes)
            meta = {
                k.split("langfuse.observation.metadata.", 1)[1]: v
                for k, v in a.items()
                if k.startswith("langfuse.observation.metadata.")
            }
            out.append(
                {
                    "id": span.span_id.hex(),
                    "traceId": trace_id,
                    "parentObservationId": span.parent_span_id.hex() or None,
                    "type": str(a.get("langfuse.observation.type", "span")).upper(),
                    "name": span.name,
                    "startTime": _iso(span.start_time_unix_nano),
                    "endTime": _iso(span.end_time_unix_nano),
                    "completionStartTime": a.get("langfuse.observation.completion_start_time"),
                    "providedModelName": a.get("langfuse.observation.model.name"),
                    "modelParameters": _json(a.get("langfuse.observation.model.parameters")),
                    # v2 answers io fields as raw strings
                    "input": a.get("langfuse.observation.input"),
                    "output": a.get("langfuse.observation.output"),
                    "metadata": meta or None,
                    "level": a.get("langfuse.observation.level", "DEFAULT"),
                    "statusMessage": a.get("langfuse.observation.status_message"),
                    "usageDetails": _json(a.get("langfuse.observation.usage_details")) or {},
                    "costDetails": _json(a.get("langfuse.observation.cost_details")) or {},
                    "environment": a.get("langfuse.environment", "default"),
                    "isRootObservation": not span.parent_span_id,
                    "traceName": a.get("langfuse.trace.name"),
                    "tags": a.get("langfuse.trace.tags"),
                    "userId": a.get("user.id"),
                    "sessionId": a.get("session.id"),
                    "_trace": {
                        "name": a.get("langfuse.trace.name"),
                        "input": a.get("langfuse.trace.input"),
                        "output": a.get("langfuse.trace.output"),
                        "tags": a.get("langfuse.trace.tags"),
                        "userId": a.get("user.id"),
                        "sessionId": a.get("session.id"),
                    },
                }
            )
        return out

    def _observations(self, query: dict[str, list[str]]) -> Reply:
        trace_id = (query.get("traceId") or [""])[0]
        items = [{k: v for k, v in o.items() if k != "_trace"} for o in self._observations_for(trace_id)]
        start = int((query.get("cursor") or ["0"])[0] or 0)
        page = items[start : start + self.page_size]
        cursor = str(start + self.page_size) if start + self.page_size < len(items) else None
        return Reply(200, json.dumps({"data": page, "meta": {"cursor": cursor}}))

    def _v1_trace(self, trace_id: str, observations: list[dict[str, Any]]) -> dict[str, Any]:
        root = next((o for o in observations if o["parentObservationId"] is None), observations[0])
        t = root["_trace"]
        obs = []
        for o in observations:
            o = {
                k: v
                for k, v in o.items()
                if k not in ("_trace", "traceName", "tags", "userId", "sessionId", "isRootObservation")
            }
            o["model"] = o.pop("providedModelName")
            o["input"] = _json(o["input"])
            o["output"] = _json(o["output"])
            obs.append(o)
        return {
            "id": trace_id,
            "timestamp": root["startTime"],
            "name": t["name"],
            "input": _json(t["input"]),
            "output": _json(t["output"]),
            "tags": t["tags"] or [],
            "userId": t["userId"],
            "sessionId": t["sessionId"],
            "htmlPath": f"/project/{self.project_id}/traces/{trace_id}",
            "observations": obs,
        }


def _iso(ns: int) -> str:
    from lftrace.model import iso_from_ns

    return iso_from_ns(ns) or ""


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def to_dict(request: ExportTraceServiceRequest) -> dict[str, Any]:
    return MessageToDict(request)


@contextlib.contextmanager
def running_receiver(port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(port)
    try:
        yield receiver
    finally:
        receiver.close()


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
