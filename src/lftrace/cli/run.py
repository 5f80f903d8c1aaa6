"""``lftrace run``: run a graph or chain with tracing on, its live output and the lines that say how it went.

LangChain/LangGraph are imported inside the command (through the runner), never at start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import traceback
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ..errors import ExitStatus, InputError, LftraceError
from ..sanitize import clean, clean_line
from .app import (
    app,
    console,
    enable_debug,
    err_console,
    open_store,
    print_json,
    print_trace,
    resolve_settings,
    state,
)
from .ci import enforce_run_assertions, expectations_from_options, load_baseline
from .options import (
    PANEL,
    RUN_PANEL,
    AsyncOption,
    BaselineOption,
    ConfigOption,
    ContextOption,
    DurabilityOption,
    ExpectNodeOption,
    ExpectOutputOption,
    ExpectToolOption,
    MaxCostOption,
    MaxLatencyOption,
    MaxLlmCallsOption,
    MaxTokensOption,
    MetadataOption,
    NoErrorsOption,
    RecursionLimitOption,
    SessionIdOption,
    TagOption,
    ToleranceOption,
    UserIdOption,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..model import Trace
    from ..runner import RunResult


class _LiveTree:
    """On a terminal: the trace tree growing while the graph runs (rich Live, redrawn 4x a second), replaced
    by the finished tree when the run ends. Before the graph starts (loading) it is a status line."""

    def __init__(self, target: str, out: Console) -> None:
        from ..live import LiveTree

        self.view = LiveTree(None, target)
        self.out = out
        self._live: Any = None

    def event(self, event: str, payload: Any) -> None:
        if event == "running":
            self.view.handler = payload

    def __enter__(self) -> _LiveTree:
        from rich.live import Live

        self._live = Live(self.view, console=self.out, refresh_per_second=4, transient=True)
        self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.stop()


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
    """--stream: graph updates as one line per node (and what nodes write with get_stream_writer()), chain tokens
    as they arrive; --tokens: a graph's model tokens too, after the name of the node that streams them."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.mid_line = False
        self.token_node: Any = None  # the node whose tokens the current line shows

    def _write(self, text: str) -> None:
        text = clean(text)  # tokens come from a model: no escape sequence reaches the terminal
        self.out.file.write(text)
        self.out.file.flush()
        self.mid_line = not text.endswith("\n") if text else self.mid_line

    def __call__(self, kind: str, chunk: Any) -> None:
        from ..render import preview
        from ..serialize import to_jsonable

        if kind == "token":  # LangGraph's "messages" mode: (message chunk, metadata)
            message, metadata = chunk
            text = _chunk_text(message) if type(message).__name__ == "AIMessageChunk" else None
            if not text:  # whole messages (a tool's result, a node's output) show in the updates
                return
            node = metadata.get("langgraph_node") if isinstance(metadata, dict) else None
            if node != self.token_node:  # a model's answer starts: the node's name, then its tokens
                self.end_line()
                self.out.print(Text(f"  {clean_line(str(node or 'model'))} › ", "dim cyan"), end="")
                self.token_node = node
            self._write(text)
            return
        if kind == "chunk":
            text = _chunk_text(chunk)
            if text is not None:
                self._write(text)
                return
            self.end_line()
            self.out.print(Text(clean_line(preview(to_jsonable(chunk)))), crop=True, overflow="ellipsis", no_wrap=True)
            return
        self.end_line()
        if kind == "custom":  # what a node wrote with get_stream_writer()
            line = Text.assemble(("  ◦ ", "dim"), (clean_line(preview(to_jsonable(chunk))), "dim"))
            self.out.print(line, crop=True, overflow="ellipsis", no_wrap=True)
            return
        updates = chunk if isinstance(chunk, dict) else {"update": chunk}
        for node, update in updates.items():
            line = Text.assemble(
                ("▸ ", "dim"), (clean_line(str(node)), "bold cyan"), ": ", clean_line(preview(to_jsonable(update)))
            )
            self.out.print(line, crop=True, overflow="ellipsis", no_wrap=True)

    def end_line(self) -> None:
        if self.mid_line:
            self.out.file.write("\n")
            self.mid_line = False
        self.token_node = None


@app.command("run")
def run_command(
    target: Annotated[
        str | None,
        typer.Argument(
            help="module:attr, path/to/file.py:attr, or a graph id of ./langgraph.json (none: its only graph)",
            show_default=False,
        ),
    ] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Input: JSON if it parses, otherwise text.")
    ] = None,
    input_file: Annotated[
        str | None, typer.Option("--input-file", help="Read the input from a file ('-' for stdin).")
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Show output live (graph updates and custom stream events, chain tokens).")
    ] = False,
    tokens: Annotated[
        bool,
        typer.Option(
            "--tokens",
            help="--stream, and a graph's model tokens as they come (LangGraph's messages mode: the models stream).",
        ),
    ] = False,
    use_async: AsyncOption = None,
    config: ConfigOption = None,
    context: ContextOption = None,
    thread_id: Annotated[
        str | None,
        typer.Option(
            "--thread-id",
            help="LangGraph thread: its checkpoints are kept between runs (default: a new one when the graph keeps state).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    checkpoint_id: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-id",
            help="Start from this checkpoint of the thread (lftrace history lists them): replay it, or fork it with --input.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    resume: Annotated[
        list[str] | None,
        typer.Option(
            "--resume",
            metavar="VALUE|ID=VALUE",
            help="Answer the thread's pending interrupt (JSON, or text); ID=VALUE for one of several (repeatable).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            help="When the graph pauses at interrupt(), ask for the answer on the terminal and go on.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = False,
    recursion_limit: RecursionLimitOption = None,
    durability: DurabilityOption = None,
    session_id: SessionIdOption = None,
    user_id: UserIdOption = None,
    tag: TagOption = None,
    metadata: MetadataOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Trace name (default: the root run's name).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the trace JSON.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show inputs and outputs of every observation in full.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the target's traceback when it raises.")] = False,
    expect_output: ExpectOutputOption = None,
    expect_node: ExpectNodeOption = None,
    expect_tool: ExpectToolOption = None,
    max_latency: MaxLatencyOption = None,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    max_llm_calls: MaxLlmCallsOption = None,
    no_errors: NoErrorsOption = False,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = 0.25,
    expect_complete: Annotated[
        bool,
        typer.Option(
            "--expect-complete", help="Fail (exit 5) when the run pauses at an interrupt.", rich_help_panel=PANEL
        ),
    ] = False,
) -> None:
    """Run a LangGraph graph or LangChain runnable with tracing on, then show its trace tree.

    TARGET is [bold]module:attr[/bold] (importable from the current directory) or [bold]path/to/file.py:attr[/bold]; the attribute is a compiled graph, any Runnable, or a zero-argument factory returning one. In a LangGraph project it may be a graph id of ./langgraph.json (or path/to/langgraph.json:ID; none when it names one graph), loaded as `langgraph dev` loads it (its env included).

    Input is JSON if it parses, otherwise text: a JSON object goes in as it is; text goes in as a user message for graphs with a 'messages' channel, or as the one text field of the input.

    A graph that pauses at interrupt() ends with status interrupted (exit 0): the pending interrupts and the command that resumes them are printed. The thread's checkpoints are kept in a file beside the trace store, so --thread-id T --resume VALUE continues it in a later process; --interactive asks on the terminal instead. A static breakpoint (interrupt_before/interrupt_after) is a pause too; it takes no answer: --thread-id T alone (or with --resume) goes on.

    When LANGFUSE_* keys (or OTEL_EXPORTER_OTLP_ENDPOINT) are set, the trace is exported before the command ends and its last line says where it went: the Langfuse URL of the trace, or 'queued: N traces pending (reason)' when the backend could not be reached. A queued trace is kept in the store and does not change the exit code (the run itself succeeded): send it later with [bold]lftrace push[/bold].

    Exit codes: 0 ok (also when export is queued, and when the run paused at an interrupt), 1 the target raised (trace saved), 2 bad input, 3 target not loadable, 5 an assertion failed (or --expect-complete and the run paused), 7 the trace could not be saved (store problem), 130 Ctrl-C / 143 SIGTERM (partial trace saved).

    [bold]Example[/bold]

      lftrace run app.py:graph --input "What is Langfuse?"
      lftrace run chains.jokes:chain --input '{"topic": "cats"}' --stream
      echo 'hello' | lftrace run app.py:graph --input-file - --json > trace.json
      lftrace run review.py:graph --thread-id 7f3a --resume '"yes"'
      lftrace run loop.py:graph -i "Go" --thread-id t1 --durability exit
      lftrace run assistant.py:graph -i "Hi" --context '{"user_id": "u-1"}'
      lftrace run agent -i "Hi"                      # a graph of ./langgraph.json
    """
    if debug:
        enable_debug()
    expectations = expectations_from_options(
        expect_output, expect_node, expect_tool, max_latency, max_tokens, max_cost, max_llm_calls, no_errors
    )
    if expect_complete:
        expectations = dataclasses.replace(expectations, complete=True)
    if interactive and not sys.stdin.isatty():
        raise InputError("--interactive needs a terminal on stdin; answer a paused run with --resume VALUE instead")
    from ..runner import parse_metadata

    run_metadata = parse_metadata(metadata or [])
    run_config = _from_checkpoint(config, checkpoint_id, thread_id, resume) if checkpoint_id else config
    from ..langgraph_json import resolve_target  # before the settings: a project's env may hold the keys

    spec, graph_id = resolve_target(target)
    label = target or graph_id or spec
    baseline_trace = load_baseline(baseline) if baseline else None  # before the run: `last` is the previous one
    settings = resolve_settings()
    out = console()
    stream = stream or tokens
    live = stream and not json_out
    on_terminal = not json_out and not stream and sys.stdout.isatty() and sys.stderr.isatty()
    spinner = _LiveTree(label, out) if on_terminal else None  # the tree grows on screen while the graph runs
    printer = _LivePrinter(out) if live else None

    def progress(event: str, payload: Any) -> None:
        if spinner is not None:
            spinner.event(event, payload)
        if printer is not None and event == "chunk":
            printer(*payload)

    from ..runner import execute  # LangChain is imported here, never at `lftrace list`/`show` start

    common: dict[str, Any] = {
        "stream": "tokens" if tokens else stream,
        "use_async": use_async,
        "config": run_config,
        "context": context,
        "recursion_limit": recursion_limit,
        "durability": durability,
        "metadata": run_metadata,
        "session_id": session_id,
        "user_id": user_id,
        "tags": tag or [],
        "name": name or graph_id,  # a langgraph.json graph's traces are named after its id
        "progress": progress,
        "settings": settings,
    }
    with spinner if spinner is not None else contextlib.nullcontext():
        result = execute(spec, input, input_file=input_file, thread_id=thread_id, resume=resume, label=label, **common)
    while True:
        if printer is not None:
            printer.end_line()
            out.print()
        report_run(result, json_out=json_out, full=full, settings=settings)
        if not result.paused:
            break
        print_pause(result, label, json_out=json_out)
        answers = ask_resume(result.interrupts) if interactive else None
        if answers is None:
            break
        result = execute(result.runnable, label=label, thread_id=result.thread_id, resume=answers, **common)
    enforce_run_assertions(result.trace, result.output, expectations, baseline=baseline_trace, tolerance=tolerance)


def _from_checkpoint(
    config: str | None, checkpoint_id: str, thread_id: str | None, resume: list[str] | None
) -> dict[str, Any]:
    """``--config`` with ``configurable.checkpoint_id`` (LangGraph's time travel) on top."""
    from ..runner import parse_config

    if not thread_id:
        raise InputError(
            "--checkpoint-id needs --thread-id: a checkpoint belongs to a thread (lftrace history lists them)"
        )
    if resume:
        raise InputError(
            "--checkpoint-id starts from a past checkpoint: give --input to fork it, or nothing to replay it"
        )
    parsed = parse_config(config)
    return {**parsed, "configurable": {**(parsed.get("configurable") or {}), "checkpoint_id": checkpoint_id}}


@app.command("history")
def history_command(
    target: Annotated[
        str | None,
        typer.Argument(help="The graph: module:attr, path/to/file.py:attr, or a graph id of ./langgraph.json."),
    ] = None,
    thread_id: Annotated[str, typer.Option("--thread-id", help="The thread whose checkpoints to list.")] = "",
    config: ConfigOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the checkpoints as JSON.")] = False,
) -> None:
    """List a LangGraph thread's checkpoints, oldest first: the step, the nodes that ran, those due next, what
    changed in the state, and the checkpoint id to start again from (lftrace run --checkpoint-id).

    The graph is needed to read its state: the thread's checkpoints are in lftrace's checkpoint file (beside the
    trace store) or in the graph's own checkpointer. Piped, the table is tab-separated values.

    Exit codes: 0 ok, 2 bad input (no --thread-id, not a graph), 3 target not loadable, 4 the thread has no checkpoints.

    [bold]Example[/bold]

      lftrace history sample_graphs/agent.py:graph --thread-id tt1
      lftrace run sample_graphs/agent.py:graph --thread-id tt1 --checkpoint-id 1f1ec912-a5e5-6c77-8001-61daaeea77be
    """
    if not thread_id:
        raise InputError("give the thread with --thread-id (lftrace list --session lists the threads' runs)")
    from ..langgraph_json import resolve_target

    spec, graph_id = resolve_target(target)
    settings = resolve_settings()
    from ..render import render_history
    from ..runner import thread_history  # LangChain is imported here

    points = [p.to_dict() for p in thread_history(spec, thread_id, settings=settings, config=config)]
    if json_out:
        print_json(points)
        return
    from .traces import print_table

    print_table(render_history(points))
    if sys.stdout.isatty():
        shown = target or graph_id or spec
        console().print(
            Text(f"start again from one: lftrace run {shown} --thread-id {thread_id} --checkpoint-id CHECKPOINT", "dim")
        )


def print_pause(result: RunResult, target: str, *, json_out: bool = False) -> None:
    """A paused run: each pending interrupt with its value, then the exact command that resumes the thread."""
    from ..render import preview
    from ..sanitize import clean_line
    from ..serialize import to_jsonable
    from ..threads import resume_hint

    out = err_console() if json_out else console()
    shown = result.trace is not None and not json_out  # the tree's footer already shows what the graph waits for
    for item in [] if shown and len(result.interrupts) == 1 else result.interrupts:
        where = clean_line(item.node or "the graph")
        if item.breakpoint:  # a static breakpoint (interrupt_before/after): nothing to answer
            out.print(
                Text.assemble(("⏸ ", "bold yellow"), f"paused at a breakpoint {item.breakpoint} ", (where, "bold"))
            )
            continue
        line = Text.assemble(("⏸ ", "bold yellow"), (where, "bold"), " waits for input: ")
        line.append(preview(to_jsonable(item.value)), style="yellow")
        if len(result.interrupts) > 1:
            line.append(f"  (id {item.id})", style="dim")
        out.print(line, soft_wrap=True)
    if result.thread_id is None:
        out.print(
            Text("the graph keeps no checkpoints: run it with --thread-id ID to be able to resume", style="yellow"),
            soft_wrap=True,
        )
        return
    hint = resume_hint(target, result.thread_id, result.interrupts)
    out.print(Text.assemble(("resume: ", "bold"), clean_line(hint)), soft_wrap=True)


def ask_resume(pending: list[Any]) -> list[str] | None:
    """Ask on the terminal for each pending interrupt's answer (JSON, or text); None on end of input (Ctrl-D)."""
    answers: list[str] = []
    if pending and all(item.breakpoint for item in pending):  # a static breakpoint: only go on (or stop)
        where = ", ".join(f"{item.breakpoint} {item.node}" for item in pending)
        try:
            input(f"paused at a breakpoint ({where}); Enter goes on> ")
        except EOFError:
            return None
        return [""]
    for item in pending:
        label = f"answer for {item.node or 'the graph'}" + (f" ({item.id[:8]})" if len(pending) > 1 and item.id else "")
        try:
            text = input(f"{label}> ")
        except EOFError:
            return None
        answers.append(f"{item.id}={text}" if len(pending) > 1 and item.id else text)
    return answers


def _print_long_trace(trace: Trace, *, json_out: bool, full: bool) -> None:
    """A long run's trace, read back without its observations' inputs (``RunResult.inputs_left_out``): the tree
    fills in those of the rows it prints, the JSON streams the trace from the store, as `show` does."""
    if json_out:
        from .traces import print_stored_json

        print_stored_json(trace.id)
        return
    store = open_store(read_only=True)
    try:
        print_trace(trace, full=full, load_inputs=store.load_inputs)
    finally:
        store.close()


def report_run(
    result: RunResult, *, json_out: bool = False, full: bool = False, settings: Settings | None = None
) -> None:
    """Print what a run produced and raise the matching LftraceError (exit 1 / 130) when it did not succeed."""
    for note in result.notes:
        err_console().print(Text(clean_line(f"note: {note}"), style="yellow"), soft_wrap=True)
    if result.trace is not None and result.inputs_left_out:  # a long run: its inputs read from the store as needed
        _print_long_trace(result.trace, json_out=json_out, full=full)
    elif json_out:
        print_json(result.trace.to_dict() if result.trace is not None else None)
    elif result.trace is not None:
        print_trace(result.trace, full=full)
    else:
        _print_raw_output(result.output)
    _print_destination(result, settings or resolve_settings(), json_out=json_out)
    if result.new_thread and result.thread_id is not None:
        (err_console() if json_out else console()).print(
            Text.assemble(("thread: ", "bold"), result.thread_id, ("  (new; continue it with --thread-id)", "dim")),
            soft_wrap=True,
        )
    if result.cancelled:
        state.exit_now = True
        saved = f"partial trace saved: {result.trace.id}" if result.trace is not None else "no trace saved"
        if result.terminated:
            raise LftraceError(f"terminated (SIGTERM); {saved}", exit_code=ExitStatus.TERMINATED)
        raise LftraceError(f"cancelled (Ctrl-C); {saved}", exit_code=ExitStatus.INTERRUPTED)
    if result.error is not None:
        if state.debug:
            traceback.print_exception(result.error, file=sys.stderr)
        detail = str(result.error).splitlines()[0] if str(result.error) else ""
        where = f" (trace {result.trace.id} saved)" if result.trace is not None else ""
        raise LftraceError(
            f"{result.target} raised {type(result.error).__name__}{': ' + detail if detail else ''}{where}",
            exit_code=ExitStatus.TARGET_FAILED,
        )


def _print_destination(result: RunResult, settings: Settings, *, json_out: bool) -> None:
    """Where the trace went (the run has flushed): Langfuse URL, 'sent to ...', or 'queued: ...'; stderr for --json.

    A trace that could not be delivered stays queued in the store and does not change the exit code.
    """
    if result.trace is None:
        return
    from ..client import client_for  # already imported by the run

    client = client_for(settings)  # the one that traced the run: its settings and last delivery report
    settings = client.settings
    if not (settings.langfuse_enabled or settings.otlp_endpoint):
        return  # local only: nothing to say, and nothing more to import
    from .backend import describe_destination_result

    try:
        lines = describe_destination_result(settings, client.store, result.trace.id, client.last_delivery)
    except LftraceError as err:
        lines = [f"export state unknown: {err}"]
    out = err_console() if json_out else console()
    for line in lines:
        style = "yellow" if line.startswith(("queued", "export")) else ""
        out.print(Text(clean_line(line), style=style), soft_wrap=True)  # backend error bodies are data


def _print_raw_output(output: Any) -> None:
    if output is None:
        return
    from ..render import pretty, readable
    from ..serialize import to_jsonable

    console().print(Text("Output:", style="bold"))
    console().print(Text(clean(pretty(readable(to_jsonable(output))))))
