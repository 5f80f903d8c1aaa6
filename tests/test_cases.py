"""`lftrace test` with multi-turn cases (interrupt and resume on one thread), case config and threads, JUnit per
case naming the failing turn, async-only graphs, and `--async` (cases on one event loop)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lftrace.cli import app
from lftrace.dataset import parse_case
from lftrace.errors import InputError

REPO = Path(__file__).resolve().parent.parent
GRAPHS = Path(__file__).resolve().parent / "graphs"
REVIEW = f"{REPO / 'sample_graphs' / 'human_review.py'}:graph"
runner = CliRunner()

REVIEW_CASES = [
    {
        "name": "publish after one revision",
        "turns": [
            {"input": "release notes", "expect": {"interrupt": "Publish this draft"}},
            {"resume": "make it shorter", "expect": {"interrupt": True}},
            {"resume": "yes", "expect": {"complete": True}},
        ],
    },
    {
        "name": "a revision is not the end",
        "turns": [{"input": "notes"}, {"resume": "no, redo it", "expect": {"complete": True}}],
    },
    {"name": "one turn that pauses", "input": {"topic": "x"}, "expect": {"interrupt": True}},
]


def write_cases(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def run_test(*args: str):
    result = runner.invoke(app, ["test", *map(str, args), "--json"])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else result.stderr)


@pytest.mark.parametrize("mode", ["--sync", "--async"])
def test_multi_turn_cases_on_one_thread_with_junit(tmp_path, mode):
    cases = write_cases(tmp_path / "review.jsonl", REVIEW_CASES)
    junit = tmp_path / "junit.xml"
    code, report = run_test(REVIEW, cases, "--junit", junit, mode, "--concurrency", "2")
    assert code == 5, report
    by_name = {c["name"]: c for c in report["cases"]}

    good = by_name["publish after one revision"]
    assert good["status"] == "pass" and good["turns"] == 3 and len(good["traceIds"]) == 3, good.get("error")
    bad = by_name["a revision is not the end"]
    assert (bad["status"], bad["failedTurn"], bad["turns"]) == ("fail", 2, 2), bad.get("error")
    assert bad["failures"][0]["name"] == "turn 2: complete"
    assert by_name["one turn that pauses"]["status"] == "pass"

    # each turn is its own trace, all under the case's thread as their session
    traces = json.loads(runner.invoke(app, ["list", "--json", "--limit", "50"]).stdout)
    sessions = {t["id"]: t["sessionId"] for t in traces}
    assert len({sessions[t] for t in good["traceIds"]}) == 1
    assert [t["status"] for t in traces if t["id"] in good["traceIds"]] == ["ok", "interrupted", "interrupted"]

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    failing = next(c for c in suite.iter("testcase") if c.get("name") == "a revision is not the end")
    failure = failing.find("failure")
    assert failure is not None and failure.get("message", "").startswith("turn 2 failed: 1 assertion(s) failed")
    props = {p.get("name"): p.get("value") for p in failing.iter("property")}
    assert props["failed_turn"] == "2" and len(props["trace_ids"].split()) == 2


def test_case_config_and_thread_id(tmp_path):
    cases = write_cases(
        tmp_path / "factory.jsonl",
        [
            {
                "name": "bold",
                "input": {"question": "hi"},
                "config": {"configurable": {"style": "bold"}},
                "thread_id": "case-thread",
                "expect": {"output": r"^\[bold\] hi$"},
            },
            {"name": "plain", "input": {"question": "hi"}, "expect": {"output": r"^\[plain\] hi$"}},
        ],
    )
    code, report = run_test(f"{GRAPHS / 'factory.py'}:make_graph", cases, "--metadata", "suite=nightly")
    assert code == 0, report
    traces = {t["id"]: t for t in json.loads(runner.invoke(app, ["list", "--json"]).stdout)}
    bold = next(c for c in report["cases"] if c["name"] == "bold")
    assert traces[bold["traceId"]]["sessionId"] == "case-thread"


def test_async_only_graph_in_test_without_a_flag_and_with_async(tmp_path):
    cases = write_cases(
        tmp_path / "async.jsonl",
        [
            {"name": f"q{i}", "input": {"question": f"q{i}"}, "expect": {"output": f"async answer to q{i}"}}
            for i in range(4)
        ],
    )
    for extra in ([], ["--async", "--concurrency", "3"]):
        code, report = run_test(f"{GRAPHS / 'async_only.py'}:graph", cases, *extra)
        assert code == 0, report
        assert report["passed"] == 4


def test_typeddict_case_input_is_passed_as_it_is(tmp_path):
    cases = write_cases(tmp_path / "jokes.jsonl", [{"name": "animals", "input": {"topic": "animals"}}])
    code, report = run_test(f"{GRAPHS / 'mapreduce.py'}:graph", cases)
    assert code == 0, report


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"name": "x"}', 'missing "input"'),
        ('{"name": "x", "input": 1, "turns": [{"input": 1}]}', "not both"),
        ('{"name": "x", "turns": []}', '"turns" must be a non-empty list'),
        ('{"name": "x", "turns": [{"input": 1, "resume": 2}]}', 'turn 1: give either "input" or "resume"'),
        ('{"name": "x", "turns": [{"say": 1}]}', "turn 1: unknown key(s) say"),
        ('{"name": "x", "input": 1, "config": []}', '"config" must be an object'),
        ('{"name": "x", "input": 1, "expect": {"interrupt": 3}}', '"interrupt" must be true, false or a regular'),
    ],
)
def test_bad_cases_name_the_line_and_the_fix(line, message):
    with pytest.raises(InputError) as info:
        parse_case(line, "cases.jsonl:7")
    assert str(info.value).startswith("cases.jsonl:7: ") and message in str(info.value)
