"""The type names of the Langfuse SDK's ``langfuse.types`` that code written for it imports (``from lftrace.types
import TraceContext``): the same shapes, for annotations and ``trace_context=`` dicts. The OpenTelemetry span hooks'
types (``MaskOtelSpansFunction``, ...) are left out: lftrace has no OpenTelemetry spans to give them."""

# no ``from __future__ import annotations``: TypedDict reads NotRequired from evaluated annotations
from typing import Any, Literal, NotRequired, Protocol, TypedDict

SpanLevel = Literal["DEBUG", "DEFAULT", "WARNING", "ERROR"]
ScoreDataType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN", "TEXT", "CORRECTION"]
ExperimentScoreType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN"]  # what evaluators may return


class MaskFunction(Protocol):
    """``Langfuse(mask=fn)``: called as ``fn(data=...)`` on inputs, outputs and metadata; returns what is kept."""

    def __call__(self, *, data: Any, **kwargs: Any) -> Any: ...


class TraceContext(TypedDict):
    """``trace_context=``: the trace to join (32 hex), and the span to start under (16 hex), if any."""

    trace_id: str
    parent_span_id: NotRequired[str]


class ParsedMediaReference(TypedDict):
    """A ``@@@langfuseMedia:type=...|id=...|source=...@@@`` reference, parsed."""

    media_id: str
    source: str
    content_type: str


__all__ = [
    "ExperimentScoreType",
    "MaskFunction",
    "ParsedMediaReference",
    "ScoreDataType",
    "SpanLevel",
    "TraceContext",
]
