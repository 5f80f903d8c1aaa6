"""`lftrace serve` with more clients nobody here wrote: an OpenInference-instrumented LangChain app (its own
OpenTelemetry SDK and OTLP exporter) and the community `langfuse-cli` (`lf`) listing and reading traces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serve_process import ServeProcess

from lftrace.store import TraceStore
from support.openai_server import openai_server

LF = Path(sys.executable).parent / "lf"  # langfuse-cli's command (dev dependency)

OPENINFERENCE_APP = r"""
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from openinference.instrumentation.langchain import LangChainInstrumentor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
LangChainInstrumentor().instrument(tracer_provider=provider)

from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

chain = ChatPromptTemplate.from_template("Tell me about {topic}") | ChatOpenAI(model="gpt-4o-mini", temperature=0.3)
print(chain.invoke({"topic": "otters"}).content)
provider.shutdown()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("clients") / "traces.db") as proc:
        yield proc


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_", "LFTRACE_"))}


def test_openinference_langchain_app(server, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(OPENINFERENCE_APP)
    with openai_server() as fake:
        env = {**_env(), "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.url}
        proc = subprocess.run(
            [sys.executable, str(script), server.url], env=env, capture_output=True, text=True, timeout=120
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with TraceStore(server.store, create=False) as store:
        [summary] = [s for s in store.list_traces(limit=None) if s.name == "RunnableSequence"]
        trace = store.get_trace(summary.id)
    by_name = {o.name: o for o in trace.observations}
    assert set(by_name) == {"RunnableSequence", "ChatPromptTemplate", "ChatOpenAI"}
    gen = by_name["ChatOpenAI"]
    assert gen.type == "GENERATION" and by_name["RunnableSequence"].type == "CHAIN"
    assert gen.parent_id == by_name["RunnableSequence"].id
    assert gen.model and gen.model.startswith("gpt-4o-mini")
    assert (
        gen.usage_details and gen.usage_details["total"] == gen.usage_details["input"] + gen.usage_details["output"] > 0
    )
    assert (gen.model_parameters or {}).get("temperature") == 0.3  # from llm.invocation_parameters
    assert "otters" in json.dumps(trace.input)  # input.value of the root span (OpenInference flattens it)
    assert "otters" in json.dumps(gen.input)


def _lf(server: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    if not LF.exists():
        pytest.fail(f"{LF} missing: install the dev dependencies (langfuse-cli)")
    env = {
        **_env(),
        "LANGFUSE_HOST": server.url,
        "LANGFUSE_PUBLIC_KEY": "pk-lf-cli",
        "LANGFUSE_SECRET_KEY": "sk-lf-cli",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "HOME": str(server.store.parent),  # no stray profile from the machine
    }
    return subprocess.run([str(LF), *args], env=env, capture_output=True, text=True, timeout=60)


def test_langfuse_cli_lists_and_reads_traces(server):
    from tests.test_serve import _sample_trace

    from lftrace.exporters.otlp import LangfuseExporter

    trace = _sample_trace("5e" * 16, 1_700_000_300_000_000_000)
    exporter = LangfuseExporter(server.url, "pk", "sk")
    assert exporter.export([trace]).ok
    exporter.close()
    listed = _lf(server, "traces", "list")
    assert listed.returncode == 0, listed.stderr
    assert trace.id in listed.stdout and "math" in listed.stdout
    got = _lf(server, "--json", "traces", "get", trace.id)
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    data = data[0] if isinstance(data, list) else data
    assert data["id"] == trace.id and data["sessionId"] == "sess-1" and data["userId"] == "user-1"
    tree = _lf(server, "traces", "tree", trace.id)
    assert tree.returncode == 0, tree.stderr
    assert "agent" in tree.stdout and "ChatOpenAI" in tree.stdout and "gpt-4o-mini" in tree.stdout
