"""The outbox never gets stuck: leases die with their process, Retry-After is clamped, push says why it waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lftrace.config import Settings
from lftrace.delivery import MAX_RETRY_AFTER_S, Deliverer, clamp_retry_after, destinations_for
from lftrace.store import TraceStore, lease_owner, owner_alive
from support.otlp_receiver import Reply, running_receiver
from support.traces import sample_trace

LFTRACE = str(Path(sys.executable).parent / "lftrace")
SRC = Path(__file__).resolve().parents[1] / "src"
DEST = "otlp:http://127.0.0.1:9/v1/traces"


@pytest.fixture
def receiver():
    with running_receiver() as rec:
        yield rec


def _claim_in_child(store_path: Path, *, then: str) -> subprocess.Popen[str]:
    """A real process that claims every pending row (a 600 s lease), then exits or sleeps."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from lftrace.store import TraceStore, lease_owner
        store = TraceStore(sys.argv[1])
        print(len(store.claim_pending({DEST!r}, lease_owner(), 1000, lease_seconds=600)), flush=True)
        {"time.sleep(60)" if then == "sleep" else "import os; os._exit(0)"}
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(store_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "5"
    return proc


def test_a_dead_processes_lease_is_reclaimable_at_once(tmp_path):
    path = tmp_path / "traces.db"
    with TraceStore(path) as store:
        store.write_traces([sample_trace() for _ in range(5)], destinations=[DEST])
        proc = _claim_in_child(path, then="exit")
        proc.wait(10)
        assert len(store.claim_pending(DEST, lease_owner(), 100)) == 5


def test_a_live_processes_lease_is_respected_and_the_reason_is_said(tmp_path):
    path = tmp_path / "traces.db"
    with TraceStore(path) as store:
        store.write_traces([sample_trace() for _ in range(5)], destinations=[DEST])
        proc = _claim_in_child(path, then="sleep")
        try:
            assert store.claim_pending(DEST, lease_owner(), 100) == []
            reasons = store.undeliverable_reasons(DEST)
            assert len(reasons) == 1 and f"5 being delivered by another process (pid {proc.pid}" in reasons[0]
        finally:
            proc.kill()
            proc.wait()
        assert len(store.claim_pending(DEST, lease_owner(), 100)) == 5  # killed: its lease died with it


def test_looking_for_due_deliveries_takes_no_write_lock_when_none_is_due(tmp_path):
    """The export helper looks for due rows each time a long run writes a part: with none due, it must not take
    the store's write lock, which made the program's writer (and so the program) wait for it."""
    path = tmp_path / "traces.db"
    with TraceStore(path) as store:
        store.write_traces([sample_trace()], destinations=[DEST])
        assert len(store.claim_pending(DEST, lease_owner(), 100)) == 1
        store.mark_delivered(DEST, [store.last_trace_id()])
        import sqlite3

        writer = sqlite3.connect(path, isolation_level=None)  # another process's writer, mid-transaction
        writer.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            assert store.claim_pending(DEST, lease_owner(), 100) == []  # nothing due: answered from a read
            assert time.monotonic() - started < 1.0  # not after the busy handler's waits (up to 30 s)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        store.write_traces([sample_trace()], destinations=[DEST])
        assert len(store.claim_pending(DEST, lease_owner(), 100)) == 1  # one due: claimed as before


def test_owner_alive_rules():
    assert owner_alive(lease_owner())
    assert owner_alive("some-other-host:1:0:abcd")  # another host: trust the lease
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from lftrace.store import socket

    assert not owner_alive(f"{socket.gethostname()}:{dead.pid}::abcd")


@pytest.mark.parametrize(
    "header",
    [
        "inf",
        "nan",
        "1e30",
        "7000000000",
        "99999999999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "-5",
        "soon",
    ],
)
def test_hostile_retry_after_never_crashes_or_pins(tmp_path, receiver, header):
    settings = Settings(store=tmp_path / "traces.db", otlp_endpoint=receiver.url + "/v1/traces", timeout=0.5)
    with TraceStore(settings.store) as store:
        trace = sample_trace()
        store.write_traces([trace], destinations=[d.name for d in destinations_for(settings)])
        receiver.script(*[Reply(429, '{"message": "slow down"}', {"Retry-After": header}) for _ in range(5)])
        deliverer = Deliverer(store, destinations_for(settings), settings)
        started = time.monotonic()
        try:
            report = deliverer.deliver(time.monotonic() + settings.timeout)
        finally:
            deliverer.stop()
        assert time.monotonic() - started < 2
        assert report.pending == 1
        conn = store._conn
        assert conn is not None
        (next_ns,) = conn.execute("SELECT next_attempt_ns FROM deliveries").fetchone()
        assert next_ns <= time.time_ns() + int((MAX_RETRY_AFTER_S + 1) * 1e9)


def test_clamp_retry_after():
    assert clamp_retry_after(None) is None
    assert clamp_retry_after(float("nan")) is None
    assert clamp_retry_after(float("inf")) == MAX_RETRY_AFTER_S
    assert clamp_retry_after(1e30) == MAX_RETRY_AFTER_S
    assert clamp_retry_after(-3) == 0.0
    assert clamp_retry_after(2.5) == 2.5


def test_push_says_why_it_sends_nothing(tmp_path, receiver):
    settings = Settings(store=tmp_path / "traces.db", otlp_endpoint=receiver.url + "/v1/traces", timeout=0.5)
    with TraceStore(settings.store) as store:
        store.write_traces([sample_trace()], destinations=[d.name for d in destinations_for(settings)])
        receiver.script(Reply(503, "{}", {"Retry-After": "120"}))
        deliverer = Deliverer(store, destinations_for(settings), settings)
        deliverer.deliver(time.monotonic() + 0.5)
        deliverer.stop()
    env = {
        **os.environ,
        "LFTRACE_STORE": str(settings.store),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": settings.otlp_endpoint,
    }
    pushed = subprocess.run([LFTRACE, "push"], capture_output=True, text=True, env=env, timeout=60)
    assert pushed.returncode == 6
    assert "waiting for the server's Retry-After (the first in 1" in pushed.stderr, pushed.stderr


def test_sigkill_of_a_real_push_then_an_immediate_push_delivers_each_trace_once(tmp_path, receiver):
    store_path = tmp_path / "traces.db"
    endpoint = receiver.url + "/v1/traces"
    with TraceStore(store_path) as store:
        traces = [sample_trace() for _ in range(150)]  # two batches: 100, then 50
        store.write_traces(traces, destinations=[f"otlp:{endpoint}"])
    receiver.script(Reply(200), Reply(503, "{}", delay=20))  # the second request hangs until the kill
    env = {
        **os.environ,
        "LFTRACE_STORE": str(store_path),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "LANGFUSE_TIMEOUT": "15",
    }
    first = subprocess.Popen([LFTRACE, "push"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while len(receiver.otlp_requests(ok_only=False)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(receiver.otlp_requests(ok_only=False)) == 2
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    started = time.monotonic()
    second = subprocess.run([LFTRACE, "push"], capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - started < 15
    acknowledged = [s.trace_id.hex() for s in receiver.spans() if not s.parent_span_id]
    assert sorted(acknowledged) == sorted(t.id for t in traces)  # every trace, each acknowledged once


def test_ctrl_c_during_an_export_gives_the_batch_back_at_once(tmp_path):
    """A flush stopped by Ctrl-C while the backend has not answered (a notebook's interrupt, a program that catches
    KeyboardInterrupt and goes on): the traces it claimed are claimable again at once, not when the lease runs out
    (60 s or more, during which this still-running process could not send them either)."""
    hung = socket.create_server(("127.0.0.1", 0))  # takes the request and never answers
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(hung.accept()[0]), daemon=True).start()
    settings = Settings(
        store=tmp_path / "traces.db", otlp_endpoint=f"http://127.0.0.1:{hung.getsockname()[1]}/v1/traces", timeout=20
    )
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background test run inherits it ignored
    try:
        with TraceStore(settings.store) as store:
            destinations = destinations_for(settings)
            store.write_traces([sample_trace() for _ in range(3)], destinations=[d.name for d in destinations])
            deliverer = Deliverer(store, destinations, settings)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                deliverer.deliver(time.monotonic() + settings.timeout)
            assert time.monotonic() - started < 5 and held  # stopped while the request waited for its answer
            assert len(store.claim_pending(destinations[0].name, lease_owner(), 100)) == 3
    finally:
        signal.signal(signal.SIGINT, previous)
        for conn in held:
            conn.close()
        hung.close()


def test_a_flush_counts_only_what_still_waits_and_says_the_same_as_status(tmp_path):
    other = "otlp:http://127.0.0.1:4318/v1/traces"
    with TraceStore(tmp_path / "traces.db") as store:
        traces = [sample_trace() for _ in range(9)]
        store.write_traces(traces, destinations=[DEST, other])
        ids = [t.id for t in traces]
        store.mark_delivered(DEST, ids[:4])
        store.mark_retry(DEST, ids[4:6], "HTTP 503 from the server", time.time_ns())
        time.sleep(0.001)
        store.mark_failed(DEST, ids[6:7], "HTTP 400 from the server: bad span")  # the newest error
        store.mark_delivered(other, ids)
        everything = store.delivery_counts()
        waiting = store.waiting_counts([DEST, other, "otlp:http://unused"])
    assert waiting[DEST] == {"pending": 4, "failed": 1, "scores": 0, "last_error": "HTTP 400 from the server: bad span"}
    assert waiting[other] == {"pending": 0, "failed": 0, "scores": 0, "last_error": None}
    assert waiting["otlp:http://unused"] == {"pending": 0, "failed": 0, "scores": 0, "last_error": None}
    for name in (DEST, other):
        keys = ("pending", "failed", "last_error")
        assert {k: everything[name][k] for k in keys} == {k: waiting[name][k] for k in keys}
