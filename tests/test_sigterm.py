"""SIGTERM (what CI runners and `timeout` send) stops a run like Ctrl-C: the partial trace is saved; `lftrace test`
stops at once too, reports every case (JUnit, summary) and exits 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lftrace.store import TraceStore

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from langchain_core.runnables import RunnableLambda
    from lftrace.runner import execute

    def slow(x):
        print("started", flush=True)
        time.sleep(30)
        return x

    chain = RunnableLambda(lambda x: x + "!") | RunnableLambda(slow)
    result = execute(chain, "hello")
    print("terminated:", result.terminated, "trace:", result.trace.id if result.trace else None, flush=True)
    """
)


def test_sigterm_during_a_run_saves_the_partial_trace(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    env = {**os.environ, "LFTRACE_STORE": str(store), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert proc.returncode == 0, err
    assert "terminated: True" in out, out
    with TraceStore(store, create=False) as opened:
        trace = opened.get_trace(out.split("trace: ")[1].split()[0])
    assert trace.status == "cancelled"
    assert trace.input == "hello"
    assert any(o.status_message == "terminated (SIGTERM)" for o in trace.observations)


_GRAPH = (Path(__file__).resolve().parent / "graphs" / "hung_cases.py").read_text(encoding="utf-8")

_CASES = [
    {"name": "quick", "input": {"topic": "a"}, "expect": {"output": "thinking about a!"}},
    {"name": "stuck one", "input": {"topic": "slow b"}},
    {"name": "stuck two", "input": {"topic": "slow c"}},
    {"name": "never started", "input": {"topic": "d"}},
]


@pytest.mark.parametrize("mode", ["--sync", "--async"])
def test_sigterm_during_lftrace_test_keeps_traces_and_reports_every_case(tmp_path: Path, mode: str) -> None:
    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in _CASES), encoding="utf-8")
    store = tmp_path / "traces.db"
    env = {**os.environ, "LFTRACE_STORE": str(store), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    lftrace = Path(sys.executable).parent / "lftrace"
    args = ["test", "slow_graph.py:graph", "cases.jsonl", "--concurrency", "2", "--junit", "report.xml", mode]
    proc = subprocess.Popen(
        [str(lftrace), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert [proc.stdout.readline().strip() for _ in range(2)] == ["STARTED"] * 2  # both stuck cases run
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10  # not the 60 s the stuck nodes sleep
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == (
        "error: terminated (SIGTERM): 1 of 4 case(s) finished, 2 stopped while running (partial traces saved), "
        "1 not run"
    )
    assert "Traceback" not in err
    assert "1/4 passed" in out
    assert "! stuck one: terminated (SIGTERM) while the case ran; partial trace saved (trace " in " ".join(out.split())

    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["quick", "stuck one", "stuck two", "never started"]
    assert cases["quick"].find("error") is None and cases["quick"].find("skipped") is None
    for name in ("stuck one", "stuck two"):
        error = cases[name].find("error")
        assert error is not None and "terminated (SIGTERM) while the case ran; partial trace saved" in error.get(
            "message", ""
        )
    skipped = cases["never started"].find("skipped")
    assert skipped is not None and skipped.get("message") == "not run: SIGTERM stopped the test run"

    with TraceStore(store, create=False) as opened:
        traces = [opened.get_trace(s.id) for s in opened.list_traces()]
    statuses = sorted((t.input["topic"], t.status) for t in traces)
    assert statuses == [("a", "ok"), ("slow b", "cancelled"), ("slow c", "cancelled")]
    for trace in traces:
        if trace.status == "cancelled":
            assert [o.name for o in trace.observations] == ["LangGraph", "think", "answer"]
            assert any(o.status_message == "terminated (SIGTERM)" for o in trace.observations)


_PARALLEL = textwrap.dedent(
    """
    import sys
    import time
    from typing_extensions import TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        topic: str

    def branch(name):
        def node(state):
            sys.stdout.write(f"{name} STARTED\\n")  # one write per line: the two branches print at once
            sys.stdout.flush()
            time.sleep(60)  # a hung tool call: LangGraph waits for its threads before stopping
            return {}
        return node

    builder = StateGraph(State)
    for name in ("left", "right"):
        builder.add_node(name, branch(name))
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile()
    """
)


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["invoke", "async"])
def test_one_sigterm_stops_a_run_whose_parallel_branches_hang(tmp_path: Path, mode: list[str]) -> None:
    (tmp_path / "parallel.py").write_text(_PARALLEL, encoding="utf-8")
    store = tmp_path / "traces.db"
    env = {
        **os.environ,
        "LFTRACE_STORE": str(store),
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "PYTHONFAULTHANDLER": "1",  # a run that does not stop is sent SIGABRT below: every thread's stack on stderr
    }
    lftrace = Path(sys.executable).parent / "lftrace"
    proc = subprocess.Popen(
        [str(lftrace), "run", "parallel.py:graph", "--input", '{"topic": "x"}', *mode],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert sorted(proc.stdout.readline().split()[0] for _ in range(2)) == ["left", "right"]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # once, as a CI runner does
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it failed once in a loaded suite: say where it was stuck
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"still running 30 s after SIGTERM; its threads:\n{err}")
    assert time.monotonic() - started < 10  # not the 60 s the branches sleep
    assert proc.returncode == 143, err
    assert err.startswith("error: terminated (SIGTERM); partial trace saved: "), err
    with TraceStore(store, create=False) as opened:
        trace = opened.get_trace(err.split()[-1])
    ended = [(o.name, o.level, o.status_message) for o in trace.observations]
    assert trace.status == "cancelled", ended  # it was "error" once in a loaded suite: which observation said so
    branches = [o for o in trace.observations if o.name in ("left", "right")]
    assert len(branches) == 2 and all(o.status_message == "terminated (SIGTERM)" for o in branches)


_SIGNAL_ON_A_WORKER_THREAD = textwrap.dedent(
    """
    import signal, sys, threading, time
    from typing_extensions import TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        topic: str

    def hung(state):
        # the kernel may hand a process's SIGTERM to any thread: here, deterministically, a thread of LangGraph's
        # executor that runs a sync node, once the main thread waits for it (the event loop's select in an async
        # run, concurrent.futures.wait for parallel branches in invoke(); a branch LangGraph runs on the main
        # thread just sleeps)
        time.sleep(1)
        if threading.current_thread() is not threading.main_thread():
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(60)
        return {}

    builder = StateGraph(State)
    for name in ("left", "right"):
        builder.add_node(name, hung)
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile()
    """
)


def _signalled_on_a_worker(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``lftrace ARGS`` on the graph above, in ``tmp_path``: how it ended, and the seconds it took."""
    (tmp_path / "worker_signal.py").write_text(_SIGNAL_ON_A_WORKER_THREAD, encoding="utf-8")
    env = {
        **os.environ,
        "LFTRACE_STORE": str(tmp_path / "traces.db"),
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    }
    lftrace = Path(sys.executable).parent / "lftrace"
    started = time.monotonic()
    done = subprocess.run([str(lftrace), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=45)
    return done, time.monotonic() - started


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["invoke", "async"])
def test_a_sigterm_the_kernel_gives_to_a_worker_thread_still_stops_the_run(tmp_path: Path, mode: list[str]) -> None:
    """Python only marks a signal another thread caught; the main thread, asleep in a lock or a select, did not
    wake up for it (1 run in ~15 under load hung after a CI runner's SIGTERM). signals.Forwarding sends it on."""
    done, took = _signalled_on_a_worker(tmp_path, "run", "worker_signal.py:graph", "--input", '{"topic": "x"}', *mode)
    assert took < 15  # not the 60 s the nodes sleep (it hung for all of them before)
    assert done.returncode == 143, done.stderr
    assert done.stderr.startswith("error: terminated (SIGTERM); partial trace saved: "), done.stderr


def test_a_sigterm_a_case_thread_catches_still_stops_lftrace_test(tmp_path: Path) -> None:
    """`lftrace test` runs its cases on threads; its main thread waits for them with a timeout (``SIGNAL_POLL_S``),
    so it runs its handler for a signal a case's thread caught: kept so."""
    (tmp_path / "cases.jsonl").write_text(json.dumps({"name": "hangs", "input": {"topic": "x"}}) + "\n")
    done, took = _signalled_on_a_worker(tmp_path, "test", "worker_signal.py:graph", "cases.jsonl", "--sync")
    assert took < 15  # not the 60 s the nodes sleep
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: terminated (SIGTERM): 0 of 1 case(s) finished"), done.stderr


_STOP_SURFACES_AS_ANOTHER_ERROR = textwrap.dedent(
    """
    import sys
    import time
    from typing_extensions import TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        topic: str

    def wait(state):
        print("STARTED", flush=True)
        try:
            time.sleep(60)
        except KeyboardInterrupt:  # as CPython's threading does when the stop lands inside its lock handling
            raise RuntimeError("release unlocked lock")
        return {}

    builder = StateGraph(State)
    builder.add_node("wait", wait)
    builder.add_edge(START, "wait")
    builder.add_edge("wait", END)
    graph = builder.compile()
    """
)


def test_an_error_raised_while_the_stop_goes_through_library_code_is_the_stop(tmp_path: Path) -> None:
    """A stop lands between any two bytecodes: inside threading's lock handling (a thread pool starting a node's
    thread) it came out as `RuntimeError: release unlocked lock`, and the stopped branch was recorded as failed and
    the trace as an error. An error whose context is the stop is the stop: cancelled, exit 143. (The node runs on the
    main thread here, where the signal lands; `--async` runs it in a pool's thread, which the signal never reaches.)"""
    (tmp_path / "wait.py").write_text(_STOP_SURFACES_AS_ANOTHER_ERROR, encoding="utf-8")
    store = tmp_path / "traces.db"
    env = {**os.environ, "LFTRACE_STORE": str(store), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    lftrace = Path(sys.executable).parent / "lftrace"
    proc = subprocess.Popen(
        [str(lftrace), "run", "wait.py:graph", "--input", '{"topic": "x"}'],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "STARTED"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.startswith("error: terminated (SIGTERM); partial trace saved: "), err
    with TraceStore(store, create=False) as opened:
        trace = opened.get_trace(err.split()[-1])
    ended = {o.name: (o.level, o.status_message) for o in trace.observations}
    assert trace.status == "cancelled", ended
    assert ended["wait"] == ("WARNING", "terminated (SIGTERM)")
    assert ended["LangGraph"][0] != "ERROR", ended
