"""`lftrace serve --forward`: a durable relay. Upstream down: traces wait in the outbox; up: they go out."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import httpx
from tests.serve_process import LFTRACE, ServeProcess

from lftrace.exporters.encode import encode_traces
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore
from support.otlp_receiver import Receiver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _trace(n: int) -> Trace:
    trace_id = f"{n:032x}"
    start = 1_700_000_000_000_000_000 + n
    obs = Observation(f"{n:016x}", trace_id, None, "CHAIN", "relayed", start, start + 1000, input={"n": n})
    return Trace(trace_id, "relayed", start, observations=[obs], end_time=start + 1000)


def _counts(store_path, destination: str) -> dict:
    with TraceStore(store_path, create=False) as store:
        return store.delivery_counts().get(destination, {})


def test_forward_keeps_traces_while_upstream_is_down_and_sends_them_when_up(tmp_path):
    port = _free_port()  # nothing listens here yet: the upstream is down
    upstream = f"http://127.0.0.1:{port}"
    destination = f"otlp:{upstream}/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": upstream, "LANGFUSE_FLUSH_INTERVAL": "0.2"}
    with ServeProcess(tmp_path / "t.db", "--forward", env=env) as server:
        assert any("forwarding to: otlp " + upstream in line for line in server.banner)
        body = encode_traces([_trace(n) for n in range(1, 4)]).SerializeToString()
        response = httpx.post(
            server.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        assert response.status_code == 200  # accepted locally, whatever the upstream does
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _counts(server.store, destination).get("last_error"):
            time.sleep(0.1)
        counts = _counts(server.store, destination)
        assert counts["pending"] == 3 and counts["delivered"] == 0 and "cannot connect" in counts["last_error"]
        receiver = Receiver(port=port)  # the upstream comes back
        try:
            spans = receiver.wait_for_spans(3, timeout=30)
            assert sorted(s.trace_id.hex() for s in spans) == [f"{n:032x}" for n in range(1, 4)]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _counts(server.store, destination).get("delivered") != 3:
                time.sleep(0.1)
            assert _counts(server.store, destination)["delivered"] == 3
        finally:
            receiver.close()


def test_forward_to_itself_is_refused(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    proc = subprocess.run(
        [*LFTRACE, "--port", str(port), "--store", str(tmp_path / "t.db"), "--forward"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "would send traces to this server itself" in proc.stderr


def test_forward_without_upstream_is_a_usage_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    proc = subprocess.run(
        [*LFTRACE, "--port", "0", "--store", str(tmp_path / "t.db"), "--forward"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--forward needs an upstream" in proc.stderr
