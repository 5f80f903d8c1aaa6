"""Options more than one command takes, declared once (``Annotated`` aliases).

The assertion options are shared by ``run`` and ``test``; they are grouped under one help panel.
"""

from __future__ import annotations

from typing import Annotated

import typer

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
RecursionLimitOption = Annotated[
    int | None,
    typer.Option(
        "--recursion-limit", metavar="N", min=1, help="LangGraph's step limit for the run.", rich_help_panel=RUN_PANEL
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
