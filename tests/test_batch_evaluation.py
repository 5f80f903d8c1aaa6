"""``run_batched_evaluation`` (SDK 5's names) over recorded observations, and the v2 observations ``filter``.

Real LangGraph runs traced into the test's store; the local client reads them through ``api.observations.get_many``
(``lftrace serve``'s routes in the process); the official SDK 5 runs its own ``run_batched_evaluation`` unchanged
against a real ``lftrace serve`` subprocess, whose ``filter`` support decides which observations it scores.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage

from lftrace import Evaluation, EvaluatorInputs, Langfuse
from lftrace.langchain import CallbackHandler
from lftrace.model import iso_from_ns
from lftrace.public_api import ApiError
from lftrace.store import TraceStore
from serve_process import ServeProcess
from support.fake_models import ToolCallingFakeModel, build_agent

GENERATIONS = '[{"type": "string", "column": "type", "operator": "=", "value": "GENERATION"}]'


def run_agent(langfuse: Langfuse, question: str, tags: list[str]) -> str:
    handler = CallbackHandler(public_key=langfuse.settings.public_key or "")
    build_agent(ToolCallingFakeModel()).invoke(
        {"messages": [HumanMessage(question)]}, config={"callbacks": [handler], "tags": tags}
    )
    langfuse.flush()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def mapper(*, item):
    return EvaluatorInputs(input=item.input, output=item.output, metadata={"trace": item.trace_id})


def mentions_city(*, input, output, **kwargs):
    return Evaluation(name="mentions_city", value=float("Paris" in (output or "") or "Oslo" in (output or "")))


def length(*, output, **kwargs):
    return {"name": "length", "value": len(output or "")}


def broken(**kwargs):
    raise RuntimeError("judge offline")


def test_generations_are_scored_where_they_are_with_composite_and_failures_counted(isolated_env):
    langfuse = Langfuse(public_key="")
    traces = [run_agent(langfuse, "Paris", ["prod"]), run_agent(langfuse, "Oslo", ["dev"])]
    generations = [
        o for t in traces for o in langfuse.get_trace(t).observations if o.type == "GENERATION"
    ]  # fmt: skip

    def both(*, evaluations, **kwargs):
        return Evaluation(name="both", value=sum(float(e.value) > 0 for e in evaluations) / len(evaluations))

    result = langfuse.run_batched_evaluation(
        mapper=mapper,
        evaluators=[mentions_city, length, broken],
        composite_evaluator=both,
        filter=GENERATIONS,
        metadata={"run": "nightly"},
        fetch_batch_size=3,
    )
    assert result.completed and not result.has_more_items and result.resume_token is None
    assert (result.total_items_fetched, result.total_items_processed) == (len(generations), len(generations))
    assert result.total_scores_created == 2 * len(generations) == result.total_composite_scores_created * 2
    assert result.total_evaluations_failed == len(generations)
    stats = {s.name: (s.total_runs, s.successful_runs, s.failed_runs) for s in result.evaluator_stats}
    assert stats["broken"] == (len(generations), 0, len(generations))
    assert set(result.item_evaluations) == {g.id for g in generations}
    assert "completed" in str(result)

    for trace_id in traces:
        trace = langfuse.get_trace(trace_id)
        scored = {o.id for o in trace.observations if o.type == "GENERATION"}
        assert {s.observation_id for s in trace.scores} == scored  # each score on its observation
        assert {s.name for s in trace.scores} == {"mentions_city", "length", "both"}
        assert all(s.metadata == {"run": "nightly"} for s in trace.scores)


def test_max_items_then_resume_from_the_token_scores_each_observation_once(isolated_env):
    langfuse = Langfuse(public_key="")
    for question in ("Paris", "Oslo", "Rome"):
        run_agent(langfuse, question, [])
    first = langfuse.run_batched_evaluation(mapper=mapper, evaluators=[length], filter=GENERATIONS, max_items=4)
    assert first.total_items_processed == 4 and first.has_more_items and first.resume_token is not None
    rest = langfuse.run_batched_evaluation(mapper=mapper, evaluators=[length], resume_from=first.resume_token)
    assert rest.completed and not rest.has_more_items
    assert rest.resume_token is None and rest.total_items_processed == 2  # 3 runs x 2 model calls
    assert not set(first.item_evaluations) & set(rest.item_evaluations)
    with pytest.raises(ValueError, match="another filter"):
        langfuse.run_batched_evaluation(mapper=mapper, evaluators=[length], filter="[]", resume_from=first.resume_token)
    with pytest.raises(ValueError, match="JSON array"):
        langfuse.run_batched_evaluation(mapper=mapper, evaluators=[length], filter='{"type": "string"}')


def test_a_mapper_that_raises_fails_its_item_and_an_unknown_filter_column_stops_the_run(isolated_env):
    langfuse = Langfuse(public_key="")
    run_agent(langfuse, "Paris", [])

    def picky(*, item):
        if item.type == "TOOL":
            raise KeyError("no output to judge")
        return mapper(item=item)

    result = langfuse.run_batched_evaluation(mapper=picky, evaluators=[length])
    tools = result.failed_item_ids  # the TOOL observations
    assert result.total_items_failed == len(tools) >= 1 and result.error_summary == {"KeyError": len(tools)}

    bad = '[{"type": "string", "column": "colour", "operator": "=", "value": "red"}]'
    stopped = langfuse.run_batched_evaluation(mapper=mapper, evaluators=[length], filter=bad, max_retries=0)
    assert not stopped.completed and stopped.total_items_fetched == 0 and stopped.resume_token is not None
    with pytest.raises(ApiError) as refused:
        langfuse.api.observations.get_many(filter=bad)
    assert refused.value.status_code == 400 and "unknown column 'colour'" in str(refused.value.body)


def test_the_v2_filter_conditions(isolated_env):
    langfuse = Langfuse(public_key="")
    prod = run_agent(langfuse, "Paris", ["prod"])
    dev = run_agent(langfuse, "Oslo", ["dev"])
    trace = langfuse.get_trace(prod)
    middle = sorted(o.start_time for o in trace.observations)[len(trace.observations) // 2]

    def ids(*conditions: dict) -> set[str]:
        return {o.id for o in langfuse.api.observations.get_many(filter=json.dumps(list(conditions)), limit=1000).data}

    every = {o.id for t in (prod, dev) for o in langfuse.get_trace(t).observations}
    assert ids() == every
    assert ids({"type": "arrayOptions", "column": "tags", "operator": "any of", "value": ["prod"]}) == {
        o.id for o in trace.observations
    }
    assert ids({"type": "arrayOptions", "column": "tags", "operator": "none of", "value": ["prod"]}) == every - {
        o.id for o in trace.observations
    }
    since = {"type": "datetime", "column": "startTime", "operator": ">=", "value": iso_from_ns(middle)}
    tagged = {"type": "arrayOptions", "column": "tags", "operator": "all of", "value": ["prod"]}
    assert ids(since, tagged) == {o.id for o in trace.observations if o.start_time >= middle}
    named = {"type": "string", "column": "name", "operator": "starts with", "value": "ToolCalling"}
    assert ids(named) == {o.id for t in (prod, dev) for o in langfuse.get_trace(t).observations
                          if o.name.startswith("ToolCalling")}  # fmt: skip
    node = {"type": "stringObject", "column": "metadata", "key": "langgraph_node", "operator": "=", "value": "tools"}
    assert ids(node) == {o.id for t in (prod, dev) for o in langfuse.get_trace(t).observations
                         if (o.metadata or {}).get("langgraph_node") == "tools"}  # fmt: skip
    assert ids(node) and ids(named)
    with pytest.raises(ApiError, match="not supported"):
        ids({"type": "string", "column": "name", "operator": "sounds like", "value": "x"})


def test_the_official_sdk_s_batched_evaluation_against_lftrace_serve_scores_only_what_the_filter_picks(tmp_path):
    from langfuse import Evaluation as OfficialEvaluation
    from langfuse import EvaluatorInputs as OfficialInputs
    from langfuse import Langfuse as OfficialLangfuse

    def official_mapper(*, item):
        return OfficialInputs(input=item.input, output=item.output)

    def official_length(*, output, **kwargs):
        return OfficialEvaluation(name="length", value=len(output or ""))

    with ServeProcess(tmp_path / "served.db") as server:
        ours = Langfuse(public_key="pk-lf-s", secret_key="sk-lf-s", base_url=server.url)
        run_agent(ours, "Paris", ["prod"])
        run_agent(ours, "Oslo", ["dev"])
        ours.shutdown()
        official = OfficialLangfuse(public_key="pk-lf-s", secret_key="sk-lf-s", base_url=server.url)
        prod_generations = json.dumps(
            [
                {"type": "string", "column": "type", "operator": "=", "value": "GENERATION"},
                {"type": "arrayOptions", "column": "tags", "operator": "any of", "value": ["prod"]},
            ]
        )
        result = official.run_batched_evaluation(
            mapper=official_mapper, evaluators=[official_length], filter=prod_generations
        )
        official.flush()
        assert result.completed and result.total_items_processed == 2  # the prod run's two model calls
        with TraceStore(tmp_path / "served.db", create=False) as store:
            scored = [s for s in store.scores() if s.name == "length"]
            traces = {t.id: t for t in store.get_traces([s.trace_id for s in scored])}
        assert len(scored) == 2 and all("prod" in traces[s.trace_id].tags for s in scored)
        generations = {o.id for t in traces.values() for o in t.observations if o.type == "GENERATION"}
        assert {s.observation_id for s in scored} == generations
