"""``lftrace sessions`` and ``show --session``: sessions (LangGraph threads) as a table, one as a conversation.

A session's traces are its turns: each shows what the user said (the last user message of the trace's input,
else the input), what came back (the reply: the last message of the output), and the turn's time, duration,
status, tokens and trace id. Pure: builds renderables, prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from .model import Score, SessionSummary, Trace
from .render import (
    STATUS_STYLES,
    Table,
    _is_message,
    _message_text,
    format_cost,
    format_duration,
    format_time,
    pretty,
    readable,
    scores_text,
    status_text,
)
from .sanitize import clean, clean_line

_SESSION_HEADERS = ("LAST", "SESSION", "TRACES", "FIRST", "TOKENS", "COST", "USERS", "STATUS", "SCORES")
_SESSION_TSV_HEADERS = ("session", "traces", "first", "last", "tokens", "cost_usd", "users", "status", "scores")


def render_session_list(sessions: Sequence[SessionSummary]) -> Table:
    """Most recently active first: last activity, session id, trace count, first activity, tokens, cost, status."""
    rows: list[tuple[str, ...]] = [
        (
            format_time(s.last),
            s.id,
            str(s.traces),
            format_time(s.first),
            str(s.total_tokens) if s.total_tokens else "—",
            format_cost(s.total_cost) or "—",
            ",".join(s.user_ids) or "—",
            s.status,
            scores_text(s.scores) or "—",
        )
        for s in sessions
    ]
    tsv: list[tuple[str, ...]] = [
        (
            s.id,
            str(s.traces),
            format_time(s.first),
            format_time(s.last),
            str(s.total_tokens),
            "" if s.total_cost is None else f"{s.total_cost:.8f}",
            ",".join(s.user_ids),
            s.status,
            scores_text(s.scores),
        )
        for s in sessions
    ]
    return Table(
        _SESSION_HEADERS,
        rows,
        right=frozenset((2, 4, 5)),
        flex=1,
        optional=(8, 6, 3, 4),  # SCORES, USERS, FIRST, then TOKENS go before the session id is cut
        status_column=7,
        times=(0, 3),
        tsv_headers=_SESSION_TSV_HEADERS,
        tsv_rows=tsv,
    )


def _said(value: Any) -> str:
    """What the user said in a turn: the last user message of the input, else the input as text."""
    messages = value.get("messages") if isinstance(value, dict) else value if isinstance(value, list) else None
    if isinstance(messages, list):
        for message in reversed(messages):
            if _is_message(message) and str(message.get("role") or message.get("type")) in ("user", "human"):
                return _message_text(message)
    shown = readable(value)
    return shown if isinstance(shown, str) else pretty(shown)


def _reply(trace: Trace) -> tuple[str, str]:
    """(text, style) of a turn's answer: the reply, the error, or a note that the run stopped."""
    if trace.output is not None:
        shown = readable(trace.output)
        return (shown if isinstance(shown, str) else pretty(shown)), ""
    errors = sorted((o for o in trace.observations if o.level == "ERROR"), key=lambda o: o.start_time)
    if errors:
        return f"error: {errors[0].status_message or 'error'}", "red"
    return "(no output)", "dim"


def render_conversation(session_id: str, traces: Sequence[Trace], scores: Sequence[Score] = ()) -> RenderableType:
    """A session turn by turn, oldest first, each turn headed by its time, duration, status, tokens and trace id;
    the session's own scores (``create_score(session_id=...)``) under its header."""
    tokens = sum(t.total_tokens for t in traces)
    costs = [t.total_cost for t in traces if t.total_cost is not None]
    head = Text.assemble(
        ("Session ", "bold"),
        (clean_line(session_id), "bold cyan"),
        f"  {len(traces)} turn{'s' * (len(traces) != 1)}",
        f"  {tokens} tokens" if tokens else "",
        (f"  {format_cost(sum(costs))}" if costs else "", "green"),
    )
    parts: list[RenderableType] = [head]
    if scores:
        parts.append(Text(f"scores {scores_text(scores)}", style="dim"))
    for number, trace in enumerate(sorted(traces, key=lambda t: t.timestamp), 1):
        title = Text.assemble(
            (f"── Turn {number}", "bold"),
            ("  ", ""),
            (format_time(trace.timestamp), "dim"),
            ("  ", ""),
            (format_duration(trace.latency), "cyan"),
            ("  ", ""),
            (status_text(trace), STATUS_STYLES.get(trace.shown_status, "")),
            (f"  {trace.total_tokens} tok" if trace.total_tokens else "", ""),
            ("  ", ""),
            (clean_line(trace.id), "dim"),
        )
        parts += [Text(""), title]  # wraps between fields: the trace id is never cut
        user = Text("user: ", style="bold cyan")
        user.append(clean(_said(trace.input)) if trace.input is not None else "(no input)")
        reply_text, style = _reply(trace)
        answer = Text("assistant: ", style="bold green")
        answer.append(clean(reply_text), style=style)
        parts += [user, answer]
    return Group(*parts)
