"""The SDK surface around the handler (issue 13, item 7), written the way the Langfuse docs write it.

Each test reads like code from the Langfuse docs with ``from langfuse import ...`` changed to ``from lftrace import
...``; the traces are read back from the real store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from lftrace import get_client, observe, propagate_attributes
from lftrace.langchain import CallbackHandler
from lftrace.model import Trace
from support.fake_models import ToolCallingFakeModel, build_agent

LFTRACE = str(Path(sys.executable).with_name("lftrace"))


def last_trace() -> Trace:
    langfuse = get_client()
    langfuse.flush()
    return langfuse.get_trace("last")


def by_name(trace: Trace) -> dict[str, object]:
    return {o.name: o for o in trace.observations}


def test_observe_nests_calls_and_captures_io():
    @observe()
    def retrieve(query: str) -> list[str]:
        return [f"doc about {query}"]

    @observe(name="llm-call", as_type="generation")
    def generate(query: str, docs: list[str]) -> str:
        get_client().update_current_generation(model="gpt-4o-mini", usage_details={"input": 10, "output": 5})
        return "Paris is sunny"

    @observe
    def main(query: str) -> str:
        docs = retrieve(query)
        return generate(query, docs=docs)

    assert main("Paris") == "Paris is sunny"
    trace = last_trace()
    obs = by_name(trace)
    root, retrieve_obs, gen = obs["main"], obs["retrieve"], obs["llm-call"]
    assert root.parent_id is None and retrieve_obs.parent_id == root.id and gen.parent_id == root.id
    assert root.input == {"args": ["Paris"], "kwargs": {}} and root.output == "Paris is sunny"
    assert gen.type == "GENERATION" and gen.model == "gpt-4o-mini"
    assert gen.usage_details == {"input": 10, "output": 5, "total": 15}
    assert gen.input == {"args": ["Paris"], "kwargs": {"docs": ["doc about Paris"]}}
    # the root span is the trace's name, input and output, as in Langfuse
    assert (trace.name, trace.input, trace.output) == ("main", root.input, "Paris is sunny")


def test_observe_async_generators_and_errors():
    @observe()
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @observe()
    def tokens(n: int):
        for i in range(n):
            yield f"t{i} "

    @observe()
    async def atokens(n: int):
        for i in range(n):
            yield i

    @observe()
    def broken() -> None:
        raise ValueError("no such city")

    @observe()
    async def main() -> str:
        doubled = await asyncio.gather(fetch(1), fetch(2))
        text = "".join(tokens(3))
        numbers = [i async for i in atokens(2)]
        with contextlib.suppress(ValueError):
            broken()
        return f"{doubled} {text}{numbers}"

    assert asyncio.run(main()) == "[2, 4] t0 t1 t2 [0, 1]"
    trace = last_trace()
    root = next(o for o in trace.observations if o.name == "main")
    children = [o for o in trace.observations if o.parent_id == root.id]
    assert sorted(o.name for o in children) == ["atokens", "broken", "fetch", "fetch", "tokens"]
    outputs = {o.name: o.output for o in children}
    assert outputs["tokens"] == "t0 t1 t2 " and outputs["atokens"] == [0, 1]
    failed = next(o for o in children if o.name == "broken")
    assert (failed.level, failed.status_message) == ("ERROR", "no such city")
    assert trace.level == "ERROR"


def test_context_managers_update_and_trace_attributes():
    langfuse = get_client()
    with langfuse.start_as_current_span(name="process-request", input={"q": "hi"}) as span:
        span.update_trace(user_id="user-1", session_id="session-1", tags=["docs"], metadata={"plan": "pro"})
        trace_id = langfuse.get_current_trace_id()
        assert langfuse.get_current_observation_id() == span.id
        with langfuse.start_as_current_generation(name="llm-response", model="gpt-4o") as generation:
            generation.update(
                output="Generated response",
                usage_details={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            )
            assert langfuse.get_current_observation_id() == generation.id
        with langfuse.start_as_current_observation(as_type="tool", name="lookup") as tool:
            tool.update(output={"ok": True})
        langfuse.update_current_trace(name="renamed", output={"a": 1})
        span.update(output="Processing complete")
    assert langfuse.get_current_trace_id() is None
    trace = last_trace()
    assert trace.id == trace_id
    assert (trace.name, trace.user_id, trace.session_id, trace.tags) == ("renamed", "user-1", "session-1", ["docs"])
    assert trace.metadata == {"plan": "pro"}
    obs = by_name(trace)
    assert obs["llm-response"].usage_details == {"input": 7, "output": 3, "total": 10}
    assert obs["lookup"].type == "TOOL"
    assert obs["process-request"].output == "Processing complete"


def test_exception_inside_a_span_marks_it_error_and_propagates():
    langfuse = get_client()
    with pytest.raises(KeyError), langfuse.start_as_current_span(name="risky"):
        raise KeyError("missing")
    (obs,) = last_trace().observations
    assert obs.level == "ERROR" and "missing" in (obs.status_message or "")


def test_create_trace_id_is_deterministic_for_a_seed_and_joins_spans():
    langfuse = get_client()
    seeded = langfuse.create_trace_id(seed="external-123")
    assert seeded == hashlib.sha256(b"external-123").digest()[:16].hex()
    assert langfuse.create_trace_id() != langfuse.create_trace_id()
    with langfuse.start_as_current_span(name="first", trace_context={"trace_id": seeded}):
        pass
    with langfuse.start_as_current_span(name="second", trace_context={"trace_id": seeded}):
        pass
    langfuse.flush()
    trace = langfuse.get_trace(seeded)
    assert sorted(o.name for o in trace.observations) == ["first", "second"]


def test_langchain_runs_inside_spans_nest_under_them():
    langfuse = get_client()

    @observe()
    def answer(city: str) -> str:
        handler = CallbackHandler()
        result = build_agent().invoke({"messages": [HumanMessage(city)]}, config={"callbacks": [handler]})
        return result["messages"][-1].content

    with langfuse.start_as_current_span(name="request") as span:
        with propagate_attributes(user_id="u-7", session_id="s-7", tags=["web"]):
            answer("Oslo")
        span.update(output="done")
    trace = last_trace()
    obs = by_name(trace)
    graph_root = next(o for o in trace.observations if o.name == "LangGraph")
    assert graph_root.parent_id == obs["answer"].id and obs["answer"].parent_id == obs["request"].id
    assert len(trace.roots()) == 1
    # the span owns the trace's name and io; the LangChain run adds its attributes
    assert (trace.name, trace.output, trace.user_id, trace.session_id) == ("request", "done", "u-7", "s-7")
    assert "web" in trace.tags
    assert trace.total_tokens == 2 * 19


def test_propagated_environment_and_prompt_reach_spans_and_langchain_runs_inside(isolated_env, caplog):
    """SDK 5's propagate_attributes(environment=..., prompt=...), as its docstring's two examples use it."""
    langfuse = get_client()
    prompt = langfuse.create_prompt(name="greeting", prompt="Say hello to {{name}}", labels=["production"])
    with langfuse.start_as_current_observation(name="user_workflow") as workflow:
        with propagate_attributes(environment="staging", prompt={"name": "movie-critic", "version": 3}):
            with langfuse.start_as_current_observation(name="llm_call"):
                pass
            with langfuse.start_as_current_observation(name="completion", as_type="generation"):
                pass
            with langfuse.start_as_current_observation(name="own", as_type="generation", prompt=prompt):
                pass
        trace_id = workflow.trace_id
    langfuse.flush()
    trace = langfuse.get_trace(trace_id)
    obs = by_name(trace)
    assert trace.environment == "staging"  # the current span took it, and what started inside
    assert {o.name: o.environment for o in trace.observations} == dict.fromkeys(obs, "staging")
    assert (obs["completion"].prompt_name, obs["completion"].prompt_version) == ("movie-critic", 3)
    assert (obs["own"].prompt_name, obs["own"].prompt_version) == ("greeting", prompt.version)  # its own wins
    assert obs["llm_call"].prompt_name is None  # a span links no prompt

    graph = build_agent(ToolCallingFakeModel())
    with propagate_attributes(environment="qa", prompt=prompt, user_id="u-1"):
        graph.invoke({"messages": [HumanMessage("Paris")]}, config={"callbacks": [CallbackHandler()]})
    trace = last_trace()
    generations = [o for o in trace.observations if o.type == "GENERATION"]
    assert (trace.environment, trace.user_id) == ("qa", "u-1") and len(generations) == 2
    assert {o.environment for o in trace.observations} == {"qa"}
    assert {(o.prompt_name, o.prompt_version) for o in generations} == {("greeting", prompt.version)}
    assert {o.prompt_name for o in trace.observations if o.type != "GENERATION"} == {None}

    # what Langfuse would refuse is left out with a warning; a fallback prompt links nothing, as in the SDK
    with caplog.at_level("WARNING", logger="lftrace"):
        with (
            propagate_attributes(environment="Production!", prompt={"name": "unversioned"}),
            langfuse.start_as_current_observation(name="refused", as_type="generation") as refused,
        ):
            pass
        with (
            propagate_attributes(prompt={"name": "fallback", "version": 1, "is_fallback": True}),
            langfuse.start_as_current_observation(name="fallback", as_type="generation") as fallback,
        ):
            pass
    warnings = [r.getMessage() for r in caplog.records if "propagate_attributes" in r.getMessage()]
    assert len(warnings) == 2 and "'Production!'" in warnings[0] and "integer version" in warnings[1]
    langfuse.flush()
    for span in (refused, fallback):
        stored = langfuse.get_trace(span.trace_id)
        assert (stored.environment, stored.observations[0].environment) == ("default", "default")
        assert stored.observations[0].prompt_name is None


def test_scores_are_stored_exported_shape_and_shown(isolated_env):
    langfuse = get_client()
    with langfuse.start_as_current_span(name="qa") as span:
        span.score(name="relevance", value=0.8, comment="close")
        span.score_trace(name="correct", value=True)
        langfuse.score_current_trace(name="tone", value="friendly")
        trace_id = span.trace_id
    langfuse.create_score(name="user-feedback", value=1, trace_id=trace_id, data_type="NUMERIC")
    # SDK 5's correction score: the corrected output, as text (Langfuse keeps value 0 and the text)
    langfuse.create_score(name="fixed", value="Paris, France", trace_id=trace_id, data_type="CORRECTION")
    langfuse.flush()
    trace = langfuse.get_trace(trace_id)
    scores = {s.name: s for s in trace.scores}
    assert set(scores) == {"relevance", "correct", "tone", "user-feedback", "fixed"}
    assert (scores["fixed"].data_type, scores["fixed"].value, scores["fixed"].string_value) == (
        "CORRECTION",
        0.0,
        "Paris, France",
    )
    assert (scores["relevance"].value, scores["relevance"].observation_id) == (0.8, trace.observations[0].id)
    assert (scores["correct"].data_type, scores["correct"].value, scores["correct"].string_value) == (
        "BOOLEAN",
        1.0,
        "True",
    )
    assert (scores["tone"].data_type, scores["tone"].string_value) == ("CATEGORICAL", "friendly")
    assert scores["user-feedback"].observation_id is None
    assert {s["name"] for s in trace.to_dict()["scores"]} == set(scores)
    shown = subprocess.run([LFTRACE, "show", trace_id], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "relevance 0.8" in shown.stdout and "tone friendly" in shown.stdout
    assert "fixed Paris" in shown.stdout  # its text (cut to the width), not its 0


def test_code_written_for_the_official_sdk_runs_with_only_the_import_changed(tmp_path):
    """The docs' quickstart, verbatim except the import line."""
    docs_code = """
from langfuse import get_client, observe

langfuse = get_client()

@observe()
def story(topic):
    with langfuse.start_as_current_observation(as_type="generation", name="llm", model="gpt-4o") as gen:
        gen.update(output="Once upon a time", usage_details={"input": 3, "output": 4})
    langfuse.update_current_trace(user_id="reader", tags=["stories"])
    langfuse.score_current_trace(name="fun", value=0.7)
    return "Once upon a time"

story("dragons")
langfuse.flush()
"""
    script = tmp_path / "app.py"
    script.write_text(docs_code.replace("from langfuse import", "from lftrace import"))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False
    )
    assert done.returncode == 0, done.stderr
    trace = get_client().get_trace("last")
    assert [(o.type, o.name) for o in trace.observations] == [("SPAN", "story"), ("GENERATION", "llm")]
    assert (trace.user_id, trace.tags, [s.name for s in trace.scores]) == ("reader", ["stories"], ["fun"])


def test_tracing_disabled_records_nothing_and_never_breaks(monkeypatch):
    from lftrace import Langfuse
    from lftrace.client import reset_clients

    reset_clients()
    Langfuse(tracing_enabled=False)

    @observe()
    def work() -> int:
        return 1

    assert work() == 1
    with get_client().start_as_current_span(name="x") as span:
        span.update(output=1)
    ToolCallingFakeModel().invoke("hi", config={"callbacks": [CallbackHandler()]})
    assert get_client().list_traces() == []


def test_observe_inside_a_langchain_tool_nests_under_the_tool_run():
    from langchain_core.tools import tool

    @observe(name="lookup-db")
    def lookup(city: str) -> str:
        get_client().update_current_span(metadata={"rows": 1})
        return f"sunny in {city}"

    @tool
    def get_weather(city: str) -> str:
        """Return the weather for a city."""
        return lookup(city)

    handler = CallbackHandler()
    get_weather.invoke({"city": "Kyiv"}, config={"callbacks": [handler]})
    trace = last_trace()
    obs = by_name(trace)
    assert trace.id == handler.last_trace_id and len(trace.roots()) == 1
    assert obs["lookup-db"].parent_id == obs["get_weather"].id
    assert obs["lookup-db"].output == "sunny in Kyiv" and obs["lookup-db"].metadata == {"rows": 1}
    assert trace.name == "get_weather"  # the LangChain run stays the trace's root
    # after the run, code is outside it again
    assert get_client().get_current_trace_id() is None


def test_the_sdk_s_type_names_import_from_lftrace_types(isolated_env):
    """``from langfuse.types import TraceContext, SpanLevel, ...`` (and ``langfuse.experiment``'s names) with only
    the import changed: the same shapes."""
    from typing import get_args

    import langfuse.types as theirs

    from lftrace.types import ExperimentScoreType, ScoreDataType, SpanLevel, TraceContext

    for ours, reference in ((SpanLevel, theirs.SpanLevel), (ScoreDataType, theirs.ScoreDataType)):
        assert get_args(ours) == get_args(reference)
    assert get_args(ExperimentScoreType) == get_args(theirs.ExperimentScoreType)
    assert TraceContext.__required_keys__ == theirs.TraceContext.__required_keys__ == {"trace_id"}
    assert TraceContext.__optional_keys__ == theirs.TraceContext.__optional_keys__ == {"parent_span_id"}

    from lftrace import Evaluation
    from lftrace.experiment import Evaluation as FromExperiment  # langfuse.experiment's names, import changed

    assert FromExperiment is Evaluation
    langfuse = get_client()
    context = TraceContext(trace_id="ab" * 16, parent_span_id="cd" * 8)
    with langfuse.start_as_current_observation(name="joined", trace_context=context) as span:
        assert (span.trace_id, span.is_trace_root) == ("ab" * 16, False)
    langfuse.flush()
    assert langfuse.get_trace("ab" * 16).observations[0].parent_id == "cd" * 8
