"""Ctrl-C during `lftrace test` stops it as SIGTERM does (tests/test_sigterm.py), with exit 130: the cases that
finished keep their verdicts, each running case is an error with its partial trace saved as cancelled, the others
are skipped, the summary, --json and --junit outputs are written and one error line ends stderr. Real subprocess
runs of the installed command, started with SIGINT at its default (support/signals.with_ctrl_c)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.signals import with_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
LFTRACE = str(Path(sys.executable).parent / "lftrace")

# Ctrl-C and SIGTERM stop `lftrace test` the same way: (signal, exit code, what the report says)
EITHER_SIGNAL = pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "cancelled (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)

_GRAPH = (Path(__file__).resolve().parent / "graphs" / "hung_cases.py").read_text(encoding="utf-8")

_QUICK = {"name": "quick", "input": {"topic": "a"}, "expect": {"output": "thinking about a!"}}
_LATER = {"name": "never started", "input": {"topic": "d"}}


@contextlib.contextmanager
def _test_against_a_hung_backend(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], threading.Event]]:
    """`lftrace test slow_graph.py:graph cases.jsonl *args` (started with Ctrl-C live) whose backend, on this
    machine, takes every request and never answers (LANGFUSE_TIMEOUT 30 s); yields the process and an event set
    once a request arrived. The backend and the process are gone afterwards."""
    hung = socket.create_server(("127.0.0.1", 0))
    asked = threading.Event()
    held: list[socket.socket] = []

    def take_requests() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = hung.accept()
                held.append(conn)  # never answered, never closed
                conn.recv(65536)
                asked.set()

    threading.Thread(target=take_requests, daemon=True).start()
    env = {
        **_env(),
        "LANGFUSE_HOST": f"http://127.0.0.1:{hung.getsockname()[1]}",
        "LANGFUSE_PUBLIC_KEY": "pk-lf-test",
        "LANGFUSE_SECRET_KEY": "sk-lf-test",
        "LANGFUSE_TIMEOUT": "30",
    }
    proc = subprocess.Popen(
        with_ctrl_c([LFTRACE, "test", "slow_graph.py:graph", "cases.jsonl", *args]),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc, asked
    finally:
        hung.close()
        for conn in held:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stuck(name: str, topic: str) -> dict[str, object]:
    return {"name": name, "input": {"topic": topic}}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}


def _lftrace_json(*args: str) -> object:
    done = subprocess.run([LFTRACE, *args, "--json"], capture_output=True, text=True, timeout=30, env=_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _ctrl_c_during_test(
    tmp_path: Path, cases: list[dict[str, object]], running: int, *options: str, presses: int = 1
) -> tuple:
    """Start `lftrace test` on ``cases``, wait until ``running`` cases are stuck, press Ctrl-C (SIGINT) ``presses``
    times in a row."""
    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    args = ["test", "slow_graph.py:graph", "cases.jsonl", "--junit", "report.xml", "--json", *options]
    proc = subprocess.Popen(
        with_ctrl_c([LFTRACE, *args]),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        assert [proc.stdout.readline().strip() for _ in range(running)] == ["STARTED"] * running
        started = time.monotonic()
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - started < 10, err  # not the 60 s the stuck nodes sleep
    return proc.returncode, out, err


def _check_report(tmp_path: Path, out: str, err: str, verdicts: dict[str, str]) -> None:
    """--json on stdout and the JUnit file say ``verdicts`` (pass / cancelled / skipped), in dataset order; every
    cancelled case's partial trace is in the store, cancelled, its hung node closed with 'cancelled (Ctrl-C)'."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]], err  # one error line, the last
    stopped = sum(v == "cancelled" for v in verdicts.values())
    finished = sum(v == "pass" for v in verdicts.values())
    assert lines[-1] == (
        f"error: cancelled (Ctrl-C): {finished} of {len(verdicts)} case(s) finished, {stopped} stopped while "
        f"running (partial traces saved), {len(verdicts) - finished - stopped} not run"
    )

    report = json.loads(out)
    assert [c["name"] for c in report["cases"]] == list(verdicts)
    assert (report["passed"], report["failed"], report["skipped"]) == (
        finished,
        stopped,
        len(verdicts) - finished - stopped,
    )
    by_name = {c["name"]: c for c in report["cases"]}
    for name, verdict in verdicts.items():
        case = by_name[name]
        if verdict == "pass":
            assert case["status"] == "pass" and case["output"] == "thinking about a!"
        elif verdict == "cancelled":
            assert case["status"] == "error"
            assert case["error"] == "cancelled (Ctrl-C) while the case ran; partial trace saved"
            assert case["traceId"]
        else:
            assert case["status"] == "skipped" and case["skipReason"] == "not run: Ctrl-C stopped the test run"

    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    junit = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(junit) == list(verdicts)
    for name, verdict in verdicts.items():
        error, skipped = junit[name].find("error"), junit[name].find("skipped")
        if verdict == "pass":
            assert error is None and skipped is None
        elif verdict == "cancelled":
            assert error is not None and skipped is None
            assert "cancelled (Ctrl-C) while the case ran; partial trace saved" in error.get("message", "")
        else:
            assert skipped is not None and skipped.get("message") == "not run: Ctrl-C stopped the test run"

    listed = _lftrace_json("list")
    assert isinstance(listed, list)
    statuses = {t["id"]: t["status"] for t in listed}
    for name, verdict in verdicts.items():
        trace_id = by_name[name]["traceId"]
        if verdict == "pass":
            assert statuses[trace_id] == "ok"
        elif verdict == "cancelled":
            assert statuses[trace_id] == "cancelled"
            shown = _lftrace_json("show", trace_id)
            assert isinstance(shown, dict) and shown["status"] == "cancelled"
            assert [o["name"] for o in shown["observations"]] == ["LangGraph", "think", "answer"]
            hung = next(o for o in shown["observations"] if o["name"] == "answer")
            assert hung["endTime"] and hung["statusMessage"] == "cancelled (Ctrl-C)"
    assert len(listed) == finished + stopped  # the cases not started left no trace


@pytest.mark.parametrize("mode", ["--sync", "--async"])
def test_ctrl_c_during_sequential_lftrace_test_reports_every_case_and_exits_130(tmp_path: Path, mode: str) -> None:
    cases = [_QUICK, _stuck("stuck", "slow b"), _LATER]
    code, out, err = _ctrl_c_during_test(tmp_path, cases, 1, "--concurrency", "1", mode)
    assert code == 130, err
    _check_report(tmp_path, out, err, {"quick": "pass", "stuck": "cancelled", "never started": "skipped"})


@pytest.mark.parametrize(("mode", "presses"), [("--sync", 1), ("--async", 1), ("--sync", 2), ("--async", 2)])
def test_ctrl_c_during_parallel_lftrace_test_stops_every_running_case(tmp_path: Path, mode: str, presses: int) -> None:
    """Two presses in a row (an impatient user) stop it the same way: the second is ignored while the first's stop
    closes the running cases and the report is written."""
    cases = [_QUICK, _stuck("stuck one", "slow b"), _stuck("stuck two", "slow c"), _LATER]
    code, out, err = _ctrl_c_during_test(tmp_path, cases, 2, "--concurrency", "2", mode, presses=presses)
    assert code == 130, err
    verdicts = {"quick": "pass", "stuck one": "cancelled", "stuck two": "cancelled", "never started": "skipped"}
    _check_report(tmp_path, out, err, verdicts)


def test_ctrl_c_during_the_second_turn_of_a_case_names_the_turn(tmp_path: Path) -> None:
    """A multi-turn case stopped in its second turn: the first turn's trace is kept ok, the second is cancelled."""
    cases = [{"name": "two turns", "turns": [{"input": {"topic": "a"}}, {"input": {"topic": "slow b"}}]}]
    code, out, err = _ctrl_c_during_test(tmp_path, cases, 1, "--concurrency", "1")
    assert code == 130, err
    assert err.splitlines()[-1] == (
        "error: cancelled (Ctrl-C): 0 of 1 case(s) finished, 1 stopped while running (partial traces saved), 0 not run"
    )
    (case,) = json.loads(out)["cases"]
    assert (case["status"], case["error"], case["failedTurn"]) == (
        "error",
        "turn 2: cancelled (Ctrl-C) while the case ran; partial trace saved",
        2,
    )
    listed = _lftrace_json("list")
    assert isinstance(listed, list)
    statuses = {t["id"]: t["status"] for t in listed}
    assert [statuses[i] for i in case["traceIds"]] == ["ok", "cancelled"]


_WAITING_GRAPH = textwrap.dedent(
    """
    import os
    import signal
    import time
    from typing_extensions import TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        topic: str

    def stuck(state):
        os.kill(os.getpid(), signal.SIGTERM)  # the CI runner's timeout, while this case runs
        deadline = time.monotonic() + 10
        while not os.path.exists(state["topic"]) and time.monotonic() < deadline:  # released when the test ends
            time.sleep(0.02)
        return {}

    builder = StateGraph(State)
    builder.add_node("stuck", stuck)
    builder.add_edge(START, "stuck")
    builder.add_edge("stuck", END)
    graph = builder.compile()
    """
)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_while_the_running_cases_are_closed_does_not_cut_the_stop_short(
    tmp_path: Path, second: signal.Signals
) -> None:
    """A CI runner that sends SIGTERM again, or a user who presses Ctrl-C, while the stop closes the running case's
    trace: the stop still finishes (every run closed with the first signal's reason, the partial trace saved, every
    case reported). Deterministic: the second signal is raised inside ``on_stop``, before it closes the runs.
    Was: the second Terminated escaped run_cases from inside the stop (no report, exit 130, runs left open)."""
    from lftrace.assertions import Expectations
    from lftrace.cases import CaseRunner
    from lftrace.client import client_for
    from lftrace.config import Settings
    from lftrace.dataset import Case, CasesStopped, run_cases, stop_signals
    from lftrace.store import TraceStore

    (tmp_path / "waiting.py").write_text(_WAITING_GRAPH, encoding="utf-8")
    release = tmp_path / "release"
    settings = Settings.resolve({"sample_rate": 1.0, "tracing_enabled": True})
    runner = CaseRunner("waiting.py:graph", "race", Expectations(), settings=settings)
    cases = [Case("stuck", {"topic": str(release)}), Case("later", {"topic": str(release)})]

    def stop_while_signalled_again(case: Case, reason: str) -> object:
        signal.raise_signal(second)  # its handler runs here, before the case's runs are closed
        return runner.stopped(case, reason)

    stopped: BaseException | None = None
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C live even when pytest runs in the background
    try:
        with stop_signals():
            run_cases(cases, runner, concurrency=1, on_stop=stop_while_signalled_again)
    except KeyboardInterrupt as interrupt:
        stopped = interrupt
    finally:
        release.touch()
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert isinstance(stopped, CasesStopped) and stopped.reason == "terminated (SIGTERM)"
    results = stopped.results
    assert [r.status for r in results] == ["error", "skipped"]
    assert results[0].error == "terminated (SIGTERM) while the case ran; partial trace saved"
    assert results[1].skip_reason == "not run: SIGTERM stopped the test run"
    client_for(settings).flush(deliver=False)
    with TraceStore(os.environ["LFTRACE_STORE"], create=False) as opened:
        trace = opened.get_trace(results[0].trace_id)
    assert trace.status == "cancelled"
    assert [(o.name, o.status_message) for o in trace.observations] == [
        ("LangGraph", "terminated (SIGTERM)"),
        ("stuck", "terminated (SIGTERM)"),
    ]
    assert all(o.end_time is not None for o in trace.observations)


@EITHER_SIGNAL
def test_ctrl_c_during_the_export_after_the_cases_still_writes_the_report(
    tmp_path: Path, signum: signal.Signals, code: int, said: str
) -> None:
    """Every case finished, then the one delivery to a backend that never answers: Ctrl-C (or SIGTERM) there stops
    the export, and the verdicts, summary and JUnit are still written; the traces are stored, queued for push.
    Was: exit 130 with nothing written (SIGTERM: killed outright)."""
    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text(json.dumps(_QUICK) + "\n", encoding="utf-8")
    with _test_against_a_hung_backend(tmp_path, "--junit", "report.xml") as (proc, asked):
        assert proc.stderr is not None
        # the case's line, then the request: the export after the cases is under way. With a backend on this
        # machine the export helper sends each trace as soon as it is written, which can be before the cases
        # loop has returned (the request alone once let the signal land there): a moment more to get there
        shown = proc.stderr.readline()
        assert "quick" in shown, shown
        assert asked.wait(20)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10  # not the 30 s export deadline
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: {said} during the export: all 1 case(s) finished (1 passed); their traces are saved and stay "
        "queued for export (lftrace push)"
    )
    assert "1/1 passed, all passed" in out
    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None and [c.get("name") for c in suite.findall("testcase")] == ["quick"]
    listed = _lftrace_json("list")
    assert isinstance(listed, list) and [t["status"] for t in listed] == ["ok"]


@EITHER_SIGNAL
def test_a_stop_during_the_cases_exits_at_once_even_with_a_backend_that_hangs(
    tmp_path: Path, signum: signal.Signals, code: int, said: str
) -> None:
    """A case's trace went to a backend that takes the request and never answers (sent as soon as it was written:
    the backend is on this machine), then Ctrl-C or SIGTERM while the next case runs. The stopped cases' traces get
    a short delivery, as `lftrace run`'s after a stop: was the whole LANGFUSE_TIMEOUT (30 s here) at the exit."""
    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    cases = [_QUICK, _stuck("stuck", "slow b")]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    with _test_against_a_hung_backend(tmp_path, "--concurrency", "1") as (proc, asked):
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTED"  # the stuck case runs
        assert asked.wait(20)  # and the quick case's trace is on its way to the backend that hangs
        started = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=40)
    assert time.monotonic() - started < 8  # not the 30 s of LANGFUSE_TIMEOUT
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: {said}: 1 of 2 case(s) finished, 1 stopped while running (partial traces saved), 0 not run"
    )
    assert "1/2 passed" in out
    listed = _lftrace_json("list")
    assert isinstance(listed, list) and sorted(t["status"] for t in listed) == ["cancelled", "ok"]


def test_ctrl_c_typed_on_a_terminal_stops_lftrace_test_and_gives_the_cursor_back(tmp_path: Path) -> None:
    """The user's Ctrl-C itself: typed on a pseudo-terminal, whose driver sends SIGINT to the foreground process
    group, while the progress bar (which hides the cursor) is on screen."""
    from support.terminal import run_in_terminal

    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    cases = [_QUICK, _stuck("stuck", "slow b"), _LATER]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    typed: list[bytes] = []

    def ctrl_c_once_stuck(printed: bytes) -> bytes | None:
        if b"STARTED" in printed and not typed:
            typed.append(b"\x03")
            return b"\x03"
        return None

    argv = [LFTRACE, "test", "slow_graph.py:graph", "cases.jsonl", "--concurrency", "1", "--junit", "report.xml"]
    started = time.monotonic()
    code, shown = run_in_terminal(with_ctrl_c(argv), ctrl_c_once_stuck, timeout=30)
    assert time.monotonic() - started < 20  # not the 60 s the stuck node sleeps
    assert typed and code == 130, shown
    assert "Traceback" not in shown
    assert shown.rstrip().endswith(
        "error: cancelled (Ctrl-C): 1 of 3 case(s) finished, 1 stopped while running (partial traces saved), 1 not run"
    )
    assert shown.rfind("\x1b[?25h") > shown.rfind("\x1b[?25l") >= 0  # the progress bar hid the cursor, and showed it
    assert "1/3 passed" in shown
    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None and len(suite.findall("testcase")) == 3


_SLOW_IMPORT = textwrap.dedent(
    """
    import os
    import time

    os.write(1, b"IMPORTING\\n")
    time.sleep(60)  # a heavy import (a model loaded, a server asked): only the signal ends it
    from slow_graph import graph
    """
)


@EITHER_SIGNAL
def test_ctrl_c_while_lftrace_test_imports_the_target_reports_every_case_not_run(
    tmp_path: Path, signum: signal.Signals, code: int, said: str
) -> None:
    """Stopped before any case ran: every case is reported skipped in --json and JUnit, one line says why.
    Was: Ctrl-C exited 130 with nothing on stderr and no report; SIGTERM killed the process outright."""
    (tmp_path / "slow_graph.py").write_text(_GRAPH, encoding="utf-8")
    (tmp_path / "slow_import.py").write_text(_SLOW_IMPORT, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in (_QUICK, _LATER)), encoding="utf-8")
    argv = [LFTRACE, "test", "slow_import.py:graph", "cases.jsonl", "--junit", "report.xml", "--json"]
    proc = subprocess.Popen(
        with_ctrl_c(argv), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "IMPORTING\n"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert err.splitlines() == [f"error: {said} while slow_import.py:graph was imported: no case ran (2 not run)"]
    why = f"not run: {said.split('(')[1].rstrip(')')} stopped the test run"
    report = json.loads(out)
    assert [(c["name"], c["status"], c["skipReason"]) for c in report["cases"]] == [
        ("quick", "skipped", why),
        ("never started", "skipped", why),
    ]
    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    assert [c.find("skipped").get("message") for c in suite.findall("testcase")] == [why, why]  # type: ignore[union-attr]
