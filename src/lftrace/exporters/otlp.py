"""Trace -> OTLP ``ExportTraceServiceRequest`` (protobuf, gzip) and an HTTP exporter for it.

One observation is one span. Every span carries three vocabularies at once, so the same bytes are
useful in Langfuse, Phoenix and any GenAI-aware OpenTelemetry backend:

* ``langfuse.*`` attributes (what the Langfuse server reads first; see LANGFUSE_WIRE.md),
* OpenTelemetry GenAI semantic conventions (``gen_ai.*``),
* OpenInference (``openinference.span.kind``, ``llm.token_count.*``) so Phoenix shows kinds and tokens.

Two profiles differ only where the backends disagree:

* ``profile="langfuse"``: the span name is the LangChain name. The Langfuse server has no attribute that
  overrides the observation name (its OTel ingestion takes ``span.name``, except ``gen_ai.tool.name`` for
  tools, which we set to the same tool name). The instrumentation scope is ``langfuse-sdk-lftrace``:
  Langfuse copies every raw span attribute into observation metadata unless the scope name starts with
  ``langfuse-sdk``, which would bury the user's metadata under ours. Input/output ride on
  ``langfuse.observation.input/output``.
* ``profile="otlp"``: span names follow the GenAI conventions (``chat {model}``, ``execute_tool {tool}``,
  ``invoke_agent {name}``, ``embeddings {model}``; others keep their name) and the LangChain name is kept in
  ``lftrace.observation.name``. Input/output ride on OpenInference ``input.value``/``output.value``
  (JSON, with mime types), which Phoenix displays and Langfuse also reads when pointed at it.

Size limits: any single attribute value is cut to ``MAX_VALUE_BYTES`` (with a marker saying how big it was;
the local store keeps the full copy), a span's attributes to about ``MAX_SPAN_BYTES``, and
``encode_batches`` splits requests to stay under ``MAX_REQUEST_BYTES`` (Langfuse: spans under 9.5 MB,
requests under 16 MB).

``opentelemetry.proto`` and ``httpx`` are imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..config import mask_secret
from ..model import Observation, Trace, iso_from_ns

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_VALUE_BYTES = 1_000_000  # one attribute value
MAX_SPAN_BYTES = 4_000_000  # all attribute values of one span (Langfuse drops spans over ~9.5 MB)
MAX_REQUEST_BYTES = 4_000_000  # one request, before gzip (Langfuse: keep well under 16 MB)
TRUNCATION_MARKER = "...[truncated by lftrace: {size} bytes; the full value is in the local trace store]"

LANGFUSE_SCOPE = "langfuse-sdk-lftrace"
OTLP_SCOPE = "lftrace"

_OPERATION = {"GENERATION": "chat", "TOOL": "execute_tool", "EMBEDDING": "embeddings", "AGENT": "invoke_agent"}
_OPENINFERENCE_KIND = {
    "GENERATION": "LLM",
    "TOOL": "TOOL",
    "AGENT": "AGENT",
    "CHAIN": "CHAIN",
    "RETRIEVER": "RETRIEVER",
    "EMBEDDING": "EMBEDDING",
    "EVALUATOR": "EVALUATOR",
    "GUARDRAIL": "GUARDRAIL",
    "SPAN": "CHAIN",
    "EVENT": "CHAIN",
}
# LangChain's ls_provider -> gen_ai.provider.name (OpenTelemetry's well-known values)
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "google": "gcp.gen_ai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
}
# model parameter -> gen_ai.request.<name>
_REQUEST_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "seed": "seed",
}


@dataclass(frozen=True)
class ExportResult:
    """What one export attempt did. ``retryable`` is meaningful only when ``ok`` is False."""

    ok: bool
    retryable: bool = False
    status: int | None = None  # HTTP status; None when no answer came (connection error, timeout)
    message: str = ""
    retry_after: float | None = None  # seconds, from the server's Retry-After


# ---------------------------------------------------------------- encoding


def dumps(value: Any) -> str:
    """JSON text of a value from the store (already JSON-able; anything else falls back to str)."""
    import orjson

    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, default=str, ensure_ascii=False)


def truncate(text: str, limit: int = MAX_VALUE_BYTES) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else a JSON string holding its head and a marker."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    head = raw[: max(limit - 200, 0)].decode("utf-8", "ignore")
    # a JSON string, so a truncated JSON document still parses on the other side
    return json.dumps(head + TRUNCATION_MARKER.format(size=len(raw)), ensure_ascii=False)


def resource_attributes_for(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "service.name": "lftrace",
        "telemetry.sdk.name": "lftrace",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    attributes.update(extra or {})
    return attributes


def _usage_attributes(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Langfuse usage (input/output exclude their details) -> GenAI and OpenInference counts (totals)."""
    counts = {k: int(v) for k, v in usage.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    input_total = sum(v for k, v in counts.items() if k == "input" or k.startswith("input_"))
    output_total = sum(v for k, v in counts.items() if k == "output" or k.startswith("output_"))
    total = counts.get("total", input_total + output_total)
    out: dict[str, Any] = {
        "gen_ai.usage.input_tokens": input_total,
        "gen_ai.usage.output_tokens": output_total,
        "llm.token_count.prompt": input_total,
        "llm.token_count.completion": output_total,
        "llm.token_count.total": total,
    }
    cache_read = counts.get("input_cache_read", counts.get("input_cached_tokens"))
    if cache_read is not None:
        out["gen_ai.usage.cache_read.input_tokens"] = cache_read
        out["llm.token_count.prompt_details.cache_read"] = cache_read
    if "input_cache_creation" in counts:
        out["gen_ai.usage.cache_creation.input_tokens"] = counts["input_cache_creation"]
        out["llm.token_count.prompt_details.cache_write"] = counts["input_cache_creation"]
    reasoning = counts.get("output_reasoning", counts.get("output_reasoning_tokens"))
    if reasoning is not None:
        out["gen_ai.usage.reasoning.output_tokens"] = reasoning
        out["llm.token_count.completion_details.reasoning"] = reasoning
    return out


def _tool_call_id(obs: Observation) -> str | None:
    meta = obs.metadata or {}
    for key in ("tool_call_id", "langfuse_tool_call_id"):
        if isinstance(meta.get(key), str):
            return meta[key]
    data = obs.input
    if isinstance(data, dict):
        if data.get("type") == "tool_call" and isinstance(data.get("id"), str):
            return data["id"]
        if isinstance(data.get("tool_call_id"), str):
            return data["tool_call_id"]
    return None


def span_name(obs: Observation, profile: str) -> str:
    """The LangChain name for Langfuse; GenAI convention names for other OTLP backends."""
    if profile == "langfuse":
        return obs.name
    if obs.type in ("GENERATION", "EMBEDDING") and obs.model:
        return f"{_OPERATION[obs.type]} {obs.model}"
    if obs.type in ("TOOL", "AGENT"):
        return f"{_OPERATION[obs.type]} {obs.name}"
    return obs.name


def observation_attributes(obs: Observation, trace: Trace, *, is_root: bool, profile: str) -> dict[str, Any]:
    """Every attribute of one span (values: str, bool, int, float or list of str)."""
    a: dict[str, Any] = {
        "langfuse.observation.type": obs.type.lower(),
        "langfuse.observation.level": obs.level,
        # the trace's environment unless the observation has its own
        "langfuse.environment": obs.environment if obs.environment not in ("", "default") else trace.environment,
        "openinference.span.kind": _OPENINFERENCE_KIND.get(obs.type, "CHAIN"),
    }
    if obs.status_message:
        a["langfuse.observation.status_message"] = obs.status_message
    if trace.release:
        a["langfuse.release"] = trace.release
    if obs.version or trace.version:
        a["langfuse.version"] = obs.version or trace.version
    if profile == "langfuse":
        if obs.input is not None:
            a["langfuse.observation.input"] = dumps(obs.input)
        if obs.output is not None:
            a["langfuse.observation.output"] = dumps(obs.output)
    else:
        if span_name(obs, profile) != obs.name:
            a["lftrace.observation.name"] = obs.name
        if obs.input is not None:
            a["input.value"] = dumps(obs.input)
            a["input.mime_type"] = "application/json"
        if obs.output is not None:
            a["output.value"] = dumps(obs.output)
            a["output.mime_type"] = "application/json"
    metadata = obs.metadata or {}
    for key, value in metadata.items():
        if value is not None:
            a[f"langfuse.observation.metadata.{key}"] = value if isinstance(value, str) else dumps(value)
    if obs.model:
        a["langfuse.observation.model.name"] = obs.model
    if obs.model_parameters:
        a["langfuse.observation.model.parameters"] = dumps(obs.model_parameters)
    if obs.usage_details:
        a["langfuse.observation.usage_details"] = dumps(obs.usage_details)
        a.update(_usage_attributes(obs.usage_details))
    if obs.cost_details:
        a["langfuse.observation.cost_details"] = dumps(obs.cost_details)
    if obs.completion_start_time is not None:
        a["langfuse.observation.completion_start_time"] = iso_from_ns(obs.completion_start_time)
    # OpenTelemetry GenAI
    operation = _OPERATION.get(obs.type)
    if operation == "chat" and metadata.get("ls_model_type") == "llm":
        operation = "text_completion"
    if operation:
        a["gen_ai.operation.name"] = operation
    provider = metadata.get("ls_provider")
    if isinstance(provider, str) and provider:
        a["gen_ai.provider.name"] = _PROVIDERS.get(provider.lower(), provider.lower())
    if obs.type in ("GENERATION", "EMBEDDING"):
        request_model = metadata.get("ls_model_name") if isinstance(metadata.get("ls_model_name"), str) else None
        if request_model or obs.model:
            a["gen_ai.request.model"] = request_model or obs.model
            a["llm.model_name"] = obs.model or request_model
        if obs.model:
            a["gen_ai.response.model"] = obs.model
        for key, value in (obs.model_parameters or {}).items():
            name = _REQUEST_PARAMS.get(key)
            if name and isinstance(value, int | float) and not isinstance(value, bool):
                a[f"gen_ai.request.{name}"] = value
        stop = (obs.model_parameters or {}).get("stop")
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            a["gen_ai.request.stop_sequences"] = stop
    if obs.type == "TOOL":
        a["gen_ai.tool.name"] = obs.name
        a["tool.name"] = obs.name
        call_id = _tool_call_id(obs)
        if call_id:
            a["gen_ai.tool.call.id"] = call_id
    if obs.type == "AGENT":
        a["gen_ai.agent.name"] = obs.name
    if is_root:
        a.update(trace_attributes(trace))
    return a


def trace_attributes(trace: Trace) -> dict[str, Any]:
    a: dict[str, Any] = {}
    if trace.name:
        a["langfuse.trace.name"] = trace.name
    if trace.input is not None:
        a["langfuse.trace.input"] = dumps(trace.input)
    if trace.output is not None:
        a["langfuse.trace.output"] = dumps(trace.output)
    if trace.tags:
        a["langfuse.trace.tags"] = [str(t) for t in trace.tags]
    for key, value in (trace.metadata or {}).items():
        if value is not None:
            a[f"langfuse.trace.metadata.{key}"] = value if isinstance(value, str) else dumps(value)
    if trace.user_id:
        a["user.id"] = trace.user_id
    if trace.session_id:
        a["session.id"] = trace.session_id
    if trace.public:
        a["langfuse.trace.public"] = True
    return a


def limit_attribute_sizes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Cut oversized string values so one span stays well under Langfuse's 9.5 MB."""
    if sum(len(v) for v in attributes.values() if isinstance(v, str)) * 4 <= MAX_VALUE_BYTES // 4:
        return attributes  # the common case: even at 4 UTF-8 bytes a character nothing comes near a limit
    for key, value in attributes.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_BYTES // 4:
            attributes[key] = truncate(value, MAX_VALUE_BYTES)
    sizes = {k: len(v.encode()) for k, v in attributes.items() if isinstance(v, str)}
    if sum(sizes.values()) > MAX_SPAN_BYTES:
        # many large values: share the budget among the big ones
        big = [k for k, size in sizes.items() if size > 1000]
        share = max((MAX_SPAN_BYTES - 1000 * len(sizes)) // max(len(big), 1), 1000)
        for key in big:
            attributes[key] = truncate(attributes[key], share)
    return attributes


def _set_value(target: Any, value: Any) -> None:
    """Fill an AnyValue in place (no intermediate messages: this is the hot loop of encoding)."""
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list | tuple):
        values = target.array_value.values
        for item in value:
            _set_value(values.add(), item)
    else:
        target.string_value = str(value)


def _add_attributes(repeated: Any, attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        if value is not None:
            kv = repeated.add()
            kv.key = key
            _set_value(kv.value, value)


def _synthetic_root(trace: Trace) -> Observation:
    """A trace without observations still gets one span, so the trace exists in the backend."""
    return Observation(
        id=trace.id[:16],
        trace_id=trace.id,
        parent_id=None,
        type="SPAN",
        name=trace.name or "trace",
        start_time=trace.timestamp,
        end_time=trace.end_time or trace.timestamp,
        environment=trace.environment,
    )


_HEX = frozenset("0123456789abcdef")


def foreign_parent_span_id(trace: Trace) -> str | None:
    """The caller's span the trace hangs under (``CallbackHandler(trace_context={"parent_span_id": ...})``).

    Kept in ``trace.metadata["parent_span_id"]``; only a valid OTel span id (16 hex chars, not all zeros)
    counts - anything else is ignored rather than breaking the whole batch (Langfuse rejects bad ids with 400).
    """
    value = (trace.metadata or {}).get("parent_span_id")
    if not isinstance(value, str) or len(value) != 16:
        return None
    value = value.lower()
    if not _HEX.issuperset(value) or value == "0" * 16:
        return None
    return value


def encode_spans(trace: Trace, profile: str = "langfuse") -> list[Any]:
    """The OTLP spans of one trace."""
    from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

    holder = ScopeSpans()
    for _ in _add_spans(holder.spans.add, trace, profile):
        pass
    return list(holder.spans)


def _add_spans(new_span: Callable[[], Any], trace: Trace, profile: str) -> Iterator[Any]:
    """Fill the spans of ``trace`` in place, each in a message from ``new_span()`` (a repeated field's add: no
    copies); yields each one once filled."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    known = {o.id for o in trace.observations}
    foreign_parent = foreign_parent_span_id(trace)
    trace_id = bytes.fromhex(trace.id)
    for obs in trace.observations or [_synthetic_root(trace)]:
        is_root = obs.parent_id is None or obs.parent_id not in known
        attributes = observation_attributes(obs, trace, is_root=is_root, profile=profile)
        parent_id = obs.parent_id
        if parent_id is None and foreign_parent is not None:
            # under the caller's span; Langfuse treats a span with a parent as the trace root only with this flag
            parent_id = foreign_parent
            attributes["langfuse.internal.as_root"] = "true"
        attributes = limit_attribute_sizes(attributes)
        span = new_span()
        span.trace_id = trace_id
        span.span_id = bytes.fromhex(obs.id)
        if parent_id:
            span.parent_span_id = bytes.fromhex(parent_id)
        span.name = span_name(obs, profile)
        span.kind = Span.SPAN_KIND_CLIENT if obs.type in ("GENERATION", "EMBEDDING") else Span.SPAN_KIND_INTERNAL
        span.start_time_unix_nano = obs.start_time
        span.end_time_unix_nano = max(obs.end_time or obs.start_time, obs.start_time)
        if obs.level == "ERROR":
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = (obs.status_message or "error")[:4096]
        else:
            span.status.code = Status.STATUS_CODE_UNSET
        _add_attributes(span.attributes, attributes)
        yield span


def _new_request(resource_attributes: Mapping[str, Any], profile: str) -> tuple[ExportTraceServiceRequest, Any]:
    """An empty request with its resource and scope set, and the repeated field its spans go into."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _add_attributes(resource_spans.resource.attributes, resource_attributes_for(resource_attributes))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = LANGFUSE_SCOPE if profile == "langfuse" else OTLP_SCOPE
    scope_spans.scope.version = __version__
    return request, scope_spans.spans


def encode_traces(
    traces: Sequence[Trace], resource_attributes: Mapping[str, Any] | None = None, *, profile: str = "langfuse"
) -> ExportTraceServiceRequest:
    """One request holding every span of ``traces`` (no size splitting: see ``encode_batches``)."""
    request, spans = _new_request(resource_attributes or {}, profile)
    for trace in traces:
        for _ in _add_spans(spans.add, trace, profile):
            pass
    return request


def encode_batches(
    traces: Sequence[Trace],
    resource_attributes: Mapping[str, Any] | None = None,
    *,
    profile: str = "langfuse",
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[ExportTraceServiceRequest]:
    """Requests of at most ~``max_bytes`` each (a single oversized span still gets its own request)."""
    request, spans = _new_request(resource_attributes or {}, profile)
    requests = [request]
    size = 0

    def new_span() -> Any:
        return spans.add()  # always the current request's field, also after a split

    for trace in traces:
        for span in _add_spans(new_span, trace, profile):
            span_size = span.ByteSize() + 8
            if size and size + span_size > max_bytes:
                # the span that does not fit moves to a new request (the only copy made)
                moved = type(span)()
                moved.CopyFrom(span)
                del spans[-1]
                request, spans = _new_request(resource_attributes or {}, profile)
                requests.append(request)
                spans.append(moved)
                size = 0
            size += span_size
    return [r for r in requests if r.resource_spans[0].scope_spans[0].spans]


# ---------------------------------------------------------------- HTTP

_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "x-langfuse-public-key", "cookie")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to print: auth-like values masked."""
    return {k: (mask_secret(v) if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import time

            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


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


class OtlpExporter:
    """POST protobuf (gzip) to an OTLP/HTTP traces endpoint. ``export`` never raises."""

    profile = "otlp"

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        resource_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.resource_attributes = dict(resource_attributes or {})
        self._client: Any = None
        self._secrets = [v for k, v in self.headers.items() if k.lower() in _SECRET_HEADERS and v]

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

    def export(self, traces: Sequence[Trace], *, timeout: float | None = None) -> ExportResult:
        """Send every span of ``traces``; the result is ok only if every request succeeded."""
        if not traces:
            return ExportResult(ok=True, message="nothing to send")
        try:
            requests = encode_batches(traces, self.resource_attributes, profile=self.profile)
        except Exception as exc:  # a bug or a corrupt trace: don't retry forever
            return ExportResult(ok=False, retryable=False, message=f"could not encode traces: {exc!r}")
        result = ExportResult(ok=True)
        for request in requests:
            result = self.send(request.SerializeToString(), timeout=timeout)
            if not result.ok:
                return result
        return result

    def send(self, body: bytes, *, timeout: float | None = None) -> ExportResult:
        headers = {
            **self.headers,
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": f"lftrace/{__version__}",
        }
        try:
            import httpx

            response = self._http().post(
                self.endpoint,
                content=gzip.compress(body, compresslevel=3),  # 1-3: half the CPU of 5, ~1.4x the bytes
                headers=headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except Exception as exc:
            reason = type(exc).__name__
            if "httpx" in locals() and isinstance(exc, httpx.TimeoutException):
                message = f"timed out after {timeout or self.timeout:.1f}s"
            elif "httpx" in locals() and isinstance(exc, httpx.ConnectError):
                message = f"cannot connect to {self.endpoint}"
            elif "httpx" in locals() and isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
                return ExportResult(ok=False, retryable=False, message=f"invalid URL {self.endpoint}: {exc}")
            else:
                message = f"{reason}: {exc}"
            return ExportResult(ok=False, retryable=True, message=self._scrub(message))
        status = response.status_code
        if 200 <= status < 300:
            return ExportResult(ok=True, status=status)
        summary = self._scrub(_body_summary(response.text))
        message = f"HTTP {status} from {self.endpoint}" + (f": {summary}" if summary else "")
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
        if self._client is not None:
            self._client.close()
            self._client = None


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
    ) -> None:
        token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
        headers = {
            "Authorization": f"Basic {token}",
            "x-langfuse-ingestion-version": "4",
            "x-langfuse-sdk-name": "lftrace",
            "x-langfuse-sdk-version": __version__,
            "x-langfuse-public-key": public_key,
        }
        super().__init__(base_url.rstrip("/") + "/api/public/otel/v1/traces", headers, timeout, resource_attributes)
        self.base_url = base_url.rstrip("/")
        self.public_key = public_key
        self._secrets += [secret_key, token]

    def _auth_hint(self) -> str:
        return (
            f" (Langfuse rejected the keys for {self.base_url}: check LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, "
            f"{mask_secret(self.public_key)})"
        )
