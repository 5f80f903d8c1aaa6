"""Commands that read stored traces: ``show``, ``list``, ``sessions``, ``tail``.

They start without LangChain, the client or httpx (tests/test_cli.py proves it): the store and the renderer
are all they need; ``show --remote`` imports the Langfuse API client inside the command.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ExitStatus, InputError, TraceNotFound
from ..model import Trace
from ..sanitize import clean_line
from .app import (
    app,
    console,
    err_console,
    open_store,
    print_json,
    print_json_chunks,
    print_trace,
    resolve_settings,
    resolve_trace_ref,
    stdout_takes_utf8,
    store_path,
)
from .options import (
    LevelFilter,
    MinCostFilter,
    MinLatencyFilter,
    MinTokensFilter,
    ModelFilter,
    NameFilter,
    SearchFilter,
    SessionFilter,
    SinceFilter,
    StatusFilter,
    TagFilter,
    UntilFilter,
    UserFilter,
    trace_filter,
)

if TYPE_CHECKING:
    from ..render import Table
    from ..store import TraceStore


@app.command("show")
def show_command(
    trace_id: Annotated[str, typer.Argument(help="Trace id, unique prefix, 'last' or 'last~N'.")] = "last",
    observation_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[OBSERVATION]",
            help="Show this observation in full: an id, a unique prefix, or a node name ('agent', 'agent#2').",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the trace JSON (Langfuse's trace shape).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show inputs and outputs in full.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=1, help="Show observations down to this depth.")] = None,
    observation: Annotated[
        str | None, typer.Option("--observation", help="Focus on one observation's subtree (id or prefix).")
    ] = None,
    timeline: Annotated[
        bool, typer.Option("--timeline", "-t", help="A waterfall: every observation on a time axis, bars to scale.")
    ] = False,
    session: Annotated[
        str | None, typer.Option("--session", help="Show a whole session (thread) as a conversation, turn by turn.")
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
    """Show one stored trace: its context (start time, target, session, user, tags, where it was delivered) and its tree, every observation with type, name, LangGraph step, duration and level; generations with model, tokens, cost and time to first token; routing functions as ROUTE; errors in red.

    TRACE_ID is a full id, a unique prefix, 'last' (the default) or 'last~N' (the N-th run before the last). A second argument shows one observation in full (input and output whole, messages as a transcript, metadata, model parameters, usage and cost broken down, error type and traceback): its id, a prefix, or a node name with #N for its N-th run. --timeline draws a waterfall instead of the tree; --session shows every trace of a session as a conversation.

    [bold]Example[/bold]

      lftrace show
      lftrace show 3f2a1b --depth 2
      lftrace show last --timeline
      lftrace show last agent#2
      lftrace show last --session thread-7
      lftrace show last --observation 9c1e --full
      lftrace show last --json | jq '.observations | length'
      lftrace show last --steps 100..120

    Long runs are folded: a repeated sequence of nodes shows its first and last round and one line such as `× 1,248  think -> critic` with the totals of the rounds in between; a level longer than a screen is cut in the middle. --expand shows everything; --steps A..B shows LangGraph steps A to B in full.

    With --remote the trace is read from Langfuse (LANGFUSE_* keys) instead of the local store: what the server stored, rendered the same way. TRACE_ID must then be a full id, or 'last'/'last~N' for that local trace's id. Exit 2 without keys, 4 when Langfuse has no such trace, 6 when it cannot be reached.

      lftrace show --remote last
    """
    if session is not None:
        _show_session(session, json_out=json_out)
        return
    if json_out and not remote and observation_ref is None and steps is None and observation is None:
        print_stored_json(trace_id)
        return
    if remote:
        _show_trace(load_remote_trace(trace_id), None, observation_ref, json_out=json_out, full=full, depth=depth,
                    observation=observation, timeline=timeline, expand=expand, steps=steps)  # fmt: skip
        return
    store = open_store(read_only=True)
    try:
        # JSON of the whole trace needs every input; the rest prints a few: read without, fill in those shown
        lazy = not json_out or observation_ref is not None
        trace = store.get_trace(resolve_trace_ref(trace_id, store), inputs=not lazy)
        _show_trace(trace, store if lazy else None, observation_ref, json_out=json_out, full=full, depth=depth,
                    observation=observation, timeline=timeline, expand=expand, steps=steps)  # fmt: skip
    finally:
        store.close()


def _show_trace(
    trace: Trace,
    inputs_from: TraceStore | None,
    observation_ref: str | None,
    *,
    json_out: bool,
    full: bool,
    depth: int | None,
    observation: str | None,
    timeline: bool,
    expand: bool,
    steps: str | None,
) -> None:
    """``show`` of one trace; ``inputs_from``: the store it was read from without its observations' inputs."""
    delivered = _delivered(inputs_from, trace.id) if inputs_from is not None and not json_out else []
    if observation_ref is not None:
        from ..render import find_observation

        chosen = find_observation(trace, observation_ref)
        if inputs_from is not None:
            inputs_from.load_inputs([chosen])
        if json_out:
            print_json(chosen.to_dict())
            return
        from ..detail import render_observation

        console().print(render_observation(trace, chosen))
        return
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
    if timeline:
        from ..timeline import build_timeline

        console().print(build_timeline(trace, depth=depth, delivered=delivered, expand=expand), crop=False)
        return
    from ..render import render_trace

    load_inputs = inputs_from.load_inputs if inputs_from is not None else None
    # rows are already cut to the width, so rich's own cropping pass (slow on 5,000 rows) is skipped
    console().print(
        render_trace(
            trace, full=full, depth=depth, focus=observation, delivered=delivered, expand=expand,
            load_inputs=load_inputs,
        ),
        crop=False,
    )  # fmt: skip


def print_stored_json(ref: str) -> None:
    """``show --json``: the trace streamed from the store observation by observation (jsonout.py), so a
    20,000-observation trace is written in bounded memory and in time linear in its size."""
    from ..jsonout import stored_trace_chunks

    store = open_store(read_only=True)
    try:
        wanted = resolve_trace_ref(ref, store)
        if not wanted.strip():  # a blank id written by another tool: read whole, as get_trace does
            print_json(store.get_trace(wanted).to_dict())
            return
        trace_id = store.resolve_id(wanted)
        chunks = stored_trace_chunks(store, trace_id, ascii_only=not stdout_takes_utf8())
        if chunks is None:  # deleted since
            raise TraceNotFound(f"no trace '{clean_line(wanted)}' in {store_path()} (see `lftrace list`)")
        print_json_chunks(chunks)
    finally:
        store.close()


def _delivered(store: TraceStore, trace_id: str) -> list[str]:
    """Where a trace was delivered: its Langfuse URL (project id cached by an earlier export), or the endpoint."""
    places = []
    for destination, status in store.delivery_state(trace_id).items():
        if status != "delivered":
            continue
        kind, _, where = destination.partition(":")
        if kind == "langfuse":
            host = where.rstrip("/")
            project = next(
                (value for key, value in store.get_meta_prefixed(f"langfuse.project_id:{where}:") if value),
                None,
            )
            places.append(f"{host}/project/{project}/traces/{trace_id}" if project else f"{host}/trace/{trace_id}")
        else:
            places.append(f"{kind} {where}")
    return places


def _show_session(session: str, *, json_out: bool) -> None:
    from ..filters import TraceFilter

    store = open_store(read_only=True)
    try:
        traces = list(store.iter_traces(where=TraceFilter(session_id=session)))
        scores = store.session_scores(session)
    finally:
        store.close()
    if not traces and not scores:
        raise TraceNotFound(f"no traces of session '{clean_line(session)}' in {store_path()} (see `lftrace sessions`)")
    if json_out:  # the session's traces; its own scores are in `lftrace sessions --json`
        print_json([t.to_dict() for t in traces])
        return
    from ..conversation import render_conversation

    console().print(render_conversation(session, traces, scores))


def load_remote_trace(trace_id: str) -> Trace:
    """The trace as Langfuse stored it (``last``/``last~N``: that local trace's id); ConfigError/BackendError/TraceNotFound."""
    from .backend import fetch_remote_trace

    settings = resolve_settings()
    if trace_id == "last" or trace_id.startswith("last~"):
        store = open_store(read_only=True)
        try:
            trace_id = resolve_trace_ref(trace_id, store)
        finally:
            store.close()
    return fetch_remote_trace(settings, trace_id)


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


def print_table(table: Table) -> None:
    """A table on a terminal; tab-separated values with a header when stdout is not one (for scripts)."""
    if sys.stdout.isatty():
        console().print(table)
    else:
        sys.stdout.write(table.tsv())
        sys.stdout.flush()


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many traces.")] = 20,
    name: NameFilter = None,
    status: StatusFilter = None,
    level: LevelFilter = None,
    model: ModelFilter = None,
    tag: TagFilter = None,
    user: UserFilter = None,
    session: SessionFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    min_latency: MinLatencyFilter = None,
    min_tokens: MinTokensFilter = None,
    min_cost: MinCostFilter = None,
    search: SearchFilter = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
) -> None:
    """List stored traces, newest first: time, short id, name, duration, tokens, cost, status (and session, user and tags when there are any).

    Filters combine with AND. --search looks for words in the inputs, outputs and error messages (full-text). --since/--until take 30s, 15m, 1h, 2d, 1w (ago) or an ISO date. When stdout is not a terminal the table is printed as tab-separated values with a header (full ids, plain numbers).

    [bold]Example[/bold]

      lftrace list
      lftrace list --search "weather oslo"
      lftrace list --since 1h --status error
      lftrace list --model gpt-4o-mini --min-cost 0.01
      lftrace list --tag nightly --limit 5 --json
    """
    where = trace_filter(
        name=name, status=status, level=level, model=model, tags=tag, user=user, session=session, since=since,
        until=until, min_latency=min_latency, min_tokens=min_tokens, min_cost=min_cost, search=search,
    )  # fmt: skip
    path = store_path()
    summaries = []
    if path.exists():
        store = open_store(read_only=True)
        try:
            summaries = store.list_traces(limit=limit, where=where)
        finally:
            store.close()
    if json_out:
        print_json([s.to_dict() for s in summaries])
        return
    if not summaries:
        message = (
            "No traces match these filters."
            if where.active and path.exists()
            else f'No traces yet in {path}. Record one with: lftrace run app.py:graph --input "hello"'
        )
        console().print(message, soft_wrap=True)
        return
    from ..render import render_trace_list

    print_table(render_trace_list(summaries))


@app.command("sessions")
def sessions_command(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many sessions.")] = 20,
    user: UserFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    tag: TagFilter = None,
    search: SearchFilter = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the sessions as JSON.")] = False,
) -> None:
    """List sessions (LangGraph threads), the most recently active first: traces, first and last time, tokens, cost, status.

    A session groups the traces run with the same session id (--session-id, langfuse_session_id, or a LangGraph thread id). Filters choose which traces count. Show one as a conversation with [bold]lftrace show --session ID[/bold].

    [bold]Example[/bold]

      lftrace sessions
      lftrace sessions --since 1d --user ada
      lftrace sessions --json
    """
    where = trace_filter(user=user, since=since, until=until, tags=tag, search=search)
    path = store_path()
    sessions = []
    if path.exists():
        store = open_store(read_only=True)
        try:
            sessions = store.list_sessions(limit=limit, where=where)
            for summary in sessions:
                summary.scores = store.session_scores(summary.id)
        finally:
            store.close()
    if json_out:
        print_json([s.to_dict() for s in sessions])
        return
    if not sessions:
        console().print(
            "No sessions match these filters."
            if where.active
            else "No sessions yet: run with --session-id ID (or a LangGraph thread id) to group traces into one.",
            soft_wrap=True,
        )
        return
    from ..conversation import render_session_list

    print_table(render_session_list(sessions))


@app.command("tail")
def tail_command(
    tree: Annotated[bool, typer.Option("--tree", help="Print each trace's tree, not one line.")] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-c", min=1, help="Stop after this many traces (default: never).")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between looks at the store.")] = 0.5,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON summary per line (JSONL).")] = False,
) -> None:
    """Follow the store: print each trace other processes write into it, one line each as it finishes (Ctrl-C stops).

    Only traces written after tail starts are shown, and runs going on when it starts; a trace written while its run is still going is printed once it has finished (or, killed midway, as incomplete). --tree prints each trace's tree instead of one line.

    [bold]Example[/bold]

      lftrace tail
      lftrace tail --tree
      lftrace tail --json | jq .name
    """
    import time

    from ..live import follow, tail_line

    path = store_path()
    while not path.exists():  # nothing written yet: wait for the first trace
        time.sleep(interval)
    store = open_store(read_only=True)
    shown = 0
    try:
        start = store.latest_position()
        # runs going on now (a long run's trace is stored from its first part): shown once they finish, too
        running = [summary.id for summary in store.list_traces(limit=None, status="running")]
        if sys.stderr.isatty():  # says it is listening (and from when): traces written from now on are shown
            err_console().print(f"following {clean_line(str(path))} (Ctrl-C stops)", style="dim", soft_wrap=True)
        for summary in follow(store.changes_since, start, interval=interval, running=running):
            if json_out:
                sys.stdout.write(json.dumps(summary.to_dict(), ensure_ascii=False) + "\n")
                sys.stdout.flush()
            elif tree:
                # a long run prints a few inputs: read without them, fill in those shown
                print_trace(store.get_trace(summary.id, inputs=False), footer=False, load_inputs=store.load_inputs)
                console().print()
            else:
                console().print(tail_line(summary), soft_wrap=False, overflow="ellipsis", no_wrap=True)
            shown += 1
            if count is not None and shown >= count:
                return
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
    finally:
        store.close()


@app.command("media")
def media_command(
    media_ref: Annotated[
        str, typer.Argument(help="A media id, or a whole reference string (@@@langfuseMedia:...|id=ID|...@@@).")
    ],
    out: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write the media's bytes to this file ('-': to stdout, for a pipe)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Show an image, audio clip or file a trace refers to, or write it to a file.

    Inputs and outputs hold media as references (@@@langfuseMedia:type=image/png|id=ID|...@@@); the store keeps
    the bytes once. Without --output: the type, the size and where it appears.

    [bold]Example[/bold]

      lftrace media 46D9Sf5Qssd4pj227Jcr3d
      lftrace media 46D9Sf5Qssd4pj227Jcr3d -o screenshot.png
    """
    from ..media import REFERENCE_PREFIX, LangfuseMedia

    media_id = media_ref.strip()
    if media_id.startswith(REFERENCE_PREFIX):
        try:
            media_id = LangfuseMedia.parse_reference_string(media_id)["media_id"]
        except ValueError as exc:
            raise InputError(f"not a media reference: {exc}") from None
    store = open_store()
    try:
        record = store.media_record(media_id)
        places = store.media_places(media_id) if record is not None else []
        found = store.media(media_id) if record is not None and out is not None else None
    finally:
        store.close()
    if record is None:
        raise TraceNotFound(
            f"no media '{clean_line(media_id)}' in {store_path()} (its id is the id= of a reference string)"
        )
    if out is not None:
        if found is None:
            raise TraceNotFound(f"media '{media_id}' was announced but its bytes never arrived in {store_path()}")
        content, kind = found
        if out == "-":
            sys.stdout.buffer.write(content)
            sys.stdout.flush()
            return
        try:
            with open(out, "wb") as fh:
                fh.write(content)
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
        err_console().print(f"wrote {len(content):,} bytes ({clean_line(kind)}) to {clean_line(out)}", highlight=False)
        return
    if json_out:
        print_json(
            {
                "id": media_id,
                "contentType": record["content_type"],
                "size": record["size"],
                "sha256": record["sha256"],
                "stored": bool(record["content"]),
                "places": [
                    {"traceId": p["trace_id"], "observationId": p["observation_id"],
                     "datasetItemId": p["dataset_item_id"], "field": p["field"]}
                    for p in places
                ],
            }
        )  # fmt: skip
        return
    stored = "" if record["content"] else "  (bytes never uploaded)"
    console().print(
        f"{clean_line(record['content_type'])}  {record['size']:,} bytes  {media_id}{stored}", highlight=False
    )
    for p in places:
        owner = f"trace {p['trace_id']}" if p["trace_id"] else f"dataset item {p['dataset_item_id']}"
        where = f" observation {p['observation_id']}" if p["observation_id"] else ""
        console().print(f"  in {clean_line(owner)}{clean_line(where)} {clean_line(p['field'] or '')}", highlight=False)
    console().print(f"write it: lftrace media {media_id} -o FILE", highlight=False)
