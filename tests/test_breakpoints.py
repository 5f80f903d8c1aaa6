"""Static breakpoints (``interrupt_before`` / ``interrupt_after``): LangGraph's ``invoke`` returns at them without
raising; ``lftrace run`` asks the thread's state, records the run as interrupted (where it stopped), prints the
command that continues it, and ``--thread-id T`` (with or without ``--resume``) goes on from the checkpoint.
Real ``lftrace`` subprocesses on the graphs of tests/graphs/breakpoints.py and sample_graphs/approval.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.terminal import run_in_terminal

REPO = Path(__file__).resolve().parent.parent
GRAPHS = Path(__file__).resolve().parent / "graphs" / "breakpoints.py"
APPROVAL = f"{REPO / 'sample_graphs' / 'approval.py'}:graph"
LFTRACE = str(Path(sys.executable).parent / "lftrace")


def lftrace(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60, env=env)


def thread_of(stdout: str) -> str:
    line = next(x for x in stdout.splitlines() if x.startswith("thread: "))
    return line.split()[1]


def show(trace_id: str) -> dict:
    shown = lftrace("show", trace_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_interrupt_before_is_interrupted_with_a_hint_and_resume_completes_it():
    target = f"{GRAPHS}:graph"
    first = lftrace("run", target, "--input", '{"input": "hi"}')
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "⏸ interrupted" in lines[0]
    assert "Paused at a breakpoint:" in lines and "  before step_3" in lines
    thread = thread_of(first.stdout)
    assert f"resume: lftrace run {target} --thread-id {thread}" in lines
    trace_id = next(x for x in lines if x.startswith("Trace ID: ")).split()[-1]

    paused = show(trace_id)
    assert paused["status"] == "interrupted"
    assert paused["metadata"]["langgraph_interrupts"] == [
        {"id": None, "value": None, "node": "step_3", "breakpoint": "before"}
    ]
    assert [o["name"] for o in paused["observations"]] == ["LangGraph", "step_1", "step_2"]

    second = lftrace("run", target, "--thread-id", thread, "--resume", "go on", "--json")
    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert done["status"] == "ok" and done["output"] == {"input": "hi 1 2 3"}
    assert [o["name"] for o in done["observations"]] == ["LangGraph", "step_3"]
    assert "went on without the --resume value" in second.stderr  # a breakpoint takes no answer
    statuses = [(t["status"], t["sessionId"]) for t in json.loads(lftrace("list", "--json").stdout)]
    assert statuses == [("ok", thread), ("interrupted", thread)]


def test_interrupt_after_names_the_node_that_ran_and_the_printed_command_continues():
    target = f"{GRAPHS}:after"
    first = lftrace("run", target, "--input", '{"input": "hi"}', "--json")
    assert first.returncode == 0, first.stderr
    paused = json.loads(first.stdout)
    assert paused["status"] == "interrupted" and paused["output"] == {"input": "hi 1"}
    assert paused["metadata"]["langgraph_interrupts"][0]["breakpoint"] == "after"
    assert paused["metadata"]["langgraph_interrupts"][0]["node"] == "step_1"
    assert "⏸ paused at a breakpoint after step_1" in first.stderr  # --json: the pause is told on stderr
    hint = next(x for x in first.stderr.splitlines() if x.startswith("resume: "))
    assert "--resume" not in hint

    command = hint.removeprefix("resume: ").split()
    assert command[:2] == ["lftrace", "run"]
    second = lftrace(*command[1:], "--json")
    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert done["status"] == "ok" and done["output"] == {"input": "hi 1 2 3"}


def test_async_graph_pauses_and_resumes_on_ainvoke():
    target = f"{GRAPHS}:async_graph"
    first = lftrace("run", target, "--input", '{"input": "a"}', "--stream")
    assert first.returncode == 0, first.stderr
    assert "▸ step_2" in first.stdout and "step_3" not in first.stdout.split("Paused at a breakpoint:")[0]
    thread = thread_of(first.stdout)
    second = lftrace("run", target, "--thread-id", thread, "--resume", "", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["output"] == {"input": "a 1 2 3"}
    assert "--resume value" not in second.stderr  # nothing was given, so nothing was dropped


def test_a_graph_with_breakpoints_and_no_checkpointer_gets_a_thread_and_expect_complete_fails():
    target = f"{GRAPHS}:no_checkpointer"
    first = lftrace("run", target, "--input", '{"input": "x"}', "--expect-complete")
    assert first.returncode == 5, first.stderr
    assert "✗ complete: the run paused at an interrupt: breakpoint before step_3" in first.stdout + first.stderr
    thread = thread_of(first.stdout)
    second = lftrace("run", target, "--thread-id", thread, "--expect-complete")
    assert second.returncode == 0, second.stderr
    assert "✓ ok" in second.stdout.splitlines()[0]


def test_agent_stops_before_its_tools_until_approved():
    first = lftrace("run", APPROVAL, "--input", "What is 6 times 7?")
    assert first.returncode == 0, first.stderr
    assert "⏸ interrupted" in first.stdout.splitlines()[0] and "  before tools" in first.stdout
    assert "multiply" not in [line.split()[-2] for line in first.stdout.splitlines() if "TOOL" in line]
    second = lftrace("run", APPROVAL, "--thread-id", thread_of(first.stdout), "--json")
    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert done["status"] == "ok"
    assert "multiply" in [o["name"] for o in done["observations"]]
    assert "42" in json.dumps(done["output"])


def test_lftrace_test_turns_expect_the_breakpoint_then_continue(tmp_path):
    cases = tmp_path / "cases.jsonl"
    case = {
        "name": "stops before step_3",
        "turns": [
            {"input": {"input": "t"}, "expect": {"interrupt": "breakpoint before step_3"}},
            {"resume": "go", "expect": {"complete": True, "output": "t 1 2 3"}},
        ],
    }
    cases.write_text(json.dumps(case) + "\n", encoding="utf-8")
    result = lftrace("test", f"{GRAPHS}:graph", str(cases), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["cases"][0]["status"] == "pass" and report["cases"][0]["turns"] == 2


def test_interactive_goes_on_past_the_breakpoint_on_enter():
    answered: list[bool] = []

    def answer(output: bytes) -> bytes | None:
        if not answered and b"Enter goes on> " in output:
            answered.append(True)
            return b"\n"
        return None

    code, text = run_in_terminal([LFTRACE, "run", APPROVAL, "--input", "What is 6 times 7?", "--interactive"], answer)
    assert code == 0, text
    assert "paused at a breakpoint (before tools); Enter goes on> " in text
    assert "⏸ interrupted" in text and "✓ ok" in text and "42" in text
    assert "--resume value" not in text  # Enter is no answer to drop
    statuses = [t["status"] for t in json.loads(lftrace("list", "--json").stdout)]
    assert statuses == ["ok", "interrupted"]


def test_a_breakpoint_inside_a_subgraph_names_the_subgraphs_node_and_continues():
    """interrupt_before=["review"] on a subgraph the parent runs as its node `inner`: the pause names `review`
    (was: `before inner`, the parent's node), and --thread-id goes on from inside the subgraph."""
    target = f"{GRAPHS}:subgraph"
    first = lftrace("run", target, "--input", '{"input": "a"}')
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "⏸ interrupted" in lines[0]
    assert lines[lines.index("Paused at a breakpoint:") + 1] == "  before review"
    trace_id = next(x for x in lines if x.startswith("Trace ID: ")).split()[-1]
    paused = show(trace_id)
    assert paused["metadata"]["langgraph_interrupts"] == [
        {"id": None, "value": None, "node": "review", "breakpoint": "before"}
    ]
    assert [o["name"] for o in paused["observations"]] == ["LangGraph", "inner", "LangGraph", "draft"]

    second = lftrace("run", target, "--thread-id", thread_of(first.stdout), "--json")
    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert done["status"] == "ok" and done["output"] == {"input": "a drafted reviewed published"}
    assert [o["name"] for o in done["observations"]] == ["LangGraph", "inner", "LangGraph", "review", "publish"]


def test_a_subgraph_stopped_after_its_last_node_and_one_without_a_checkpointer():
    after = lftrace("run", f"{GRAPHS}:subgraph_after_last", "--input", '{"input": "b"}', "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["metadata"]["langgraph_interrupts"][0] == {
        "id": None,
        "value": None,
        "node": "review",
        "breakpoint": "after",
    }
    assert "⏸ paused at a breakpoint after review" in after.stderr

    # no checkpointer anywhere: lftrace keeps the thread (the subgraph's breakpoint needs one to go on)
    target = f"{GRAPHS}:subgraph_no_checkpointer"
    first = lftrace("run", target, "--input", '{"input": "c"}', "--expect-complete")
    assert first.returncode == 5, first.stderr
    assert "✗ complete: the run paused at an interrupt: breakpoint before review" in first.stdout + first.stderr
    second = lftrace("run", target, "--thread-id", thread_of(first.stdout), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["output"] == {"input": "c drafted reviewed published"}
