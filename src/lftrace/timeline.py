"""``show --timeline``: the trace as a waterfall, one row per observation, bars to scale.

Parallel branches and ``Send`` fan-out overlap on screen, and the slow step is the long bar. Each row: the
name (indented by depth), its start offset from the trace's start, its duration, and a bar placed on a
common time axis. A generation's bar is light (``░``) until its first token and solid (``█``) after it, so
time to first token is visible; an observation still open when the trace was saved is ``▒`` to the end.
Long runs are folded as ``show``'s tree folds them (fold.py): a repeated sequence of nodes is one row
(``× 1,498  think -> critic``) whose bar spans the folded rounds, a level longer than a screen is cut in the
middle; ``expand`` shows every observation. Pure: builds a renderable, prints nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

from .fold import Fold, fold_siblings
from .model import Observation, Trace
from .render import (
    LEVEL_STYLES,
    TYPE_STYLES,
    Part,
    TraceTree,
    _child_map,
    _Row,
    context_parts,
    format_duration,
    is_routing,
    node_name,
    step_of,
    trace_drop,
    trace_parts,
)
from .sanitize import clean_line

FULL, WAIT, OPEN = "█", "░", "▒"
MIN_BAR = 10
_OFFSET_WIDTH = 7
_DURATION_WIDTH = 7


@dataclass(slots=True)
class _Bar:
    label: str
    depth: int
    style: str
    start: int  # ns
    end: int | None
    first_token: int | None
    error: bool


@dataclass
class Timeline:
    """The waterfall renderable; the header (trace line and context) comes from render.py."""

    trace: Trace
    bars: list[_Bar] = field(default_factory=list)
    delivered: tuple[str, ...] = ()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        root = trace_parts(self.trace)
        yield TraceTree([_Row("", root, drop=trace_drop(root))], context_parts(self.trace, self.delivered))
        if not self.bars:
            yield Segment("(no observations)\n")
            return
        plain = console.color_system is None or console.no_color
        t0 = min(b.start for b in self.bars)
        t0 = min(t0, self.trace.timestamp)
        ends = [b.end for b in self.bars if b.end is not None] + [b.start for b in self.bars]
        t_end = max([*ends, self.trace.end_time or 0])
        span = max(t_end - t0, 1)
        label_width = min(max(cell_len(b.label) + 2 * b.depth for b in self.bars), max(12, width * 3 // 10))
        show_offset, show_duration = True, True
        bar_width = width - label_width - 2 - (_OFFSET_WIDTH + 2) - (_DURATION_WIDTH + 2)
        if bar_width < MIN_BAR:
            show_offset, bar_width = False, bar_width + _OFFSET_WIDTH + 2
        if bar_width < MIN_BAR:
            show_duration, bar_width = False, bar_width + _DURATION_WIDTH + 2
        if bar_width < MIN_BAR:
            label_width = max(label_width - (MIN_BAR - bar_width), 4)
            bar_width = max(width - label_width - 2, 1)

        lines: list[list[Part]] = [self._axis(label_width, bar_width, span, show_offset, show_duration)]
        used = set()
        for bar in self.bars:
            parts: list[Part] = [(_fit(" " * (2 * bar.depth) + bar.label, label_width), bar.style), ("  ", "")]
            if show_offset:
                parts.append((format_duration((bar.start - t0) / 1e9).rjust(_OFFSET_WIDTH) + "  ", "dim"))
            if show_duration:
                took = format_duration(None if bar.end is None else (bar.end - bar.start) / 1e9)
                parts.append((took.rjust(_DURATION_WIDTH) + "  ", "cyan" if bar.end is not None else "yellow"))
            cells, kinds = _bar_cells(bar, t0, span, bar_width, t_end)
            used.update(kinds)
            parts.append((cells, "red" if bar.error else _BAR_STYLES.get(bar.style, "blue")))
            lines.append(parts)
        legend = [("█ start to end", "")]  # not "running": that is the status of a trace that never ended
        if WAIT in used:
            legend.append(("░ before the first token", ""))
        if OPEN in used:
            legend.append(("▒ still open", ""))
        lines.append([("  ".join(text for text, _ in legend), "dim")])
        styles: dict[str, Style] = {}
        for parts in lines:
            if plain:
                yield Segment("".join(text for text, _ in parts).rstrip() + "\n")
                continue
            for text, style in parts:
                if style not in styles:
                    styles[style] = console.get_style(style) if style else Style.null()
                yield Segment(text, styles[style])
            yield Segment("\n")

    def _axis(self, label_width: int, bar_width: int, span: int, offset: bool, duration: bool) -> list[Part]:
        head = " " * label_width + "  "
        if offset:
            head += "start".rjust(_OFFSET_WIDTH) + "  "
        if duration:
            head += "took".rjust(_DURATION_WIDTH) + "  "
        right = format_duration(span / 1e9)
        middle = format_duration(span / 2e9)
        scale = ["0", *[" "] * (bar_width - 1)]
        if bar_width >= len(right) + len(middle) + 6:
            mid = bar_width // 2 - len(middle) // 2
            scale[mid : mid + len(middle)] = list(middle)
        if bar_width >= len(right) + 3:
            scale[bar_width - len(right) :] = list(right)
        return [(head, "dim"), ("".join(scale), "dim")]


_BAR_STYLES = {style: style for style in TYPE_STYLES.values()} | {"bold": "blue", "dim": "dim"}


def _fit(text: str, width: int) -> str:
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…"
    return text + " " * (width - size)


def _bar_cells(bar: _Bar, t0: int, span: int, width: int, t_end: int) -> tuple[str, set[str]]:
    """The bar's cells: blank before its start, ``░`` until the first token, ``█`` to its end (``▒`` if open)."""
    start = min(int((bar.start - t0) / span * width), width - 1)
    end_ns = bar.end if bar.end is not None else t_end
    end = min(max(math.ceil((end_ns - t0) / span * width), start + 1), width)
    fill = FULL if bar.end is not None else OPEN
    cells = [fill] * (end - start)
    if bar.first_token is not None and bar.end is not None:
        first = min(max(round((bar.first_token - t0) / span * width), start), end)
        cells[: first - start] = [WAIT] * (first - start)
    return " " * start + "".join(cells), set(cells)


def build_timeline(
    trace: Trace,
    *,
    depth: int | None = None,
    delivered: tuple[str, ...] | list[str] = (),
    expand: bool = False,
) -> Timeline:
    """Every observation in tree order (parents before children, siblings by start time); repeated sequences
    folded into one row each unless ``expand``."""
    roots, kids = _child_map(trace)
    by_id = {o.id: o for o in trace.observations}

    def shown(siblings: list[Observation]) -> list[Observation | Fold]:
        return list(siblings) if expand else fold_siblings(siblings, kids)

    bars: list[_Bar] = []
    stack: list[tuple[Observation | Fold, int]] = [(o, 0) for o in reversed(shown(roots))]
    while stack:
        obs, level = stack.pop()
        if isinstance(obs, Fold):
            bars.append(_folded_bar(obs, level))
            continue
        children = kids.get(obs.id, [])
        parent = by_id.get(obs.parent_id) if obs.parent_id else None
        routing = is_routing(obs, parent, bool(children))
        label = clean_line(obs.name or "(unnamed)")
        step = step_of(obs)
        if step is not None and node_name(obs) is not None:
            label += f" ·{step}"
        style = "dim" if routing else TYPE_STYLES.get(obs.type, "bold")
        if obs.level == "ERROR":
            style = LEVEL_STYLES["ERROR"]
            label += " ✗"  # visible without colour too
        bars.append(
            _Bar(
                label=("↳ " + label) if routing else label,
                depth=level,
                style=style,
                start=obs.start_time,
                end=obs.end_time,
                first_token=obs.completion_start_time if obs.type == "GENERATION" else None,
                error=obs.level == "ERROR",
            )
        )
        if depth is not None and level + 1 >= depth:
            continue
        stack.extend((child, level + 1) for child in reversed(shown(children)))
    return Timeline(trace, bars, tuple(delivered))


def _folded_bar(fold: Fold, level: int) -> _Bar:
    """One row for a folded stretch: its label (``× 1,498  think -> critic``, ``… 1,200 more``), a bar from the
    first folded start to the last folded end (open to the end if one of them never ended)."""
    starts = [o.start_time for o in fold.observations]
    ends = [o.end_time for o in fold.observations]
    open_ = any(end is None for end in ends)
    return _Bar(
        label=clean_line(fold.label()),
        depth=level,
        style="dim",
        start=min(starts),
        end=None if open_ else max(e for e in ends if e is not None),
        first_token=None,
        error=fold.errors > 0,
    )
