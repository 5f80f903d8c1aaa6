"""A command run on a pseudo-terminal, with answers typed as its prompts appear (``--interactive`` tests)."""

from __future__ import annotations

import os
import pty
import select
import time
from collections.abc import Callable, Mapping


def run_in_terminal(
    argv: list[str],
    answer: Callable[[bytes], bytes | None] = lambda _: None,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``argv`` (an executable path first) with a pseudo-terminal as stdin, stdout and stderr. After each read,
    ``answer(everything printed so far)`` returns what to type, or None. Returns (exit code, the whole output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.execve(argv[0], argv, dict(os.environ if env is None else env))
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        reply = answer(output)
        if reply:
            os.write(fd, reply)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")
