"""A real `lftrace serve` subprocess on 127.0.0.1 (a free port picked by the server) for the serve tests."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

LFTRACE = [sys.executable, "-m", "lftrace", "serve"]


def basic_auth(public_key: str, secret_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class ServeProcess:
    """Starts the server with ``--port 0`` and reads the URL from its banner."""

    def __init__(self, store: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.args = list(args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        self.env.update({"LFTRACE_STORE": str(store), "PYTHONUNBUFFERED": "1"})
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.banner: list[str] = []

    def start(self, timeout: float = 20.0) -> ServeProcess:
        self.proc = subprocess.Popen(
            [*LFTRACE, "--port", "0", "--store", str(self.store), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"lftrace serve exited: {self.proc.wait()} {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            self.banner.append(line.rstrip("\n"))
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
            if line.startswith("Press Ctrl-C"):
                return self
        raise RuntimeError("lftrace serve did not start in time")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", basic_auth("pk-lf-test", "sk-lf-test"))
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**basic_auth("pk-lf-test", "sk-lf-test"), **kwargs.pop("headers", {})}
        return httpx.post(self.url + path, timeout=10, headers=headers, **kwargs)

    def run_sdk_program(self, script: Path, code: str, *, quiet: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a program written for the official SDK against the server (its URL as argv[1]); it must succeed
        (and, ``quiet``, log no error)."""
        script.write_text(code)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        ran = subprocess.run(
            [sys.executable, str(script), self.url], env=env, capture_output=True, text=True, timeout=90
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert not quiet or "error" not in ran.stderr.lower(), ran.stderr[-3000:]
        return ran

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
