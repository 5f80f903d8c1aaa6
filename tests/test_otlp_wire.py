"""exporters/wire.py writes exactly the bytes the generated opentelemetry.proto classes serialise.

The reference below fills the generated messages field by field (what encode.py did before the export wrote
the wire format itself); every request is compared byte for byte, and decoded by the generated classes.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from lftrace._version import __version__
from lftrace.exporters import wire
from lftrace.exporters.attributes import PROFILES, observation_attributes
from lftrace.exporters.encode import (
    TRUNCATION_MARKER,
    encode_batches,
    encode_request,
    encode_traces,
    foreign_parent_span_id,
    limit_attribute_sizes,
    resource_attributes_for,
)
from lftrace.langchain import CallbackHandler
from lftrace.model import Trace
from support.fake_models import build_agent
from support.traces import every_field_trace, sample_trace


def _set(target: Any, value: Any) -> None:
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):  # a string as its UTF-8 (inputs and outputs: wire.py)
        target.string_value = value.decode()
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
        target.array_value.SetInParent()  # an empty list is an empty array (wire.py), not an empty value
        for item in value:
            _set(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def _add(repeated: Any, attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        if value is not None:
            kv = repeated.add()
            kv.key = key
            _set(kv.value, value)


def reference(traces: list[Trace], resource: dict[str, Any] | None = None, profile: str = "langfuse") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _add(resource_spans.resource.attributes, resource_attributes_for(resource))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = PROFILES[profile].scope
    scope_spans.scope.version = __version__
    for trace in traces:
        known = {o.id for o in trace.observations}
        foreign = foreign_parent_span_id(trace)
        for obs in trace.observations:
            attributes = observation_attributes(obs, trace, is_root=obs.parent_id not in known, profile=profile)
            parent = obs.parent_id
            if parent is None and foreign is not None:
                parent = foreign
                attributes["langfuse.internal.as_root"] = "true"
            span = scope_spans.spans.add()
            span.trace_id = bytes.fromhex(trace.id)
            span.span_id = bytes.fromhex(obs.id)
            if parent:
                span.parent_span_id = bytes.fromhex(parent)
            span.name = PROFILES[profile].span_name(obs)
            span.kind = Span.SPAN_KIND_CLIENT if obs.type in ("GENERATION", "EMBEDDING") else Span.SPAN_KIND_INTERNAL
            span.start_time_unix_nano = obs.start_time
            span.end_time_unix_nano = max(obs.end_time or obs.start_time, obs.start_time)
            if obs.level == "ERROR":
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = (obs.status_message or "error")[:4096]
            else:
                span.status.code = Status.STATUS_CODE_UNSET
            _add(span.attributes, limit_attribute_sizes(attributes))
    return request.SerializeToString()


def _agent_traces(count: int) -> list[Trace]:
    graph = build_agent(tool_error="the weather service is down")
    from langchain_core.messages import HumanMessage

    ids = []
    for n in range(count):
        handler = CallbackHandler()
        with contextlib.suppress(ValueError):  # the failing tool: an ERROR span with a traceback
            graph.invoke({"messages": [HumanMessage(f"Paris {n} ☀ \u202e")]}, config={"callbacks": [handler]})
        ids.append(handler.last_trace_id)
    from lftrace import get_client

    get_client().flush()
    return [get_client().get_trace(i) for i in ids]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_requests_are_byte_identical_to_the_generated_classes(isolated_env, profile):
    traces = [sample_trace(), sample_trace(error=True), every_field_trace(), *_agent_traces(3)]
    traces[0].metadata = {**(traces[0].metadata or {}), "parent_span_id": "00f067aa0ba902b7"}
    obs = traces[1].observations[0]
    obs.metadata = {"big": 2**70, "negative": -5, "float": 0.1, "flag": False, "list": [1, "a", 2.5, True], "empty": ""}
    ours = encode_request(traces, {"service.name": "svc", "deployment.environment": "ci"}, profile=profile)
    assert ours == reference(traces, {"service.name": "svc", "deployment.environment": "ci"}, profile)
    decoded = encode_traces(traces, profile=profile)
    assert sum(len(t.observations) for t in traces) == len(decoded.resource_spans[0].scope_spans[0].spans)


def test_any_value_covers_every_kind():
    for value in [
        "",
        "text",
        "ü€😀",
        True,
        False,
        0,
        1,
        -1,
        2**63 - 1,
        -(2**63),
        2**64,
        0.0,
        -2.5,
        1e300,
        [],
        [1, [2]],
    ]:
        message = Span()
        kv = message.attributes.add()
        kv.key = "k"
        _set(kv.value, value)
        assert Span.FromString(wire.key_values(b"\x4a", {"k": value})) == message, value


def test_batches_split_under_the_limit_and_hold_every_span(isolated_env):
    traces = [sample_trace(tool_output="y" * 50_000) for _ in range(12)]
    requests = encode_batches(traces, max_bytes=200_000)
    assert len(requests) > 2
    assert all(len(r) <= 200_000 + 1_000 for r in requests)
    spans = [
        s for r in requests for s in ExportTraceServiceRequest.FromString(r).resource_spans[0].scope_spans[0].spans
    ]
    assert [s.span_id.hex() for s in spans] == [o.id for t in traces for o in t.observations]


@pytest.mark.parametrize(
    "output",
    [
        "y" * 600_000,  # over the 250 KB the export once re-encoded from, under the 1 MB cut: sent whole
        "é" * 499_900,  # ~1 MB of UTF-8 in half as many characters: still whole
        "é" * 500_100,  # just over 1 MB of UTF-8: cut with a marker
        "y" * 1_000_100,
        'a "quote", a \\ backslash,\n\x01 controls, é and 😀 ' * 25_000,  # escapes to write in the cut value
    ],
    ids=["600k-ascii", "under-1mb-utf8", "over-1mb-utf8", "over-1mb-ascii", "over-1mb-escapes"],
)
def test_large_values_are_cut_exactly_where_the_reference_cuts_them(isolated_env, output):
    """A span is encoded once unless its bytes could break a limit (more than ``MAX_VALUE_BYTES``); at and around
    the limit, in one-byte and two-byte characters, the request is still byte for byte the reference's, which
    applies ``limit_attribute_sizes`` to every span."""
    trace = sample_trace(tool_output=output)
    ours = encode_request([trace])
    assert ours == reference([trace])
    tool = next(s for s in encode_traces([trace]).resource_spans[0].scope_spans[0].spans if s.name == "get_weather")
    sent = next(kv.value.string_value for kv in tool.attributes if kv.key == "langfuse.observation.output")
    # the cut value is the head of the value's JSON text and the marker, as one JSON string (json.dumps' text)
    raw = json.dumps(output, ensure_ascii=False).encode()
    assert ("truncated by lftrace" in sent) == (len(raw) > 1_000_000)
    marked = raw[:999_800].decode("utf-8", "ignore") + TRUNCATION_MARKER.format(size=len(raw))
    assert sent == (json.dumps(marked, ensure_ascii=False) if len(raw) > 1_000_000 else raw.decode())
