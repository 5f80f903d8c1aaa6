"""Checks for data from outside: trace files (``lftrace import``, ``diff FILE``, baselines), JSON input and datasets.

Hostile or broken files are refused with one InputError (exit 2) that names the file and the first problem,
before anything is written: never a crash, a RecursionError, or a trace that later breaks ``show`` or ``stats``.
What is checked for a trace (Langfuse's trace JSON, as ``lftrace export`` writes it):

- ids: non-empty strings of at most ``MAX_ID_CHARS`` printable characters; observation ids unique per trace;
  an observation's ``traceId`` (when given) is its trace's id;
- parents: ``parentObservationId`` is null or a string; parent links form a tree (no observation is its own
  ancestor); a parent missing from the file is allowed (the observation is shown as a root);
- types: ``type`` one of Langfuse's observation types, ``level`` one of its levels, strings where strings go,
  objects where objects go, tags a list of strings;
- times: ISO-8601 dates between the years 1970 and 9999;
- numbers: usage counts whole numbers in 0..2**53, costs and latency finite and not negative;
- nesting: no value nested deeper than ``MAX_DEPTH`` (the store and the export read them back).

Stdlib only, like the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InputError
from .model import LEVELS, OBSERVATION_TYPES, Trace

MAX_DEPTH = 200  # JSON nesting accepted in files and input (Python's json fails near 1,000 with a RecursionError)
MAX_ID_CHARS = 256
MAX_COUNT = 2**53  # usage counts: exact in a float, far above any real count
_MIN_YEAR, _MAX_YEAR = 1970, 9999
_TRACE_STRINGS = ("name", "sessionId", "userId", "release", "version", "environment")
_OBS_STRINGS = ("name", "model", "statusMessage", "version", "environment")
_TIMES = ("startTime", "endTime", "completionStartTime")


def read_text(path: Path, what: str = "file") -> str:
    """The file as UTF-8 text; InputError (exit 2) for a missing, unreadable or non-UTF-8 file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a {what}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_utf8(raw, str(path))


def decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM (Windows editors) is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def loads(text: str, where: str) -> Any:
    """``json.loads`` that reports nesting deeper than MAX_DEPTH as InputError, not a RecursionError.

    ``json.JSONDecodeError`` passes through (callers word their own syntax errors).
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deep (more than {MAX_DEPTH} levels)") from None
    check_depth(value, where)
    return value


def check_depth(value: Any, where: str) -> None:
    """InputError if ``value`` nests lists/objects deeper than MAX_DEPTH (iterative: never recurses itself)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: JSON nested too deep (more than {MAX_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def trace_from_dict(data: Any, where: str) -> Trace:
    """A validated Trace from Langfuse's trace JSON; InputError naming ``where`` and the first problem."""
    problem = trace_problem(data)
    if problem is not None:
        raise InputError(f"{where}: {problem}")
    try:
        return Trace.from_dict(data)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # checked above; kept as a last guard
        raise InputError(f"{where}: not a valid trace ({type(exc).__name__}: {exc})") from None


def trace_problem(data: Any) -> str | None:
    """The first problem with a trace dict, or None when it is fine."""
    if not isinstance(data, dict):
        return f'not a trace (a JSON {_kind(data)}; expected an object with "id" and "observations")'
    problem = _id_problem(data.get("id"), "trace id")
    if problem:
        return problem
    trace_id = data["id"]
    for key in _TRACE_STRINGS:
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"trace {key} must be a string, not {_kind(data[key])}"
    tags = data.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        return "trace tags must be a list of strings"
    if data.get("metadata") is not None and not isinstance(data["metadata"], dict):
        return f"trace metadata must be an object, not {_kind(data['metadata'])}"
    problem = _time_problem(data.get("timestamp"), "trace timestamp")
    if problem:
        return problem
    latency = data.get("latency")
    if latency is not None and not _non_negative(latency):
        return f"trace latency must be a number of seconds >= 0, not {latency!r}"
    observations = data.get("observations")
    if observations is None:
        observations = []
    if not isinstance(observations, list):
        return f"trace observations must be a list, not {_kind(observations)}"
    seen: dict[str, str | None] = {}
    for index, obs in enumerate(observations):
        problem = _observation_problem(obs, trace_id)
        if problem:
            label = obs.get("id") if isinstance(obs, dict) and isinstance(obs.get("id"), str) else f"#{index + 1}"
            return f"observation {label}: {problem}"
        if obs["id"] in seen:
            return f"observation id {obs['id']!r} appears twice"
        seen[obs["id"]] = obs.get("parentObservationId")
    cycle = _first_cycle(seen)
    if cycle:
        return f"observation parents form a cycle ({' -> '.join(cycle)}); they must form a tree"
    try:
        check_depth(data, "trace")
    except InputError:
        return f"a value is nested too deep (more than {MAX_DEPTH} levels)"
    return None


def _observation_problem(obs: Any, trace_id: str) -> str | None:
    if not isinstance(obs, dict):
        return f"not an object ({_kind(obs)})"
    problem = _id_problem(obs.get("id"), "id")
    if problem:
        return problem
    if obs.get("traceId") is not None and obs["traceId"] != trace_id:
        return f"traceId {str(obs['traceId'])[:80]!r} is not the trace's id"
    parent = obs.get("parentObservationId")
    if parent is not None:
        problem = _id_problem(parent, "parentObservationId")
        if problem:
            return problem
        if parent == obs["id"]:
            return "is its own parent"
    kind = obs.get("type")
    if kind is not None and kind not in OBSERVATION_TYPES:
        return f"type {str(kind)[:40]!r} is not one of {', '.join(OBSERVATION_TYPES)}"
    level = obs.get("level")
    if level is not None and level not in LEVELS:
        return f"level {str(level)[:40]!r} is not one of {', '.join(LEVELS)}"
    for key in _OBS_STRINGS:
        if obs.get(key) is not None and not isinstance(obs[key], str):
            return f"{key} must be a string, not {_kind(obs[key])}"
    for key in ("modelParameters", "metadata"):
        if obs.get(key) is not None and not isinstance(obs[key], dict):
            return f"{key} must be an object, not {_kind(obs[key])}"
    for key in _TIMES:
        problem = _time_problem(obs.get(key), key)
        if problem:
            return problem
    usage = obs.get("usageDetails")
    if usage is not None:
        if not isinstance(usage, dict):
            return f"usageDetails must be an object of token counts, not {_kind(usage)}"
        for key, value in usage.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                return f"usageDetails.{key} must be a whole number of tokens in 0..2**53, not {value!r}"[:200]
    cost = obs.get("costDetails")
    if cost is not None:
        if not isinstance(cost, dict):
            return f"costDetails must be an object of amounts, not {_kind(cost)}"
        for key, value in cost.items():
            if not _non_negative(value):
                return f"costDetails.{key} must be a finite amount >= 0, not {value!r}"[:200]
    return None


def _id_problem(value: Any, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, not {_kind(value)}"
    if not value.strip():
        return f"{what} is empty"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is longer than {MAX_ID_CHARS} characters"
    if not value.isprintable():
        return f"{what} {value[:40]!r} holds control or invisible characters"
    return None


def _time_problem(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{what} must be an ISO-8601 date string, not {_kind(value)}"
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"{what} {value[:40]!r} is not an ISO-8601 date"
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if not _MIN_YEAR <= dt.year <= _MAX_YEAR or dt.timestamp() < 0:
        return f"{what} {value[:40]!r} is out of range (years {_MIN_YEAR}-{_MAX_YEAR})"
    return None


def _non_negative(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 1e300
    )


def _first_cycle(parents: Mapping[str, str | None]) -> list[str] | None:
    """The first parent cycle, as ids from an observation back to itself; None when the links form a forest."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = known to reach a root
    for start in parents:
        path: list[str] = []
        node: str | None = start
        while node is not None and node in parents and state.get(node) != 2:
            if state.get(node) == 1:
                cycle = [*path[path.index(node) :], node]
                return cycle[:6] + (["..."] if len(cycle) > 6 else [])
            state[node] = 1
            path.append(node)
            node = parents[node]
        for done in path:
            state[done] = 2
    return None


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_traces_file(path: Path) -> list[Trace]:
    """Validated traces from a file: one trace JSON object, a JSON list of them, or JSONL (one per line).

    InputError (exit 2) naming the file (and line or index) and the first problem; nothing half-read.
    """
    text = read_text(path, "trace file")
    items: list[tuple[str, Any]]
    try:
        whole = loads(text, str(path))
        items = (
            [(f"{path}[{i}]", item) for i, item in enumerate(whole)]
            if isinstance(whole, list)
            else [(str(path), whole)]
        )
    except json.JSONDecodeError:
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                items.append((where, loads(line, where)))
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{where}: not valid JSON ({exc.msg}); expected a trace, a list of traces or JSONL"
                ) from None
    traces = [trace_from_dict(item, where) for where, item in items]
    if not traces:
        raise InputError(f"{path} holds no traces")
    return traces
