"""How finished traces travel to the export helper (export_process.py) on its pipe, and back.

Two forms, both JSON (orjson): ``shipped``, a trace the program's writer prepared (its JSON text kept as text,
stored and sent by the helper as it is), and ``captured``, a trace as the handler captured it, in one orjson pass,
which the helper prepares itself (``TraceWriter.prepare``). ``unshipped`` turns either back into traces in the
helper; ``uncaptured`` in the program, when the helper went away before writing a captured trace.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import orjson

from .media import Extractor
from .model import Observation, Trace
from .serialize import MEDIA_SINK, ORJSON_OPTIONS, orjson_default
from .serialize import forget as forget_messages
from .sharing import Frozen

log = logging.getLogger("lftrace.delivery")

_TRACE_FIELDS = tuple(f.name for f in fields(Trace) if f.name not in ("observations", "scores", "media"))
_OBSERVATION_FIELDS = tuple(f.name for f in fields(Observation))
_TRACE_VALUES = operator.attrgetter(*_TRACE_FIELDS)  # a row's values in one call (C): ~25 fields per observation
_OBSERVATION_VALUES = operator.attrgetter(*_OBSERVATION_FIELDS)
# where the writer leaves JSON text (sharing.as_json): sent as strings, and the helper keeps that very text. Text in
# any other field would go as the JSON it holds (orjson writes a fragment as it is) and arrive as its value.
_TEXT_FIELDS = ("input", "output")
_TRACE_TEXTS = tuple(_TRACE_FIELDS.index(name) for name in _TEXT_FIELDS)
_OBSERVATION_TEXTS = tuple(_OBSERVATION_FIELDS.index(name) for name in _TEXT_FIELDS)
MAX_SHIPPED_ITEMS = 2_000  # list items in a trace's non-text inputs and outputs beyond which it is written here
MAX_SHIPPED_BYTES = 8_000_000  # ... and its size on the pipe (a helper that takes seconds to commit it is given up)


def shipped(trace: Trace) -> orjson.Fragment | None:
    """A prepared trace as JSON for the helper: a list of field values for the trace and for each observation.

    A value the writer made JSON text already (``sharing.as_json``, most inputs and outputs) goes as a string, a
    bit in the row's last item saying so, and the helper stores and sends that very text. None (the program
    writes the trace itself) for a trace with scores, with inputs and outputs holding long lists (a long run's
    growing conversation: each observation's whole list would be written out here), over ``MAX_SHIPPED_BYTES``,
    or with a value orjson refuses (an int beyond 64 bits, a lone surrogate), or with media (images, files: bytes).
    """
    if trace.scores or trace.media:
        return None
    budget = [MAX_SHIPPED_ITEMS]
    head = _row(_TRACE_VALUES(trace), _TRACE_TEXTS, budget)
    rows = [_row(_OBSERVATION_VALUES(obs), _OBSERVATION_TEXTS, budget) for obs in trace.observations]
    if head is None or None in rows:
        return None
    try:
        data = orjson.dumps([head, rows])
    except TypeError:
        return None
    return orjson.Fragment(data) if len(data) <= MAX_SHIPPED_BYTES else None


def _row(values: tuple[Any, ...], texts_at: tuple[int, ...], budget: list[int]) -> list[Any] | None:
    row = list(values)
    texts = 0
    for i in texts_at:
        value = row[i]
        kind = type(value)
        if kind is orjson.Fragment:
            row[i] = orjson.dumps(value).decode()
            texts |= 1 << i
        elif kind is list or kind is dict:
            budget[0] -= _items(value)
            if budget[0] < 0:
                return None
    row.append(texts)
    return row


def _items(value: Any) -> int:
    """List items in a value and in the lists of its top-level dict (where the store shares lists)."""
    if type(value) is list:
        return len(value)
    return sum(len(item) for item in value.values() if type(item) is list) + len(value)


def captured(trace: Trace) -> orjson.Fragment | None:
    """A finished trace as the handler captured it, for the helper to prepare (``TraceWriter.prepare``) and write:
    its field values and each observation's in one orjson pass (~8 us per span on bench/overhead.py's agent, where
    preparing it here and ``shipped`` took ~35). Captured lists go as their items, messages, documents and models
    as ``serialize`` makes them; the helper then prepares JSON values, to the same result.

    None (the program prepares the trace: ``shipped``) for a trace with scores or media, with more than
    ``MAX_SHIPPED_ITEMS`` items in its captured lists (a growing conversation, shared by the program's
    converter), over ``MAX_SHIPPED_BYTES``, or with a value orjson refuses or a ``LangfuseMedia`` inside
    (its bytes are taken out by the program's writer).
    """
    if trace.scores or trace.media:
        return None
    MEDIA_SINK.extractor = _REFUSE_MEDIA
    _CAPTURING.items = MAX_SHIPPED_ITEMS
    _CAPTURING.media = False
    try:
        data = orjson.dumps(
            [_CAPTURED, _TRACE_VALUES(trace), [_OBSERVATION_VALUES(obs) for obs in trace.observations]],
            default=_captured_value,
            option=ORJSON_OPTIONS,
        )
    except Exception:  # a cycle, an int beyond 64 bits, a lone surrogate, media, long lists: prepared by the program
        return None
    finally:
        MEDIA_SINK.extractor = None
        forget_messages()
    if _CAPTURING.media:  # met inside a model, where the converter may have gone on without it (model_dump)
        return None
    return orjson.Fragment(data) if len(data) <= MAX_SHIPPED_BYTES else None


_CAPTURED = 0  # first item of a ``captured`` trace (a ``shipped`` one is [head, rows])


class _Capturing(threading.local):
    items = 0  # captured list items ``captured`` may still write out (a program's clients each have a writer)
    media = False  # a LangfuseMedia object was met


_CAPTURING = _Capturing()


class _MediaRefused(Extractor):
    def media(self, media: Any) -> str:
        _CAPTURING.media = True
        raise TypeError("a LangfuseMedia object: its bytes are taken out by the program's writer")


_REFUSE_MEDIA = _MediaRefused()


def _captured_value(value: Any) -> Any:
    """orjson's ``default`` for ``captured``: a captured list as its items (refused past ``MAX_SHIPPED_ITEMS`` in
    all), anything else as ``serialize`` makes it."""
    if type(value) is Frozen:
        _CAPTURING.items -= value.size
        if _CAPTURING.items < 0:
            raise TypeError("a long captured list: shared by the program's converter")
        return value.value()
    return orjson_default(value)


def unshipped(items: Sequence[Any], prepare: Callable[[Trace], Trace]) -> list[Trace]:
    """``shipped`` and ``captured`` undone, in the helper: the traces as the program's writer prepared them, or
    prepared now (``prepare``; a trace that cannot be is logged and left out, as in the program's writer)."""
    traces = []
    for item in items:
        if len(item) == 3:  # captured
            _, head, rows = item
            trace = Trace(**dict(zip(_TRACE_FIELDS, head, strict=True)))
            trace.observations = [Observation(*row) for row in rows]  # every field, in order (_OBSERVATION_VALUES)
            try:
                traces.append(prepare(trace))
            except Exception:
                log.warning("lftrace: could not prepare trace %s", trace.id, exc_info=True)
            continue
        head, rows = item
        trace = Trace(**_values(_TRACE_FIELDS, head))
        trace.observations = [Observation(**_values(_OBSERVATION_FIELDS, row)) for row in rows]
        traces.append(trace)
    return traces


def uncaptured(form: orjson.Fragment, prepare: Callable[[Trace], Trace]) -> list[Trace]:
    """A ``captured`` trace prepared in the program after all (the helper went away before writing it)."""
    return unshipped([orjson.loads(orjson.dumps(form))], prepare)


def _values(names: tuple[str, ...], row: list[Any]) -> dict[str, Any]:
    texts = row[-1]
    return {name: orjson.Fragment(row[i]) if texts >> i & 1 else row[i] for i, name in enumerate(names)}
