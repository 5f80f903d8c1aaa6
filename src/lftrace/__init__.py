"""lftrace: Langfuse-style tracing for LangChain and LangGraph.

Drop-in names of the Langfuse SDK: ``Langfuse``, ``get_client``; the callback
handler is ``lftrace.langchain.CallbackHandler``. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_SDK_NAMES = (
    "observe",
    "propagate_attributes",
    "LangfuseSpan",
    "LangfuseGeneration",
    "LangfuseAgent",
    "LangfuseTool",
    "LangfuseChain",
    "LangfuseRetriever",
    "LangfuseEvaluator",
    "LangfuseEmbedding",
    "LangfuseGuardrail",
    "LangfuseEvent",
)
__all__ = [
    "BatchEvaluationResult",
    "BatchEvaluationResumeToken",
    "Evaluation",
    "EvaluatorInputs",
    "Langfuse",
    "LangfuseAgent",
    "LangfuseChain",
    "LangfuseEmbedding",
    "LangfuseEvaluator",
    "LangfuseEvent",
    "LangfuseGeneration",
    "LangfuseGuardrail",
    "LangfuseMedia",
    "LangfuseMediaReference",
    "LangfuseRetriever",
    "LangfuseSpan",
    "LangfuseTool",
    "Observation",
    "Trace",
    "__version__",
    "get_client",
    "observe",
    "propagate_attributes",
]

if TYPE_CHECKING:
    from .batch_evaluation import BatchEvaluationResult, BatchEvaluationResumeToken, EvaluatorInputs
    from .client import Langfuse, get_client
    from .experiments import Evaluation
    from .media import LangfuseMedia, LangfuseMediaReference
    from .model import Observation, Trace
    from .sdk import (
        LangfuseAgent,
        LangfuseChain,
        LangfuseEmbedding,
        LangfuseEvaluator,
        LangfuseEvent,
        LangfuseGeneration,
        LangfuseGuardrail,
        LangfuseRetriever,
        LangfuseSpan,
        LangfuseTool,
        observe,
        propagate_attributes,
    )


def __getattr__(name: str) -> Any:
    if name in ("Langfuse", "get_client"):
        from . import client

        return getattr(client, name)
    if name in _SDK_NAMES:
        from . import client, sdk  # the client first: @observe finds it through sdk.client_factory

        return getattr(sdk, name)
    if name == "Evaluation":  # run_experiment's evaluators return these
        from .experiments import Evaluation

        return Evaluation
    if name in ("EvaluatorInputs", "BatchEvaluationResult", "BatchEvaluationResumeToken"):  # run_batched_evaluation's
        from . import batch_evaluation

        return getattr(batch_evaluation, name)
    if name in ("LangfuseMedia", "LangfuseMediaReference"):
        from . import media

        return getattr(media, name)
    if name in ("Trace", "Observation"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'lftrace' has no attribute {name!r}")
