"""The official Langfuse JavaScript SDKs against a real `lftrace serve`, run with the machine's Node.js:
v5 (`@langfuse/langchain` + `@langfuse/otel`, OTLP) and the legacy `langfuse-langchain` 3.x (batch ingestion),
each tracing a `@langchain/core` chain with a fake chat model. Packages: `make install-node` (.node-test/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.serve_process import ServeProcess

from lftrace.store import TraceStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "js"
NODE_TEST = ROOT / ".node-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("js") / "traces.db") as proc:
        yield proc


def run_node(sdk: str, script: str, env: dict[str, str]) -> str:
    node = shutil.which("node")
    workdir = NODE_TEST / sdk
    if node is None or not (workdir / "node_modules").is_dir():
        pytest.fail(f"Node.js or {workdir}/node_modules missing: run `make install-node`")
    shutil.copy(SCRIPTS / script, workdir / script)  # ESM resolves packages next to the script
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    proc = subprocess.run([node, script], cwd=workdir, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"TRACE_ID (\S+)", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def _names(trace) -> dict[str, object]:
    return {o.name: o for o in trace.observations}


def test_official_js_sdk_v5_langchain(server):
    env = {"LANGFUSE_BASE_URL": server.url, "LANGFUSE_PUBLIC_KEY": "pk-lf-js", "LANGFUSE_SECRET_KEY": "sk-lf-js"}
    trace_id = run_node("v5", "sdk_v5_chain.mjs", env)
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    by_name = _names(trace)
    assert set(by_name) == {"RunnableSequence", "ChatPromptTemplate", "FakeListChatModel"}
    gen = by_name["FakeListChatModel"]
    assert gen.type == "GENERATION" and gen.parent_id == by_name["RunnableSequence"].id
    assert "keep an eye on the mouse" in str(gen.output)
    assert trace.session_id == "js-session" and trace.user_id == "js-user" and trace.tags == ["js-v5"]
    assert trace.input == {"topic": "cats"}


def test_legacy_js_langfuse_langchain(server):
    env = {"LANGFUSE_BASEURL": server.url, "LANGFUSE_PUBLIC_KEY": "pk-lf-js", "LANGFUSE_SECRET_KEY": "sk-lf-js"}
    trace_id = run_node("legacy", "legacy_chain.mjs", env)
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    by_name = _names(trace)
    assert set(by_name) == {"RunnableSequence", "ChatPromptTemplate", "FakeListChatModel"}
    gen = by_name["FakeListChatModel"]
    assert gen.type == "GENERATION" and gen.parent_id == by_name["RunnableSequence"].id
    assert gen.input == "Tell me a fact about otters" or "otters" in str(gen.input)
    assert "hold hands" in str(gen.output)
    assert trace.session_id == "js-legacy-session" and trace.user_id == "js-legacy-user"
