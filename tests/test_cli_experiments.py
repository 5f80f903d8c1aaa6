"""``lftrace experiments``: the runs of ``run_experiment`` in the store, and one run item by item (real runs of the
SDK API in a subprocess, then the ``lftrace`` command as a subprocess over the same store file)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LFTRACE = str(Path(sys.executable).parent / "lftrace")

_EXPERIMENTS = textwrap.dedent(
    """
    from lftrace import Evaluation, Langfuse

    langfuse = Langfuse(public_key="")
    langfuse.create_dataset(name="capitals")
    for item_id, country, capital in (("fr", "France", "Paris"), ("es", "Spain", "Madrid"), ("it", "Italy", "Rome")):
        langfuse.create_dataset_item(dataset_name="capitals", id=item_id, input={"country": country}, expected_output=capital)


    def task(*, item, **kwargs):
        if item.id == "it":
            raise RuntimeError("model timeout")
        return {"France": "Paris"}.get(item.input["country"], "Barcelona")


    def exact(*, output, expected_output, **kwargs):
        return Evaluation(name="exact", value=1.0 if output == expected_output else 0.0)


    def accuracy(*, item_results, **kwargs):
        return Evaluation(name="accuracy", value=sum(r.evaluations[0].value for r in item_results) / len(item_results))


    run = langfuse.get_dataset("capitals").run_experiment(
        name="capitals", run_name="capitals-v1", description="baseline", task=task, evaluators=[exact],
        run_evaluators=[accuracy],
    )
    langfuse.run_experiment(name="loose", run_name="loose-1", data=[{"input": "a", "expected_output": "A"}],
                            task=lambda *, item, **kwargs: "A")
    print(run.experiment_id)
    """
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_", "LFTRACE_"))}
    env.update(LFTRACE_STORE=str(tmp_path_factory.mktemp("experiments") / "traces.db"), NO_COLOR="1", COLUMNS="150")
    made = subprocess.run([sys.executable, "-c", _EXPERIMENTS], capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    return {"env": env, "experiment_id": made.stdout.split()[-1]}


def lftrace(recorded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, env=recorded["env"], timeout=60)


def test_the_runs_are_listed_latest_first_with_items_errors_and_mean_scores(recorded):
    listed = lftrace(recorded, "experiments", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["name"] for r in runs] == ["loose-1", "capitals-v1"]
    capitals = runs[1]
    assert capitals["id"] == recorded["experiment_id"]
    assert (capitals["itemCount"], capitals["errors"], capitals["dataset"]) == (3, 1, "capitals")
    assert capitals["averages"] == {"exact": 0.5}  # the item that failed has no score
    assert [(s["name"], s["value"]) for s in capitals["scores"]] == [("accuracy", 0.5)]  # the run's own
    assert runs[0]["datasetId"] is None and runs[0]["errors"] == 0

    table = lftrace(recorded, "experiments")  # not a terminal: tab-separated, a header first
    header, *rows = table.stdout.splitlines()
    assert header.split("\t")[:5] == ["id", "run", "dataset_id", "items", "errors"]
    assert rows[1].split("\t")[1:2] + rows[1].split("\t")[3:6] == [
        "capitals-v1",
        "3",
        "1",
        "exact 0.5, accuracy 0.5 (run)",
    ]


def test_one_run_item_by_item_by_name_id_prefix_or_last(recorded):
    shown = lftrace(recorded, "experiments", "capitals-v1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("capitals-v1") and recorded["experiment_id"] in lines[0]
    assert "3 items  1 error  dataset capitals" in lines[1] and "description: baseline" in shown.stdout
    by_item = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in ("fr", "es", "it")}
    assert "Paris" in by_item["fr"] and "exact 1" in by_item["fr"] and by_item["fr"].rstrip().split()[-2] == "ok"
    assert "Barcelona" in by_item["es"] and "Madrid" in by_item["es"] and "exact 0" in by_item["es"]
    assert "model timeout" in by_item["it"] and " error " in by_item["it"]

    by_prefix = json.loads(lftrace(recorded, "experiments", recorded["experiment_id"][:6], "--json").stdout)
    assert by_prefix["name"] == "capitals-v1"
    items = {i["experimentItemId"]: i for i in by_prefix["items"]}
    assert (items["fr"]["input"], items["fr"]["output"], items["fr"]["expectedOutput"]) == (
        {"country": "France"}, "Paris", "Paris"
    )  # fmt: skip
    assert [s["name"] for s in items["es"]["scores"]] == ["exact"] and items["it"]["level"] == "ERROR"
    assert json.loads(lftrace(recorded, "experiments", "last", "--json").stdout)["name"] == "loose-1"

    # the item's trace is one lftrace show away
    trace = lftrace(recorded, "show", items["fr"]["traceId"])
    assert "experiment-item-task" in trace.stdout and "capitals-v1 (item fr)" in trace.stdout


def test_an_unknown_run_is_exit_4_with_one_line(recorded):
    missing = lftrace(recorded, "experiments", "nope")
    assert missing.returncode == 4
    assert missing.stderr.strip().splitlines() == [
        f"error: no experiment run 'nope' in {recorded['env']['LFTRACE_STORE']} (list them with: lftrace experiments)"
    ]
    assert "Traceback" not in missing.stderr


def test_an_empty_store_says_how_runs_get_there(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "LFTRACE_"))}
    env["LFTRACE_STORE"] = str(tmp_path / "none.db")
    empty = subprocess.run([LFTRACE, "experiments"], capture_output=True, text=True, env=env, timeout=60)
    assert empty.returncode == 0 and "No experiment runs yet" in empty.stdout
    assert not (tmp_path / "none.db").exists()  # looking creates no store


_SECOND_RUN = textwrap.dedent(
    """
    from lftrace import Evaluation, Langfuse

    langfuse = Langfuse(public_key="")


    def task(*, item, **kwargs):  # Spain and Italy right now, France wrong
        return {"France": "Lyon", "Spain": "Madrid", "Italy": "Rome"}[item.input["country"]]


    def exact(*, output, expected_output, **kwargs):
        return Evaluation(name="exact", value=1.0 if output == expected_output else 0.0)


    langfuse.get_dataset("capitals").run_experiment(name="capitals", run_name="capitals-v2", task=task, evaluators=[exact])
    """
)


def test_a_run_against_a_baseline_item_by_item_and_its_exit_code_for_ci(recorded, tmp_path):
    env = dict(recorded["env"])
    env["LFTRACE_STORE"] = str(tmp_path / "compared.db")
    source, copy = sqlite3.connect(recorded["env"]["LFTRACE_STORE"]), sqlite3.connect(env["LFTRACE_STORE"])
    source.backup(copy)  # the runs above (WAL included), then a second one
    source.close(), copy.close()
    made = subprocess.run([sys.executable, "-c", _SECOND_RUN], capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LFTRACE, "experiments", *args], capture_output=True, text=True, env=env, timeout=60)

    compared = run("capitals-v2", "--against", "capitals-v1")
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert lines[0] == "capitals-v2 vs capitals-v1  3 items in both"
    assert lines[1] == "exact  0.5 -> 0.6667  +0.1667"  # over the items scored: the failed one had no score
    assert lines[2] == "failed items  1 -> 0"
    rows = {line.split()[0]: line for line in lines[4:]}
    assert "exact 1 -> exact 0" in rows["fr"] and "Paris -> Lyon" in rows["fr"] and " regressed " in rows["fr"]
    assert "Barcelona -> Madrid" in rows["es"] and " improved " in rows["es"]
    assert "Error: model timeout -> Rome" in rows["it"] and " improved " in rows["it"]

    data = json.loads(run("capitals-v2", "--against", "capitals-v1", "--json").stdout)
    assert (data["run"]["name"], data["base"]["name"], data["matched"], data["regressed"]) == (
        "capitals-v2", "capitals-v1", 3, False
    )  # fmt: skip
    assert data["scores"]["exact"]["delta"] == pytest.approx(1 / 6)
    assert {c["item"]: c["status"] for c in data["changed"]} == {"fr": "regressed", "es": "improved", "it": "improved"}

    # CI: better than the baseline passes; the other way round (lower mean, more failures) is exit 5, one line
    assert run("capitals-v2", "--against", "capitals-v1", "--fail-on-regression").returncode == 0
    worse = run("capitals-v1", "--against", "capitals-v2", "--fail-on-regression")
    assert worse.returncode == 5
    assert worse.stderr.strip() == (
        "lftrace: capitals-v1 regressed against capitals-v2: exact 0.6667 -> 0.5, failed items 0 -> 1"
    )
    unrelated = run("loose-1", "--against", "capitals-v1")
    assert "0 items in both" in unrelated.stdout and "only in loose-1" in unrelated.stdout
    assert run("--against", "capitals-v1").returncode == 2
    assert run("capitals-v2", "--fail-on-regression").returncode == 2
