"""The legacy batch endpoint ``POST /api/public/ingestion`` (Langfuse Python SDK v2, JS ``langfuse-langchain``).

A batch holds events ``{id, type, timestamp, body}``: trace-create, span-create/-update,
generation-create/-update, event-create, observation-create/-update, score-create and sdk-log. Updates carry
only the fields that changed, so the traces a batch touches are read from the store first, every event is
applied in order, and the whole traces are written back in one transaction (see app.py). The answer is
Langfuse's: HTTP 207 with ``{"successes": [{id, status}], "errors": [{id, status, message}]}`` per event.

Ids are kept as the SDK sends them (UUIDs), as Langfuse does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import LEVELS, OBSERVATION_TYPES, Observation, Score, Trace, iso_from_ns, ns_from_iso
from ..usage import normalise_usage

_OBSERVATION_EVENTS = {
    "span-create": ("SPAN", True),
    "span-update": ("SPAN", False),
    "generation-create": ("GENERATION", True),
    "generation-update": ("GENERATION", False),
    "event-create": ("EVENT", True),
    "observation-create": (None, True),
    "observation-update": (None, False),
}
# newer SDKs also send agent-create, tool-create, ... with the same body as span-create
for _t in OBSERVATION_TYPES:
    _OBSERVATION_EVENTS.setdefault(f"{_t.lower()}-create", (_t, True))
    _OBSERVATION_EVENTS.setdefault(f"{_t.lower()}-update", (_t, False))


class EventError(Exception):
    """One event cannot be applied; the others still are (HTTP 207)."""


@dataclass
class BatchResult:
    traces: list[Trace] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)  # of sessions and dataset runs (no trace): stored on their own
    successes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        return {"successes": self.successes, "errors": self.errors}


def trace_ids_of(batch: Sequence[Any]) -> list[str]:
    """The trace ids a batch touches (to read them from the store before applying it)."""
    ids: list[str] = []
    for event in batch:
        body = event.get("body") if isinstance(event, dict) else None
        if not isinstance(body, dict):
            continue
        tid = body.get("id") if event.get("type") == "trace-create" else body.get("traceId")
        if isinstance(tid, str) and tid:
            ids.append(tid)
    return list(dict.fromkeys(ids))


def _time(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{what} must be an ISO-8601 string")
    try:
        return ns_from_iso(value)
    except ValueError:
        raise EventError(f"{what} {value[:40]!r} is not an ISO-8601 date-time") from None


def _with_total(counts: dict[str, int] | None) -> dict[str, int] | None:
    if counts and "total" not in counts:
        counts["total"] = sum(v for k, v in counts.items() if k == "input" or k == "output" or "_" in k)
    return counts


def _usage(body: dict[str, Any]) -> dict[str, int] | None:
    details = body.get("usageDetails")
    if isinstance(details, dict) and details:
        return _with_total(normalise_usage(details))
    usage = body.get("usage")
    if isinstance(usage, dict) and usage:
        if "promptTokens" in usage or "completionTokens" in usage:
            usage = {
                "prompt_tokens": usage.get("promptTokens"),
                "completion_tokens": usage.get("completionTokens"),
                "total_tokens": usage.get("totalTokens"),
            }
        else:
            usage = {k: v for k, v in usage.items() if k in ("input", "output", "total") and v is not None}
        return _with_total(normalise_usage(usage))
    return None


def _cost(body: dict[str, Any]) -> dict[str, float] | None:
    details = body.get("costDetails")
    if isinstance(details, dict) and details:
        return {k: float(v) for k, v in details.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    usage = body.get("usage")
    if isinstance(usage, dict):
        cost = {
            key: float(usage[name])
            for key, name in (("input", "inputCost"), ("output", "outputCost"), ("total", "totalCost"))
            if isinstance(usage.get(name), int | float)
        }
        return cost or None
    return None


def _metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return value if isinstance(value, dict) else {"metadata": value}


class _Batch:
    """Applies events to traces read from the store (``existing``) or created by the batch."""

    def __init__(self, existing: dict[str, Trace]) -> None:
        self.traces: dict[str, Trace] = existing
        self.touched: dict[str, Trace] = {}
        self.standalone: dict[str, Score] = {}  # scores of sessions and dataset runs, by id (the last one wins)
        self.observations: dict[tuple[str, str], Observation] = {
            (t.id, o.id): o for t in existing.values() for o in t.observations
        }

    def _trace(self, trace_id: str, start: int) -> Trace:
        trace = self.traces.get(trace_id)
        if trace is None:
            trace = self.traces[trace_id] = Trace(id=trace_id, name=None, timestamp=start)
        self.touched[trace_id] = trace
        return trace

    def trace_event(self, body: dict[str, Any], event_time: int) -> None:
        trace_id = body.get("id")
        if not isinstance(trace_id, str) or not trace_id:
            raise EventError("trace-create needs body.id")
        timestamp = _time(body.get("timestamp"), "body.timestamp")
        trace = self._trace(trace_id, timestamp or event_time)
        if timestamp is not None:
            trace.timestamp = timestamp
        for key, attr in (
            ("name", "name"),
            ("userId", "user_id"),
            ("sessionId", "session_id"),
            ("release", "release"),
            ("version", "version"),
            ("input", "input"),
            ("output", "output"),
        ):
            if body.get(key) is not None:
                setattr(trace, attr, body[key])
        if body.get("metadata") is not None:
            trace.metadata = {**(trace.metadata or {}), **(_metadata(body["metadata"]) or {})}
        if isinstance(body.get("tags"), list):
            trace.tags = list(dict.fromkeys([*trace.tags, *(t for t in body["tags"] if isinstance(t, str))]))
        if isinstance(body.get("environment"), str) and body["environment"]:
            trace.environment = body["environment"]
        if isinstance(body.get("public"), bool):
            trace.public = body["public"]

    def observation_event(self, kind: str | None, create: bool, body: dict[str, Any], event_time: int) -> None:
        obs_id = body.get("id")
        trace_id = body.get("traceId")
        if not isinstance(obs_id, str) or not obs_id:
            raise EventError("observation events need body.id")
        declared = body.get("type")
        if isinstance(declared, str) and declared.upper() in OBSERVATION_TYPES:
            kind = kind if kind not in (None, "SPAN") or declared.upper() == "SPAN" else declared.upper()
            kind = kind or declared.upper()
        if not isinstance(trace_id, str) or not trace_id:
            # an update may omit the trace id: find the observation in this batch or the traces read
            matches = [key for key in self.observations if key[1] == obs_id]
            if not matches:
                if create:
                    trace_id = obs_id  # Langfuse: an observation without a trace gets a trace of its own
                else:
                    raise EventError(f"update of unknown observation {obs_id!r} without body.traceId")
            else:
                trace_id = matches[0][0]
        start = _time(body.get("startTime"), "body.startTime")
        obs = self.observations.get((trace_id, obs_id))
        trace = self._trace(trace_id, start or event_time)
        if obs is None:
            obs = Observation(
                id=obs_id,
                trace_id=trace_id,
                parent_id=None,
                type=kind or "SPAN",
                name="",
                start_time=start or event_time,
            )
            self.observations[(trace_id, obs_id)] = obs
            trace.observations.append(obs)
        elif kind is not None and (create or obs.type == "SPAN"):
            obs.type = kind
        if start is not None:
            obs.start_time = start
        end = _time(body.get("endTime"), "body.endTime")
        if kind == "EVENT" and end is None and create:
            end = obs.start_time
        if end is not None:
            obs.end_time = max(end, obs.start_time)
        completion_start = _time(body.get("completionStartTime"), "body.completionStartTime")
        if completion_start is not None:
            obs.completion_start_time = completion_start
        for key, attr in (
            ("name", "name"),
            ("parentObservationId", "parent_id"),
            ("model", "model"),
            ("input", "input"),
            ("output", "output"),
            ("statusMessage", "status_message"),
            ("version", "version"),
        ):
            if body.get(key) is not None:
                setattr(obs, attr, body[key] if key in ("input", "output") else str(body[key]))
        if isinstance(body.get("modelParameters"), dict):
            obs.model_parameters = {**(obs.model_parameters or {}), **body["modelParameters"]}
        if body.get("metadata") is not None:
            obs.metadata = {**(obs.metadata or {}), **(_metadata(body["metadata"]) or {})}
        level = body.get("level")
        if isinstance(level, str) and level.upper() in LEVELS:
            obs.level = level.upper()
        if isinstance(body.get("environment"), str) and body["environment"]:
            obs.environment = body["environment"]
        usage = _usage(body)
        if usage:
            obs.usage_details = usage
        cost = _cost(body)
        if cost:
            obs.cost_details = cost

    def score_event(self, body: dict[str, Any], event_id: str, event_time: int) -> None:
        trace_id, session_id, run_id = (_text(body.get(key)) for key in ("traceId", "sessionId", "datasetRunId"))
        name = body.get("name")
        value = body.get("value")
        if not (trace_id or session_id or run_id):
            raise EventError("score-create needs body.traceId, body.sessionId or body.datasetRunId")
        if not isinstance(name, str) or not name or not isinstance(value, int | float | str | bool):
            raise EventError("score-create needs body.name and a number, boolean or string body.value")
        data_type = body.get("dataType")
        try:
            score = Score.create(
                id=str(body.get("id") or event_id),
                trace_id=trace_id,
                name=name,
                value=value,
                data_type=data_type if isinstance(data_type, str) else None,
                timestamp=_time(body.get("timestamp"), "body.timestamp") or event_time,
                observation_id=body.get("observationId") if isinstance(body.get("observationId"), str) else None,
                session_id=session_id,
                dataset_run_id=run_id,
                comment=body.get("comment") if isinstance(body.get("comment"), str) else None,
                metadata=body.get("metadata"),
                config_id=body.get("configId") if isinstance(body.get("configId"), str) else None,
                environment=body.get("environment") if isinstance(body.get("environment"), str) else "default",
            )
        except (TypeError, ValueError) as exc:
            raise EventError(f"invalid score: {exc}") from None
        if trace_id is None:
            self.standalone[score.id] = score
            return
        trace = self._trace(trace_id, score.timestamp)
        trace.scores = [s for s in trace.scores if s.id != score.id] + [score]

    def finish(self) -> list[Trace]:
        for trace in self.touched.values():
            trace.observations.sort(key=lambda o: o.start_time)
            if trace.observations:
                trace.timestamp = min(trace.timestamp, trace.observations[0].start_time)
                ends = [o.end_time for o in trace.observations if o.end_time is not None]
                trace.end_time = max(ends) if ends else None
        return list(self.touched.values())


def score_create_event(body: dict[str, Any]) -> dict[str, Any]:
    """A score of ``POST /api/public/scores`` as the score-create event the legacy batch endpoint applies (its
    id kept, or one made as Langfuse makes it; timestamp: now)."""
    score_id = body.get("id") if isinstance(body.get("id"), str) and body.get("id") else str(uuid.uuid4())
    now = iso_from_ns(time.time_ns())
    return {"id": score_id, "type": "score-create", "timestamp": now, "body": {**body, "id": score_id}}


def apply_batch(batch: Any, read_traces: Callable[[list[str]], Iterable[Trace]]) -> BatchResult:
    """Apply a batch to the traces it touches (``read_traces(ids)`` reads them from the store)."""
    result = BatchResult()
    events = batch if isinstance(batch, list) else []
    state = _Batch({t.id: t for t in read_traces(trace_ids_of(events))})
    for position, event in enumerate(events):
        event_id = event.get("id") if isinstance(event, dict) else None
        event_id = event_id if isinstance(event_id, str) and event_id else f"#{position}"
        try:
            if not isinstance(event, dict):
                raise EventError("each event must be an object with id, type, timestamp and body")
            kind = event.get("type")
            body = event.get("body")
            if not isinstance(body, dict):
                raise EventError("body must be an object")
            event_time = _time(event.get("timestamp"), "timestamp") or 0
            if kind == "trace-create":
                state.trace_event(body, event_time)
            elif kind in _OBSERVATION_EVENTS:
                obs_kind, create = _OBSERVATION_EVENTS[kind]
                state.observation_event(obs_kind, create, body, event_time)
            elif kind == "score-create":
                state.score_event(body, event_id, event_time)
            elif kind == "sdk-log":
                pass
            else:
                raise EventError(f"unknown event type {str(kind)[:40]!r}")
        except EventError as exc:
            result.errors.append({"id": event_id, "status": 400, "message": str(exc), "error": str(exc)})
            continue
        result.successes.append({"id": event_id, "status": 201})
    result.traces = state.finish()
    result.scores = list(state.standalone.values())
    return result


def _text(value: Any) -> str | None:
    """A non-empty string field, else None."""
    return value if isinstance(value, str) and value else None
