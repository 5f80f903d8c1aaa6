"""Trace builders for tests that need a trace without running a graph."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lftrace.model import Observation, Score, Trace

BASE_NS = 1_760_000_000_000_000_000  # a fixed clock: 2025-10-09
T0 = 1_764_000_000_123_456_000  # whole microseconds: ISO strings keep microseconds


def new_id(nbytes: int = 16) -> str:
    """A random trace id (16 bytes) or span id (``new_id(8)``), lowercase hex."""
    return os.urandom(nbytes).hex()


def make_trace(
    trace_id: str | None = None,
    *,
    name: str = "agent",
    start: int = BASE_NS,
    error: bool = False,
    interrupted: bool = False,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: list[str] | None = None,
    finished: bool = True,
    answer: str = "4",
) -> Trace:
    """A trace shaped like a small LangGraph run: chain -> (node -> generation, tool), with usage and cost."""
    tid = trace_id or new_id()
    root, node, gen, tool = (new_id(8) for _ in range(4))
    ms = 1_000_000
    observations = [
        Observation(
            id=root,
            trace_id=tid,
            parent_id=None,
            type="CHAIN",
            name=name,
            start_time=start,
            end_time=start + 50 * ms if finished else None,
            input={"messages": [{"role": "user", "content": "what is 2+2?"}]},
            output={"messages": [{"role": "assistant", "content": answer}]} if finished else None,
            metadata={"langgraph_step": 0, "nested": {"a": [1, 2, {"b": None}]}},
        ),
        Observation(
            id=node,
            trace_id=tid,
            parent_id=root,
            type="SPAN",
            name="agent_node",
            start_time=start + 1 * ms,
            end_time=start + 40 * ms,
            input={"x": 1},
            output={"y": 2},
            level="ERROR" if error else "DEFAULT",
            status_message="ValueError: boom" if error else None,
        ),
        Observation(
            id=gen,
            trace_id=tid,
            parent_id=node,
            type="GENERATION",
            name="ChatOpenAI",
            start_time=start + 2 * ms,
            end_time=start + 30 * ms,
            completion_start_time=start + 5 * ms,
            model="gpt-4o-mini",
            model_parameters={"temperature": 0.0, "max_tokens": 64},
            input=[{"role": "user", "content": "what is 2+2?"}],
            output={"role": "assistant", "content": answer},
            usage_details={"input": 12, "output": 3, "total": 15},
            cost_details={"input": 0.0000018, "output": 0.0000018, "total": 0.0000036},
            version="v1",
        ),
        Observation(
            id=tool,
            trace_id=tid,
            parent_id=node,
            type="TOOL",
            name="calculator",
            start_time=start + 31 * ms,
            end_time=start + 35 * ms,
            input="2+2",
            output="4",
            level="WARNING",
        ),
    ]
    metadata: dict[str, Any] = {"run": "test", "unicode": "héllo ✓"}
    if interrupted:
        metadata["interrupted"] = True
    return Trace(
        id=tid,
        name=name,
        timestamp=start,
        input={"messages": [{"role": "user", "content": "what is 2+2?"}]},
        output={"answer": answer} if finished else None,
        session_id=session_id,
        user_id=user_id,
        release="1.2.3",
        version="v7",
        metadata=metadata,
        tags=list(tags or []),
        environment="ci",
        public=True,
        observations=observations,
        end_time=start + 50 * ms if finished else None,
    )


def sample_trace(trace_id: str | None = None, *, error: bool = False, tool_output: Any = "sunny", start: int = BASE_NS):
    """chain (root) -> generation + tool, like a one-step agent; usage with cache and reasoning details."""
    tid = trace_id or new_id()
    root, gen, tool = new_id(8), new_id(8), new_id(8)
    ms = 1_000_000
    observations = [
        Observation(
            id=root,
            trace_id=tid,
            parent_id=None,
            type="CHAIN",
            name="LangGraph",
            start_time=start,
            end_time=start + 90 * ms,
            input={"messages": [{"role": "user", "content": "weather in Paris?"}]},
            output={"messages": [{"role": "assistant", "content": "It is sunny"}]},
            metadata={"langgraph_step": 0},
            level="ERROR" if error else "DEFAULT",
            status_message="ValueError: boom" if error else None,
        ),
        Observation(
            id=gen,
            trace_id=tid,
            parent_id=root,
            type="GENERATION",
            name="ChatOpenAI",
            start_time=start + 5 * ms,
            end_time=start + 40 * ms,
            completion_start_time=start + 15 * ms,
            model="gpt-4o-mini-2024-07-18",
            model_parameters={"temperature": 0.2, "max_tokens": 256},
            input=[{"role": "user", "content": "weather in Paris?"}],
            output={"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "name": "get_weather"}]},
            metadata={"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_model_type": "chat"},
            usage_details={"input": 20, "input_cache_read": 100, "output": 20, "output_reasoning": 10, "total": 150},
            cost_details={"input": 0.0001, "output": 0.0002, "total": 0.0003},
        ),
        Observation(
            id=tool,
            trace_id=tid,
            parent_id=root,
            type="TOOL",
            name="get_weather",
            start_time=start + 45 * ms,
            end_time=start + 80 * ms,
            input={"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"},
            output=tool_output,
        ),
    ]
    return Trace(
        id=tid,
        name="weather-agent",
        timestamp=start,
        input={"question": "weather in Paris?"},
        output={"answer": "It is sunny"},
        session_id="sess-1",
        user_id="user-1",
        release="1.2.3",
        metadata={"team": "search", "run": {"n": 1}},
        tags=["prod", "agent"],
        environment="staging",
        observations=observations,
        end_time=start + 90 * ms,
    )


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
        if f.name not in ("observations", "scores") and not f.metadata.get("transient")
    }
    score_values = {f.name: _value_for(Score, f, i) for i, f in enumerate(dataclasses.fields(Score))}
    # a trace's score (Langfuse's ScoreV1 in TraceWithFullDetails) has no session or dataset run of its own
    score_values.update(
        id="sc1", trace_id=trace_id, observation_id=obs.id, session_id=None, dataset_run_id=None, value=0.75
    )
    score_values["string_value"] = None  # NUMERIC: Langfuse's shape has no stringValue
    values.update(id=trace_id, timestamp=obs.start_time, end_time=obs.end_time, public=True)
    return Trace(**values, observations=[obs], scores=[Score(**score_values)])


def unset_fields(instance: Any) -> list[str]:
    """Fields still at their default: a builder that missed a field would make a round trip prove nothing."""
    missing = []
    for f in dataclasses.fields(instance):
        if f.metadata.get("transient"):  # on its way to the store, not part of the trace (Trace.media)
            continue
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            continue  # required: the constructor needed a value
        if getattr(instance, f.name) == default:
            missing.append(f.name)
    return missing
