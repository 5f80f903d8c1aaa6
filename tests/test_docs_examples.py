"""The Langfuse documentation's examples work with lftrace after changing only the imports.

Each example runs as a real subprocess, with real ``langchain-openai`` talking HTTP to an
OpenAI-compatible server on 127.0.0.1; the trace is then read back from the store.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lftrace.store import TraceStore
from support.openai_server import openai_server

EXAMPLES = Path(__file__).parent / "docs_examples"


def run_example(
    name: str, tmp_path: Path, server_url: str, extra_env: dict[str, str] | None = None
) -> tuple[str, Path]:
    source = (EXAMPLES / name).read_text()
    changed = source.replace("from langfuse", "from lftrace")
    # Only the imports differ from the documentation's code.
    assert [line for line in source.splitlines() if "langfuse" in line and "import" in line]
    assert changed.replace("from lftrace", "from langfuse") == source
    script = tmp_path / name
    script.write_text(changed)
    store = tmp_path / "traces.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_"))}
    env.update({"OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": server_url, "LFTRACE_STORE": str(store)})
    env.update(extra_env or {})
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"TRACE_ID ([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout
    return match.group(1), store


def test_example1_constructor_arguments_lcel_chain(tmp_path):
    with openai_server() as server:
        trace_id, store_path = run_example("example1_constructor.py", tmp_path, server.url)
    with TraceStore(store_path, create=False) as store:
        trace = store.get_trace(trace_id)
        # No network here: the configured Langfuse Cloud is unreachable, so the trace waits in the outbox.
        assert set(store.delivery_state(trace_id).values()) <= {"pending", "failed"}
        assert store.delivery_state(trace_id)
    names = [(o.type, o.name) for o in trace.observations]
    assert names == [("CHAIN", "RunnableSequence"), ("CHAIN", "ChatPromptTemplate"), ("GENERATION", "ChatOpenAI")]
    gen = trace.observations[2]
    assert gen.model == "gpt-4o-2024-08-06"
    assert (
        gen.usage_details and gen.usage_details["total"] == gen.usage_details["input"] + gen.usage_details["output"] > 0
    )
    assert gen.cost_details and gen.cost_details["total"] > 0
    assert trace.input == {"topic": "cats"}


def test_example2_keys_from_dotenv(tmp_path):
    (tmp_path / ".env").write_text(
        'LANGFUSE_SECRET_KEY="sk-lf-0000111122223333"\nLANGFUSE_PUBLIC_KEY="pk-lf-4444555566667777"\nLANGFUSE_HOST="http://127.0.0.1:9"\n'
    )
    with openai_server() as server:
        trace_id, store_path = run_example("example2_env.py", tmp_path, server.url)
    with TraceStore(store_path, create=False) as store:
        assert store.get_trace(trace_id).observations
        assert list(store.delivery_state(trace_id)) == ["langfuse:http://127.0.0.1:9"]


def test_example3_langgraph_chatbot_streamed(tmp_path):
    with openai_server() as server:
        trace_id, store_path = run_example("example3_langgraph.py", tmp_path, server.url)
    with TraceStore(store_path, create=False) as store:
        trace = store.get_trace(trace_id)
    by_name = {o.name: o for o in trace.observations}
    assert trace.name == "LangGraph"
    assert by_name["chatbot"].type == "CHAIN"
    assert by_name["chatbot"].metadata and by_name["chatbot"].metadata.get("langgraph_node") == "chatbot"
    gen = by_name["ChatOpenAI"]
    assert gen.type == "GENERATION" and gen.parent_id == by_name["chatbot"].id
    assert (gen.model_parameters or {}).get("temperature") == 0.2
    assert gen.usage_details and gen.usage_details["output"] > 0
