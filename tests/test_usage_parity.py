"""Usage parity with the official langfuse CallbackHandler (issue 13, item 2).

The expected numbers are the ones the official SDK's own usage-parser tests assert (same inputs, same outputs);
``test_same_dicts_as_the_installed_official_parser`` also runs the installed ``langfuse`` parser on every shape.
``total`` is the one addition: the official handler leaves it out when the provider has none, we add input + output
with all their details, so local display and pricing need no second rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from lftrace.pricing import cost_for
from lftrace.usage import gross_counts, normalise_usage, parse_usage, usage_from_result

LITELLM_CLAUDE = {  # what LiteLLM reports for Claude with prompt caching
    "prompt_tokens": 2100,
    "completion_tokens": 300,
    "total_tokens": 2400,
    "cache_creation_input_tokens": 1024,
    "cache_read_input_tokens": 1024,
}

SHAPES: dict[str, dict[str, Any]] = {
    "standard-tier": {
        "input_tokens": 13,
        "output_tokens": 1,
        "total_tokens": 14,
        "input_token_details": {"audio": 0, "cache_read": 3},
        "output_token_details": {"audio": 0},
    },
    "openai-cached-dict": {
        "prompt_tokens": 15000,
        "completion_tokens": 500,
        "total_tokens": 15500,
        "prompt_tokens_details": {"cached_tokens": 12000},
    },
    "openai-cached-and-cache-creation": {
        "prompt_tokens": 15000,
        "completion_tokens": 500,
        "total_tokens": 15500,
        "prompt_tokens_details": {"cached_tokens": 12000},
        "cache_creation_input_tokens": 3000,
    },
    "vertex-modality-list": {
        "prompt_token_count": 1000,
        "candidates_token_count": 200,
        "total_token_count": 1200,
        "prompt_tokens_details": [{"modality": "text", "token_count": 800}, {"modality": "image", "token_count": 200}],
    },
    "vertex-all-lists": {
        "prompt_token_count": 1000,
        "candidates_token_count": 300,
        "total_token_count": 1300,
        "prompt_tokens_details": [{"modality": "TEXT", "token_count": 1000}],
        "candidates_tokens_details": [{"modality": "TEXT", "token_count": 250}],
        "cache_tokens_details": [{"modality": "TEXT", "token_count": 400}],
    },
    "empty-details": {
        "prompt_tokens": 5000,
        "completion_tokens": 100,
        "total_tokens": 5100,
        "prompt_tokens_details": {},
    },
    "anthropic-cache-tiers": {
        "input_tokens": 9454,
        "output_tokens": 380,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 2048},
    },
    "anthropic-tiers-with-aggregate": {
        "input_tokens": 100,
        "output_tokens": 10,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 2000},
    },
    "anthropic-tiers-all-zero": {
        "input_tokens": 50,
        "output_tokens": 5,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
    },
    "priority-tier": {
        "input_tokens": 13,
        "output_tokens": 1,
        "total_tokens": 14,
        "input_token_details": {"audio": 0, "priority_cache_read": 0, "priority": 13},
        "output_token_details": {"audio": 0, "priority_reasoning": 0, "priority": 1},
    },
    "litellm-claude": LITELLM_CLAUDE,
    "bedrock-streamed": {"inputTokenCount": [5, 6], "outputTokenCount": [10, 12], "totalTokenCount": [15, 18]},
    "bedrock-converse": {"input_tokens": 40, "output_tokens": 9, "total_tokens": 49},
    "watsonx": {"input_token_count": 4, "generated_token_count": 9},
}


def test_standard_tier_subtracts_cache_read_and_audio():
    got = normalise_usage(SHAPES["standard-tier"])
    assert got == {"input": 10, "output": 1, "total": 14, "input_audio": 0, "input_cache_read": 3, "output_audio": 0}


def test_openai_cached_tokens_dict():
    got = normalise_usage(SHAPES["openai-cached-dict"])
    assert got == {"input": 3000, "output": 500, "total": 15500, "input_cached_tokens": 12000}


def test_openai_cached_tokens_with_cache_creation_only_subtracts_cached():
    got = normalise_usage(SHAPES["openai-cached-and-cache-creation"])
    assert got is not None
    assert (got["input"], got["input_cached_tokens"], got["cache_creation_input_tokens"]) == (3000, 12000, 3000)


def test_vertex_modality_list():
    got = normalise_usage(SHAPES["vertex-modality-list"])
    assert got == {"input": 0, "output": 200, "total": 1200, "input_modality_text": 800, "input_modality_image": 200}


def test_vertex_cache_tokens_come_off_input_and_its_modality():
    got = normalise_usage(SHAPES["vertex-all-lists"])
    assert got == {
        "input": 0,  # 1000 - 1000 (text) - 400 (cached), floored at zero
        "output": 50,
        "total": 1300,
        "input_modality_TEXT": 600,
        "output_modality_TEXT": 250,
        "cached_modality_TEXT": 400,
    }


def test_empty_details_leave_input_alone():
    assert normalise_usage(SHAPES["empty-details"]) == {"input": 5000, "output": 100, "total": 5100}


def test_anthropic_cache_creation_tiers_flattened_with_aggregate():
    got = normalise_usage(SHAPES["anthropic-cache-tiers"])
    assert got == {
        "input": 9454,
        "output": 380,
        "cache_read_input_tokens": 0,
        "cache_creation_ephemeral_1h_input_tokens": 0,
        "cache_creation_ephemeral_5m_input_tokens": 2048,
        "cache_creation_input_tokens": 2048,
        "total": 9454 + 380 + 2048,
    }


def test_anthropic_aggregate_from_the_api_is_kept():
    got = normalise_usage(SHAPES["anthropic-tiers-with-aggregate"])
    assert got is not None
    assert got["cache_creation_input_tokens"] == 3000
    assert (got["cache_creation_ephemeral_1h_input_tokens"], got["cache_creation_ephemeral_5m_input_tokens"]) == (
        1000,
        2000,
    )
    assert got["total"] == 100 + 10 + 3000  # the tiers are parts of the aggregate, not counted twice


def test_anthropic_all_zero_tiers_invent_no_aggregate():
    got = normalise_usage(SHAPES["anthropic-tiers-all-zero"])
    assert got is not None
    assert got["cache_creation_ephemeral_1h_input_tokens"] == got["cache_creation_ephemeral_5m_input_tokens"] == 0
    assert "cache_creation_input_tokens" not in got


def test_priority_tier_is_not_subtracted():
    got = normalise_usage(SHAPES["priority-tier"])
    assert got is not None
    assert (got["input"], got["output"], got["total"]) == (13, 1, 14)
    assert (got["input_priority"], got["output_priority"]) == (13, 1)
    assert gross_counts(got)["input"] == 13  # priority counts are a tier label, not extra tokens


def test_litellm_claude_keeps_input_and_output():
    """The bug in issue 13: this shape was taken for Anthropic usage and lost input and output."""
    got = normalise_usage(LITELLM_CLAUDE)
    assert got == {
        "input": 2100,
        "output": 300,
        "total": 2400,
        "cache_creation_input_tokens": 1024,
        "cache_read_input_tokens": 1024,
    }
    counts = gross_counts(got)
    assert (counts["input"], counts["output"]) == (2100, 300)  # the total says the cache counts are included
    assert (counts["cache_read"], counts["cache_write"]) == (1024, 1024)


def test_litellm_claude_cost_prices_input_and_output():
    usage = normalise_usage(LITELLM_CLAUDE)
    cost = cost_for("claude-3-5-sonnet-20241022", usage)
    # $3/MTok input, $0.30 cached read, $3.75 cache write, $15/MTok output: input = 52 fresh + reads + writes
    assert cost == pytest.approx(
        {
            "input": 52 * 3e-6,
            "input_cache_read": 1024 * 0.3e-6,
            "input_cache_creation": 1024 * 3.75e-6,
            "output": 300 * 15e-6,
            "total": 52 * 3e-6 + 1024 * 0.3e-6 + 1024 * 3.75e-6 + 300 * 15e-6,
        },
        rel=1e-6,
    )


def test_anthropic_raw_cost_counts_cache_reads_once():
    usage = normalise_usage({"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 1000})
    cost = cost_for("claude-3-5-sonnet-20241022", usage)
    assert cost is not None
    assert (cost["input"], cost["input_cache_read"]) == pytest.approx((20 * 3e-6, 1000 * 0.3e-6))


def test_bedrock_streamed_lists_are_summed():
    assert normalise_usage(SHAPES["bedrock-streamed"]) == {"input": 11, "output": 22, "total": 33}


def _official(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The installed official parser, plus what the Langfuse server does with plain OpenAI usage it passes on."""
    from langfuse.langchain.CallbackHandler import _parse_usage_model

    got = _parse_usage_model(dict(raw))
    if got is not None and "prompt_tokens" in got:  # passed through untouched: the server's conversion
        converted = {"input": got["prompt_tokens"], "output": got["completion_tokens"], "total": got["total_tokens"]}
        for details, side in (("prompt_tokens_details", "input"), ("completion_tokens_details", "output")):
            for key, value in (got.get(details) or {}).items():
                if value is not None:
                    converted[f"{side}_{key}"] = value
                    converted[side] = max(converted[side] - value, 0)
        got = converted
    return got


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_same_dicts_as_the_installed_official_parser(shape):
    official = _official(SHAPES[shape])
    ours = parse_usage(SHAPES[shape])
    assert ours == official
    with_total = normalise_usage(SHAPES[shape])
    assert with_total is not None and official is not None
    assert {k: v for k, v in with_total.items() if k != "total" or "total" in official} == official


def test_usage_from_result_follows_the_official_precedence():
    anthropic_raw = {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 1000}
    message = AIMessage(
        "hi",
        response_metadata={"usage": anthropic_raw},
        usage_metadata={"input_tokens": 1020, "output_tokens": 30, "total_tokens": 1050},
    )
    # response_metadata["usage"] (Anthropic's own numbers) wins over usage_metadata, like the official handler
    got = usage_from_result([[ChatGeneration(message=message)]], {"token_usage": {"prompt_tokens": 9}})
    assert got == {"input": 20, "output": 30, "cache_read_input_tokens": 1000, "total": 1050}
    # generation_info usage_metadata (Vertex via LLMs) is read before the message
    vertex = Generation(
        text="x",
        generation_info={
            "usage_metadata": {"prompt_token_count": 8, "candidates_token_count": 2, "total_token_count": 10}
        },
    )
    assert usage_from_result([[vertex]], None) == {"input": 8, "output": 2, "total": 10}
    # several batches: the later one wins (the official handler overwrites per batch)
    first = ChatGeneration(
        message=AIMessage("a", usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
    )
    second = ChatGeneration(
        message=AIMessage("b", usage_metadata={"input_tokens": 5, "output_tokens": 5, "total_tokens": 10})
    )
    assert usage_from_result([[first], [second]], None) == {"input": 5, "output": 5, "total": 10}
