"""Ctrl-C in subprocess tests, whatever started the test run.

A shell runs a background job (``make test &``, a CI step started that way) with SIGINT ignored, and every
process below it inherits that: Python then installs no KeyboardInterrupt handler at all, so a test that sends
SIGINT to ``lftrace run`` would see the signal ignored. ``with_ctrl_c(cmd)`` starts ``cmd`` through a tiny
wrapper that puts SIGINT back to its default and execs the command: the process the test signals is ``cmd``
itself, with Python's usual Ctrl-C handling, as when a user presses Ctrl-C in a terminal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

_RESET_AND_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def with_ctrl_c(cmd: list[str]) -> list[str]:
    """``cmd`` (an executable path first) started with SIGINT at its default, so Ctrl-C raises KeyboardInterrupt."""
    return [sys.executable, "-c", _RESET_AND_EXEC, *cmd]


def signal_when_ready(cmd: list[str], ready: str, sig: int = signal.SIGINT, **popen: Any) -> tuple[int, str, str]:
    """Start ``cmd`` (``with_ctrl_c``), wait for the line ``ready`` on its stdout, send ``sig``; the command must end
    within 30 s. Returns (exit code, the rest of stdout, stderr)."""
    proc = subprocess.Popen(with_ctrl_c(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == ready
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err
