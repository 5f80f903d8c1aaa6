"""Assertions on traces built directly from the model (every check passing and failing)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from lftrace.assertions import Expectations, check, output_text
from lftrace.errors import InputError
from lftrace.model import Observation, Trace

T0 = 1_800_000_000_000_000_000


@dataclass
class Spec:
    """A compact way to write an observation tree in tests."""

    name: str
    type: str = "SPAN"
    children: list[Spec] = field(default_factory=list)
    latency: float = 0.1
    tokens: int | None = None
    cost: float | None = None
    model: str | None = None
    level: str = "DEFAULT"
    output: Any = None
    node: str | None = None  # langgraph_node metadata
    status_message: str | None = None


def gen(name: str = "ChatOpenAI", tokens: int = 19, cost: float | None = 0.0001, **kw: Any) -> Spec:
    return Spec(name, "GENERATION", tokens=tokens, cost=cost, model=kw.pop("model", "gpt-4o-mini"), **kw)


def node(name: str, *children: Spec, **kw: Any) -> Spec:
    return Spec(name, "CHAIN", list(children), node=name, **kw)


def build_trace(*roots: Spec, output: Any = None, trace_id: str | None = None, latency: float | None = None) -> Trace:
    """Observations get fresh ids and increasing start times; latency of the trace = last end - start."""
    trace_id = trace_id or os.urandom(16).hex()
    observations: list[Observation] = []
    clock = [T0 - 1_000_000]  # the first observation starts at T0

    def add(spec: Spec, parent: str | None) -> None:
        clock[0] += 1_000_000
        start = clock[0]
        obs = Observation(
            id=os.urandom(8).hex(),
            trace_id=trace_id,
            parent_id=parent,
            type=spec.type,
            name=spec.name,
            start_time=start,
            end_time=start + int(spec.latency * 1e9),
            model=spec.model,
            output=spec.output,
            metadata={"langgraph_node": spec.node} if spec.node else None,
            level=spec.level,
            status_message=spec.status_message,
            usage_details=(
                {"input": spec.tokens - 5, "output": 5, "total": spec.tokens} if spec.tokens is not None else None
            ),
            cost_details={"total": spec.cost} if spec.cost is not None else None,
        )
        observations.append(obs)
        for child in spec.children:
            add(child, obs.id)

    for root in roots:
        add(root, None)
    end = max((o.end_time or 0) for o in observations) if observations else T0
    if latency is not None:
        end = T0 + int(latency * 1e9)
    return Trace(id=trace_id, name="LangGraph", timestamp=T0, output=output, observations=observations, end_time=end)


def agent_trace(reply: str = "sunny in Paris", *, tool_level: str = "DEFAULT", cost: float | None = 0.0001) -> Trace:
    """LangGraph -> agent(gen) -> tools(get_weather) -> agent(gen): 2 LLM calls, 38 tokens."""
    return build_trace(
        Spec(
            "LangGraph",
            "CHAIN",
            [
                node("agent", gen(cost=cost)),
                node(
                    "tools",
                    Spec(
                        "get_weather",
                        "TOOL",
                        level=tool_level,
                        status_message="boom" if tool_level == "ERROR" else None,
                    ),
                ),
                node("agent", gen(cost=cost, output={"content": reply})),
            ],
        ),
        output={"messages": [{"type": "human", "content": "Paris"}, {"type": "ai", "content": reply}]},
    )


def names(failures: list[Any]) -> list[str]:
    return [f.name for f in failures]


def test_all_expectations_pass_on_a_matching_trace():
    trace = agent_trace()
    e = Expectations(
        output_regex=r"sunny in \w+",
        nodes=("agent", "tools"),
        tools=("get_weather",),
        max_latency=5,
        max_tokens=38,
        max_cost=0.001,
        max_llm_calls=2,
        no_errors=True,
    )
    assert check(trace, None, e) == []


def test_output_regex_fails_with_expected_and_actual():
    [failure] = check(agent_trace("rain in Oslo"), None, Expectations(output_regex="sunny"))
    assert failure.name == "output"
    assert failure.expected == "/sunny/"
    assert failure.actual == "rain in Oslo"


def test_output_argument_wins_over_trace_output():
    e = Expectations(output_regex="^hello$")
    assert check(agent_trace("rain"), "hello", e) == []
    assert names(check(agent_trace("hello"), "bye", e)) == ["output"]


def test_expected_output_text_is_contained_in_the_reply_ignoring_case_and_spacing():
    reply = "It is  Sunny in\nParis today."
    assert check(agent_trace(reply), None, Expectations(expected_output="sunny in paris")) == []
    [failure] = check(agent_trace(reply), None, Expectations(expected_output="rain"))
    assert (failure.name, failure.expected, failure.message) == (
        "expected output",
        "rain",
        "the output does not contain the expected output",
    )
    assert check(agent_trace("the answer is 42"), None, Expectations(expected_output=42)) == []  # as JSON text


def test_expected_output_object_names_fields_the_output_holds():
    trace = build_trace(node("agent"), output={"answer": "Paris", "sources": ["a", "b"], "steps": 3})
    assert check(trace, "Paris", Expectations(expected_output={"answer": "Paris", "sources": ["a", "b"]})) == []
    [failure] = check(trace, "Paris", Expectations(expected_output={"answer": "Rome", "steps": 3, "extra": 1}))
    assert failure.message == "the output's answer, extra differ from the expected output"
    assert failure.actual == '{"answer": "Paris", "extra": null}'
    # a JSONL case says the same with "expect": {"expected_output": ...}; the case's value wins over a default
    e = Expectations.from_dict({"expected_output": {"answer": "Paris"}})
    assert e.merged_over(Expectations(expected_output="x")).expected_output == {"answer": "Paris"}
    assert e.to_dict() == {"expected_output": {"answer": "Paris"}}


def test_missing_node_lists_the_nodes_that_ran():
    [failure] = check(agent_trace(), None, Expectations(nodes=("agent", "planner")))
    assert failure.name == "node planner"
    assert "agent" in failure.actual and "tools" in failure.actual


def test_node_found_by_metadata_even_when_observation_is_not_a_chain():
    trace = build_trace(Spec("step", "SPAN", [gen(node="writer")]))
    assert check(trace, "", Expectations(nodes=("writer",))) == []
    assert names(check(trace, "", Expectations(nodes=("step",)))) == ["node step"]


def test_missing_tool_fails_and_present_tool_passes():
    trace = agent_trace()
    assert check(trace, None, Expectations(tools=("get_weather",))) == []
    [failure] = check(trace, None, Expectations(tools=("search",)))
    assert failure.name == "tool search"
    assert failure.actual == "called: get_weather"


def test_max_latency():
    trace = build_trace(Spec("root", latency=1.5))
    assert check(trace, "", Expectations(max_latency=2)) == []
    [failure] = check(trace, "", Expectations(max_latency=1))
    assert (failure.name, failure.expected, failure.actual) == ("max latency", "<= 1s", "1.500s")


def test_max_latency_on_unfinished_trace_fails():
    trace = build_trace(Spec("root"))
    trace.end_time = None
    [failure] = check(trace, "", Expectations(max_latency=10))
    assert failure.actual == "unknown"


def test_max_tokens():
    trace = agent_trace()  # 2 x 19
    assert check(trace, None, Expectations(max_tokens=38)) == []
    [failure] = check(trace, None, Expectations(max_tokens=37))
    assert (failure.expected, failure.actual) == ("<= 37", "38")


def test_max_llm_calls():
    assert check(agent_trace(), None, Expectations(max_llm_calls=2)) == []
    [failure] = check(agent_trace(), None, Expectations(max_llm_calls=1))
    assert (failure.name, failure.actual) == ("max llm calls", "2")


def test_max_cost():
    assert check(agent_trace(cost=0.0001), None, Expectations(max_cost=0.0002)) == []
    [failure] = check(agent_trace(cost=0.0001), None, Expectations(max_cost=0.00015))
    assert failure.name == "max cost"
    assert failure.actual == "$0.000200"


def test_max_cost_with_unknown_price_fails_naming_the_model():
    [failure] = check(agent_trace(cost=None), None, Expectations(max_cost=1.0))
    assert failure.actual == "unknown"
    assert "cost unknown for model gpt-4o-mini" in failure.message


def test_max_cost_without_generations_is_zero():
    assert check(build_trace(Spec("root")), "", Expectations(max_cost=0)) == []


def test_no_errors_fails_even_when_the_graph_recovered():
    trace = agent_trace(tool_level="ERROR")  # the agent answered after the tool failed
    assert check(trace, None, Expectations(no_errors=False)) == []
    [failure] = check(trace, None, Expectations(no_errors=True))
    assert failure.name == "no errors"
    assert "get_weather: boom" in failure.message
    assert check(agent_trace(), None, Expectations(no_errors=True)) == []


def test_every_failure_is_reported_not_only_the_first():
    e = Expectations(output_regex="x{5}", tools=("search",), max_tokens=1, max_llm_calls=0, no_errors=True)
    got = names(check(agent_trace(tool_level="ERROR"), None, e))
    assert got == ["output", "tool search", "max tokens", "max llm calls", "no errors"]


def test_from_dict_reads_the_dataset_expect_object():
    e = Expectations.from_dict(
        {
            "output": "sunny",
            "nodes": ["agent"],
            "tools": "get_weather",
            "max_latency": 2,
            "max_tokens": 100,
            "max_cost": 0.01,
            "max_llm_calls": 3,
            "no_errors": True,
        }
    )
    assert e == Expectations("sunny", ("agent",), ("get_weather",), 2.0, 100, 0.01, 3, True)
    assert Expectations.from_dict(e.to_dict()) == e
    assert Expectations.from_dict(None).is_empty


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"outptu": "x"}, 'unknown expectation "outptu"'),
        ({"max_tokens": "ten"}, '"max_tokens" must be a number'),
        ({"max_tokens": 1.5}, "whole number"),
        ({"no_errors": "yes"}, "true or false"),
        ({"tools": [1]}, "list of names"),
        ({"output": "("}, "invalid"),
        ({"max_cost": -1}, "must not be negative"),
        (["output"], "must be an object"),
    ],
)
def test_from_dict_rejects_bad_values(data, fragment):
    with pytest.raises(InputError, match=r"^cases\.jsonl:3: ") as info:
        Expectations.from_dict(data, where="cases.jsonl:3")
    assert fragment in str(info.value)


def test_merged_over_fills_unset_fields_and_combines_lists():
    case = Expectations(tools=("a",), max_tokens=10)
    defaults = Expectations(tools=("b",), max_tokens=99, max_latency=3, no_errors=True)
    merged = case.merged_over(defaults)
    assert merged == Expectations(None, (), ("b", "a"), 3, 10, None, None, True)


def test_output_text_of_live_and_stored_values():
    state = {"messages": [HumanMessage("hi"), AIMessage("hello there")]}
    assert output_text(state) == "hello there"
    assert output_text({"messages": [{"type": "ai", "content": "stored"}]}) == "stored"
    assert output_text(AIMessage(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])) == "ab"
    assert output_text("plain") == "plain"
    assert output_text({"answer": 42}) == '{"answer": 42}'
    assert output_text(None) == ""
