"""Ctrl-C stops `lftrace run` within a couple of seconds even when a parallel branch hangs (a tool stuck in a
socket read or a sleep on one of LangGraph's worker threads), as SIGTERM does (tests/test_sigterm.py): exit 130,
one error line naming the partial trace, no traceback, and the trace saved cancelled with what finished.
Real subprocess runs of the installed command, started with SIGINT at its default (support/signals.with_ctrl_c)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support.signals import with_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
LFTRACE = str(Path(sys.executable).parent / "lftrace")

_PARALLEL = textwrap.dedent(
    """
    import os
    import time
    from typing_extensions import TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        topic: str
        done: list

    def quick(state):
        os.write(1, b"STARTED\\n")  # one write per line: the two branches print at once
        return {"done": ["quick"]}

    def stuck(state):
        os.write(1, b"STARTED\\n")
        time.sleep(60)  # a hung tool call on a worker thread: LangGraph waits for it before stopping
        return {"done": ["stuck"]}

    builder = StateGraph(State)
    builder.add_node("quick", quick)
    builder.add_node("stuck", stuck)
    for name in ("quick", "stuck"):
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile()
    """
)


CTRL_C = "cancelled (Ctrl-C)"


def _env(store: Path) -> dict[str, str]:
    return {**os.environ, "LFTRACE_STORE": str(store), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}


def _ctrl_c_run(tmp_path: Path, *options: str, presses: int = 1) -> tuple[int, str, float]:
    """Run the parallel graph, wait until both branches started, press Ctrl-C ``presses`` times (0.3 s apart):
    the exit code, stderr and the seconds from the first press to the exit."""
    (tmp_path / "parallel.py").write_text(_PARALLEL, encoding="utf-8")
    argv = [LFTRACE, "run", "parallel.py:graph", "--input", '{"topic": "x", "done": []}', *options]
    proc = subprocess.Popen(
        with_ctrl_c(argv),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path / "traces.db"),
    )
    try:
        assert proc.stdout is not None
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["STARTED"] * 2
        time.sleep(0.2)  # the quick branch's end reaches the handler
        started = time.monotonic()
        for press in range(presses):
            if press:
                time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err, took


def _check_cancelled(tmp_path: Path, code: int, err: str, took: float) -> None:
    assert took < 4, f"{took:.1f} s: {err}"  # not the 60 s the stuck branch sleeps
    assert code == 130, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cancelled (Ctrl-C); partial trace saved: "), err
    shown = subprocess.run(
        [LFTRACE, "show", "last", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(tmp_path / "traces.db"),
    )
    assert shown.returncode == 0, shown.stderr
    trace = json.loads(shown.stdout)
    assert trace["id"] == errors[0].split()[-1]
    assert trace["metadata"]["cancelled"] is True
    by_name = {o["name"]: o for o in trace["observations"]}
    assert by_name["quick"]["output"] == {"done": ["quick"]} and by_name["quick"]["level"] == "DEFAULT"
    assert by_name["stuck"]["endTime"] and by_name["stuck"]["statusMessage"] == CTRL_C


@pytest.mark.parametrize("mode", [[], ["--stream"], ["--async"]], ids=["invoke", "stream", "async"])
def test_ctrl_c_stops_a_run_whose_parallel_branch_hangs(tmp_path: Path, mode: list[str]) -> None:
    """Was: the first Ctrl-C waited for the hung branch (60 s here); SIGTERM already stopped it in about 1 s.
    With --async the event loop cancels the hung node's task: it says why too (was: a bare 'cancelled')."""
    _check_cancelled(tmp_path, *_ctrl_c_run(tmp_path, *mode))


def test_a_second_ctrl_c_still_stops_the_run_cleanly(tmp_path: Path) -> None:
    """A user who presses Ctrl-C again while the run stops gets the same clean stop, not a traceback."""
    _check_cancelled(tmp_path, *_ctrl_c_run(tmp_path, presses=2))
