"""Which traces a command looks at: one filter model shared by ``list``, ``stats``, ``export`` and ``sessions``.

``TraceFilter`` holds every criterion (all combine with AND) and turns itself into one SQL ``WHERE`` clause over
``traces t``; the store runs it. Stdlib only: no store, no client import.

Statuses: ``ok``, ``error``, ``interrupted``, ``running`` (a trace written while its run was still going) and
``handled`` (finished ok although an observation failed: an error the graph handled, e.g. a failed tool call
the agent worked around). Search is SQLite FTS5 over the trace's input, output and error messages: every word
must appear, as a word or the start of one (``weath`` finds ``weather``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from .errors import InputError
from .model import LEVELS

STATUS_CHOICES = ("ok", "error", "interrupted", "cancelled", "running", "incomplete", "handled")
_WORD = re.compile(r"\w+", re.UNICODE)
_INT64 = 2**63 - 1


def _clamp(value: int) -> int:
    """SQLite integers are 64-bit: a far-future bound must filter everything out, not overflow."""
    return max(-_INT64 - 1, min(int(value), _INT64))


def search_query(text: str) -> str:
    """User text -> an FTS5 query: every word quoted (no FTS syntax from the user) and matched as a prefix."""
    words = _WORD.findall(text)
    if not words:
        raise InputError(f"--search '{text}' has no words to search for (give letters or digits)")
    return " ".join(f'"{word}"*' for word in words)


@dataclass(frozen=True)
class TraceFilter:
    """Criteria over stored traces; ``None``/empty means "any"."""

    name: str | None = None
    status: str | None = None  # one of STATUS_CHOICES
    level: str | None = None  # the trace's worst level: DEBUG, DEFAULT, WARNING, ERROR
    model: str | None = None  # some generation used this model
    tags: tuple[str, ...] = ()  # every one of these tags
    user_id: str | None = None
    session_id: str | None = None
    since_ns: int | None = None  # started at or after
    until_ns: int | None = None  # started before
    min_latency: float | None = None  # seconds
    min_tokens: int | None = None
    min_cost: float | None = None  # USD
    search: str | None = None  # words in input, output or error messages

    def __post_init__(self) -> None:
        if self.status is not None and self.status.lower() not in STATUS_CHOICES:
            raise InputError(f"unknown status '{self.status}': use one of {', '.join(STATUS_CHOICES)}")
        if self.level is not None and self.level.upper() not in LEVELS:
            raise InputError(f"unknown level '{self.level}': use one of {', '.join(LEVELS)}")
        for label, value in (("--min-latency", self.min_latency), ("--min-tokens", self.min_tokens),
                             ("--min-cost", self.min_cost)):  # fmt: skip
            if value is not None and value < 0:
                raise InputError(f"{label} must be 0 or more, not {value}")
        if self.search is not None:
            search_query(self.search)  # no words: say so now, not as an SQL error

    @property
    def active(self) -> bool:
        """True when any criterion is set (an empty result then means "nothing matches", not "no traces")."""
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))

    def where(self) -> tuple[str, list[Any]]:
        """``WHERE ...`` over ``traces t`` (empty when nothing is filtered) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.name is not None:
            clauses.append("t.name = ?")
            params.append(self.name)
        if self.status is not None:
            status = self.status.lower()
            if status == "running":  # no end yet, its process still there (lftrace_alive: store.py, per connection)
                clauses.append("t.end_ns IS NULL AND t.status = 'ok' AND lftrace_alive(t.running_in)")
            elif status == "incomplete":  # no end, and the process that wrote it is gone: it will never end
                clauses.append("t.end_ns IS NULL AND t.status = 'ok' AND NOT lftrace_alive(t.running_in)")
            elif status == "handled":
                clauses.append("t.status IN ('ok', 'interrupted') AND t.level = 'ERROR'")
            elif status == "ok":
                clauses.append("t.status = 'ok' AND t.end_ns IS NOT NULL")
            else:
                clauses.append("t.status = ?")
                params.append(status)
        if self.level is not None:
            clauses.append("t.level = ?")
            params.append(self.level.upper())
        if self.model is not None:
            # checked per trace, newest first, through the (model, trace_num) index: a listing of a model that is
            # used stops after LIMIT traces (IN (...) would first collect every trace id that used it)
            clauses.append("EXISTS (SELECT 1 FROM observations o WHERE o.model = ? AND o.trace_num = t.num)")
            params.append(self.model)
        for tag in self.tags:
            clauses.append("EXISTS (SELECT 1 FROM trace_tags g WHERE g.trace_id = t.id AND g.tag = ?)")
            params.append(tag)
        if self.user_id is not None:
            clauses.append("t.user_id = ?")
            params.append(self.user_id)
        if self.session_id is not None:
            clauses.append("t.session_id = ?")
            params.append(self.session_id)
        if self.since_ns is not None:
            clauses.append("t.timestamp_ns >= ?")
            params.append(_clamp(self.since_ns))
        if self.until_ns is not None:
            clauses.append("t.timestamp_ns < ?")
            params.append(_clamp(self.until_ns))
        if self.min_latency is not None:
            clauses.append("t.latency >= ?")
            params.append(float(self.min_latency))
        if self.min_tokens is not None:
            clauses.append("t.total_tokens >= ?")
            params.append(_clamp(self.min_tokens))
        if self.min_cost is not None:
            clauses.append("t.total_cost >= ?")
            params.append(float(self.min_cost))
        if self.search is not None:
            # a trace's search document is numbered as the trace (traces.num)
            clauses.append("t.num IN (SELECT rowid FROM trace_search WHERE trace_search MATCH ?)")
            params.append(search_query(self.search))
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def legacy_level(level: str | None) -> tuple[str | None, str | None]:
    """``--level`` takes a level (ERROR) or a status (ok, error, interrupted, ...): -> (level, status)."""
    if level is None:
        return None, None
    if level.upper() in LEVELS:
        return level.upper(), None
    if level.lower() in STATUS_CHOICES:
        return None, level.lower()
    raise InputError(
        f"unknown level '{level}': use a level ({', '.join(LEVELS)}) or a status ({', '.join(STATUS_CHOICES)})"
    )
