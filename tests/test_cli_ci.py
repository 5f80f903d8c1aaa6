"""The CI commands end to end: real LangGraph runs of a fake-model agent, a real SQLite store, the real CLI.

The agent lives in a file written to tmp_path; its reply depends on the REPLY_STYLE environment variable, so
two runs can differ on purpose (diff, baselines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lftrace.cli import app
from lftrace.cli.ci import CASE_METADATA_KEY, TEST_TAG_PREFIX
from lftrace.errors import ExitStatus
from lftrace.model import Trace
from lftrace.store import TraceStore

AGENT = '''
import os

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == "Atlantis":
        raise ValueError("no weather under the sea")
    return f"sunny in {city}"


class FakeModel(BaseChatModel):
    """Asks for the weather once, then answers; 'hello' is answered directly; 'crash' raises."""

    @property
    def _llm_type(self):
        return "fake"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        human = [m for m in messages if isinstance(m, HumanMessage)][-1].content
        style = os.environ.get("REPLY_STYLE", "plain")
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        if human == "crash":
            raise RuntimeError("model is down")
        if isinstance(messages[-1], ToolMessage):
            text = f"The weather: {messages[-1].content}"
            if style == "verbose":  # only the final answer changes
                text += ", with a light breeze and 21 degrees"
                usage = {"input_tokens": 10, "output_tokens": 25, "total_tokens": 35}
            message = AIMessage(content=text, usage_metadata=usage)
        elif human.lower() == "hello":
            message = AIMessage(content="Hello! Ask me about the weather.", usage_metadata=usage)
        else:
            call = {"name": "get_weather", "args": {"city": human}, "id": "call_1", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call], usage_metadata=usage)
        message.response_metadata = {"model_name": "gpt-4o-mini"}
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": "gpt-4o-mini"})


model = FakeModel()


def agent(state: MessagesState):
    return {"messages": [model.invoke(state["messages"])]}


def route(state: MessagesState):
    return "tools" if state["messages"][-1].tool_calls else END


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([get_weather], handle_tool_errors=True))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route, ["tools", END])
builder.add_edge("tools", "agent")
graph = builder.compile()
'''

CASES = [
    {"name": "paris", "input": "Paris", "expect": {"output": "sunny in Paris", "tools": ["get_weather"]}},
    {"name": "greeting", "input": "hello", "expect": {"output": "(?i)hello", "max_llm_calls": 1}},
    {"name": "tokyo-budget", "input": "Tokyo", "expect": {"max_tokens": 20}},  # fails: 2 calls x 15 tokens
    {"name": "atlantis", "input": "Atlantis", "expect": {"no_errors": True}},  # fails: the tool raised
    {"name": "nodes", "input": "Oslo", "expect": {"nodes": ["agent", "tools"], "max_llm_calls": 2}},
    {"name": "crash", "input": "crash", "expect": {}},  # errors: the model raises
]
PASSING = {"paris", "greeting", "nodes"}


@pytest.fixture
def agent_target(tmp_path: Path) -> str:
    (tmp_path / "weather_agent.py").write_text(AGENT, encoding="utf-8")
    return str(tmp_path / "weather_agent.py") + ":graph"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_cases(tmp_path / "cases.jsonl", CASES)


def write_cases(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def make_app() -> typer.Typer:
    return app


def invoke(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(make_app(), [str(a) for a in args], env=env)
    from lftrace.client import reset_clients

    reset_clients()  # like a new process: the next command opens its own client
    return result


def exit_code(result) -> int:
    """The process exit code: an LftraceError escaping the app is mapped by lftrace's main() to its exit_code."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return int(getattr(result.exception, "exit_code", 1))
    return result.exit_code


def error_text(result) -> str:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return str(result.exception)
    return result.stderr


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = invoke(*args, "--json", env=env)
    assert result.stdout.strip(), (result.stdout, result.stderr, result.exception)
    return result.exit_code, json.loads(result.stdout)


def verdicts(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["cases"]}


def store(path: Path | None = None) -> TraceStore:
    return TraceStore(path or Path(os.environ["LFTRACE_STORE"]), create=False)


def test_dataset_with_passing_and_failing_cases_writes_junit(agent_target, dataset, tmp_path):
    report_path = tmp_path / "out" / "report.xml"
    result = invoke("test", agent_target, dataset, "--junit", report_path, "--concurrency", "2")
    assert result.exit_code == ExitStatus.ASSERTION_FAILED, (result.stdout, result.stderr, result.exception)
    assert "3/6 passed" in result.stdout
    assert "max tokens: too many tokens used" in result.stdout
    assert "model is down" in result.stdout

    root = ET.parse(report_path).getroot()
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == ("testsuites", "6", "2", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases) == [c["name"] for c in CASES]
    for name in PASSING:
        assert cases[name].find("failure") is None and cases[name].find("error") is None
        assert float(cases[name].get("time") or -1) >= 0
    budget = cases["tokyo-budget"].find("failure")
    assert budget is not None and "max tokens" in (budget.get("message") or "")
    assert "expected <= 20, got 30" in (budget.text or "")
    atlantis = cases["atlantis"].find("failure")
    assert atlantis is not None and "get_weather: no weather under the sea" in (atlantis.text or "")
    crash = cases["crash"].find("error")
    assert crash is not None and "RuntimeError: model is down" in (crash.get("message") or "")

    # every case's trace is stored, tagged with the test run and named by case
    trace_id = cases["tokyo-budget"].find("properties/property").get("value")  # type: ignore[union-attr]
    assert trace_id in (budget.text or "")
    trace = store().get_trace(trace_id)
    assert (trace.metadata or {})[CASE_METADATA_KEY] == "tokyo-budget"
    [tag] = [t for t in trace.tags if t.startswith(TEST_TAG_PREFIX)]
    assert len(store().list_traces(limit=100, tag=tag)) == 6  # the crashed case's trace is kept too


def test_concurrency_4_gives_the_same_verdicts_as_1(agent_target, dataset):
    code_1, serial = run_json("test", agent_target, dataset, "--concurrency", "1")
    code_4, parallel = run_json("test", agent_target, dataset, "--concurrency", "4")
    assert code_1 == code_4 == ExitStatus.ASSERTION_FAILED
    assert verdicts(serial) == verdicts(parallel)
    assert verdicts(serial) == {
        "paris": "pass",
        "greeting": "pass",
        "tokyo-budget": "fail",
        "atlantis": "fail",
        "nodes": "pass",
        "crash": "error",
    }
    by_name = {c["name"]: c for c in parallel["cases"]}
    assert by_name["paris"]["tokens"] == 30
    assert by_name["paris"]["output"] == "The weather: sunny in Paris"
    assert len({c["traceId"] for c in parallel["cases"]}) == 6  # one trace per case, none shared


def test_all_passing_exits_0_and_cli_options_apply_to_every_case(agent_target, tmp_path):
    cases = write_cases(tmp_path / "ok.jsonl", [c for c in CASES if c["name"] in PASSING])
    code, report = run_json("test", agent_target, cases)
    assert code == 0 and report["passed"] == 3 and report["failed"] == 0
    code, report = run_json("test", agent_target, cases, "--max-tokens", "20")
    assert code == ExitStatus.ASSERTION_FAILED
    assert verdicts(report) == {"paris": "fail", "greeting": "pass", "nodes": "fail"}


def test_fail_fast_stops_starting_cases(agent_target, dataset):
    code, report = run_json("test", agent_target, dataset, "--concurrency", "1", "--fail-fast")
    assert code == ExitStatus.ASSERTION_FAILED
    assert list(verdicts(report).values()) == ["pass", "pass", "fail", "skipped", "skipped", "skipped"]


def test_malformed_dataset_line_fails_before_anything_runs(agent_target, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"name": "a", "input": "Paris"}\n{"name": "b", "input": \n', encoding="utf-8")
    result = invoke("test", agent_target, path)
    assert exit_code(result) == ExitStatus.USAGE
    message = error_text(result)
    assert f"{path}:2: not valid JSON" in message
    assert not Path(os.environ["LFTRACE_STORE"]).exists() or store().list_traces() == []


def test_shards_partition_the_cases(agent_target, tmp_path):
    cases = write_cases(tmp_path / "many.jsonl", [{"name": f"case-{i}", "input": "hello"} for i in range(12)])
    seen: list[str] = []
    for k in (1, 2, 3):
        code, report = run_json("test", agent_target, cases, "--shard", f"{k}/3")
        assert code == 0
        seen += verdicts(report)
    assert sorted(seen) == sorted(f"case-{i}" for i in range(12))  # every case once, no overlap


def test_export_then_import_into_another_store(agent_target, dataset, tmp_path):
    _, report = run_json("test", agent_target, dataset)
    tag = report["tag"]
    one = report["cases"][0]["traceId"]
    assert invoke("export", one, "-o", tmp_path / "one.json").exit_code == 0
    assert invoke("export", "--tag", tag, "-o", tmp_path / "run.jsonl").exit_code == 0
    exported = json.loads((tmp_path / "one.json").read_text())
    assert exported["id"] == one and exported["observations"]
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == 6
    stdout = invoke("export", "last").stdout
    assert json.loads(stdout)["id"] == store().last_trace_id()

    other = tmp_path / "other.db"
    env = {"LFTRACE_STORE": str(other)}
    result = invoke("import", tmp_path / "one.json", tmp_path / "run.jsonl", env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "imported 7 trace(s) from 2 file(s)" in result.stderr
    copy = invoke("export", one, env=env).stdout
    # lossless up to the microseconds of the ISO timestamps (Langfuse's format)
    assert json.loads(copy) == Trace.from_dict(exported).to_dict()
    assert json.loads(copy)["observations"] == [
        {**o, "latency": json.loads(copy)["observations"][i]["latency"]} for i, o in enumerate(exported["observations"])
    ]
    assert len(store(other).list_traces(limit=100, tag=tag)) == 6


def test_import_reads_a_json_list_and_rejects_a_bad_file(tmp_path, agent_target, dataset):
    _, report = run_json("test", agent_target, dataset)
    ids = [c["traceId"] for c in report["cases"][:2]]
    traces = [json.loads(invoke("export", i).stdout) for i in ids]
    (tmp_path / "list.json").write_text(json.dumps(traces))
    env = {"LFTRACE_STORE": str(tmp_path / "list.db")}
    assert invoke("import", tmp_path / "list.json", env=env).exit_code == 0
    assert {s.id for s in store(tmp_path / "list.db").list_traces()} == set(ids)
    (tmp_path / "bad.jsonl").write_text(json.dumps(traces[0]) + "\n{oops\n")
    result = invoke("import", tmp_path / "bad.jsonl", env={"LFTRACE_STORE": str(tmp_path / "bad.db")})
    assert exit_code(result) == ExitStatus.USAGE
    assert f"{tmp_path / 'bad.jsonl'}:2: not valid JSON" in error_text(result)
    assert not (tmp_path / "bad.db").exists()  # a bad file imports nothing


def test_diff_of_two_runs_whose_reply_changed(agent_target, tmp_path):
    one_case = write_cases(tmp_path / "one.jsonl", [{"name": "paris", "input": "Paris"}])
    _, first = run_json("test", agent_target, one_case, env={"REPLY_STYLE": "plain"})
    _, second = run_json("test", agent_target, one_case, env={"REPLY_STYLE": "verbose"})
    a, b = first["cases"][0]["traceId"], second["cases"][0]["traceId"]

    result = invoke("diff", a, b)
    assert result.exit_code == 0, (result.stdout, result.exception)
    text = result.stdout
    assert "+20 tokens" in text  # total: the final answer used 25 output tokens instead of 5
    assert "~ LangGraph/agent#2/FakeModel (GENERATION) changed" in text
    assert '-  "content": "The weather: sunny in Paris",' in text
    assert '+  "content": "The weather: sunny in Paris, with a light breeze and 21 degrees",' in text

    # only where the change starts (the model's answer) and the final reply; not again in every ancestor
    assert "--- A: LangGraph\n" not in text and "--- A: LangGraph/agent#2\n" not in text
    assert "-The weather: sunny in Paris\n+The weather: sunny in Paris, with a light breeze and 21 degrees" in text
    assert invoke("diff", a, b, "--fail-on-change").exit_code == ExitStatus.ASSERTION_FAILED
    assert invoke("diff", "last~1", "last", "--fail-on-change").exit_code == ExitStatus.ASSERTION_FAILED
    data = json.loads(invoke("diff", a[:10], b, "--json").stdout)
    assert data["outputsChanged"] and not data["structureChanged"]
    assert data["tokensDelta"] == 20

    _, third = run_json("test", agent_target, one_case, env={"REPLY_STYLE": "verbose"})
    c = third["cases"][0]["traceId"]
    same = invoke("diff", b, c, "--fail-on-change")
    assert same.exit_code == 0
    assert "no change in structure or outputs" in same.stdout
    # files work as well as ids
    invoke("export", b, "-o", tmp_path / "b.json")
    assert invoke("diff", tmp_path / "b.json", c, "--fail-on-change").exit_code == 0


def test_diff_unknown_trace_is_not_found(agent_target, tmp_path):
    run_json("test", agent_target, write_cases(tmp_path / "one.jsonl", [{"name": "x", "input": "hello"}]))
    result = invoke("diff", "last", "ffffffffffff")
    assert exit_code(result) == ExitStatus.NOT_FOUND
    assert "ffffffffffff" in error_text(result)


def test_baseline_that_passes_and_one_that_fails(agent_target, tmp_path):
    cases = write_cases(
        tmp_path / "cases.jsonl", [{"name": "paris", "input": "Paris"}, {"name": "hi", "input": "hello"}]
    )
    code, base = run_json("test", agent_target, cases, env={"REPLY_STYLE": "plain"})
    assert code == 0
    assert invoke("export", "--tag", base["tag"], "-o", tmp_path / "baseline.jsonl").exit_code == 0

    code, same = run_json("test", agent_target, cases, "--baseline", tmp_path / "baseline.jsonl")
    assert code == 0, json.dumps(same)
    assert {c["baselineTraceId"] for c in same["cases"]} == {c["traceId"] for c in base["cases"]}

    code, drift = run_json("test", agent_target, cases, "--baseline", base["runId"], env={"REPLY_STYLE": "verbose"})
    assert code == ExitStatus.ASSERTION_FAILED
    by_name = {c["name"]: c for c in drift["cases"]}
    failure, cost = by_name["paris"]["failures"]  # 15 + 35 tokens instead of 15 + 15, priced as gpt-4o-mini
    assert cost["name"] == "baseline cost" and cost["actual"].startswith("$0.0000")
    assert (failure["name"], failure["expected"]) == ("baseline tokens", "30 ±25%")
    assert failure["actual"].startswith("50 (+20 tokens)")
    assert by_name["hi"]["failures"] == []  # a direct answer: unchanged

    code, loose = run_json(
        "test",
        agent_target,
        cases,
        "--baseline",
        tmp_path / "baseline.jsonl",
        "--tolerance",
        "2",
        env={"REPLY_STYLE": "verbose"},
    )
    assert code == 0, loose


def test_baseline_reports_a_missing_tool(agent_target, tmp_path):
    base_cases = write_cases(tmp_path / "base.jsonl", [{"name": "q", "input": "Paris"}])
    _, base = run_json("test", agent_target, base_cases)
    changed = write_cases(tmp_path / "changed.jsonl", [{"name": "q", "input": "hello"}])
    code, report = run_json("test", agent_target, changed, "--baseline", base["runId"], "--tolerance", "5")
    assert code == ExitStatus.ASSERTION_FAILED
    names = {f["name"]: f for f in report["cases"][0]["failures"]}
    assert "missing: get_weather" in names["baseline tools"]["message"]
    assert "missing: tools" in names["baseline nodes"]["message"]


def test_stats_over_stored_traces(agent_target, dataset):
    run_json("test", agent_target, dataset)
    data = json.loads(invoke("stats", "--json").stdout)
    assert data["traces"] == 6
    nodes = {r["name"]: r for r in data["nodes"]}
    assert nodes["agent"]["count"] == 10  # 2 calls in 4 tool cases, 1 in greeting, 1 (raised) in crash
    assert nodes["agent"]["errors"] == 1
    assert nodes["tools"]["count"] == 4
    tools = {r["name"]: r for r in data["tools"]}
    assert tools["get_weather"]["errors"] == 1 and tools["get_weather"]["errorRate"] == 0.25
    models = {r["name"]: r for r in data["models"]}
    assert models["gpt-4o-mini"]["tokens"] == 9 * 15
    assert models["gpt-4o-mini"]["p95Latency"] >= models["gpt-4o-mini"]["p50Latency"] >= 0
    table = invoke("stats", "--since", "1h").stdout
    assert "agent" in table and "get_weather" in table and "gpt-4o-mini" in table
    assert json.loads(invoke("stats", "--name", "nope", "--json").stdout)["traces"] == 0


def test_lftrace_test_in_a_real_subprocess(agent_target, dataset, tmp_path):
    exe = Path(sys.executable).parent / "lftrace"
    junit = tmp_path / "report.xml"
    proc = subprocess.run(
        [str(exe), "test", agent_target, str(dataset), "--junit", str(junit), "--concurrency", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == ExitStatus.ASSERTION_FAILED, proc.stderr
    assert "3/6 passed" in proc.stdout
    assert "✓ paris" in proc.stderr  # not a terminal: one line per case instead of a progress bar
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "2" and root.get("errors") == "1"
    ok = subprocess.run(
        [str(exe), "test", agent_target, str(write_cases(tmp_path / "ok.jsonl", CASES[:2]))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr


def test_run_assertions_pass_and_fail(agent_target):
    passing = invoke(
        "run", agent_target, "--input", "Paris", "--expect-output", "sunny in Paris", "--expect-node", "agent",
        "--expect-node", "tools", "--expect-tool", "get_weather", "--max-latency", "30", "--max-tokens", "30",
        "--max-llm-calls", "2", "--no-errors",
    )  # fmt: skip
    assert passing.exit_code == 0, (passing.stdout, passing.stderr)

    failing = invoke(
        "run", agent_target, "--input", "Atlantis", "--expect-output", "sunny", "--expect-tool", "search",
        "--max-tokens", "29", "--max-llm-calls", "1", "--no-errors", "--max-cost", "0.0000001",
    )  # fmt: skip
    assert failing.exit_code == ExitStatus.ASSERTION_FAILED, (failing.stdout, failing.stderr)
    err = failing.stderr
    assert "6 assertion(s) failed" in err
    for expected in (
        "✗ output: the output does not match the regex",
        "expected: /sunny/",
        "actual:   The weather: Error: ValueError('no weather under the sea')",
        "✗ tool search: tool 'search' was not called",
        "actual:   called: get_weather",
        "✗ max tokens: too many tokens used",
        "expected: <= 29",
        "✗ max llm calls",
        "✗ no errors: error observations: get_weather: ",
        "✗ max cost: the run cost too much",
    ):
        assert expected in err, (expected, err)


def test_run_target_error_wins_over_assertions(agent_target):
    result = invoke("run", agent_target, "--input", "crash", "--max-tokens", "1")
    assert exit_code(result) == ExitStatus.TARGET_FAILED
    assert "assertion" not in result.stderr


def test_run_baseline_passes_then_fails(agent_target, tmp_path):
    assert invoke("run", agent_target, "--input", "Paris").exit_code == 0
    assert invoke("export", "last", "-o", tmp_path / "base.json").exit_code == 0
    same = invoke("run", agent_target, "--input", "Paris", "--baseline", tmp_path / "base.json")
    assert same.exit_code == 0, same.stderr
    assert invoke("run", agent_target, "--input", "Oslo", "--baseline", "last").exit_code == 0

    drift = invoke("run", agent_target, "--input", "hello", "--baseline", tmp_path / "base.json", "--tolerance", "0.1")
    assert drift.exit_code == ExitStatus.ASSERTION_FAILED
    assert "tools differ from baseline" in drift.stderr and "missing: get_weather" in drift.stderr
    assert "✗ baseline tokens: token use drifted" in drift.stderr
    assert "expected: 30 ±10%" in drift.stderr


def test_unloadable_target_fails_before_any_case(dataset, tmp_path):
    result = invoke("test", str(tmp_path / "missing.py") + ":graph", dataset)
    assert exit_code(result) == ExitStatus.LOAD_FAILED
    assert "missing.py" in error_text(result)
    assert not Path(os.environ["LFTRACE_STORE"]).exists() or store().list_traces() == []


def test_test_records_every_case_even_when_sampling_and_tracing_are_off(agent_target, tmp_path, monkeypatch):
    """`lftrace test` hands sampling-off settings to the runner; `run` keeps honouring LANGFUSE_SAMPLE_RATE."""
    monkeypatch.setenv("LANGFUSE_SAMPLE_RATE", "0")
    monkeypatch.setenv("LANGFUSE_TRACING_ENABLED", "false")
    cases = write_cases(tmp_path / "two.jsonl", [{"name": "a", "input": "Paris"}, {"name": "b", "input": "hello"}])
    code, report = run_json("test", agent_target, cases)
    assert code == 0, report
    ids = [c["traceId"] for c in report["cases"]]
    assert all(ids) and len(set(ids)) == 2
    with store() as s:
        assert {s.get_trace(i).id for i in ids} == set(ids)
    assert os.environ["LANGFUSE_SAMPLE_RATE"] == "0"  # nothing global was changed for it
    ran = invoke("run", agent_target, "-i", "Paris")
    assert ran.exit_code == 0 and "no trace" in ran.stderr
    with store() as s:
        assert s.count_traces() == 2


def test_store_option_reaches_the_run_without_touching_the_environment(agent_target, tmp_path):
    other = tmp_path / "elsewhere" / "other.db"
    before = os.environ["LFTRACE_STORE"]
    code, report = run_json("--store", other, "test", agent_target, write_cases(tmp_path / "one.jsonl", CASES[:1]))
    assert code == 0, report
    assert os.environ["LFTRACE_STORE"] == before and not Path(before).exists()
    with store(other) as s:
        assert s.get_trace(report["cases"][0]["traceId"]).metadata[CASE_METADATA_KEY] == "paris"
