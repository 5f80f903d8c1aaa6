"""``to_jsonable(obj)``: anything a LangChain/LangGraph run produces -> JSON-able data.

Runs on the writer thread, never on the user's. Duck-typed (no LangChain import): messages become
``{"role", "content", "tool_calls", ...}`` dicts, documents ``{"page_content", "metadata"}``,
pydantic models and dataclasses their fields; cycles, deep nesting and huge strings/lists are cut
with a visible marker. Never raises.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

MAX_DEPTH = 40
MAX_STRING = 1_000_000  # characters
MAX_ITEMS = 10_000  # list items / dict entries
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}
_SCALARS = (str, int, float, bool, type(None))


def _truncate(text: str) -> str:
    if len(text) <= MAX_STRING:
        return text
    return text[:MAX_STRING] + f"...[truncated {len(text) - MAX_STRING} chars]"


def _is_message(obj: Any) -> bool:
    return hasattr(obj, "content") and isinstance(getattr(obj, "type", None), str) and hasattr(obj, "additional_kwargs")


def _role(obj: Any) -> str:
    kind = obj.type
    if kind.endswith("MessageChunk"):  # AIMessageChunk.type == "AIMessageChunk"
        kind = kind[: -len("MessageChunk")].lower()
    if kind == "chat":
        return str(getattr(obj, "role", "chat"))
    return _ROLES.get(kind, kind)


class _Converter:
    def __init__(self) -> None:
        self.active: set[int] = set()  # ids of containers on the current path (cycle guard)

    def convert(self, obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, str):
            return _truncate(obj)
        if isinstance(obj, _SCALARS):
            return obj
        if depth >= MAX_DEPTH:
            return f"<max depth: {type(obj).__name__}>"
        key = id(obj)
        if key in self.active:
            return f"<cycle: {type(obj).__name__}>"
        self.active.add(key)
        try:
            return self._convert_object(obj, depth + 1)
        finally:
            self.active.discard(key)

    def _items(self, items: Any, depth: int) -> list[Any]:
        out = []
        for index, item in enumerate(items):
            if index >= MAX_ITEMS:
                out.append(f"...[truncated: more than {MAX_ITEMS} items]")
                break
            out.append(self.convert(item, depth))
        return out

    def _mapping(self, data: Mapping[Any, Any], depth: int, skip_empty: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, (k, v) in enumerate(data.items()):
            if index >= MAX_ITEMS:
                out["..."] = f"[truncated: more than {MAX_ITEMS} entries]"
                break
            if skip_empty and (v is None or v == "" or v == [] or v == {}):
                continue
            out[k if isinstance(k, str) else str(k)] = self.convert(v, depth)
        return out

    def _message(self, msg: Any, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"role": _role(msg), "content": self.convert(msg.content, depth)}
        extra: dict[str, Any] = {
            "tool_calls": getattr(msg, "tool_calls", None),
            "invalid_tool_calls": getattr(msg, "invalid_tool_calls", None),
            "tool_call_id": getattr(msg, "tool_call_id", None),
            "name": getattr(msg, "name", None),
        }
        if getattr(msg, "status", None) == "error":
            extra["status"] = "error"
        additional = dict(getattr(msg, "additional_kwargs", None) or {})
        if extra["tool_calls"]:
            additional.pop("tool_calls", None)  # the raw provider copy of the same calls
        extra["additional_kwargs"] = {k: v for k, v in additional.items() if v is not None}
        out.update(self._mapping(extra, depth, skip_empty=True))
        return out

    def _convert_object(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, Mapping):
            return self._mapping(obj, depth)
        if isinstance(obj, list | tuple | set | frozenset):
            return self._items(obj, depth)
        if isinstance(obj, bytes | bytearray | memoryview):
            return f"<{type(obj).__name__}: {len(obj)} bytes>"
        if _is_message(obj):
            return self._message(obj, depth)
        if hasattr(obj, "page_content") and hasattr(obj, "metadata"):  # Document
            doc = {"page_content": obj.page_content, "metadata": obj.metadata}
            if getattr(obj, "id", None):
                doc["id"] = obj.id
            return self._mapping(doc, depth)
        if callable(getattr(obj, "to_messages", None)) and isinstance(getattr(obj, "messages", None), list):
            return self._items(obj.messages, depth)  # ChatPromptValue
        if callable(getattr(obj, "to_string", None)) and isinstance(getattr(obj, "text", None), str):
            return _truncate(obj.text)  # StringPromptValue
        if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
            return obj.isoformat()
        if isinstance(obj, enum.Enum):
            return self.convert(obj.value, depth)
        if isinstance(obj, uuid.UUID | PurePath | Decimal):
            return str(obj)
        if isinstance(obj, BaseException):
            return f"{type(obj).__name__}: {obj}"
        fields = getattr(type(obj), "model_fields", None)
        if isinstance(fields, Mapping) and hasattr(obj, "model_dump"):  # pydantic v2
            return self._pydantic(obj, fields, depth)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._mapping({f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}, depth)
        if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
            try:
                return self.convert(obj.tolist(), depth)
            except Exception:
                pass
        return _safe_str(obj)

    def _pydantic(self, obj: Any, fields: Mapping[str, Any], depth: int) -> Any:
        try:
            # field by field, so messages/documents nested in a model keep their friendly shape
            return self._mapping({name: getattr(obj, name, None) for name in fields}, depth)
        except Exception:
            pass
        try:
            return self.convert(obj.model_dump(mode="json"), depth)
        except Exception:
            return _safe_str(obj)


def _safe_str(obj: Any) -> str:
    try:
        return _truncate(str(obj))
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


def to_jsonable(obj: Any) -> Any:
    """A JSON-able copy of ``obj`` (dicts, lists, str, int, float, bool, None). Never raises."""
    try:
        return _Converter().convert(obj)
    except Exception:
        return _safe_str(obj)
