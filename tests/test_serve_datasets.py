"""``lftrace serve``'s datasets API: the official SDK 5's dataset code (``create_dataset``, ``create_dataset_item``,
``get_dataset``, ``dataset.run_experiment``) runs unchanged against it.

A real ``lftrace serve`` subprocess, the official SDK in another process, the store read back.
"""

from __future__ import annotations

import pytest

from lftrace.store import TraceStore
from serve_process import ServeProcess

_DATASET_APP = """
import sys
from langfuse import Evaluation, Langfuse

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_dataset(name="capitals", description="capital cities", metadata={"owner": "qa"})
langfuse.create_dataset_item(dataset_name="capitals", input={"country": "France"}, expected_output="Paris", id="fr")
langfuse.create_dataset_item(dataset_name="capitals", input={"country": "Spain"}, expected_output="Madrid", id="es")
langfuse.create_dataset_item(  # an upsert on the id
    dataset_name="capitals", input={"country": "Spain"}, expected_output="Madrid", metadata={"v": 2}, id="es"
)
dataset = langfuse.get_dataset("capitals", fetch_items_page_size=1)  # one item a page: the pages are followed
print("DATASET", dataset.name, dataset.description, dataset.metadata)
print("ITEMS", sorted((i.id, i.input["country"], i.expected_output, i.metadata) for i in dataset.items))

CAPITALS = {"France": "Paris", "Spain": "Barcelona"}


def task(*, item, **kwargs):
    return CAPITALS[item.input["country"]]


def exact(*, input, output, expected_output=None, **kwargs):
    return Evaluation(name="exact", value=1.0 if output == expected_output else 0.0)


result = dataset.run_experiment(name="capitals-v1", task=task, evaluators=[exact])
print("SCORES", sorted((r.item.id, r.output, r.evaluations[0].value) for r in result.item_results))
langfuse.flush()
"""


@pytest.fixture
def server(tmp_path):
    with ServeProcess(tmp_path / "serve.db") as proc:
        yield proc


def test_the_official_sdk_s_datasets_and_experiments_work_against_lftrace_serve(server, tmp_path):
    ran = server.run_sdk_program(tmp_path / "dataset_app.py", _DATASET_APP)
    lines = dict(line.split(" ", 1) for line in ran.stdout.strip().splitlines())
    assert lines["DATASET"] == "capitals capital cities {'owner': 'qa'}"
    assert lines["ITEMS"] == "[('es', 'Spain', 'Madrid', {'v': 2}), ('fr', 'France', 'Paris', None)]"
    assert lines["SCORES"] == "[('es', 'Barcelona', 0.0), ('fr', 'Paris', 1.0)]"
    with TraceStore(server.store, create=False) as store:
        traces = store.get_traces([t.id for t in store.list_traces()])
        by_item = {t.observations[0].metadata["dataset_item_id"]: t for t in traces if t.name == "experiment-item-run"}
        assert set(by_item) == {"fr", "es"}
        assert [(s.name, s.value) for s in by_item["fr"].scores] == [("exact", 1.0)]
        assert by_item["es"].output == "Barcelona" and by_item["es"].environment == "sdk-experiment"


def test_the_datasets_api_answers_as_langfuse_does(server):
    assert server.post("/api/public/dataset-items", json={"datasetName": "none", "input": 1}).status_code == 404
    assert server.post("/api/public/v2/datasets", json={"description": "no name"}).status_code == 400
    made = server.post("/api/public/v2/datasets", json={"name": "d1"}).json()
    assert (made["name"], made["description"], made["metadata"], made["projectId"]) == (
        "d1",
        None,
        None,
        "lftrace-local",
    )
    assert server.post("/api/public/v2/datasets", json={"name": "d2"}).status_code == 200
    item = server.post("/api/public/dataset-items", json={"datasetName": "d1", "input": {"q": 1}, "id": "x"}).json()
    assert (item["status"], item["datasetName"], item["expectedOutput"]) == ("ACTIVE", "d1", None)
    taken = server.post("/api/public/dataset-items", json={"datasetName": "d2", "input": 2, "id": "x"})
    assert taken.status_code == 400 and "belongs to another dataset" in taken.json()["message"]
    bad = server.post("/api/public/dataset-items", json={"datasetName": "d1", "status": "GONE"})
    assert bad.status_code == 400
    assert server.get("/api/public/dataset-items/x").json()["input"] == {"q": 1}
    assert server.get("/api/public/dataset-items/nope").status_code == 404
    assert server.get("/api/public/v2/datasets/d9").status_code == 404
    assert server.get("/api/public/dataset-items", params={"datasetName": "d9"}).status_code == 404
    assert server.get("/api/public/dataset-items").status_code == 400  # datasetName is required
    listed = server.get("/api/public/v2/datasets", params={"limit": 1}).json()
    assert len(listed["data"]) == 1 and listed["meta"]["totalItems"] == 2


_VERSIONED_APP = """
import sys, time
from datetime import datetime, timezone
from langfuse import Langfuse

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_dataset(name="qa")
langfuse.create_dataset_item(dataset_name="qa", input="a", id="a")
langfuse.create_dataset_item(dataset_name="qa", input="b", id="b")
time.sleep(0.05)
before_c = datetime.now(timezone.utc)
time.sleep(0.05)
langfuse.create_dataset_item(dataset_name="qa", input="c", id="c")
print("THEN", sorted(i.id for i in langfuse.get_dataset("qa", version=before_c).items))
print("NOW", sorted(i.id for i in langfuse.get_dataset("qa").items))
print("BEFORE_C", before_c.isoformat())
langfuse.create_dataset_item(dataset_name="qa", input="b2", id="b")  # b changes: its old input is not kept
try:
    langfuse.get_dataset("qa", version=before_c)
    print("REFUSED no")
except Exception as exc:
    print("REFUSED", getattr(exc, "status_code", None), "changed after" in str(exc))
"""


def test_dataset_items_as_they_were_at_a_version(server, tmp_path):
    """SDK 5's ``get_dataset(name, version=datetime)``: the official SDK against lftrace serve, lftrace's client
    with keys (asking that server) and without (its own store) give the items as they were then, or say clearly
    that an item changed since, as the store keeps no item's history."""
    import datetime as dt

    from lftrace import Langfuse
    from lftrace.errors import BackendError, DatasetHistoryMissing

    ran = server.run_sdk_program(tmp_path / "versioned_app.py", _VERSIONED_APP, quiet=False)
    lines = dict(line.split(" ", 1) for line in ran.stdout.strip().splitlines())
    assert (lines["THEN"], lines["NOW"]) == ("['a', 'b']", "['a', 'b', 'c']")
    assert lines["REFUSED"] == "400 True"
    before_c = dt.datetime.fromisoformat(lines["BEFORE_C"])

    remote = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=server.url, store=tmp_path / "r.db")
    with pytest.raises(BackendError, match=r"answered 400 .*changed after"):  # b changed: "Langfuse" refuses
        remote.get_dataset("qa", version=before_c)
    assert sorted(i.id for i in remote.get_dataset("qa").items) == ["a", "b", "c"]
    remote.create_dataset(name="remote-docs")
    remote.create_dataset_item(dataset_name="remote-docs", input="x", id="x")
    remote_then = dt.datetime.now(dt.UTC)
    remote.create_dataset_item(dataset_name="remote-docs", input="y", id="y")
    assert [i.id for i in remote.get_dataset("remote-docs", version=remote_then).items] == ["x"]
    remote.shutdown()

    local = Langfuse(public_key="", store=tmp_path / "local.db")
    local.create_dataset(name="docs")
    local.create_dataset_item(dataset_name="docs", input="first", id="one")
    then = dt.datetime.now(dt.UTC)
    local.create_dataset_item(dataset_name="docs", input="second", id="two")
    dataset = local.get_dataset("docs", version=then, fetch_items_page_size=1)
    assert [i.id for i in dataset.items] == ["one"] and dataset.version == then
    assert sorted(i.id for i in local.get_dataset("docs").items) == ["one", "two"]
    local.create_dataset_item(dataset_name="docs", input="first, edited", id="one")
    with pytest.raises(DatasetHistoryMissing, match=r"'one' of 'docs' changed after .*leave out version="):
        local.get_dataset("docs", version=then)
    with pytest.raises(ValueError, match="timezone-aware"):
        local.get_dataset("docs", version=dt.datetime(2026, 1, 1))
    local.shutdown()
