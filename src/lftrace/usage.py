"""Token usage from any provider shape -> Langfuse ``usage_details``, with the official handler's keys and arithmetic.

The official ``langfuse`` CallbackHandler decides what Langfuse shows for a LangChain run, so the same model must
report the same numbers here (issue 13). Its rules, as observed (written here independently):

- provider count keys are renamed to ``input``/``output``/``total`` (lists of counts, from streamed Bedrock, are
  summed); every other integer key is kept under its own name (``cache_read_input_tokens``, ``thoughts_token_count``)
  and non-integer values are dropped;
- LangChain's ``input_token_details``/``output_token_details`` become ``input_<key>``/``output_<key>`` and are
  subtracted from ``input``/``output`` - except priority-tier keys (``priority``, ``priority_*``), which are not
  exclusive sub-counts;
- OpenAI/LiteLLM ``prompt_tokens_details`` (a dict) become ``input_<key>`` and are subtracted from ``input``;
  plain OpenAI usage (exactly the three counts, or those and both details dicts) is left to the Langfuse server,
  which applies the same rule to both details dicts - we apply it here, so the numbers are the ones Langfuse shows;
- Vertex modality lists: ``prompt_tokens_details`` -> ``input_modality_<m>``, ``candidates_tokens_details`` ->
  ``output_modality_<m>``, ``cache_tokens_details`` -> ``cached_modality_<m>`` (subtracted from ``input`` and from
  ``input_modality_<m>``);
- Anthropic ``cache_creation`` tiers -> ``cache_creation_<tier>``, and their sum as ``cache_creation_input_tokens``
  unless the provider sent that (and the sum is not zero).

Beyond that, ``total`` is added when the provider gives none: input and output including their details
(``gross_counts``), which is also what pricing uses. Stdlib only, duck-typed: no LangChain import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

# provider count -> Langfuse key, applied in this order (a later one overwrites an earlier one, as upstream)
_RENAMES = (
    ("input_tokens", "input"),  # LangChain usage_metadata, Anthropic, Bedrock Converse
    ("output_tokens", "output"),
    ("total_tokens", "total"),
    ("prompt_tokens", "input"),  # OpenAI, LiteLLM, ChatBedrock
    ("completion_tokens", "output"),
    ("prompt_token_count", "input"),  # Vertex AI / Gemini
    ("candidates_token_count", "output"),
    ("total_token_count", "total"),
    ("inputTokenCount", "input"),  # Bedrock invocation metrics
    ("outputTokenCount", "output"),
    ("totalTokenCount", "total"),
    ("input_token_count", "input"),  # IBM watsonx
    ("generated_token_count", "output"),
)
_OPENAI_COUNTS = frozenset(("prompt_tokens", "completion_tokens", "total_tokens"))
_OPENAI_WITH_DETAILS = _OPENAI_COUNTS | {"prompt_tokens_details", "completion_tokens_details"}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> Any:
    """A renamed count: Bedrock streams report a list of counts per chunk."""
    if isinstance(value, list) and all(_is_int(v) for v in value):
        return sum(value)
    return value


def _as_dict(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, Mapping):
        return dict(raw)
    if hasattr(raw, "model_dump"):
        try:
            dumped = raw.model_dump()
        except Exception:
            return None
        return dict(dumped) if isinstance(dumped, Mapping) else None
    if hasattr(raw, "__dict__"):
        return dict(vars(raw))
    return None


def _subtract(usage: dict[str, Any], key: str, value: int) -> None:
    if _is_int(usage.get(key)):
        usage[key] = max(0, usage[key] - value)


def _is_priority(key: str) -> bool:
    return key == "priority" or key.startswith("priority_")


def _details_into(usage: dict[str, Any], details: Any, prefix: str, base: str, *, skip_priority: bool) -> None:
    """``{key: n}`` details -> ``<prefix>_<key>``, each subtracted from ``base``."""
    if not isinstance(details, Mapping):
        return
    for key, value in details.items():
        if not _is_int(value):
            continue
        usage[f"{prefix}_{key}"] = value
        if not (skip_priority and _is_priority(str(key))):
            _subtract(usage, base, value)


def _modalities(items: Any) -> Iterable[tuple[str, int]]:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and "modality" in item and _is_int(item.get("token_count")):
                yield str(item["modality"]), item["token_count"]


def _plain_openai(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the Langfuse server makes of OpenAI usage the official handler passes through unchanged."""
    keys = set(data)
    if keys != _OPENAI_COUNTS and keys != _OPENAI_WITH_DETAILS:
        return None
    usage: dict[str, Any] = {
        "input": data["prompt_tokens"],
        "output": data["completion_tokens"],
        "total": data["total_tokens"],
    }
    _details_into(usage, data.get("prompt_tokens_details"), "input", "input", skip_priority=False)
    _details_into(usage, data.get("completion_tokens_details"), "output", "output", skip_priority=False)
    return usage


def parse_usage(raw: Any) -> dict[str, int] | None:
    """One provider usage object -> the official handler's usage dict (no ``total`` added), or None."""
    data = _as_dict(raw)
    if not data:
        return None
    usage = _plain_openai(data)
    if usage is None:
        usage = data
        for provider_key, key in _RENAMES:
            if provider_key in usage:
                usage[key] = _count(usage.pop(provider_key))
        _details_into(usage, usage.pop("input_token_details", None), "input", "input", skip_priority=True)
        _details_into(usage, usage.pop("output_token_details", None), "output", "output", skip_priority=True)
        prompt_details = usage.get("prompt_tokens_details")
        if isinstance(prompt_details, Mapping):
            _details_into(usage, usage.pop("prompt_tokens_details"), "input", "input", skip_priority=False)
        elif isinstance(prompt_details, list):
            for modality, n in _modalities(usage.pop("prompt_tokens_details")):
                usage[f"input_modality_{modality}"] = n
                _subtract(usage, "input", n)
        if isinstance(usage.get("candidates_tokens_details"), list):
            for modality, n in _modalities(usage.pop("candidates_tokens_details")):
                usage[f"output_modality_{modality}"] = n
                _subtract(usage, "output", n)
        if isinstance(usage.get("cache_tokens_details"), list):
            for modality, n in _modalities(usage.pop("cache_tokens_details")):
                usage[f"cached_modality_{modality}"] = n
                _subtract(usage, "input", n)
                _subtract(usage, f"input_modality_{modality}", n)
        tiers = usage.get("cache_creation")
        if isinstance(tiers, Mapping):
            del usage["cache_creation"]
            created = 0
            for tier, n in tiers.items():
                if _is_int(n):
                    usage[f"cache_creation_{tier}"] = n
                    created += n
            if created > 0:
                usage.setdefault("cache_creation_input_tokens", created)
    counts = {str(k): v for k, v in usage.items() if _is_int(v)}
    return counts or None


def gross_counts(usage: Mapping[str, Any]) -> dict[str, int]:
    """Counts for pricing and display: ``input``/``output`` including their details; the priced details beside.

    One pass over the keys (this runs for every generation that ``show`` renders or the exporter encodes).
    ``input_*``/``output_*`` details (but priority tiers, which are labels rather than extra tokens) and Vertex's
    ``cached_modality_*`` were subtracted from input/output and are added back. Anthropic's cache counts and
    Gemini's thoughts are kept under their provider names without being subtracted (the provider's input and
    candidates exclude them): they are added unless the provider's total shows they are already in. One count may
    come under two names (LiteLLM: ``input_cached_tokens`` and ``cache_read_input_tokens``): the largest, never
    the sum, is the cached count.
    """
    base_in = base_out = extra_in = extra_out = 0
    cache_read = cache_write = tiers = cached_modality = input_audio = output_audio = reasoning = 0
    total: int | None = None
    for key, value in usage.items():
        if type(value) is not int:
            continue
        if key == "input":
            base_in += value
        elif key == "output":
            base_out += value
        elif key == "total":
            total = value
        elif key.startswith("input_"):
            if not _is_priority(key[6:]):
                base_in += value
            if key in ("input_cache_read", "input_cached_tokens"):
                cache_read = max(cache_read, value)
            elif key == "input_cache_creation":
                cache_write = max(cache_write, value)
            elif key in ("input_audio", "input_audio_tokens"):
                input_audio = max(input_audio, value)
        elif key.startswith("output_"):
            if not _is_priority(key[7:]):
                base_out += value
            if key in ("output_reasoning", "output_reasoning_tokens"):
                reasoning = max(reasoning, value)
            elif key in ("output_audio", "output_audio_tokens"):
                output_audio = max(output_audio, value)
        elif key.startswith("cached_modality_"):
            base_in += value
            cached_modality += value
        elif key == "cache_read_input_tokens":
            extra_in += value
            cache_read = max(cache_read, value)
        elif key == "cache_creation_input_tokens":
            extra_in += value
            cache_write = max(cache_write, value)
        elif key.startswith("cache_creation_ephemeral_"):
            tiers += value
        elif key == "cached_content_token_count":
            cache_read = max(cache_read, value)
        elif key == "thoughts_token_count":
            extra_out += value
            reasoning = max(reasoning, value)
    if (extra_in or extra_out) and not (total is not None and total == base_in + base_out):
        base_in += extra_in
        base_out += extra_out
    return {
        "input": base_in,
        "output": base_out,
        "cache_read": max(cache_read, cached_modality),
        "cache_write": max(cache_write, tiers),
        "input_audio": input_audio,
        "output_audio": output_audio,
        "reasoning": reasoning,
    }


def _gross(usage: Mapping[str, Any]) -> tuple[int, int]:
    counts = gross_counts(usage)
    return counts["input"], counts["output"]


def with_total(usage: dict[str, int] | None) -> dict[str, int] | None:
    """``usage`` with ``total`` (the provider's, else input + output with all their details)."""
    if usage and "total" not in usage:
        gross_in, gross_out = _gross(usage)
        usage["total"] = gross_in + gross_out
    return usage


_LANGCHAIN_COUNTS = frozenset(("input_tokens", "output_tokens", "total_tokens"))
_LANGCHAIN_DETAILS = ("input_token_details", "output_token_details")


def _langchain_counts(raw: Any) -> dict[str, int] | None:
    """LangChain's plain ``usage_metadata`` (the three counts, details absent or empty), else None.

    The common case on every generation, read directly (~0.5 us instead of ~3 us through ``parse_usage``).
    """
    if type(raw) is not dict:
        return None
    if len(raw) != 3 or raw.keys() != _LANGCHAIN_COUNTS:
        for key in _LANGCHAIN_DETAILS:
            if key in raw and raw[key] != {}:
                return None
        if {k for k in raw if k not in _LANGCHAIN_DETAILS} != _LANGCHAIN_COUNTS:
            return None
    counts = {"input": raw["input_tokens"], "output": raw["output_tokens"], "total": raw["total_tokens"]}
    for value in counts.values():
        if type(value) is not int:
            return None
    return counts


def normalise_usage(raw: Any) -> dict[str, int] | None:
    """Any known usage shape (a dict or an object with attributes) -> Langfuse usage_details, or None."""
    fast = _langchain_counts(raw)
    if fast is not None:
        return fast
    usage = parse_usage(raw)
    if usage is not None and not ({"input", "output", "total"} & set(usage)):
        data = _as_dict(raw) or {}
        if "prompt_eval_count" in data or "eval_count" in data:  # raw Ollama counts (not a shape upstream reads)
            usage = {"input": _count(data.get("prompt_eval_count", 0)), "output": _count(data.get("eval_count", 0))}
            usage = {k: v for k, v in usage.items() if _is_int(v)}
        else:
            return None  # no token count at all (e.g. only durations)
    return with_total(usage)


def usage_from_result(batches: Sequence[Sequence[Any]], llm_output: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Usage of one LLM run (``LLMResult.generations`` and ``llm_output``), chosen as the official handler does.

    ``llm_output["token_usage"]`` (or ``["usage"]``) first; then, per batch, the first generation that has one of:
    ``generation_info["usage_metadata"]``, ``response_metadata["usage"]`` (Anthropic, Bedrock-Anthropic),
    ``response_metadata["amazon-bedrock-invocationMetrics"]``, the message's ``usage_metadata`` - the later found wins.
    """
    found: dict[str, int] | None = None
    if isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage"):
            if llm_output.get(key):
                found = normalise_usage(llm_output[key])
                break
    ollama: Any = None
    for batch in batches:
        for gen in batch:
            info = getattr(gen, "generation_info", None)
            if isinstance(info, Mapping) and "usage_metadata" in info:
                parsed = normalise_usage(info["usage_metadata"])
                found = parsed
                if parsed is not None:
                    break
            message = getattr(gen, "message", None)
            meta = getattr(message, "response_metadata", None)
            meta = meta if isinstance(meta, Mapping) else {}
            chunk = (
                meta.get("usage")
                or meta.get("amazon-bedrock-invocationMetrics")
                or getattr(message, "usage_metadata", None)
            )
            if chunk:
                found = normalise_usage(chunk)
                break
            if ollama is None and ("prompt_eval_count" in meta or "eval_count" in meta):
                ollama = meta
    if found is None and ollama is not None:
        found = normalise_usage(ollama)
    return found


def usage_from_generations(generations: Iterable[Any], llm_output: Mapping[str, Any] | None) -> dict[str, int] | None:
    """``usage_from_result`` for one batch of generations."""
    return usage_from_result([list(generations)], llm_output)
