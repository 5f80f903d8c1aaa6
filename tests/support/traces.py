"""Trace builders for tests that need a trace without running a graph."""

from __future__ import annotations

import dataclasses
from typing import Any

from lftrace.model import Observation, Score, Trace

T0 = 1_764_000_000_123_456_000  # whole microseconds: ISO strings keep microseconds

# values that must be valid, not just different from the default
_CHOSEN: dict[str, Any] = {
    "type": "GENERATION",
    "level": "WARNING",
    "environment": "prod",
    "data_type": "NUMERIC",
    "source": "EVAL",
}


def _value_for(owner: type, f: dataclasses.Field[Any], index: int) -> Any:
    """A value for ``f`` unlike its default, chosen from its annotation, so a new field gets one too."""
    if f.name in _CHOSEN:
        return _CHOSEN[f.name]
    kind = str(f.type)
    if kind.startswith("bool"):
        return True
    if kind.startswith("int"):
        return T0 + (index + 1) * 1_000_000 if f.name.endswith(("time", "timestamp")) else index + 2
    if kind.startswith("float"):
        return index + 0.5
    if kind.startswith("str"):
        return f"{owner.__name__.lower()}-{f.name}"
    if kind.startswith("list[str]"):
        return [f"{f.name}-a", f"{f.name}-b"]
    if kind.startswith("dict[str, int]"):
        return {"input": 3, "output": 4, "total": 7}
    if kind.startswith("dict[str, float]"):
        return {"input": 0.25, "output": 0.5, "total": 0.75}
    return {"field": f.name, "items": [1, "two", None]}


def every_field_observation(trace_id: str = "ab" * 16, obs_id: str = "cd" * 8) -> Observation:
    """An observation with every field set to something other than its default."""
    values = {f.name: _value_for(Observation, f, i) for i, f in enumerate(dataclasses.fields(Observation))}
    values.update(id=obs_id, trace_id=trace_id, parent_id=None)
    values["end_time"] = values["start_time"] + 5_000_000
    values["completion_start_time"] = values["start_time"] + 1_000_000
    return Observation(**values)


def every_field_trace(trace_id: str = "ab" * 16) -> Trace:
    """A trace with every field set (one observation, one score), as a round trip must keep it."""
    obs = every_field_observation(trace_id)
    values = {
        f.name: _value_for(Trace, f, i)
        for i, f in enumerate(dataclasses.fields(Trace))
        if f.name not in ("observations", "scores")
    }
    score_values = {f.name: _value_for(Score, f, i) for i, f in enumerate(dataclasses.fields(Score))}
    score_values.update(id="sc1", trace_id=trace_id, observation_id=obs.id, session_id=None, value=0.75)
    score_values["string_value"] = None  # NUMERIC: Langfuse's shape has no stringValue
    values.update(id=trace_id, timestamp=obs.start_time, end_time=obs.end_time, public=True)
    return Trace(**values, observations=[obs], scores=[Score(**score_values)])


def unset_fields(instance: Any) -> list[str]:
    """Fields still at their default: a builder that missed a field would make a round trip prove nothing."""
    missing = []
    for f in dataclasses.fields(instance):
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            continue  # required: the constructor needed a value
        if getattr(instance, f.name) == default:
            missing.append(f.name)
    return missing
