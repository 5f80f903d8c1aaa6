"""`lftrace test TARGET dataset:NAME`: a Langfuse (or local) dataset's items as CI cases, recorded as a dataset run.

Real subprocesses of ``lftrace``, the sample weather agent (LangGraph's prebuilt-style tool loop), datasets made with
lftrace's SDK in the test's store, and with Langfuse keys a real ``lftrace serve`` playing Langfuse (its datasets
API), whose traces also go to an OTLP receiver on 127.0.0.1 to read the ``langfuse.experiment.*`` span attributes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from lftrace import Langfuse
from lftrace.experiments import experiment_id_for
from lftrace.store import TraceStore
from serve_process import ServeProcess
from support.otlp_receiver import attributes

REPO = Path(__file__).resolve().parent.parent
LFTRACE = str(Path(sys.executable).parent / "lftrace")
AGENT = f"{REPO / 'sample_graphs' / 'agent.py'}:graph"


def lftrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=120, env=env)


def make_dataset(langfuse: Langfuse) -> None:
    langfuse.create_dataset(name="weather-smoke", description="the agent's smoke test")
    item = langfuse.create_dataset_item
    item(dataset_name="weather-smoke", id="i-paris", input="What's the weather in Paris?", expected_output="SUNNY",
         metadata={"name": "paris"})  # fmt: skip
    item(dataset_name="weather-smoke", id="i-rome", input="What's the weather in Rome?", expected_output="snowing",
         metadata={"name": "rome"})  # fmt: skip
    item(dataset_name="weather-smoke", id="i-math", input="What is 6 times 7?", expected_output={"messages": []},
         metadata={"expect": {"tools": ["multiply"]}})  # fmt: skip
    item(dataset_name="weather-smoke", id="i-old", input="ignored", status="ARCHIVED")
    langfuse.flush()


def test_a_local_dataset_s_items_run_as_cases_linked_to_a_dataset_run(tmp_path):
    make_dataset(Langfuse(public_key=""))
    junit = tmp_path / "report.xml"
    ran = lftrace("test", AGENT, "dataset:weather-smoke", "--check-expected", "--json", "--junit", str(junit))
    assert ran.returncode == 5, ran.stderr  # rome's reply holds no "snowing"; 6 times 7 is not {"messages": []}
    report = json.loads(ran.stdout)
    verdicts = {c["name"]: c["status"] for c in report["cases"]}
    assert verdicts == {"paris": "pass", "rome": "fail", "i-math": "fail"}  # the archived item is not run
    failures = {c["name"]: [f["name"] for f in c["failures"]] for c in report["cases"]}
    assert failures == {"paris": [], "rome": ["expected output"], "i-math": ["expected output"]}
    (rome,) = [c for c in report["cases"] if c["name"] == "rome"]
    assert "does not contain the expected output" in rome["failures"][0]["message"]

    run = report["datasetRun"]
    assert run["dataset"] == "weather-smoke" and run["runName"] == f"lftrace test {report['runId']}"
    assert run["url"] is None  # a local dataset: no Langfuse to show it
    assert ET.parse(junit).getroot().find("testsuite").get("name") == "lftrace test dataset:weather-smoke"

    with TraceStore(Path(os.environ["LFTRACE_STORE"]), create=False) as store:
        dataset_id = store.get_dataset("weather-smoke")["id"]
        assert run["datasetId"] == dataset_id
        for case in report["cases"]:
            trace = store.get_trace(case["traceId"])
            linked = trace.metadata["langfuse.experiment"]
            assert (linked["id"], linked["name"], linked["dataset.id"]) == (
                run["experimentId"],
                run["runName"],
                dataset_id,
            )
            # the link is the trace's: no observation repeats it
            assert not any("langfuse.experiment" in (o.metadata or {}) for o in trace.observations)
            (score,) = trace.scores
            assert (score.name, score.value, score.data_type) == (
                "lftrace-test",
                float(case["status"] == "pass"),
                "BOOLEAN",
            )
            assert (score.comment is None) == (case["status"] == "pass")
        paris = store.get_trace(next(c["traceId"] for c in report["cases"] if c["name"] == "paris"))
        assert paris.metadata["langfuse.experiment"]["item.id"] == "i-paris"
        assert paris.metadata["langfuse.experiment"]["item.expected_output"] == "SUNNY"
    shown = lftrace("show", paris.id)
    assert f"experiment {run['runName']} (item i-paris)" in " ".join(shown.stdout.split())


def test_without_check_expected_only_the_items_own_checks_and_the_options_apply(tmp_path):
    make_dataset(Langfuse(public_key=""))
    ran = lftrace("test", AGENT, "dataset:weather-smoke", "--no-errors", "--run-name", "nightly", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert {c["name"]: c["status"] for c in report["cases"]} == {"paris": "pass", "rome": "pass", "i-math": "pass"}
    assert report["datasetRun"]["runName"] == "nightly"

    text = lftrace("test", AGENT, "dataset:weather-smoke", "--check-expected", "--run-name", "nightly")
    assert text.returncode == 5
    assert "dataset run 'nightly' of weather-smoke" in text.stdout and "1/3 passed" in text.stdout


REVIEW = f"{REPO / 'sample_graphs' / 'human_review.py'}:graph"


def test_an_item_with_turns_is_a_conversation_on_one_thread_linked_to_the_item(tmp_path):
    langfuse = Langfuse(public_key="")
    langfuse.create_dataset(name="review-convos")
    later = [{"resume": "make it shorter", "expect": {"interrupt": "Publish this draft"}}, {"resume": "yes"}]
    langfuse.create_dataset_item(dataset_name="review-convos", id="i-publish", input="release notes",
                                 metadata={"name": "publish", "turns": later, "expect": {"complete": True}})  # fmt: skip
    langfuse.create_dataset_item(dataset_name="review-convos", id="i-redo", input="notes",
                                 metadata={"name": "redo", "turns": [{"resume": "no, redo it", "expect": {"complete": True}}]})  # fmt: skip
    langfuse.flush()
    ran = lftrace("test", REVIEW, "dataset:review-convos", "--json", "--run-name", "convos")
    assert ran.returncode == 5, ran.stderr  # "redo" pauses for another review at its second turn
    cases = {c["name"]: c for c in json.loads(ran.stdout)["cases"]}
    publish, redo = cases["publish"], cases["redo"]
    assert (publish["status"], publish["turns"], len(publish["traceIds"])) == ("pass", 3, 3), publish
    assert (redo["status"], redo["failedTurn"], len(redo["traceIds"])) == ("fail", 2, 2), redo
    assert [f["name"] for f in redo["failures"]] == ["turn 2: complete"]

    with TraceStore(Path(os.environ["LFTRACE_STORE"]), create=False) as store:
        for case, item_id in ((publish, "i-publish"), (redo, "i-redo")):
            traces = [store.get_trace(tid) for tid in case["traceIds"]]
            assert len({t.session_id for t in traces}) == 1  # one thread
            for trace in traces:  # every turn belongs to the item's run
                linked = trace.metadata["langfuse.experiment"]
                assert (linked["name"], linked["item.id"]) == ("convos", item_id)
            # the verdict is the last turn's: its trace holds the score, the earlier ones none
            assert [len(t.scores) for t in traces] == [0] * (len(traces) - 1) + [1]
            assert traces[-1].id == case["traceId"]
            assert traces[-1].scores[0].value == float(case["status"] == "pass")
        first_input = store.get_trace(publish["traceIds"][0]).input
        assert "release notes" in json.dumps(first_input)

    langfuse.create_dataset(name="bad-turns")
    bad = langfuse.create_dataset_item(dataset_name="bad-turns", input="x", metadata={"turns": [{"say": "hi"}]})
    langfuse.flush()
    broken = lftrace("test", REVIEW, "dataset:bad-turns")
    assert broken.returncode == 2 and len(broken.stderr.splitlines()) == 1, broken.stderr
    assert f"item {bad.id}: metadata: turn 1: unknown key(s) say" in broken.stderr


def test_mistakes_are_one_line_errors(tmp_path):
    langfuse = Langfuse(public_key="")
    missing = lftrace("test", AGENT, "dataset:nope")
    assert missing.returncode == 4 and missing.stderr == "error: no dataset 'nope'\n"
    langfuse.create_dataset(name="empty")
    langfuse.flush()
    empty = lftrace("test", AGENT, "dataset:empty")
    assert empty.returncode == 2 and "dataset 'empty' has no active items" in empty.stderr
    no_name = lftrace("test", AGENT, "dataset:")
    assert no_name.returncode == 2 and "dataset: needs a dataset's name" in no_name.stderr
    (tmp_path / "cases.jsonl").write_text('{"name": "a", "input": "hi"}\n', encoding="utf-8")
    jsonl = lftrace("test", AGENT, "cases.jsonl", "--check-expected")
    assert jsonl.returncode == 2 and "--check-expected is for a dataset" in jsonl.stderr
    bad = langfuse.create_dataset_item(dataset_name="empty", input="hi", metadata={"expect": {"tool": "x"}})
    langfuse.flush()
    unknown = lftrace("test", AGENT, "dataset:empty")
    assert unknown.returncode == 2 and f'item {bad.id}: unknown expectation "tool"' in unknown.stderr
    for result in (missing, empty, no_name, jsonl, unknown):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_with_langfuse_keys_the_dataset_is_langfuse_s_and_every_span_names_the_run(tmp_path, receiver):
    with ServeProcess(tmp_path / "langfuse.db") as langfuse_server:
        keys = {"LANGFUSE_PUBLIC_KEY": "pk-lf-ci", "LANGFUSE_SECRET_KEY": "sk-lf-ci"}
        remote = Langfuse(public_key=keys["LANGFUSE_PUBLIC_KEY"], secret_key=keys["LANGFUSE_SECRET_KEY"],
                          base_url=langfuse_server.url)  # fmt: skip
        make_dataset(remote)
        env = {**os.environ, **keys, "LANGFUSE_BASE_URL": langfuse_server.url}
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{receiver.url}/v1/traces"  # a second destination, to read
        ran = lftrace("test", AGENT, "dataset:weather-smoke", "--check-expected", "--run-name", "ci #7", "--json",
                      env=env)  # fmt: skip
        assert ran.returncode == 5, ran.stderr
        report = json.loads(ran.stdout)
        run = report["datasetRun"]
        dataset_id = remote.get_dataset("weather-smoke").id
        assert run["experimentId"] == experiment_id_for("lftrace-local", dataset_id, "ci #7")  # as Langfuse derives it
        assert run["url"] == (
            f"{langfuse_server.url}/project/lftrace-local/experiments/results?baseline={run['experimentId']}"
        )
        # the items came from "Langfuse": the local store never had the dataset
        with TraceStore(Path(os.environ["LFTRACE_STORE"]), create=False) as store:
            assert store.get_dataset("weather-smoke") is None
        spans = [attributes(s.attributes) for s in receiver.wait_for_spans(10)]
        by_item = {a.get("langfuse.experiment.item.id") for a in spans}
        assert by_item == {"i-paris", "i-rome", "i-math"}
        assert {a["langfuse.experiment.id"] for a in spans} == {run["experimentId"]}
        assert {a["langfuse.experiment.name"] for a in spans} == {"ci #7"}
        assert {a["langfuse.experiment.dataset.id"] for a in spans} == {dataset_id}
        # each verdict reached "Langfuse" as a score of the item's trace
        with TraceStore(tmp_path / "langfuse.db", create=False) as served:
            verdicts = {s.trace_id: s.value for s in served.scores() if s.name == "lftrace-test"}
        assert verdicts == {c["traceId"]: float(c["status"] == "pass") for c in report["cases"]}
