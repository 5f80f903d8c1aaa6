"""``run_batched_evaluation``: score observations already recorded, with the SDK 5 names.

The observations come page by page from ``api.observations.get_many`` (Langfuse's with keys, else the local store,
``filter`` included: Langfuse's JSON conditions), newest first. Each one goes through ``mapper(item=...)`` to an
``EvaluatorInputs``, then every evaluator and the composite evaluator; each evaluation becomes a score of that
observation. A page that cannot be fetched (after ``max_retries``) ends the run with ``completed=False`` and a
``resume_token`` to go on from there, as does ``max_items`` when more items are left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .experiments import Evaluation, call_maybe_async, evaluations_of, run_to_end
from .model import json_or_text

log = logging.getLogger("lftrace")


class EvaluatorInputs:
    """What the mapper makes of an observation: the evaluators' keyword arguments."""

    def __init__(self, *, input: Any, output: Any, expected_output: Any = None, metadata: Any = None) -> None:
        self.input, self.output, self.expected_output, self.metadata = input, output, expected_output, metadata


class EvaluatorStats:
    def __init__(self, name: str) -> None:
        self.name = name
        self.total_runs = self.successful_runs = self.failed_runs = self.total_scores_created = 0


class BatchEvaluationResumeToken:
    """Where a run stopped: pass it as ``resume_from`` to go on (with the same filter, or none)."""

    def __init__(
        self,
        *,
        filter: str | None,
        last_processed_timestamp: str,
        last_processed_id: str,
        items_processed: int,
        cursor: str | None = None,
        last_page_ids: list[str] | None = None,
    ) -> None:
        self.filter, self.cursor, self.items_processed = filter, cursor, items_processed
        self.last_processed_timestamp, self.last_processed_id = last_processed_timestamp, last_processed_id
        self.last_page_ids = last_page_ids


class BatchEvaluationResult:
    def __init__(self, **fields: Any) -> None:
        self.total_items_fetched: int = fields["total_items_fetched"]
        self.total_items_processed: int = fields["total_items_processed"]
        self.total_items_failed: int = fields["total_items_failed"]
        self.total_scores_created: int = fields["total_scores_created"]
        self.total_composite_scores_created: int = fields["total_composite_scores_created"]
        self.total_evaluations_failed: int = fields["total_evaluations_failed"]
        self.evaluator_stats: list[EvaluatorStats] = fields["evaluator_stats"]
        self.resume_token: BatchEvaluationResumeToken | None = fields["resume_token"]
        self.completed: bool = fields["completed"]
        self.duration_seconds: float = fields["duration_seconds"]
        self.failed_item_ids: list[str] = fields["failed_item_ids"]
        self.error_summary: dict[str, int] = fields["error_summary"]
        self.has_more_items: bool = fields["has_more_items"]
        self.item_evaluations: dict[str, list[Evaluation]] = fields["item_evaluations"]

    def __str__(self) -> str:
        lines = [
            f"Batch evaluation {'completed' if self.completed else 'stopped early'} in {self.duration_seconds:.2f}s",
            f"  items: {self.total_items_processed} evaluated, {self.total_items_failed} failed, "
            f"{self.total_items_fetched} fetched",
            f"  scores: {self.total_scores_created} + {self.total_composite_scores_created} composite; "
            f"{self.total_evaluations_failed} evaluator failure(s)",
        ]
        lines += [f"  {s.name}: {s.successful_runs}/{s.total_runs} ok" for s in self.evaluator_stats]
        if self.resume_token is not None:
            lines.append("  more items left: pass result.resume_token as resume_from to go on")
        return "\n".join(lines)


class _Totals:
    def __init__(self, evaluators: Sequence[Callable[..., Any]]) -> None:
        self.fetched = self.processed = self.failed = self.scores = self.composite = self.failed_evaluations = 0
        self.stats = {_name(e): EvaluatorStats(_name(e)) for e in evaluators}
        self.failed_ids: list[str] = []
        self.errors: dict[str, int] = {}
        self.evaluations: dict[str, list[Evaluation]] = {}


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__name__", "unknown_evaluator")


class BatchEvaluationApi:
    """``Langfuse.run_batched_evaluation`` (a mixin of the client)."""

    api: Any  # public_api.PublicApi, from the client

    def run_batched_evaluation(
        self,
        *,
        mapper: Callable[..., Any],
        evaluators: Sequence[Callable[..., Any]],
        filter: str | None = None,
        fetch_batch_size: int = 50,
        fields: str | None = "core,basic,io,metadata",
        max_items: int | None = None,
        max_retries: int = 3,
        composite_evaluator: Callable[..., Any] | None = None,
        max_concurrency: int = 5,
        metadata: dict[str, Any] | None = None,
        resume_from: BatchEvaluationResumeToken | None = None,
        verbose: bool = False,
        **ignored: Any,
    ) -> BatchEvaluationResult:
        """Evaluate recorded observations (newest first, ``filter``: Langfuse's JSON conditions) and score them."""
        if resume_from is not None:
            if filter is None:
                filter = resume_from.filter
            elif filter != resume_from.filter:
                raise ValueError("the resume token was made for another filter: pass the same one, or none")
        if filter is not None and not isinstance(json_or_text(filter), list):
            raise ValueError('filter must be a JSON array of conditions, e.g. [{"type": "string", ...}]')
        started = time.monotonic()
        totals = _Totals(evaluators)
        cursor = resume_from.cursor if resume_from is not None else None
        done_before = resume_from.items_processed if resume_from is not None else 0
        last: Any = None
        page_ids: list[str] = []
        completed, more = True, False
        while max_items is None or totals.fetched < max_items:
            limit = min(max(1, fetch_batch_size), 1000)
            if max_items is not None:
                limit = min(limit, max_items - totals.fetched)
            try:
                page = self._page(fields, limit, cursor, filter, max_retries)
            except Exception as exc:
                log.error("lftrace: batch evaluation: could not fetch observations: %s", exc)
                completed, more = False, True
                break
            items = list(page.data)
            totals.fetched += len(items)
            run_to_end(self._evaluate_page(items, mapper, evaluators, composite_evaluator, metadata,
                                               max_concurrency, totals))  # fmt: skip
            if items:
                last, page_ids = items[-1], [i.id for i in items]
            if verbose:
                log.info("lftrace: batch evaluation: %d items, %d scores", totals.processed, totals.scores)
            cursor = page.meta.cursor if page.meta is not None else None
            if cursor is None or not items:
                break
        else:
            more = cursor is not None
        self.flush()  # type: ignore[attr-defined]
        token = None
        if more:
            token = BatchEvaluationResumeToken(
                filter=filter,
                cursor=cursor,
                last_processed_timestamp=last.start_time.isoformat() if last is not None else "",
                last_processed_id=last.id if last is not None else "",
                items_processed=done_before + totals.processed,
                last_page_ids=sorted(page_ids),
            )
        return BatchEvaluationResult(
            total_items_fetched=totals.fetched,
            total_items_processed=totals.processed,
            total_items_failed=totals.failed,
            total_scores_created=totals.scores,
            total_composite_scores_created=totals.composite,
            total_evaluations_failed=totals.failed_evaluations,
            evaluator_stats=list(totals.stats.values()),
            resume_token=token,
            completed=completed,
            duration_seconds=time.monotonic() - started,
            failed_item_ids=totals.failed_ids,
            error_summary=totals.errors,
            has_more_items=more and completed,
            item_evaluations=totals.evaluations,
        )

    def _page(self, fields: str | None, limit: int, cursor: str | None, filter: str | None, retries: int) -> Any:
        def fetch() -> Any:
            return self.api.observations.get_many(fields=fields, limit=limit, cursor=cursor, filter=filter)

        for attempt in range(max(0, retries)):
            try:
                return fetch()
            except Exception:
                time.sleep(min(0.5 * 2**attempt, 5.0))
        return fetch()  # the last try: its error is the caller's

    async def _evaluate_page(
        self,
        items: list[Any],
        mapper: Callable[..., Any],
        evaluators: Sequence[Callable[..., Any]],
        composite: Callable[..., Any] | None,
        metadata: dict[str, Any] | None,
        concurrency: int,
        totals: _Totals,
    ) -> None:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: Any) -> None:
            async with gate:
                try:
                    await self._evaluate_item(item, mapper, evaluators, composite, metadata, totals)
                except Exception as exc:  # the mapper failed, or the item has no trace
                    totals.failed += 1
                    totals.failed_ids.append(item.id)
                    totals.errors[type(exc).__name__] = totals.errors.get(type(exc).__name__, 0) + 1
                    log.warning("lftrace: batch evaluation: item %s failed: %s", item.id, exc)
                else:
                    totals.processed += 1

        await asyncio.gather(*(one(item) for item in items))

    async def _evaluate_item(
        self,
        item: Any,
        mapper: Callable[..., Any],
        evaluators: Sequence[Callable[..., Any]],
        composite: Callable[..., Any] | None,
        metadata: dict[str, Any] | None,
        totals: _Totals,
    ) -> None:
        if not item.trace_id:
            raise ValueError(f"observation {item.id} has no trace_id")
        inputs = await call_maybe_async(mapper, item=item)
        arguments = {
            "input": inputs.input,
            "output": inputs.output,
            "expected_output": inputs.expected_output,
            "metadata": inputs.metadata,
        }
        evaluations: list[Evaluation] = []
        for evaluator in evaluators:
            stats = totals.stats[_name(evaluator)]
            stats.total_runs += 1
            try:
                found = evaluations_of(await call_maybe_async(evaluator, **arguments))
            except Exception as exc:
                stats.failed_runs += 1
                totals.failed_evaluations += 1
                log.warning("lftrace: evaluator %s failed on %s: %s", _name(evaluator), item.id, exc)
                continue
            stats.successful_runs += 1
            stats.total_scores_created += len(found)
            evaluations += found
        totals.scores += self._score(item, evaluations, metadata)
        if composite is not None and evaluations:
            try:
                combined = evaluations_of(await call_maybe_async(composite, **arguments, evaluations=list(evaluations)))
            except Exception as exc:
                log.warning("lftrace: composite evaluator failed on %s: %s", item.id, exc)
            else:
                totals.composite += self._score(item, combined, metadata)
                evaluations += combined
        totals.evaluations[item.id] = evaluations

    def _score(self, item: Any, evaluations: Sequence[Evaluation], metadata: dict[str, Any] | None) -> int:
        for e in evaluations:
            self.create_score(  # type: ignore[attr-defined]
                trace_id=item.trace_id, observation_id=item.id, name=e.name, value=e.value, comment=e.comment,
                metadata={**(e.metadata or {}), **(metadata or {})}, data_type=e.data_type, config_id=e.config_id,
            )  # fmt: skip
        return len(evaluations)
