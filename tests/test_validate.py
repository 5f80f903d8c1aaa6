"""Hostile files and input: refused with exit-2 errors naming the file and the first problem; readers survive."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest

from lftrace.dataset import load_dataset
from lftrace.errors import InputError
from lftrace.render import build_tree
from lftrace.runner import parse_input, read_input
from lftrace.stats import compute_stats
from lftrace.store import TraceStore
from lftrace.validate import MAX_DEPTH, read_traces_file, trace_problem
from support.traces import sample_trace


def good() -> dict:
    return sample_trace().to_dict()


def _with(change) -> dict:
    data = good()
    change(data)
    return data


def _cycle(d: dict) -> None:
    a, b, _c = d["observations"]
    a["parentObservationId"], b["parentObservationId"] = b["id"], a["id"]


HOSTILE = {
    "a list of numbers": [1, 2, 3],
    "a string": "trace",
    "no id": _with(lambda d: d.pop("id")),
    "empty id": _with(lambda d: d.update(id="")),
    "id with escape": _with(lambda d: d.update(id="\x1b[2Jabc")),
    "huge id": _with(lambda d: d.update(id="a" * 10_000)),
    "numeric id": _with(lambda d: d.update(id=12345)),
    "observation cycle": _with(_cycle),
    "own parent": _with(lambda d: d["observations"][1].update(parentObservationId=d["observations"][1]["id"])),
    "duplicate observation id": _with(lambda d: d["observations"][2].update(id=d["observations"][1]["id"])),
    "wrong traceId": _with(lambda d: d["observations"][0].update(traceId="f" * 32)),
    "string usage": _with(lambda d: d["observations"][1].update(usageDetails={"input": "lots"})),
    "negative usage": _with(lambda d: d["observations"][1].update(usageDetails={"input": -5})),
    "huge usage": _with(lambda d: d["observations"][1].update(usageDetails={"input": 10**30})),
    "nan cost": _with(lambda d: d["observations"][1].update(costDetails={"total": float("nan")})),
    "bad type": _with(lambda d: d["observations"][0].update(type="ROCKET")),
    "bad level": _with(lambda d: d["observations"][0].update(level="LOUD")),
    "year 0": _with(lambda d: d["observations"][0].update(startTime="0001-01-01T00:00:00Z")),
    "year 99999": _with(lambda d: d.update(timestamp="+99999-01-01")),
    "not a date": _with(lambda d: d["observations"][0].update(endTime="yesterday")),
    "numeric date": _with(lambda d: d["observations"][0].update(startTime=1e30)),
    "tags not strings": _with(lambda d: d.update(tags=[1, {"a": 2}])),
    "metadata a list": _with(lambda d: d.update(metadata=[1])),
    "observations an object": _with(lambda d: d.update(observations={"a": 1})),
    "observation a string": _with(lambda d: d.update(observations=["x"])),
    "name an object": _with(lambda d: d.update(name={"x": 1})),
    "negative latency": _with(lambda d: d.update(latency=-1)),
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_trace_files_are_refused_naming_file_and_problem(tmp_path: Path, label: str) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(HOSTILE[label], allow_nan=True))
    with pytest.raises(InputError) as err:
        read_traces_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert len(message) < 400
    assert err.value.exit_code == 2


def test_a_good_export_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    traces = [good(), good()]
    path.write_text("".join(json.dumps(t) + "\n" for t in traces))
    assert [t.id for t in read_traces_file(path)] == [t["id"] for t in traces]
    assert all(trace_problem(t) is None for t in traces)


def test_cycle_problem_names_the_observations() -> None:
    problem = trace_problem(HOSTILE["observation cycle"])
    assert problem and "cycle" in problem and "->" in problem


def test_first_bad_line_of_jsonl_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(good()) + "\n" + json.dumps(HOSTILE["empty id"]) + "\n")
    with pytest.raises(InputError, match=r"t\.jsonl:2: trace id is empty"):
        read_traces_file(path)


def test_non_utf8_files_are_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(good()).encode() + b'\n{"name": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin1\.jsonl: not UTF-8 text \(byte 0xe9 on line 2\)"):
        read_traces_file(path)
    dataset = tmp_path / "cases.jsonl"
    dataset.write_bytes(b'{"name": "caf\xe9", "input": "x"}\n')
    with pytest.raises(InputError, match="not UTF-8"):
        load_dataset(dataset)
    data = tmp_path / "input.txt"
    data.write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="not UTF-8"):
        read_input(None, str(data))


def test_json_nested_too_deep_is_exit_2_everywhere(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InputError, match="nested too deep"):
        parse_input(deep)
    with pytest.raises(InputError, match="nested too deep"):
        parse_input("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))
    dataset = tmp_path / "cases.jsonl"
    dataset.write_text('{"name": "deep", "input": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(InputError, match=r"cases\.jsonl:1: JSON nested too deep"):
        load_dataset(dataset)
    traces = tmp_path / "deep.json"
    traces.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(InputError, match="nested too deep"):
        read_traces_file(traces)
    assert parse_input("[" * 50 + "]" * 50) is not None  # ordinary nesting is fine


def _finishes(fn, seconds: float = 5.0):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "looped"
    return result[0]


def test_stored_cycles_string_usage_and_blank_ids_never_hang_or_crash_readers(tmp_path: Path) -> None:
    """Data written by another tool (or an older lftrace) is not validated: readers must survive it."""
    store = TraceStore(tmp_path / "s.db")
    cyclic = sample_trace()
    a, b, _c = cyclic.observations
    a.parent_id, b.parent_id = b.id, a.id
    for obs in cyclic.observations:
        obs.metadata = {"langgraph_node": obs.name}
    strings = sample_trace()
    strings.observations[1].usage_details = {"input": "lots", "total": "many"}  # type: ignore[dict-item]
    strings.observations[1].cost_details = {"total": "free"}  # type: ignore[dict-item]
    blank = copy.deepcopy(sample_trace())
    blank.id = ""
    for obs in blank.observations:
        obs.trace_id = ""
    blank.timestamp += 10**12  # the newest
    store.write_traces([cyclic, strings, blank])
    traces = [store.get_trace(cyclic.id), store.get_trace(strings.id)]
    report = _finishes(lambda: compute_stats(traces))
    assert report.traces == 2
    for trace in traces:
        _finishes(lambda trace=trace: build_tree(trace))
    last = store.last_trace_id()
    assert last == ""
    assert store.get_trace(last).id == ""
    store.close()
