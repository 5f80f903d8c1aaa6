"""compute_stats and percentiles on traces built from the model (the CLI is in test_cli_ci.py)."""

from __future__ import annotations

import pytest

from lftrace.stats import compute_stats, percentile
from test_assertions import Spec, agent_trace, build_trace, gen, node


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    assert percentile(list(range(101)), 95) == 95


def test_stats_per_node_tool_and_model():
    traces = [agent_trace(), agent_trace(tool_level="ERROR"), agent_trace(cost=None)]
    report = compute_stats(traces)
    assert report.traces == 3
    nodes = {r.key: r for r in report.by_kind("node")}
    assert set(nodes) == {"agent", "tools"}
    assert nodes["agent"].count == 6  # two agent steps per trace
    assert nodes["agent"].tokens == 6 * 19
    assert nodes["agent"].errors == 0
    assert nodes["tools"].count == 3
    tools = {r.key: r for r in report.by_kind("tool")}
    assert tools["get_weather"].errors == 1
    assert tools["get_weather"].error_rate == pytest.approx(1 / 3)
    [model] = report.by_kind("model")
    assert (model.key, model.count, model.tokens) == ("gpt-4o-mini", 6, 114)
    assert model.cost == pytest.approx(4 * 0.0001)
    assert model.unpriced == 2
    assert model.p50 == pytest.approx(0.1)


def test_stats_latency_percentiles_per_node():
    traces = [
        build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen(), latency=seconds)]))
        for seconds in (1.0, 2.0, 3.0, 4.0, 10.0)
    ]
    [agent] = compute_stats(traces).by_kind("node")
    assert agent.p50 == pytest.approx(3.0)
    assert agent.p95 == pytest.approx(8.8)
    data = compute_stats(traces).to_dict()
    assert data["traces"] == 5
    assert data["nodes"][0]["p95Latency"] == pytest.approx(8.8)
    assert data["models"][0]["cost"] == pytest.approx(0.0005)


def test_stats_of_nothing():
    report = compute_stats([])
    assert report.traces == 0
    assert report.to_dict() == {"traces": 0, "nodes": [], "tools": [], "models": []}


def test_a_subgraph_used_as_a_node_is_counted_once_with_its_own_tokens():
    """multi_agent.py runs the compiled graph `math_agent` as the node `math_agent`: two runs, one inside the other."""
    from pathlib import Path

    from lftrace.runner import execute

    sample = Path(__file__).resolve().parents[1] / "sample_graphs" / "multi_agent.py"
    traces = []
    for _ in range(2):
        result = execute(f"{sample}:graph", "What is 6 times 7?")
        assert result.trace is not None
        traces.append(result.trace)
    report = compute_stats(traces)
    math_agent = report.rows[("node", "math_agent")]
    assert math_agent.count == 2  # once per trace, not 4
    inner_tokens = 0
    for trace in traces:
        outer = next(
            o for o in trace.observations if o.name == "math_agent" and o.parent_id == trace.observations[0].id
        )
        kids = trace.children()
        todo = [outer]
        while todo:
            current = todo.pop()
            if current.type == "GENERATION":
                inner_tokens += current.usage_details["total"]
            todo.extend(kids.get(current.id, []))
    assert math_agent.tokens == inner_tokens  # the calls inside it, counted once
    model = report.rows[("model", "fake-gpt-4o-mini")]
    assert model.tokens == sum(t.total_tokens for t in traces)
    agent = report.rows[("node", "agent")]
    assert agent.count == 4  # two agent steps inside the subgraph, per trace
