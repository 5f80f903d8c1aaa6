"""The ``filter`` query parameter of ``GET /api/public/v2/observations``: Langfuse's JSON array of conditions.

``[{"type": "string", "column": "traceName", "operator": "=", "value": "chat"},
{"type": "arrayOptions", "column": "tags", "operator": "any of", "value": ["production"]},
{"type": "datetime", "column": "startTime", "operator": ">=", "value": "2026-01-01T00:00:00Z"}]``: every condition
must hold. A column is a field of the ``ObservationV2`` answer (``name``, ``type``, ``level``, ``traceName``,
``tags``, ``startTime``, ``latency``, ``metadata`` with ``key``, ...); a condition this server cannot evaluate is
a ``ValueError`` (a 400), never silently dropped: the official SDK's ``run_batched_evaluation`` relies on it.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..model import json_or_text, ns_from_iso

Condition = Callable[[Mapping[str, Any]], bool]

_TEXT: dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq,
    "contains": lambda have, want: want in have,
    "does not contain": lambda have, want: want not in have,
    "starts with": lambda have, want: have.startswith(want),
    "ends with": lambda have, want: have.endswith(want),
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_OPTIONS: dict[str, Callable[[set[Any], set[Any]], bool]] = {
    "any of": lambda have, want: bool(have & want),
    "none of": lambda have, want: not have & want,
    "all of": lambda have, want: want <= have,
}


def parse_conditions(raw: str) -> list[Condition]:
    """The conditions of a ``filter`` value; ValueError saying what is wrong with it."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"filter is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError('filter must be a JSON array of conditions like [{"type": "string", "column": ...}]')
    return [_condition(item, i) for i, item in enumerate(data)]


def matches(conditions: Sequence[Condition], row: Mapping[str, Any]) -> bool:
    return all(condition(row) for condition in conditions)


def _condition(item: Any, index: int) -> Condition:
    where = f"filter condition {index + 1}"
    if not isinstance(item, dict) or not isinstance(item.get("column"), str):
        raise ValueError(f"{where} must be an object with type, column, operator and value")
    kind, column, op, value = item.get("type"), item["column"], item.get("operator"), item.get("value")
    key = item.get("key")

    def field(row: Mapping[str, Any]) -> Any:
        if column not in row:
            raise ValueError(f"{where}: unknown column {column!r}")
        found = row[column]
        if kind in ("stringObject", "numberObject"):
            whole = json_or_text(found)
            return whole.get(key) if isinstance(whole, dict) else None
        return found

    if kind in ("string", "stringObject") and op in _TEXT:
        test = _TEXT[op]
        return lambda row: (have := field(row)) is not None and test(_text(have), str(value))
    if kind == "stringOptions" and op in ("any of", "none of") and isinstance(value, list):
        wanted = {str(v) for v in value}
        return lambda row: _OPTIONS[op]({_text(field(row))}, wanted)
    if kind == "arrayOptions" and op in _OPTIONS and isinstance(value, list):
        wanted = {str(v) for v in value}
        return lambda row: _OPTIONS[op]({str(v) for v in field(row) or ()}, wanted)
    if kind == "datetime" and op in _ORDER and op != "=" and isinstance(value, str):
        try:
            limit = ns_from_iso(value)
        except ValueError:
            raise ValueError(f"{where}: {value[:40]!r} is not an ISO-8601 date-time") from None
        compare = _ORDER[op]
        return lambda row: (have := field(row)) is not None and compare(ns_from_iso(str(have)), limit)
    if kind in ("number", "numberObject") and op in _ORDER and isinstance(value, int | float):
        compare = _ORDER[op]
        return lambda row: isinstance(have := field(row), int | float) and compare(have, value)
    if kind == "boolean" and op in ("=", "<>") and isinstance(value, bool):
        return lambda row: (field(row) is value) == (op == "=")
    if kind == "null" and op in ("is null", "is not null"):
        return lambda row: (field(row) in (None, "")) == (op == "is null")
    raise ValueError(f"{where}: {kind!r} with operator {op!r} is not supported by lftrace serve")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
