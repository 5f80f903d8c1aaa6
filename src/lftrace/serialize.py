"""``to_jsonable(obj)``: anything a LangChain/LangGraph run produces -> JSON-able data.

Runs on the writer thread, never on the user's. Duck-typed (no LangChain import): messages become
``{"role", "content", "tool_calls", ...}`` dicts, documents ``{"page_content", "metadata"}``,
pydantic models and dataclasses their fields; cycles and nesting deeper than ``MAX_DEPTH`` are replaced
by a visible marker. Strings, lists and dicts are kept whole, however big: the store is the source of truth
(the size limits belong to the export, ``exporters/encode.py``). Never raises.

Speed (it runs once per input, output and metadata of every span): orjson walks dicts, lists and scalars in C
and calls back into the Python converter only for the objects it does not know (messages, documents, models),
then ``orjson.loads`` gives plain values back; a value orjson refuses (a cycle, a huge int, a lone surrogate,
an odd key) takes the pure-Python walk instead, which also marks cycles and depth.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import operator
import threading
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import orjson

from .media import Extractor, LangfuseMedia, LangfuseMediaReference
from .sharing import kept

MAX_DEPTH = 40
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}
_SCALARS = (str, int, float, bool, type(None))
# (an orjson.Fragment is JSON text the writer made already: sharing.as_json)
_SCALAR_TYPES = frozenset((int, float, bool, type(None), orjson.Fragment))


def _role(kind: str, obj_role: Any) -> str:
    if kind.endswith("MessageChunk"):  # AIMessageChunk.type == "AIMessageChunk"
        kind = kind[: -len("MessageChunk")].lower()
    if kind == "chat":
        return str(obj_role or "chat")
    return _ROLES.get(kind, kind)


def _fields(obj: Any) -> dict[str, Any]:
    """Attribute values without pydantic's slow ``__getattr__`` for missing names."""
    data = getattr(obj, "__dict__", None)
    return data if isinstance(data, dict) else {}


def _classify(obj: Any) -> str:
    """What kind of object this is; computed once per type (duck-typed: no LangChain import)."""
    if isinstance(obj, Mapping):
        return "mapping"
    if isinstance(obj, list | tuple | set | frozenset):
        return "sequence"
    if isinstance(obj, bytes | bytearray | memoryview):
        return "bytes"
    if hasattr(obj, "content") and isinstance(getattr(obj, "type", None), str) and hasattr(obj, "additional_kwargs"):
        return "message"
    if hasattr(obj, "page_content") and hasattr(obj, "metadata"):
        return "document"
    if callable(getattr(obj, "to_messages", None)) and isinstance(getattr(obj, "messages", None), list):
        return "chat_prompt"
    if callable(getattr(obj, "to_string", None)) and isinstance(getattr(obj, "text", None), str):
        return "string_prompt"
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return "iso"
    if isinstance(obj, enum.Enum):
        return "enum"
    if isinstance(obj, uuid.UUID | PurePath | Decimal):
        return "str"
    if isinstance(obj, BaseException):
        return "exception"
    if isinstance(obj, LangfuseMedia):
        return "media"
    if isinstance(obj, LangfuseMediaReference):
        return "media_reference"
    if isinstance(getattr(type(obj), "model_fields", None), Mapping) and hasattr(obj, "model_dump"):
        return "pydantic"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return "dataclass"
    if type(obj).__name__ == "Send" and hasattr(obj, "node") and hasattr(obj, "arg"):
        return "send"
    if callable(getattr(obj, "tolist", None)):
        return "tolist"
    return "other"


class _MediaSink(threading.local):
    """Where a ``LangfuseMedia`` converted on this thread leaves its bytes: the writer's extractor while it
    prepares a trace; elsewhere (rendering, export) nowhere, the object only becomes its reference string."""

    extractor: Extractor | None = None


MEDIA_SINK = _MediaSink()
_KINDS: dict[type, str] = {}
_MEMO_LIMIT = 4096
# id(message) -> [the message, its stamp, what it became, that as JSON text once asked for]. Kept for one trace (the
# writer calls ``forget``): the same messages recur in most spans of a trace; kept longer, every entry ages into the
# garbage collector's oldest generation, and each object promoted there costs ~2 us of later full collections.
_MESSAGE_MEMO: dict[int, list[Any]] = {}


def forget() -> None:
    """Drop the messages memoised so far (the writer, between traces)."""
    _MESSAGE_MEMO.clear()


_STAMP_KEYS = ("content", "tool_calls", "additional_kwargs", "name", "tool_call_id", "status", "invalid_tool_calls")
_STAMPERS: dict[type, operator.itemgetter[Any]] = {}  # per message class: the fields its conversion reads


def _stamp(msg: Any, fields: Mapping[str, Any]) -> Any:
    """The fields a message's conversion reads (compared on a memo hit); None: not memoisable."""
    stamper = _STAMPERS.get(type(msg))
    if stamper is None:
        stamper = _STAMPERS[type(msg)] = operator.itemgetter(*[k for k in _STAMP_KEYS if k in fields] or ["type"])
    try:
        return stamper(fields)
    except KeyError:  # an instance without a field its class had
        return None


def _remembered(msg: Any, stamp: Any) -> dict[str, Any] | None:
    """What this very message became earlier in the trace, if its fields are still equal (identity first, in C)."""
    if stamp is None:
        return None
    hit = _MESSAGE_MEMO.get(id(msg))
    return hit[2] if hit is not None and hit[0] is msg and hit[1] == stamp else None


class _Converter:
    def __init__(self, shared: bool = False) -> None:
        self.active: set[int] = set()  # ids of containers on the current path (cycle guard)
        # shared: results are only read (by orjson, which copies them): memoised dicts are handed out as they are
        self.shared = shared

    def convert(self, obj: Any, depth: int = 0) -> Any:
        kind_type = type(obj)
        if kind_type is str:
            return obj
        if kind_type in _SCALAR_TYPES:
            return obj
        if isinstance(obj, _SCALARS):  # subclasses of str/int/float
            return str(obj) if isinstance(obj, str) else obj
        if depth >= MAX_DEPTH:
            return f"<max depth: {kind_type.__name__}>"
        key = id(obj)
        if key in self.active:
            return f"<cycle: {kind_type.__name__}>"
        kind = _KINDS.get(kind_type)
        if kind is None:
            kind = _KINDS[kind_type] = _classify(obj)
        self.active.add(key)
        try:
            return getattr(self, "_" + kind)(obj, depth + 1)
        finally:
            self.active.discard(key)

    def _items(self, items: Any, depth: int) -> list[Any]:
        convert = self.convert
        return [convert(item, depth) for item in items]

    def _mapping(self, data: Mapping[Any, Any], depth: int, skip_empty: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        convert = self.convert
        for k, v in data.items():
            if skip_empty and (v is None or v == "" or v == [] or v == {}):
                continue
            out[k if type(k) is str else str(k)] = convert(v, depth)
        return out

    _sequence = _items

    def _bytes(self, obj: Any, depth: int) -> str:
        return f"<{type(obj).__name__}: {len(obj)} bytes>"

    def _message(self, msg: Any, depth: int) -> dict[str, Any]:
        fields = _fields(msg)
        get = fields.get
        # LangGraph repeats the same message objects in the input/output of most spans of a trace:
        # convert each once. The hit must be the same live object with equal fields (identity first, in C).
        stamp = _stamp(msg, fields)
        hit = _remembered(msg, stamp)
        if hit is not None:
            return hit if self.shared else dict(hit)
        out: dict[str, Any] = {"role": _role(msg.type, get("role")), "content": self.convert(msg.content, depth)}
        tool_calls = get("tool_calls")
        additional = get("additional_kwargs") or {}
        extra = {
            "tool_calls": tool_calls,
            "invalid_tool_calls": get("invalid_tool_calls"),
            "tool_call_id": get("tool_call_id"),
            "name": get("name"),
            "status": "error" if get("status") == "error" else None,
            "additional_kwargs": {
                k: v for k, v in additional.items() if v is not None and not (tool_calls and k == "tool_calls")
            }
            if additional
            else None,
        }
        out.update(self._mapping(extra, depth, skip_empty=True))
        if stamp is not None:
            if len(_MESSAGE_MEMO) >= _MEMO_LIMIT:
                _MESSAGE_MEMO.clear()
            _MESSAGE_MEMO[id(msg)] = [msg, stamp, out, None]
        return out if self.shared else dict(out)

    def _document(self, obj: Any, depth: int) -> dict[str, Any]:
        doc = {"page_content": obj.page_content, "metadata": obj.metadata}
        if _fields(obj).get("id"):
            doc["id"] = obj.id
        return self._mapping(doc, depth)

    def _chat_prompt(self, obj: Any, depth: int) -> list[Any]:
        return self._items(obj.messages, depth)

    def _string_prompt(self, obj: Any, depth: int) -> str:
        return str(obj.text)

    def _iso(self, obj: Any, depth: int) -> str:
        return str(obj.isoformat())

    def _enum(self, obj: Any, depth: int) -> Any:
        return self.convert(obj.value, depth)

    def _str(self, obj: Any, depth: int) -> str:
        return str(obj)

    def _media(self, obj: LangfuseMedia, depth: int) -> str:
        extractor = MEDIA_SINK.extractor
        if extractor is not None:
            return extractor.media(obj)
        return obj._reference_string or f"<LangfuseMedia without content: {obj._content_type}>"

    def _media_reference(self, obj: LangfuseMediaReference, depth: int) -> str:  # a dataset item's media
        return obj.reference_string or f"<media {obj.media_id}>"

    def _exception(self, obj: Any, depth: int) -> str:
        return f"{type(obj).__name__}: {_safe_str(obj)}"

    def _dataclass(self, obj: Any, depth: int) -> dict[str, Any]:
        return self._mapping(_dataclass_values(obj), depth)

    def _send(self, obj: Any, depth: int) -> dict[str, Any]:  # LangGraph Send (slots, no __dict__)
        return {"node": self.convert(obj.node, depth), "arg": self.convert(obj.arg, depth)}

    def _tolist(self, obj: Any, depth: int) -> Any:  # numpy arrays and scalars
        try:
            return self.convert(obj.tolist(), depth)
        except Exception:
            return _safe_str(obj)

    def _other(self, obj: Any, depth: int) -> str:
        return _safe_str(obj)

    def _pydantic(self, obj: Any, depth: int) -> Any:
        try:
            # field by field, so messages/documents nested in a model keep their friendly shape
            return self._mapping(_pydantic_values(obj), depth)
        except Exception:
            pass
        try:
            return self.convert(obj.model_dump(mode="json"), depth)
        except Exception:
            return _safe_str(obj)


def _safe_str(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def orjson_default(obj: Any) -> Any:
    """orjson's ``default``: an object it cannot serialise itself, as JSON-able values (read once, by orjson).

    A message met before in the trace (the common case: each recurs in most spans) is its JSON text, made at the
    second meeting; the check is ``_remembered``'s, inline (it runs ~3 times per span)."""
    hit = _MESSAGE_MEMO.get(id(obj))
    if hit is not None and hit[0] is obj:
        stamper = _STAMPERS.get(type(obj))
        fields = getattr(obj, "__dict__", None)
        if stamper is not None and type(fields) is dict:
            try:
                same = stamper(fields) == hit[1]
            except KeyError:
                same = False
            if same:
                text = hit[3]
                if text is None:
                    try:
                        text = hit[3] = kept(orjson.dumps(hit[2], option=ORJSON_OPTIONS))
                    except Exception:  # a value orjson refuses: as before, it fails the whole value again
                        return hit[2]
                return text
    return _Converter(shared=True).convert(obj)


# LangGraph's dataclasses that steer a run (a resume, a hand-off, a pause): the handler reads them as they are
_CONTROL_DATACLASSES = frozenset(("Command", "Interrupt"))
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}


def _pydantic_values(obj: Any) -> dict[str, Any]:
    """A pydantic model's field values by name, in declaration order (raises for an odd model)."""
    data = _fields(obj)
    return {name: data.get(name) for name in type(obj).model_fields}


def _dataclass_values(obj: Any) -> dict[str, Any]:
    """A dataclass instance's field values by name, in declaration order (the names read once per type)."""
    kind_type = type(obj)
    names = _DATACLASS_FIELDS.get(kind_type)
    if names is None:
        names = _DATACLASS_FIELDS[kind_type] = tuple(f.name for f in dataclasses.fields(obj))
    return {name: getattr(obj, name, None) for name in names}


def state_fields(obj: Any) -> dict[str, Any] | None:
    """A pydantic model's or a dataclass's field values, as the converter reads them (``_pydantic``,
    ``_dataclass``: the same JSON in the end), for the handler to capture like a dict's values: a LangGraph state
    schema written as a model passes every node the whole state (a growing conversation in a field), and only a
    dict's lists are captured as shared prefixes (sharing.Captures). None for anything else (messages, documents,
    LangGraph's Command and Interrupt, text...). On the user's thread: a cached kind per type, never raises."""
    kind_type = type(obj)
    kind = _KINDS.get(kind_type)
    try:
        if kind is None:
            kind = _KINDS[kind_type] = _classify(obj)
        if kind == "pydantic":
            return _pydantic_values(obj)
        if kind == "dataclass" and kind_type.__name__ not in _CONTROL_DATACLASSES:
            return _dataclass_values(obj)
    except Exception:  # an odd model: kept as the object, converted later as before
        return None
    return None


def json_bytes(obj: Any) -> bytes | None:
    """The JSON text of ``to_jsonable(obj)`` in one pass (no JSON-able copy made); None when orjson refuses it
    (a cycle, an int over 64 bits, a lone surrogate, a tuple key): ``to_jsonable`` then takes the Python walk."""
    try:
        return orjson.dumps(obj, default=orjson_default, option=ORJSON_OPTIONS)
    except Exception:
        return None


def to_jsonable(obj: Any) -> Any:
    """A JSON-able copy of ``obj`` (dicts, lists, str, int, float, bool, None). Never raises."""
    kind = type(obj)
    if kind is str or kind in _SCALAR_TYPES:
        return obj
    if kind is dict or kind is list or kind is tuple:
        try:
            return orjson.loads(orjson.dumps(obj, default=orjson_default, option=ORJSON_OPTIONS))
        except Exception:  # a cycle, an int over 64 bits, a lone surrogate, a tuple key...: the Python walk
            pass
    try:
        return _Converter().convert(obj)
    except Exception:
        return _safe_str(obj)
