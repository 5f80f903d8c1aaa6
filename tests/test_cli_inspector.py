"""The inspector commands as a user runs them: real `lftrace` subprocesses, and a pseudo-terminal for the live
views (`run` growing its tree, `tail` following other processes)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support.signals import with_ctrl_c
from support.terminal import run_in_terminal

LFTRACE = str(Path(sys.executable).parent / "lftrace")
SAMPLES = Path(__file__).resolve().parents[1] / "sample_graphs"


def lftrace(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three real runs, once for the module: two turns of one session, and a failing chain."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_"))}
    env["LFTRACE_STORE"] = str(tmp_path_factory.mktemp("inspector") / "traces.db")
    env["NO_COLOR"] = "1"

    def run(*args: str) -> subprocess.CompletedProcess:
        return lftrace(*args, env=env)

    paris = run("run", f"{SAMPLES}/agent.py:graph", "-i", "What is the weather in Paris?", "--session-id", "chat-1",
                "--user-id", "ada", "--json")  # fmt: skip
    oslo = run("run", f"{SAMPLES}/agent.py:graph", "-i", "And in Oslo?", "--session-id", "chat-1", "--json")
    fail = run("run", f"{SAMPLES}/failing.py:chain", "-i", "go", "--tag", "smoke", "--json")
    assert paris.returncode == 0 and oslo.returncode == 0 and fail.returncode == 1
    data = {k: json.loads(v.stdout) for k, v in (("paris", paris), ("oslo", oslo), ("fail", fail))}
    data["env"] = env
    return data


def test_show_one_observation_in_full_by_id_prefix_or_node_name(recorded):
    paris = recorded["paris"]
    generation = next(o for o in paris["observations"] if o["type"] == "GENERATION")
    by_prefix = lftrace("show", paris["id"][:10], generation["id"][:6], env=recorded["env"])
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert f"GENERATION FakeChatModel  {generation['id']}" in by_prefix.stdout
    assert "Usage (tokens)" in by_prefix.stdout and "user:" in by_prefix.stdout
    by_name = lftrace("show", paris["id"], "FakeChatModel#1", env=recorded["env"])
    assert by_name.stdout == by_prefix.stdout
    as_json = json.loads(lftrace("show", paris["id"], "tools", "--json", env=recorded["env"]).stdout)
    assert as_json["name"] == "tools" and as_json["type"] == "CHAIN"
    failed = lftrace("show", "last", "check_budget", env=recorded["env"])
    assert "ZeroDivisionError" in failed.stdout and "Traceback" in failed.stdout  # type and traceback
    missing = lftrace("show", "last", "nowhere#2", env=recorded["env"])
    assert missing.returncode == 4 and missing.stderr.startswith("error: no observation 'nowhere#2'")


def test_show_timeline_and_session(recorded):
    timeline = lftrace("show", recorded["paris"]["id"], "--timeline", env={**recorded["env"], "COLUMNS": "100"})
    assert timeline.returncode == 0, timeline.stderr
    lines = timeline.stdout.splitlines()
    assert lines[0].startswith("agent  ✓ ok") and "session chat-1" in timeline.stdout
    assert any("↳ tools_condition" in line for line in lines) and any("█" in line for line in lines)
    assert all(len(line) <= 100 for line in lines)
    session = lftrace("show", "--session", "chat-1", env=recorded["env"])
    assert session.returncode == 0, session.stderr
    assert "Session chat-1  2 turns" in session.stdout
    assert "user: What is the weather in Paris?" in session.stdout and "user: And in Oslo?" in session.stdout
    assert recorded["paris"]["id"] in session.stdout and recorded["oslo"]["id"] in session.stdout
    assert len(json.loads(lftrace("show", "--session", "chat-1", "--json", env=recorded["env"]).stdout)) == 2
    assert lftrace("show", "--session", "nope", env=recorded["env"]).returncode == 4


def test_list_search_filters_tsv_and_json(recorded):
    found = lftrace("list", "--search", "oslo", "--json", env=recorded["env"])
    assert [t["id"] for t in json.loads(found.stdout)] == [recorded["oslo"]["id"]]
    errors = json.loads(lftrace("list", "--status", "error", "--json", env=recorded["env"]).stdout)
    assert [t["id"] for t in errors] == [recorded["fail"]["id"]]
    assert [
        t["id"] for t in json.loads(lftrace("list", "--search", "budget", "--json", env=recorded["env"]).stdout)
    ] == [recorded["fail"]["id"]]
    assert len(json.loads(lftrace("list", "--model", "fake-gpt-4o-mini", "--json", env=recorded["env"]).stdout)) == 2
    assert (
        len(json.loads(lftrace("list", "--user", "ada", "--session", "chat-1", "--json", env=recorded["env"]).stdout))
        == 1
    )
    assert json.loads(lftrace("list", "--until", "2000-01-01", "--json", env=recorded["env"]).stdout) == []
    tsv = lftrace(
        "list", env=recorded["env"]
    ).stdout.splitlines()  # stdout is a pipe: tab-separated values with a header
    assert tsv[0].startswith("time\tid\tname\t") and all(line.count("\t") == 10 for line in tsv)
    bad = lftrace("list", "--status", "fine", env=recorded["env"])
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown status 'fine'")
    assert lftrace("list", "--search", "!!!", env=recorded["env"]).returncode == 2


def test_sessions_stats_and_export_share_the_filters(recorded, tmp_path):
    sessions = json.loads(lftrace("sessions", "--json", env=recorded["env"]).stdout)
    assert [s["sessionId"] for s in sessions] == ["chat-1"] and sessions[0]["traces"] == 2
    tsv = lftrace("sessions", env=recorded["env"]).stdout.splitlines()
    assert tsv[0].split("\t")[:2] == ["session", "traces"] and tsv[1].split("\t")[:2] == ["chat-1", "2"]
    stats = json.loads(lftrace("stats", "--session", "chat-1", "--json", env=recorded["env"]).stdout)
    assert stats["traces"] == 2 and {n["name"] for n in stats["nodes"]} == {"agent", "tools"}
    assert json.loads(lftrace("stats", "--search", "budget", "--json", env=recorded["env"]).stdout)["traces"] == 1
    out = tmp_path / "errors.jsonl"
    exported = lftrace("export", "--status", "error", "-o", str(out), env=recorded["env"])
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [recorded["fail"]["id"]]
    nothing = lftrace("export", "--search", "nothing-like-this", env=recorded["env"])
    assert nothing.returncode == 4


def test_stats_print_sub_millisecond_latencies_as_such(recorded):
    code, text = run_in_terminal([LFTRACE, "stats", "--session", "chat-1"], env=recorded["env"])
    assert code == 0 and "agent" in text and "0.00s" not in text and "ms" in text


def test_stats_print_tab_separated_values_when_piped(recorded):
    report = json.loads(lftrace("stats", "--session", "chat-1", "--json", env=recorded["env"]).stdout)
    lines = lftrace("stats", "--session", "chat-1", env=recorded["env"]).stdout.splitlines()
    header, *rows = [line.split("\t") for line in lines]
    assert header == [
        "kind", "name", "count", "errors", "error_rate", "p50_s", "p95_s", "tokens", "cost_usd", "unpriced_calls",
    ]  # fmt: skip
    as_json = {(k[:-1], r["name"]): r for k in ("nodes", "tools", "models") for r in report[k]}
    assert {(row[0], row[1]) for row in rows} == set(as_json) and len(rows) == len(as_json)
    for kind, name, count, errors, _, p50, _, tokens, cost, unpriced in rows:
        expected = as_json[(kind, name)]
        assert (int(count), int(errors), int(tokens), int(unpriced)) == (
            expected["count"], expected["errors"], expected["tokens"], expected["unpricedCalls"],
        )  # fmt: skip
        assert float(p50) == pytest.approx(expected["p50Latency"], abs=1e-6)
        assert cost == ("" if expected["cost"] is None else f"{expected['cost']:.8f}")


def test_show_list_and_sessions_start_without_langchain(recorded):
    script = textwrap.dedent(
        """
        import sys
        from lftrace.cli import main
        for args in (["list", "--search", "oslo"], ["sessions"], ["experiments"], ["show", "last", "--timeline"], ["show", "last", "check_budget"]):
            try:
                main(args)
            except SystemExit:
                pass
        heavy = [m for m in sys.modules if m.split(".")[0] in ("langchain_core", "langgraph", "httpx", "google", "genai_prices")]
        print(heavy, file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=recorded["env"]
    )
    assert "check_budget" in done.stdout and "Session" not in done.stdout  # it did show the stored data
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


# ---------------------------------------------------------------- pseudo-terminal


def read_pty(fd: int, until: float, stop: str | None = None) -> str:
    chunks: list[bytes] = []
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
        if stop is not None and stop in b"".join(chunks).decode("utf-8", "replace"):
            break
    return b"".join(chunks).decode("utf-8", "replace")


def spawn_in_pty(args: list[str], cwd: Path) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color", "NO_COLOR": "1"}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    return proc, master


SLOW_GRAPH = """
import time
from typing import TypedDict
from langgraph.graph import END, START, StateGraph

class State(TypedDict):
    steps: list[str]

def make(name):
    def node(state: State) -> dict:
        time.sleep(0.4)
        return {"steps": [*state["steps"], name]}
    return node

builder = StateGraph(State)
for name in ("first", "second", "third"):
    builder.add_node(name, make(name))
builder.add_edge(START, "first")
builder.add_edge("first", "second")
builder.add_edge("second", "third")
builder.add_edge("third", END)
graph = builder.compile()
"""


def test_run_shows_the_tree_growing_on_a_terminal(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_GRAPH)
    proc, master = spawn_in_pty([LFTRACE, "run", "slow.py:graph", "-i", '{"steps": []}'], tmp_path)
    try:
        text = read_pty(master, time.monotonic() + 60, stop="Trace ID:")
        proc.wait(10)
    finally:
        os.close(master)
    assert proc.returncode == 0, text
    # while it ran: frames with some nodes finished and one still open, redrawn in place (cursor moves)
    assert "CHAIN first  step 1" in text and "open" in text and "running slow.py:graph" in text
    frames_with_second_open = [f for f in text.split("\x1b[") if "second  step 2  open" in f.replace("\x1b", "")]
    assert frames_with_second_open or "second" in text
    assert "\x1b[2K" in text or "\x1b[1A" in text or "\x1b[?25l" in text  # rich Live's cursor control
    assert "Trace ID:" in text and "CHAIN third  step 3" in text


def test_run_without_a_terminal_prints_plain_output():
    done = lftrace("run", f"{SAMPLES}/chatbot.py:graph", "-i", "hi")
    assert done.returncode == 0 and "\x1b" not in done.stdout and "running " not in done.stdout


@pytest.mark.heavy
def test_tail_follows_traces_written_by_other_processes(tmp_path):
    assert lftrace("run", f"{SAMPLES}/chatbot.py:graph", "-i", "before").returncode == 0  # not shown: older
    proc, master = spawn_in_pty(with_ctrl_c([LFTRACE, "tail", "--interval", "0.1"]), tmp_path)
    try:
        started = read_pty(master, time.monotonic() + 30, stop="Ctrl-C stops")  # listening from now on
        assert "following " in started, started
        for question in ("What is the weather in Paris?", "What is 6 times 7?"):
            done = lftrace("run", f"{SAMPLES}/agent.py:graph", "-i", question, "--session-id", "s-tail")
            assert done.returncode == 0, done.stderr
        text = read_pty(master, time.monotonic() + 20, stop="\n")
        text += read_pty(master, time.monotonic() + 5)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    finally:
        os.close(master)
    lines = [line for line in text.splitlines() if " agent " in line]
    assert len(lines) == 2, text
    assert all(" ok " in line and "session s-tail" in line for line in lines)
    assert proc.returncode == 130  # stopped with Ctrl-C


GATED_LOOP = """
import time
from pathlib import Path
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    step: int


def work(state: State) -> dict:
    time.sleep(0.001)
    return {"step": state["step"] + 1}


def more(state: State) -> str:
    return END if state["step"] > 300 and Path(__file__).with_name("stop").exists() else "work"


builder = StateGraph(State)
builder.add_node("work", work)
builder.add_edge(START, "work")
builder.add_conditional_edges("work", more, ["work", END])
graph = builder.compile()
"""


def test_tail_started_during_a_long_run_prints_it_once_it_finishes(tmp_path):
    """A long run's trace is stored from its first part and completed in place at the end: tail, started while it
    runs, still prints it when it finishes (it used to wait for traces written after it started only)."""
    (tmp_path / "gated.py").write_text(GATED_LOOP)
    run = subprocess.Popen(
        [LFTRACE, "run", f"{tmp_path}/gated.py:graph", "-i", '{"step": 0}', "--config", '{"recursion_limit": 100000}'],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    proc, master = None, None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # its first part is stored: the trace is there, running
            listed = lftrace("list", "--status", "running", "--json")
            if listed.returncode == 0 and json.loads(listed.stdout):
                break
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            time.sleep(0.2)
        (running,) = json.loads(listed.stdout)
        proc, master = spawn_in_pty([LFTRACE, "tail", "--count", "1", "--interval", "0.1"], tmp_path)
        assert "Ctrl-C stops" in read_pty(master, time.monotonic() + 30, stop="Ctrl-C stops")
        (tmp_path / "stop").touch()
        _, errors = run.communicate(timeout=60)
        assert run.returncode == 0, errors
        text = read_pty(master, time.monotonic() + 20, stop="\n")
        proc.wait(15)
    finally:
        run.kill()
        if proc is not None:
            proc.kill()
        if master is not None:
            os.close(master)
    assert proc.returncode == 0, text  # --count 1: the long run's trace was printed
    (line,) = [line for line in text.splitlines() if running["id"][:8] in line]
    assert " gated " in line and " ok " in line, line


def test_tail_tree_and_count_stop_by_themselves(tmp_path):
    assert lftrace("run", f"{SAMPLES}/chatbot.py:graph", "-i", "before").returncode == 0
    proc, master = spawn_in_pty([LFTRACE, "tail", "--tree", "--count", "1", "--interval", "0.1"], tmp_path)
    try:
        assert "Ctrl-C stops" in read_pty(master, time.monotonic() + 30, stop="Ctrl-C stops")
        assert lftrace("run", f"{SAMPLES}/chatbot.py:graph", "-i", "hi").returncode == 0
        text = read_pty(master, time.monotonic() + 20, stop="GENERATION")
        proc.wait(15)
    finally:
        os.close(master)
    assert proc.returncode == 0 and "chatbot" in text and "└── CHAIN LangGraph" in text
    assert "before" not in text  # written before tail started
