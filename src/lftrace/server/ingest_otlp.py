"""OTLP/HTTP trace requests -> partial ``Trace`` objects (one per trace id in the request).

Three vocabularies are read, ``langfuse.*`` first (what the Langfuse SDKs and our own exporter send, see
exporters/attributes.py), then the OpenTelemetry GenAI conventions (``gen_ai.*``), then OpenInference
(``openinference.span.kind``, ``llm.*``, ``input.value``). A request may hold only some spans of a trace;
the store's merge write adds them up (see app.py).

Bodies: protobuf (``application/x-protobuf``) or OTLP/JSON (``application/json``, ids as hex strings).
Anything malformed raises ``BadRequest`` with a message: the whole request is rejected, nothing is written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson

from ..model import EXPERIMENT_KEY, LEVELS, OBSERVATION_TYPES, Observation, Trace, ns_from_iso


class BadRequest(Exception):
    """The request cannot be ingested; ``str(exc)`` is the message sent back with HTTP 400."""


_OPENINFERENCE_TYPES = {
    "LLM": "GENERATION",
    "TOOL": "TOOL",
    "AGENT": "AGENT",
    "CHAIN": "CHAIN",
    "RETRIEVER": "RETRIEVER",
    "EMBEDDING": "EMBEDDING",
    "EVALUATOR": "EVALUATOR",
    "GUARDRAIL": "GUARDRAIL",
    "RERANKER": "RETRIEVER",
}
_GENAI_OPERATION_TYPES = {
    "chat": "GENERATION",
    "text_completion": "GENERATION",
    "generate_content": "GENERATION",
    "completion": "GENERATION",
    "embeddings": "EMBEDDING",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}
_GENAI_PARAMS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stop_sequences": "stop",
}
_USER_KEYS = ("langfuse.user.id", "user.id", "langfuse.trace.user_id", "enduser.id")
_SESSION_KEYS = ("langfuse.session.id", "session.id", "langfuse.trace.session_id", "gen_ai.conversation.id")
_OBS_META = "langfuse.observation.metadata"
_TRACE_META = "langfuse.trace.metadata"
_STATUS_ERROR = 2  # opentelemetry.proto Status.STATUS_CODE_ERROR
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# ---------------------------------------------------------------- request bodies


def parse_protobuf(body: bytes) -> Any:
    """An ``ExportTraceServiceRequest`` from protobuf bytes."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BadRequest(f"malformed OTLP protobuf body: {exc}") from None
    return request


def _hex_to_b64(value: Any, size: int, what: str) -> Any:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping wants base64 for bytes."""
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRequest(f"invalid {what} {value[:40]!r} in OTLP/JSON: expected {size * 2} hex characters") from None
    return base64.b64encode(raw).decode("ascii")


def parse_json(body: bytes) -> Any:
    """An ``ExportTraceServiceRequest`` from OTLP/JSON (hex ids, camelCase or snake_case keys)."""
    from google.protobuf.json_format import ParseDict, ParseError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("malformed OTLP/JSON body: expected an object with resourceSpans")
    for resource_spans in _items(data, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                for keys, size in ((("traceId", "trace_id"), 16), (("spanId", "span_id"), 8)):
                    for key in keys:
                        if key in span:
                            span[key] = _hex_to_b64(span[key], size, key)
                for key in ("parentSpanId", "parent_span_id"):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], 8, key)
                for link in _items(span, "links"):
                    for key, size in (("traceId", 16), ("spanId", 8), ("trace_id", 16), ("span_id", 8)):
                        if key in link:
                            link[key] = _hex_to_b64(link[key], size, key)
    request = ExportTraceServiceRequest()
    try:
        ParseDict(data, request, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError) as exc:
        raise BadRequest(f"malformed OTLP/JSON body: {exc}") from None
    return request


def _items(container: Any, *keys: str) -> Iterable[Any]:
    if not isinstance(container, dict):
        return ()
    for key in keys:
        value = container.get(key)
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict)]
    return ()


# ---------------------------------------------------------------- attribute values


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return None


_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value"))


def attributes_of(repeated: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in repeated:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind in _SCALARS else _value(v)
    return out


_OBS_META_DOT = "langfuse.observation.metadata."
_TRACE_META_DOT = "langfuse.trace.metadata."


def split_attributes(repeated: Any) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """One pass over a span's attributes: (plain attributes, observation metadata, trace metadata).

    Metadata values are JSON-decoded (the SDKs JSON-encode each one; plain text stays text).
    """
    plain: dict[str, Any] = {}
    obs_meta: dict[str, Any] | None = None
    trace_meta: dict[str, Any] | None = None
    for kv in repeated:
        v = kv.value
        kind = v.WhichOneof("value")
        value = getattr(v, kind) if kind in _SCALARS else _value(v)
        key = kv.key
        if key.startswith("langfuse.") and ".metadata" in key:
            if key.startswith(_OBS_META_DOT):
                obs_meta = obs_meta if obs_meta is not None else {}
                obs_meta[key[len(_OBS_META_DOT) :]] = _json(value)
                continue
            if key.startswith(_TRACE_META_DOT):
                trace_meta = trace_meta if trace_meta is not None else {}
                trace_meta[key[len(_TRACE_META_DOT) :]] = _json(value)
                continue
            if key in (_OBS_META, _TRACE_META):  # non-dict metadata sent whole
                whole = _json(value)
                part = whole if isinstance(whole, dict) else {"metadata": whole}
                if key == _OBS_META:
                    obs_meta = {**part, **(obs_meta or {})}
                else:
                    trace_meta = {**part, **(trace_meta or {})}
                continue
        plain[key] = value
    return plain, obs_meta, trace_meta


def _json(value: Any) -> Any:
    """A JSON-encoded attribute (what the SDKs send for input/output/metadata) -> its value; plain text stays text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return value
    first = text[0]
    if first in '{["' or first in "-0123456789tfn":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return value
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _iso_ns(value: Any) -> int | None:
    value = _json(value)
    if isinstance(value, str):
        try:
            return ns_from_iso(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


def _dict(value: Any) -> dict[str, Any] | None:
    value = _json(value)
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------- spans -> observations


def _observation_type(a: dict[str, Any]) -> str:
    declared = a.get("langfuse.observation.type")
    if isinstance(declared, str) and declared.upper() in OBSERVATION_TYPES:
        return declared.upper()
    kind = a.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in _OPENINFERENCE_TYPES:
        return _OPENINFERENCE_TYPES[kind.upper()]
    operation = a.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in _GENAI_OPERATION_TYPES:
        return _GENAI_OPERATION_TYPES[operation]
    if "gen_ai.request.model" in a or "gen_ai.usage.input_tokens" in a or "llm.model_name" in a:
        return "GENERATION"
    return "SPAN"


def _usage(a: dict[str, Any]) -> dict[str, int] | None:
    declared = _dict(a.get("langfuse.observation.usage_details"))
    if declared is not None:
        counts = {k: n for k, v in declared.items() if (n := _int(v)) is not None}
        return counts or None
    prompt = _int(
        a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens", a.get("llm.token_count.prompt")))
    )
    completion = _int(
        a.get(
            "gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens", a.get("llm.token_count.completion"))
        )
    )
    total = _int(a.get("llm.token_count.total", a.get("gen_ai.usage.total_tokens")))
    if prompt is None and completion is None and total is None:
        return None
    usage: dict[str, int] = {}
    # Langfuse's convention: input/output exclude the detail counts listed beside them
    cache_read = _int(a.get("gen_ai.usage.cache_read.input_tokens", a.get("llm.token_count.prompt_details.cache_read")))
    cache_write = _int(
        a.get("gen_ai.usage.cache_creation.input_tokens", a.get("llm.token_count.prompt_details.cache_write"))
    )
    reasoning = _int(
        a.get("gen_ai.usage.reasoning.output_tokens", a.get("llm.token_count.completion_details.reasoning"))
    )
    if prompt is not None:
        usage["input"] = max(prompt - (cache_read or 0) - (cache_write or 0), 0)
    if completion is not None:
        usage["output"] = max(completion - (reasoning or 0), 0)
    if cache_read is not None:
        usage["input_cache_read"] = cache_read
    if cache_write is not None:
        usage["input_cache_creation"] = cache_write
    if reasoning is not None:
        usage["output_reasoning"] = reasoning
    usage["total"] = total if total is not None else (prompt or 0) + (completion or 0)
    return usage


def _model_parameters(a: dict[str, Any]) -> dict[str, Any] | None:
    declared = _dict(a.get("langfuse.observation.model.parameters"))
    if declared is not None:
        return declared
    params = {name: a[key] for key, name in _GENAI_PARAMS.items() if key in a}
    invocation = _dict(a.get("llm.invocation_parameters"))
    if invocation:
        params = {**invocation, **params}
    return params or None


_CONSUMED_PREFIXES = ("langfuse.", "gen_ai.", "llm.", "openinference.", "input.", "output.", "lftrace.")


def _foreign_metadata(a: dict[str, Any]) -> dict[str, Any]:
    """Attributes no mapping read (from non-Langfuse instrumentations): kept, like Langfuse keeps them."""
    return {
        k: v
        for k, v in a.items()
        if not k.startswith(_CONSUMED_PREFIXES) and k not in _USER_KEYS and k not in _SESSION_KEYS
    }


def span_to_observation(
    span: Any,
    a: dict[str, Any],
    metadata: dict[str, Any] | None,
    trace_id: str,
    span_id: str,
    *,
    keep_foreign: bool,
    environment: str,
) -> Observation:
    parent = span.parent_span_id.hex() if span.parent_span_id else None
    if parent == _ZERO_SPAN or str(a.get("langfuse.internal.as_root", "")).lower() == "true":
        parent = None
    obs_type = _observation_type(a)
    name = a.get("lftrace.observation.name") or span.name
    if obs_type == "TOOL" and not span.name and isinstance(a.get("gen_ai.tool.name"), str):
        name = a["gen_ai.tool.name"]
    if "langfuse.observation.input" in a:
        input_value = _json(a["langfuse.observation.input"])
    elif "input.value" in a:
        input_value = _json(a["input.value"])
    elif "gen_ai.input.messages" in a:
        input_value = _json(a["gen_ai.input.messages"])
    else:
        input_value = _json(a.get("gen_ai.prompt"))
    if "langfuse.observation.output" in a:
        output_value = _json(a["langfuse.observation.output"])
    elif "output.value" in a:
        output_value = _json(a["output.value"])
    elif "gen_ai.output.messages" in a:
        output_value = _json(a["gen_ai.output.messages"])
    else:
        output_value = _json(a.get("gen_ai.completion"))
    if keep_foreign:
        extra = _foreign_metadata(a)
        if "metadata" in a and isinstance(_json(a["metadata"]), dict):  # OpenInference's metadata attribute
            extra.pop("metadata", None)
            metadata = {**_json(a["metadata"]), **(metadata or {})}
        if extra:
            metadata = {**(metadata or {}), "attributes": extra}
    level = a.get("langfuse.observation.level")
    if not (isinstance(level, str) and level.upper() in LEVELS):
        level = "ERROR" if span.status.code == _STATUS_ERROR else "DEFAULT"
    status_message = a.get("langfuse.observation.status_message") or (span.status.message or None)
    model = (
        a.get("langfuse.observation.model.name")
        or a.get("gen_ai.response.model")
        or a.get("gen_ai.request.model")
        or a.get("llm.model_name")
    )
    cost = _dict(a.get("langfuse.observation.cost_details"))
    env = a.get("langfuse.environment")
    version = a.get("langfuse.version")
    start = int(span.start_time_unix_nano)
    end = int(span.end_time_unix_nano) or None
    return Observation(
        id=span_id,
        trace_id=trace_id,
        parent_id=parent,
        type=obs_type,
        name=str(name),
        start_time=start,
        end_time=max(end, start) if end is not None else None,
        completion_start_time=_iso_ns(a.get("langfuse.observation.completion_start_time")),
        model=str(model) if model else None,
        model_parameters=_model_parameters(a),
        input=input_value,
        output=output_value,
        metadata=metadata,
        level=level.upper(),
        status_message=str(status_message) if status_message else None,
        usage_details=_usage(a),
        cost_details={k: float(v) for k, v in cost.items() if isinstance(v, int | float)} if cost else None,
        environment=env if isinstance(env, str) and env else environment,
        version=str(version) if version else None,
        **_prompt_link(a, obs_type),
    )


def _prompt_link(a: dict[str, Any], obs_type: str) -> dict[str, Any]:
    """The Langfuse prompt a generation was made from (``langfuse.observation.prompt.name``/``.version``, set by the
    SDKs and propagated by SDK 5's ``propagate_attributes(prompt=...)``); Langfuse links generations only."""
    name = a.get("langfuse.observation.prompt.name")
    if obs_type != "GENERATION" or not isinstance(name, str) or not name:
        return {}
    version = a.get("langfuse.observation.prompt.version")
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    valid = isinstance(version, int) and not isinstance(version, bool)
    return {"prompt_name": name, "prompt_version": version if valid else None}


def _apply_trace_attributes(
    trace: Trace, a: dict[str, Any], metadata: dict[str, Any] | None, obs: Observation, is_root: bool
) -> None:
    """Trace-level attributes may ride on any span (the SDKs propagate them); the root span is authoritative."""
    name = a.get("langfuse.trace.name")
    if isinstance(name, str) and name and (is_root or not trace.name):
        trace.name = name
    elif is_root and not trace.name:
        trace.name = obs.name
    for key, attr in (("input", "langfuse.trace.input"), ("output", "langfuse.trace.output")):
        if attr in a:
            setattr(trace, key, _json(a[attr]))
        elif is_root and getattr(trace, key) is None:
            setattr(trace, key, getattr(obs, key))
    for keys, field_name in ((_USER_KEYS, "user_id"), (_SESSION_KEYS, "session_id")):
        for key in keys:
            value = a.get(key)
            if isinstance(value, str) and value:
                setattr(trace, field_name, value)
                break
    tags = a.get("langfuse.trace.tags", a.get("tag.tags"))
    if isinstance(tags, str):
        tags = _json(tags)
        tags = tags if isinstance(tags, list) else [tags]
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str) and tag not in trace.tags:
                trace.tags.append(tag)
    if metadata:
        trace.metadata = {**(trace.metadata or {}), **metadata}
    experiment = _experiment(a)
    if experiment:  # run_experiment's item: which experiment, dataset item and version (the experiments API reads it)
        known = (trace.metadata or {}).get(EXPERIMENT_KEY)
        trace.metadata = {
            **(trace.metadata or {}),
            EXPERIMENT_KEY: {**(known if isinstance(known, dict) else {}), **experiment},
        }
    if str(a.get("langfuse.trace.public", "")).lower() == "true":
        trace.public = True
    release = a.get("langfuse.release")
    if isinstance(release, str) and release:
        trace.release = release
    version = a.get("langfuse.version")
    if is_root and isinstance(version, str) and version:
        trace.version = version
    if is_root or trace.environment == "default":
        trace.environment = obs.environment


_EXPERIMENT_DOT = EXPERIMENT_KEY + "."
_EXPERIMENT_JSON = ("metadata", "item.metadata", "item.expected_output")  # the SDKs JSON-encode these (text stays)


def _experiment(a: dict[str, Any]) -> dict[str, Any]:
    """A span's ``langfuse.experiment.*`` attributes as the trace's experiment (``model.EXPERIMENT_KEY``) keeps them."""
    found: dict[str, Any] = {}
    for key, value in a.items():
        if key.startswith(_EXPERIMENT_DOT):
            name = key[len(_EXPERIMENT_DOT) :]
            found[name] = _json(value) if name in _EXPERIMENT_JSON else value
    return found


def request_to_traces(request: Any) -> list[Trace]:
    """The spans of one request, grouped into partial traces (observations in arrival order)."""
    traces: dict[str, Trace] = {}
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        env = resource.get("deployment.environment.name") or resource.get("deployment.environment")
        environment = env if isinstance(env, str) and env else "default"
        for scope_spans in resource_spans.scope_spans:
            # Langfuse keeps the raw attributes of foreign instrumentations as metadata, not its own SDKs'
            scope = scope_spans.scope.name
            keep_foreign = not (scope.startswith("langfuse-sdk") or scope == "lftrace")
            for span in scope_spans.spans:
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                if len(trace_id) != 32 or trace_id == _ZERO_TRACE:
                    raise BadRequest(
                        f"span {span.name[:80]!r} has an invalid trace id: expected 16 bytes, not all zero"
                    )
                if len(span_id) != 16 or span_id == _ZERO_SPAN:
                    raise BadRequest(f"span {span.name[:80]!r} has an invalid span id: expected 8 bytes, not all zero")
                if span.parent_span_id and len(span.parent_span_id) != 8:
                    raise BadRequest(f"span {span.name[:80]!r} has an invalid parent span id: expected 8 bytes")
                a, obs_meta, trace_meta = split_attributes(span.attributes)
                obs = span_to_observation(
                    span, a, obs_meta, trace_id, span_id, keep_foreign=keep_foreign, environment=environment
                )
                trace = traces.get(trace_id)
                if trace is None:
                    trace = traces[trace_id] = Trace(id=trace_id, name=None, timestamp=obs.start_time)
                trace.observations.append(obs)
                trace.timestamp = min(trace.timestamp, obs.start_time)
                if obs.end_time is not None and (trace.end_time is None or obs.end_time > trace.end_time):
                    trace.end_time = obs.end_time
                _apply_trace_attributes(trace, a, trace_meta, obs, obs.parent_id is None)
    return list(traces.values())
