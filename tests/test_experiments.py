"""Datasets and experiments with the SDK's names: ``create_dataset``, ``create_dataset_item``, ``get_dataset``,
``run_experiment`` (and ``dataset.run_experiment``), ``Evaluation``.

Without keys in the local store; with keys against a real ``lftrace serve`` subprocess playing Langfuse (its
datasets API), and against the fake Langfuse on 127.0.0.1 to read the ``langfuse.experiment.*`` span attributes.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.prompts import ChatPromptTemplate

from lftrace import Evaluation, Langfuse
from lftrace.experiments import DatasetNotFound, experiment_id_for, experiment_item_version
from lftrace.langchain import CallbackHandler
from serve_process import ServeProcess
from support.fake_models import ToolCallingFakeModel
from support.otlp_receiver import attributes

ITEMS = [{"input": "a", "expected_output": "A"}, {"input": "b", "expected_output": "x", "metadata": {"hard": True}}]


def upper(*, item, **kwargs):
    return item["input"].upper()


def exact(*, input, output, expected_output=None, **kwargs):
    return Evaluation(
        name="exact", value=1.0 if output == expected_output else 0.0, comment=f"{output} vs {expected_output}"
    )


def average(*, item_results, **kwargs):
    return {"name": "average", "value": sum(r.evaluations[0].value for r in item_results) / len(item_results)}


def test_an_experiment_on_local_data_traces_each_item_and_scores_it(isolated_env):
    langfuse = Langfuse(public_key="")
    result = langfuse.run_experiment(
        name="upper", data=ITEMS, task=upper, evaluators=[exact], run_evaluators=[average], description="caps"
    )
    assert [(r.output, r.evaluations[0].value) for r in result.item_results] == [("A", 1.0), ("B", 0.0)]
    assert [(e.name, e.value) for e in result.run_evaluations] == [("average", 0.5)]
    assert result.run_name.startswith("upper - ") and result.experiment_url is None
    report = result.format(include_item_results=True)
    assert "2 items" in report and "exact: 0.500" in report and "average: 0.5" in report

    traces = {r.output: langfuse.get_trace(r.trace_id) for r in result.item_results}
    trace = traces["B"]
    assert (trace.name, trace.environment, trace.input, trace.output) == (
        "experiment-item-run",
        "sdk-experiment",
        "b",
        "B",
    )
    assert [o.name for o in trace.observations] == [
        "experiment-item-run", "experiment-item-task", "experiment-item-evaluation", "exact",
    ]  # fmt: skip
    assert [(s.name, s.value, s.comment) for s in trace.scores] == [("exact", 0.0, "B vs x")]
    root = trace.observations[0]
    assert root.metadata == {"experiment_name": "upper", "experiment_run_name": result.run_name, "hard": True}
    experiment = trace.metadata["langfuse.experiment"]
    assert (experiment["id"], experiment["name"], experiment["description"]) == (
        result.experiment_id,
        result.run_name,
        "caps",
    )
    assert (
        experiment["item.expected_output"] == "x" and experiment["item.root_observation_id"] == trace.observations[1].id
    )
    (run_score,) = [s for s in langfuse.store.scores() if s.dataset_run_id is not None]
    assert (run_score.name, run_score.value, run_score.dataset_run_id) == ("average", 0.5, result.experiment_id)


def test_a_dataset_in_the_local_store_and_its_experiment_with_a_chain_and_an_async_task(isolated_env):
    langfuse = Langfuse(public_key="")
    made = langfuse.create_dataset(name="capitals", description="capital cities", metadata={"owner": "qa"})
    assert (made.name, made.description, made.metadata, made.items) == (
        "capitals",
        "capital cities",
        {"owner": "qa"},
        [],
    )
    langfuse.create_dataset_item(dataset_name="capitals", input={"country": "France"}, expected_output="Paris", id="fr")
    langfuse.create_dataset_item(dataset_name="capitals", input={"country": "Spain"}, expected_output="Madrid", id="es")
    updated = langfuse.create_dataset_item(dataset_name="capitals", id="es", metadata={"v": 2})  # an upsert
    assert (updated.input, updated.metadata, updated.dataset_name) == ({"country": "Spain"}, {"v": 2}, "capitals")
    with pytest.raises(DatasetNotFound, match="no dataset 'nope': create it first"):
        langfuse.create_dataset_item(dataset_name="nope", input=1)

    dataset = langfuse.get_dataset("capitals", fetch_items_page_size=1)  # pages are followed
    assert sorted(i.id for i in dataset.items) == ["es", "fr"]
    chain = ChatPromptTemplate.from_template("Capital of {country}?") | ToolCallingFakeModel()

    async def task(*, item, **kwargs):  # an async task, with a LangChain chain traced inside the item's trace
        reply = await chain.ainvoke(item.input, config={"callbacks": [CallbackHandler()]})
        return "Paris" if "France" in str(reply.content) or item.id == "fr" else "?"

    result = dataset.run_experiment(name="capitals-v1", task=task, evaluators=[exact])
    by_item = {r.item.id: r for r in result.item_results}
    assert {i: r.output for i, r in by_item.items()} == {"fr": "Paris", "es": "?"}
    trace = langfuse.get_trace(by_item["fr"].trace_id)
    names = [o.name for o in trace.observations]
    assert {"experiment-item-task", "RunnableSequence", "ToolCallingFakeModel"} <= set(names)
    task_span = next(o for o in trace.observations if o.name == "experiment-item-task")
    chain_root = next(o for o in trace.observations if o.name == "RunnableSequence")
    assert chain_root.parent_id == task_span.id  # the chain nests under the task
    assert task_span.metadata["dataset_item_id"] == "fr" and task_span.metadata["dataset_id"] == dataset.id
    assert trace.metadata["langfuse.experiment"]["dataset.id"] == dataset.id
    with pytest.raises(DatasetNotFound):
        langfuse.get_dataset("nope")


def test_an_item_whose_task_raises_is_left_out_and_its_trace_says_why(isolated_env):
    langfuse = Langfuse(public_key="")

    def flaky(*, item, **kwargs):
        if item["input"] == "b":
            raise RuntimeError("model timeout")
        return "ok"

    result = langfuse.run_experiment(name="flaky", data=ITEMS, task=flaky, evaluators=[exact])
    assert [r.item["input"] for r in result.item_results] == ["a"]
    failed = [t for t in langfuse.list_traces(limit=10) if t.status == "error"]
    assert len(failed) == 1
    trace = langfuse.get_trace(failed[0].id)
    assert trace.observations[0].status_message == "model timeout" and trace.observations[0].level == "ERROR"


def test_the_experiment_id_of_a_dataset_run_is_langfuse_s(isolated_env):
    from langfuse import Langfuse as OfficialLangfuse

    derived = OfficialLangfuse._create_experiment_id(None, project_id="proj-1", dataset_id="ds-1", run_name="run é")  # type: ignore[arg-type]
    assert experiment_id_for("proj-1", "ds-1", "run é") == derived
    assert len(experiment_id_for(None, "ds-1", "x")) == 16 != experiment_id_for(None, "ds-1", "x")  # random


def test_with_langfuse_keys_datasets_are_langfuse_s(isolated_env, tmp_path):
    with ServeProcess(tmp_path / "langfuse.db") as langfuse_server:
        langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url)
        langfuse.create_dataset(name="remote-ds")
        langfuse.create_dataset_item(dataset_name="remote-ds", input="a", expected_output="A", id="i1")
        dataset = langfuse.get_dataset("remote-ds")
        assert [(i.id, i.input) for i in dataset.items] == [("i1", "a")]
        result = dataset.run_experiment(name="remote", task=upper_of_item, evaluators=[exact])
        assert result.item_results[0].output == "A"
        assert result.experiment_url == (
            f"{langfuse_server.url}/project/lftrace-local/experiments/results?baseline={result.experiment_id}"
        )
        assert result.experiment_id == experiment_id_for("lftrace-local", dataset.id, result.run_name)
        from langfuse.api.client import LangfuseAPI

        api = LangfuseAPI(base_url=langfuse_server.url, username="pk-lf-any", password="sk-lf-any")
        assert api.datasets.get(dataset_name="remote-ds").id == dataset.id  # in "Langfuse", not in a local store
        assert langfuse.store.get_dataset("remote-ds") is None


def upper_of_item(*, item, **kwargs):
    return item.input.upper()


def test_the_experiment_attributes_reach_langfuse_on_every_span(receiver):
    langfuse = Langfuse(public_key="pk-lf-x", secret_key="sk-lf-y", base_url=receiver.url)
    result = langfuse.run_experiment(name="attrs", data=ITEMS[:1], task=upper, evaluators=[exact])
    spans = [attributes(s.attributes) for s in receiver.wait_for_spans(4)]
    assert {a["langfuse.experiment.id"] for a in spans} == {result.experiment_id}
    assert {a["langfuse.experiment.name"] for a in spans} == {result.run_name}
    assert {a["langfuse.experiment.item.expected_output"] for a in spans} == {"A"}
    assert {a["langfuse.environment"] for a in spans} == {"sdk-experiment"}
    assert not any(k.startswith("langfuse.trace.metadata.langfuse") for a in spans for k in a)
    posted = [s for r in receiver.requests if r.path == "/api/public/scores" for s in json.loads(r.body)]
    assert [(s["name"], s["value"]) for s in posted] == [("exact", 1.0)]


def test_a_composite_evaluator_combines_an_item_s_evaluations_as_sdk_5_records_them(isolated_env):
    def length(*, output, **kwargs):
        return Evaluation(name="short", value=len(output) < 3)

    def broken(**kwargs):
        raise RuntimeError("judge offline")

    async def overall(*, input, output, expected_output, metadata, evaluations, **kwargs):
        numeric = [float(e.value) for e in evaluations]
        return {"name": "overall", "value": sum(numeric) / len(numeric), "comment": f"{len(evaluations)} evaluations"}

    langfuse = Langfuse(public_key="")
    result = langfuse.run_experiment(
        name="composite", data=ITEMS, task=upper, evaluators=[exact, length, broken], composite_evaluator=overall
    )
    by_output = {r.output: r for r in result.item_results}
    assert [(e.name, e.value) for e in by_output["A"].evaluations] == [
        ("exact", 1.0),
        ("short", True),
        ("overall", 1.0),
    ]
    assert [(e.name, e.value) for e in by_output["B"].evaluations] == [
        ("exact", 0.0),
        ("short", True),
        ("overall", 0.5),
    ]

    trace = langfuse.get_trace(by_output["B"].trace_id)
    spans = {o.name: o for o in trace.observations}
    assert spans["exact"].metadata == {"evaluator_kind": "item", "evaluator_index": 0}
    assert (spans["broken"].level, spans["broken"].output) == ("ERROR", {"error": "judge offline"})
    assert spans["overall"].metadata == {"evaluator_kind": "composite"}
    assert [e["name"] for e in spans["overall"].input["evaluations"]] == ["exact", "short"]
    assert spans["experiment-item-evaluation"].output == {
        "evaluator_count": 4, "evaluation_count": 3, "failed_evaluator_count": 1, "skipped_evaluator_count": 0,
    }  # fmt: skip
    # every evaluation is a score of the task's observation, as SDK 5 records it
    task_id = spans["experiment-item-task"].id
    assert [(s.name, s.observation_id) for s in trace.scores] == [
        ("exact", task_id), ("short", task_id), ("overall", task_id),
    ]  # fmt: skip


def test_our_experiment_item_has_the_official_sdk_s_spans_and_scores(isolated_env, receiver):
    """The same experiment run by the official SDK 5 and by lftrace, both exporting to the fake Langfuse: the same
    spans (names, types, evaluator kinds), the same summary on the evaluation span, the same scores on the task."""
    from langfuse import Langfuse as OfficialLangfuse

    def same(*, output, expected_output, **kwargs):  # a dict: what both SDKs take (each has its own Evaluation)
        return {"name": "exact", "value": 1.0 if output == expected_output else 0.0}

    def overall(*, evaluations, **kwargs):
        return {"name": "overall", "value": sum(float(e.value) for e in evaluations)}

    official = OfficialLangfuse(public_key="pk-lf-o", secret_key="sk-lf-o", base_url=receiver.url)
    their_run = official.run_experiment(
        name="o", data=ITEMS[:1], task=upper, evaluators=[same], composite_evaluator=overall
    )
    official.flush()
    ours = Langfuse(public_key="pk-lf-x", secret_key="sk-lf-y", base_url=receiver.url)
    our_run = ours.run_experiment(name="o", data=ITEMS[:1], task=upper, evaluators=[same], composite_evaluator=overall)
    receiver.wait_for_spans(12)

    def spans_of(trace_id: str) -> dict[str, dict]:
        found = [s for s in receiver.spans() if s.trace_id.hex() == trace_id]
        return {s.name: attributes(s.attributes) | {"span_id": s.span_id.hex()} for s in found}

    def plain(value):
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            return value

    def shape(spans: dict[str, dict]) -> dict[str, tuple]:
        keys = ("langfuse.observation.type", "langfuse.observation.metadata.evaluator_kind")
        return {name: tuple(plain(a.get(k)) for k in keys) for name, a in spans.items()}

    theirs = spans_of(their_run.item_results[0].trace_id)
    mine = spans_of(our_run.item_results[0].trace_id)
    assert shape(mine) == shape(theirs) and len(mine) == 5
    summary = "langfuse.observation.output"
    assert plain(mine["experiment-item-evaluation"][summary]) == plain(theirs["experiment-item-evaluation"][summary])
    posted = [s for r in receiver.requests if r.path == "/api/public/scores" for s in json.loads(r.body)]
    by_trace = {t: [(s["name"], s["value"], s["observationId"]) for s in posted if s["traceId"] == t] for t in
                (their_run.item_results[0].trace_id, our_run.item_results[0].trace_id)}  # fmt: skip
    assert by_trace[their_run.item_results[0].trace_id] == [
        ("exact", 1.0, theirs["experiment-item-task"]["span_id"]), ("overall", 1.0, theirs["experiment-item-task"]["span_id"]),
    ]  # fmt: skip
    assert by_trace[our_run.item_results[0].trace_id] == [
        ("exact", 1.0, mine["experiment-item-task"]["span_id"]), ("overall", 1.0, mine["experiment-item-task"]["span_id"]),
    ]  # fmt: skip


def test_a_versioned_dataset_s_experiment_says_which_version_it_ran_on(isolated_env, tmp_path):
    """``get_dataset(version=...)`` then ``run_experiment``: every item's trace carries the version as SDK 5 sends
    it (``langfuse.experiment.item.version``, the SDK's own text for it). Locally in the store; against a Langfuse
    (here ``lftrace serve``) in the spans, which its experiments API answers from."""
    from datetime import UTC, datetime, timedelta, timezone

    from langfuse import Langfuse as OfficialLangfuse
    from langfuse.api.client import LangfuseAPI

    version = datetime.now(UTC) + timedelta(seconds=1)  # after the items below were made
    official_text = OfficialLangfuse._format_experiment_item_version(version)  # type: ignore[attr-defined]
    assert official_text.endswith("Z")
    assert experiment_item_version(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))) == (
        "2026-01-02T03:04:05+05:00"
    )

    local = Langfuse(public_key="")
    local.create_dataset(name="versioned")
    local.create_dataset_item(dataset_name="versioned", id="q1", input="a", expected_output="A")
    dataset = local.get_dataset("versioned", version=version)
    result = dataset.run_experiment(name="v", task=upper_of_item)
    trace = local.get_trace(result.item_results[0].trace_id)
    assert trace.metadata["langfuse.experiment"]["item.version"] == official_text
    loose = local.run_experiment(name="loose", data=ITEMS[:1], task=upper)  # no dataset: no version
    assert "item.version" not in local.get_trace(loose.item_results[0].trace_id).metadata["langfuse.experiment"]
    # SDK 5's api.experiments over the local store (no server): the same answers as from Langfuse
    experiments = local.api.experiments.list(from_start_time=datetime(2020, 1, 1, tzinfo=UTC), fields="core,metadata")
    assert [(e.id, e.item_count) for e in experiments.data] == [(loose.experiment_id, 1), (result.experiment_id, 1)]
    (item,) = local.api.experiments.list_items(
        from_start_time=datetime(2020, 1, 1, tzinfo=UTC), experiment_id=result.experiment_id, fields="dataset,io"
    ).data
    assert (item.experiment_item_id, item.experiment_item_version, item.output) == ("q1", version, "A")

    started = datetime.now(UTC)
    with ServeProcess(tmp_path / "langfuse.db") as langfuse_server:
        remote = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url)
        remote.create_dataset(name="versioned")
        remote.create_dataset_item(dataset_name="versioned", id="q1", input="a", expected_output="A")
        later = datetime.now(UTC) + timedelta(seconds=1)
        pinned = remote.get_dataset("versioned", version=later)
        ran = pinned.run_experiment(name="v", task=upper_of_item, evaluators=[exact])
        # the item's times are datetimes, as the official SDK's models give them from the same server
        theirs = OfficialLangfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url)
        (their_item,) = theirs.get_dataset("versioned").items
        (our_item,) = pinned.items
        assert (our_item.version, our_item.created_at) == (their_item.version, their_item.created_at)
        assert isinstance(our_item.version, datetime) and our_item.version <= later
        assert pinned.created_at == theirs.get_dataset("versioned").created_at
        api = LangfuseAPI(base_url=langfuse_server.url, username="pk-lf-any", password="sk-lf-any")
        (item,) = api.experiments.list_items(
            from_start_time=started, experiment_id=ran.experiment_id, fields="core,dataset,io,scores"
        ).data
    assert (item.experiment_item_id, item.experiment_item_version) == ("q1", later)
    assert (item.input, item.output, item.expected_output) == ("a", "A", "A")
    assert [(s.name, s.value) for s in item.scores] == [("exact", 1.0)]
