"""Commands that read stored traces: ``show``, ``list`` (and the inspector commands to come).

They start without LangChain, the client or httpx (tests/test_cli.py proves it): the store and the renderer
are all they need; ``show --remote`` imports the Langfuse API client inside the command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import InputError, TraceNotFound
from ..model import LEVELS, Trace
from .app import app, console, load_trace, open_store, print_json, print_trace, resolve_settings, store_path


@app.command("show")
def show_command(
    trace_id: Annotated[str, typer.Argument(help="Trace id, unique prefix, 'last' or 'last~N'.")] = "last",
    json_out: Annotated[bool, typer.Option("--json", help="Print the trace JSON (Langfuse's trace shape).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show inputs and outputs in full.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=1, help="Show observations down to this depth.")] = None,
    observation: Annotated[
        str | None, typer.Option("--observation", help="Focus on one observation's subtree (id or prefix).")
    ] = None,
    remote: Annotated[
        bool, typer.Option("--remote", help="Read the trace from Langfuse instead of the local store.")
    ] = False,
    expand: Annotated[
        bool, typer.Option("--expand", help="Show every observation (repeated node sequences are folded by default).")
    ] = False,
    steps: Annotated[
        str | None,
        typer.Option("--steps", metavar="A..B", help="Only LangGraph steps A to B (also A.., ..B or one step N)."),
    ] = None,
) -> None:
    """Show one stored trace as a tree: every observation with type, name, duration and level; generations with model, tokens, cost and time to first token; errors in red.

    TRACE_ID is a full id, a unique prefix, 'last' (the default) or 'last~N' (the N-th run before the last).

    [bold]Example[/bold]

      lftrace show
      lftrace show 3f2a1b --depth 2
      lftrace show last~1
      lftrace show last --observation 9c1e --full
      lftrace show last --json | jq '.observations | length'
      lftrace show last --steps 100..120

    Long runs are folded: a repeated sequence of nodes shows its first and last round and one line such as `× 1,248  think -> critic` with the totals of the rounds in between; a level longer than a screen is cut in the middle. --expand shows everything; --steps A..B shows LangGraph steps A to B in full.

    With --remote the trace is read from Langfuse (LANGFUSE_* keys) instead of the local store: what the server stored, rendered the same way. TRACE_ID must then be a full id, or 'last' for the newest local trace's id. Exit 2 without keys, 4 when Langfuse has no such trace, 6 when it cannot be reached.

      lftrace show --remote last
    """
    trace = load_remote_trace(trace_id) if remote else load_trace(trace_id)
    if steps is not None:
        from ..fold import parse_steps, select_steps

        trace = select_steps(trace, *parse_steps(steps))
        expand = True  # a range asked for is shown in full
    if json_out:
        data = trace.to_dict()
        if observation is not None:
            data["observations"] = [o.to_dict() for o in _subtree(trace, observation)]
        print_json(data)
        return
    print_trace(trace, full=full, depth=depth, focus=observation, expand=expand)


def load_remote_trace(trace_id: str) -> Trace:
    """The trace as Langfuse stored it ('last' = the newest local trace's id); ConfigError/BackendError/TraceNotFound."""
    from .backend import fetch_remote_trace

    settings = resolve_settings()
    if trace_id == "last":
        trace_id = _last_local_trace_id()
    return fetch_remote_trace(settings, trace_id)


def _last_local_trace_id() -> str:
    store = open_store(read_only=True)
    try:
        last = store.last_trace_id()
    finally:
        store.close()
    if last is None:
        raise TraceNotFound(f"no traces in {store_path()} yet: give the Langfuse trace id to --remote")
    return last


def _subtree(trace: Trace, observation: str) -> list[Any]:
    from ..render import find_observation

    top = find_observation(trace, observation)
    kids = trace.children()
    found, todo = [], [top]
    while todo:
        obs = todo.pop()
        found.append(obs)
        todo.extend(reversed(kids.get(obs.id, [])))
    return found


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many traces.")] = 20,
    name: Annotated[str | None, typer.Option("--name", help="Only traces with this name.")] = None,
    level: Annotated[
        str | None, typer.Option("--level", help="Only traces whose worst level is this (e.g. ERROR).")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="Only traces of this session id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only traces of this user id.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only traces with this tag.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only traces newer than this (30s/15m/1h/2d/1w or a date).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
) -> None:
    """List stored traces, newest first: time, short id, name, duration, tokens, cost, status.

    Filters combine with AND. --since takes 30s, 15m, 1h, 2d, 1w or an ISO date.

    [bold]Example[/bold]

      lftrace list
      lftrace list --since 1h --level ERROR
      lftrace list --tag nightly --limit 5 --json
    """
    if level is not None:
        level = level.upper()
        if level not in LEVELS:
            raise InputError(f"--level '{level}' is not a level (use one of {', '.join(LEVELS)})")
    since_ns = None
    if since is not None:
        from ..client import parse_since  # the client (and its writer thread module) only when filtering by time

        since_ns = parse_since(since)
    path = store_path()
    summaries = []
    if path.exists():
        store = open_store(read_only=True)
        try:
            summaries = store.list_traces(
                limit=limit, name=name, level=level, session_id=session, user_id=user, tag=tag, since_ns=since_ns
            )
        finally:
            store.close()
    if json_out:
        print_json([s.to_dict() for s in summaries])
        return
    if not summaries:
        filtered = any(v is not None for v in (name, level, session, user, tag, since))
        message = (
            "No traces match these filters."
            if filtered and path.exists()
            else f'No traces yet in {path}. Record one with: lftrace run app.py:graph --input "hello"'
        )
        console().print(message, soft_wrap=True)
        return
    from ..render import render_trace_list

    console().print(render_trace_list(summaries))
