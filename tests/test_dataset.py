"""Datasets, sharding, the concurrent case runner and the JUnit writer (without the CLI)."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import pytest

from lftrace.assertions import AssertionFailure, Expectations
from lftrace.dataset import Case, CaseResult, load_dataset, parse_shard, run_cases, select_shard, shard_index
from lftrace.errors import ExitStatus, InputError
from lftrace.junit import junit_tree, write_junit


def write_lines(path, *lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_dataset_reads_cases_and_expectations(tmp_path):
    path = write_lines(
        tmp_path / "cases.jsonl",
        '{"name": "paris", "input": "Paris", "expect": {"output": "sunny", "tools": ["get_weather"]}}',
        "",
        '{"input": {"messages": [["user", "hi"]]}}',
    )
    first, second = load_dataset(path)
    assert first == Case("paris", "Paris", Expectations(output_regex="sunny", tools=("get_weather",)), {}, 1)
    assert second.name == "line-3"
    assert second.input == {"messages": [["user", "hi"]]}
    assert second.expect.is_empty


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"name": "a", "input": "x"', "not valid JSON"),
        ('["a"]', "expected an object"),
        ('{"name": "a"}', 'missing "input"'),
        ('{"name": "a", "input": 1, "expct": {}}', "unknown key(s) expct"),
        ('{"name": "", "input": 1}', '"name" must be a non-empty string'),
        ('{"name": "a", "input": 1, "expect": {"max_tokens": "many"}}', '"max_tokens" must be a number'),
        ('{"name": "ok", "input": 1}', "duplicate case name 'ok' (first on line 1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, fragment):
    path = write_lines(tmp_path / "cases.jsonl", '{"name": "ok", "input": 1}', line)
    with pytest.raises(InputError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: "), message
    assert fragment in message
    assert info.value.exit_code == ExitStatus.USAGE


def test_missing_and_empty_dataset(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="has no cases"):
        load_dataset(write_lines(tmp_path / "empty.jsonl", ""))


def test_shards_partition_the_cases_stably():
    cases = [Case(f"case-{i}", i) for i in range(200)]
    slices = [select_shard(cases, k, 4) for k in range(1, 5)]
    names = [c.name for s in slices for c in s]
    assert sorted(names) == sorted(c.name for c in cases)  # every case exactly once
    assert len(set(names)) == 200
    assert all(30 <= len(s) <= 70 for s in slices)  # roughly even
    # stable across processes: SHA-256, not Python's salted hash()
    assert shard_index("case-0", 4) == shard_index("case-0", 4)
    assert [shard_index(f"case-{i}", 7) for i in range(5)] == [
        int.from_bytes(__import__("hashlib").sha256(f"case-{i}".encode()).digest()[:8], "big") % 7 for i in range(5)
    ]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0"])
def test_bad_shard(text):
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)


def _verdict(case: Case) -> CaseResult:
    time.sleep(0.002)
    if case.input % 3 == 0:
        return CaseResult(case, failures=[AssertionFailure("output", "/x/", "y", "no match")])
    if case.input == 7:
        raise RuntimeError("runner bug")
    return CaseResult(case, latency=0.01)


def test_run_cases_keeps_order_and_same_verdicts_at_any_concurrency():
    cases = [Case(f"c{i}", i) for i in range(1, 21)]
    serial = run_cases(cases, _verdict, concurrency=1)
    parallel = run_cases(cases, _verdict, concurrency=4)
    assert [r.case.name for r in parallel] == [c.name for c in cases]
    assert [r.status for r in serial] == [r.status for r in parallel]
    assert [r.status for r in serial[:7]] == ["pass", "pass", "fail", "pass", "pass", "fail", "error"]
    assert "RuntimeError: runner bug" in (serial[6].error or "")


def test_run_cases_really_runs_concurrently():
    active, peak, lock = [0], [0], threading.Lock()

    def slow(case: Case) -> CaseResult:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return CaseResult(case)

    run_cases([Case(str(i), i) for i in range(8)], slow, concurrency=4)
    assert peak[0] == 4


def test_fail_fast_skips_cases_not_started():
    cases = [Case(f"c{i}", i) for i in range(1, 10)]
    results = run_cases(cases, _verdict, concurrency=1, fail_fast=True)
    assert [r.status for r in results] == ["pass", "pass", "fail"] + ["skipped"] * 6


def _results() -> list[CaseResult]:
    failing = CaseResult(
        Case("tokyo", "Tokyo"),
        failures=[
            AssertionFailure("output", "/sunny/", "rain in Tokyo", "the output does not match the regex"),
            AssertionFailure("max tokens", "<= 10", "38", "too many tokens used"),
        ],
        trace_id="b" * 32,
        latency=0.25,
        output="rain in Tokyo\x00",
    )
    return [
        CaseResult(Case("paris", "Paris"), trace_id="a" * 32, latency=0.125, output="sunny"),
        failing,
        CaseResult(Case("boom", "x"), error="RuntimeError: model down", trace_id="c" * 32, latency=0.01),
        CaseResult(Case("later", "y"), skipped=True),
    ]


def test_junit_xml_shape(tmp_path):
    path = tmp_path / "reports" / "junit.xml"
    write_junit(path, _results(), suite="lftrace test cases.jsonl", duration=1.5)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == ("4", "1", "1", "1.500")
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "lftrace test cases.jsonl"
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["paris", "tokyo", "boom", "later"]
    assert cases["paris"].get("time") == "0.125"
    assert cases["paris"].find("failure") is None
    failure = cases["tokyo"].find("failure")
    assert failure is not None
    assert failure.get("message") == f"2 assertion(s) failed: output, max tokens (trace {'b' * 32})"
    assert "max tokens: too many tokens used; expected <= 10, got 38" in (failure.text or "")
    assert f"trace: {'b' * 32}" in (failure.text or "")
    prop = cases["tokyo"].find("properties/property")
    assert prop is not None and prop.get("value") == "b" * 32
    assert "\ufffd" in (cases["tokyo"].findtext("system-out") or "")  # NUL replaced: the XML stays valid
    error = cases["boom"].find("error")
    assert error is not None and "model down" in (error.get("message") or "")
    assert cases["later"].find("skipped") is not None


def test_junit_tree_counts_without_failures():
    tree = junit_tree(_results()[:1], suite="s", duration=0.1)
    root = tree.getroot()
    assert (root.get("failures"), root.get("errors")) == ("0", "0")
