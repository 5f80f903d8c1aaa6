"""cost_for: genai_prices for known models, None (never a guess) for unknown ones."""

from __future__ import annotations

import pytest

from lftrace import pricing
from lftrace.pricing import cost_for


def test_known_model_is_priced_from_langfuse_usage():
    cost = cost_for("gpt-4o-mini", {"input": 800, "input_cache_read": 200, "output": 500, "total": 1500})
    # gpt-4o-mini: $0.15/MTok input, $0.075/MTok cached input, $0.60/MTok output
    assert cost == pytest.approx({"input": 800 * 0.15e-6 + 200 * 0.075e-6, "output": 500 * 0.6e-6, "total": 0.000435})


def test_anthropic_cache_write_is_priced():
    plain = cost_for("claude-3-5-sonnet-20241022", {"input": 1000, "output": 0, "total": 1000})
    cached = cost_for(
        "claude-3-5-sonnet-20241022", {"input": 0, "input_cache_creation": 1000, "output": 0, "total": 1000}
    )
    assert plain and cached
    assert cached["input"] == pytest.approx(plain["input"] * 1.25)  # $3.75 vs $3 per MTok


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
