"""Cost of a generation in USD from its model and Langfuse usage_details, via ``genai_prices``.

Called only from the writer thread. ``genai_prices`` is imported on first use (~0.4 s). Its ``calc_price`` costs
~70 us per call, and real model calls rarely repeat their token counts, so a cache of answers alone misses. For a
model with flat prices (per token, no tiers) a cost is linear in the token counts: ``_Linear`` learns the rates
from a few exact calls to ``genai_prices`` (once per model and hour, from the model's second generation on),
checks them against one more, and then prices a generation in ~3 us. Tiered prices, counts outside the measured
shape and anything the check rejects take the exact call. An unknown model gives None: no cost is better than a
wrong one.

Measured rates (and models genai_prices does not know) are kept beside the store, in ``<store>.prices.json``
(``keep_rates_beside``), so that the next process prices its generations without importing genai_prices at all
(~40 ms of CPU, on every ``lftrace run``). The file names the genai_prices data it was measured from (path, size,
mtime): another version of the data, a corrupt file or an entry older than ``_RATES_TTL_S`` is measured again. It is
a cache: a file that cannot be read or written leaves pricing as it was.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .usage import gross_counts

_log = logging.getLogger("lftrace")
_CACHE_LIMIT = 4096
_cache: dict[tuple[str, tuple[tuple[str, int], ...]], dict[str, float] | None] = {}
_unknown_models: set[str] = set()
_lock = threading.Lock()

# the token counts a cost depends on (``usage.gross_counts``): the axes of the linear model
_AXES = ("input", "output", "cache_read", "cache_write", "input_audio", "output_audio", "reasoning")
# where the rates are measured: every count set, all below the 128k-token threshold where tiered prices start
_PROBE_BASE = {"input": 64_000, "output": 64_000} | {axis: 8_000 for axis in _AXES[2:]}
_PROBE_STEP = 8_000
_PROBE_CHECK = {"input": 1_234, "output": 567, "cache_read": 89, "cache_write": 45, "input_audio": 6}
_PROBE_CHECK |= {"output_audio": 7, "reasoning": 123}
_RATES_TTL_S = 3600.0  # prices can change by date (genai_prices' conditional prices): measured again after this
_LINE_ITEM_AXES = {
    "input_cache_read": "cache_read",
    "input_cache_creation": "cache_write",
    "output_reasoning": "reasoning",
}


def _genai_usage_kwargs(counts: Mapping[str, int]) -> dict[str, int]:
    """Gross counts (``usage.gross_counts``: input/output include their details) -> genai_prices Usage."""
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
    counts = gross_counts(usage)
    if _saved_unknown(model):
        _unknown_models.add(model)
        return None
    rates = _linear.get(model) or _saved_rates(model)
    if rates is not None and time.monotonic() - rates.measured_at < _RATES_TTL_S and _in_domain(counts):
        return rates.cost(counts)  # measured here or by an earlier process: no genai_prices import
    # a model priced once in a process is not worth measuring, unless the rates are kept for the next process
    if model not in _priced_once and _saved_path is None:
        if len(_priced_once) >= _CACHE_LIMIT:
            _priced_once.clear()
        _priced_once.add(model)
        return _exact(model, counts)
    rates = _rates_for(model)
    if rates is not None and _in_domain(counts):
        return rates.cost(counts)
    return _exact(model, counts)


def _in_domain(counts: Mapping[str, int]) -> bool:
    """Counts where the linear model holds: the details fit inside the input and output they are part of."""
    return (
        counts["cache_read"] + counts["cache_write"] + counts["input_audio"] <= counts["input"]
        and counts["reasoning"] + counts["output_audio"] <= counts["output"]
        and min(counts[axis] for axis in _AXES) >= 0
    )


class _Linear(NamedTuple):
    """A flat-priced model's cost as ``intercept + sum(rate * count)`` for each part of the cost."""

    intercept: dict[str, float]
    rates: dict[str, dict[str, float]]
    measured_at: float

    def cost(self, counts: Mapping[str, int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, base in self.intercept.items():
            axis = _LINE_ITEM_AXES.get(key)
            if axis is not None and not counts[axis]:
                continue  # a line item only for counts that are there (as the exact calculation gives them)
            value = base
            for name, rate in self.rates[key].items():
                value += rate * counts[name]
            out[key] = value
        return out


_linear: dict[str, _Linear | None] = {}
_priced_once: set[str] = set()


def _rates_for(model: str) -> _Linear | None:
    if model in _linear:
        known = _linear[model]
        if known is None or time.monotonic() - known.measured_at < _RATES_TTL_S:
            return known
    try:
        rates = _measure(model)
    except Exception as exc:  # never a guess: the exact calculation prices this model
        _log.debug("lftrace: no linear prices for %r: %r", model, exc)
        rates = None
    _keep(_linear, model, rates)
    if rates is not None:
        _save(model, {"intercept": rates.intercept, "rates": rates.rates})
    return rates


def _measure(model: str) -> _Linear | None:
    """The rates of a flat-priced model from exact calculations at a base point and one step along each axis;
    None for tiered prices, or when one more exact calculation disagrees."""
    from genai_prices.types import TieredPrices

    base = _exact(model, _PROBE_BASE)
    if base is None or _is_tiered(model, TieredPrices):
        return None
    rates: dict[str, dict[str, float]] = {key: {} for key in base}
    for axis in _AXES:
        stepped = _exact(model, {**_PROBE_BASE, axis: _PROBE_BASE[axis] + _PROBE_STEP})
        if stepped is None or stepped.keys() != base.keys():
            return None
        for key, value in stepped.items():
            rate = (value - base[key]) / _PROBE_STEP
            if rate:
                rates[key][axis] = rate
    intercept = {
        key: value - sum(rate * _PROBE_BASE[axis] for axis, rate in rates[key].items()) for key, value in base.items()
    }
    # a per-request price stays; what is left of the subtraction above is rounding
    intercept = {key: (0.0 if abs(value) < 1e-12 else value) for key, value in intercept.items()}
    linear = _Linear(intercept, rates, time.monotonic())
    expected = _exact(model, _PROBE_CHECK)
    if expected is None or not _close(linear.cost(_PROBE_CHECK), expected):
        return None
    return linear


def _is_tiered(model: str, tiered: type) -> bool:
    from genai_prices import Usage, calc_price

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        price = calc_price(Usage(input_tokens=1, output_tokens=1), model)
    return any(isinstance(value, tiered) for value in vars(price.model_price).values())


def _close(got: Mapping[str, float], expected: Mapping[str, float]) -> bool:
    return got.keys() == expected.keys() and all(
        math.isclose(got[key], expected[key], rel_tol=1e-9, abs_tol=1e-15) for key in expected
    )


def _exact(model: str, counts: Mapping[str, int]) -> dict[str, float] | None:
    """The cost as ``genai_prices`` calculates it, from gross counts (``usage.gross_counts``)."""
    from genai_prices import Usage, calc_price  # lazy: ~0.4 s import

    kwargs = _genai_usage_kwargs(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            price = calc_price(Usage(**kwargs), model)
        except LookupError:
            _unknown_models.add(model)
            _save(model, {"unknown": True})
            return None
        input_price, output_price = float(price.input_price), float(price.output_price)
        cost = {"input": input_price, "output": output_price}
        # Line items, priced by the same model price (cheap: no lookup): cached input, cache writes and reasoning
        # come out of input/output so that the parts add up to the total, as Langfuse's cost details do.
        model_price = price.model_price
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


_saved_path: Path | None = None  # where measured rates are kept (keep_rates_beside), None: nowhere
_saved_models: dict[str, Any] | None = None  # the file's models as read (once per path), None: not read yet


def keep_rates_beside(store: str | os.PathLike[str]) -> None:
    """Keep measured rates in ``<store>.prices.json`` and price from that file's rates (see the module docstring).

    One file per process: with clients on several stores, the last one created names it (a cache either way)."""
    global _saved_path, _saved_models
    path = Path(f"{os.fspath(store)}.prices.json")
    with _lock:
        if path != _saved_path:
            _saved_path, _saved_models = path, None


def _data_identity() -> str | None:
    """Which genai_prices data rates come from, without importing it (~0.15 ms): its data file's path, size, mtime."""
    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations)), "data.py")
    stat = data.stat()
    return f"{data}:{stat.st_size}:{stat.st_mtime_ns}"


def _read_saved() -> dict[str, Any]:
    """The saved models measured from the installed genai_prices data ({} when none, or unreadable)."""
    global _saved_models
    path = _saved_path
    if path is None:
        return {}
    if _saved_models is not None:
        return _saved_models
    models: dict[str, Any] = {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("data") == _data_identity() and isinstance(doc.get("models"), dict):
            models = doc["models"]
    except FileNotFoundError:
        pass
    except Exception as exc:  # a cache: measured again, and the file rewritten
        _log.debug("lftrace: saved prices in %s not read: %r", path, exc)
    _saved_models = models
    return models


def _saved_entry(model: str) -> dict[str, Any] | None:
    entry = _read_saved().get(model)
    if not isinstance(entry, dict):
        return None
    measured = entry.get("measured")
    if not isinstance(measured, (int, float)) or not 0 <= time.time() - measured < _RATES_TTL_S:
        return None
    return entry


def _saved_unknown(model: str) -> bool:
    entry = _saved_entry(model)
    return entry is not None and entry.get("unknown") is True


def _saved_rates(model: str) -> _Linear | None:
    """The rates an earlier process measured for ``model`` (now kept in ``_linear``), or None."""
    entry = _saved_entry(model)
    if entry is None or "rates" not in entry:
        return None
    try:
        intercept = {str(k): float(v) for k, v in entry["intercept"].items()}
        rates = {
            str(key): {str(axis): float(rate) for axis, rate in axes.items() if axis in _AXES}
            for key, axes in entry["rates"].items()
        }
        if rates.keys() != intercept.keys():
            return None
    except Exception as exc:
        _log.debug("lftrace: saved prices for %r not used: %r", model, exc)
        return None
    age = time.time() - float(entry["measured"])
    linear = _Linear(intercept, rates, time.monotonic() - age)
    _keep(_linear, model, linear)
    _priced_once.add(model)
    return linear


def _save(model: str, entry: dict[str, Any]) -> None:
    """Add ``model``'s rates (or that it has no price) to the saved file: atomically, errors logged, never raised."""
    global _saved_models
    path = _saved_path
    if path is None:
        return
    try:
        models = dict(_read_saved())
        models[model] = {"measured": time.time(), **entry}
        if len(models) > _CACHE_LIMIT:
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        text = json.dumps({"data": _data_identity(), "models": models}, sort_keys=True)
        # private as the store is (the models a project uses): 0600 whatever the umask
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        _saved_models = models
    except Exception as exc:
        _log.debug("lftrace: prices not saved to %s: %r", path, exc)


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
    _keep(_cache, key, result)
    return dict(result) if result is not None else None


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a cache bounded by ``_CACHE_LIMIT`` (emptied when full: models and usages seen again refill it)."""
    with _lock:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
