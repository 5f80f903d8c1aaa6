"""A trace's JSON written observation by observation (``show --json``, ``export``), in bounded memory.

The JSON of a long agent run is large by nature: every observation carries its full input, and in a run of
N steps the inputs hold the conversation so far, so the text grows with the square of N (800 MB at 5,000
observations) while the store keeps each message once. Building it as one dict and one string held several
copies of it at once (3.8 GB of memory at 5,000 observations) and ``json.dumps(indent=2)`` runs in pure
Python. Here the trace's own fields come from ``TraceStore.trace_outline`` (no observation values), the
observations are read ``TraceStore.iter_observations`` page by page, and each is encoded (orjson) and
written on its own: time linear in the bytes written, memory bounded by one page.

The text is what ``json.dumps(trace.to_dict(), indent=2, ensure_ascii=False)`` writes (or one compact line):
the same keys in the same order, the same layout, floats spelt as Python spells them (``1.5e-05``, where
orjson writes ``0.000015``). Only inside a value of more than SPELLING_BUDGET items (a long conversation)
are floats left as orjson spells them: equal once parsed. A value orjson cannot encode (an integer beyond
64 bits, a lone surrogate) falls back to the json module for that observation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .model import Observation, Trace
    from .store import TraceStore

_KEY = "observations"
_OPEN, _CLOSE = b"[\n  [", b"\n  ]\n]"  # around an observation encoded as [[{...}]] with indent 2


SPELLING_BUDGET = 200  # items of one field walked to spell its floats as Python does


class _Exhausted(Exception):
    pass


def _spelt(value: Any, budget: list[int]) -> Any:
    """``value`` with its floats replaced by their Python spelling (orjson fragments); the same object when it
    holds none. _Exhausted past the budget of items."""
    kind = type(value)
    if kind is float:
        return orjson.Fragment(repr(value).encode()) if math.isfinite(value) else value
    if kind is dict or kind is list:
        budget[0] -= len(value)
        if budget[0] < 0:
            raise _Exhausted
        changed: Any = None  # a copy, made at the first item that changes
        for key, item in value.items() if kind is dict else enumerate(value):
            if type(item) in (float, dict, list):
                new = _spelt(item, budget)
                if new is not item:
                    if changed is None:
                        changed = kind(value)
                    changed[key] = new
        return value if changed is None else changed
    return value


def _python_spelling(fields: dict[str, Any]) -> dict[str, Any]:
    """A trace's or observation's fields with floats spelt as ``json.dumps`` spells them, field by field (a
    field too large to walk cheaply keeps orjson's spelling)."""
    out = fields
    for key, value in fields.items():
        try:
            new = _spelt(value, [SPELLING_BUDGET])
        except (_Exhausted, RecursionError):
            continue
        if new is not value:
            out = out if out is not fields else dict(fields)
            out[key] = new
    return out


def _encode(value: Any, *, indent: bool, ascii_only: bool = False, spelt: Any = None) -> bytes:
    """``json.dumps(value, indent=2 or None, ensure_ascii=False, default=str)`` as UTF-8, fast (orjson).

    ``spelt``: the same value with floats as orjson fragments (``_python_spelling``), for orjson."""
    if not ascii_only:
        try:
            option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
            return orjson.dumps(value if spelt is None else spelt, default=str, option=option)
        except TypeError:  # orjson.JSONEncodeError: a huge int, a lone surrogate, a cycle
            pass
    separators = None if indent else (",", ":")
    if not ascii_only:
        try:
            return json.dumps(
                value, indent=2 if indent else None, separators=separators, ensure_ascii=False, default=str
            ).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: \\uXXXX escapes, as print_json does
            pass
    return json.dumps(
        value, indent=2 if indent else None, separators=separators, ensure_ascii=True, default=str
    ).encode()


def trace_chunks(
    header: dict[str, Any], observations: Iterable[Observation], *, indent: bool = True, ascii_only: bool = False
) -> Iterator[bytes | memoryview]:
    """The trace JSON in pieces: ``header`` is ``Trace.to_dict(observations=False)``; ``observations`` are put
    in its ``observations`` list one by one, in the order given."""
    keys = list(header)
    cut = keys.index(_KEY) if _KEY in keys else len(keys)
    before = {k: header[k] for k in keys[:cut]}
    after = {k: header[k] for k in keys[cut + 1 :]}
    head = _encode(before, indent=indent, ascii_only=ascii_only, spelt=_python_spelling(before))
    head = head[:-1].rstrip(b"\n")  # '{...' open
    tail = _encode(after, indent=indent, ascii_only=ascii_only, spelt=_python_spelling(after))[1:]  # '...}'
    sep = b",\n  " if indent else b","
    yield head + (sep if before else (b"\n  " if indent else b"")) + b'"observations":' + (b" [" if indent else b"[")
    count = 0
    for obs in observations:
        data = obs.to_dict()
        spelt = _python_spelling(data)
        if indent:
            # encoded two lists down, the depth it has in the trace, and cut out without a copy
            text = _encode([[data]], indent=True, ascii_only=ascii_only, spelt=[[spelt]])
            piece: bytes | memoryview = memoryview(text)[len(_OPEN) : -len(_CLOSE)]
        else:
            piece = _encode(data, indent=False, ascii_only=ascii_only, spelt=spelt)
        if count:
            yield b","
        yield piece
        count += 1
    close = (b"\n  ]" if indent and count else b"]") + (b"," if after else b"")
    if indent:
        yield close + (tail if after else b"\n}")
    else:
        yield close + (tail if after else b"}")


def stored_trace_chunks(
    store: TraceStore, trace_id: str, *, indent: bool = True, ascii_only: bool = False
) -> Iterator[bytes | memoryview] | None:
    """A stored trace (exact id) as JSON pieces, streamed from the store; None when there is no such trace."""
    outline = store.trace_outline(trace_id)
    if outline is None:
        return None
    header = outline.to_dict(observations=False)
    outline.observations = []  # the outline's observations were only needed for the derived fields
    return trace_chunks(header, store.iter_observations(trace_id), indent=indent, ascii_only=ascii_only)


def loaded_trace_chunks(trace: Trace, *, indent: bool = True, ascii_only: bool = False) -> Iterator[bytes | memoryview]:
    """A trace already in memory (a file given to ``export``) as JSON pieces."""
    return trace_chunks(trace.to_dict(observations=False), trace.observations, indent=indent, ascii_only=ascii_only)
