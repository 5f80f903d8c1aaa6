"""The ``lftrace`` app: the group, global options, consoles, the store opener and the trace resolver.

Every command module (run.py, traces.py, ci.py, backend.py) imports this one and registers its commands on
``app``; nothing here imports them back. The import order is app -> options -> backend -> traces -> ci -> run
(each module imports only the ones before it), and ``lftrace.cli`` imports them all.

Errors: every ``LftraceError`` becomes one ``error: ...`` line on stderr and its exit code in one place,
``LftraceGroup.invoke`` (``main()`` and typer's CliRunner both go through it); anything unexpected is one line
plus a hint, with the traceback only under ``--debug``.

Settings: ``--store`` is kept here (``state.store``) and reaches the core as an argument (``resolve_settings()``,
``store_path()``, ``open_store()``); the environment is never written.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import traceback
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from .._version import __version__
from ..config import STORE, resolve_store
from ..errors import ExitStatus, InputError, LftraceError, Terminated, TraceNotFound, stop_reason

if TYPE_CHECKING:
    from ..config import Settings
    from ..model import Observation, Trace
    from ..store import TraceStore


@dataclass
class _State:
    """What the global options decided for this invocation."""

    debug: bool = False
    store: Path | None = None
    stdout: Console | None = None
    stderr: Console | None = None
    dotenv: Path | None = None  # the .env read at start, if any
    exit_now: bool = False  # a run was cancelled: exit without the interpreter's teardown (see main)


state = _State()

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
        except KeyboardInterrupt as err:
            # Ctrl-C or SIGTERM that no command turned into its own report (a run reports its partial trace, `test`
            # its cases): one line and the exit code, no traceback
            print_error(f"error: {stop_reason(err)}")
            status = ExitStatus.TERMINATED if isinstance(err, Terminated) else ExitStatus.INTERRUPTED
            raise typer.Exit(int(status)) from None
        except LftraceError as err:
            if state.debug and err.__cause__ is not None:
                traceback.print_exception(err.__cause__, file=sys.stderr)
            print_error(f"error: {err}")
            raise typer.Exit(int(err.exit_code)) from None
        except Exception as err:
            if state.debug:
                traceback.print_exception(err, file=sys.stderr)
            detail = str(err).splitlines()[0] if str(err) else ""
            print_error(
                f"error: unexpected {type(err).__name__}{': ' + detail if detail else ''} (run with --debug for the traceback)"
            )
            raise typer.Exit(int(ExitStatus.TARGET_FAILED)) from None


def print_error(line: str) -> None:
    """One error line on stderr; what came from data (ids, exception texts, server answers) shown escaped."""
    from ..sanitize import clean_line

    err_console().print(Text(clean_line(line), style="red"), soft_wrap=True)


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


# ---------------------------------------------------------------- consoles and printers


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def console() -> Console:
    """The stdout console of this invocation (plain text when piped or NO_COLOR is set)."""
    if state.stdout is None:
        state.stdout = Console(highlight=False, color_system=None if _no_color() else "auto")
    return state.stdout


def err_console() -> Console:
    """The stderr console of this invocation (notes, progress, errors)."""
    if state.stderr is None:
        state.stderr = Console(stderr=True, highlight=False, color_system=None if _no_color() else "auto")
    return state.stderr


def print_json(value: Any) -> None:
    """JSON on stdout, untouched by rich (no wrapping, no colour): safe to pipe into jq."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # a lone surrogate (from a hostile file) or a non-UTF-8 stdout: \uXXXX escapes
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=True, default=str) + "\n")
    sys.stdout.flush()


def stdout_takes_utf8() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().replace("-", "").replace("_", "")
    return encoding == "utf8"


def print_json_chunks(chunks: Iterable[bytes | memoryview]) -> None:
    """JSON written in pieces on stdout (UTF-8 bytes: make them with ``ascii_only=not stdout_takes_utf8()``)."""
    out = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    if out is None:  # a text-only stdout (an embedding program): the pieces as text
        for chunk in chunks:
            sys.stdout.write(bytes(chunk).decode("utf-8"))
        sys.stdout.write("\n")
    else:
        for chunk in chunks:
            out.write(chunk)
        out.write(b"\n")
        out.flush()
    sys.stdout.flush()


def print_trace(
    trace: Trace,
    full: bool = False,
    depth: int | None = None,
    focus: str | None = None,
    *,
    footer: bool = True,
    out: Console | None = None,
    expand: bool = False,
    load_inputs: Callable[[list[Observation]], None] | None = None,
) -> None:
    """``load_inputs``: the trace was read without its observations' inputs (render.build_tree)."""
    from ..render import render_trace

    # rows are already cut to the width, so rich's own cropping pass (slow on 5,000 rows) is skipped
    renderable = render_trace(
        trace, full=full, depth=depth, focus=focus, footer=footer, expand=expand, load_inputs=load_inputs
    )
    (out or console()).print(renderable, crop=False)


# ---------------------------------------------------------------- settings, store, traces


def resolve_settings(**overrides: Any) -> Settings:
    """Every setting for this invocation: ``--store`` and ``overrides`` > environment > ``.env`` > default."""
    from ..config import Settings

    settings = Settings.resolve({"store": state.store, **overrides})
    settings.announce()
    return settings


def store_path() -> Path:
    """--store, else LFTRACE_STORE (environment or .env), else the user data dir."""
    return resolve_store(state.store)


def open_store(read_only: bool = True) -> TraceStore:
    """The trace store; ``read_only`` never creates the file (a missing store is StoreError, exit 7)."""
    from ..store import TraceStore

    return TraceStore(store_path(), create=not read_only)


def resolve_trace_ref(ref: str, store: TraceStore) -> str:
    """A stored trace's reference (a full id, a unique prefix, ``last`` or ``last~N``) -> what to look up.

    ``last~N`` is the N-th run before the last (``last~0`` = ``last``) and becomes a full id; ids and prefixes
    are returned as they are (``store.get_trace`` resolves a prefix). Every command that names a stored trace
    goes through here, so they all accept the same references and fail the same way (exit 4, or 2 for a
    malformed ``last~N``).
    """
    if ref != "last" and not ref.startswith("last~"):
        return ref
    back = 0
    if ref != "last":
        try:
            back = int(ref[5:])
        except ValueError:
            raise InputError(f"'{ref}' is not last~N (e.g. last~1 for the run before the last)") from None
        if back < 0:
            raise InputError(f"'{ref}' is not last~N (N counts runs back from the last, from 0)")
    if back == 0:
        last = store.last_trace_id()  # one indexed row: `lftrace show` starts fast on a big store
        if last is not None:
            return last
    summaries = store.list_traces(limit=back + 1)
    if not summaries:
        raise TraceNotFound(f"no traces in {store_path()} yet (record one with `lftrace run app.py:graph -i hi`)")
    if len(summaries) <= back:
        raise TraceNotFound(f"no trace '{ref}': the store holds {len(summaries)} trace(s)")
    return summaries[back].id


def load_trace(ref: str, store: TraceStore | None = None) -> Trace:
    """A stored trace by id, unique prefix, ``last`` or ``last~N`` (TraceNotFound exit 4, StoreError exit 7)."""
    if store is not None:
        return store.get_trace(resolve_trace_ref(ref, store))
    opened = open_store(read_only=True)
    try:
        return opened.get_trace(resolve_trace_ref(ref, opened))
    finally:
        opened.close()


# ---------------------------------------------------------------- global options


def _show_version(value: bool) -> None:
    if value:
        console().print(f"lftrace {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    store: Annotated[
        Path | None,
        typer.Option(
            "--store", envvar=STORE, help="Trace store (SQLite file). Default: the user data dir.", show_default=False
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    state.debug = debug
    state.stdout = state.stderr = None  # consoles bind to this invocation's streams
    state.store = store.expanduser() if store is not None else None
    if debug:
        enable_debug()


def enable_debug() -> None:
    state.debug = True
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("lftrace").setLevel(logging.DEBUG)
    from ..config import dotenv_path

    dotenv = state.dotenv or dotenv_path()
    logging.getLogger("lftrace").debug("settings from %s", dotenv if dotenv else "the environment (no .env read)")


# ---------------------------------------------------------------- entry point


def _load_dotenv() -> None:
    """``.env`` in the current directory (real environment variables win; LFTRACE_DOTENV=0 skips it), loaded so
    that settings still know which values came from it."""
    from ..config import load_dotenv_into_environ

    state.dotenv = load_dotenv_into_environ()


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
    if app.registered_callback is not None:
        _evaluate_annotations(app.registered_callback.callback)
    for info in chosen or app.registered_commands:
        _evaluate_annotations(info.callback)
    if not chosen:
        return app
    slim = copy.copy(app)
    slim.registered_commands = chosen
    return slim


def _evaluate_annotations(function: Any) -> None:
    """Turn a command's string annotations into objects, once.

    typer evaluates every ``Annotated[..., typer.Option(...)]`` string again each time it reads a signature
    (five times for one command), building new Option objects each time: ~1.4 ms of `lftrace list`.
    """
    annotations = getattr(function, "__annotations__", None)
    if annotations and any(isinstance(value, str) for value in annotations.values()):
        function.__annotations__ = typing.get_type_hints(function, include_extras=True)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``lftrace`` console script (``lftrace.cli:main``); the command modules are registered by then."""
    _load_dotenv()
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        app_for(args)(args=args, prog_name="lftrace")
    except SystemExit as exc:
        if state.exit_now and argv is None:
            _exit_now(exc.code)
        raise


def _exit_now(code: Any) -> None:
    """After Ctrl-C/SIGTERM stopped a run (its trace saved, everything printed): run the exit handlers and leave
    without the interpreter's teardown, which frees a long run's objects one by one (~1-3 s for a few thousand
    steps, measured) while the user waits for the prompt."""
    import atexit
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code if isinstance(code, int) else 1)
