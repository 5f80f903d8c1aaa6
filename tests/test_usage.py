"""normalise_usage / usage_from_generations: every provider shape -> Langfuse usage_details."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from lftrace.usage import normalise_usage, usage_from_generations


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            {"input": 10, "output": 5, "total": 15},
            id="langchain-usage_metadata",
        ),
        pytest.param(
            {
                "input_tokens": 350,
                "output_tokens": 240,
                "total_tokens": 590,
                "input_token_details": {"audio": 10, "cache_creation": 200, "cache_read": 100},
                "output_token_details": {"audio": 10, "reasoning": 200},
            },
            {
                "input": 40,
                "input_audio": 10,
                "input_cache_creation": 200,
                "input_cache_read": 100,
                "output": 30,
                "output_audio": 10,
                "output_reasoning": 200,
                "total": 590,
            },
            id="langchain-usage_metadata-details",
        ),
        pytest.param(
            {
                "prompt_tokens": 1200,
                "completion_tokens": 300,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": None},
                "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
            },
            # plain OpenAI usage: what the Langfuse server makes of it (null details skipped, zeros kept)
            {
                "input": 176,
                "input_cached_tokens": 1024,
                "output": 172,
                "output_reasoning_tokens": 128,
                "output_audio_tokens": 0,
                "total": 1500,
            },
            id="openai-token_usage",
        ),
        pytest.param(
            {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            {"input": 7, "output": 3, "total": 10},
            id="openai-plain",
        ),
        pytest.param(
            {
                "input_tokens": 20,
                "output_tokens": 30,
                "cache_creation_input_tokens": 500,
                "cache_read_input_tokens": 1000,
            },
            # Anthropic's input excludes cache reads/creation: kept under Anthropic's names; total counts them
            {
                "input": 20,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 500,
                "output": 30,
                "total": 1550,
            },
            id="anthropic-raw",
        ),
        pytest.param(
            {"inputTokenCount": 11, "outputTokenCount": 22},
            {"input": 11, "output": 22, "total": 33},
            id="bedrock-invocation-metrics",
        ),
        pytest.param(
            {"inputTokenCount": [5, 6], "outputTokenCount": [10, 12], "totalTokenCount": [15, 18]},
            {"input": 11, "output": 22, "total": 33},
            id="bedrock-streamed-lists",
        ),
        pytest.param(
            {
                "prompt_token_count": 100,
                "candidates_token_count": 40,
                "total_token_count": 160,
                "cached_content_token_count": 60,
                "thoughts_token_count": 20,
            },
            {"input": 100, "cached_content_token_count": 60, "output": 40, "thoughts_token_count": 20, "total": 160},
            id="vertex",
        ),
        pytest.param(
            {"prompt_eval_count": 26, "eval_count": 290, "eval_duration": 4709213000},
            {"input": 26, "output": 290, "total": 316},
            id="ollama",
        ),
        pytest.param(
            {"input_token_count": 4, "generated_token_count": 9},
            {"input": 4, "output": 9, "total": 13},
            id="ibm-watsonx",
        ),
    ],
)
def test_every_usage_shape(raw, expected):
    assert normalise_usage(raw) == expected


def test_unknown_or_empty_shapes_give_none():
    assert normalise_usage(None) is None
    assert normalise_usage({}) is None
    assert normalise_usage({"foo": 1}) is None
    assert normalise_usage("12 tokens") is None


def test_attribute_objects_are_read_like_dicts():
    class OpenAIUsage:
        def __init__(self) -> None:
            self.prompt_tokens, self.completion_tokens, self.total_tokens = 3, 4, 7

    assert normalise_usage(OpenAIUsage()) == {"input": 3, "output": 4, "total": 7}


def test_usage_metadata_wins_over_llm_output():
    message = AIMessage("hi", usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    llm_output = {"token_usage": {"prompt_tokens": 100, "completion_tokens": 200, "total_tokens": 300}}
    assert usage_from_generations([ChatGeneration(message=message)], llm_output) == {
        "input": 1,
        "output": 2,
        "total": 3,
    }


def test_llm_output_token_usage_when_messages_have_none():
    llm_output = {"token_usage": {"prompt_tokens": 100, "completion_tokens": 200, "total_tokens": 300}}
    gens = [ChatGeneration(message=AIMessage("hi"))]
    assert usage_from_generations(gens, llm_output) == {"input": 100, "output": 200, "total": 300}
    assert usage_from_generations([Generation(text="x")], {"usage": {"input_tokens": 2, "output_tokens": 3}}) == {
        "input": 2,
        "output": 3,
        "total": 5,
    }


def test_response_metadata_shapes():
    bedrock = AIMessage(
        "x", response_metadata={"amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 4}}
    )
    assert usage_from_generations([ChatGeneration(message=bedrock)], None) == {"input": 3, "output": 4, "total": 7}
    ollama = AIMessage("x", response_metadata={"model": "llama3", "prompt_eval_count": 5, "eval_count": 6})
    assert usage_from_generations([ChatGeneration(message=ollama)], None) == {"input": 5, "output": 6, "total": 11}
    vertex = Generation(
        text="x",
        generation_info={
            "usage_metadata": {"prompt_token_count": 8, "candidates_token_count": 2, "total_token_count": 10}
        },
    )
    assert usage_from_generations([vertex], None) == {"input": 8, "output": 2, "total": 10}
    assert usage_from_generations([ChatGeneration(message=AIMessage("x"))], None) is None
