"""Trace -> rich renderables. Pure: nothing here prints, reads the store or imports LangChain.

The tree is drawn by ``TraceTree``, a small renderable that emits one pre-measured line per row
instead of nesting ``rich.tree.Tree`` nodes: rich's Tree re-measures every label through every
level of guides (~0.8 s for 5,000 observations); this draws the same picture in a fraction of that.
Every row is truncated with an ellipsis to the console width, so nothing wraps into a mess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from .errors import InputError, TraceNotFound
from .model import Observation, Trace, TraceSummary

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
STATUS_STYLES = {"ok": "green", "error": "bold red", "interrupted": "yellow", "running": "cyan"}
STATUS_MARKS = {"ok": "✓ ok", "error": "✗ error", "interrupted": "⚠ interrupted", "running": "… running"}

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


def format_tokens(usage: dict[str, int] | None) -> str:
    """``12→7 tok`` plus cached/reasoning counts when the provider reported them."""
    if not usage:
        return ""
    tokens_in, tokens_out = usage.get("input"), usage.get("output")
    if tokens_in is None and tokens_out is None:
        total = usage.get("total")
        return f"{total} tok" if total is not None else ""
    text = f"{tokens_in or 0}→{tokens_out or 0} tok"
    cached = sum(v for k, v in usage.items() if "cache_read" in k and isinstance(v, int))
    reasoning = sum(v for k, v in usage.items() if "reasoning" in k and isinstance(v, int))
    extras = [f"cached {cached}"] * bool(cached) + [f"reasoning {reasoning}"] * bool(reasoning)
    return text + (f" ({', '.join(extras)})" if extras else "")


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content blocks: keep the text ones
        content = " ".join(
            str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content if b is not None
        ).strip()
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
    return value


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        return repr(value)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """One line, at most ``limit`` characters."""
    text = _compact(readable(value))
    text = " ".join(text.split()) if ("\n" in text or "\t" in text or "  " in text) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------- the tree


@dataclass(slots=True)
class _Row:
    guide: str  # only single-cell box characters: its width is len(guide)
    parts: list[Part]
    fold: bool = False  # --full bodies wrap instead of being cut


@dataclass
class TraceTree:
    """A pre-laid-out tree: ``rows`` are drawn one per line (or folded when ``fold``)."""

    rows: list[_Row] = field(default_factory=list)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        plain = console.color_system is None or console.no_color  # one segment per line: ~5x fewer to emit
        styles: dict[str, Style] = {}

        def style_of(name: str) -> Style:
            if name not in styles:
                styles[name] = console.get_style(name) if name else Style.null()
            return styles[name]

        deepest = max(width * 2 // 3, 1)  # very deep trees keep the innermost guides, not the root's
        for row in self.rows:
            guide = row.guide if len(row.guide) <= deepest else "…" + row.guide[-(deepest - 1) :]
            room = max(width - len(guide), 1)
            if row.fold:
                lines = [
                    [(guide, "dim"), (chunk, row.parts[0][1])]
                    for chunk in _fold("".join(t for t, _ in row.parts), room)
                ]
            else:
                lines = [[(guide, "dim"), *_cut(row.parts, room)]]
            for parts in lines:
                if plain:
                    yield Segment("".join(text for text, _ in parts) + "\n")
                    continue
                for text, style in parts:
                    if text:
                        yield Segment(text, style_of(style))
                yield Segment("\n")

    def __len__(self) -> int:
        return len(self.rows)


def _cut(parts: list[Part], room: int) -> list[Part]:
    """The parts that fit in ``room`` cells; when cut, the last visible cell is an ellipsis."""
    sizes = [len(text) if text.isascii() else cell_len(text) for text, _ in parts]
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


def observation_parts(obs: Observation) -> list[Part]:
    """The one-line label of an observation: type, name, duration, level, model, tokens, cost, ttft."""
    parts: list[Part] = [(obs.type, TYPE_STYLES.get(obs.type, "")), (" ", ""), (obs.name or "(unnamed)", "bold")]
    parts.append((f"  {format_duration(obs.latency)}", "cyan" if obs.end_time is not None else "yellow"))
    if obs.level != "DEFAULT":
        parts.append((f"  {obs.level}", LEVEL_STYLES.get(obs.level, "")))
    if obs.model:
        parts.append((f"  {obs.model}", "magenta"))
    tokens = format_tokens(obs.usage_details)
    if tokens:
        parts.append((f"  {tokens}", ""))
    cost = format_cost((obs.cost_details or {}).get("total"))
    if cost:
        parts.append((f"  {cost}", "green"))
    ttft = obs.time_to_first_token
    if ttft is not None and obs.type == "GENERATION":
        parts.append((f"  ttft {format_duration(ttft)}", "dim"))
    parts.append((f"  {obs.id[:8]}", "dim"))  # enough for `show --observation`
    return parts


def trace_parts(trace: Trace) -> list[Part]:
    """The root line: name, status, total duration, tokens, cost, observation count (most important first)."""
    usage = trace.usage
    status = trace.status
    parts: list[Part] = [
        (trace.name or "(unnamed trace)", "bold"),
        (f"  {STATUS_MARKS.get(status, status)}", STATUS_STYLES.get(status, "")),
        (f"  {format_duration(trace.latency)}", "cyan"),
    ]
    total = trace.total_tokens
    if total:
        tokens = f"  {total} tokens"
        if "input" in usage or "output" in usage:
            tokens += f" ({usage.get('input', 0)} in, {usage.get('output', 0)} out)"
        parts.append((tokens, ""))
    cost = format_cost(trace.total_cost)
    if cost:
        parts.append((f"  {cost}", "green"))
    count = len(trace.observations)
    parts.append((f"  {count} observation{'s' * (count != 1)}", "dim"))
    return parts


def _body_rows(obs: Observation, guide: str, full: bool) -> list[_Row]:
    rows: list[_Row] = []
    if obs.level == "ERROR" or (obs.status_message and obs.level == "WARNING"):
        message = obs.status_message or "error"
        style = LEVEL_STYLES.get(obs.level, "red")
        if full:
            rows.append(_Row(guide, [(f"error: {message}", style)], fold=True))
        else:
            rows.append(_Row(guide, [("error: ", style), (preview(message), style)]))
    for label, value in (("in", obs.input), ("out", obs.output)):
        if value is None:
            continue
        if full:
            rows.append(_Row(guide, [(f"{label}: {pretty(value)}", "dim")], fold=True))
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


def find_observation(trace: Trace, id_or_prefix: str) -> Observation:
    """An observation by full id or unique prefix."""
    wanted = id_or_prefix.lower()
    matches = [o for o in trace.observations if o.id.startswith(wanted)]
    exact = [o for o in matches if o.id == wanted]
    if exact:
        return exact[0]
    if not matches:
        raise TraceNotFound(
            f"no observation '{id_or_prefix}' in trace {trace.id} (see the ids with `lftrace show {trace.id[:8]} --json`)"
        )
    if len(matches) > 1:
        raise InputError(
            f"observation prefix '{id_or_prefix}' is ambiguous in trace {trace.id[:8]} "
            f"({', '.join(o.id for o in matches[:5])}); give more characters"
        )
    return matches[0]


def build_tree(trace: Trace, *, full: bool = False, depth: int | None = None, focus: str | None = None) -> TraceTree:
    """Lay the trace out as rows: the trace line, then every observation (or the ``focus`` subtree)."""
    roots, kids = _child_map(trace)
    if focus is not None:
        roots = [find_observation(trace, focus)]
    tree = TraceTree([_Row("", trace_parts(trace))])
    rows = tree.rows
    # iterative depth-first walk: 5,000-deep chains must not hit the recursion limit
    stack: list[tuple[Observation, str, bool, int]] = [
        (obs, "", i == len(roots) - 1, 1) for i, obs in reversed(list(enumerate(roots)))
    ]
    while stack:
        obs, prefix, last, level = stack.pop()
        rows.append(_Row(prefix + (_LAST if last else _BRANCH), observation_parts(obs)))
        inner = prefix + (_SPACE if last else _PIPE)
        children = kids.get(obs.id, [])
        body_guide = inner + (_PIPE if children else _SPACE)
        rows.extend(_body_rows(obs, body_guide, full))
        if not children:
            continue
        if depth is not None and level >= depth:
            hidden = _count_descendants(obs.id, kids)
            rows.append(_Row(inner + _LAST, [(f"… {hidden} more (use --depth {level + 1} or more)", "dim")]))
            continue
        for i in range(len(children) - 1, -1, -1):
            stack.append((children[i], inner, i == len(children) - 1, level + 1))
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
    if value is None and trace.status == "interrupted":
        return Text("Interrupted: this is the partial trace up to Ctrl-C", style="yellow")
    if value is None:
        errors = [o for o in trace.observations if o.level == "ERROR"]
        if errors:
            first = min(errors, key=lambda o: o.start_time)
            return Text.assemble(("Error: ", "bold red"), (first.status_message or "error", "red"))
        return Text("Output: (none)", style="dim")
    text = pretty(value) if full else pretty(readable(value))
    lines = text.splitlines() or [""]
    body = Text("\n".join(lines if full else lines[:OUTPUT_LINES]))
    if not full and len(lines) > OUTPUT_LINES:
        body.append(f"\n… {len(lines) - OUTPUT_LINES} more lines (use --full)", style="dim")
    return Group(Text("Output:", style="bold"), body)


def render_trace(
    trace: Trace, full: bool = False, depth: int | None = None, focus: str | None = None, *, footer: bool = True
) -> RenderableType:
    """The tree, then (with ``footer``) the final output and the trace id."""
    tree = build_tree(trace, full=full, depth=depth, focus=focus)
    if not footer:
        return tree
    parts: list[RenderableType] = [tree, Text("")]
    if focus is None:
        parts.append(render_output(trace, full=full))
    parts.append(Text.assemble(("Trace ID: ", "bold"), (trace.id, "")))
    return Group(*parts)


# ---------------------------------------------------------------- listing


def format_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class TraceList:
    """The ``list`` table, laid out for the console width: only NAME gives way (with an ellipsis)."""

    rows: list[tuple[str, ...]]

    HEADERS = ("TIME", "ID", "NAME", "DURATION", "TOKENS", "COST", "STATUS")

    RIGHT = frozenset((3, 4, 5))  # DURATION, TOKENS, COST

    def lines(self, width: int) -> list[Text]:
        """Header and rows as text lines, columns two spaces apart, fitted to ``width``.

        Laid out here rather than with ``rich.table`` (whose import and layout cost more than the rest
        of ``lftrace list`` together): the widths are known, only NAME gives way.
        """
        rows = self.rows
        widths = self._widths(rows)
        fixed = sum(w for i, w in enumerate(widths) if i != 2) + 2 * (len(widths) - 1)
        if fixed + 8 > width:  # a narrow terminal: "11-26 19:58" instead of "2026-11-26 19:58:21"
            rows = [(row[0][5:16], *row[1:]) for row in rows]
            widths = self._widths(rows)
            fixed = sum(w for i, w in enumerate(widths) if i != 2) + 2 * (len(widths) - 1)
        widths[2] = max(min(widths[2], width - fixed), 4)
        out = [Text("  ".join(self._cell(h, i, widths[i]) for i, h in enumerate(self.HEADERS)), style="bold")]
        for row in rows:
            line = Text("  ".join(self._cell(cell, i, widths[i]) for i, cell in enumerate(row[:-1])) + "  ")
            line.append(self._cell(row[-1], len(row) - 1, widths[-1]), style=STATUS_STYLES.get(row[-1], ""))
            out.append(line)
        return out

    def _cell(self, text: str, column: int, width: int) -> str:
        size = len(text) if text.isascii() else cell_len(text)
        if size > width:
            return set_cell_size(text, width - 1) + "…"
        pad = " " * (width - size)
        return pad + text if column in self.RIGHT else text + pad

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(options.max_width):
            line.no_wrap = True
            line.overflow = "ellipsis"
            yield line

    def _widths(self, rows: Sequence[tuple[str, ...]]) -> list[int]:
        return [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(self.HEADERS)]


def render_trace_list(summaries: Sequence[TraceSummary] | Iterable[TraceSummary]) -> TraceList:
    """Newest first (as given): time, short id, name, duration, tokens, cost, status."""
    return TraceList(
        [
            (
                format_time(s.timestamp),
                s.id[:8],
                s.name or "(unnamed)",
                format_duration(s.latency) if s.latency is not None else "—",
                str(s.total_tokens) if s.total_tokens else "—",
                format_cost(s.total_cost) or "—",
                s.status,
            )
            for s in summaries
        ]
    )
