"""The trace model: plain dataclasses, stdlib only.

Times are integer nanoseconds since the epoch (``time.time_ns()`` is the
cheapest clock on the hot path); ``to_dict`` turns them into ISO-8601 UTC
strings in the shape of Langfuse's ``GET /api/public/traces/{id}``
(``TraceWithFullDetails``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

OBSERVATION_TYPES = (
    "SPAN",
    "GENERATION",
    "EVENT",
    "AGENT",
    "TOOL",
    "CHAIN",
    "RETRIEVER",
    "EMBEDDING",
    "EVALUATOR",
    "GUARDRAIL",
)
LEVELS = ("DEBUG", "DEFAULT", "WARNING", "ERROR")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}
NEVER_ENDED = "never ended: its process is gone (killed or crashed)"  # an incomplete trace, as shown and exported
# What happened to a run, worst first. cancelled: stopped by Ctrl-C/SIGTERM (partial trace); error: the run
# raised; interrupted: paused at a LangGraph interrupt(), waiting to be resumed; ok: finished (maybe with
# handled errors). ``running`` is a store-only status: a partial trace written while the run goes on.
STATUSES = ("ok", "error", "interrupted", "cancelled")
CANCELLED_KEY = "cancelled"  # trace metadata set by the handler when the run was stopped
INTERRUPTS_KEY = "langgraph_interrupts"  # trace metadata: the interrupts a LangGraph run paused at


# -- the fields, declared once --------------------------------------------------------------------------------
# Each dataclass field says how its JSON (Langfuse's shape) names it, in its metadata: ``from_dict`` reads every
# field through that declaration and the store derives its rows from ``fields()``, so a field added to a
# dataclass is carried everywhere; ``to_dict`` (written out, to keep Langfuse's key order) is checked by the
# round-trip tests, which set every field.


def wire(json: str | None = None, *, time: bool = False, empty: Any = MISSING) -> dict[str, Any]:
    """The metadata of a field that is part of the JSON: its name there (default: the name in camelCase),
    ``time=True`` for ns <-> ISO strings, ``empty``: the value a missing, null or empty JSON value reads as
    (for fields that must hold something, like ``level``)."""
    return {"json": json, "time": time, "empty": empty}


def json_name(f: Field[Any]) -> str:
    head, *rest = f.name.split("_")
    return f.metadata.get("json") or head + "".join(part.title() for part in rest)


def values_from_dict(cls: type, data: dict[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Constructor arguments of ``cls`` from its JSON ``data``: every declared field not in ``skip``.

    A required field without an ``empty`` value must be present (KeyError otherwise, as ``data["id"]`` would);
    a missing optional one keeps the dataclass default.
    """
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skip or "json" not in f.metadata:
            continue
        key, empty = json_name(f), f.metadata.get("empty", MISSING)
        required = f.default is MISSING and f.default_factory is MISSING
        if required and empty is MISSING:
            value = data[key]
        elif key not in data and empty is MISSING:
            continue
        else:
            value = data.get(key)
        if f.metadata.get("time"):
            value = ns_from_iso(value)
        if empty is not MISSING and (value is None or value == "" or value == {} or value == []):
            value = list(empty) if isinstance(empty, list) else empty  # a fresh list, never a shared one
        values[f.name] = value
    return values


def iso_from_ns(ns: int | None) -> str | None:
    """ISO-8601 UTC with microseconds and a trailing Z (Langfuse's format)."""
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns // 1000 / 1_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def json_or_text(value: Any) -> Any:
    """A field Langfuse answers as raw text (v2 observations' input, output, metadata): its JSON when it parses."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def ns_from_iso(text: str | None) -> int | None:
    """Inverse of ``iso_from_ns``; accepts any ISO-8601 string with offset or Z."""
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ns_from_datetime(dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_from_datetime(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (integer arithmetic: no float rounding of the
    microseconds, so a time and its ISO text give the same number everywhere)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@dataclass(slots=True)
class Observation:
    """One node of a trace: a span, generation, tool call, ..."""

    id: str = field(metadata=wire())  # 16 lowercase hex chars (an OpenTelemetry span id)
    trace_id: str = field(metadata=wire())  # 32 lowercase hex chars
    parent_id: str | None = field(metadata=wire("parentObservationId", empty=None))
    type: str = field(metadata=wire(empty="SPAN"))  # one of OBSERVATION_TYPES
    name: str = field(metadata=wire(empty=""))
    start_time: int = field(metadata=wire(time=True, empty=0))  # ns since epoch
    end_time: int | None = field(default=None, metadata=wire(time=True))
    completion_start_time: int | None = field(default=None, metadata=wire(time=True))
    model: str | None = field(default=None, metadata=wire())
    model_parameters: dict[str, Any] | None = field(default=None, metadata=wire())
    input: Any = field(default=None, metadata=wire())
    output: Any = field(default=None, metadata=wire())
    metadata: dict[str, Any] | None = field(default=None, metadata=wire())
    level: str = field(default="DEFAULT", metadata=wire(empty="DEFAULT"))
    status_message: str | None = field(default=None, metadata=wire())
    usage_details: dict[str, int] | None = field(default=None, metadata=wire(empty=None))
    cost_details: dict[str, float] | None = field(default=None, metadata=wire(empty=None))
    environment: str = field(default="default", metadata=wire(empty="default"))
    version: str | None = field(default=None, metadata=wire())
    # the Langfuse prompt this generation was made from (langfuse_prompt)
    prompt_name: str | None = field(default=None, metadata=wire())
    prompt_version: int | None = field(default=None, metadata=wire())

    @property
    def latency(self) -> float | None:
        """Duration in seconds, None while the observation is still open."""
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1e9

    @property
    def total_tokens(self) -> int:
        return token_total(self.usage_details)

    @property
    def time_to_first_token(self) -> float | None:
        if self.completion_start_time is None:
            return None
        return (self.completion_start_time - self.start_time) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Langfuse's ``ObservationsView`` (the v1 read API), every required field present."""
        usage = self.usage_details or {}
        cost = self.cost_details or {}
        usage_in, usage_out, usage_total = _reduce(usage)
        cost_in, cost_out, cost_total = _reduce(cost) if cost else (None, None, None)
        return {
            "id": self.id,
            "traceId": self.trace_id,
            "parentObservationId": self.parent_id,
            "type": self.type,
            "name": self.name,
            "startTime": iso_from_ns(self.start_time),
            "endTime": iso_from_ns(self.end_time),
            "completionStartTime": iso_from_ns(self.completion_start_time),
            "model": self.model,
            "modelId": None,  # a Langfuse model definition id: Langfuse prices, lftrace has none
            "modelParameters": self.model_parameters,
            "input": self.input,
            "output": self.output,
            "metadata": self.metadata,
            "level": self.level,
            "statusMessage": self.status_message,
            "version": self.version,
            "environment": self.environment,
            "promptId": None,
            "promptName": self.prompt_name,
            "promptVersion": self.prompt_version,
            "usageDetails": usage,
            "costDetails": cost,
            # the deprecated summary object, reduced as Langfuse does: input = every input* key, output likewise
            "usage": {
                "input": usage_in,
                "output": usage_out,
                "total": usage_total,
                "unit": "TOKENS" if usage else None,
                "inputCost": cost_in,
                "outputCost": cost_out,
                "totalCost": cost_total,
            },
            "inputPrice": None,  # per-unit prices of a Langfuse model definition (see modelId)
            "outputPrice": None,
            "totalPrice": None,
            "calculatedInputCost": cost_in,
            "calculatedOutputCost": cost_out,
            "calculatedTotalCost": cost_total,
            "latency": self.latency,
            "timeToFirstToken": self.time_to_first_token,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        return cls(**values_from_dict(cls, data))


def _count(value: Any) -> int:
    """A usage count as stored; anything else (a string from a hostile import, a bool) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def token_total(usage: Any) -> int:
    """The tokens of usage details: its ``total``, else the sum of its counts. The one place tokens add up
    (observations, traces, diff, stats); the store's SQL totals follow the same rule."""
    if not isinstance(usage, dict):
        return 0
    if "total" in usage:
        return _count(usage["total"])
    return sum(_count(v) for v in usage.values())


def _reduce(details: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(input, output, total) of usage or cost details: every ``input*``/``output*`` key summed; total as given."""
    inputs = sum(v for k, v in details.items() if k.startswith("input") and isinstance(v, int | float))
    outputs = sum(v for k, v in details.items() if k.startswith("output") and isinstance(v, int | float))
    total = details.get("total")
    if not isinstance(total, int | float):
        total = inputs + outputs
    return inputs, outputs, total


@dataclass(slots=True)
class Trace:
    """A whole trace: trace attributes plus its observations (parents first)."""

    id: str = field(metadata=wire())
    name: str | None = field(metadata=wire(empty=None))
    timestamp: int = field(metadata=wire(time=True, empty=0))  # ns since epoch: start of the root observation
    input: Any = field(default=None, metadata=wire())
    output: Any = field(default=None, metadata=wire())
    session_id: str | None = field(default=None, metadata=wire())
    user_id: str | None = field(default=None, metadata=wire())
    release: str | None = field(default=None, metadata=wire())
    version: str | None = field(default=None, metadata=wire())
    metadata: dict[str, Any] | None = field(default=None, metadata=wire())
    tags: list[str] = field(default_factory=list, metadata=wire(empty=[]))
    environment: str = field(default="default", metadata=wire(empty="default"))
    public: bool = field(default=False, metadata=wire(empty=False))
    # read by from_dict itself: children, and the end (the JSON has a latency, not an end time)
    observations: list[Observation] = field(default_factory=list)
    end_time: int | None = None  # ns: end of the last observation
    scores: list[Score] = field(default_factory=list)
    # media.MediaLink: the media the writer took out of this trace's data, on its way to the store (which keeps
    # it in its media table, not in the trace's JSON: "transient")
    media: Sequence[Any] = field(default=(), compare=False, repr=False, metadata={"transient": True})
    # read from the store: no end, and the process that was writing it is gone (killed, crashed): it never will
    abandoned: bool = field(default=False, compare=False, repr=False, metadata={"transient": True})
    # ... and the last end such a trace recorded (its export ends its still-open observations there)
    last_seen: int | None = field(default=None, compare=False, repr=False, metadata={"transient": True})

    @property
    def latency(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.timestamp) / 1e9

    @property
    def level(self) -> str:
        """The most severe level of any observation (ERROR wins)."""
        best = "DEFAULT"
        for obs in self.observations:
            if LEVEL_RANK.get(obs.level, 1) > LEVEL_RANK[best]:
                best = obs.level
        return best

    @property
    def interrupts(self) -> list[dict[str, Any]]:
        """The LangGraph interrupts the run paused at (``{"id", "value", "node"}``), empty when it did not pause."""
        found = (self.metadata or {}).get(INTERRUPTS_KEY)
        return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []

    @property
    def status(self) -> str:
        """cancelled | error | interrupted | ok (see STATUSES).

        ``error`` means the run itself raised: a top-level observation ended in ERROR. An ERROR observation
        inside a run that still finished is a handled error (``handled_errors``), and the status stays ok.
        """
        meta = self.metadata or {}
        if meta.get(CANCELLED_KEY) or meta.get("interrupted") is True:  # "interrupted": stores before 0.2
            return "cancelled"
        if self.level == "ERROR":
            roots = self.roots()
            if not roots or any(o.level == "ERROR" for o in roots):
                return "error"
        return "interrupted" if self.interrupts else "ok"

    @property
    def shown_status(self) -> str:
        """``status`` as ``list``, ``show`` and the web view name it, as the store's summaries and ``--status`` have
        it: for an ok trace without an end, ``running`` (a long run whose parts are stored while it goes on) or
        ``incomplete`` (its process is gone: it will never end)."""
        status = self.status
        if status == "ok" and self.end_time is None:
            return "incomplete" if self.abandoned else "running"
        return status

    @property
    def handled_errors(self) -> int:
        """ERROR observations of a run that did not raise (0 for an error or cancelled trace)."""
        if self.status in ("error", "cancelled"):
            return 0
        return sum(1 for o in self.observations if o.level == "ERROR")

    @property
    def total_cost(self) -> float | None:
        costs = [
            cost
            for o in self.observations
            if isinstance(o.cost_details, dict)
            and isinstance(cost := o.cost_details.get("total"), int | float)
            and not isinstance(cost, bool)
        ]  # a non-number from a hostile file is not a cost
        return sum(costs) if costs else None

    @property
    def usage(self) -> dict[str, int]:
        """Token counts summed over generations (``input``, ``output``, ``total`` and details)."""
        totals: dict[str, int] = {}
        for obs in self.observations:
            for key, value in (obs.usage_details or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
        return totals

    @property
    def total_tokens(self) -> int:
        return token_total(self.usage)

    def roots(self) -> list[Observation]:
        return [o for o in self.observations if o.parent_id is None]

    def children(self) -> dict[str | None, list[Observation]]:
        """parent id -> children, in start order."""
        kids: dict[str | None, list[Observation]] = {}
        for obs in sorted(self.observations, key=lambda o: o.start_time):
            kids.setdefault(obs.parent_id, []).append(obs)
        return kids

    def to_dict(self, *, observations: bool = True) -> dict[str, Any]:
        """Langfuse's ``TraceWithFullDetails``; ``observations=False``: with an empty list of them (the fields
        derived from them still count them all), for a writer that streams them (jsonout.py)."""
        return {
            "id": self.id,
            "timestamp": iso_from_ns(self.timestamp),
            "name": self.name,
            "input": self.input,
            "output": self.output,
            "sessionId": self.session_id,
            "userId": self.user_id,
            "release": self.release,
            "version": self.version,
            "metadata": self.metadata,
            "tags": list(self.tags),
            "public": self.public,
            "environment": self.environment,
            "htmlPath": f"/trace/{self.id}",
            "latency": self.latency,
            "totalCost": self.total_cost,
            "observations": [o.to_dict() for o in self.observations] if observations else [],
            "scores": [score.to_dict() for score in self.scores],
            # lftrace's own (not in Langfuse's shape; derived, so from_dict ignores them)
            "status": self.status,
            "handledErrors": self.handled_errors,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        observations = [Observation.from_dict(o) for o in data.get("observations") or []]
        timestamp = ns_from_iso(data.get("timestamp")) or min((o.start_time for o in observations), default=0)
        ends = [o.end_time for o in observations if o.end_time is not None]
        end_time = max(ends) if ends else None
        if end_time is None and data.get("latency") is not None:
            end_time = timestamp + int(float(data["latency"]) * 1e9)
        values = values_from_dict(cls, data, skip=("timestamp",))
        values["public"] = bool(values.get("public"))
        return cls(
            **values,
            timestamp=timestamp,
            observations=observations,
            end_time=end_time,
            scores=[Score.from_dict(s) for s in data.get("scores") or [] if isinstance(s, dict) and s.get("name")],
        )


SCORE_DATA_TYPES = ("NUMERIC", "CATEGORICAL", "BOOLEAN", "TEXT", "CORRECTION")


@dataclass(slots=True)
class Score:
    """An evaluation of a trace or one of its observations (``create_score``, ``span.score``), or of a session
    or a dataset run (``trace_id`` None: a *standalone* score, stored and delivered on its own).

    ``value`` is numeric (NUMERIC, BOOLEAN as 1/0, CATEGORICAL's mapped number, CORRECTION's 0), ``string_value``
    the text (CATEGORICAL, TEXT, CORRECTION's corrected output, BOOLEAN as "True"/"False").
    """

    id: str
    trace_id: str | None
    name: str
    timestamp: int  # ns
    value: float | None = None
    string_value: str | None = None
    data_type: str = "NUMERIC"
    observation_id: str | None = None
    session_id: str | None = None
    comment: str | None = None
    metadata: Any = None
    config_id: str | None = None
    environment: str = "default"
    source: str = "API"
    dataset_run_id: str | None = None

    @property
    def standalone(self) -> bool:
        """A score of a session or a dataset run, not of a trace."""
        return not self.trace_id

    @classmethod
    def create(
        cls,
        *,
        id: str,
        trace_id: str | None,
        name: str,
        value: float | str | bool,
        data_type: str | None,
        timestamp: int,
        **kw: Any,
    ) -> Score:
        """Value and data type as Langfuse reads them: a str is CATEGORICAL (or TEXT), a bool BOOLEAN, else NUMERIC.

        ValueError when the score has nothing to belong to (no trace, session or dataset run)."""
        if not (trace_id or kw.get("session_id") or kw.get("dataset_run_id")):
            raise ValueError("a score needs a trace id, a session id or a dataset run id")
        kind = (data_type or "").upper() or None
        if isinstance(value, bool):
            kind = kind or "BOOLEAN"
            number: float | None = 1.0 if value else 0.0
            text: str | None = "True" if value else "False"
        elif isinstance(value, str):
            kind = kind or "CATEGORICAL"
            number, text = (0.0 if kind != "TEXT" else None), value
        else:
            kind = kind or "NUMERIC"
            number, text = float(value), None
            if kind == "BOOLEAN":
                text = "True" if number else "False"
        return cls(
            id=id,
            trace_id=trace_id,
            name=name,
            timestamp=timestamp,
            value=number,
            string_value=text,
            data_type=kind,
            **kw,
        )

    def display_value(self) -> str:
        if self.data_type in ("CATEGORICAL", "TEXT", "BOOLEAN", "CORRECTION") and self.string_value is not None:
            return self.string_value
        if self.value is None:
            return ""
        return f"{self.value:g}"

    def to_dict(self) -> dict[str, Any]:
        """Langfuse's ``ScoreV1`` (the scores of ``TraceWithFullDetails``)."""
        stamp = iso_from_ns(self.timestamp)
        out: dict[str, Any] = {
            "id": self.id,
            "traceId": self.trace_id,
            "observationId": self.observation_id,
            "name": self.name,
            "source": self.source,
            "dataType": self.data_type,
            "timestamp": stamp,
            "createdAt": stamp,
            "updatedAt": stamp,
            "authorUserId": None,
            "comment": self.comment,
            "metadata": self.metadata,
            "configId": self.config_id,
            "queueId": None,
            "environment": self.environment,
        }
        if self.data_type != "TEXT":
            out["value"] = self.value if self.value is not None else 0.0
        if self.data_type != "NUMERIC":
            out["stringValue"] = self.string_value or ""
        return out

    def to_v2_dict(self) -> dict[str, Any]:
        """Langfuse's ``BaseScore`` (v2 API): ``ScoreV1`` with the session and dataset run it belongs to."""
        return {**self.to_dict(), "sessionId": self.session_id, "datasetRunId": self.dataset_run_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        value = data.get("value")
        return cls(
            id=str(data.get("id") or ""),
            trace_id=str(data["traceId"]) if data.get("traceId") else None,
            name=str(data["name"]),
            timestamp=ns_from_iso(data.get("timestamp")) or 0,
            value=float(value) if isinstance(value, int | float) else None,
            string_value=data.get("stringValue"),
            data_type=str(data.get("dataType") or "NUMERIC"),
            observation_id=data.get("observationId"),
            session_id=data.get("sessionId"),
            comment=data.get("comment"),
            metadata=data.get("metadata"),
            config_id=data.get("configId"),
            environment=data.get("environment") or "default",
            source=data.get("source") or "API",
            dataset_run_id=data.get("datasetRunId"),
        )


# the outbox row of a standalone score is keyed "score:<score id>"; a trace id of that form (only the legacy API
# takes such ids) is still delivered as a trace unless a standalone score has the id after the prefix
# trace metadata: the ``langfuse.experiment.*`` attributes of a run_experiment item (sent on every span of the trace)
EXPERIMENT_KEY = "langfuse.experiment"
SCORE_KEY = "score:"


def score_key(score_id: str) -> str:
    return SCORE_KEY + score_id


def scored(key: str) -> str | None:
    """The score id of a standalone score's outbox key; None for a trace id."""
    return key[len(SCORE_KEY) :] if key.startswith(SCORE_KEY) else None


@dataclass(slots=True)
class ScoreItem:
    """A standalone score (of a session or a dataset run) as the outbox delivers it: no spans, only its score."""

    id: str  # its outbox key: score_key(score id)
    scores: list[Score]


@dataclass(slots=True)
class TracePage(Trace):
    """Some observations of a long trace, exported page by page (delivery streams it from the store).

    ``ids``: every observation id of the whole trace, so an observation whose parent is in another page is not
    taken for a root.
    """

    ids: frozenset[str] = frozenset()


@dataclass(slots=True)
class TraceSummary:
    """One row of ``list_traces``: what a listing needs without the observations."""

    id: str
    name: str | None
    timestamp: int
    latency: float | None
    level: str
    total_tokens: int
    total_cost: float | None
    observation_count: int
    session_id: str | None = None
    user_id: str | None = None
    tags: list[str] = field(default_factory=list)
    status: str = "ok"  # one of STATUSES, or running / incomplete (no end: its process is there / gone)
    handled_errors: int = 0  # ERROR observations inside a run that finished

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "timestamp": iso_from_ns(self.timestamp),
            "latency": self.latency,
            "level": self.level,
            "totalTokens": self.total_tokens,
            "totalCost": self.total_cost,
            "observationCount": self.observation_count,
            "sessionId": self.session_id,
            "userId": self.user_id,
            "tags": list(self.tags),
            "status": self.status,
            "handledErrors": self.handled_errors,
        }


@dataclass(slots=True)
class SessionSummary:
    """One row of ``list_sessions``: a session (LangGraph thread) and the totals of its traces."""

    id: str
    traces: int
    first: int  # ns: start of its first trace
    last: int  # ns: end of its last trace
    total_tokens: int = 0
    total_cost: float | None = None
    errors: int = 0
    interrupted: int = 0
    handled_errors: int = 0
    user_ids: list[str] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)  # the session's own (not its traces')

    @property
    def status(self) -> str:
        """``ok``, ``2 errors``, ``1 interrupted``, ``ok · 1 handled`` (the worst first)."""
        parts = [f"{self.errors} error{'s' * (self.errors != 1)}"] * bool(self.errors)
        parts += [f"{self.interrupted} interrupted"] * bool(self.interrupted)
        if parts:
            return ", ".join(parts)
        return f"ok · {self.handled_errors} handled" if self.handled_errors else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessionId": self.id,
            "traces": self.traces,
            "firstTimestamp": iso_from_ns(self.first),
            "lastTimestamp": iso_from_ns(self.last),
            "totalTokens": self.total_tokens,
            "totalCost": self.total_cost,
            "errors": self.errors,
            "interrupted": self.interrupted,
            "handledErrors": self.handled_errors,
            "userIds": list(self.user_ids),
            "status": self.status,
            "scores": [score.to_v2_dict() for score in self.scores],
        }
