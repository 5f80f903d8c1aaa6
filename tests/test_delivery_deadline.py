"""LANGFUSE_TIMEOUT bounds delivery end to end: a server that trickles its answer a byte at a time included."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lftrace.config import Settings
from lftrace.delivery import Deliverer, destinations_for
from lftrace.store import TraceStore
from support.traces import sample_trace

LFTRACE = str(Path(sys.executable).parent / "lftrace")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@contextlib.contextmanager
def trickling_server(byte_every: float = 0.2) -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server on 127.0.0.1 that reads the request, then answers one byte every ``byte_every`` s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    requests: list[int] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(body) < length:
                body += conn.recv(65536)
            requests.append(len(body))
            try:
                for byte in ANSWER:
                    if stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(byte_every)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_a_trickling_backend_cannot_hold_a_flush_past_the_timeout(tmp_path: Path) -> None:
    with trickling_server() as (url, requests):
        settings = Settings(store=tmp_path / "t.db", otlp_endpoint=url + "/v1/traces", timeout=1.0)
        with TraceStore(settings.store) as store:
            store.write_traces([sample_trace()], destinations=[d.name for d in destinations_for(settings)])
            deliverer = Deliverer(store, destinations_for(settings), settings)
            started = time.monotonic()
            report = deliverer.deliver(time.monotonic() + settings.timeout)
            took = time.monotonic() - started
            deliverer.stop(timeout=1)
        assert took < 2.0, took  # the whole answer takes ~17 s at this pace
        assert requests and report.pending == 1
        # the request had what was left of the one-second deadline, and the reason says so
        assert (report.last_error or "").startswith("delivery deadline reached: timed out after"), report.last_error


def test_lftrace_run_against_a_trickling_backend_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            from langchain_core.runnables import RunnableLambda
            chain = RunnableLambda(lambda x: "echo " + x)
            """
        )
    )
    with trickling_server(byte_every=0.5) as (url, requests):  # the whole answer takes ~33 s
        env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url + "/v1/traces", "LANGFUSE_TIMEOUT": "1"}
        started = time.monotonic()
        ran = subprocess.run(
            [LFTRACE, "run", "app.py:chain", "--input", "hi"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        took = time.monotonic() - started
    assert ran.returncode == 0, ran.stderr
    assert "queued: 1 trace pending" in ran.stdout
    assert "delivery deadline reached: timed out after" in ran.stdout  # the reason: time, not a failing server
    assert "LANGFUSE_TIMEOUT gives a run's delivery more time" in ran.stdout
    # the request gets what is left of the one-second deadline (the export helper started meanwhile)
    waited = re.search(r"timed out after (\d+\.\d)s", ran.stdout)
    assert waited and 0.5 <= float(waited.group(1)) <= 1.0, ran.stdout
    assert len(requests) == 1  # one delivery per run
    assert took < 15, took  # start-up and LangChain import (slow on a loaded machine), plus one second of delivery


def test_doctor_against_a_trickling_langfuse_is_bounded(tmp_path: Path) -> None:
    with trickling_server(byte_every=0.5) as (url, _requests):
        env = {
            **os.environ,
            "LANGFUSE_BASE_URL": url,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-1234567890abcd",
            "LANGFUSE_SECRET_KEY": "sk-lf-topsecret99887766",
            "LANGFUSE_TIMEOUT": "1",
        }
        started = time.monotonic()
        doctor = subprocess.run([LFTRACE, "doctor"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        took = time.monotonic() - started
    assert doctor.returncode == 6, doctor.stdout
    assert f"FAIL  Langfuse at {url} did not answer within 1s" in doctor.stdout
    assert took < 10, took  # the answer alone would take ~33 s


@pytest.mark.parametrize("helper", ["false", "true"])
def test_a_run_stopped_by_ctrl_c_delivers_for_at_most_a_second(tmp_path: Path, helper: str) -> None:
    """From a thread of the program, the delivery itself is cut at one second; from the export helper, which
    started sending the trace as soon as it wrote it, the flush waits at most a second for that send."""
    from support.signals import signal_when_ready

    (tmp_path / "hang.py").write_text(
        textwrap.dedent(
            """
            import time
            from langchain_core.runnables import RunnableLambda

            def hang(x):
                print("STARTED", flush=True)
                time.sleep(60)

            chain = RunnableLambda(hang)
            """
        )
    )
    with trickling_server(byte_every=0.5) as (url, requests):  # the whole answer takes ~33 s
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url + "/v1/traces",
            "LANGFUSE_TIMEOUT": "20",
            "LFTRACE_EXPORT_PROCESS": helper,
        }
        started = time.monotonic()
        code, out, err = signal_when_ready(
            [LFTRACE, "run", "hang.py:chain", "--input", "hi"], "STARTED", cwd=tmp_path, env=env
        )
        took = time.monotonic() - started
    assert code == 130, err
    assert "queued: 1 trace pending" in out, out
    if helper == "false":
        assert re.search(r"timed out after (0\.\d|1\.0)s", out), out
    assert len(requests) == 1
    assert took < 15, took  # not the 20 s LANGFUSE_TIMEOUT allows a finished run's delivery
