"""Watching traces as they happen: the tree of a run while it runs, and ``lftrace tail``.

``LiveTree`` is what ``lftrace run`` shows on a terminal while the graph runs (inside ``rich.live.Live``): the
tree of the handler's running trace, its open observations marked ``open``, redrawn a few times a second;
when it is taller than the terminal, the newest rows are kept. ``follow`` is the loop behind ``lftrace tail``:
it polls a store that other processes write and yields each trace once it has finished.
Pure of printing; ``follow`` only reads the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from .model import Trace, TraceSummary
from .render import STATUS_STYLES, build_tree, format_cost, format_duration, format_time, summary_status
from .sanitize import clean_line


@dataclass
class LiveTree:
    """The running trace of ``handler`` (anything with ``running_traces()``), fitted to the terminal's height."""

    handler: Any
    target: str
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        elapsed = time.monotonic() - self.started
        traces: list[Trace] = []
        getter = getattr(self.handler, "running_traces", None)
        if callable(getter):
            try:
                traces = getter()
            except Exception:  # the run's thread changed the handler under us: next refresh
                traces = []
        status = Text.assemble(("running ", "bold"), (clean_line(self.target), "cyan"), f"  {elapsed:.1f}s")
        if not traces:
            yield status
            return
        trace = traces[-1]
        snapshot = Trace(
            id=trace.id, name=trace.name, timestamp=trace.timestamp, observations=list(trace.observations),
            session_id=trace.session_id, user_id=trace.user_id, tags=list(trace.tags), metadata=trace.metadata,
        )  # fmt: skip
        tree = build_tree(snapshot, bodies=False, context=False)
        room = max((options.height or console.height) - 2, 3)
        if len(tree.rows) > room:  # keep the trace line and the newest rows
            hidden = len(tree.rows) - room + 1
            tree.rows = [tree.rows[0], *tree.rows[-(room - 1) :]]
            status.append(f"  ({hidden} earlier rows above)", style="dim")
        yield tree
        yield status


def tail_line(summary: TraceSummary) -> Text:
    """One line per finished trace: time, id, name, status, duration, tokens, cost, session/user."""
    status = summary_status(summary)
    line = Text.assemble(
        (format_time(summary.timestamp)[11:], "dim"),
        "  ",
        (summary.id[:8], "dim"),
        "  ",
        (clean_line(summary.name or "(unnamed)"), "bold"),
        "  ",
        (status, STATUS_STYLES.get(summary.status, "")),
        "  ",
        (format_duration(summary.latency) if summary.latency is not None else "—", "cyan"),
    )
    if summary.total_tokens:
        line.append(f"  {summary.total_tokens} tok")
    cost = format_cost(summary.total_cost)
    if cost:
        line.append(f"  {cost}", style="green")
    for label, value in (("session", summary.session_id), ("user", summary.user_id)):
        if value:
            line.append(f"  {label} {clean_line(value)}", style="dim")
    return line


def follow(
    read: Callable[[int, list[str]], tuple[list[TraceSummary], int]],
    start: int,
    *,
    interval: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    running: Sequence[str] = (),
) -> Iterator[TraceSummary]:
    """Finished traces written after ``start`` (a store position), each once, as they appear.

    ``read(position, unfinished_ids)`` returns the summaries written after ``position`` plus those of
    ``unfinished_ids``, and the new position (``TraceStore.changes_since``). A trace still running (written
    while its run goes on) is held back until it has finished; ``running``: ids of traces running at ``start``
    (a long run's trace is stored at its first part and completed in place: no newer position shows its end).
    """
    position = start
    waiting: list[str] = list(running)
    seen: set[str] = set()
    while not stop():
        summaries, position = read(position, waiting)
        waiting = []
        for summary in summaries:
            if summary.id in seen:
                continue
            if summary.status == "running":
                waiting.append(summary.id)
                continue
            seen.add(summary.id)
            yield summary
        if len(seen) > 100_000:  # a tail left running for days: forget the oldest half (ids are random)
            seen = set(list(seen)[50_000:])
        time.sleep(interval)
