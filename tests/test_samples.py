"""The sample graphs run offline on the deterministic fake model, with realistic usage and real tool calls."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

REPO = Path(__file__).resolve().parent.parent
SAMPLES = {
    "joke_chain": "chain",
    "chatbot": "graph",
    "agent": "graph",
    "multi_agent": "graph",
    "rag": "chain",
}


class UsageRecorder(BaseCallbackHandler):
    """Every chat model answer of a run: model name, usage, streamed tokens."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        self.tokens = 0

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens += 1

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        message = response.generations[0][0].message
        self.answers.append(
            {
                "model_name": message.response_metadata.get("model_name"),
                "usage": dict(message.usage_metadata or {}),
                "token_usage": message.response_metadata.get("token_usage"),
                "tool_calls": [(c["name"], c["args"]) for c in message.tool_calls],
            }
        )


@pytest.fixture
def samples(monkeypatch):
    """Import ``sample_graphs.<name>`` from the repo root, fresh for each test (the model is chosen at import)."""
    monkeypatch.syspath_prepend(str(REPO))

    def load(name: str) -> Any:
        for module in [m for m in sys.modules if m == "sample_graphs" or m.startswith("sample_graphs.")]:
            monkeypatch.delitem(sys.modules, module)
        return importlib.import_module(f"sample_graphs.{name}")

    return load


def assert_realistic_usage(answers: list[dict[str, Any]]) -> None:
    assert answers, "no chat model ran"
    for answer in answers:
        usage = answer["usage"]
        assert answer["model_name"] == "fake-gpt-4o-mini"
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert answer["token_usage"] == {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }


def run_sample(module: Any, name: str, value: Any, *, stream: bool = False) -> tuple[Any, UsageRecorder]:
    recorder = UsageRecorder()
    runnable = getattr(module, SAMPLES[name])
    config = {"callbacks": [recorder]}
    if stream:
        return list(runnable.stream(value, config=config)), recorder
    return runnable.invoke(value, config=config), recorder


QUESTIONS = {
    "joke_chain": {"topic": "cats"},
    "chatbot": {"messages": [HumanMessage(content="What is Langfuse?")]},
    "agent": {"messages": [HumanMessage(content="What is the weather in Paris, and what is 6 times 7?")]},
    "multi_agent": {"messages": [HumanMessage(content="Who created LangGraph, and what is 6 times 7?")]},
    "rag": "How does lftrace store traces?",
}


def test_joke_chain_answers_with_a_joke_and_usage(samples):
    module = samples("joke_chain")
    answer, recorder = run_sample(module, "joke_chain", {"topic": "cats"})
    assert isinstance(answer, AIMessage)
    assert "cat" in answer.text.lower()
    assert_realistic_usage(recorder.answers)
    assert answer.usage_metadata == recorder.answers[0]["usage"]


def test_joke_chain_streams_token_by_token_with_usage_on_the_last_chunk(samples):
    module = samples("joke_chain")
    invoked, _ = run_sample(module, "joke_chain", {"topic": "dogs"})
    chunks, recorder = run_sample(module, "joke_chain", {"topic": "dogs"}, stream=True)
    assert len(chunks) > 5 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == invoked.text
    assert [c.usage_metadata is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].usage_metadata == invoked.usage_metadata
    assert recorder.tokens >= len(chunks) - 1  # on_llm_new_token per content token: time to first token exists
    assert_realistic_usage(recorder.answers)


def test_chatbot_matches_the_docs_example_shape(samples):
    module = samples("chatbot")
    updates, recorder = run_sample(module, "chatbot", QUESTIONS["chatbot"], stream=True)
    assert len(updates) == 1 and list(updates[0]) == ["chatbot"]
    (message,) = updates[0]["chatbot"]["messages"]
    assert isinstance(message, AIMessage)
    assert message.text.startswith("Langfuse is")
    assert message.response_metadata["finish_reason"] == "stop"
    assert_realistic_usage(recorder.answers)


def test_chatbot_streams_messages_in_langgraph_messages_mode(samples):
    module = samples("chatbot")
    pieces = list(module.graph.stream(QUESTIONS["chatbot"], stream_mode="messages"))
    chunks = [chunk for chunk, meta in pieces if meta["langgraph_node"] == "chatbot"]
    assert len(chunks) > 5
    assert "".join(c.text for c in chunks).startswith("Langfuse is an open-source")
    assert pieces[0][1]["ls_model_name"] == "fake-gpt-4o-mini"


def test_samples_run_async_too(samples):
    chain = samples("joke_chain").chain
    agent = samples("agent").graph

    async def run() -> tuple[list[Any], dict[str, Any]]:
        chunks = [chunk async for chunk in chain.astream({"topic": "cats"})]
        result = await agent.ainvoke({"messages": [HumanMessage(content="What is 3 plus 4?")]})
        return chunks, result

    chunks, result = asyncio.run(run())
    assert len(chunks) > 5 and chunks[-1].usage_metadata["total_tokens"] > 0
    assert "".join(c.text for c in chunks).startswith("Why did the cat")
    assert result["messages"][-1].text == "Here is what I found: 7.0."


def test_usage_counts_about_four_characters_per_token_including_tool_schemas(samples):
    module = samples("_models")
    model = module.FakeChatModel()
    question = "x" * 400
    plain = model.invoke(question)
    assert plain.usage_metadata["input_tokens"] == math.ceil((len("human") + 400) / 4)
    assert plain.usage_metadata["output_tokens"] == math.ceil(len(plain.text) / 4)
    with_tools = model.bind_tools(samples("agent").TOOLS).invoke(question)
    assert with_tools.usage_metadata["input_tokens"] > plain.usage_metadata["input_tokens"] + 50


def test_agent_calls_its_tools_and_answers_from_their_results(samples):
    module = samples("agent")
    result, recorder = run_sample(module, "agent", QUESTIONS["agent"])
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert {(c["name"], json.dumps(c["args"])) for c in messages[1].tool_calls} == {
        ("multiply", '{"a": 6, "b": 7}'),
        ("get_weather", '{"city": "Paris"}'),
    }
    tool_outputs = {m.name: m.text for m in messages if isinstance(m, ToolMessage)}
    assert tool_outputs == {"multiply": "42.0", "get_weather": "Paris: 18°C and sunny"}
    assert "42" in messages[-1].text and "18°C and sunny" in messages[-1].text
    assert [a["tool_calls"] != [] for a in recorder.answers] == [True, False]
    assert_realistic_usage(recorder.answers)
    assert recorder.answers[1]["usage"]["input_tokens"] > recorder.answers[0]["usage"]["input_tokens"]


def test_agent_streams_node_updates(samples):
    module = samples("agent")
    updates, recorder = run_sample(module, "agent", QUESTIONS["agent"], stream=True)
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    assert_realistic_usage(recorder.answers)


def test_agent_without_a_tool_question_answers_directly(samples):
    module = samples("agent")
    result, _ = run_sample(module, "agent", {"messages": [HumanMessage(content="Hello!")]})
    assert [type(m).__name__ for m in result["messages"]] == ["HumanMessage", "AIMessage"]
    assert "Hello!" in result["messages"][-1].text


def test_multi_agent_visits_both_specialists_then_finishes(samples):
    module = samples("multi_agent")
    updates, recorder = run_sample(module, "multi_agent", QUESTIONS["multi_agent"], stream=True)
    visited = [next(iter(u)) for u in updates]
    assert visited == ["supervisor", "researcher", "supervisor", "math_agent", "supervisor"]
    assert updates[-1]["supervisor"] == {"next": "FINISH"}
    research = updates[1]["researcher"]["messages"][0]
    math_answer = updates[3]["math_agent"]["messages"][0]
    assert research.name == "researcher" and "LangChain Inc." in research.text
    assert math_answer.name == "math_agent" and "42" in math_answer.text
    # 3 supervisor decisions + 2 model calls in each specialist (tool call, answer)
    assert len(recorder.answers) == 7
    assert_realistic_usage(recorder.answers)


def test_multi_agent_routing_rules(samples):
    module = samples("multi_agent")

    def route(question: str, *done: str) -> str:
        messages = [HumanMessage(content=question)] + [AIMessage(content="ok", name=name) for name in done]
        return module.route(messages)

    assert route("What is 6 times 7?") == "math_agent"
    assert route("What is 6 times 7?", "math_agent") == "FINISH"
    assert route("Tell me about Langfuse") == "researcher"
    assert route("Hello") == "researcher"
    assert route("Who made LangGraph and what is 2 plus 3?", "researcher") == "math_agent"
    assert module.parse_route("Next: math_agent, then FINISH") == "math_agent"
    assert module.parse_route("no idea") == "FINISH"


def test_rag_takes_a_plain_question_and_answers_from_retrieved_context(samples):
    module = samples("rag")
    answer, recorder = run_sample(module, "rag", QUESTIONS["rag"])
    assert answer == "According to the context: lftrace stores traces in a local SQLite file."
    assert [d.metadata["source"] for d in module.retriever.invoke(QUESTIONS["rag"])] == ["lftrace.md", "langfuse.md"]
    streamed, _ = run_sample(module, "rag", QUESTIONS["rag"], stream=True)
    assert len(streamed) > 3 and "".join(streamed) == answer
    assert_realistic_usage(recorder.answers)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_two_runs_give_identical_outputs(samples, name):
    module = samples(name)

    def outcome() -> Any:
        result, recorder = run_sample(module, name, QUESTIONS[name])
        messages = result["messages"] if isinstance(result, dict) else [result]
        shown = [
            (type(m).__name__, m.text, getattr(m, "tool_calls", None), getattr(m, "tool_call_id", None))
            if hasattr(m, "text")
            else m
            for m in messages
        ]
        return shown, recorder.answers

    assert outcome() == outcome()


def test_model_choice_follows_the_environment(samples, monkeypatch):
    module = samples("_models")
    assert module.model_kind() == "fake"
    assert module.get_chat_model()._llm_type == "fake-chat"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    openai_model = module.get_chat_model()
    assert module.model_kind() == "openai"
    assert type(openai_model).__name__ == "ChatOpenAI"
    assert openai_model.model_name == "gpt-4o-mini" and openai_model.stream_usage is True
    monkeypatch.setenv("LFTRACE_SAMPLE_MODEL", "gpt-4.1-nano")
    assert module.get_chat_model().model_name == "gpt-4.1-nano"
    monkeypatch.setenv("LFTRACE_SAMPLE_MODEL", "fake")
    assert module.model_kind() == "fake"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("LFTRACE_SAMPLE_MODEL")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert module.model_kind() == "openai"
    monkeypatch.setenv("LFTRACE_SAMPLE_MODEL", "local")
    assert module.model_kind() == "local" and module.scripted_decisions()


def test_samples_load_by_file_path_and_by_module_name_from_any_directory(tmp_path):
    """What `lftrace run sample_graphs/agent.py:graph` does: load a file by path, in a fresh process."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.util, json, sys
        repo = {str(REPO)!r}
        results = {{}}
        for name, attr in {SAMPLES!r}.items():
            spec = importlib.util.spec_from_file_location("lftrace_target_" + name, f"{{repo}}/sample_graphs/{{name}}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            results[name] = type(getattr(module, attr)).__name__
        # after a file-path load the package is importable by name too
        results["by_name"] = type(importlib.import_module("sample_graphs.agent").graph).__name__
        print(json.dumps(results))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results == {
        "joke_chain": "RunnableSequence",
        "chatbot": "CompiledStateGraph",
        "agent": "CompiledStateGraph",
        "multi_agent": "CompiledStateGraph",
        "rag": "RunnableSequence",
        "by_name": "CompiledStateGraph",
    }


def test_samples_load_by_module_name_from_the_repo_root():
    script = "import importlib, sys; print(type(importlib.import_module('sample_graphs.multi_agent').graph).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CompiledStateGraph"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LFTRACE_SAMPLE"))}
    env.pop("PYTHONPATH", None)
    return env
