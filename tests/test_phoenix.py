"""Integration: the sample agent's trace, exported through OTEL_EXPORTER_OTLP_ENDPOINT to a real Arize Phoenix.

Phoenix runs from its own venv (``make install-phoenix`` -> ``.venv-phoenix``) as a subprocess, once per
module, offline, on free ports (see the reference PHOENIX.md). Skipped only with LFTRACE_SKIP_PHOENIX=1;
a missing ``.venv-phoenix`` fails (``make test`` installs it).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOENIX = ROOT / ".venv-phoenix" / "bin" / "phoenix"
PROJECT = "lftrace-phoenix-test"

pytestmark = [
    pytest.mark.phoenix,
    pytest.mark.skipif(os.environ.get("LFTRACE_SKIP_PHOENIX") == "1", reason="LFTRACE_SKIP_PHOENIX=1"),
    pytest.mark.timeout(180),
    pytest.mark.heavy,  # the Phoenix server takes ~40 s to start
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    if not PHOENIX.exists():  # only LFTRACE_SKIP_PHOENIX=1 skips: a missing install must not pass silently
        pytest.fail(f"{PHOENIX} is not installed (run `make install-phoenix`, or set LFTRACE_SKIP_PHOENIX=1)")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
        "PHOENIX_ENABLE_MCP_SERVER": "false",
        "PHOENIX_LOG_MIGRATIONS": "false",
        "PHOENIX_LOGGING_LEVEL": "warning",
        "PHOENIX_SQL_DATABASE_URL": "sqlite:///:memory:",
        "TMPDIR": str(work),
    }
    log = (work / "phoenix.log").open("w")
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"phoenix serve exited with {proc.returncode}: {(work / 'phoenix.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"phoenix not ready after 90 s: {(work / 'phoenix.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def load_sample_agent():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("lftrace_sample_agent", ROOT / "sample_graphs" / "agent.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph


def phoenix_spans(url: str, trace_id: str, expected: int) -> list[dict]:
    """Poll: Phoenix ingests asynchronously (spans appear ~0.5 s later)."""
    deadline = time.monotonic() + 20
    spans: list[dict] = []
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/v1/projects/{PROJECT}/spans", params={"trace_id": trace_id, "limit": 1000})
        if response.status_code == 200:
            spans = response.json()["data"]
            if len(spans) >= expected:
                return spans
        time.sleep(0.3)
    return spans


def test_sample_agent_trace_arrives_in_phoenix(phoenix, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-project-name={PROJECT}")
    from lftrace import get_client
    from lftrace.exporters.attributes import span_name
    from lftrace.langchain import CallbackHandler

    graph = load_sample_agent()
    handler = CallbackHandler()
    graph.invoke(
        {"messages": [("user", "What is the weather in Paris, and what is 6 times 7?")]},
        config={"callbacks": [handler]},
    )
    client = get_client()
    client.flush()
    trace = client.get_trace(handler.last_trace_id)
    assert client.last_delivery is not None and client.last_delivery.pending == 0, client.last_delivery

    spans = phoenix_spans(phoenix, trace.id, len(trace.observations))
    assert len(spans) == len(trace.observations)
    by_id = {s["context"]["span_id"]: s for s in spans}
    local = {o.id: o for o in trace.observations}
    assert set(by_id) == set(local)
    for span_id, obs in local.items():
        span = by_id[span_id]
        assert span["context"]["trace_id"] == trace.id
        assert span["parent_id"] == obs.parent_id  # parentage preserved (None for the root)
        assert span["name"] == span_name(obs, "otlp")
        if obs.type == "GENERATION":
            assert span["name"] == f"chat {obs.model}"
            assert span["span_kind"] == "LLM"
            usage = obs.usage_details or {}
            attrs = span["attributes"]
            assert attrs["llm.token_count.prompt"] == sum(v for k, v in usage.items() if k.startswith("input"))
            assert attrs["llm.token_count.completion"] == sum(v for k, v in usage.items() if k.startswith("output"))
            assert attrs["llm.token_count.total"] == usage.get("total")
        elif obs.type == "TOOL":
            assert span["name"] == f"execute_tool {obs.name}"
            assert span["span_kind"] == "TOOL"
        elif obs.type == "AGENT":
            assert span["name"] == f"invoke_agent {obs.name}"
        else:
            assert span["name"] == obs.name
    assert sum(o.type == "GENERATION" for o in trace.observations) >= 2
    assert sum(o.type == "TOOL" for o in trace.observations) >= 1

    # per-trace token totals as Phoenix computes them
    response = httpx.get(f"{phoenix}/v1/projects/{PROJECT}/traces", params={"include_spans": "false", "limit": 100})
    assert response.status_code == 200, response.text
    (ours,) = [t for t in response.json()["data"] if t["trace_id"] == trace.id]
    usage = trace.usage
    assert ours["token_count_total"] == trace.total_tokens
    assert ours["token_count_prompt"] == sum(v for k, v in usage.items() if k.startswith("input"))
