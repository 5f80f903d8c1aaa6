"""CI commands: ``test``, ``export``, ``import``, ``diff``, ``stats``; and the assertion checks of ``run``.

The ``run`` command (run.py) takes the assertion options of options.py, turns them into ``Expectations`` with
``expectations_from_options`` and calls ``enforce_run_assertions`` after the run; a failure exits with 5
(``ExitStatus.ASSERTION_FAILED``).

Like ``show`` and ``list``, every command here except ``test`` starts without importing LangChain.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from ..cases import CASE_METADATA_KEY, TEST_TAG_PREFIX
from ..errors import ExitStatus, InputError, LftraceError, TraceNotFound
from ..model import Trace
from ..sanitize import clean_line
from .app import (
    app,
    console,
    err_console,
    open_store,
    print_json,
    resolve_settings,
    resolve_trace_ref,
    state,
    stdout_takes_utf8,
    store_path,
)
from .options import (
    RUN_PANEL,
    BaselineOption,
    ConfigOption,
    ContextOption,
    ExpectNodeOption,
    ExpectOutputOption,
    ExpectToolOption,
    LevelFilter,
    MaxCostOption,
    MaxLatencyOption,
    MaxLlmCallsOption,
    MaxTokensOption,
    MetadataOption,
    MinCostFilter,
    MinLatencyFilter,
    MinTokensFilter,
    ModelFilter,
    NameFilter,
    NoErrorsOption,
    RecursionLimitOption,
    SearchFilter,
    SessionFilter,
    SessionIdOption,
    SinceFilter,
    StatusFilter,
    TagFilter,
    TagOption,
    ToleranceOption,
    UntilFilter,
    UserFilter,
    UserIdOption,
    trace_filter,
)

if TYPE_CHECKING:  # assertions and dataset are imported inside the commands: `list`/`show` start without them
    from rich.console import Console

    from ..assertions import AssertionFailure, Expectations
    from ..cases import CaseRunner
    from ..config import Settings
    from ..dataset import Case, CaseResult, DatasetRun
    from ..store import TraceStore


def expectations_from_options(
    expect_output: str | None = None,
    expect_node: Sequence[str] | None = None,
    expect_tool: Sequence[str] | None = None,
    max_latency: float | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    max_llm_calls: int | None = None,
    no_errors: bool = False,
) -> Expectations:
    from ..assertions import Expectations

    return Expectations(
        output_regex=expect_output,
        nodes=tuple(expect_node or ()),
        tools=tuple(expect_tool or ()),
        max_latency=max_latency,
        max_tokens=max_tokens,
        max_cost=max_cost,
        max_llm_calls=max_llm_calls,
        no_errors=no_errors,
    )


def evaluate_run_assertions(
    trace: Trace,
    output: Any,
    expectations: Expectations,
    *,
    baseline: Trace | None = None,
    tolerance: float = 0.25,
    console: Console | None = None,
) -> list[AssertionFailure]:
    """Check one finished run; print every failure (expected and actual) to ``console`` (stderr by default).

    ``output`` is the value the target returned (or None to use ``trace.output``). The caller exits with
    ``ExitStatus.ASSERTION_FAILED`` when the returned list is not empty.
    """
    from ..assertions import check, output_text
    from ..diff import compare_with_baseline

    text = None if output is None else output_text(output)
    failures = check(trace, text, expectations)
    if baseline is not None:
        failures += compare_with_baseline(trace, baseline, tolerance)
    if failures:
        console = console or err_console()
        console.print(
            Text.assemble((f"{len(failures)} assertion(s) failed", "bold red"), f" for trace {clean_line(trace.id)}:"),
            highlight=False,
        )
        for failure in failures:
            console.print(_failure_line(failure), highlight=False, markup=False)
    return failures


def enforce_run_assertions(
    trace: Trace | None,
    output: Any,
    expectations: Expectations,
    *,
    baseline: Trace | None = None,
    tolerance: float = 0.25,
) -> None:
    """What ``run`` calls after a successful run: nothing to check -> return; a failure -> exit 5."""
    if expectations.is_empty and baseline is None:
        return
    if trace is None:
        raise LftraceError(
            "cannot check the assertions: no trace was recorded (set LANGFUSE_SAMPLE_RATE=1 and tracing on)",
            exit_code=ExitStatus.ASSERTION_FAILED,
        )
    if evaluate_run_assertions(trace, output, expectations, baseline=baseline, tolerance=tolerance):
        raise typer.Exit(int(ExitStatus.ASSERTION_FAILED))


def _failure_line(failure: AssertionFailure) -> str:
    """Three lines; each part comes from data (outputs, node names) and is shown escaped."""
    return (
        f"  ✗ {clean_line(str(failure.name))}: {clean_line(str(failure.message))}\n"
        f"      expected: {clean_line(str(failure.expected))}\n      actual:   {clean_line(str(failure.actual))}"
    )


# -- trace files and references ---------------------------------------------------------------


def read_traces_file(path: Path) -> list[Trace]:
    """Validated traces from a file (``validate.read_traces_file``): hostile files are exit 2 naming the problem."""
    from ..validate import read_traces_file as read_validated

    return read_validated(path)


def resolve_trace(ref: str, store: TraceStore | None = None, *, inputs: bool = True) -> Trace:
    """A trace from a file, or from the store by id, prefix, ``last`` or ``last~N`` (app.resolve_trace_ref).

    ``inputs=False``: from the store, without the observations' inputs (diff reads outputs only).
    """
    path = Path(ref)
    if path.is_file():
        traces = read_traces_file(path)
        if len(traces) != 1:
            raise InputError(f"{ref} holds {len(traces)} traces; pass a file with one trace or a trace id")
        return traces[0]
    store = store or open_store()
    return store.get_trace(resolve_trace_ref(ref, store), inputs=inputs)


def load_baseline(ref: str) -> Trace:
    """The baseline of ``run --baseline``: resolve it *before* the run, so ``last`` means the previous run."""
    return resolve_trace(ref)


def load_baselines(ref: str) -> dict[str, Trace]:
    """Baselines of ``test --baseline``: case name -> trace, from a file or a stored test run id."""
    path = Path(ref)
    if path.is_file():
        traces = read_traces_file(path)
    else:
        store = open_store()
        run_id = ref.removeprefix(TEST_TAG_PREFIX)
        summaries = store.list_traces(limit=1_000_000, tag=TEST_TAG_PREFIX + run_id)
        if not summaries:
            raise InputError(
                f"--baseline '{ref}' is neither a file nor a stored test run "
                "(pass a file from `lftrace export --tag lftrace-test:<run id>` or the run id `lftrace test` printed)"
            )
        traces = [store.get_trace(s.id) for s in summaries]
    by_case: dict[str, Trace] = {}
    for trace in sorted(traces, key=lambda t: t.timestamp):  # the newest wins if a case ran twice
        case = (trace.metadata or {}).get(CASE_METADATA_KEY)
        if isinstance(case, str):
            by_case[case] = trace
    if not by_case:
        raise InputError(f"--baseline '{ref}': no trace carries a case name (metadata '{CASE_METADATA_KEY}')")
    return by_case


def _money(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:.6f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _latency(value: float | None) -> str:
    """Sub-millisecond latencies as such (``0.4ms``), not ``0.00s``."""
    from ..render import format_duration

    return "-" if value is None else format_duration(value)


# -- lftrace test -------------------------------------------------------------------------------


def _progress_reporter(total: int, console: Console) -> tuple[Any, Any]:
    """(on_done callback, context manager): a rich progress bar on a terminal, one line per case otherwise."""
    from contextlib import nullcontext

    marks = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "error": "[red]![/]", "skipped": "[dim]-[/]"}
    lock = threading.Lock()
    if not console.is_terminal:

        def log_line(result: CaseResult) -> None:
            with lock:
                console.print(
                    f"{marks[result.status]} {escape(clean_line(result.case.name))} "
                    f"({result.status}, {_seconds(result.latency)})"
                )

        return log_line, nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]lftrace test"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("cases", total=total, failed=0)
    failed = [0]

    def advance(result: CaseResult) -> None:
        with lock:
            failed[0] += not result.passed and result.status != "skipped"
            progress.update(task, advance=1, failed=failed[0])

    return advance, progress


def _summary_table(results: Sequence[CaseResult]) -> Any:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False)
    for column, justify in (("case", "left"), ("result", "left"), ("latency", "right"), ("tokens", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("cost", justify="right")
    table.add_column("trace", no_wrap=True)
    styles = {"pass": "green", "fail": "red", "error": "red", "skipped": "dim"}
    for r in results:
        table.add_row(
            Text(clean_line(r.case.name)),  # a Text: a case name is never read as markup
            f"[{styles[r.status]}]{r.status.upper()}[/]",
            _seconds(r.latency),
            str(r.tokens),
            _money(r.cost),
            Text(clean_line(r.trace_id or "-")),
        )
    return table


def _print_case_failures(results: Sequence[CaseResult], console: Console) -> None:
    for r in results:
        name, trace_id = clean_line(r.case.name), clean_line(r.trace_id or "-")
        if r.status == "error":
            said = ": " if "while the case ran" in str(r.error) else " raised: "  # stopped (SIGTERM), not raised
            console.print(
                Text.assemble("\n", (f"! {name}", "red"), f"{said}{clean_line(str(r.error))} (trace {trace_id})")
            )
        elif r.status == "fail":
            console.print(Text.assemble("\n", (f"✗ {name}", "red"), f" (trace {trace_id})"))
            for failure in r.failures:
                console.print(_failure_line(failure), markup=False)


@app.command("test")
def test_cases_command(
    target: Annotated[
        str,
        typer.Argument(
            help="The graph or chain: module:attr, path/to/file.py:attr, or a graph id of ./langgraph.json."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Argument(
            help="JSONL file, one case a line: {name, input, expect}; or dataset:NAME, the items of a Langfuse "
            "dataset (the store's without Langfuse keys)."
        ),
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Cases run at once (threads, or tasks with --async).")
    ] = 4,
    shard: Annotated[
        str | None, typer.Option("--shard", metavar="K/N", help="Run the K-th of N stable slices of the cases.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", metavar="PATH", help="Write a JUnit XML report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Start no new case after the first failure.")] = False,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = 0.25,
    expect_output: ExpectOutputOption = None,
    expect_node: ExpectNodeOption = None,
    expect_tool: ExpectToolOption = None,
    max_latency: MaxLatencyOption = None,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    max_llm_calls: MaxLlmCallsOption = None,
    no_errors: NoErrorsOption = False,
    check_expected: Annotated[
        bool,
        typer.Option(
            "--check-expected",
            help="dataset:NAME: check each item's expected output too (text the reply contains, ignoring case and "
            "spacing; an object: fields the output holds).",
        ),
    ] = False,
    run_name: Annotated[
        str | None,
        typer.Option("--run-name", help="dataset:NAME: the name of the dataset run (default: lftrace test <run id>)."),
    ] = None,
    use_async: Annotated[
        bool | None,
        typer.Option(
            "--async/--sync",
            help="--async: run the cases on one event loop (ainvoke), --concurrency at a time; --sync: invoke on "
            "threads (default: threads, each case async when a node is async-only).",
            show_default=False,
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    config: ConfigOption = None,
    context: ContextOption = None,
    recursion_limit: RecursionLimitOption = None,
    session_id: SessionIdOption = None,
    user_id: UserIdOption = None,
    tag: TagOption = None,
    metadata: MetadataOption = None,
) -> None:
    """Run every case of a JSONL dataset and check its expectations; exit 5 when any case fails.

    Each case's trace is stored with the tag lftrace-test:<run id> and the case name in its metadata.
    Assertion options given here apply to every case (a case's own "expect" wins).

    A case may carry "config" (merged into the RunnableConfig), "context" (LangGraph's runtime context, merged over
    --context) and "thread_id", or "turns" run in order on one
    thread, e.g. [{"input": "draft it"}, {"resume": "yes", "expect": {"complete": true}}]: each turn is its own
    trace under the thread's session, "expect": {"interrupt": true} (or a regex on the interrupt's value) checks a
    pause. JUnit names the turn that failed.

    With dataset:NAME the cases are the dataset's active items (input; metadata "name" and "expect" as in a JSONL
    case, and "turns": the turns after the input, for a conversation) and the run is recorded as a run of the dataset: in Langfuse its experiments view groups the traces, each
    with a score lftrace-test (1 passed, 0 failed).

    Ctrl-C or SIGTERM (a CI timeout) stops at once: the cases run so far are reported (the running ones as errors,
    their partial traces saved; the others skipped), the summary, --json and --junit outputs are written, and the
    exit code is 130 (Ctrl-C) or 143 (SIGTERM). During the export after the cases, only the export stops.

    [bold]Example[/bold]

      lftrace test app.py:graph cases.jsonl --junit report.xml
      lftrace test app.py:graph cases.jsonl --shard 1/4 --max-latency 10 --baseline baseline.jsonl
      lftrace test app.py:graph dataset:qa-smoke --check-expected --no-errors --junit report.xml
    """
    from ..cases import CaseRunner, RunOptions
    from ..client import client_for
    from ..dataset import NOT_RUN, CaseResult, parse_shard, select_shard, stop_signals
    from ..errors import TERMINATED, stop_reason
    from ..langgraph_json import resolve_target
    from ..runner import parse_config, parse_context, parse_metadata

    spec, _ = resolve_target(target)  # before the settings: a langgraph.json's env may hold the keys
    run_id = os.urandom(6).hex()
    # a CI run needs every case's trace: sampling and LANGFUSE_TRACING_ENABLED=false do not apply here
    settings = resolve_settings(sample_rate=1.0, tracing_enabled=True)
    cases, dataset_run = _cases(dataset, settings, run_id, check_expected, run_name)
    if shard:
        k, n = parse_shard(shard)
        cases = select_shard(cases, k, n)
    defaults = expectations_from_options(
        expect_output, expect_node, expect_tool, max_latency, max_tokens, max_cost, max_llm_calls, no_errors
    )
    baselines = load_baselines(baseline) if baseline else None
    stopped_by: str | None = None  # errors.CANCELLED (Ctrl-C) or TERMINATED (SIGTERM) when a signal stopped the run
    export_stopped_by: str | None = None  # the same, when it stopped the export after the cases
    stopped_loading = False  # the signal came while the target was imported
    err = err_console()
    out = console()
    suite = f"lftrace test {dataset if dataset_run is not None else Path(dataset).name}" + (
        f" shard {shard}" if shard else ""
    )
    started = time.perf_counter()
    if cases:
        options = RunOptions(
            config=parse_config(config),
            context=parse_context(context),
            recursion_limit=recursion_limit,
            metadata=parse_metadata(metadata or []),
            session_id=session_id,
            user_id=user_id,
            tags=tag or [],
            use_async=use_async,
        )
        client_for(settings)  # invalid settings stop here, before the target is imported
        with stop_signals():  # one Ctrl-C or SIGTERM stops the import, the cases or the export; later ones are ignored
            try:
                runner = CaseRunner(  # imports the target
                    spec,
                    run_id,
                    defaults,
                    baselines=baselines,
                    tolerance=tolerance,
                    settings=settings,
                    options=options,
                    label=target,
                )
            except KeyboardInterrupt as interrupt:  # while the target was imported: no case ran, the report says so
                stopped_by, stopped_loading = stop_reason(interrupt), True
                results = [CaseResult(case, skipped=True, skip_reason=NOT_RUN[stopped_by]) for case in cases]
            else:
                started = time.perf_counter()  # the cases' time, without importing the target
                results, stopped_by = _run_all(cases, runner, use_async, concurrency, fail_fast, err)
                if runner.store_error is not None:
                    raise runner.store_error
            if stopped_by is not None:
                from ..runner import STOPPED_DELIVERY_S

                # the stopped cases' partial traces, in the store now; they want out, so the delivery is short (as
                # `lftrace run`'s after a stop): what it does not send stays queued, and the exit does not send it
                # again (a backend that hangs held the exit for LANGFUSE_TIMEOUT)
                client_for(settings).flush(deliver_within=STOPPED_DELIVERY_S)
            else:
                if dataset_run is not None:
                    _score_items(client_for(settings), results)
                try:
                    _deliver_once(settings, err)
                except KeyboardInterrupt as interrupt:  # every verdict stands; the traces are stored, still queued
                    export_stopped_by = stop_reason(interrupt)
    else:
        results = []
    duration = time.perf_counter() - started
    if junit is not None:
        from ..junit import write_junit

        write_junit(junit, results, suite=suite, duration=duration)
    passed = sum(r.passed for r in results)
    failed = [r for r in results if r.status in ("fail", "error")]
    if as_json:
        print_json(
            {
                "runId": run_id,
                "tag": TEST_TAG_PREFIX + run_id,
                "passed": passed,
                "failed": len(failed),
                "skipped": sum(r.status == "skipped" for r in results),
                "duration": duration,
                **({"datasetRun": dataset_run.to_dict()} if dataset_run is not None else {}),
                "cases": [r.to_dict() for r in results],
            }
        )
    else:
        if results:
            out.print(_summary_table(results))
        _print_case_failures(results, out)
        note = f" (shard {shard}: {len(cases)} case(s))" if shard else ""
        verdict = "[green]all passed[/]" if not failed else f"[red]{len(failed)} failed[/]"
        out.print(
            f"\n{passed}/{len(results)} passed, {verdict} in {duration:.2f}s{note}; test run {run_id}", soft_wrap=True
        )
        out.print(
            f"[dim]save as a baseline: lftrace export --tag {TEST_TAG_PREFIX}{run_id} -o baseline.jsonl[/]",
            soft_wrap=True,
        )
        if dataset_run is not None:
            where = f": {dataset_run.url}" if dataset_run.url else ""
            said = f"dataset run '{dataset_run.run_name}' of {dataset_run.dataset}{where}"
            out.print(Text(clean_line(said), style="dim"), soft_wrap=True)
        if junit is not None:
            out.print(f"[dim]JUnit report: {junit}[/]", soft_wrap=True)
    if stopped_by is not None:
        state.exit_now = True  # cases stuck in the target must not hold the exit (their traces are saved)
        stopped = sum(r.status == "error" and stopped_by in (r.error or "") for r in results)
        not_run = sum(r.skip_reason == NOT_RUN[stopped_by] for r in results)
        said = (
            f" while {target} was imported: no case ran ({not_run} not run)"
            if stopped_loading
            else f": {len(results) - stopped - not_run} of {len(results)} case(s) finished, "
            f"{stopped} stopped while running (partial traces saved), {not_run} not run"
        )
        raise LftraceError(
            f"{stopped_by}{said}",
            exit_code=ExitStatus.TERMINATED if stopped_by == TERMINATED else ExitStatus.INTERRUPTED,
        )
    if export_stopped_by is not None:
        state.exit_now = True
        raise LftraceError(
            f"{export_stopped_by} during the export: all {len(results)} case(s) finished ({passed} passed); "
            "their traces are saved and stay queued for export (lftrace push)",
            exit_code=ExitStatus.TERMINATED if export_stopped_by == TERMINATED else ExitStatus.INTERRUPTED,
        )
    if failed:
        raise typer.Exit(ExitStatus.ASSERTION_FAILED)


def _run_all(
    cases: Sequence[Case], runner: CaseRunner, use_async: bool | None, concurrency: int, fail_fast: bool, err: Console
) -> tuple[list[CaseResult], str | None]:
    """Every case's result, and errors.CANCELLED / TERMINATED when Ctrl-C / SIGTERM stopped them (see run_cases)."""
    from ..dataset import CasesStopped, run_cases, run_cases_async

    on_done, progress = _progress_reporter(len(cases), err)
    how: dict[str, Any] = {
        "concurrency": concurrency,
        "fail_fast": fail_fast,
        "on_done": on_done,
        "on_stop": runner.stopped,
    }
    try:
        with progress:
            done = run_cases_async(cases, runner.arun, **how) if use_async else run_cases(cases, runner, **how)
    except CasesStopped as stop:  # Ctrl-C, or a CI runner timed out: report what ran, keep every trace
        return stop.results, stop.reason
    return done, None


def _cases(
    dataset: str, settings: Settings, run_id: str, check_expected: bool, run_name: str | None
) -> tuple[list[Case], DatasetRun | None]:
    """The cases of a JSONL file (every line checked before anything runs), or of ``dataset:NAME``'s items with
    the dataset run they make."""
    from ..client import client_for
    from ..dataset import dataset_argument, load_dataset, load_dataset_items

    source = dataset_argument(dataset)
    if source is not None:  # invalid settings stop here, before the dataset is read
        named = run_name or f"lftrace test {run_id}"
        return load_dataset_items(client_for(settings), source, run_name=named, check_expected=check_expected)
    if check_expected or run_name is not None:
        raise InputError(
            f"{'--check-expected' if check_expected else '--run-name'} is for a dataset (dataset:NAME); "
            'a JSONL case checks its output with "expect": {"expected_output": ...}'
        )
    return load_dataset(Path(dataset)), None


def _score_items(client: Any, results: Sequence[CaseResult]) -> None:
    """Each dataset item's verdict as a score of its trace: Langfuse shows the dataset run's pass rate."""
    from ..dataset import TEST_SCORE

    for result in results:
        if result.trace_id is None:
            continue
        why = result.error or "; ".join(str(f) for f in result.failures) or None
        client.create_score(
            trace_id=result.trace_id, name=TEST_SCORE, value=int(result.passed), data_type="BOOLEAN", comment=why
        )


def _deliver_once(settings: Settings, err: Any) -> None:
    """The cases' traces go to the backends in one delivery bounded by LANGFUSE_TIMEOUT (not one per case)."""
    from ..client import client_for

    client = client_for(settings)
    client.flush()
    report = client.last_delivery
    if report is not None and (report.pending or report.failed):
        from rich.text import Text

        from ..sanitize import clean_line

        err.print(Text(clean_line(f"export {report.summary()}"), style="yellow"), soft_wrap=True)


# -- export / import ------------------------------------------------------------------------------


@app.command("export")
def export_command(
    ids: Annotated[list[str] | None, typer.Argument(help="Trace ids, prefixes, `last` or `last~N`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
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
) -> None:
    """Write traces as JSON (Langfuse's trace shape): one trace as a JSON object, several as JSONL.

    Each ID is a full id, a unique prefix, 'last' or 'last~N' (the N-th run before the last). Filters (the same as `lftrace list`: --tag, --since, --status, --search, ...) export every matching trace, oldest first, as JSONL.

    [bold]Example[/bold]

      lftrace export last > trace.json
      lftrace export last~1 last -o two.jsonl
      lftrace export --tag lftrace-test:<run id> -o baseline.jsonl
      lftrace export --since 1d --status error -o failures.jsonl
    """
    where = trace_filter(
        name=name, status=status, level=level, model=model, tags=tag, user=user, session=session, since=since,
        until=until, min_latency=min_latency, min_tokens=min_tokens, min_cost=min_cost, search=search,
    )  # fmt: skip
    if not ids and not where.active:
        raise InputError("pass a trace id (or `last`), or filters such as --tag TAG (e.g. --tag lftrace-test:<run id>)")
    store = open_store()
    # traces read from files as they are; stored ones by id, streamed from the store when written (jsonout.py)
    items: list[Trace | str] = [_export_item(ref, store) for ref in ids or ()]
    if where.active:
        found = [s.id for s in reversed(store.list_traces(limit=None, where=where))]  # oldest first
        if not found:
            raise TraceNotFound("no stored trace matches these filters (see `lftrace list` with the same filters)")
        items += found
    indent = len(items) == 1 and not where.active  # one trace: a JSON object; several: JSONL
    ascii_only = output is None and not stdout_takes_utf8()

    def chunks() -> Iterator[bytes | memoryview]:
        from ..jsonout import loaded_trace_chunks, stored_trace_chunks

        for item in items:
            if isinstance(item, Trace):
                yield from loaded_trace_chunks(item, indent=indent, ascii_only=ascii_only)
            else:
                yield from stored_trace_chunks(store, item, indent=indent, ascii_only=ascii_only) or ()
            yield b"\n"

    if output is None:
        out = sys.stdout.buffer
        sys.stdout.flush()
        for chunk in chunks():
            out.write(chunk)
        out.flush()
        return
    _write_private(output, chunks())
    err_console().print(Text(clean_line(f"wrote {len(items)} trace(s) to {output}")))


def _export_item(ref: str, store: TraceStore) -> Trace | str:
    """A trace to export: read from a file, or a stored trace's full id (resolved now: a bad id fails first)."""
    if Path(ref).is_file():
        return resolve_trace(ref, store)
    wanted = resolve_trace_ref(ref, store)
    if not wanted.strip():  # a blank id written by another tool: read whole, as get_trace does
        return store.get_trace(wanted)
    return store.resolve_id(wanted)


def _write_private(path: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Traces hold prompts and user data: the file is 0600 (and directories made for it 0700), whatever the
    umask; an existing file is tightened too."""
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            for chunk in chunks:
                handle.write(chunk)
    finally:
        if fd != -1:
            os.close(fd)


@app.command("import")
def import_command(
    files: Annotated[list[Path], typer.Argument(help="Files from `lftrace export`: a trace, a JSON list, or JSONL.")],
) -> None:
    """Load traces from files into the local store (a trace already stored is replaced).

    A file holds one trace, a JSON list of traces or JSONL (what lftrace export writes); a bad file imports nothing.

    [bold]Example[/bold]

      lftrace import baseline.jsonl
    """
    traces: list[Trace] = []
    for path in files:  # read everything first: a bad file imports nothing
        traces += read_traces_file(path)
    with open_store(read_only=False) as store:
        try:
            store.write_traces(traces)
        except (UnicodeError, OverflowError):  # values SQLite refuses (lone surrogates): stored escaped
            from ..writer import repair_trace

            store.write_traces([repair_trace(t) for t in traces])
    err_console().print(
        Text(clean_line(f"imported {len(traces)} trace(s) from {len(files)} file(s) into {store_path()}"))
    )


# -- diff -------------------------------------------------------------------------------------------


@app.command("diff")
def diff_command(
    a: Annotated[str, typer.Argument(help="Trace A: id, prefix, `last`, `last~N` or a JSON file.")],
    b: Annotated[str, typer.Argument(help="Trace B: id, prefix, `last`, `last~N` or a JSON file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 5 when the structure or an output changed.")
    ] = False,
    show_same: Annotated[bool, typer.Option("--all", help="List unchanged observations too.")] = False,
    expand: Annotated[
        bool,
        typer.Option("--expand", help="List every added and removed observation (long runs of them are folded)."),
    ] = False,
) -> None:
    """Compare two traces: added, removed and changed observations, deltas of latency, tokens and cost.

    A and B are stored traces (id, prefix, 'last', 'last~N') or JSON files from lftrace export; observations are matched by path (name and position among siblings of the same name).

    [bold]Example[/bold]

      lftrace diff last~1 last
      lftrace diff baseline.json last --fail-on-change
    """
    from ..diff import diff_lines, diff_traces

    store: TraceStore | None = None
    if not (Path(a).is_file() and Path(b).is_file()):
        store = open_store()
    # outputs only: a long agent run's inputs (the whole conversation at every step) are most of its bytes
    diff = diff_traces(resolve_trace(a, store, inputs=False), resolve_trace(b, store, inputs=False))
    if as_json:
        print_json(diff.to_dict())
    else:
        from rich.text import Text

        out = console()
        styles = {"+": "green", "-": "red", "~": "yellow", "@": "cyan"}
        for line in diff_lines(diff, show_same=show_same, expand=expand):
            style = "bold" if line.startswith(("A ", "total:", "---", "+++")) else styles.get(line[:1], "")
            out.print(Text(clean_line(line), style=style), soft_wrap=True)
    if fail_on_change and diff.changed:
        raise typer.Exit(ExitStatus.ASSERTION_FAILED)


# -- stats ------------------------------------------------------------------------------------------


@app.command("stats")
def stats_command(
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Per node, tool and model across stored traces: count, error rate, p50/p95 latency, tokens, cost.

    Each observation is counted once (a subgraph used as a node is one node run); a node's tokens and cost are those of the LLM calls inside it. Filters are those of `lftrace list` and combine with AND; --since takes 30m, 1h, 2d, 1w or an ISO date.

    [bold]Example[/bold]

      lftrace stats --since 1d
      lftrace stats --tag nightly --json
      lftrace stats --status error --model gpt-4o-mini
    """
    from ..stats import compute_stats

    where = trace_filter(
        name=name, status=status, level=level, model=model, tags=tag, user=user, session=session, since=since,
        until=until, min_latency=min_latency, min_tokens=min_tokens, min_cost=min_cost, search=search,
    )  # fmt: skip
    if not store_path().exists():
        traces: Iterable[Trace] = []
    else:
        traces = open_store().iter_traces(where=where, inputs=False, outputs=False)  # stats reads neither
    report = compute_stats(traces)
    if as_json:
        print_json(report.to_dict())
        return
    out = console()
    if not report.traces:
        out.print("no traces match (run `lftrace run ...` or `lftrace test ...` first)")
        return
    if not sys.stdout.isatty():  # for scripts, as `list` does: tab-separated values
        sys.stdout.write(report.tsv())
        return
    from rich.table import Table

    out.print(f"{report.traces} trace(s)")
    for kind, title in (("node", "node"), ("tool", "tool"), ("model", "model")):
        rows = report.by_kind(kind)
        if not rows:
            continue
        table = Table(show_edge=False, pad_edge=False)
        table.add_column(title)
        for column in ("count", "errors", "p50", "p95", "tokens", "cost"):
            table.add_column(column, justify="right")
        for row in rows:
            cost = (
                "?" if row.unpriced == row.count and not row.cost else _money(row.cost) + ("*" if row.unpriced else "")
            )
            table.add_row(
                Text(clean_line(row.key)),
                str(row.count),
                f"{row.errors} ({row.error_rate:.0%})",
                _latency(row.p50),
                _latency(row.p95),
                str(row.tokens),
                cost,
            )
        out.print()
        out.print(table)
    if any(r.unpriced for r in report.rows.values()):
        out.print(
            "\n[dim]? no known price for the model; * some calls had no known price: the cost is a lower bound[/]"
        )
