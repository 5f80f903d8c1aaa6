"""The read-only web view at ``/`` (filled in below)."""

from __future__ import annotations

from starlette.routing import Route

from ..store import TraceStore


def routes(store: TraceStore) -> list[Route]:
    return []
