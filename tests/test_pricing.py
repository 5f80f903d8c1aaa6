"""cost_for: genai_prices for known models, None (never a guess) for unknown ones."""

from __future__ import annotations

import pytest

from lftrace import pricing
from lftrace.pricing import cost_for


def test_known_model_is_priced_from_langfuse_usage():
    cost = cost_for("gpt-4o-mini", {"input": 800, "input_cache_read": 200, "output": 500, "total": 1500})
    # gpt-4o-mini: $0.15/MTok input, $0.075/MTok cached input, $0.60/MTok output; cached input is its own line
    assert cost == pytest.approx(
        {"input": 800 * 0.15e-6, "input_cache_read": 200 * 0.075e-6, "output": 500 * 0.6e-6, "total": 0.000435}
    )


def test_line_items_add_up_to_the_total():
    cost = cost_for("o3-mini", {"input": 1000, "output": 100, "output_reasoning_tokens": 400, "total": 1500})
    assert cost is not None
    # o3-mini: $1.10/MTok input, $4.40/MTok output; reasoning is billed as output, shown apart
    assert cost["output_reasoning"] == pytest.approx(400 * 4.4e-6)
    assert cost["output"] == pytest.approx(100 * 4.4e-6)
    assert sum(v for k, v in cost.items() if k != "total") == pytest.approx(cost["total"])
    claude = cost_for(
        "claude-3-5-sonnet-20241022",
        {"input": 20, "output": 30, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500},
    )
    assert claude is not None
    assert claude["input_cache_read"] == pytest.approx(1000 * 0.3e-6)
    assert claude["input_cache_creation"] == pytest.approx(500 * 3.75e-6)
    assert claude["input"] == pytest.approx(20 * 3e-6)


def test_anthropic_cache_write_is_priced():
    plain = cost_for("claude-3-5-sonnet-20241022", {"input": 1000, "output": 0, "total": 1000})
    cached = cost_for(
        "claude-3-5-sonnet-20241022", {"input": 0, "input_cache_creation": 1000, "output": 0, "total": 1000}
    )
    assert plain and cached
    assert cached["input"] + cached["input_cache_creation"] == pytest.approx(plain["input"] * 1.25)  # $3.75 vs $3


def test_unknown_model_gives_none():
    assert cost_for("my-private-finetune-xyz", {"input": 10, "output": 10, "total": 20}) is None
    assert cost_for(None, {"input": 10}) is None
    assert cost_for("gpt-4o-mini", None) is None
    assert cost_for("gpt-4o-mini", {}) is None


def test_results_are_cached(monkeypatch):
    usage = {"input": 1234, "output": 56, "total": 1290}
    first = cost_for("gpt-4o", usage)
    assert first is not None

    def explode(*args, **kwargs):
        raise AssertionError("calc_price called again")

    monkeypatch.setattr(pricing, "_calculate", explode)
    assert cost_for("gpt-4o", dict(usage)) == first
    first["total"] = -1  # callers get copies
    assert cost_for("gpt-4o", usage)["total"] > 0


def _flat_priced_models(limit: int) -> list[str]:
    """Model ids from genai_prices' own data, a few per provider, whose prices are flat (linear rates)."""
    from genai_prices.data_snapshot import get_snapshot

    models: list[str] = []
    for provider in get_snapshot().providers:
        taken = 0
        for model in provider.models:
            if taken == 3 or len(models) >= limit:
                break
            if pricing._rates_for(model.id) is not None:
                models.append(model.id)
                taken += 1
    return models


def test_linear_rates_give_what_genai_prices_gives():
    import random

    rng = random.Random(11)
    models = _flat_priced_models(60)
    assert len(models) >= 20  # several providers' models are priced the fast way
    for model in models:
        for _ in range(15):
            inp, out = rng.randint(0, 120_000), rng.randint(0, 20_000)
            counts = {
                "input": inp,
                "output": out,
                "cache_read": rng.randint(0, inp // 2),
                "cache_write": rng.randint(0, inp // 4) * rng.randint(0, 1),
                "input_audio": rng.randint(0, inp // 8) * rng.randint(0, 1),
                "output_audio": 0,
                "reasoning": rng.randint(0, out) * rng.randint(0, 1),
            }
            linear = pricing._rates_for(model)
            assert linear is not None
            assert pricing._close(linear.cost(counts), pricing._exact(model, counts)), (model, counts)


def test_tiered_prices_are_calculated_exactly():
    # gemini-2.5-pro doubles its input price above 200k prompt tokens: no linear model, the exact price each time
    assert pricing._rates_for("gemini-2.5-pro") is None
    small = cost_for("gemini-2.5-pro", {"input": 100_000, "output": 0, "total": 100_000})
    large = cost_for("gemini-2.5-pro", {"input": 300_000, "output": 0, "total": 300_000})
    assert small and large
    assert large["input"] / 300_000 > 1.5 * small["input"] / 100_000


def test_new_token_counts_are_priced_without_genai_prices(monkeypatch):
    import genai_prices

    cost_for("gpt-4o-mini", {"input": 10, "output": 1, "total": 11})  # rates measured

    def slow_path(*args, **kwargs):
        raise AssertionError("calc_price called for a flat-priced model")

    monkeypatch.setattr(genai_prices, "calc_price", slow_path)
    cost = cost_for("gpt-4o-mini", {"input": 123_457, "input_cache_read": 1_000, "output": 999, "total": 125_456})
    parts = {"input": 123_457 * 0.15e-6, "input_cache_read": 1_000 * 0.075e-6, "output": 999 * 0.6e-6}
    assert cost == pytest.approx({**parts, "total": sum(parts.values())})
