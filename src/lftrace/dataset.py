"""Test datasets (JSONL), sharding, and running cases concurrently.

One case per line: ``{"name": "paris", "input": "What's the weather in Paris?", "expect": {...}}``.
Every line is validated before anything runs, so a typo on line 40 never costs 39 model calls.

Sharding hashes the case name with SHA-256 (not Python's per-process ``hash``), so ``--shard 2/4`` picks
the same cases on every machine and the N shards partition the dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assertions import AssertionFailure, Expectations
from .errors import CANCELLED, TERMINATED, InputError, Terminated, stop_reason

_CASE_KEYS = {"name", "input", "turns", "expect", "metadata", "config", "context", "thread_id"}
_TURN_KEYS = {"input", "resume", "expect"}


@dataclass(frozen=True)
class Turn:
    """One step of a multi-turn case: an input, or a resume value for the interrupt the thread waits on."""

    input: Any = None
    resume: Any = None
    is_resume: bool = False
    expect: Expectations = field(default_factory=Expectations)


@dataclass(frozen=True)
class Case:
    name: str
    input: Any
    expect: Expectations = field(default_factory=Expectations)
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # merged into the run's RunnableConfig
    thread_id: str | None = None  # default for several turns: a fresh thread per test run
    turns: tuple[Turn, ...] = ()  # empty: one turn, ``input`` checked against ``expect``
    context: dict[str, Any] | None = None  # LangGraph's runtime context for the case (over ``test --context``)

    def steps(self) -> tuple[Turn, ...]:
        """The turns to run: ``turns``, or the one turn of a plain case; the case's ``expect`` joins the last."""
        if not self.turns:
            return (Turn(input=self.input, expect=self.expect),)
        if self.expect.is_empty:
            return self.turns
        last = self.turns[-1]
        return (*self.turns[:-1], Turn(last.input, last.resume, last.is_resume, last.expect.merged_over(self.expect)))


@dataclass
class CaseResult:
    """The verdict of one case. ``error`` is set when the target raised (or could not run)."""

    case: Case
    failures: list[AssertionFailure] = field(default_factory=list)
    error: str | None = None
    trace_id: str | None = None
    latency: float | None = None  # seconds (trace latency; wall time when there is no trace)
    tokens: int = 0
    cost: float | None = None
    output: str = ""
    baseline_id: str | None = None
    skipped: bool = False  # not run because of --fail-fast (or SIGTERM: ``skip_reason``)
    skip_reason: str | None = None
    turns: int = 1  # turns run (a multi-turn case stops at the first failing turn)
    failed_turn: int | None = None  # 1-based, for a multi-turn case that failed
    trace_ids: list[str] = field(default_factory=list)  # one trace per turn

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None and not self.skipped

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error is not None:
            return "error"
        return "fail" if self.failures else "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "status": self.status,
            "passed": self.passed,
            "traceId": self.trace_id,
            "latency": self.latency,
            "tokens": self.tokens,
            "cost": self.cost,
            "output": self.output,
            "error": self.error,
            "baselineTraceId": self.baseline_id,
            "failures": [f.to_dict() for f in self.failures],
            "turns": self.turns,
            "failedTurn": self.failed_turn,
            "traceIds": list(self.trace_ids),
            **({"skipReason": self.skip_reason} if self.skip_reason else {}),
        }


def load_dataset(path: Path | str) -> list[Case]:
    """Every case of a JSONL file; InputError naming the file and line on the first bad line."""
    from .validate import read_text

    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset {path} does not exist (pass a JSONL file with one case per line)")
    text = read_text(path, "dataset")
    cases: list[Case] = []
    names: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        case = parse_case(line, f"{path}:{number}", number)
        if case.name in names:
            raise InputError(
                f"{path}:{number}: duplicate case name '{case.name}' (first on line {names[case.name]}; names must be unique)"
            )
        names[case.name] = number
        cases.append(case)
    if not cases:
        raise InputError(f"dataset {path} has no cases (expected one JSON object per line)")
    return cases


DATASET_PREFIX = "dataset:"  # `lftrace test TARGET dataset:NAME`: the cases are a Langfuse (or local) dataset's items
TEST_SCORE = "lftrace-test"  # the verdict of each item, a score of its trace (Langfuse shows the run's pass rate)


@dataclass(frozen=True)
class DatasetRun:
    """The dataset run that ``lftrace test TARGET dataset:NAME`` records: an experiment, as Langfuse groups them."""

    dataset: str
    dataset_id: str
    run_name: str
    experiment_id: str
    url: str | None  # its results in Langfuse (None for a local dataset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "datasetId": self.dataset_id,
            "runName": self.run_name,
            "experimentId": self.experiment_id,
            "url": self.url,
        }


def dataset_argument(value: str) -> str | None:
    """NAME for ``dataset:NAME`` (unless a file has that name), else None (a JSONL file)."""
    if not value.startswith(DATASET_PREFIX) or Path(value).exists():
        return None
    name = value[len(DATASET_PREFIX) :].strip()
    if not name:
        raise InputError("dataset: needs a dataset's name, e.g. dataset:qa-smoke")
    return name


def load_dataset_items(
    client: Any, name: str, *, run_name: str, check_expected: bool = False
) -> tuple[list[Case], DatasetRun]:
    """A dataset's active items as cases, each linked to the run ``run_name`` of the dataset.

    The dataset is Langfuse's with its keys, else the store's (``create_dataset``, ``lftrace serve``). An item's
    input is the graph's input; its metadata may hold ``name`` (the case's name; else the item id), ``expect``
    (the checks of a JSONL case) and ``turns`` (the turns after the input, as in a JSONL case: the item is then a
    conversation on one thread, ``expect`` joining its last turn). ``check_expected``: the item's expected output is checked too (text the reply
    contains, or fields the output holds). Every trace carries the run's ``langfuse.experiment.*`` attributes.
    """
    from .experiments import experiment_id_for, experiment_project, experiment_url
    from .model import EXPERIMENT_KEY

    dataset = client.get_dataset(name)
    project = experiment_project(client)
    experiment = experiment_id_for(project, dataset.id, run_name)
    cases: list[Case] = []
    names: set[str] = set()
    for item in dataset.items:
        if item.status != "ACTIVE":
            continue
        where = f"dataset {name!r} item {item.id}"
        metadata = item.metadata if isinstance(item.metadata, dict) else {}
        if item.input is None:
            raise InputError(f"{where} has no input (the value passed to the graph): give it one or archive it")
        expect = Expectations.from_dict(metadata.get("expect"), where=where)
        if check_expected and item.expected_output is not None and expect.expected_output is None:
            expect = dataclasses.replace(expect, expected_output=item.expected_output)
        given = metadata.get("name")
        label: str = given if isinstance(given, str) and given.strip() else item.id
        label = label if label not in names else f"{label} ({item.id})"
        names.add(label)
        linked = {"id": experiment, "name": run_name, "dataset.id": dataset.id, "item.id": item.id}
        if item.expected_output is not None:
            linked["item.expected_output"] = item.expected_output
        if metadata:
            linked["item.metadata"] = metadata
        later = metadata.get("turns")  # a conversation: the item's input is its first turn
        turns = () if later is None else (Turn(item.input), *_parse_turns(later, f"{where}: metadata"))
        cases.append(Case(label, item.input, expect, {EXPERIMENT_KEY: linked}, turns=turns))
    if not cases:
        raise InputError(f"dataset {name!r} has no active items: add some (create_dataset_item) or unarchive them")
    url = experiment_url(client.settings, project, experiment)
    return cases, DatasetRun(name, dataset.id, run_name, experiment, url)


def parse_case(line: str, where: str, number: int = 0) -> Case:
    from .validate import loads

    try:
        data = loads(line, where)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InputError(f'{where}: expected an object like {{"name": "...", "input": "...", "expect": {{...}}}}')
    unknown = sorted(set(data) - _CASE_KEYS)
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)} "
            "(a case has name, input or turns, expect, metadata, config, context, thread_id)"
        )
    if ("input" in data) == ("turns" in data):
        raise InputError(
            f'{where}: give "input" (the value passed to the graph) or "turns" '
            '(e.g. [{"input": "..."}, {"resume": "yes", "expect": {...}}]), not both'
            if "input" in data
            else f'{where}: missing "input" (the value passed to the graph) or "turns"'
        )
    name = data.get("name", f"line-{number}")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f'{where}: "name" must be a non-empty string')
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f'{where}: "metadata" must be an object')
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise InputError(f'{where}: "config" must be an object (a RunnableConfig, e.g. {{"recursion_limit": 50}})')
    context = data.get("context")
    if context is not None and not isinstance(context, dict):
        raise InputError(
            f'{where}: "context" must be an object (the graph\'s runtime context, e.g. {{"user_id": "u-1"}})'
        )
    thread_id = data.get("thread_id")
    if thread_id is not None and (not isinstance(thread_id, str | int) or isinstance(thread_id, bool)):
        raise InputError(f'{where}: "thread_id" must be a string')
    turns = _parse_turns(data.get("turns"), where) if "turns" in data else ()
    expect = Expectations.from_dict(data.get("expect"), where=where)
    thread = None if thread_id is None else str(thread_id)
    return Case(name, data.get("input"), expect, metadata, number, config, thread, turns, context)


def _parse_turns(value: Any, where: str) -> tuple[Turn, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f'{where}: "turns" must be a non-empty list like [{{"input": "..."}}, {{"resume": "yes"}}]')
    turns = []
    for index, item in enumerate(value, start=1):
        here = f"{where}: turn {index}"
        if not isinstance(item, dict):
            raise InputError(f'{here}: expected an object like {{"input": "..."}} or {{"resume": "yes"}}')
        unknown = sorted(set(item) - _TURN_KEYS)
        if unknown:
            raise InputError(f"{here}: unknown key(s) {', '.join(unknown)} (a turn has input or resume, and expect)")
        if ("input" in item) == ("resume" in item):
            raise InputError(f'{here}: give either "input" or "resume"')
        expect = Expectations.from_dict(item.get("expect"), where=here)
        turns.append(Turn(item.get("input"), item.get("resume"), "resume" in item, expect))
    return tuple(turns)


# -- sharding -------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1-based) -> (K, N)."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise InputError(f"--shard '{text}' is not K/N (e.g. --shard 2/4 runs the second of four slices)") from None
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"--shard '{text}': K must be between 1 and N (e.g. 1/{max(n, 2)})")
    return k, n


def shard_index(name: str, total: int) -> int:
    """0-based shard of a case: stable across processes, machines and Python versions."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total


def select_shard(cases: Sequence[Case], k: int, n: int) -> list[Case]:
    return [c for c in cases if shard_index(c.name, n) == k - 1]


# -- running --------------------------------------------------------------------------------

SIGNAL_POLL_S = 0.2  # how often the waiting main thread wakes to run a pending signal handler
NOT_RUN = {
    CANCELLED: "not run: Ctrl-C stopped the test run",
    TERMINATED: "not run: SIGTERM stopped the test run",
}


class CasesStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped ``run_cases``: ``results`` in dataset order, the cases that were running reported
    by ``on_stop`` (an error, their partial traces saved) and the ones not started as skipped. ``reason`` is
    ``errors.CANCELLED`` (Ctrl-C, exit 130) or ``errors.TERMINATED`` (SIGTERM, exit 143)."""

    def __init__(self, results: list[CaseResult], reason: str) -> None:
        super().__init__(reason)
        self.results = results
        self.reason = reason


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While ``lftrace test`` runs its cases: the first Ctrl-C raises KeyboardInterrupt and the first SIGTERM
    Terminated in the main thread (``run_cases`` stops the cases on either); every later one is ignored, for the
    rest of the process, so a second Ctrl-C or a repeated SIGTERM cannot cut short the stop (the running cases'
    partial traces closed and saved) nor the report written after it. Ctrl-C stays ignored where it was (a
    background job). Without a stop the handlers are restored when the block ends. Main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    watched = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        watched.append(signal.SIGINT)
    fired = [False]

    def stop(signum: int, frame: Any) -> None:
        if fired[0]:
            return
        fired[0] = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    try:
        previous = {s: signal.signal(s, stop) for s in watched}
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            if not fired[0] and signal.getsignal(s) is stop:
                signal.signal(s, handler)


def _stopped_results(
    cases: Sequence[Case],
    results: dict[int, CaseResult],
    running: Sequence[int],
    on_stop: Callable[[Case, str], CaseResult] | None,
    reason: str,
) -> list[CaseResult]:
    out = []
    for index, case in enumerate(cases):
        if index in results:
            out.append(results[index])
        elif index in running:
            out.append(on_stop(case, reason) if on_stop is not None else CaseResult(case, error=reason))
        else:
            out.append(CaseResult(case, skipped=True, skip_reason=NOT_RUN[reason]))
    return out


def run_cases(
    cases: Sequence[Case],
    run_one: Callable[[Case], CaseResult],
    *,
    concurrency: int = 1,
    fail_fast: bool = False,
    on_done: Callable[[CaseResult], None] | None = None,
    on_stop: Callable[[Case, str], CaseResult] | None = None,
) -> list[CaseResult]:
    """Run every case on ``concurrency`` threads; results in dataset order.

    ``run_one`` must not raise (an exception becomes the case's error). With ``fail_fast`` no new case
    starts after the first failure; cases not started are reported as skipped.

    Ctrl-C or SIGTERM (KeyboardInterrupt or ``Terminated`` raised in the calling thread while it waits, see
    ``stop_signals``) stops at once: no new case starts, ``on_stop(case, reason)`` reports each case still running
    (it closes their traces; their threads are left to the process exit), and ``CasesStopped`` carries every
    result.
    """
    if concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    results: dict[int, CaseResult] = {}
    stop = threading.Event()

    def guarded(index: int, case: Case) -> CaseResult:
        if stop.is_set():
            return CaseResult(case, skipped=True)
        started = time.perf_counter()
        try:
            result = run_one(case)
        except Exception as exc:  # a bug in a runner must not take the other cases down
            result = CaseResult(case, error=f"{type(exc).__name__}: {exc}", latency=time.perf_counter() - started)
        if fail_fast and not result.passed:
            stop.set()
        return result

    pending: Iterator[tuple[int, Case]] = iter(enumerate(cases))
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lftrace-case")
    running: dict[Future[CaseResult], int] = {}

    def top_up() -> None:
        while len(running) < concurrency:
            item = next(pending, None)
            if item is None:
                return
            running[pool.submit(guarded, *item)] = item[0]

    try:
        top_up()
        while running:
            # with a timeout: SIGTERM may be delivered to a worker thread, and Python runs the handler only when the
            # main thread runs again (a wait without one stays blocked while the cases are stuck)
            done, _ = wait(running, timeout=SIGNAL_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                results[index] = future.result()
                if on_done is not None:
                    on_done(results[index])
            top_up()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (Terminated)
        stop.set()
        for future in list(running):  # finished meanwhile: a result like any other
            if future.done() and future.exception() is None:
                results[running.pop(future)] = future.result()
        pool.shutdown(wait=False, cancel_futures=True)  # a case stuck in the target cannot hold the exit
        reason = stop_reason(interrupt)
        raise CasesStopped(_stopped_results(cases, results, list(running.values()), on_stop, reason), reason) from None
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(cases))]


def run_cases_async(
    cases: Sequence[Case],
    run_one: Callable[[Case], Awaitable[CaseResult]],
    *,
    concurrency: int = 1,
    fail_fast: bool = False,
    on_done: Callable[[CaseResult], None] | None = None,
    on_stop: Callable[[Case, str], CaseResult] | None = None,
) -> list[CaseResult]:
    """``run_cases`` on one event loop: at most ``concurrency`` cases at once (``lftrace test --async``).

    Ctrl-C or SIGTERM (in the main thread) cancels the cases at their next ``await``: ``on_stop(case, reason)``
    reports each case that had started (it closes their traces first), and ``CasesStopped`` carries every result.
    After a stop both signals stay ignored (as after ``stop_signals``'s): the stop and the report are done whole.
    """
    import asyncio

    if concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    results: dict[int, CaseResult] = {}
    started_cases: set[int] = set()
    terminated = threading.Event()  # stopped by a signal
    reasons: list[str] = []

    async def main() -> list[CaseResult]:
        limit = asyncio.Semaphore(concurrency)
        failed = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def guarded(index: int, case: Case) -> CaseResult:
            async with limit:
                if failed.is_set():
                    result = CaseResult(case, skipped=True)
                else:
                    started_cases.add(index)
                    started = time.perf_counter()
                    try:
                        result = await run_one(case)
                    except Exception as exc:  # a bug in a runner must not take the other cases down
                        result = CaseResult(
                            case, error=f"{type(exc).__name__}: {exc}", latency=time.perf_counter() - started
                        )
                    if fail_fast and not result.passed:
                        failed.set()
            results[index] = result
            if on_done is not None:
                on_done(result)
            return result

        tasks = [asyncio.ensure_future(guarded(i, case)) for i, case in enumerate(cases)]

        def stop_now(reason: str) -> None:  # on the loop, between two steps of the cases: close what runs, cancel
            if terminated.is_set():
                return
            terminated.set()
            reasons.append(reason)
            running = [i for i in started_cases if i not in results]
            stopped.extend(_stopped_results(cases, results, running, on_stop, reason))
            for task in tasks:
                task.cancel()

        # the loop's own handlers: its wakeup fd wakes the loop whichever thread the signal was delivered to
        previous = _on_stop_signals(loop, stop_now)
        try:
            await asyncio.wait(tasks)
        finally:
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN if terminated.is_set() else handler)
        return [] if terminated.is_set() else [task.result() for task in tasks]

    stopped: list[CaseResult] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # as asyncio.run does
    try:
        done = loop.run_until_complete(main())
    finally:
        _close_loop(loop, wait=not terminated.is_set())
    if terminated.is_set():
        raise CasesStopped(stopped, reasons[0])
    return done


def _close_loop(loop: Any, *, wait: bool) -> None:
    """``asyncio.run``'s ending: cancel what is left and close. ``wait=False`` (Ctrl-C, SIGTERM): do not wait for the
    loop's executor, where a sync node of an async graph may be stuck (its thread is left to the exit)."""
    import asyncio

    try:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        if wait:
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()  # shuts the executor down without waiting when it is still there


def _on_stop_signals(loop: Any, callback: Callable[[str], None]) -> dict[int, Any]:
    """``callback(reason)`` on the loop at SIGTERM and at Ctrl-C (unless Ctrl-C is ignored: a background job), main
    thread only; {signal: the handler to restore after}, empty when none could be set."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return {}
    previous: dict[int, Any] = {}
    for signum, reason in ((signal.SIGTERM, TERMINATED), (signal.SIGINT, CANCELLED)):
        handler = signal.getsignal(signum)
        if signum == signal.SIGINT and handler in (signal.SIG_IGN, None):
            continue
        try:
            loop.add_signal_handler(signum, callback, reason)
        except (ValueError, RuntimeError, NotImplementedError, OSError):  # no signals here (Windows, embedded)
            continue
        previous[signum] = handler if handler is not None else signal.SIG_DFL
    return previous
