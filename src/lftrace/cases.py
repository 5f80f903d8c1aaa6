"""Run one ``lftrace test`` case and check it: one input, or several turns on one LangGraph thread.

A multi-turn case (``"turns": [{"input": ...}, {"resume": ..., "expect": {...}}]``) runs its turns in order on
one thread (the case's ``thread_id``, or a fresh one per test run), each turn its own trace under the thread's
session, each checked against its own ``expect``; the case stops at the first turn that fails and names it.
``CaseRunner`` works on threads (``run_cases``) and, with ``arun``, on one event loop (``test --async``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CANCELLED, TERMINATED, StoreError

if TYPE_CHECKING:  # imported where used: `lftrace list`/`show` import this module's constants only
    from .assertions import Expectations
    from .config import Settings
    from .dataset import Case, CaseResult, Turn
    from .model import Trace
    from .runner import RunResult

TEST_TAG_PREFIX = "lftrace-test:"
CASE_METADATA_KEY = "lftrace_case"
RUN_METADATA_KEY = "lftrace_test_run"


@dataclass
class RunOptions:
    """What ``lftrace test`` applies to every case (a case's own ``config`` and ``thread_id`` come on top)."""

    config: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] | None = None  # LangGraph's runtime context (a case's own keys go on top)
    recursion_limit: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    user_id: str | None = None
    tags: Sequence[str] = ()
    use_async: bool | None = None


def _merged(base: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    out = {**base, **case}
    for key in ("configurable", "metadata"):
        if isinstance(base.get(key), Mapping) and isinstance(case.get(key), Mapping):
            out[key] = {**base[key], **case[key]}
    return out


class CaseRunner:
    """Runs a case through ``runner.execute`` (each turn its own handler and trace), then checks it."""

    def __init__(
        self,
        target: str,
        run_id: str,
        defaults: Expectations,
        *,
        baselines: Mapping[str, Trace] | None = None,
        tolerance: float = 0.25,
        settings: Settings | None = None,
        options: RunOptions | None = None,
        label: str | None = None,
    ) -> None:
        from .loader import target_factory

        self.factory: Callable[[Mapping[str, Any] | None], Any] = target_factory(target)  # LoadError before cases
        self.target = label or target  # as typed: `agent` for a langgraph.json graph
        self.run_id = run_id
        self.defaults = defaults
        self.baselines = baselines or {}
        self.tolerance = tolerance
        self.settings = settings
        self.options = options or RunOptions()
        self.store_error: StoreError | None = None  # the store cannot take traces: the test stops with exit 7
        # id(case) -> the case's verdict so far, the handler of the turn running and when the case started:
        # what Ctrl-C or SIGTERM closes and reports (``stopped``)
        self._live: dict[int, _Live] = {}
        self._live_lock = threading.Lock()

    # -- the plan of a case -------------------------------------------------------------------------------------
    def _thread(self, case: Case) -> str | None:
        if case.thread_id is not None:
            return case.thread_id
        if len(case.steps()) > 1 or any(t.is_resume for t in case.steps()):
            import hashlib  # here: every lftrace command imports this module (cli.ci), few run multi-turn cases

            digest = hashlib.sha256(case.name.encode("utf-8")).hexdigest()[:12]
            return f"lftrace-test-{self.run_id}-{digest}"  # fresh per test run: never resumes an old thread
        return None

    def _runnable_and_options(self, case: Case) -> tuple[Any, dict[str, Any]]:
        from .runner import user_config

        o = self.options
        config = _merged(o.config, case.config)
        metadata = {**o.metadata, CASE_METADATA_KEY: case.name, RUN_METADATA_KEY: self.run_id, **case.metadata}
        runnable = self.factory(user_config(config, recursion_limit=o.recursion_limit, metadata=metadata))
        context = None if o.context is None and case.context is None else {**(o.context or {}), **(case.context or {})}
        options = {
            "config": config,
            "context": context,
            "recursion_limit": o.recursion_limit,
            "metadata": metadata,
            "session_id": o.session_id,
            "user_id": o.user_id,
            "tags": [*o.tags, TEST_TAG_PREFIX + self.run_id],
            "use_async": o.use_async,
            "settings": self.settings,
            "label": self.target,
            "deliver": False,  # one delivery after every case, bounded by LANGFUSE_TIMEOUT: never per case
        }
        return runnable, options

    @staticmethod
    def _turn_options(turn: Turn, thread: str | None) -> dict[str, Any]:
        if turn.is_resume:
            return {"thread_id": thread, "resume": [json.dumps(turn.resume)]}
        return {"thread_id": thread, "value": turn.input}

    # -- running -----------------------------------------------------------------------------------------------
    def _watch(self, case: Case, verdict: _Verdict) -> _Live:
        live = _Live(verdict, time.perf_counter())
        with self._live_lock:
            self._live[id(case)] = live
        return live

    def _done(self, case: Case) -> None:
        with self._live_lock:
            self._live.pop(id(case), None)

    def __call__(self, case: Case) -> CaseResult:
        from .runner import execute

        runnable, options = self._runnable_and_options(case)
        verdict = _Verdict(case, self)
        live = self._watch(case, verdict)
        thread = self._thread(case)
        try:
            for index, turn in enumerate(case.steps(), start=1):
                live.turn = index
                try:
                    run = execute(runnable, **options, **self._turn_options(turn, thread), progress=live.progress)
                except Exception as exc:
                    return self._broken(verdict, index, exc)
                thread = thread or run.thread_id
                if not verdict.add(index, turn, run):
                    break
            return verdict.result()
        finally:
            self._done(case)

    async def arun(self, case: Case) -> CaseResult:
        from .runner import aexecute

        runnable, options = self._runnable_and_options(case)
        options["use_async"] = True
        verdict = _Verdict(case, self)
        live = self._watch(case, verdict)
        thread = self._thread(case)
        try:
            for index, turn in enumerate(case.steps(), start=1):
                live.turn = index
                try:
                    run = await aexecute(
                        runnable, **options, **self._turn_options(turn, thread), progress=live.progress
                    )
                except Exception as exc:
                    return self._broken(verdict, index, exc)
                thread = thread or run.thread_id
                if not verdict.add(index, turn, run):
                    break
            return verdict.result()
        finally:
            self._done(case)

    def _broken(self, verdict: _Verdict, index: int, exc: Exception) -> CaseResult:
        """A turn that could not run: bad input for it, no pending interrupt to resume, ... A store that cannot be
        written stops the whole test (exit 7, the cause said)."""
        if isinstance(exc, StoreError):
            self.store_error = exc
            return verdict.broken(index, exc, "trace not saved")
        return verdict.broken(index, exc)

    def stopped(self, case: Case, reason: str = TERMINATED) -> CaseResult:
        """Ctrl-C or SIGTERM (``reason``: errors.CANCELLED / TERMINATED): the result of a case that was running, its
        open runs closed now (WARNING, ``reason``) and its partial trace handed to the writer, marked as a run that
        was stopped (as ``lftrace run`` does)."""
        from .dataset import CaseResult

        with self._live_lock:
            live = self._live.get(id(case))
        if live is None:  # finished between the signal and now, or never started
            return CaseResult(case, error=reason)
        out = live.verdict.out
        handler = live.handler
        trace_id = None
        if handler is not None:
            handler.finish_open_runs(reason)
            trace_id = handler.last_trace_id
        out.turns = live.turn
        out.failed_turn = live.turn if live.verdict.multi else None
        out.latency = (out.latency or 0.0) + (time.perf_counter() - live.started)
        out.error = f"{live.verdict.where(live.turn)}{reason} while the case ran" + (
            "; partial trace saved" if trace_id else ""
        )
        if trace_id is not None and trace_id not in out.trace_ids:
            out.trace_id = trace_id
            out.trace_ids.append(trace_id)
        return out


@dataclass
class _Live:
    """A case while it runs: its verdict so far, the turn and the handler tracing it (``progress`` keeps it)."""

    verdict: _Verdict
    started: float
    turn: int = 1
    handler: Any = None

    def progress(self, event: str, payload: Any) -> None:
        if event == "running":
            self.handler = payload


class _Verdict:
    """The result of a case, turn by turn."""

    def __init__(self, case: Case, runner: CaseRunner) -> None:
        self.case = case
        self.runner = runner
        from .dataset import CaseResult

        self.multi = len(case.steps()) > 1
        self.out = CaseResult(case, turns=0, latency=0.0)

    def where(self, index: int) -> str:
        return f"turn {index}: " if self.multi else ""

    def broken(self, index: int, exc: Exception, what: str | None = None) -> CaseResult:
        self.out.turns = index
        self.out.error = f"{self.where(index)}{what or type(exc).__name__}: {exc}"
        self.out.failed_turn = index if self.multi else None
        return self.out

    def add(self, index: int, turn: Turn, run: RunResult) -> bool:
        """Record one turn; False when the case stops here (the turn raised or failed a check)."""
        from .assertions import AssertionFailure, check, output_text

        out = self.out
        out.turns = index
        trace = run.trace
        out.latency = (out.latency or 0.0) + (trace.latency if trace and trace.latency is not None else run.elapsed)
        if run.cancelled:  # stopped from outside (SIGTERM, Ctrl-C): the partial trace is saved
            stopped = TERMINATED if run.terminated else CANCELLED
            out.error = f"{self.where(index)}{stopped} while the case ran"
        elif run.error is not None:
            out.error = f"{self.where(index)}{type(run.error).__name__}: {run.error}"
        elif trace is None:
            out.error = self.where(index) + ("; ".join(run.notes) or "no trace was recorded for this case")
        if trace is not None:
            out.trace_id = trace.id
            out.trace_ids.append(trace.id)
            out.tokens += trace.total_tokens
            if trace.total_cost is not None:
                out.cost = (out.cost or 0.0) + trace.total_cost
        if out.error is not None or trace is None:
            out.failed_turn = index if self.multi else None
            return False
        out.output = output_text(run.output)
        failures = check(trace, out.output, turn.expect.merged_over(self.runner.defaults))
        baseline = self.runner.baselines.get(self.case.name) if not self.multi else None
        if baseline is not None:
            from .diff import compare_with_baseline

            out.baseline_id = baseline.id
            failures += compare_with_baseline(trace, baseline, self.runner.tolerance)
        if failures:
            if self.multi:
                failures = [
                    AssertionFailure(f"turn {index}: {f.name}", f.expected, f.actual, f.message) for f in failures
                ]
                out.failed_turn = index
            out.failures = failures
            return False
        return True

    def result(self) -> CaseResult:
        return self.out
