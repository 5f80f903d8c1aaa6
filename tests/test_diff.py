"""diff_traces and compare_with_baseline on traces built from the model (the CLI is in test_cli_ci.py)."""

from __future__ import annotations

from lftrace.diff import compare_with_baseline, diff_lines, diff_traces, normalise, observation_paths, signed_cost
from test_assertions import Spec, agent_trace, build_trace, gen, node


def test_paths_number_same_named_siblings():
    paths = list(observation_paths(agent_trace()))
    assert paths == [
        "LangGraph",
        "LangGraph/agent",
        "LangGraph/agent/ChatOpenAI",
        "LangGraph/tools",
        "LangGraph/tools/get_weather",
        "LangGraph/agent#2",
        "LangGraph/agent#2/ChatOpenAI",
    ]


def test_identical_runs_have_no_change_even_with_different_ids():
    a, b = agent_trace(), agent_trace()
    a.observations[2].output = {"content": "x", "id": "run-1", "response_metadata": {"created": 1}}
    b.observations[2].output = {"content": "x", "id": "run-2", "response_metadata": {"created": 2}}
    diff = diff_traces(a, b)
    assert not diff.changed
    assert diff.counts() == {"added": 0, "removed": 0, "changed": 0, "same": 7}
    assert diff.tokens_delta == 0
    assert "no change in structure or outputs" in list(diff_lines(diff))


def test_changed_reply_shows_unified_text_diff():
    a, b = agent_trace("sunny in Paris"), agent_trace("rainy in Paris")
    diff = diff_traces(a, b)
    assert diff.outputs_changed and not diff.structure_changed
    changed = [c.path for c in diff.observations if c.status == "changed"]
    assert changed == ["LangGraph/agent#2/ChatOpenAI"]
    text = "\n".join(diff_lines(diff))
    assert '-  "content": "sunny in Paris"' in text
    assert '+  "content": "rainy in Paris"' in text
    assert "--- A: reply\n+++ B: reply\n@@ -1 +1 @@\n-sunny in Paris\n+rainy in Paris" in text  # the trace's reply


def test_added_and_removed_observations_with_signed_deltas():
    a = build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen(tokens=10, cost=0.0001))]))
    b = build_trace(
        Spec("LangGraph", "CHAIN", [node("agent", gen(tokens=22, cost=0.0002)), node("agent", gen(tokens=10))])
    )
    diff = diff_traces(a, b)
    by_path = {c.path: c for c in diff.observations}
    assert by_path["LangGraph/agent#2"].status == "added"
    assert by_path["LangGraph/agent#2/ChatOpenAI"].tokens_delta == 10
    assert by_path["LangGraph/agent/ChatOpenAI"].tokens_delta == 12
    assert diff.tokens_delta == 22
    assert diff.structure_changed and diff.changed
    text = "\n".join(diff_lines(diff))
    assert "+ LangGraph/agent#2 (CHAIN) added" in text
    assert "+12 tokens" in text and "+22 tokens" in text
    assert "+$0.0002" in text  # total cost change (0.0003 - 0.0001)
    reverse = diff_traces(b, a)
    assert {c.path for c in reverse.observations if c.status == "removed"} == {
        "LangGraph/agent#2",
        "LangGraph/agent#2/ChatOpenAI",
    }
    assert reverse.tokens_delta == -22


def test_a_long_run_of_removed_observations_is_folded_with_its_totals_unless_expanded():
    # A ran 20 rounds of a node with a model call, B one: 38 observations only in A, in one run
    a = build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen(tokens=10, cost=0.001)) for _ in range(20)]))
    b = build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen(tokens=10, cost=0.001))]))
    diff = diff_traces(a, b)
    assert diff.counts()["removed"] == 38
    lines = list(diff_lines(diff))
    removed = [line for line in lines if line.startswith("- ")]
    assert len(removed) == 3 + 1 + 2  # the first three, one summary, the last two
    [summary] = [line for line in removed if "more removed" in line]
    # 33 folded: agent#3's model call, then nodes 4-19 with theirs. Tokens and cost of all 17 model calls; time of
    # the outermost only (a node's 0.1 s holds its model call's): 16 nodes and agent#3's model call, 1.7 s
    first, last = "LangGraph/agent#3/ChatOpenAI", "LangGraph/agent#19/ChatOpenAI"
    assert summary.startswith(f"- … 33 more removed (only in A: {first} … {last}): -1.700s, -170 tokens, "), summary
    assert summary.endswith(signed_cost(-0.017)), summary
    assert removed[-1].startswith("- LangGraph/agent#20/ChatOpenAI (GENERATION) removed")
    assert len([line for line in diff_lines(diff, expand=True) if line.startswith("- ")]) == 38
    # the other way round the same run is added, and a short run is never folded
    assert any("more added (only in B: " in line for line in diff_lines(diff_traces(b, a)))
    short = diff_traces(a, build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen()) for _ in range(15)])))
    assert not any("more removed" in line for line in diff_lines(short))


def test_latency_delta_is_signed():
    a = build_trace(Spec("root", latency=2.0))
    b = build_trace(Spec("root", latency=1.2))
    diff = diff_traces(a, b)
    assert round(diff.latency_delta or 0, 3) == -0.8
    assert "-0.800s" in "\n".join(diff_lines(diff))


def test_signed_cost_format():
    assert signed_cost(0.0001) == "+$0.0001"
    assert signed_cost(-0.00125) == "-$0.00125"
    assert signed_cost(None) == "cost ?"


def test_normalise_drops_volatile_keys_only():
    assert normalise({"id": 1, "content": "x", "nested": [{"tool_call_id": "a", "name": "t"}]}) == {
        "content": "x",
        "nested": [{"name": "t"}],
    }


def test_baseline_passes_for_an_equivalent_run():
    assert compare_with_baseline(agent_trace("a"), agent_trace("b"), 0.25) == []


def test_baseline_reports_missing_tool_and_node():
    baseline = agent_trace()
    run = build_trace(Spec("LangGraph", "CHAIN", [node("agent", gen()), node("agent", gen())]))
    failures = {f.name: f for f in compare_with_baseline(run, baseline)}
    assert set(failures) == {"baseline nodes", "baseline tools"}
    assert "missing: get_weather" in failures["baseline tools"].message
    assert "missing: tools" in failures["baseline nodes"].message


def test_baseline_token_and_cost_drift_outside_tolerance():
    baseline = build_trace(Spec("root", "CHAIN", [gen(tokens=100, cost=0.001)]))
    within = build_trace(Spec("root", "CHAIN", [gen(tokens=120, cost=0.0012)]))
    assert compare_with_baseline(within, baseline, 0.25) == []
    beyond = build_trace(Spec("root", "CHAIN", [gen(tokens=130, cost=0.0013)]))
    assert [f.name for f in compare_with_baseline(beyond, baseline, 0.25)] == ["baseline tokens", "baseline cost"]
    assert compare_with_baseline(beyond, baseline, 0.5) == []
    fewer = build_trace(Spec("root", "CHAIN", [gen(tokens=50, cost=0.001)]))
    assert [f.name for f in compare_with_baseline(fewer, baseline, 0.25)] == ["baseline tokens"]


def test_baseline_latency_fails_only_when_slower():
    baseline = build_trace(Spec("root", latency=1.0))
    assert compare_with_baseline(build_trace(Spec("root", latency=0.2)), baseline) == []
    assert compare_with_baseline(build_trace(Spec("root", latency=1.25)), baseline) == []
    assert compare_with_baseline(build_trace(Spec("root", latency=1.44)), baseline) == []  # + LATENCY_GRACE
    [failure] = compare_with_baseline(build_trace(Spec("root", latency=1.5)), baseline)
    assert (failure.name, failure.actual) == ("baseline latency", "1.500s")


def test_baseline_cost_unknown_now_fails():
    baseline = build_trace(Spec("root", "CHAIN", [gen(cost=0.001)]))
    run = build_trace(Spec("root", "CHAIN", [gen(cost=None, model="my-local-model")]))
    [failure] = compare_with_baseline(run, baseline)
    assert "cost unknown for model my-local-model" in failure.message
