"""Trace -> rich renderables. Pure: nothing here prints, reads the store or imports LangChain.

The tree is drawn by ``TraceTree``, a small renderable that emits one pre-measured line per row
instead of nesting ``rich.tree.Tree`` nodes: rich's Tree re-measures every label through every
level of guides (~0.8 s for 5,000 observations); this draws the same picture in a fraction of that.
Every row is truncated with an ellipsis to the console width, so nothing wraps into a mess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from .errors import InputError, TraceNotFound
from .model import EXPERIMENT_KEY, NEVER_ENDED, Observation, Score, Trace, TraceSummary
from .sanitize import clean, clean_line
from .usage import gross_counts

PREVIEW_CHARS = 200  # a one-line preview never needs more; the row is cut to the width anyway
OUTPUT_LINES = 20  # final output lines shown without --full

TYPE_STYLES = {
    "GENERATION": "magenta",
    "TOOL": "yellow",
    "AGENT": "cyan",
    "CHAIN": "blue",
    "RETRIEVER": "green",
    "EMBEDDING": "green",
    "EVENT": "dim",
}
LEVEL_STYLES = {"ERROR": "bold red", "WARNING": "yellow", "DEBUG": "dim"}
STATUS_STYLES = {
    "ok": "green",
    "error": "bold red",
    "interrupted": "yellow",
    "cancelled": "yellow",
    "running": "cyan",
    "incomplete": "red",
}
STATUS_MARKS = {
    "ok": "✓ ok",
    "error": "✗ error",
    "interrupted": "⏸ interrupted",
    "cancelled": "⚠ cancelled",
    "running": "… running",
    "incomplete": "✗ incomplete",
}


_BRANCH, _LAST, _PIPE, _SPACE = "├── ", "└── ", "│   ", "    "
_GUIDE_WIDTH = 4

Part = tuple[str, str]  # (text, style)


# ---------------------------------------------------------------- formatting


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "open"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


def format_cost(cost: float | None) -> str:
    if cost is None:
        return ""
    if cost == 0:
        return "$0"
    if cost < 0.000001:
        return "<$0.000001"
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:.4f}"


def token_split(usage: dict[str, int] | None) -> tuple[int | None, int | None, int, int]:
    """(input, output, cached, reasoning) where input and output INCLUDE their details.

    Langfuse's usage keeps ``input`` apart from ``input_cache_read``/``input_audio``/... (and ``output``
    apart from ``output_reasoning``/...), so ``input + output`` is less than ``total``; printed like that the
    numbers don't add up. Shown whole, ``in + out = total``, with cached/reasoning said inside them.
    """
    if not usage:
        return None, None, 0, 0
    has_in = has_out = False
    for key in usage:
        if key == "input" or key.startswith(("input_", "cache_", "cached_")):
            has_in = True
        elif key == "output" or key.startswith("output_") or key == "thoughts_token_count":
            has_out = True
    # usage.gross_counts knows every provider's keys (Anthropic's cache counts beside input, priority tiers, ...)
    gross = gross_counts(usage)
    tokens_in = gross["input"] if has_in else None
    tokens_out = gross["output"] if has_out else None
    cached, reasoning = gross["cache_read"], gross["reasoning"]
    return tokens_in, tokens_out, cached, reasoning


def format_tokens(usage: dict[str, int] | None) -> str:
    """``220→18 tok (cached 100)``: input and output include their cached/reasoning parts (in + out = total)."""
    if not usage:
        return ""
    tokens_in, tokens_out, cached, reasoning = token_split(usage)
    if tokens_in is None and tokens_out is None:
        total = usage.get("total")
        return f"{total} tok" if total is not None else ""
    text = f"{tokens_in or 0}→{tokens_out or 0} tok"
    extras = [f"cached {cached}"] * bool(cached) + [f"reasoning {reasoning}"] * bool(reasoning)
    return text + (f" ({', '.join(extras)})" if extras else "")


_MEDIA_KIND = re.compile(r"@@@langfuseMedia:type=([^|@\"]+)|\bdata:([\w.+-]+/[\w.+-]+)[;,]")


def media_kind(block: dict[str, Any]) -> str | None:
    """The content type of the media a message's content block holds: a reference, a data URI, or a provider's
    base64 block (LangChain's, Anthropic's) inline."""
    found = _MEDIA_KIND.search(json.dumps(block, default=str))
    if found:
        return found.group(1) or found.group(2)
    for part in (block, block.get("source")):
        if isinstance(part, dict) and isinstance(part.get("data") or part.get("base64"), str):
            kind = part.get("mime_type") or part.get("media_type")
            if isinstance(kind, str):
                return kind
    return None


def block_text(block: Any) -> str:
    """A message's content block as one line's text: its text, else what it holds (``[image/png]``, ``[type]``),
    never a base64 payload."""
    if not isinstance(block, dict):
        return str(block)
    if "text" in block:
        return str(block["text"])
    return f"[{media_kind(block) or block.get('type') or 'block'}]"


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content blocks: the text ones, and what the others hold
        content = " ".join(block_text(b) for b in content if b is not None).strip()
    text = content if isinstance(content, str) else _compact(content)
    calls = message.get("tool_calls") or []
    if calls and isinstance(calls, list):
        named = [_call_text(c) for c in calls if isinstance(c, dict)]
        text = f"{text} [tool calls: {', '.join(named)}]".strip()
    return text


def _call_text(call: dict[str, Any]) -> str:
    raw_function = call.get("function")
    function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
    name = call.get("name") or function.get("name") or "?"
    args = call.get("args", function.get("arguments"))
    return f"{name}({args if isinstance(args, str) else _compact(args) if args else ''})"


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and "content" in value and ("role" in value or "type" in value)


def _is_tool_definition(value: Any) -> bool:
    """The handler lists a model's bound tools after its messages (Langfuse's shape): not conversation."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("content"), dict)
        and value["content"].get("type") == "function"
    )


def _last_message(messages: list[Any]) -> Any:
    for message in reversed(messages):
        if _is_message(message) and not _is_tool_definition(message):
            return message
    return None


def readable(value: Any) -> Any:
    """The part of a value a person wants first: a message's text, the last message of a conversation."""
    if _is_message(value):
        return _message_text(value)
    if isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]:
        last = _last_message(value["messages"])
        return _message_text(last) if last is not None else value
    if isinstance(value, list) and value:
        if isinstance(value[-1], list):  # [[messages]] of a chat model
            value = value[-1]
        last = _last_message(value)
        if last is not None:
            return _message_text(last)
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if _is_message(inner):
            return _message_text(inner)
    if _is_command(value):  # a run resumed or steered with Command(resume=...): what it says, not its empty fields
        return _command_text(value)
    if (
        isinstance(value, dict)
        and value.get("__type") == "tool_call_with_context"
        and isinstance(value.get("tool_call"), dict)
    ):
        return f"[tool call: {_call_text(value['tool_call'])}]"  # what LangGraph's ToolNode gets from an agent's Send
    return value


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        return repr(value)


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line (runs of whitespace become one space), sanitised, at most ``limit`` characters."""
    text = " ".join(text.split()) if ("\n" in text or "\t" in text or "  " in text or "\r" in text) else text
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return clean_line(text)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """One line, at most ``limit`` characters, safe to print."""
    return one_line(_compact(readable(value)), limit)


def pretty(value: Any) -> str:
    """A value in full for people: text as is, anything else as indented JSON (not sanitised: see ``clean``)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------- LangGraph structure


def node_name(obs: Observation) -> str | None:
    """The LangGraph node this observation IS (not merely runs inside): its ``langgraph_node`` is its own name."""
    node = (obs.metadata or {}).get("langgraph_node")
    return node if isinstance(node, str) and node and node == obs.name else None


def step_of(obs: Observation) -> int | None:
    step = (obs.metadata or {}).get("langgraph_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _seq_step(obs: Observation) -> int | None:
    """N of LangChain's ``seq:step:N`` tag: the position of this run inside its parent's RunnableSequence."""
    tags = (obs.metadata or {}).get("tags")
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str) and tag.startswith("seq:step:") and tag[9:].isdigit():
                return int(tag[9:])
    return None


def _looks_like_route(value: Any) -> bool:
    """What a routing function returns: a node name, END, several names, or Send packets."""
    if isinstance(value, dict) and set(value) == {"output"}:
        value = value["output"]
    if isinstance(value, str):
        return True
    if isinstance(value, list) and value:
        return all(isinstance(v, str) or (isinstance(v, dict) and "node" in v) for v in value)
    return False


def is_routing(obs: Observation, parent: Observation | None, has_children: bool) -> bool:
    """A conditional edge's function (``tools_condition``, a ``route`` function): it decides, it does no work.

    LangGraph runs it inside the node it leaves, after the node's function, as a later step of the node's
    RunnableSequence (``seq:step:2`` or more; the node's own work is step 1). Without that tag: a leaf CHAIN
    inside a node, named differently, that returned node names.
    """
    if has_children or obs.type not in ("CHAIN", "SPAN") or parent is None or node_name(parent) is None:
        return False
    if obs.name == parent.name or (obs.metadata or {}).get("langgraph_node") != parent.name:
        return False
    seq = _seq_step(obs)
    if seq is not None:
        return seq >= 2
    return _looks_like_route(obs.output)


def route_text(value: Any) -> str:
    """``tools``, ``END``, ``a, b`` or ``Send generate_joke ×3``."""
    if isinstance(value, dict) and set(value) == {"output"}:
        value = value["output"]
    items = value if isinstance(value, list) else [value]
    names: dict[str, int] = {}
    for item in items:
        if isinstance(item, dict) and "node" in item:
            label = f"Send {item['node']}"
        elif item == "__end__":
            label = "END"
        else:
            label = item if isinstance(item, str) else _compact(item)
        names[label] = names.get(label, 0) + 1
    return ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in names.items()) or "—"


_COMMAND_FIELDS = frozenset(("graph", "update", "resume", "goto"))  # a LangGraph Command, as it is stored


def _is_command(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == _COMMAND_FIELDS


def _command_text(command: dict[str, Any]) -> str:
    """``x: 2 | → b``: a Command's update as a node's, where it goes, and what it resumes (empty parts left out)."""
    parts: list[str] = []
    update = command["update"]
    if update not in (None, {}, []):
        shown = node_update(update)
        parts.append(shown if isinstance(shown, str) else _compact(shown))
    if command["goto"] not in (None, [], ""):
        parts.append(f"→ {route_text(command['goto'])}")
    if command["resume"] is not None:
        parts.append(f"resume: {_compact(command['resume'])}")
    if command["graph"] is not None:  # Command.PARENT (named by the subgraph's node as it bubbles up)
        parts.append("in the parent graph")
    return " | ".join(parts) or "Command()"


def node_update(value: Any) -> Any:
    """What a node added to the state: every new message (not only the last), other keys as they are; a Command
    (or several, as a LangChain agent's model node returns) as its update and where it goes."""
    if _is_command(value):
        return _command_text(value)
    if isinstance(value, list) and value and all(_is_command(item) for item in value):
        return " | ".join(_command_text(item) for item in value)
    if not isinstance(value, dict):
        return readable(value)
    parts: list[str] = []
    for key, item in value.items():
        if isinstance(item, list) and any(_is_message(m) for m in item):
            texts = [_message_text(m) for m in item if _is_message(m) and not _is_tool_definition(m)]
            parts.extend(t for t in texts if t)
        elif _is_message(item):
            parts.append(_message_text(item))
        else:
            parts.append(f"{key}: {_compact(item)}")
    return " | ".join(parts) if parts else value


# ---------------------------------------------------------------- the tree


@dataclass(slots=True)
class _Row:
    guide: str  # only single-cell box characters: its width is len(guide)
    parts: list[Part]
    fold: bool = False  # --full bodies wrap instead of being cut
    drop: tuple[int, ...] = ()  # indexes of parts left out, in this order, before the row is cut


@dataclass
class TraceTree:
    """A pre-laid-out tree: ``rows`` are drawn one per line (or folded when ``fold``).

    ``context`` (the trace's start time, target, session, ...) is drawn right after the first row, its items
    packed into as few lines as the width allows.
    """

    rows: list[_Row] = field(default_factory=list)
    context: list[Part] = field(default_factory=list)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        plain = console.color_system is None or console.no_color  # one segment per line: ~5x fewer to emit
        styles: dict[str, Style] = {}

        def style_of(name: str) -> Style:
            if name not in styles:
                styles[name] = console.get_style(name) if name else Style.null()
            return styles[name]

        def emit(parts: list[Part]) -> Iterator[Segment]:
            if plain:
                yield Segment("".join(text for text, _ in parts) + "\n")
                return
            for text, style in parts:
                if text:
                    yield Segment(text, style_of(style))
            yield Segment("\n")

        deepest = max(width * 2 // 3, 1)  # very deep trees keep the innermost guides, not the root's
        for index, row in enumerate(self.rows):
            guide = row.guide if len(row.guide) <= deepest else "…" + row.guide[-(deepest - 1) :]
            room = max(width - len(guide), 1)
            if row.fold:
                lines = [
                    [(guide, "dim"), (chunk, row.parts[0][1])]
                    for chunk in _fold("".join(t for t, _ in row.parts), room)
                ]
            else:
                parts = _squeeze(row.parts, row.drop, room) if row.drop else row.parts
                lines = [[(guide, "dim"), *_cut(parts, room)]]
            for parts in lines:
                yield from emit(parts)
            if index == 0 and self.context:
                for line in _pack(self.context, width):
                    yield from emit(line)

    def __len__(self) -> int:
        return len(self.rows)


def _width(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def _squeeze(parts: list[Part], drop: tuple[int, ...], room: int) -> list[Part]:
    """Leave out the optional parts (in ``drop`` order) until the row fits; what must survive stays."""
    total = sum(len(text) if text.isascii() else cell_len(text) for text, _ in parts)
    if total <= room:
        return parts
    gone: set[int] = set()
    for index in drop:
        if total <= room:
            break
        if index < len(parts):
            gone.add(index)
            total -= _width(parts[index][0])
    return [part for i, part in enumerate(parts) if i not in gone]


def _pack(items: list[Part], width: int) -> Iterator[list[Part]]:
    """Items joined by `` · ``, as many per line as fit; an item longer than a line is cut."""
    line: list[Part] = []
    used = 0
    for text, style in items:
        size = _width(text)
        if line and used + 3 + size > width:
            yield line
            line, used = [], 0
        if line:
            line.append((" · ", "dim"))
            used += 3
        line.extend(_cut([(text, style)], max(width - used, 1)))
        used += min(size, width)
    if line:
        yield line


def _cut(parts: list[Part], room: int) -> list[Part]:
    """The parts that fit in ``room`` cells; when cut, the last visible cell is an ellipsis."""
    sizes = [_width(text) for text, _ in parts]
    if sum(sizes) <= room:
        return parts
    budget, kept = room - 1, []
    for (text, style), size in zip(parts, sizes, strict=True):
        if size <= budget:
            kept.append((text, style))
            budget -= size
            continue
        if budget > 0:
            # cut by characters first: set_cell_size is slow on long non-ASCII strings
            kept.append((text[:budget] if text.isascii() else set_cell_size(text[:budget], budget), style))
        kept.append(("…", style))
        break
    return kept


def _fold(text: str, room: int) -> Iterator[str]:
    for line in text.splitlines() or [""]:
        if cell_len(line) <= room:
            yield line
            continue
        while line:
            piece = line[:room] if line.isascii() else set_cell_size(line[:room], room).rstrip()
            piece = piece or line[:1]
            yield piece
            line = line[len(piece) :]


def observation_parts(obs: Observation, *, routing: bool = False) -> tuple[list[Part], tuple[int, ...]]:
    """The one-line label of an observation and the order in which its optional parts give way.

    type, name, step, duration, level, model, tokens, cost, ttft, id. At 80 columns the id and the cost
    must survive: ttft, the step, the model and the token count are left out first (in that order);
    the name is cut last.
    """
    name = clean_line(obs.name or "(unnamed)")
    if routing:
        parts: list[Part] = [
            ("ROUTE", "dim"),
            (" ", ""),
            (name, "dim"),
            (f" → {clean_line(route_text(obs.output))}", ""),
        ]
        parts.append((f"  {format_duration(obs.latency)}", "dim"))
        parts.append((f"  {obs.id[:8]}", "dim"))
        return parts, (4,)
    parts = [(obs.type, TYPE_STYLES.get(obs.type, "")), (" ", ""), (name, "bold")]
    optional: dict[str, int] = {}
    step = step_of(obs)
    if step is not None and node_name(obs) is not None:
        optional["step"] = len(parts)
        parts.append((f"  step {step}", "dim"))
    parts.append((f"  {format_duration(obs.latency)}", "cyan" if obs.end_time is not None else "yellow"))
    if obs.level != "DEFAULT":
        parts.append((f"  {obs.level}", LEVEL_STYLES.get(obs.level, "")))
    if obs.model:
        optional["model"] = len(parts)
        parts.append((f"  {clean_line(obs.model)}", "magenta"))
    tokens = format_tokens(obs.usage_details)
    if tokens:
        optional["tokens"] = len(parts)
        count, _, detail = tokens.partition(" (")
        parts.append((f"  {count}", ""))
        if detail:
            optional["detail"] = len(parts)
            parts.append((f" ({detail}", ""))
    cost = format_cost((obs.cost_details or {}).get("total"))
    if cost:
        parts.append((f"  {cost}", "green"))
    ttft = obs.time_to_first_token
    if ttft is not None and obs.type == "GENERATION":
        optional["ttft"] = len(parts)
        parts.append((f"  ttft {format_duration(ttft)}", "dim"))
    parts.append((f"  {obs.id[:8]}", "dim"))  # enough for `show TRACE OBSERVATION`
    drop = tuple(optional[k] for k in ("ttft", "step", "detail", "model", "tokens") if k in optional)
    return parts, drop


def handled_errors(trace: Trace) -> int:
    """Error observations in a run that still finished (a failed tool call the agent worked around)."""
    return trace.handled_errors


def format_trace_tokens(trace: Trace) -> str:
    """``410 tokens (370 in, 40 out; cached 100, reasoning 10)``: in and out include their cached and reasoning
    tokens, so in + out = total."""
    total = trace.total_tokens
    if not total:
        return ""
    usage = trace.usage
    tokens_in, tokens_out, cached, reasoning = token_split(usage)
    if tokens_in is None and tokens_out is None:
        return f"{total} tokens"
    extras = [f"cached {cached}"] * bool(cached) + [f"reasoning {reasoning}"] * bool(reasoning)
    detail = f"; {', '.join(extras)}" if extras else ""
    return f"{total} tokens ({tokens_in or 0} in, {tokens_out or 0} out{detail})"


def status_text(trace: Trace) -> str:
    status = trace.shown_status
    mark = STATUS_MARKS.get(status, status)
    handled = handled_errors(trace)
    if handled:
        mark += f" · {handled} handled error{'s' * (handled != 1)}"
    return mark


def trace_drop(parts: list[Part]) -> tuple[int, ...]:
    """On a narrow console the root line leaves out the observation count, then the token count."""
    drop = [len(parts) - 1]
    drop.extend(i for i, (text, _) in enumerate(parts) if text.startswith("  ") and " tokens" in text)
    return tuple(drop)


def trace_parts(trace: Trace) -> list[Part]:
    """The root line: name, status, total duration, tokens, cost, observation count (most important first)."""
    status = trace.shown_status
    parts: list[Part] = [
        (clean_line(trace.name or "(unnamed trace)"), "bold"),
        (f"  {status_text(trace)}", STATUS_STYLES.get(status, "")),
        (f"  {format_duration(trace.latency)}", "cyan"),
    ]
    tokens = format_trace_tokens(trace)
    if tokens:
        parts.append((f"  {tokens}", ""))
    cost = format_cost(trace.total_cost)
    if cost:
        parts.append((f"  {cost}", "green"))
    count = len(trace.observations)
    parts.append((f"  {count} observation{'s' * (count != 1)}", "dim"))
    return parts


def scores_text(scores: Sequence[Score]) -> str:
    """``helpful 1, ok True``: scores on one line (a trace's header, a session's)."""
    return ", ".join(f"{clean_line(sc.name)} {clean_line(sc.display_value())}" for sc in scores)


def format_local_time(ns: int, *, zone: bool = True) -> str:
    moment = datetime.fromtimestamp(ns / 1e9).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if zone else "%Y-%m-%d %H:%M:%S")


def trace_target(trace: Trace) -> str | None:
    target = (trace.metadata or {}).get("lftrace_target")
    return target if isinstance(target, str) and target else None


def trace_experiment(trace: Trace) -> str | None:
    """The experiment (dataset run) a trace belongs to: its run name and the dataset item, when it has them."""
    experiment = (trace.metadata or {}).get(EXPERIMENT_KEY)
    if not isinstance(experiment, dict) or not experiment.get("name"):
        return None
    item = experiment.get("item.id")
    return f"{experiment['name']}" + (
        f" (item {item})" if isinstance(item, str) and experiment.get("dataset.id") else ""
    )


def trace_thread(trace: Trace) -> str | None:
    thread = (trace.metadata or {}).get("thread_id")
    return str(thread) if thread not in (None, "") else None


def context_parts(trace: Trace, delivered: Sequence[str] = ()) -> list[Part]:
    """What the trace is about, beyond its numbers: when, what ran, for whom, where it went."""
    items: list[Part] = [(f"started {format_local_time(trace.timestamp)}", "dim")]
    if trace.shown_status == "incomplete":
        items.append((NEVER_ENDED, "red"))
    for label, value in (
        ("target", trace_target(trace)),
        ("session", trace.session_id),
        ("user", trace.user_id),
        ("thread", trace_thread(trace)),
        ("experiment", trace_experiment(trace)),
    ):
        if value:
            items.append((f"{label} {clean_line(str(value))}", "dim"))
    if trace.tags:
        items.append(("tags " + ", ".join(clean_line(str(t)) for t in trace.tags), "dim"))
    if trace.environment and trace.environment != "default":
        items.append((f"env {clean_line(trace.environment)}", "dim"))
    if trace.release:
        items.append((f"release {clean_line(trace.release)}", "dim"))
    if trace.scores:
        items.append((f"scores {scores_text(trace.scores)}", "dim"))
    for where in delivered:
        items.append((f"delivered {clean_line(where)}", "dim"))
    return items


def _body_rows(obs: Observation, guide: str, full: bool, *, node: bool = False) -> list[_Row]:
    rows: list[_Row] = []
    interrupt = (obs.metadata or {}).get("interrupt")
    if isinstance(interrupt, dict) and obs.level != "ERROR":  # the node that paused: the interrupt's value
        text = pretty(interrupt.get("value")) if full else preview(interrupt.get("value"))
        rows.append(_Row(guide, [("⏸ interrupt: ", "bold yellow"), (text, "yellow")], fold=full))
    elif obs.level == "ERROR" or (obs.status_message and obs.level == "WARNING"):
        message = obs.status_message or "error"
        style = LEVEL_STYLES.get(obs.level, "red")
        if full:
            rows.append(_Row(guide, [(f"error: {clean(message)}", style)], fold=True))
        else:
            rows.append(_Row(guide, [("error: ", style), (preview(message), style)]))
    for label, value in (("in", obs.input), ("out", obs.output)):
        if value is None:
            continue
        if full:
            rows.append(_Row(guide, [(f"{label}: {clean(pretty(value))}", "dim")], fold=True))
        elif label == "out" and (node or _is_command(value)):  # a subgraph handing off ends with a Command too
            rows.append(_Row(guide, [(f"{label}: ", "dim"), (one_line(_compact(node_update(value))), "dim")]))
        else:
            rows.append(_Row(guide, [(f"{label}: ", "dim"), (preview(value), "dim")]))
    return rows


def _child_map(trace: Trace) -> tuple[list[Observation], dict[str | None, list[Observation]]]:
    """Roots (including orphans whose parent is missing, so nothing is lost) and parent -> children."""
    kids = trace.children()
    ids = {o.id for o in trace.observations}
    roots = list(kids.get(None, []))
    for parent, children in kids.items():
        if parent is not None and parent not in ids:
            roots.extend(children)
    roots.sort(key=lambda o: o.start_time)
    return roots, kids


def find_observation(trace: Trace, reference: str) -> Observation:
    """An observation by full id, unique id prefix, or node name (``agent``, ``agent#2`` = its 2nd run)."""
    wanted = reference.strip().lower()
    matches = [o for o in trace.observations if o.id.startswith(wanted)] if wanted else []
    exact = [o for o in matches if o.id == wanted]
    if exact:
        return exact[0]
    if any(o.name == reference.strip() for o in trace.observations):
        return _by_name(trace, reference.strip())  # a node called `add` or `a` is meant, not ids starting so
    if len(matches) > 1:
        raise InputError(
            f"observation prefix '{clean_line(reference)}' is ambiguous in trace {trace.id[:8]} "
            f"({', '.join(o.id for o in matches[:5])}); give more characters"
        )
    if matches:
        return matches[0]
    return _by_name(trace, reference.strip())


def _by_name(trace: Trace, reference: str) -> Observation:
    name, _, number = reference.rpartition("#") if "#" in reference else (reference, "", "")
    ordered = sorted(trace.observations, key=lambda o: o.start_time)
    same = [o for o in ordered if o.name == name]
    if not same:
        raise TraceNotFound(
            f"no observation '{clean_line(reference)}' in trace {trace.id} (give an id or prefix from "
            f"`lftrace show {trace.id[:8]}`, or a name such as '{ordered[0].name if ordered else 'agent'}#1')"
        )
    if number:
        if not number.isdigit() or not 1 <= int(number) <= len(same):
            raise TraceNotFound(
                f"no observation '{clean_line(reference)}' in trace {trace.id[:8]}: '{clean_line(name)}' ran "
                f"{len(same)} time{'s' * (len(same) != 1)} (use #1 to #{len(same)})"
            )
        return same[int(number) - 1]
    if len(same) > 1:
        # a node counts its own runs, not the subgraph inside that bears the same name
        nodes = [o for o in same if node_name(o) is not None] or same
        if len(nodes) > 1:
            raise InputError(
                f"'{clean_line(name)}' ran {len(same)} times in trace {trace.id[:8]}: "
                f"say which with {clean_line(name)}#1 to #{len(same)}"
            )
        return nodes[0]
    return same[0]


LOAD_BATCH = 2000  # observations whose inputs are loaded at once when the trace was read without them


def build_tree(
    trace: Trace,
    *,
    full: bool = False,
    depth: int | None = None,
    focus: str | None = None,
    delivered: Sequence[str] = (),
    context: bool = True,
    bodies: bool = True,
    expand: bool = False,
    load_inputs: Callable[[list[Observation]], None] | None = None,
) -> TraceTree:
    """Lay the trace out as rows: the trace line, then every observation (or the ``focus`` subtree).

    ``bodies=False`` leaves out the in/out/error lines (the live view: values are not serialised yet).
    Repeated sequences of siblings are folded (fold.py) unless ``expand``. ``load_inputs``: the trace was read
    without its observations' inputs; it is called with the observations whose bodies are shown, LOAD_BATCH at
    a time, to fill theirs in (a folded 20,000-observation trace shows a few dozen); they are dropped again once
    laid out, so --expand holds one batch of them.
    """
    from .fold import Fold, fold_siblings

    roots, kids = _child_map(trace)
    if focus is not None:
        roots = [find_observation(trace, focus)]
    by_id = {o.id: o for o in trace.observations}
    root = trace_parts(trace)
    tree = TraceTree([_Row("", root, drop=trace_drop(root))], context_parts(trace, delivered) if context else [])
    rows = tree.rows

    # iterative depth-first walk: 5,000-deep chains must not hit the recursion limit
    def shown(siblings: list[Observation]) -> list[Observation | Fold]:
        return list(siblings) if expand else fold_siblings(siblings, kids)

    pending: list[tuple[int, Observation, str]] = []  # (row index, observation, guide) of bodies to lay out
    items = shown(roots)
    stack: list[tuple[Observation | Fold, str, bool, int]] = [
        (obs, "", i == len(items) - 1, 1) for i, obs in reversed(list(enumerate(items)))
    ]
    while stack:
        obs, prefix, last, level = stack.pop()
        if isinstance(obs, Fold):
            label = [(obs.label(), "bold"), (f"  {obs.totals()}", "dim")]
            rows.append(_Row(prefix + (_LAST if last else _BRANCH), label))
            continue
        children = kids.get(obs.id, [])
        routing = is_routing(obs, by_id.get(obs.parent_id) if obs.parent_id else None, bool(children))
        parts, drop = observation_parts(obs, routing=routing)
        rows.append(_Row(prefix + (_LAST if last else _BRANCH), parts, drop=drop))
        inner = prefix + (_SPACE if last else _PIPE)
        body_guide = inner + (_PIPE if children else _SPACE)
        if bodies and (not routing or obs.level == "ERROR"):
            if load_inputs is None:
                rows.extend(_body_rows(obs, body_guide, full, node=node_name(obs) is not None))
            else:  # laid out once the inputs are in
                pending.append((len(rows), obs, body_guide))
        if not children:
            continue
        if depth is not None and level >= depth:
            hidden = _count_descendants(obs.id, kids)
            rows.append(_Row(inner + _LAST, [(f"… {hidden} more (use --depth {level + 1} or more)", "dim")]))
            continue
        items = shown(children)
        for i in range(len(items) - 1, -1, -1):
            stack.append((items[i], inner, i == len(items) - 1, level + 1))
    if pending and load_inputs is not None:
        laid: list[_Row] = []
        start = 0
        for first in range(0, len(pending), LOAD_BATCH):
            batch = pending[first : first + LOAD_BATCH]
            load_inputs([obs for _, obs, _ in batch])
            for index, obs, guide in batch:
                laid.extend(rows[start:index])
                laid.extend(_body_rows(obs, guide, full, node=node_name(obs) is not None))
                start = index
                obs.input = None  # laid out: dropped again, so --expand of a long run holds one batch of inputs
        laid.extend(rows[start:])
        rows[:] = laid
    return tree


def _count_descendants(obs_id: str, kids: dict[str | None, list[Observation]]) -> int:
    count, todo = 0, [obs_id]
    while todo:
        children = kids.get(todo.pop(), [])
        count += len(children)
        todo.extend(o.id for o in children)
    return count


def render_output(trace: Trace, *, full: bool = False) -> RenderableType:
    """The final output: the answer's text when it is a message, JSON otherwise; errors when it failed."""
    value = trace.output
    status = trace.status
    if status == "interrupted":  # the state before the pause is not an answer: show what the graph waits for
        stops = [i for i in trace.interrupts if i.get("breakpoint") in ("before", "after")]
        title = "Paused at a breakpoint:" if len(stops) == len(trace.interrupts) else "Paused, waiting for input:"
        paused: list[RenderableType] = [Text(title, style="bold yellow")]
        for item in trace.interrupts:
            node = clean(str(item.get("node") or "?"))
            if item in stops:  # a static breakpoint (interrupt_before/after): nothing to answer
                paused.append(Text.assemble(f"  {item['breakpoint']} ", (node, "bold")))
                continue
            shown = pretty(item.get("value")) if full else preview(item.get("value"))
            paused.append(Text.assemble((f"  {node}", "bold"), ": ", (shown, "yellow")))
        return Group(*paused)
    if value is None and status == "cancelled":
        return Text("Cancelled: this is the partial trace up to Ctrl-C", style="yellow")
    if value is None:
        errors = [o for o in trace.observations if o.level == "ERROR"]
        if errors:
            first = min(errors, key=lambda o: o.start_time)
            return Text.assemble(("Error: ", "bold red"), (clean(first.status_message or "error"), "red"))
        return Text("Output: (none)", style="dim")
    text = clean(pretty(value) if full else pretty(readable(value)))
    lines = text.splitlines() or [""]
    body = Text("\n".join(lines if full else lines[:OUTPUT_LINES]))
    if not full and len(lines) > OUTPUT_LINES:
        body.append(f"\n… {len(lines) - OUTPUT_LINES} more lines (use --full)", style="dim")
    return Group(Text("Output:", style="bold"), body)


def render_trace(
    trace: Trace,
    full: bool = False,
    depth: int | None = None,
    focus: str | None = None,
    *,
    footer: bool = True,
    delivered: Sequence[str] = (),
    expand: bool = False,
    load_inputs: Callable[[list[Observation]], None] | None = None,
) -> RenderableType:
    """The tree (after the trace line, its context), then (with ``footer``) the final output and the trace id.

    ``load_inputs``: see ``build_tree`` (a trace read without its observations' inputs)."""
    tree = build_tree(
        trace, full=full, depth=depth, focus=focus, delivered=delivered, expand=expand, load_inputs=load_inputs
    )
    if not footer:
        return tree
    parts: list[RenderableType] = [tree, Text("")]
    if focus is None:
        parts.append(render_output(trace, full=full))
    parts.append(Text.assemble(("Trace ID: ", "bold"), (clean_line(trace.id), "")))
    return Group(*parts)


# ---------------------------------------------------------------- tables (list, sessions)


def format_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _iso_local(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


@dataclass
class Table:
    """A table laid out for the console width, columns two spaces apart.

    Laid out here rather than with ``rich.table`` (whose import and layout cost more than the rest of
    ``lftrace list`` together): the widths are known. When the width is short, the ``optional`` columns
    go first (in that order), then the ``flex`` column gives way with an ellipsis. ``tsv`` holds the same
    rows for scripts (full ids, plain numbers), printed when stdout is not a terminal.
    """

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    right: frozenset[int] = frozenset()
    flex: int = 0
    optional: tuple[int, ...] = ()
    status_column: int | None = None
    times: tuple[int, ...] = ()  # columns of local times, shortened on a narrow terminal
    tsv_headers: tuple[str, ...] = ()
    tsv_rows: list[tuple[str, ...]] = field(default_factory=list)

    def lines(self, width: int) -> list[Text]:
        keep = list(range(len(self.headers)))
        rows = [tuple(clean_line(cell) for cell in row) for row in self.rows]
        widths = self._widths(rows)
        for column in self.optional:  # the least useful columns go before the flexible one is squeezed
            if self._fixed(widths, keep) + 8 <= width:
                break
            keep.remove(column)
        if self.times and self._fixed(widths, keep) + 8 > width:
            # a narrow terminal: "11-26 19:58" instead of "2026-11-26 19:58:21"
            rows = [tuple(c[5:16] if i in self.times and len(c) == 19 else c for i, c in enumerate(r)) for r in rows]
            widths = self._widths(rows)
        fixed = self._fixed(widths, keep)
        widths[self.flex] = max(min(widths[self.flex], width - fixed), 4)
        last = keep[-1]  # not padded: no trailing blanks, also when the columns after it were left out
        out = [Text("  ".join(self._cell(self.headers[i], i, widths[i], i == last) for i in keep), style="bold")]
        for row in rows:
            line = Text()
            for n, i in enumerate(keep):
                if n:
                    line.append("  ")
                style = STATUS_STYLES.get(row[i].split(" ", 1)[0], "") if i == self.status_column else ""
                line.append(self._cell(row[i], i, widths[i], i == last), style=style)
            out.append(line)
        return out

    def _fixed(self, widths: list[int], keep: list[int]) -> int:
        return sum(widths[i] for i in keep if i != self.flex) + 2 * (len(keep) - 1)

    def _cell(self, text: str, column: int, width: int, last: bool = False) -> str:
        size = _width(text)
        if size > width:
            return set_cell_size(text, width - 1) + "…"
        pad = " " * (width - size)
        if column in self.right:
            return pad + text
        return text if last else text + pad

    def _widths(self, rows: Sequence[tuple[str, ...]]) -> list[int]:
        return [max([len(h), *(_width(row[i]) for row in rows)]) for i, h in enumerate(self.headers)]

    def tsv(self) -> str:
        """Tab-separated, a header first (``gh``'s and ``llm logs``' scripting format); cells on one line."""
        headers = self.tsv_headers or self.headers
        rows = self.tsv_rows or self.rows
        return "".join("\t".join(clean_line(c) for c in row) + "\n" for row in [headers, *rows])

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(options.max_width):
            line.no_wrap = True
            line.overflow = "ellipsis"
            yield line


def render_history(checkpoints: Sequence[Mapping[str, Any]]) -> Table:
    """``lftrace history``: a thread's checkpoints oldest first (``threads.Checkpoint.to_dict()``): the step, the
    nodes that ran to make it, those due next, what changed (items appended to a list channel, or its new value)."""
    rows: list[tuple[str, ...]] = []
    tsv: list[tuple[str, ...]] = []
    for point in checkpoints:
        changes = [f"{key} +{len(items)}: {preview(items[-1])}" for key, items in point["appended"].items()]
        changes += [f"{key}: {preview(value)}" for key, value in point["set"].items()]
        if point["interrupts"]:
            changes.append(f"⏸ interrupt: {preview(point['interrupts'][0])}")
        step = "" if point["step"] is None else str(point["step"])
        made_by = f"({point['source']})" if point["source"] not in (None, "loop") else "-"  # input, update, fork
        ran, due = ", ".join(point["ran"]) or made_by, ", ".join(point["next"]) or "-"
        rows.append((step, ran, due, "; ".join(changes) or "-", point["checkpointId"]))
        tsv.append(
            (
                step,
                ",".join(point["ran"]) or made_by.strip("()-"),
                ",".join(point["next"]),
                "; ".join(changes),
                point["checkpointId"],
            )
        )
    return Table(
        headers=("STEP", "RAN", "NEXT", "CHANGED", "CHECKPOINT"),
        rows=rows,
        right=frozenset({0}),
        flex=3,
        tsv_headers=("step", "ran", "next", "changed", "checkpoint_id"),
        tsv_rows=tsv,
    )


def render_prompt_list(prompts: Sequence[Mapping[str, Any]]) -> Table:
    """``lftrace prompts``: each prompt (Langfuse's ``PromptMeta``) with its versions, labels and tags."""
    rows: list[tuple[str, ...]] = []
    tsv: list[tuple[str, ...]] = []
    for meta in prompts:
        versions = [int(v) for v in meta.get("versions") or []]
        shown = f"{len(versions)} (latest {max(versions)})" if versions else "0"
        labels, tags = list(meta.get("labels") or []), list(meta.get("tags") or [])
        name, kind = str(meta.get("name")), str(meta.get("type"))
        rows.append((name, kind, shown, ", ".join(labels) or "-", ", ".join(tags) or "-"))
        tsv.append((name, kind, ",".join(map(str, versions)), ",".join(labels), ",".join(tags)))
    return Table(
        headers=("NAME", "TYPE", "VERSIONS", "LABELS", "TAGS"),
        rows=rows,
        flex=3,
        optional=(4,),
        tsv_headers=("name", "type", "versions", "labels", "tags"),
        tsv_rows=tsv,
    )


class TraceList(Table):
    """The ``list`` table: NAME gives way; on a narrow terminal the extra columns go, then the time is shortened."""


_LIST_HEADERS = ("TIME", "ID", "NAME", "DURATION", "TOKENS", "COST", "STATUS")
_LIST_TSV_HEADERS = (
    "time", "id", "name", "duration_s", "tokens", "cost_usd", "status", "session", "user", "tags", "observations",
)  # fmt: skip


def summary_status(summary: TraceSummary) -> str:
    """``ok``, ``error``, ``interrupted``, ``cancelled``, ``running``; ``ok · 1 handled`` when an error was handled."""
    handled = summary.handled_errors
    return f"{summary.status} · {handled} handled" if handled else summary.status


def render_trace_list(summaries: Sequence[TraceSummary] | Iterable[TraceSummary]) -> TraceList:
    """Newest first (as given): time, short id, name, duration, tokens, cost, status; session, user and tags
    when any trace has them (they give way first on a narrow terminal)."""
    summaries = list(summaries)
    headers = list(_LIST_HEADERS)
    extra = [
        (header, getter)
        for header, getter in (
            ("SESSION", lambda s: s.session_id or ""),
            ("USER", lambda s: s.user_id or ""),
            ("TAGS", lambda s: ",".join(s.tags)),
        )
        if any(getter(s) for s in summaries)
    ]
    rows = []
    for s in summaries:
        row = [
            format_time(s.timestamp),
            s.id[:8],
            s.name or "(unnamed)",
            format_duration(s.latency) if s.latency is not None else "—",
            str(s.total_tokens) if s.total_tokens else "—",
            format_cost(s.total_cost) or "—",
            summary_status(s),
        ]
        # the status stays last (it is what the eye looks for); extra columns go between cost and status
        row[6:6] = [getter(s) or "—" for _, getter in extra]
        rows.append(tuple(row))
    headers[6:6] = [header for header, _ in extra]
    tsv_rows: list[tuple[str, ...]] = [
        (
            _iso_local(s.timestamp),
            s.id,
            s.name or "",
            "" if s.latency is None else f"{s.latency:.6f}",
            str(s.total_tokens),
            "" if s.total_cost is None else f"{s.total_cost:.8f}",
            s.status,
            s.session_id or "",
            s.user_id or "",
            ",".join(s.tags),
            str(s.observation_count),
        )
        for s in summaries
    ]
    count = len(headers)
    return TraceList(
        tuple(headers),
        rows,
        right=frozenset((3, 4, 5)),
        flex=2,
        optional=tuple(range(count - 2, 5, -1)),  # TAGS, USER, SESSION: right to left
        status_column=count - 1,
        times=(0,),
        tsv_headers=_LIST_TSV_HEADERS,
        tsv_rows=tsv_rows,
    )
