"""The ``lftrace`` command: run, show, list (+ the commands of cli_export.py and cli_ci.py).

Thin on purpose: parse options, call the core, print. LangChain/LangGraph are imported inside ``run`` only,
so ``show``/``list``/``--help`` start fast (tests/test_cli.py proves ``import lftrace.cli`` pulls in neither).

Errors: every ``LftraceError`` becomes one ``error: ...`` line on stderr and its exit code in one place,
``LftraceGroup.invoke`` (``main()`` and typer's CliRunner both go through it); anything unexpected is one line
plus a hint, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from . import __version__, cli_ci
from .config import STORE, default_store_path
from .errors import ExitStatus, InputError, LftraceError, TraceNotFound
from .model import LEVELS, Trace

if TYPE_CHECKING:
    from .runner import RunResult
    from .store import TraceStore


@dataclass
class _State:
    debug: bool = False
    store: Path | None = None
    stdout: Console | None = None
    stderr: Console | None = None


_state = _State()

# typer re-exports Exit/Abort; ClickException is found through BadParameter so this works with vendored or real click
_CLICK_ERRORS: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


class LftraceGroup(TyperGroup):
    """The one place that turns exceptions into a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_ERRORS:
            raise
        except BrokenPipeError:
            raise  # `lftrace show --json | head`: click exits quietly, as other CLIs do
        except LftraceError as err:
            if _state.debug and err.__cause__ is not None:
                traceback.print_exception(err.__cause__, file=sys.stderr)
            _print_error(f"error: {err}")
            raise typer.Exit(int(err.exit_code)) from None
        except Exception as err:
            if _state.debug:
                traceback.print_exception(err, file=sys.stderr)
            detail = str(err).splitlines()[0] if str(err) else ""
            _print_error(
                f"error: unexpected {type(err).__name__}{': ' + detail if detail else ''} (run with --debug for the traceback)"
            )
            raise typer.Exit(int(ExitStatus.TARGET_FAILED)) from None


def _print_error(line: str) -> None:
    err_console().print(Text(line, style="red"), soft_wrap=True)


app = typer.Typer(
    cls=LftraceGroup,
    name="lftrace",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Langfuse-style tracing for LangChain and LangGraph, from the command line.\n\n"
        "Run a graph or chain with tracing on, then look at its trace tree; traces are kept in a local SQLite "
        "store (--store / LFTRACE_STORE) and exported to Langfuse when LANGFUSE_* keys are set.\n\n"
        "[bold]Example[/bold]\n\n"
        '  lftrace run app.py:graph --input "What is Langfuse?"\n'
        "  lftrace show last\n"
        "  lftrace list --since 1h"
    ),
)


# ---------------------------------------------------------------- helpers other command modules reuse


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def console() -> Console:
    """The stdout console of this invocation (plain text when piped or NO_COLOR is set)."""
    if _state.stdout is None:
        _state.stdout = Console(highlight=False, color_system=None if _no_color() else "auto")
    return _state.stdout


def err_console() -> Console:
    if _state.stderr is None:
        _state.stderr = Console(stderr=True, highlight=False, color_system=None if _no_color() else "auto")
    return _state.stderr


def store_path() -> Path:
    """--store, else LFTRACE_STORE (environment or .env), else the user data dir."""
    if _state.store is not None:
        return _state.store
    env = os.environ.get(STORE)
    return Path(env).expanduser() if env else default_store_path()


def open_store(read_only: bool) -> TraceStore:
    """The trace store; ``read_only`` never creates the file (a missing store is StoreError, exit 7)."""
    from .store import TraceStore

    return TraceStore(store_path(), create=not read_only)


def print_trace(
    trace: Trace,
    full: bool = False,
    depth: int | None = None,
    focus: str | None = None,
    *,
    footer: bool = True,
    out: Console | None = None,
) -> None:
    from .render import render_trace

    # rows are already cut to the width, so rich's own cropping pass (slow on 5,000 rows) is skipped
    (out or console()).print(render_trace(trace, full=full, depth=depth, focus=focus, footer=footer), crop=False)


def print_json(value: Any) -> None:
    """JSON on stdout, untouched by rich (no wrapping, no colour): safe to pipe into jq."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- global options


def _show_version(value: bool) -> None:
    if value:
        console().print(f"lftrace {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    store: Path | None = typer.Option(
        None, "--store", envvar=STORE, help="Trace store (SQLite file). Default: the user data dir.", show_default=False
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state.debug = debug
    _state.stdout = _state.stderr = None  # consoles bind to this invocation's streams
    _state.store = store.expanduser() if store is not None else None
    if _state.store is not None and os.environ.get(STORE) != str(_state.store):
        # the client (and a get_client() inside the user's code) must write where we will read;
        # restored afterwards so an in-process caller (tests, `lftrace test`) keeps its own setting
        previous = os.environ.get(STORE)
        os.environ[STORE] = str(_state.store)
        ctx.call_on_close(lambda: _restore_env(STORE, previous))
    if debug:
        _enable_debug()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _enable_debug() -> None:
    _state.debug = True
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("lftrace").setLevel(logging.DEBUG)


# ---------------------------------------------------------------- run


class _Spinner:
    """A live status line on stderr: phase, elapsed time and observations so far."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.phase = "loading"
        self.handler: Any = None
        self.started = time.monotonic()
        self._status: Any = None

    def __rich__(self) -> Text:
        from .runner import span_count

        elapsed = time.monotonic() - self.started
        text = Text.assemble((f"{self.phase} ", "bold"), (self.target, "cyan"), f"  {elapsed:.1f}s")
        count = span_count(self.handler) if self.handler is not None else None
        if count is not None:
            text.append(f"  {count} span{'s' * (count != 1)}", style="dim")
        return text

    def event(self, event: str, payload: Any) -> None:
        if event in ("running", "finishing"):
            self.handler = payload
            self.phase = "running" if event == "running" else "saving trace"

    def __enter__(self) -> _Spinner:
        self._status = err_console().status(self, spinner="dots")
        self._status.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._status.stop()


def _chunk_text(chunk: Any) -> str | None:
    """The text of a streamed chain chunk (a message chunk's content or a string); None for structured chunks."""
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return None


class _LivePrinter:
    """--stream: graph updates as one line per node, chain tokens as they arrive."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.mid_line = False

    def __call__(self, kind: str, chunk: Any) -> None:
        from .render import preview
        from .serialize import to_jsonable

        if kind == "chunk":
            text = _chunk_text(chunk)
            if text is not None:
                self.out.file.write(text)
                self.out.file.flush()
                self.mid_line = not text.endswith("\n") if text else self.mid_line
                return
            self.end_line()
            self.out.print(Text(preview(to_jsonable(chunk))), crop=True, overflow="ellipsis", no_wrap=True)
            return
        self.end_line()
        updates = chunk if isinstance(chunk, dict) else {"update": chunk}
        for node, update in updates.items():
            line = Text.assemble(("▸ ", "dim"), (str(node), "bold cyan"), ": ", preview(to_jsonable(update)))
            self.out.print(line, crop=True, overflow="ellipsis", no_wrap=True)

    def end_line(self) -> None:
        if self.mid_line:
            self.out.file.write("\n")
            self.mid_line = False


@app.command(
    "run",
    help=(
        "Run a LangGraph graph or LangChain runnable with tracing on, then show its trace tree.\n\n"
        "TARGET is [bold]module:attr[/bold] (importable from the current directory) or [bold]path/to/file.py:attr[/bold]; "
        "the attribute is a compiled graph, any Runnable, or a zero-argument factory returning one.\n\n"
        "Input is JSON if it parses, otherwise text: text goes in as a user message for graphs with a "
        "'messages' channel, as the one required field of a chain, or as is.\n\n"
        "When LANGFUSE_* keys (or OTEL_EXPORTER_OTLP_ENDPOINT) are set, the trace is exported before the command "
        "ends and its last line says where it went: the Langfuse URL of the trace, or 'queued: N traces pending "
        "(reason)' when the backend could not be reached. A queued trace is kept in the store and does not "
        "change the exit code (the run itself succeeded): send it later with [bold]lftrace push[/bold].\n\n"
        "Exit codes: 0 ok (also when export is queued), 1 the target raised (trace saved), 2 bad input, "
        "3 target not loadable, 5 an assertion failed, 130 Ctrl-C (partial trace saved).\n\n"
        "[bold]Example[/bold]\n\n"
        '  lftrace run app.py:graph --input "What is Langfuse?"\n'
        '  lftrace run chains.jokes:chain --input \'{"topic": "cats"}\' --stream\n'
        "  echo 'hello' | lftrace run app.py:graph --input-file - --json > trace.json"
    ),
)
def run_command(
    target: str = typer.Argument(..., help="module:attr or path/to/file.py:attr", show_default=False),
    input: str | None = typer.Option(None, "--input", "-i", help="Input: JSON if it parses, otherwise text."),
    input_file: str | None = typer.Option(None, "--input-file", help="Read the input from a file ('-' for stdin)."),
    stream: bool = typer.Option(False, "--stream", help="Show output live (graph updates, chain tokens)."),
    use_async: bool = typer.Option(False, "--async", help="Run with ainvoke/astream."),
    config: str | None = typer.Option(None, "--config", help="RunnableConfig JSON merged into the run's config."),
    session_id: str | None = typer.Option(None, "--session-id", help="Langfuse session id of the trace."),
    user_id: str | None = typer.Option(None, "--user-id", help="Langfuse user id of the trace."),
    tag: list[str] = typer.Option([], "--tag", help="Trace tag (repeatable)."),
    name: str | None = typer.Option(None, "--name", help="Trace name (default: the root run's name)."),
    json_out: bool = typer.Option(False, "--json", help="Print only the trace JSON."),
    full: bool = typer.Option(False, "--full", help="Show inputs and outputs of every observation in full."),
    debug: bool = typer.Option(False, "--debug", help="Show the target's traceback when it raises."),
    expect_output: cli_ci.ExpectOutputOption = None,
    expect_node: cli_ci.ExpectNodeOption = None,
    expect_tool: cli_ci.ExpectToolOption = None,
    max_latency: cli_ci.MaxLatencyOption = None,
    max_tokens: cli_ci.MaxTokensOption = None,
    max_cost: cli_ci.MaxCostOption = None,
    max_llm_calls: cli_ci.MaxLlmCallsOption = None,
    no_errors: cli_ci.NoErrorsOption = False,
    baseline: cli_ci.BaselineOption = None,
    tolerance: cli_ci.ToleranceOption = 0.25,
) -> None:
    if debug:
        _enable_debug()
    expectations = cli_ci.expectations_from_options(
        expect_output, expect_node, expect_tool, max_latency, max_tokens, max_cost, max_llm_calls, no_errors
    )
    baseline_trace = cli_ci.load_baseline(baseline) if baseline else None  # before the run: `last` is the previous one
    out = console()
    live = stream and not json_out
    show_spinner = not json_out and not stream and sys.stdout.isatty() and sys.stderr.isatty()
    spinner = _Spinner(target) if show_spinner else None
    printer = _LivePrinter(out) if live else None

    def progress(event: str, payload: Any) -> None:
        if spinner is not None:
            spinner.event(event, payload)
        if printer is not None and event == "chunk":
            printer(*payload)

    from .runner import execute  # LangChain is imported here, never at `lftrace list`/`show` start

    with spinner if spinner is not None else contextlib.nullcontext():
        result = execute(
            target,
            input,
            input_file=input_file,
            stream=stream,
            use_async=use_async,
            config=config,
            session_id=session_id,
            user_id=user_id,
            tags=tag,
            name=name,
            progress=progress,
        )
    if printer is not None:
        printer.end_line()
        out.print()
    report_run(result, json_out=json_out, full=full)
    cli_ci.enforce_run_assertions(
        result.trace, result.output, expectations, baseline=baseline_trace, tolerance=tolerance
    )


def report_run(result: RunResult, *, json_out: bool = False, full: bool = False) -> None:
    """Print what a run produced and raise the matching LftraceError (exit 1 / 130) when it did not succeed."""
    for note in result.notes:
        err_console().print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    if json_out:
        print_json(result.trace.to_dict() if result.trace is not None else None)
    elif result.trace is not None:
        print_trace(result.trace, full=full)
    else:
        _print_raw_output(result.output)
    _print_destination(result, json_out=json_out)
    if result.interrupted:
        saved = f"partial trace saved: {result.trace.id}" if result.trace is not None else "no trace saved"
        raise LftraceError(f"interrupted (Ctrl-C); {saved}", exit_code=ExitStatus.INTERRUPTED)
    if result.error is not None:
        if _state.debug:
            traceback.print_exception(result.error, file=sys.stderr)
        detail = str(result.error).splitlines()[0] if str(result.error) else ""
        where = f" (trace {result.trace.id} saved)" if result.trace is not None else ""
        raise LftraceError(
            f"{result.target} raised {type(result.error).__name__}{': ' + detail if detail else ''}{where}",
            exit_code=ExitStatus.TARGET_FAILED,
        )


def _print_destination(result: RunResult, *, json_out: bool) -> None:
    """Where the trace went (the run has flushed): Langfuse URL, 'sent to ...', or 'queued: ...'; stderr for --json.

    A trace that could not be delivered stays queued in the store and does not change the exit code.
    """
    if result.trace is None:
        return
    from .client import get_client

    client = get_client()
    settings = client.settings
    if not (settings.langfuse_enabled or settings.otlp_endpoint):
        return  # local only: nothing to say, and nothing more to import
    from .cli_export import describe_destination_result

    try:
        lines = describe_destination_result(settings, client.store, result.trace.id, client.last_delivery)
    except LftraceError as err:
        lines = [f"export state unknown: {err}"]
    out = err_console() if json_out else console()
    for line in lines:
        out.print(Text(line, style="yellow" if line.startswith(("queued", "export")) else ""), soft_wrap=True)


def _print_raw_output(output: Any) -> None:
    if output is None:
        return
    from .render import pretty, readable
    from .serialize import to_jsonable

    console().print(Text("Output:", style="bold"))
    console().print(Text(pretty(readable(to_jsonable(output)))))


# ---------------------------------------------------------------- show


@app.command(
    "show",
    help=(
        "Show one stored trace as a tree: every observation with type, name, duration and level; generations "
        "with model, tokens, cost and time to first token; errors in red.\n\n"
        "TRACE_ID is a full id, a unique prefix, or 'last' (the default).\n\n"
        "[bold]Example[/bold]\n\n"
        "  lftrace show\n"
        "  lftrace show 3f2a1b --depth 2\n"
        "  lftrace show last --observation 9c1e --full\n"
        "  lftrace show last --json | jq '.observations | length'\n\n"
        "With --remote the trace is read from Langfuse (LANGFUSE_* keys) instead of the local store: what the "
        "server stored, rendered the same way. TRACE_ID must then be a full id, or 'last' for the newest local "
        "trace's id. Exit 2 without keys, 4 when Langfuse has no such trace, 6 when it cannot be reached.\n\n"
        "  lftrace show --remote last"
    ),
)
def show_command(
    trace_id: str = typer.Argument("last", help="Trace id, unique prefix, or 'last'."),
    json_out: bool = typer.Option(False, "--json", help="Print the trace JSON (Langfuse's trace shape)."),
    full: bool = typer.Option(False, "--full", help="Show inputs and outputs in full."),
    depth: int | None = typer.Option(None, "--depth", min=1, help="Show observations down to this depth."),
    observation: str | None = typer.Option(
        None, "--observation", help="Focus on one observation's subtree (id or prefix)."
    ),
    remote: bool = typer.Option(False, "--remote", help="Read the trace from Langfuse instead of the local store."),
) -> None:
    trace = load_remote_trace(trace_id) if remote else load_trace(trace_id)
    if json_out:
        data = trace.to_dict()
        if observation is not None:
            data["observations"] = [o.to_dict() for o in _subtree(trace, observation)]
        print_json(data)
        return
    print_trace(trace, full=full, depth=depth, focus=observation)


def load_trace(trace_id: str) -> Trace:
    """A stored trace by id, unique prefix or 'last' (TraceNotFound exit 4, StoreError exit 7)."""
    store = open_store(read_only=True)
    try:
        if trace_id == "last":
            last = store.last_trace_id()
            if last is None:
                raise TraceNotFound(
                    f"no traces in {store_path()} yet (record one with `lftrace run app.py:graph -i hi`)"
                )
            trace_id = last
        return store.get_trace(trace_id)
    finally:
        store.close()


def load_remote_trace(trace_id: str) -> Trace:
    """The trace as Langfuse stored it ('last' = the newest local trace's id); ConfigError/BackendError/TraceNotFound."""
    from .cli_export import fetch_remote_trace
    from .config import Settings

    settings = Settings.resolve()
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
    from .render import find_observation

    top = find_observation(trace, observation)
    kids = trace.children()
    found, todo = [], [top]
    while todo:
        obs = todo.pop()
        found.append(obs)
        todo.extend(reversed(kids.get(obs.id, [])))
    return found


# ---------------------------------------------------------------- list


@app.command(
    "list",
    help=(
        "List stored traces, newest first: time, short id, name, duration, tokens, cost, status.\n\n"
        "Filters combine with AND. --since takes 30s, 15m, 1h, 2d, 1w or an ISO date.\n\n"
        "[bold]Example[/bold]\n\n"
        "  lftrace list\n"
        "  lftrace list --since 1h --level ERROR\n"
        "  lftrace list --tag nightly --limit 5 --json"
    ),
)
def list_command(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many traces."),
    name: str | None = typer.Option(None, "--name", help="Only traces with this name."),
    level: str | None = typer.Option(None, "--level", help="Only traces whose worst level is this (e.g. ERROR)."),
    session: str | None = typer.Option(None, "--session", help="Only traces of this session id."),
    user: str | None = typer.Option(None, "--user", help="Only traces of this user id."),
    tag: str | None = typer.Option(None, "--tag", help="Only traces with this tag."),
    since: str | None = typer.Option(None, "--since", help="Only traces newer than this (30s/15m/1h/2d/1w or a date)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summaries as JSON."),
) -> None:
    if level is not None:
        level = level.upper()
        if level not in LEVELS:
            raise InputError(f"--level '{level}' is not a level (use one of {', '.join(LEVELS)})")
    since_ns = None
    if since is not None:
        from .client import parse_since  # the client (and its writer thread module) only when filtering by time

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
    from .render import render_trace_list

    console().print(render_trace_list(summaries))


# ---------------------------------------------------------------- entry point and extensions


def _load_dotenv() -> None:
    """``.env`` in the current directory; real environment variables win."""
    path = Path.cwd() / ".env"
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


_GLOBAL_FLAGS = ("--debug", "--version")
_GLOBAL_WITH_VALUE = ("--store",)


def _invoked_command(args: Sequence[str]) -> str | None:
    """The subcommand named in ``args`` (after the global options), or None (top-level --help, no command)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif arg in _GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in _GLOBAL_WITH_VALUE)):
            continue
        else:
            return None if arg.startswith("-") else arg
    return None


def app_for(args: Sequence[str]) -> typer.Typer:
    """``app`` with only the invoked command registered, so only its options are built.

    typer turns every command's signature into click parameters at start (get_type_hints on each), ~20 ms
    for our 11 commands: most of the gap between ``lftrace list`` and a bare typer app. Unknown names and
    top-level help get the full app (its command list and "No such command" suggestions).
    """
    name = _invoked_command(args)
    chosen = [info for info in app.registered_commands if name is not None and info.name == name]
    if not chosen:
        return app
    slim = copy.copy(app)
    slim.registered_commands = chosen
    return slim


def main(argv: Sequence[str] | None = None) -> None:
    _load_dotenv()
    args = list(argv) if argv is not None else sys.argv[1:]
    app_for(args)(args=args, prog_name="lftrace")


# Commands of other modules: each exposes register(app). Only a missing module is tolerated;
# a module that exists but fails to import is a bug and must be loud.
for _name in ("cli_export", "cli_ci"):
    try:
        _module = importlib.import_module(f"lftrace.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"lftrace.{_name}":
            raise
        continue
    _module.register(app)
