"""Cost of a generation in USD from its model and Langfuse usage_details, via ``genai_prices``.

Called only from the writer thread. ``genai_prices`` is imported on first use (~0.4 s) and every
answer is cached per (model, usage) because ``calc_price`` costs ~200 us for a known model.
An unknown model gives None: no cost is better than a wrong one.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from .usage import gross_counts

_log = logging.getLogger("lftrace")
_CACHE_LIMIT = 4096
_cache: dict[tuple[str, tuple[tuple[str, int], ...]], dict[str, float] | None] = {}
_unknown_models: set[str] = set()
_lock = threading.Lock()


def _genai_usage_kwargs(usage: Mapping[str, int]) -> dict[str, int]:
    """Langfuse usage (input/output exclude details; provider keys kept) -> genai_prices Usage (totals include them)."""
    counts = gross_counts(usage)
    kwargs = {"input_tokens": counts["input"], "output_tokens": counts["output"]}
    for source, target in (
        ("cache_read", "cache_read_tokens"),
        ("cache_write", "cache_write_tokens"),
        ("input_audio", "input_audio_tokens"),
        ("output_audio", "output_audio_tokens"),
    ):
        if counts[source]:
            kwargs[target] = counts[source]
    return kwargs


def _calculate(model: str, usage: Mapping[str, int]) -> dict[str, float] | None:
    from genai_prices import Usage, calc_price  # lazy: ~0.4 s import

    kwargs = _genai_usage_kwargs(usage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            price = calc_price(Usage(**kwargs), model)
        except LookupError:
            _unknown_models.add(model)
            return None
        input_price, output_price = float(price.input_price), float(price.output_price)
        cost = {"input": input_price, "output": output_price}
        # Line items, priced by the same model price (cheap: no lookup): cached input, cache writes and reasoning
        # come out of input/output so that the parts add up to the total, as Langfuse's cost details do.
        model_price = price.model_price
        counts = gross_counts(usage)
        for key, part_usage, side in (
            (
                "input_cache_read",
                {"input_tokens": counts["cache_read"], "cache_read_tokens": counts["cache_read"]},
                "input",
            ),
            (
                "input_cache_creation",
                {"input_tokens": counts["cache_write"], "cache_write_tokens": counts["cache_write"]},
                "input",
            ),
            ("output_reasoning", {"output_tokens": counts["reasoning"]}, "output"),
        ):
            tokens = max(part_usage.values())
            if not tokens:
                continue
            try:
                prices = model_price.calc_price(Usage(**part_usage))
                part = float(prices["input_price"] if side == "input" else prices["output_price"])
            except Exception:  # a tiered or odd price: no line item rather than a wrong one
                continue
            part = min(part, cost[side])
            cost[key] = part
            cost[side] -= part
    cost["total"] = float(price.total_price)
    return cost


def cost_for(model: str | None, usage_details: Mapping[str, Any] | None) -> dict[str, float] | None:
    """``{"input": usd, "output": usd, "total": usd}`` for a known model, else None. Never raises."""
    if not model or not usage_details:
        return None
    counts = tuple(sorted((k, v) for k, v in usage_details.items() if isinstance(v, int) and not isinstance(v, bool)))
    if not counts or model in _unknown_models:
        return None
    key = (model, counts)
    if key in _cache:
        cached = _cache[key]
        return dict(cached) if cached is not None else None
    try:
        result = _calculate(model, dict(counts))
    except Exception as exc:  # a pricing bug must never lose a trace
        _log.debug("lftrace: pricing %r failed: %r", model, exc)
        result = None
    with _lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = result
    return dict(result) if result is not None else None
