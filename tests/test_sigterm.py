"""SIGTERM (what CI runners and `timeout` send) stops a run like Ctrl-C: the partial trace is saved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
