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


_PRICE_SCRIPT = """
import json, sys
from lftrace import pricing
pricing.keep_rates_beside(sys.argv[1])
model, usages = sys.argv[2], json.loads(sys.argv[3])
costs = [pricing.cost_for(model, usage) for usage in usages]
print(json.dumps({"costs": costs, "imported": "genai_prices" in sys.modules}))
"""


def price_in_a_new_process(store, *usages, model="gpt-4o-mini"):
    """Prices ``usages`` in a fresh Python that keeps rates beside ``store``: its costs, and whether it needed
    genai_prices."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PRICE_SCRIPT, str(store), model, json.dumps(list(usages))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


_USAGES = (
    {"input": 1_200, "output": 340, "total": 1_540},
    {"input": 98_765, "input_cache_read": 4_321, "output": 2_345, "total": 105_431},
)


def test_rates_measured_in_one_process_price_the_next_without_genai_prices(tmp_path):
    store = tmp_path / "traces.db"
    first = price_in_a_new_process(store, *_USAGES)
    assert first["imported"] is True
    saved = tmp_path / "traces.db.prices.json"
    assert "gpt-4o-mini" in json_of(saved)["models"]
    assert saved.stat().st_mode & 0o777 == 0o600  # private, as the store is
    assert [p.name for p in tmp_path.iterdir()] == [saved.name]  # no temporary file left

    second = price_in_a_new_process(store, *_USAGES, {"input": 7, "output": 3, "total": 10})
    assert second["imported"] is False  # priced from the saved rates alone
    assert second["costs"][:2] == [pytest.approx(cost) for cost in first["costs"]]
    assert second["costs"][0] == pytest.approx(
        {"input": 1_200 * 0.15e-6, "output": 340 * 0.6e-6, "total": 1_200 * 0.15e-6 + 340 * 0.6e-6}
    )
    assert second["costs"][2] == pytest.approx(cost_for("gpt-4o-mini", {"input": 7, "output": 3, "total": 10}))


def json_of(path):
    import json

    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("spoil", ["other data", "stale", "corrupt"])
def test_saved_rates_from_other_data_too_old_or_corrupt_are_measured_again(tmp_path, spoil):
    import json
    import time

    store = tmp_path / "traces.db"
    first = price_in_a_new_process(store, *_USAGES)
    saved = tmp_path / "traces.db.prices.json"
    doc = json_of(saved)
    if spoil == "other data":
        doc["data"] = "/elsewhere/genai_prices/data.py:1:2"
        doc["models"]["gpt-4o-mini"]["rates"]["input"]["input"] = 1.0  # would be a wrong price if used
        saved.write_text(json.dumps(doc), encoding="utf-8")
    elif spoil == "stale":
        doc["models"]["gpt-4o-mini"]["measured"] = time.time() - 2 * pricing._RATES_TTL_S
        doc["models"]["gpt-4o-mini"]["rates"]["input"]["input"] = 1.0
        saved.write_text(json.dumps(doc), encoding="utf-8")
    else:
        saved.write_text('{"data": "', encoding="utf-8")

    again = price_in_a_new_process(store, *_USAGES)
    assert again["imported"] is True
    assert again["costs"] == [pytest.approx(cost) for cost in first["costs"]]
    # the file is rewritten with what was measured: the process after that does not import genai_prices
    assert price_in_a_new_process(store, *_USAGES)["imported"] is False


def test_rates_that_cannot_be_saved_leave_pricing_as_it_was(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory would be", encoding="utf-8")
    store = blocker / "traces.db"
    first = price_in_a_new_process(store, *_USAGES)
    second = price_in_a_new_process(store, *_USAGES)
    assert first["imported"] is second["imported"] is True
    assert first["costs"] == second["costs"]
    assert all(cost and cost["total"] > 0 for cost in first["costs"])


def test_a_model_without_a_price_is_remembered_too(tmp_path):
    store = tmp_path / "traces.db"
    usage = {"input": 10, "output": 5, "total": 15}
    first = price_in_a_new_process(store, usage, model="fake-gpt-4o-mini")
    assert first == {"costs": [None], "imported": True}
    assert json_of(tmp_path / "traces.db.prices.json")["models"]["fake-gpt-4o-mini"]["unknown"] is True
    assert price_in_a_new_process(store, usage, model="fake-gpt-4o-mini") == {"costs": [None], "imported": False}


_PRICED_CHAT = """
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class Model(BaseChatModel):
    @property
    def _llm_type(self):
        return "fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        usage = {"input_tokens": 1200, "output_tokens": 340, "total_tokens": 1540}
        message = AIMessage(content="hi", usage_metadata=usage, response_metadata={"model_name": "gpt-4o-mini"})
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": "gpt-4o-mini"})


model = Model()
"""


def test_a_second_lftrace_run_prices_its_generation_from_the_rates_the_first_saved(tmp_path):
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "priced.py").write_text(_PRICED_CHAT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_"))}
    env["LFTRACE_STORE"] = str(tmp_path / "traces.db")

    def run_and_show():
        # -X importtime lists every module the run imported, on stderr (pricing runs on the writer thread)
        ran = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lftrace", "run", "priced.py:model", "--input", "hello"],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-2000:]
        shown = subprocess.run(
            [sys.executable, "-m", "lftrace", "show", "last", "--json"],
            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=True,
        )  # fmt: skip
        [generation] = [o for o in json.loads(shown.stdout)["observations"] if o["type"] == "GENERATION"]
        return "genai_prices" in ran.stderr, generation["costDetails"]

    imported, cost = run_and_show()
    assert imported is True
    assert cost == pytest.approx({"input": 1200 * 0.15e-6, "output": 340 * 0.6e-6, "total": 384e-6})
    assert (tmp_path / "traces.db.prices.json").is_file()
    imported_again, cost_again = run_and_show()
    assert imported_again is False
    assert cost_again == pytest.approx(cost)
