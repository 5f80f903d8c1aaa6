"""Observation -> span attributes: one function per vocabulary, and a table of profiles that picks them.

Every span carries several vocabularies at once, so the same bytes are useful in Langfuse, Phoenix and any
GenAI-aware OpenTelemetry backend:

* ``langfuse_attributes``: ``langfuse.*`` (what the Langfuse server reads first; see LANGFUSE_WIRE.md),
* ``genai_attributes``: the OpenTelemetry GenAI semantic conventions (``gen_ai.*``),
* ``openinference_attributes``: OpenInference (``openinference.span.kind``, ``llm.token_count.*``), so
  Phoenix shows kinds and tokens,
* ``trace_attributes``: the trace's own fields, on its root span only.

Two profiles (``PROFILES``) differ only where the backends disagree:

* ``langfuse``: the span name is the LangChain name. The Langfuse server has no attribute that overrides the
  observation name (its OTel ingestion takes ``span.name``, except ``gen_ai.tool.name`` for tools, which we
  set to the same tool name). The instrumentation scope is ``langfuse-sdk-lftrace``: Langfuse copies every
  raw span attribute into observation metadata unless the scope name starts with ``langfuse-sdk``, which
  would bury the user's metadata under ours. Input/output ride on ``langfuse.observation.input/output``.
* ``otlp``: span names follow the GenAI conventions (``chat {model}``, ``execute_tool {tool}``,
  ``invoke_agent {name}``, ``embeddings {model}``; others keep their name) and the LangChain name is kept in
  ``lftrace.observation.name``. Input/output ride on OpenInference ``input.value``/``output.value`` (JSON,
  with mime types), which Phoenix displays and Langfuse also reads when pointed at it.

Values are str, bool, int, float or a list of str, and inputs and outputs bytes (their JSON as UTF-8: wire.py
writes them as strings); size limits are applied later (encode.py). Pure Python:
importing this module costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model import EXPERIMENT_KEY, Observation, Trace, iso_from_ns
from ..usage import gross_counts

LANGFUSE_SCOPE = "langfuse-sdk-lftrace"
OTLP_SCOPE = "lftrace"

_OPERATION = {"GENERATION": "chat", "TOOL": "execute_tool", "EMBEDDING": "embeddings", "AGENT": "invoke_agent"}
_OPENINFERENCE_KIND = {
    "GENERATION": "LLM",
    "TOOL": "TOOL",
    "AGENT": "AGENT",
    "CHAIN": "CHAIN",
    "RETRIEVER": "RETRIEVER",
    "EMBEDDING": "EMBEDDING",
    "EVALUATOR": "EVALUATOR",
    "GUARDRAIL": "GUARDRAIL",
    "SPAN": "CHAIN",
    "EVENT": "CHAIN",
}
# LangChain's ls_provider -> gen_ai.provider.name (OpenTelemetry's well-known values)
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "google": "gcp.gen_ai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
}
# model parameter -> gen_ai.request.<name>
_REQUEST_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "seed": "seed",
}


def dumps(value: Any) -> str:
    """JSON text of a value from the store (already JSON-able, or JSON text from the writer: ``sharing.as_json``;
    anything else falls back to str)."""
    try:
        return _orjson_dumps(value).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return _json_dumps(value)


def dumps_utf8(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, which the wire takes as they are: for inputs and outputs, megabytes per span in a
    long run, where decoding orjson's bytes to encode them again copied each value twice more."""
    try:
        return _orjson_dumps(value)
    except TypeError:
        return _json_dumps(value).encode("utf-8", "backslashreplace")


def _orjson_dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def _json_dumps(value: Any) -> str:
    from ..sharing import text_default

    return json.dumps(value, default=text_default, ensure_ascii=False)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _token_counts(usage: Mapping[str, Any]) -> tuple[dict[str, int], int, int, int]:
    """Langfuse usage (input/output exclude their details) -> (gross counts, input total, output total, total).

    ``usage.gross_counts`` reads every provider's keys (Anthropic's cache counts kept beside input, OpenAI's
    ``input_cached_tokens``, priority tiers that are not extra tokens, ...).
    """
    counts = {k: int(v) for k, v in usage.items() if _number(v)}
    gross = gross_counts(counts)
    return gross, gross["input"], gross["output"], counts.get("total", gross["input"] + gross["output"])


def _cache_read(counts: Mapping[str, int]) -> int | None:
    return counts["cache_read"] or None


def _reasoning(counts: Mapping[str, int]) -> int | None:
    return counts["reasoning"] or None


def _request_model(obs: Observation) -> str | None:
    value = (obs.metadata or {}).get("ls_model_name")
    return value if isinstance(value, str) else None


def _tool_call_id(obs: Observation) -> str | None:
    meta = obs.metadata or {}
    for key in ("tool_call_id", "langfuse_tool_call_id"):
        if isinstance(meta.get(key), str):
            return meta[key]
    from ..sharing import json_text

    data = json_text(obs.input)  # a just-written trace holds its input as JSON text
    if isinstance(data, dict):
        if data.get("type") == "tool_call" and isinstance(data.get("id"), str):
            return data["id"]
        if isinstance(data.get("tool_call_id"), str):
            return data["tool_call_id"]
    return None


# ---------------------------------------------------------------- span names


def langchain_span_name(obs: Observation) -> str:
    return obs.name


def genai_span_name(obs: Observation) -> str:
    """``chat {model}``, ``embeddings {model}``, ``execute_tool {name}``, ``invoke_agent {name}``; else the name."""
    if obs.type in ("GENERATION", "EMBEDDING") and obs.model:
        return f"{_OPERATION[obs.type]} {obs.model}"
    if obs.type in ("TOOL", "AGENT"):
        return f"{_OPERATION[obs.type]} {obs.name}"
    return obs.name


# ---------------------------------------------------------------- the vocabularies


def langfuse_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """``langfuse.observation.*`` and the environment/release/version (no input/output: see langfuse_io)."""
    a["langfuse.observation.type"] = obs.type.lower()
    a["langfuse.observation.level"] = obs.level
    # the trace's environment unless the observation has its own
    a["langfuse.environment"] = obs.environment if obs.environment not in ("", "default") else trace.environment
    if obs.status_message:
        a["langfuse.observation.status_message"] = obs.status_message
    if trace.release:
        a["langfuse.release"] = trace.release
    if obs.version or trace.version:
        a["langfuse.version"] = obs.version or trace.version
    for key, value in (obs.metadata or {}).items():
        if value is not None:
            a[f"langfuse.observation.metadata.{key}"] = value if isinstance(value, str) else dumps(value)
    experiment = (trace.metadata or {}).get(EXPERIMENT_KEY)
    if isinstance(experiment, dict):  # run_experiment's item: every span says which experiment and item, as the SDK's
        for key, value in experiment.items():
            a[f"langfuse.experiment.{key}"] = value if isinstance(value, str) else dumps(value)
    if obs.model:
        a["langfuse.observation.model.name"] = obs.model
    if obs.model_parameters:
        a["langfuse.observation.model.parameters"] = dumps(obs.model_parameters)
    if obs.usage_details:
        a["langfuse.observation.usage_details"] = dumps(obs.usage_details)
    if obs.completion_start_time is not None:
        a["langfuse.observation.completion_start_time"] = iso_from_ns(obs.completion_start_time)
    if obs.prompt_name:  # the generation's Langfuse prompt (langfuse_prompt), as the official SDK sends it
        a["langfuse.observation.prompt.name"] = obs.prompt_name
        if obs.prompt_version is not None:
            a["langfuse.observation.prompt.version"] = obs.prompt_version


def langfuse_cost_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """The local cost estimate (only with LFTRACE_EXPORT_COST: Langfuse prices usage itself, with the project's
    own model prices, unless a cost is sent - the official handler sends none)."""
    if obs.cost_details:
        a["langfuse.observation.cost_details"] = dumps(obs.cost_details)


def langfuse_io_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """Input and output where Langfuse reads them first."""
    if obs.input is not None:
        a["langfuse.observation.input"] = dumps_utf8(obs.input)
    if obs.output is not None:
        a["langfuse.observation.output"] = dumps_utf8(obs.output)


def genai_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """The OpenTelemetry GenAI semantic conventions: operation, provider, request/response model, usage, tools."""
    metadata = obs.metadata or {}
    operation = _OPERATION.get(obs.type)
    if operation == "chat" and metadata.get("ls_model_type") == "llm":
        operation = "text_completion"
    if operation:
        a["gen_ai.operation.name"] = operation
    provider = metadata.get("ls_provider")
    if isinstance(provider, str) and provider:
        a["gen_ai.provider.name"] = _PROVIDERS.get(provider.lower(), provider.lower())
    if obs.type in ("GENERATION", "EMBEDDING"):
        request_model = _request_model(obs)
        if request_model or obs.model:
            a["gen_ai.request.model"] = request_model or obs.model
        if obs.model:
            a["gen_ai.response.model"] = obs.model
        for key, value in (obs.model_parameters or {}).items():
            name = _REQUEST_PARAMS.get(key)
            if name and _number(value):
                a[f"gen_ai.request.{name}"] = value
        stop = (obs.model_parameters or {}).get("stop")
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            a["gen_ai.request.stop_sequences"] = stop
    if obs.usage_details:
        counts, input_total, output_total, _ = _token_counts(obs.usage_details)
        a["gen_ai.usage.input_tokens"] = input_total
        a["gen_ai.usage.output_tokens"] = output_total
        if (cache_read := _cache_read(counts)) is not None:
            a["gen_ai.usage.cache_read.input_tokens"] = cache_read
        if counts["cache_write"]:
            a["gen_ai.usage.cache_creation.input_tokens"] = counts["cache_write"]
        if (reasoning := _reasoning(counts)) is not None:
            a["gen_ai.usage.reasoning.output_tokens"] = reasoning
    if obs.type == "TOOL":
        a["gen_ai.tool.name"] = obs.name
        call_id = _tool_call_id(obs)
        if call_id:
            a["gen_ai.tool.call.id"] = call_id
    if obs.type == "AGENT":
        a["gen_ai.agent.name"] = obs.name


def openinference_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """OpenInference: span kind, model name, token counts, tool name (no input/output: see openinference_io)."""
    a["openinference.span.kind"] = _OPENINFERENCE_KIND.get(obs.type, "CHAIN")
    if obs.type in ("GENERATION", "EMBEDDING"):
        request_model = _request_model(obs)
        if request_model or obs.model:
            a["llm.model_name"] = obs.model or request_model
    if obs.usage_details:
        counts, input_total, output_total, total = _token_counts(obs.usage_details)
        a["llm.token_count.prompt"] = input_total
        a["llm.token_count.completion"] = output_total
        a["llm.token_count.total"] = total
        if (cache_read := _cache_read(counts)) is not None:
            a["llm.token_count.prompt_details.cache_read"] = cache_read
        if counts["cache_write"]:
            a["llm.token_count.prompt_details.cache_write"] = counts["cache_write"]
        if (reasoning := _reasoning(counts)) is not None:
            a["llm.token_count.completion_details.reasoning"] = reasoning
    if obs.type == "TOOL":
        a["tool.name"] = obs.name


def openinference_io_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """Input and output as OpenInference JSON values (Phoenix shows them; Langfuse reads them too)."""
    if obs.input is not None:
        a["input.value"] = dumps_utf8(obs.input)
        a["input.mime_type"] = "application/json"
    if obs.output is not None:
        a["output.value"] = dumps_utf8(obs.output)
        a["output.mime_type"] = "application/json"


def lftrace_name_attributes(a: dict[str, Any], obs: Observation, trace: Trace) -> None:
    """The LangChain name, when the span name is a GenAI one."""
    if genai_span_name(obs) != obs.name:
        a["lftrace.observation.name"] = obs.name


def trace_attributes(trace: Trace) -> dict[str, Any]:
    """The trace's fields, carried by its root span (``langfuse.trace.*``, ``user.id``, ``session.id``)."""
    a: dict[str, Any] = {}
    if trace.name:
        a["langfuse.trace.name"] = trace.name
    if trace.input is not None:
        a["langfuse.trace.input"] = dumps_utf8(trace.input)
    if trace.output is not None:
        a["langfuse.trace.output"] = dumps_utf8(trace.output)
    if trace.tags:
        a["langfuse.trace.tags"] = [str(t) for t in trace.tags]
    for key, value in (trace.metadata or {}).items():
        if value is not None and key != EXPERIMENT_KEY:  # sent as langfuse.experiment.* on every span
            a[f"langfuse.trace.metadata.{key}"] = value if isinstance(value, str) else dumps(value)
    if trace.user_id:
        a["user.id"] = trace.user_id
    if trace.session_id:
        a["session.id"] = trace.session_id
    if trace.public:
        a["langfuse.trace.public"] = True
    return a


# ---------------------------------------------------------------- profiles

# adds its attributes of one observation to the span's dict (no dict per vocabulary: this runs per span)
Vocabulary = Callable[[dict[str, Any], Observation, Trace], None]


@dataclass(frozen=True)
class Profile:
    """What one kind of backend gets: the scope name, how spans are named, which vocabularies apply."""

    scope: str
    span_name: Callable[[Observation], str]
    vocabularies: tuple[Vocabulary, ...]


PROFILES: dict[str, Profile] = {
    "langfuse": Profile(
        LANGFUSE_SCOPE,
        langchain_span_name,
        (langfuse_attributes, langfuse_io_attributes, genai_attributes, openinference_attributes),
    ),
    "otlp": Profile(
        OTLP_SCOPE,
        genai_span_name,
        (
            langfuse_attributes,
            genai_attributes,
            openinference_attributes,
            openinference_io_attributes,
            lftrace_name_attributes,
        ),
    ),
}


# the same profiles with the local cost exported too ("langfuse+cost", "otlp+cost")
PROFILES.update(
    {
        f"{name}+cost": Profile(p.scope, p.span_name, (*p.vocabularies, langfuse_cost_attributes))
        for name, p in list(PROFILES.items())
    }
)


def with_cost(profile: str, export_cost: bool) -> str:
    return f"{profile}+cost" if export_cost and f"{profile}+cost" in PROFILES else profile


def span_name(obs: Observation, profile: str) -> str:
    """The LangChain name for Langfuse; GenAI convention names for other OTLP backends."""
    return PROFILES[profile].span_name(obs)


def observation_attributes(obs: Observation, trace: Trace, *, is_root: bool, profile: str) -> dict[str, Any]:
    """Every attribute of one span, from the vocabularies of ``profile`` (the trace's fields on its root)."""
    a: dict[str, Any] = {}
    for vocabulary in PROFILES[profile].vocabularies:
        vocabulary(a, obs, trace)
    if is_root:
        a.update(trace_attributes(trace))
    return a
