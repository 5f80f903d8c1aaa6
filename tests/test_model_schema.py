"""Trace.to_dict() is Langfuse's TraceWithFullDetails (observations: ObservationsView) - validated against the
schemas of the Langfuse OpenAPI spec (shared/reference/langfuse-openapi.yml), issue 13 item 5.

The spec is OpenAPI 3.0 (``nullable: true``); it is turned into JSON Schema (``type: [t, "null"]``) and checked with
jsonschema, every ``required`` field included.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from langchain_core.messages import HumanMessage

from lftrace import get_client
from lftrace.langchain import CallbackHandler
from lftrace.model import Trace
from support.fake_models import build_agent
from support.traces import make_trace

SPEC_CANDIDATES = (
    os.environ.get("LFTRACE_OPENAPI_SPEC", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "reference" / "langfuse-openapi.yml"),
    "/work/shared/reference/langfuse-openapi.yml",
)


def _nullable_to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "$ref" in out:
            ref = out.pop("$ref")
            out["anyOf"] = [{"$ref": ref}, {"type": "null"}]
    return out


@functools.cache
def schemas() -> dict[str, Any]:
    path = next((Path(p) for p in SPEC_CANDIDATES if p and Path(p).is_file()), None)
    if path is None:
        pytest.fail("langfuse-openapi.yml not found: set LFTRACE_OPENAPI_SPEC to shared/reference/langfuse-openapi.yml")
    spec = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C loader: ~10x faster
    return _nullable_to_json_schema(spec["components"]["schemas"])


def validate(value: Any, schema_name: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": {"schemas": schemas()}}
    errors = sorted(Draft202012Validator(root).iter_errors(value), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_a_stored_trace_is_trace_with_full_details():
    trace = make_trace(session_id="s", user_id="u", tags=["a"])
    data = trace.to_dict()
    validate(data, "TraceWithFullDetails")
    for obs in data["observations"]:
        validate(obs, "ObservationsView")


def test_a_real_langgraph_run_is_trace_with_full_details():
    handler = CallbackHandler()
    build_agent().invoke({"messages": [HumanMessage("Lima")]}, config={"callbacks": [handler]})
    assert handler.last_trace_id is not None
    data = get_client().get_trace(handler.last_trace_id).to_dict()
    validate(data, "TraceWithFullDetails")
    generation = next(o for o in data["observations"] if o["type"] == "GENERATION")
    assert generation["usage"] == {
        "input": 12,
        "output": 7,
        "total": 19,
        "unit": "TOKENS",
        "inputCost": generation["calculatedInputCost"],
        "outputCost": generation["calculatedOutputCost"],
        "totalCost": generation["calculatedTotalCost"],
    }
    assert generation["latency"] is not None and generation["timeToFirstToken"] is None


def test_legacy_usage_and_calculated_costs_are_reduced_like_langfuse():
    trace = make_trace()
    gen = trace.observations[2]
    gen.usage_details = {"input": 100, "input_cache_read": 900, "output": 50, "output_reasoning": 20, "total": 1070}
    gen.cost_details = {
        "input": 0.001,
        "input_cache_read": 0.0005,
        "output": 0.002,
        "output_reasoning": 0.001,
        "total": 0.0045,
    }
    gen.prompt_name, gen.prompt_version = "qa", 3
    data = gen.to_dict()
    validate(data, "ObservationsView")
    assert data["usage"]["input"] == 1000 and data["usage"]["output"] == 70 and data["usage"]["total"] == 1070
    assert data["calculatedInputCost"] == pytest.approx(0.0015)
    assert data["calculatedOutputCost"] == pytest.approx(0.003)
    assert data["calculatedTotalCost"] == pytest.approx(0.0045)
    assert (data["promptName"], data["promptVersion"], data["promptId"], data["modelId"]) == ("qa", 3, None, None)
    assert data["timeToFirstToken"] == pytest.approx(0.003)
    # and back: the prompt link survives an export/import round trip
    again = Trace.from_dict(trace.to_dict()).observations[2]
    assert (again.prompt_name, again.prompt_version) == ("qa", 3)


def test_a_wrong_shape_is_caught():
    data = make_trace().to_dict()
    del data["observations"][0]["promptName"]
    data["observations"][1]["level"] = "LOUD"
    with pytest.raises(AssertionError) as failed:
        validate(data, "TraceWithFullDetails")
    assert "promptName" in str(failed.value) and "LOUD" in str(failed.value)


def test_scores_are_score_v1():
    from lftrace.model import Score

    trace = make_trace()
    trace.scores = [
        Score.create(
            id="s1", trace_id=trace.id, name="relevance", value=0.5, data_type=None, timestamp=trace.timestamp
        ),
        Score.create(id="s2", trace_id=trace.id, name="ok", value=True, data_type=None, timestamp=trace.timestamp),
        Score.create(id="s3", trace_id=trace.id, name="tone", value="kind", data_type=None, timestamp=trace.timestamp),
        Score.create(
            id="s4", trace_id=trace.id, name="note", value="long text", data_type="TEXT", timestamp=trace.timestamp
        ),
    ]
    data = trace.to_dict()
    validate(data, "TraceWithFullDetails")
    assert [(s["dataType"], s.get("value"), s.get("stringValue")) for s in data["scores"]] == [
        ("NUMERIC", 0.5, None),
        ("BOOLEAN", 1.0, "True"),
        ("CATEGORICAL", 0.0, "kind"),
        ("TEXT", None, "long text"),
    ]
    again = Trace.from_dict(data)
    assert [(s.name, s.data_type, s.value, s.string_value) for s in again.scores] == [
        (s.name, s.data_type, s.value, s.string_value) for s in trace.scores
    ]
