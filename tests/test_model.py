"""The trace model: Langfuse JSON shape and round trips."""

from __future__ import annotations

import dataclasses
import json

from lftrace.model import Observation, Trace, iso_from_ns, ns_from_iso

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z


def make_trace() -> Trace:
    root = Observation("a" * 16, "f" * 32, None, "CHAIN", "LangGraph", T0, T0 + 2_000_000_000)
    gen = Observation(
        "b" * 16,
        "f" * 32,
        "a" * 16,
        "GENERATION",
        "ChatOpenAI",
        T0 + 100_000_000,
        T0 + 1_100_000_000,
        completion_start_time=T0 + 300_000_000,
        model="gpt-4o-mini",
        usage_details={"input": 10, "output": 5, "total": 15},
        cost_details={"input": 0.001, "output": 0.002, "total": 0.003},
    )
    tool = Observation(
        "c" * 16,
        "f" * 32,
        "a" * 16,
        "TOOL",
        "search",
        T0 + 1_200_000_000,
        T0 + 1_500_000_000,
        level="ERROR",
        status_message="boom",
    )
    return Trace(
        "f" * 32,
        "LangGraph",
        T0,
        input={"q": 1},
        output="x",
        tags=["a"],
        observations=[root, gen, tool],
        end_time=T0 + 2_000_000_000,
    )


def test_iso_round_trip():
    assert iso_from_ns(T0) == "2025-11-24T16:00:00.000000Z"
    assert ns_from_iso(iso_from_ns(T0 + 123_456_000)) == T0 + 123_456_000
    assert ns_from_iso("2025-11-24T16:00:00+00:00") == T0
    assert iso_from_ns(None) is None


def test_trace_to_dict_has_langfuse_shape():
    d = make_trace().to_dict()
    for key in (
        "id",
        "timestamp",
        "name",
        "input",
        "output",
        "sessionId",
        "userId",
        "release",
        "version",
        "metadata",
        "tags",
        "environment",
        "latency",
        "totalCost",
        "observations",
        "htmlPath",
    ):
        assert key in d
    assert d["latency"] == 2.0
    assert abs(d["totalCost"] - 0.003) < 1e-12
    gen = d["observations"][1]
    for key in (
        "id",
        "traceId",
        "parentObservationId",
        "type",
        "name",
        "startTime",
        "endTime",
        "completionStartTime",
        "model",
        "modelParameters",
        "input",
        "output",
        "metadata",
        "level",
        "statusMessage",
        "usageDetails",
        "costDetails",
    ):
        assert key in gen
    assert gen["parentObservationId"] == "a" * 16
    assert gen["timeToFirstToken"] == 0.2


def test_derived_trace_figures():
    t = make_trace()
    assert t.level == "ERROR"
    assert (t.status, t.handled_errors) == ("ok", 1)  # the tool failed, the run finished: a handled error
    t.observations[0].level = "ERROR"
    assert (t.status, t.handled_errors) == ("error", 0)  # the run itself raised
    assert t.total_tokens == 15
    assert t.usage == {"input": 10, "output": 5, "total": 15}
    t.metadata = {"interrupts": "not ours"}
    assert t.interrupts == []
    t.metadata = {"langgraph_interrupts": [{"id": "i1", "value": {"ask": "ok?"}, "node": "review"}]}
    t.observations[0].level = "DEFAULT"
    assert (t.status, t.handled_errors, t.interrupts[0]["node"]) == ("interrupted", 1, "review")
    t.metadata = {"interrupted": True}  # Ctrl-C, as stored before 'cancelled' existed
    assert t.status == "cancelled"
    t.metadata = {"cancelled": True}
    assert (t.status, t.handled_errors) == ("cancelled", 0)


def test_from_dict_round_trip():
    t = make_trace()
    again = Trace.from_dict(t.to_dict())
    assert again.to_dict() == t.to_dict()


def test_round_trip_through_json_keeps_every_field():
    """Every dataclass field is set and compared: a field added to the model but not to to_dict fails here."""
    from support.traces import every_field_trace, unset_fields

    trace = every_field_trace()
    assert unset_fields(trace) == [] and unset_fields(trace.observations[0]) == []
    again = Trace.from_dict(json.loads(json.dumps(trace.to_dict())))
    assert dataclasses.asdict(again) == dataclasses.asdict(trace)


def test_tokens_add_up_in_one_place():
    from lftrace.model import token_total

    assert token_total({"input": 3, "output": 4, "total": 9}) == 9  # a reported total wins
    assert token_total({"input": 3, "output": 4}) == 7
    assert token_total({"input": "3", "output": True, "total_cost": 2}) == 2  # not whole numbers: 0
    assert token_total(None) == token_total(["x"]) == 0
    obs = Observation(id="a" * 16, trace_id="b" * 32, parent_id=None, type="GENERATION", name="g", start_time=0)
    obs.usage_details = {"input": 2, "output": 1}
    assert obs.total_tokens == Trace(id="b" * 32, name=None, timestamp=0, observations=[obs]).total_tokens == 3
