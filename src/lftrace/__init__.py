"""lftrace: Langfuse-style tracing for LangChain and LangGraph.

Drop-in names of the Langfuse SDK: ``Langfuse``, ``get_client``; the callback
handler is ``lftrace.langchain.CallbackHandler``. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["Langfuse", "Observation", "Trace", "__version__", "get_client"]

if TYPE_CHECKING:
    from .client import Langfuse, get_client
    from .model import Observation, Trace


def __getattr__(name: str) -> Any:
    if name in ("Langfuse", "get_client"):
        from . import client

        return getattr(client, name)
    if name in ("Trace", "Observation"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'lftrace' has no attribute {name!r}")
