"""Trace -> OTLP ``ExportTraceServiceRequest`` (protobuf): spans, size limits, batching.

One observation is one span; its attributes come from attributes.py (the profile picks the vocabularies).
The bytes are written by wire.py (the generated ``opentelemetry.proto`` classes only read them back, in tests
and ``encode_traces``). Size limits: any single attribute value is cut to ``MAX_VALUE_BYTES`` (with a marker
saying how big it was; the local store keeps the full copy), a span's attributes to about ``MAX_SPAN_BYTES``,
and ``iter_batches`` splits requests to stay under ``MAX_REQUEST_BYTES`` (Langfuse: spans under 9.5 MB,
requests under 16 MB).

``opentelemetry.proto`` is only imported by ``encode_traces``: exporting never imports it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .._version import __version__
from ..model import NEVER_ENDED, Observation, ScoreItem, Trace, TracePage
from . import wire
from .attributes import PROFILES, observation_attributes

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_VALUE_BYTES = 1_000_000  # one attribute value
MAX_SPAN_BYTES = 4_000_000  # all attribute values of one span (Langfuse drops spans over ~9.5 MB)
# A span encoded at most this big has no value that limit_attribute_sizes would cut (no value over MAX_VALUE_BYTES
# of UTF-8, all of them under MAX_SPAN_BYTES): checked on the bytes, once, instead of summing every attribute's
# length before encoding. Any bigger span is measured and encoded again: at MAX_VALUE_BYTES // 4, every span of a
# long run's second half (inputs of 250 KB to 1 MB) was encoded three times
_SURELY_UNDER_LIMITS = min(MAX_VALUE_BYTES, MAX_SPAN_BYTES)
MAX_REQUEST_BYTES = 4_000_000  # one request, before gzip (Langfuse: keep well under 16 MB)
# ... and one request sent without gzip (an endpoint on this machine): a long run's requests are all this size,
# and at 4 MB each the process's peak RSS grew by ~80 MB more than at 1 MB (4,000-step loop, bench/long_run.py)
MAX_PLAIN_REQUEST_BYTES = 1_000_000
TRUNCATION_MARKER = "...[truncated by lftrace: {size} bytes; the full value is in the local trace store]"


def truncate(text: str | bytes, limit: int = MAX_VALUE_BYTES) -> str | bytes:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else a JSON string holding its head and a marker (given bytes,
    UTF-8 bytes: the wire's form of an input or output)."""
    raw = text if isinstance(text, bytes) else text.encode()
    if len(raw) <= limit:
        return text
    # decoded from a view of the bytes (no copy of the head first); "ignore": a character cut in two is left out
    head = str(memoryview(raw)[: max(limit - 200, 0)], "utf-8", "ignore")
    # a JSON string, so a truncated JSON document still parses on the other side. orjson writes what
    # json.dumps(ensure_ascii=False) writes (the head holds no lone surrogate: it was decoded from UTF-8) in a
    # quarter of the time: a long run's every input over 1 MB is cut here (3.9 against 1.1 ms a value)
    cut = orjson.dumps(head + TRUNCATION_MARKER.format(size=len(raw)))
    return cut if isinstance(text, bytes) else cut.decode()


def resource_attributes_for(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "service.name": "lftrace",
        "telemetry.sdk.name": "lftrace",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    attributes.update(extra or {})
    return attributes


def limit_attribute_sizes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Cut oversized string values (str, or bytes: UTF-8) so one span stays well under Langfuse's 9.5 MB."""
    # the common case: even at 4 UTF-8 bytes a character nothing comes near a limit
    if sum([_most_bytes(v) for v in attributes.values() if isinstance(v, str | bytes)]) <= MAX_VALUE_BYTES // 4:
        return attributes
    for key, value in attributes.items():
        if isinstance(value, str | bytes) and _most_bytes(value) > MAX_VALUE_BYTES:
            attributes[key] = truncate(value, MAX_VALUE_BYTES)
    sizes = {
        k: len(v if isinstance(v, bytes) else v.encode()) for k, v in attributes.items() if isinstance(v, str | bytes)
    }
    if sum(sizes.values()) > MAX_SPAN_BYTES:
        # many large values: share the budget among the big ones
        big = [k for k, size in sizes.items() if size > 1000]
        share = max((MAX_SPAN_BYTES - 1000 * len(sizes)) // max(len(big), 1), 1000)
        for key in big:
            attributes[key] = truncate(attributes[key], share)
    return attributes


def _most_bytes(value: str | bytes) -> int:
    """The most UTF-8 bytes ``value`` can take (a str: 4 a character)."""
    return len(value) if isinstance(value, bytes) else 4 * len(value)


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


def _never_ended(obs: Observation, last_seen: int | None) -> Observation:
    """An observation left open by a run whose process died (an ``incomplete`` trace: a long run's root): sent
    ending where the trace's record stops, as a WARNING saying why, as a run stopped by Ctrl-C is sent."""
    return dataclasses.replace(
        obs,
        end_time=max(last_seen or obs.start_time, obs.start_time),
        level="ERROR" if obs.level == "ERROR" else "WARNING",
        status_message=obs.status_message or NEVER_ENDED,
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


def _span_fields(trace: Trace, profile: str) -> Iterator[bytes]:
    """The spans of ``trace``, each as it sits in a request (ScopeSpans.spans field)."""
    name_of = PROFILES[profile].span_name
    known = trace.ids if isinstance(trace, TracePage) else {o.id for o in trace.observations}
    foreign_parent = foreign_parent_span_id(trace)
    trace_id = bytes.fromhex(trace.id)
    for obs in trace.observations or [_synthetic_root(trace)]:
        if obs.end_time is None and trace.abandoned:
            obs = _never_ended(obs, trace.last_seen)
        is_root = obs.parent_id is None or obs.parent_id not in known
        attributes = observation_attributes(obs, trace, is_root=is_root, profile=profile)
        parent_id = obs.parent_id
        if parent_id is None and foreign_parent is not None:
            # under the caller's span; Langfuse treats a span with a parent as the trace root only with this flag
            parent_id = foreign_parent
            attributes["langfuse.internal.as_root"] = "true"
        span = functools.partial(
            wire.span_parts,
            trace_id=trace_id,
            span_id=bytes.fromhex(obs.id),
            parent_span_id=bytes.fromhex(parent_id) if parent_id else None,
            name=name_of(obs),
            kind=wire.SPAN_KIND_CLIENT if obs.type in ("GENERATION", "EMBEDDING") else wire.SPAN_KIND_INTERNAL,
            start_ns=obs.start_time,
            end_ns=max(obs.end_time or obs.start_time, obs.start_time),
            error_message=(obs.status_message or "error")[:4096] if obs.level == "ERROR" else None,
        )
        parts = span(attributes=attributes)
        size = sum(map(len, parts))
        if size > _SURELY_UNDER_LIMITS:  # a value may be over a limit: cut what is, and encode again
            parts = span(attributes=limit_attribute_sizes(attributes))
            size = sum(map(len, parts))
        yield wire.span_field_of(parts, size)


class EncodedTrace:
    """A trace already turned into its spans' bytes for one profile (delivery keeps these for the traces it has
    just written, instead of the traces themselves: bytes are not tracked by the garbage collector)."""

    __slots__ = ("id", "profile", "scores", "spans")

    def __init__(self, trace: Trace, profile: str) -> None:
        self.id = trace.id
        self.profile = profile
        self.spans = list(_span_fields(trace, profile))
        self.scores = list(trace.scores)


Exportable = Trace | EncodedTrace | ScoreItem  # what exporters take: traces, pre-encoded traces, standalone scores


def _spans_of(item: Exportable, profile: str) -> Iterator[bytes]:
    if isinstance(item, ScoreItem):  # a session's or dataset run's score: nothing for OTLP
        return iter(())
    if not isinstance(item, EncodedTrace):
        return _span_fields(item, profile)
    if item.profile != profile:
        raise ValueError(f"trace {item.id} was encoded for {item.profile}, not {profile}")
    return iter(item.spans)


def _head(resource_attributes: Mapping[str, Any] | None, profile: str) -> tuple[bytes, bytes]:
    return wire.request_head(resource_attributes_for(resource_attributes), PROFILES[profile].scope, __version__)


def encode_request(
    traces: Sequence[Exportable],
    resource_attributes: Mapping[str, Any] | None = None,
    *,
    profile: str = "langfuse",
) -> bytes:
    """One serialised request holding every span of ``traces`` (no size splitting: see ``encode_batches``)."""
    return wire.request(_head(resource_attributes, profile), (f for t in traces for f in _spans_of(t, profile)))


def encode_traces(
    traces: Sequence[Trace], resource_attributes: Mapping[str, Any] | None = None, *, profile: str = "langfuse"
) -> ExportTraceServiceRequest:
    """``encode_request`` read back into the generated message class (tests, tools; not the export's path)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest.FromString(encode_request(traces, resource_attributes, profile=profile))


def iter_batches(
    traces: Sequence[Exportable],
    resource_attributes: Mapping[str, Any] | None = None,
    *,
    profile: str = "langfuse",
    max_bytes: int = MAX_REQUEST_BYTES,
) -> Iterator[bytes]:
    """Serialised requests of at most ~``max_bytes`` each (a single oversized span still gets its own request),
    made one at a time: a page of a long agent run holds ~100 MB of span inputs, sent as they are made."""
    head = _head(resource_attributes, profile)
    spans: list[bytes] = []
    size = 0
    for trace in traces:
        for span in _spans_of(trace, profile):
            if spans and size + len(span) > max_bytes:
                yield wire.request(head, spans)
                spans, size = [], 0
            spans.append(span)
            size += len(span)
    if spans:
        yield wire.request(head, spans)


def encode_batches(
    traces: Sequence[Exportable],
    resource_attributes: Mapping[str, Any] | None = None,
    *,
    profile: str = "langfuse",
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[bytes]:
    """Every request of ``iter_batches`` at once (tests, tools)."""
    return list(iter_batches(traces, resource_attributes, profile=profile, max_bytes=max_bytes))
