"""``show TRACE OBSERVATION``: one observation in full.

What it is and where it sits (type, name, id, parent, LangGraph node and step), its timing (start, duration,
time to first token), its model, model parameters, usage and cost broken down (cached, reasoning, audio), its
input and output in full (a list of messages as a readable transcript, anything else as indented JSON), its
metadata, and for an error its type, message and traceback. Pure: builds a renderable, prints nothing.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from .media import REFERENCE, LangfuseMedia
from .model import Observation, Trace
from .render import (
    LEVEL_STYLES,
    TYPE_STYLES,
    _call_text,
    _is_message,
    _is_tool_definition,
    format_cost,
    format_duration,
    format_local_time,
    is_routing,
    media_kind,
    node_name,
    pretty,
    step_of,
    token_split,
)
from .sanitize import clean, clean_line

# metadata LangGraph/LangChain add to every run: shown in the header line instead (node, step) or noise here
_NOISY_METADATA = frozenset(
    ("langgraph_node", "langgraph_step", "langgraph_triggers", "langgraph_path", "langgraph_checkpoint_ns",
     "checkpoint_ns", "error.type", "error.traceback", "ls_integration", "lc_versions")
)  # fmt: skip


_STEP_TAGS = ("seq:step:", "graph:step:")


def _section(title: str) -> Rule:
    return Rule(Text(title, style="bold"), align="left", style="dim", characters="─")


def _pairs(rows: list[tuple[str, str]]) -> Text:
    width = max((len(k) for k, _ in rows), default=0)
    text = Text()
    for i, (key, value) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(f"  {key.ljust(width)}  ", style="dim")
        text.append(value)
    return text


def _role(message: dict[str, Any]) -> str:
    role = message.get("role") or message.get("type") or "message"
    role = {"human": "user", "ai": "assistant"}.get(str(role), str(role))
    name = message.get("name")
    return f"{role} ({name})" if name and role == "tool" else role


def transcript(messages: list[Any]) -> Text | None:
    """A conversation as ``role:`` then its text, tool calls one per line; None when it isn't one."""
    shown = [m for m in messages if _is_message(m) and not _is_tool_definition(m)]
    if not shown or len(shown) < len([m for m in messages if not _is_tool_definition(m)]):
        return None
    text = Text()
    for i, message in enumerate(shown):
        if i:
            text.append("\n")
        text.append(f"{_role(message)}:", style="bold cyan")
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(_block_body(b) for b in content)
        body = content if isinstance(content, str) else pretty(content)
        if body:
            text.append("\n" + _indent(clean(body)))
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                text.append("\n" + _indent(f"→ {clean(_call_text(call))}"), style="yellow")
    return text


def _block_body(block: Any) -> str:
    """A content block in a transcript: its text, ``[image/png]`` for media, else its JSON."""
    if isinstance(block, dict) and "text" in block:
        return str(block["text"])
    kind = media_kind(block) if isinstance(block, dict) else None
    return f"[{kind}]" if kind else pretty(block)


def _media_rows(*values: Any) -> list[tuple[str, str]]:
    """(content type, "ID  lftrace media ID -o FILE") for each media a value refers to, once."""
    rows: dict[str, str] = {}
    for value in values:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        for match in REFERENCE.finditer(text):
            try:
                ref = LangfuseMedia.parse_reference_string(match.group(0))
            except ValueError:
                continue
            rows.setdefault(ref["media_id"], ref["content_type"])
    return [
        (clean_line(kind), f"{clean_line(mid)}  lftrace media {clean_line(mid)} -o FILE") for mid, kind in rows.items()
    ]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines() or [""])


def _messages_in(value: Any) -> list[Any] | None:
    if isinstance(value, list) and value and isinstance(value[-1], list):  # [[messages]] of a chat model
        value = value[-1]
    if isinstance(value, dict) and isinstance(value.get("messages"), list) and len(value) == 1:
        value = value["messages"]
    if _is_message(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    return None


def render_value(value: Any) -> RenderableType:
    """Messages as a transcript, text as is, anything else as indented JSON; always sanitised."""
    messages = _messages_in(value)
    if messages is not None:
        shown = transcript(messages)
        if shown is not None:
            return shown
    return Text(_indent(clean(pretty(value))))


def usage_rows(obs: Observation) -> list[tuple[str, str]]:
    usage = obs.usage_details or {}
    if not usage:
        return []
    tokens_in, tokens_out, _, _ = token_split(usage)
    rows: list[tuple[str, str]] = []
    if tokens_in is not None:
        details = [
            f"{k.removeprefix('input_').replace('_', ' ')} {v}" for k, v in usage.items() if k.startswith("input_")
        ]
        rows.append(
            (
                "input",
                f"{tokens_in}" + (f"  ({', '.join(details)}; uncached {usage.get('input', 0)})" if details else ""),
            )
        )
    if tokens_out is not None:
        details = [
            f"{k.removeprefix('output_').replace('_', ' ')} {v}" for k, v in usage.items() if k.startswith("output_")
        ]
        rows.append(("output", f"{tokens_out}" + (f"  ({', '.join(details)})" if details else "")))
    if "total" in usage:
        rows.append(("total", str(usage["total"])))
    known = {"input", "output", "total"}
    rows.extend((k, str(v)) for k, v in usage.items() if k not in known and not k.startswith(("input_", "output_")))
    return rows


def cost_rows(obs: Observation) -> list[tuple[str, str]]:
    """Line items (input, cached input, output, reasoning, ...) then the total."""
    cost = obs.cost_details or {}
    order = sorted(cost, key=lambda k: (k == "total", k))
    return [
        (k.replace("_", " "), format_cost(cost[k]) if isinstance(cost[k], int | float) else clean_line(str(cost[k])))
        for k in order
    ]


def render_observation(trace: Trace, obs: Observation) -> RenderableType:
    """Everything recorded about one observation, in sections."""
    by_id = {o.id: o for o in trace.observations}
    parent = by_id.get(obs.parent_id) if obs.parent_id else None
    children = [o for o in trace.observations if o.parent_id == obs.id]
    routing = is_routing(obs, parent, bool(children))
    title = Text.assemble(
        ("ROUTE" if routing else obs.type, "dim" if routing else TYPE_STYLES.get(obs.type, "")),
        " ",
        (clean_line(obs.name or "(unnamed)"), "bold"),
        ("  ", ""),
        (obs.id, "dim"),
    )
    if obs.level != "DEFAULT":
        title.append(f"  {obs.level}", style=LEVEL_STYLES.get(obs.level, ""))
    facts: list[tuple[str, str]] = [("trace", f"{clean_line(trace.name or '(unnamed trace)')}  {clean_line(trace.id)}")]
    if parent is not None:
        facts.append(("parent", f"{obs.parent_id and clean_line(parent.name)}  {parent.id}"))
    node = (obs.metadata or {}).get("langgraph_node")
    step = step_of(obs)
    if isinstance(node, str) and node:
        facts.append(("node", clean_line(node) + (f"  step {step}" if step is not None else "")
                      + ("" if node_name(obs) else "  (runs inside it)")))  # fmt: skip
    offset = (obs.start_time - trace.timestamp) / 1e9
    facts.append(("start", f"{format_local_time(obs.start_time)}  (+{format_duration(max(offset, 0.0))})"))
    facts.append(("duration", format_duration(obs.latency)))
    ttft = obs.time_to_first_token
    if ttft is not None:
        facts.append(("first token", format_duration(ttft)))
    if obs.model:
        facts.append(("model", clean_line(obs.model)))
    if children:
        facts.append(("children", str(len(children))))
    parts: list[RenderableType] = [title, _pairs(facts)]
    if obs.level in ("ERROR", "WARNING") or obs.status_message:
        parts += [Text(""), _section("Error" if obs.level == "ERROR" else "Status")]
        meta = obs.metadata or {}
        rows = []
        if meta.get("error.type"):
            rows.append(("type", clean_line(str(meta["error.type"]))))
        rows.append(("message", clean(obs.status_message or "")))
        parts.append(_pairs(rows))
        if meta.get("error.traceback"):
            parts.append(Text(_indent(clean(str(meta["error.traceback"]).rstrip())), style="red"))
    if obs.model_parameters:
        parts += [Text(""), _section("Model parameters")]
        parts.append(_pairs([(clean_line(str(k)), clean_line(_short(v))) for k, v in obs.model_parameters.items()]))
    usage = usage_rows(obs)
    if usage:
        parts += [Text(""), _section("Usage (tokens)"), _pairs(usage)]
    cost = cost_rows(obs)
    if cost:
        parts += [Text(""), _section("Cost"), _pairs(cost)]
    for label, value in (("Input", obs.input), ("Output", obs.output)):
        if value is not None:
            parts += [Text(""), _section(label), render_value(value)]
    media = _media_rows(obs.input, obs.output, obs.metadata)
    if media:
        parts += [Text(""), _section("Media"), _pairs(media)]
    metadata = {k: v for k, v in (obs.metadata or {}).items() if k not in _NOISY_METADATA}
    tags = [t for t in metadata.get("tags") or [] if not (isinstance(t, str) and t.startswith(_STEP_TAGS))]
    if "tags" in metadata:  # LangChain's own position tags (seq:step:1, graph:step:2) say nothing here
        metadata = {k: v for k, v in metadata.items() if k != "tags"} | ({"tags": tags} if tags else {})
    if metadata:
        parts += [Text(""), _section("Metadata"), Text(_indent(clean(pretty(metadata))))]
    return Group(*parts)


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)
