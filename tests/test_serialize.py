"""to_jsonable: orjson's C walk (with the Python converter for unknown objects) gives what the Python walk gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from lftrace.serialize import _Converter, json_bytes, to_jsonable


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: list[HumanMessage]


class Model(BaseModel):
    name: str
    when: dt.datetime
    messages: list[AIMessage]


def _python_walk(value):
    return _Converter().convert(value)


def test_fast_path_matches_the_python_walk_on_mixed_values():
    when = dt.datetime(2026, 11, 29, 17, 5, 3, 120, tzinfo=dt.UTC)
    msgs = [
        HumanMessage("hi"),
        AIMessage("", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}]),
        ToolMessage("out", tool_call_id="c1", name="f", status="error"),
    ]
    value = {
        "messages": msgs,
        "tuple": (1, "two", 3.5, None, True),
        1: "int key",
        "when": when,
        "date": when.date(),
        "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
        "enum": Color.RED,
        "uuid": uuid.UUID(int=7),
        "decimal": Decimal("1.10"),
        "set": {"only"},
        "bytes": b"\x00\x01",
        "point": Point(1, [HumanMessage("in a dataclass")]),
        "model": Model(name="m", when=when, messages=[AIMessage("in a model")]),
        "doc": Document(page_content="text", metadata={"source": "s"}),
        "nested": {"deeper": [{"k": [msgs[0], {"x": (Color.RED,)}]}]},
    }
    fast = to_jsonable(value)
    assert fast == _python_walk(value)
    # the writer's one-pass JSON text (a captured input the store keeps whole) reads back as the same value
    from lftrace.sharing import Frozen, inline_json, json_text

    captured = {**value, "messages": Frozen(list(msgs))}
    assert json_text(inline_json(captured, json_bytes)) == fast
    assert json_text(inline_json(Frozen(list(msgs)), json_bytes)) == fast["messages"]
    assert fast["messages"][1]["tool_calls"][0]["name"] == "f"
    assert fast["1"] == "int key"
    assert fast["when"] == when.isoformat()
    assert fast["bytes"] == "<bytes: 2 bytes>"


def test_values_orjson_refuses_take_the_python_walk():
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    assert to_jsonable(cyclic) == {"a": 1, "self": "<cycle: dict>"}
    assert to_jsonable({"big": 2**80}) == {"big": 2**80}
    assert to_jsonable(["caf\udce9"]) == ["caf\udce9"]  # the store escapes it later
    assert to_jsonable({(1, 2): "tuple key"}) == {"(1, 2)": "tuple key"}
    deep: list = []
    current = deep
    for _ in range(300):
        current.append([])
        current = current[0]
    flat = to_jsonable(deep)
    depth = 0
    while isinstance(flat, list) and flat:
        flat, depth = flat[0], depth + 1
    assert isinstance(flat, str) and flat.startswith("<max depth")
    assert depth < 300


def test_results_are_the_callers_own_values():
    msg = AIMessage("shared")
    first = to_jsonable({"m": [msg]})
    first["m"][0]["content"] = "changed"
    assert to_jsonable({"m": [msg]})["m"][0]["content"] == "shared"
    assert to_jsonable(msg)["content"] == "shared"
