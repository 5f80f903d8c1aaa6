"""Token usage from any provider shape -> Langfuse ``usage_details``.

Langfuse's convention (LANGFUSE_WIRE.md): ``input`` and ``output`` exclude the detail counts
reported beside them (``input_cache_read``, ``input_cache_creation``, ``input_audio``,
``output_reasoning``, ``output_audio``, ...); ``total`` is the provider's total (or, when the
provider reports none, the sum of everything). Stdlib only, duck-typed: no LangChain import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# LangChain's standard ``usage_metadata`` detail names -> Langfuse detail keys
_LC_INPUT_DETAILS = {"cache_read": "input_cache_read", "cache_creation": "input_cache_creation", "audio": "input_audio"}
_LC_OUTPUT_DETAILS = {"reasoning": "output_reasoning", "audio": "output_audio"}
# OpenAI ``token_usage`` detail names
_OPENAI_INPUT_DETAILS = {"cached_tokens": "input_cache_read", "audio_tokens": "input_audio"}
_OPENAI_OUTPUT_DETAILS = {"reasoning_tokens": "output_reasoning", "audio_tokens": "output_audio"}


def _count(value: Any) -> int | None:
    """An integer token count; Bedrock streams report lists of counts (summed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return sum(value)
    return None


def _as_mapping(raw: Any) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    if hasattr(raw, "model_dump"):
        try:
            dumped = raw.model_dump()
            return dumped if isinstance(dumped, Mapping) else None
        except Exception:
            return None
    if hasattr(raw, "__dict__"):
        return vars(raw)
    return None


def _finish(
    base_in: int | None, base_out: int | None, total: int | None, details: dict[str, int]
) -> dict[str, int] | None:
    """Subtract details from input/output, drop zero details, add total."""
    if base_in is None and base_out is None and total is None and not details:
        return None
    usage: dict[str, int] = {}
    in_details = sum(v for k, v in details.items() if k.startswith("input_"))
    out_details = sum(v for k, v in details.items() if k.startswith("output_"))
    if base_in is not None:
        usage["input"] = max(0, base_in - in_details)
    if base_out is not None:
        usage["output"] = max(0, base_out - out_details)
    for key, value in details.items():
        if value:
            usage[key] = value
    if total is None:
        total = sum(v for k, v in usage.items())
    usage["total"] = total
    return usage


def _details(source: Any, names: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(source, Mapping):
        for name, key in names.items():
            value = _count(source.get(name))
            if value:
                out[key] = out.get(key, 0) + value
    return out


def normalise_usage(raw: Any) -> dict[str, int] | None:
    """Any known usage shape (a dict or an object with attributes) -> Langfuse usage_details, or None."""
    data = _as_mapping(raw)
    if not data:
        return None
    get = data.get

    # LangChain standard usage_metadata: input_tokens includes cache/audio details; has total_tokens
    if "input_tokens" in data and "total_tokens" in data:
        details = _details(get("input_token_details"), _LC_INPUT_DETAILS)
        details.update(_details(get("output_token_details"), _LC_OUTPUT_DETAILS))
        return _finish(_count(get("input_tokens")), _count(get("output_tokens")), _count(get("total_tokens")), details)

    # Anthropic raw usage: input_tokens EXCLUDES cache reads/creation, no total
    if "input_tokens" in data or "cache_read_input_tokens" in data or "cache_creation_input_tokens" in data:
        cache_read = _count(get("cache_read_input_tokens")) or 0
        cache_creation = _count(get("cache_creation_input_tokens"))
        tiers = get("cache_creation")  # extended caching: {"ephemeral_5m_input_tokens": n, ...}
        if cache_creation is None and isinstance(tiers, Mapping):
            cache_creation = sum((_count(v) or 0) for v in tiers.values())
        cache_creation = cache_creation or 0
        base_in = _count(get("input_tokens"))
        details = {"input_cache_read": cache_read, "input_cache_creation": cache_creation}
        gross_in = None if base_in is None else base_in + cache_read + cache_creation
        return _finish(gross_in, _count(get("output_tokens")), None, details)

    # OpenAI token_usage (also Azure, LiteLLM, ChatBedrock)
    if "prompt_tokens" in data or "completion_tokens" in data:
        details = _details(get("prompt_tokens_details"), _OPENAI_INPUT_DETAILS)
        details.update(_details(get("completion_tokens_details"), _OPENAI_OUTPUT_DETAILS))
        return _finish(
            _count(get("prompt_tokens")), _count(get("completion_tokens")), _count(get("total_tokens")), details
        )

    # Bedrock invocation metrics (amazon-bedrock-invocationMetrics)
    if "inputTokenCount" in data or "outputTokenCount" in data:
        details = {
            "input_cache_read": _count(get("cacheReadInputTokenCount")) or 0,
            "input_cache_creation": _count(get("cacheWriteInputTokenCount")) or 0,
        }
        base_in = _count(get("inputTokenCount"))
        gross_in = None if base_in is None else base_in + sum(details.values())  # Bedrock reports them apart
        return _finish(gross_in, _count(get("outputTokenCount")), _count(get("totalTokenCount")), details)

    # Vertex AI / Gemini: prompt includes cached content; candidates exclude thoughts
    if "prompt_token_count" in data or "candidates_token_count" in data:
        cached = _count(get("cached_content_token_count")) or 0
        thoughts = _count(get("thoughts_token_count")) or 0
        candidates = _count(get("candidates_token_count"))
        gross_out = None if candidates is None else candidates + thoughts
        details = {"input_cache_read": cached, "output_reasoning": thoughts}
        return _finish(_count(get("prompt_token_count")), gross_out, _count(get("total_token_count")), details)

    # Ollama
    if "prompt_eval_count" in data or "eval_count" in data:
        return _finish(_count(get("prompt_eval_count")), _count(get("eval_count")), None, {})

    # IBM watsonx
    if "input_token_count" in data or "generated_token_count" in data:
        return _finish(_count(get("input_token_count")), _count(get("generated_token_count")), None, {})

    # already Langfuse-shaped
    if "input" in data or "output" in data:
        counts = {k: c for k, v in data.items() if isinstance(k, str) and (c := _count(v)) is not None}
        return counts or None
    return None


_RESPONSE_METADATA_KEYS = ("usage", "amazon-bedrock-invocationMetrics", "usage_metadata", "token_usage")
_OLLAMA_KEYS = ("prompt_eval_count", "eval_count")


def usage_from_generations(generations: Iterable[Any], llm_output: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Usage of one LLM run from its generations (messages first) and ``llm_output``.

    Precedence like the official SDK: the message's ``usage_metadata`` (LangChain's standard)
    wins over provider-specific shapes in ``generation_info``/``response_metadata``/``llm_output``.
    """
    fallback: Any = None
    for gen in generations:
        message = getattr(gen, "message", None)
        usage_metadata = getattr(message, "usage_metadata", None)
        if usage_metadata:
            found = normalise_usage(usage_metadata)
            if found:
                return found
        if fallback is None:
            info = getattr(gen, "generation_info", None)
            if isinstance(info, Mapping) and info.get("usage_metadata"):
                fallback = info["usage_metadata"]
            meta = getattr(message, "response_metadata", None)
            if fallback is None and isinstance(meta, Mapping):
                for key in _RESPONSE_METADATA_KEYS:
                    if meta.get(key):
                        fallback = meta[key]
                        break
                else:
                    if any(k in meta for k in _OLLAMA_KEYS):
                        fallback = meta
    if fallback is not None:
        found = normalise_usage(fallback)
        if found:
            return found
    if isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage"):
            if llm_output.get(key):
                return normalise_usage(llm_output[key])
    return None
