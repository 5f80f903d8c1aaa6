"""`lftrace run` on the graphs of tests/graphs: run options, interrupts resumed by a second process and through a
pseudo-terminal, async-only graphs, config factories, handled errors, recursion limits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lftrace.cli import app
from support.terminal import run_in_terminal

REPO = Path(__file__).resolve().parent.parent
GRAPHS = Path(__file__).resolve().parent / "graphs"
REVIEW = f"{REPO / 'sample_graphs' / 'human_review.py'}:graph"
LFTRACE = str(Path(sys.executable).parent / "lftrace")
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def target(name: str, attr: str = "graph") -> str:
    return f"{GRAPHS / name}.py:{attr}"


def lftrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60)


def test_interrupt_then_resume_in_a_second_process_on_the_same_thread():
    # the graph compiles with an InMemorySaver: lftrace keeps its checkpoints in a file beside the store
    first = lftrace("run", REVIEW, "--input", "release notes", "--json")
    assert first.returncode == 0, first.stderr
    paused = json.loads(first.stdout)
    thread = paused["sessionId"]
    assert paused["metadata"]["langgraph_interrupts"][0]["node"] == "human_review"
    assert "human_review waits for input: " in first.stderr
    assert f"resume: lftrace run {REVIEW} --thread-id {thread} --resume VALUE" in first.stderr
    assert f"thread: {thread}  (new; continue it with --thread-id)" in first.stderr

    second = lftrace("run", REVIEW, "--thread-id", thread, "--resume", '"yes"', "--expect-complete")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].startswith("human_review  ✓ ok")
    root_input = next(line for line in second.stdout.splitlines() if "in: " in line)
    assert root_input.endswith("in: resume: yes")  # the Command(resume=...), not its empty graph/update/goto
    listed = lftrace("list", "--json")
    statuses = [(t["status"], t["sessionId"]) for t in json.loads(listed.stdout)]
    assert statuses == [("ok", thread), ("interrupted", thread)]


def test_a_paused_run_exits_0_unless_it_is_expected_to_complete():
    result = invoke("run", REVIEW, "--input", "notes")
    assert result.exit_code == 0, result.stderr
    assert "⏸ interrupted" in result.stdout.splitlines()[0]
    assert "⏸ interrupt: " in result.stdout and "Paused, waiting for input:" in result.stdout
    result = invoke("run", REVIEW, "--input", "notes", "--expect-complete")
    assert result.exit_code == 5
    assert "✗ complete: the run paused at an interrupt" in result.stdout + result.stderr


def test_resume_errors_are_usage_errors():
    result = invoke("run", REVIEW, "--resume", "yes")
    assert result.exit_code == 2 and "--resume needs the thread to resume: give --thread-id" in result.stderr
    result = invoke("run", REVIEW, "--thread-id", "nothing-here", "--resume", "yes")
    assert result.exit_code == 2 and "no pending interrupt" in result.stderr
    result = invoke("run", REVIEW, "--input", "x", "--interactive")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 2 and "--interactive needs a terminal" in result.stderr


def test_resume_without_a_thread_names_the_thread_the_last_paused_run_waits_on():
    first = lftrace("run", REVIEW, "--input", "release notes", "--json")
    assert first.returncode == 0, first.stderr
    thread = json.loads(first.stdout)["sessionId"]
    again = lftrace("run", REVIEW, "--resume", '"yes"')  # nothing is resumed on a guess: exit 2, one line
    assert again.returncode == 2 and again.stdout == "", again.stdout
    [line] = again.stderr.splitlines()
    command = f"lftrace run {REVIEW} --thread-id {thread} --resume VALUE"
    assert line.startswith("error: --resume needs the thread to resume: give --thread-id. The last paused run of ")
    assert line.endswith(f"waits on thread {thread}: {command}"), line
    # the command it names is the one that resumes the run
    resumed = lftrace(*command.split()[1:-1], '"yes"', "--expect-complete")
    assert resumed.returncode == 0, resumed.stderr
    # that run is no longer paused: the hint has nothing to name, the plain message stays
    after = lftrace("run", REVIEW, "--resume", '"yes"')
    assert after.returncode == 2
    assert (
        after.stderr.strip()
        == "error: --resume needs the thread to resume: give --thread-id (printed when the run paused)"
    )


def test_resume_without_a_thread_answers_each_of_several_interrupts_and_names_only_this_target(tmp_path):
    two = target("shapes", "two_interrupts_graph")
    first = invoke("run", two, "--input", "plan", "--json")
    assert first.exit_code == 0, first.stderr
    paused = json.loads(first.stdout)
    ids = [p["id"] for p in paused["metadata"]["langgraph_interrupts"]]
    assert len(ids) == 2
    result = invoke("run", two, "--resume", "yes")
    assert result.exit_code == 2
    answers = " ".join(f"--resume {i}=VALUE" for i in ids)
    assert f"--thread-id {paused['sessionId']} {answers}" in result.stderr, result.stderr
    # another target paused nowhere: the plain message, not the other graph's thread
    result = invoke("run", REVIEW, "--resume", "yes")
    assert result.exit_code == 2 and "(printed when the run paused)" in result.stderr
    assert paused["sessionId"] not in result.stderr


def test_resume_without_a_thread_after_a_pause_without_checkpoints_says_to_run_with_a_thread(tmp_path):
    app_file = tmp_path / "pauses.py"
    app_file.write_text(
        "from typing_extensions import TypedDict\n"
        "from langgraph.graph import StateGraph, START, END\n"
        "from langgraph.types import interrupt\n\n"
        "class S(TypedDict):\n    q: str\n    answer: str\n\n"
        "def ask(s: S):\n    return {'answer': str(interrupt({'question': 'approve ' + s['q'] + '?'}))}\n\n"
        "b = StateGraph(S)\nb.add_node('ask', ask)\nb.add_edge(START, 'ask')\nb.add_edge('ask', END)\n"
        "graph = b.compile()  # no checkpointer\n"
    )
    first = lftrace("run", f"{app_file}:graph", "--input", '{"q": "deploy"}')
    assert first.returncode == 0, first.stderr
    assert "the graph keeps no checkpoints: run it with --thread-id ID to be able to resume" in first.stdout
    again = lftrace("run", f"{app_file}:graph", "--resume", "yes")
    assert again.returncode == 2
    [line] = again.stderr.splitlines()
    assert "has none: the graph keeps no checkpoints. Run it again with --thread-id ID" in line, line


@pytest.mark.heavy
def test_durability_exit_keeps_one_checkpoint_per_run_and_a_pause_stays_resumable():
    loop = f"{REPO / 'sample_graphs' / 'long_loop.py'}:graph"
    given = json.dumps({"messages": [{"role": "user", "content": "Go"}], "max_steps": 40})
    checkpoints = {}
    for durability in ("async", "exit"):
        ran = lftrace("run", loop, "--input", given, "--thread-id", f"t-{durability}", "--durability", durability)
        assert ran.returncode == 0, ran.stderr
        history = lftrace("history", loop, "--thread-id", f"t-{durability}", "--json")
        assert history.returncode == 0, history.stderr
        checkpoints[durability] = len(json.loads(history.stdout))
    # LangGraph's default writes the growing state at every step; exit once, when the run ends
    assert checkpoints["async"] > 40 and checkpoints["exit"] == 1, checkpoints
    # a pause is an exit too: its checkpoint is written, and a second process resumes it
    first = lftrace("run", REVIEW, "--input", "notes", "--thread-id", "dur-1", "--durability", "exit")
    assert first.returncode == 0, first.stderr
    second = lftrace(
        "run", REVIEW, "--thread-id", "dur-1", "--resume", '"yes"', "--durability", "exit", "--expect-complete"
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].startswith("human_review  ✓ ok")


def test_durability_errors_are_usage_errors():
    chain = f"{REPO / 'sample_graphs' / 'joke_chain.py'}:chain"
    result = invoke("run", chain, "--input", '{"topic": "cats"}', "--durability", "exit")
    assert result.exit_code == 2 and "--durability is LangGraph's checkpoint durability" in result.stderr
    assert "is not a graph" in result.stderr
    result = invoke("run", REVIEW, "--input", "notes", "--durability", "never")
    assert result.exit_code == 2 and "--durability takes async, sync, exit, not 'never'" in result.stderr


def test_interactive_asks_on_the_terminal_and_goes_on_in_the_same_process():
    answers = [b"make it shorter\n", b"yes\n"]

    def answer(output: bytes) -> bytes | None:
        if answers and output.count(b"answer for human_review> ") > 2 - len(answers):
            return answers.pop(0)
        return None

    code, text = run_in_terminal([LFTRACE, "run", REVIEW, "--input", "release notes", "--interactive"], answer)
    assert code == 0, text
    assert text.count("answer for human_review> ") == 2
    # paused, revised and paused again, published (a live redraw can print a pause line twice: the store counts)
    assert text.count("⏸ interrupted") >= 2 and "✓ ok" in text
    traces = json.loads(lftrace("list", "--json").stdout)
    assert [t["status"] for t in traces] == ["ok", "interrupted", "interrupted"]
    assert len({t["sessionId"] for t in traces}) == 1  # one thread, three turns


def test_run_options_config_file_factory_and_metadata(tmp_path):
    (tmp_path / "config.json").write_text('{"configurable": {"style": "bold"}}', encoding="utf-8")
    result = invoke(
        "run",
        target("factory", "make_graph"),
        "--input",
        '{"question": "hi"}',
        "--config",
        "@config.json",
        "--metadata",
        "team=search",
        "--thread-id",
        "t-42",
        "--user-id",
        "ada",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["output"]["answer"] == "[bold] hi"
    assert (trace["sessionId"], trace["userId"], trace["metadata"]["team"]) == ("t-42", "ada", "search")


def test_typeddict_input_and_the_json_example_for_text():
    result = invoke("run", target("mapreduce"), "--input", '{"topic": "animals"}')
    assert result.exit_code == 0, result.stderr
    result = invoke("run", target("mapreduce"), "--input", "animals")
    assert result.exit_code == 2
    assert """give JSON, e.g. --input '{"topic": "animals"}'""" in result.stderr


def test_async_only_graph_runs_without_a_flag_and_sync_forces_sync():
    result = invoke("run", target("async_only"), "--input", '{"question": "why"}')
    assert result.exit_code == 0, result.stderr
    assert "async answer to why" in result.stdout
    forced = invoke("run", target("async_only"), "--input", '{"question": "why"}', "--sync")
    assert forced.exit_code == 1 and "raised TypeError: No synchronous function" in forced.stderr


def test_handled_tool_error_is_ok_with_a_count_and_exit_0():
    result = invoke("run", target("tool_error"), "--input", "weather in Paris?")
    assert result.exit_code == 0, result.stderr
    assert "✓ ok · 1 handled error" in result.stdout.splitlines()[0]


def test_recursion_limit_is_exit_1_with_the_trace_saved():
    result = invoke("run", target("loop"), "--input", '{"count": 0}', "--recursion-limit", "10")
    assert result.exit_code == 1
    assert "raised GraphRecursionError" in result.stderr and "saved)" in result.stderr
    assert "note: the graph reached its recursion limit of 10 steps: give a higher one with --recursion-limit N" in (
        result.stderr
    )
    assert "✗ error" in result.stdout.splitlines()[1]  # after the graph's own "LOOP STARTED"
