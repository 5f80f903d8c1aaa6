"""Options more than one command takes, declared once (``Annotated`` aliases).

The assertion options are shared by ``run`` and ``test``; they are grouped under one help panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InputError

if TYPE_CHECKING:
    from ..filters import TraceFilter

PANEL = "Assertions (exit 5 when one fails)"

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

# -- the assertion options, shared by `run` and `test` -----------------------------------------
ExpectOutputOption = Annotated[
    str | None,
    typer.Option("--expect-output", metavar="REGEX", help="The reply must match this regex.", rich_help_panel=PANEL),
]
ExpectNodeOption = Annotated[
    list[str] | None,
    typer.Option("--expect-node", metavar="NAME", help="This graph node must run (repeatable).", rich_help_panel=PANEL),
]
ExpectToolOption = Annotated[
    list[str] | None,
    typer.Option("--expect-tool", metavar="NAME", help="This tool must be called (repeatable).", rich_help_panel=PANEL),
]
MaxLatencyOption = Annotated[
    float | None,
    typer.Option(
        "--max-latency", metavar="SECONDS", min=0, help="Fail when the run takes longer.", rich_help_panel=PANEL
    ),
]
MaxTokensOption = Annotated[
    int | None,
    typer.Option(
        "--max-tokens", metavar="N", min=0, help="Fail above this many tokens in total.", rich_help_panel=PANEL
    ),
]
MaxCostOption = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        metavar="USD",
        min=0,
        help="Fail above this cost; fails too when a model's price is unknown.",
        rich_help_panel=PANEL,
    ),
]
MaxLlmCallsOption = Annotated[
    int | None,
    typer.Option("--max-llm-calls", metavar="N", min=0, help="Fail above this many LLM calls.", rich_help_panel=PANEL),
]
NoErrorsOption = Annotated[
    bool,
    typer.Option(
        "--no-errors", help="Fail on any ERROR observation, even one the graph recovered from.", rich_help_panel=PANEL
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        metavar="FILE|ID",
        help="Compare with a baseline trace (file or stored id; for `test`: a file or test run id).",
        rich_help_panel=PANEL,
    ),
]
ToleranceOption = Annotated[
    float,
    typer.Option(
        "--tolerance",
        metavar="F",
        min=0,
        help="Allowed baseline drift of tokens, latency, cost.",
        rich_help_panel=PANEL,
    ),
]

# -- the run options, shared by `run` and `test` ------------------------------------------------
RUN_PANEL = "Config and threads"
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="JSON|@FILE",
        help="RunnableConfig merged into the run's config (JSON, or @path to a JSON file).",
        rich_help_panel=RUN_PANEL,
    ),
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="JSON|@FILE",
        help="LangGraph runtime context (what nodes read as runtime.context; the graph's context_schema).",
        rich_help_panel=RUN_PANEL,
    ),
]
RecursionLimitOption = Annotated[
    int | None,
    typer.Option(
        "--recursion-limit", metavar="N", min=1, help="LangGraph's step limit for the run.", rich_help_panel=RUN_PANEL
    ),
]
DurabilityOption = Annotated[
    str | None,
    typer.Option(
        "--durability",
        metavar="async|sync|exit",
        help=(
            "When a graph that keeps checkpoints writes them (LangGraph's durability): after every step (async, "
            "LangGraph's default; sync waits for each write), or once when the run ends or pauses (exit)."
        ),
        rich_help_panel=RUN_PANEL,
    ),
]
SessionIdOption = Annotated[
    str | None,
    typer.Option(
        "--session-id", help="Langfuse session id (default: the LangGraph thread id).", rich_help_panel=RUN_PANEL
    ),
]
UserIdOption = Annotated[
    str | None, typer.Option("--user-id", help="Langfuse user id of the trace.", rich_help_panel=RUN_PANEL)
]
TagOption = Annotated[
    list[str] | None, typer.Option("--tag", help="Trace tag (repeatable).", rich_help_panel=RUN_PANEL)
]
MetadataOption = Annotated[
    list[str] | None,
    typer.Option("--metadata", metavar="KEY=VALUE", help="Run metadata (repeatable).", rich_help_panel=RUN_PANEL),
]
AsyncOption = Annotated[
    bool | None,
    typer.Option(
        "--async/--sync",
        help="Force ainvoke/astream or invoke/stream (default: async when a node is async-only).",
        show_default=False,
        rich_help_panel=RUN_PANEL,
    ),
]

# -- the trace filters, shared by `list`, `sessions`, `stats` and `export` ---------------------------
FILTERS = "Filters (combine with AND)"

NameFilter = Annotated[str | None, typer.Option("--name", help="Only traces with this name.", rich_help_panel=FILTERS)]
StatusFilter = Annotated[
    str | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help=(
            "ok, error, interrupted, cancelled, running, incomplete (never ended: its process is gone), or "
            "handled (finished ok after an error it handled)."
        ),
        rich_help_panel=FILTERS,
    ),
]
LevelFilter = Annotated[
    str | None,
    typer.Option(
        "--level",
        help="The trace's worst level (DEBUG, DEFAULT, WARNING, ERROR) or a status (as --status).",
        rich_help_panel=FILTERS,
    ),
]
ModelFilter = Annotated[
    str | None, typer.Option("--model", help="Only traces with a generation of this model.", rich_help_panel=FILTERS)
]
TagFilter = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Only traces with this tag (repeatable: all of them).", rich_help_panel=FILTERS),
]
UserFilter = Annotated[str | None, typer.Option("--user", help="Only traces of this user id.", rich_help_panel=FILTERS)]
SessionFilter = Annotated[
    str | None, typer.Option("--session", help="Only traces of this session id.", rich_help_panel=FILTERS)
]
SinceFilter = Annotated[
    str | None,
    typer.Option("--since", help="Started after this: 30s, 15m, 1h, 2d, 1w ago, or a date.", rich_help_panel=FILTERS),
]
UntilFilter = Annotated[
    str | None,
    typer.Option("--until", help="Started before this: 30s, 15m, 1h, 2d, 1w ago, or a date.", rich_help_panel=FILTERS),
]
MinLatencyFilter = Annotated[
    float | None,
    typer.Option("--min-latency", metavar="SECONDS", min=0, help="Took at least this long.", rich_help_panel=FILTERS),
]
MinTokensFilter = Annotated[
    int | None,
    typer.Option("--min-tokens", metavar="N", min=0, help="Used at least N tokens.", rich_help_panel=FILTERS),
]
MinCostFilter = Annotated[
    float | None,
    typer.Option("--min-cost", metavar="USD", min=0, help="Cost at least this much.", rich_help_panel=FILTERS),
]
SearchFilter = Annotated[
    str | None,
    typer.Option(
        "--search",
        "-s",
        metavar="TEXT",
        help="Words in the input, output or error messages (each word, or the start of one).",
        rich_help_panel=FILTERS,
    ),
]


def trace_filter(
    *,
    name: str | None = None,
    status: str | None = None,
    level: str | None = None,
    model: str | None = None,
    tags: list[str] | None = None,
    user: str | None = None,
    session: str | None = None,
    since: str | None = None,
    until: str | None = None,
    min_latency: float | None = None,
    min_tokens: int | None = None,
    min_cost: float | None = None,
    search: str | None = None,
) -> TraceFilter:
    """The filter options of a command -> one ``TraceFilter`` (bad values: InputError, exit 2)."""
    from ..filters import TraceFilter, legacy_level

    try:
        only_level, level_status = legacy_level(level)
    except InputError:
        raise InputError(
            f"--level '{(level or '').upper()}' is not a level (use one of DEBUG, DEFAULT, WARNING, ERROR) "
            "or a status (see --status)"
        ) from None
    if status is not None and level_status is not None and status.lower() != level_status:
        raise InputError(f"--status {status} and --level {level} ask for two statuses: give one")
    return TraceFilter(
        name=name,
        status=(status or level_status),
        level=only_level,
        model=model,
        tags=tuple(tags or ()),
        user_id=user,
        session_id=session,
        since_ns=_time(since, "--since"),
        until_ns=_time(until, "--until"),
        min_latency=min_latency,
        min_tokens=min_tokens,
        min_cost=min_cost,
        search=search,
    )


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    from ..client import parse_since  # the one parser of relative times; only imported when filtering by time

    try:
        return parse_since(value)
    except InputError:
        raise InputError(
            f"{option} '{value}' is not a duration or date (use e.g. 30m, 1h, 2d, 1w or 2026-11-26)"
        ) from None
