"""``lftrace run --stream``: a subgraph's nodes stream too; ``--tokens``: a graph's model tokens printed as they
come (LangGraph's "messages" stream mode).

Real ``lftrace`` subprocesses on the sample graphs: offline with the fake model (which streams token by token),
and with ``ChatOpenAI`` against a real OpenAI-compatible server on 127.0.0.1 (SSE streaming, stream usage).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.openai_server import openai_server

REPO = Path(__file__).resolve().parent.parent
LFTRACE = str(Path(sys.executable).parent / "lftrace")


def lftrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60, env=env)


def generations(env: dict[str, str] | None = None) -> list[dict]:
    trace = json.loads(lftrace("show", "last", "--json", env=env).stdout)
    return [o for o in trace["observations"] if o["type"] == "GENERATION"]


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_tokens_show_after_their_node_and_the_trace_records_the_same_usage(isolated_env, mode):
    agent = f"{REPO / 'sample_graphs' / 'agent.py'}:graph"
    plain = lftrace("run", agent, "-i", "What is the weather in Paris?", *mode)
    assert plain.returncode == 0, plain.stderr
    usage_plain = [g["usageDetails"] for g in generations()]

    ran = lftrace("run", agent, "-i", "What is the weather in Paris?", "--tokens", *mode)
    assert ran.returncode == 0, ran.stderr
    live = ran.stdout.split("\n\n")[0].splitlines()  # what was printed while the graph ran, before the tree
    assert live == [
        '▸ agent: [tool calls: get_weather({"city": "Paris"})]',  # a tool call streams no text: no token line
        "▸ tools: Paris: 18°C and sunny",
        "  agent › Here is what I found: Paris: 18°C and sunny.",
        "▸ agent: Here is what I found: Paris: 18°C and sunny.",
    ]
    streamed = generations()
    assert [g["usageDetails"] for g in streamed] == usage_plain  # streaming changed nothing the trace records
    assert all(g["completionStartTime"] >= g["startTime"] for g in streamed)  # time to first token


def test_tokens_of_chat_openai_through_a_real_openai_compatible_server(isolated_env):
    chatbot = f"{REPO / 'sample_graphs' / 'chatbot.py'}:graph"
    with openai_server() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test-not-real"}
        plain = lftrace("run", chatbot, "-i", "tracing", env=env)
        assert plain.returncode == 0, plain.stderr
        (usage_plain,) = [g["usageDetails"] for g in generations(env)]
        ran = lftrace("run", chatbot, "-i", "tracing", "--tokens", env=env)
        assert ran.returncode == 0, ran.stderr
        (streamed,) = generations(env)
        requests = [r["body"] for r in server.requests]
    reply = "Here is an answer about: tracing. Langfuse traces LLM apps."
    assert f"  chatbot › {reply}" in ran.stdout.splitlines()
    assert [(r.get("stream"), (r.get("stream_options") or {}).get("include_usage")) for r in requests] == [
        (False, None),
        (True, True),  # the sample's ChatOpenAI sets stream_usage=True: the usage survives streaming
    ]
    assert streamed["usageDetails"] == usage_plain and streamed["output"]["content"] == reply
    assert streamed["completionStartTime"] > streamed["startTime"]


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_stream_shows_the_nodes_inside_a_subgraph_under_its_path(isolated_env, mode):
    shapes = Path(__file__).resolve().parent / "graphs" / "shapes.py"
    ran = lftrace("run", f"{shapes}:subgraph_graph", "-i", '{"question": "q"}', "--stream", *mode)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n\n")[0].splitlines() == [
        '▸ researcher › research: {"notes": ["looked up q"]}',
        '▸ researcher › summarise: {"notes": ["summarised"]}',
        '▸ researcher: {"question": "q", "notes": ["looked up q", "summarised"]}',
        '▸ write_answer: {"answer": "looked up q / summarised"}',
    ]
    assert json.loads(lftrace("show", "last", "--json").stdout)["output"] == {
        "question": "q",
        "notes": ["looked up q", "summarised"],
        "answer": "looked up q / summarised",
    }  # the root graph's state, not the subgraph's

    paused = lftrace("run", f"{shapes}:nested_interrupt_graph", "-i", "hi", "--stream", *mode)
    assert paused.returncode == 0, paused.stderr
    live = paused.stdout.split("\n\n")[0].splitlines()
    assert len(live) == 1 and live[0].startswith('▸ __interrupt__: [{"value": {"question": "approve the plan?"')
