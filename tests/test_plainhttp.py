"""Exports to an endpoint on this machine go over the standard library's http.client (exporters/plainhttp.py); a
proxy in the environment, https or another host keep httpx. Real servers on 127.0.0.1 throughout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lftrace.exporters.otlp import OtlpExporter
from lftrace.exporters.plainhttp import usable_for
from support.otlp_receiver import Reply, closed_port
from support.traces import sample_trace

ROOT = Path(__file__).resolve().parents[1]


def test_loopback_export_never_imports_httpx() -> None:
    """The point of the fast path: a program exporting to a local collector does not load httpx at all."""
    script = textwrap.dedent(
        """
        import sys
        from lftrace.exporters.otlp import OtlpExporter
        from support.otlp_receiver import running_receiver
        from support.traces import sample_trace

        with running_receiver() as receiver:
            exporter = OtlpExporter(receiver.url + "/v1/traces")
            first = exporter.export([sample_trace()])
            second = exporter.export([sample_trace()])
            exporter.close()
            print(first.ok, second.ok, len(receiver.spans()), "httpx" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "all_proxy")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second, spans, httpx_loaded = out.stdout.split()
    assert (first, second, httpx_loaded) == ("True", "True", "False")
    assert int(spans) == 2 * len(sample_trace().observations)


def test_answers_read_as_from_httpx(receiver: Any) -> None:
    """Status, JSON message, Retry-After and a 207's answer come through the plain client as through httpx."""
    receiver.script(
        Reply(429, '{"message": "slow down"}', {"Retry-After": "7"}),
        Reply(207, '{"errors": [{"id": "x", "status": 400}]}', {"Content-Type": "application/json; charset=utf-8"}),
    )
    exporter = OtlpExporter(receiver.url + "/v1/traces")
    try:
        limited = exporter.export([sample_trace()])
        partial = exporter.send(b"{}", url=receiver.url + "/v1/traces", content_type="application/json")
    finally:
        exporter.close()
    assert (limited.ok, limited.retryable, limited.status, limited.retry_after) == (False, True, 429, 7.0)
    assert limited.message.endswith(": slow down")
    assert (partial.ok, partial.status) == (True, 207)
    assert '"status": 400' in partial.answer


def test_connection_refused_is_a_retryable_cannot_connect() -> None:
    port = closed_port()
    exporter = OtlpExporter(f"http://127.0.0.1:{port}/v1/traces")
    result = exporter.export([sample_trace()], timeout=5)
    exporter.close()
    assert (result.ok, result.retryable, result.status) == (False, True, None)
    assert result.message == f"cannot connect to http://127.0.0.1:{port}/v1/traces"


class _OneRequestPerConnection:
    """An HTTP/1.1 server that answers one request per connection and then closes it, without saying
    ``Connection: close``: a kept connection found closed on the next request (as an idle timeout does)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/traces"
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    continue
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
                time.sleep(0.05)  # closed after the client has taken the answer and kept the connection


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    server = _OneRequestPerConnection()
    exporter = OtlpExporter(server.url)
    try:
        results = [exporter.export([sample_trace()]) for _ in range(3)]
    finally:
        exporter.close()
        server.sock.close()
    assert [r.ok for r in results] == [True, True, True], [r.message for r in results]
    assert server.requests == 3
    assert server.connections >= 3


@pytest.fixture()
def proxy() -> Iterator[dict[str, Any]]:
    """A forward proxy stand-in on 127.0.0.1: records the request line (an absolute URL) and answers 200."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen}
    finally:
        server.shutdown()
        server.server_close()


def test_a_proxy_in_the_environment_keeps_httpx_which_uses_it(
    proxy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()  # nothing listens there: only the proxy can have answered
    endpoint = f"http://localhost:{port}/v1/traces"
    monkeypatch.setenv("HTTP_PROXY", proxy["url"])
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert not usable_for(endpoint)
    exporter = OtlpExporter(endpoint)
    try:
        result = exporter.export([sample_trace()])
    finally:
        exporter.close()
    assert result.ok, result.message
    assert proxy["seen"] == [endpoint]


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://127.0.0.1:4318/v1/traces", True),
        ("http://localhost:3000/api/public/otel/v1/traces", True),
        ("http://[::1]:4318/v1/traces", True),
        ("https://127.0.0.1:4318/v1/traces", False),  # TLS: httpx
        ("http://collector.internal:4318/v1/traces", False),  # another host: httpx
        ("http://127.0.0.1:notaport/v1/traces", False),  # httpx says what is wrong with it
    ],
)
def test_which_endpoints_take_the_plain_client(url: str, plain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert usable_for(url) is plain
