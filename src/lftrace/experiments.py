"""Datasets and experiments with the SDK's names: ``create_dataset``, ``create_dataset_item``, ``get_dataset``,
``run_experiment`` (and ``dataset.run_experiment``), ``Evaluation``.

Datasets live where prompts do: in Langfuse (its datasets API) when its keys are set, else in the local store
(which ``lftrace serve`` offers on the same API). ``run_experiment`` runs the task on every item, each in a trace
of its own (``experiment-item-run``: the task under ``experiment-item-task``, the evaluators under
``experiment-item-evaluation``, environment ``sdk-experiment``), records each evaluation as a score of that
trace and each run evaluation as a score of the experiment (``dataset_run_id``), as the SDK does. The trace
carries the experiment's ``langfuse.experiment.*`` attributes to Langfuse (``EXPERIMENT_KEY``), so its
experiments view groups the runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import statistics
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .errors import LftraceError, TraceNotFound
from .model import EXPERIMENT_KEY, ns_from_datetime

log = logging.getLogger("lftrace")

EXPERIMENT_ENVIRONMENT = "sdk-experiment"


class DatasetNotFound(TraceNotFound):
    """No dataset of that name."""


class Evaluation:
    """One evaluation of an item (or of the whole run): becomes a score."""

    def __init__(
        self,
        *,
        name: str,
        value: float | str | bool,
        comment: str | None = None,
        metadata: dict[str, Any] | None = None,
        data_type: str | None = None,
        config_id: str | None = None,
    ) -> None:
        self.name, self.value, self.comment = name, value, comment
        self.metadata, self.data_type, self.config_id = metadata, data_type, config_id

    def __repr__(self) -> str:
        return f"Evaluation(name={self.name!r}, value={self.value!r})"


class DatasetItem:
    """An item of a dataset, from Langfuse's ``DatasetItem`` JSON."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.id: str = data["id"]
        self.status: str = data.get("status") or "ACTIVE"
        self.input = data.get("input")
        self.expected_output = data.get("expectedOutput")
        self.metadata = data.get("metadata")
        self.source_trace_id: str | None = data.get("sourceTraceId")
        self.source_observation_id: str | None = data.get("sourceObservationId")
        self.dataset_id: str | None = data.get("datasetId")
        self.dataset_name: str | None = data.get("datasetName")
        # datetimes, as the SDK's models give them; version: when this version of the item became current
        self.created_at, self.updated_at = _time(data.get("createdAt")), _time(data.get("updatedAt"))
        self.version = _time(data.get("version"))

    def __repr__(self) -> str:
        return f"DatasetItem(id={self.id!r}, dataset_name={self.dataset_name!r})"


def _time(value: Any) -> Any:
    """An API time (ISO 8601 text) as a datetime; anything else as it is."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def _with_media_references(row: Mapping[str, Any], store: Any = None) -> Mapping[str, Any]:
    """An item's values with their media reference strings as ``LangfuseMediaReference`` objects, as SDK 5's
    ``get_dataset`` gives them: from Langfuse's ``mediaReferences``, or (``store``: a local dataset) from the
    store's media."""
    from .media import LangfuseMedia, LangfuseMediaReference, reference_paths, with_references

    fields: dict[str, dict[str, Any]] = {"input": {}, "expectedOutput": {}, "metadata": {}}  # {reference: ...}
    for ref in row.get("mediaReferences") or []:
        media = ref.get("media") or {}
        if ref.get("field") in fields and media.get("mediaId"):
            fields[ref["field"]][ref["referenceString"]] = LangfuseMediaReference(
                media["mediaId"], media.get("contentType", ""), media.get("url", ""), media.get("urlExpiry"),
                media.get("contentLength"), ref["referenceString"],
            )  # fmt: skip
    if store is not None:
        for name, found in fields.items():
            for _, reference in reference_paths(row.get(name)):
                parsed = LangfuseMedia.parse_reference_string(reference)
                record = store.media_record(parsed["media_id"])
                if record is not None and record["content"]:
                    found[reference] = LangfuseMediaReference(
                        parsed["media_id"], record["content_type"], "", None, record["size"], reference, store.media
                    )
    if not any(fields.values()):
        return row
    return {**row, **{name: with_references(row.get(name), found) for name, found in fields.items() if found}}


class DatasetClient:
    """A dataset and its items (``get_dataset``); ``run_experiment`` runs one on them."""

    def __init__(self, data: Mapping[str, Any], items: list[DatasetItem], client: Any) -> None:
        self.id: str = data["id"]
        self.name: str = data["name"]
        self.description: str | None = data.get("description")
        self.metadata = data.get("metadata")
        self.input_schema, self.expected_output_schema = data.get("inputSchema"), data.get("expectedOutputSchema")
        self.created_at, self.updated_at = _time(data.get("createdAt")), _time(data.get("updatedAt"))
        self.items = items
        self.version: datetime | None = None  # get_dataset(version=...): the items as they were then
        self._client = client

    def run_experiment(self, *, name: str, **options: Any) -> ExperimentResult:
        options.setdefault("_dataset_version", self.version)  # each item's trace says which version it ran on
        return self._client.run_experiment(name=name, data=self.items, **options)

    def __repr__(self) -> str:
        return f"DatasetClient(name={self.name!r}, items={len(self.items)})"


class ExperimentItemResult:
    def __init__(
        self, *, item: Any, output: Any, evaluations: list[Evaluation], trace_id: str | None, experiment_id: str
    ) -> None:
        self.item, self.output, self.evaluations = item, output, evaluations
        self.trace_id, self.experiment_id = trace_id, experiment_id

    @property
    def dataset_run_id(self) -> str:  # the SDK's older name
        return self.experiment_id


class ExperimentResult:
    def __init__(
        self,
        *,
        name: str,
        run_name: str,
        description: str | None,
        item_results: list[ExperimentItemResult],
        run_evaluations: list[Evaluation],
        experiment_id: str,
        experiment_url: str | None,
    ) -> None:
        self.name, self.run_name, self.description = name, run_name, description
        self.item_results, self.run_evaluations = item_results, run_evaluations
        self.experiment_id, self.experiment_url = experiment_id, experiment_url

    @property
    def dataset_run_id(self) -> str:  # the SDK's older names
        return self.experiment_id

    @property
    def dataset_run_url(self) -> str | None:
        return self.experiment_url

    def format(self, *, include_item_results: bool = False) -> str:
        """A plain-text report: the items, each evaluation's average, the run evaluations, where to look."""
        lines = [f"Experiment: {self.name}", f"Run: {self.run_name}"]
        if self.description:
            lines.append(f"Description: {self.description}")
        lines.append(f"{len(self.item_results)} items")
        if include_item_results:
            for n, result in enumerate(self.item_results, 1):
                given = (
                    result.item.get("input") if isinstance(result.item, dict) else getattr(result.item, "input", None)
                )
                lines.append(f"  {n}. input {_short(given)} -> output {_short(result.output)}")
                lines += [f"     {e.name}: {_short(e.value)}" for e in result.evaluations]
        averages: dict[str, list[float]] = {}
        for result in self.item_results:
            for evaluation in result.evaluations:
                if isinstance(evaluation.value, (int, float)) and not isinstance(evaluation.value, bool):
                    averages.setdefault(evaluation.name, []).append(float(evaluation.value))
        if averages:
            lines.append("Average scores:")
            lines += [f"  {name}: {statistics.fmean(values):.3f}" for name, values in averages.items()]
        if self.run_evaluations:
            lines.append("Run evaluations:")
            lines += [f"  {e.name}: {_short(e.value)}" for e in self.run_evaluations]
        lines.append(f"Experiment id: {self.experiment_id}")
        if self.experiment_url:
            lines.append(f"Results: {self.experiment_url}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def evaluations_of(result: Any) -> list[Evaluation]:
    """An evaluator's answer: an Evaluation, a dict of its fields, or a list of either."""
    found = result if isinstance(result, list) else [result]
    return [Evaluation(**e) if isinstance(e, dict) else e for e in found if isinstance(e, (dict, Evaluation))]


async def call_maybe_async(function: Callable[..., Any], **kwargs: Any) -> Any:
    result = function(**kwargs)
    return await result if asyncio.iscoroutine(result) else result


def experiment_id_for(project_id: str | None, dataset_id: str | None, run_name: str) -> str:
    """The experiment's id as Langfuse derives it for a dataset's run (the same run name groups re-runs); a random
    one for local data or when the project is not known."""
    if dataset_id is None or project_id is None:
        return os.urandom(8).hex()
    # the bytes of JavaScript's JSON.stringify of that array (no spaces, no \u escapes), as Langfuse hashes them
    payload = json.dumps(
        ["langfuse-experiment-v1", project_id, dataset_id, run_name], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def experiment_item_version(version: datetime) -> str:
    """A dataset version as ``langfuse.experiment.item.version`` carries it: ISO 8601, ``Z`` for UTC (as the SDK
    writes it; a naive datetime is taken as this machine's local time, as the SDK takes it)."""
    zoned = version if version.tzinfo is not None else version.astimezone()
    try:
        utc = zoned.tzinfo is not None and zoned.tzinfo.tzname(None) == UTC.tzname(None)
    except Exception:  # a tzinfo that needs a datetime to name its zone: not UTC itself
        utc = False
    return zoned.isoformat().replace("+00:00", "Z") if utc else zoned.isoformat()


def experiment_project(client: Any) -> str | None:
    """The Langfuse project a client sends to (looked up once, then cached); None without Langfuse keys."""
    if not client.settings.langfuse_enabled:
        return None
    from .exporters.langfuse_api import cached_project_id

    try:
        store = client.store
    except LftraceError:
        store = None
    return cached_project_id(client.settings, store)


def experiment_url(settings: Any, project_id: str | None, experiment: str) -> str | None:
    """Where Langfuse shows an experiment's results (None without Langfuse or its project)."""
    if project_id is None or not settings.langfuse_enabled:
        return None
    base = settings.base_url.rstrip("/")
    return f"{base}/project/{project_id}/experiments/results?baseline={quote(experiment, safe='')}"


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class ExperimentApi:
    """``Langfuse``'s dataset and experiment methods (a mixin of the client)."""

    settings: Any  # config.Settings, from the client
    store: Any  # store.TraceStore, from the client

    # -- datasets -------------------------------------------------------------------------------------------
    def create_dataset(
        self,
        *,
        name: str,
        description: str | None = None,
        metadata: Any = None,
        input_schema: Any = None,
        expected_output_schema: Any = None,
    ) -> DatasetClient:
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            body = {"name": name, "description": description, "metadata": metadata}
            body.update({"inputSchema": input_schema, "expectedOutputSchema": expected_output_schema})
            data = langfuse_api.create_dataset(self.settings, body)
        else:
            data = self.store.create_dataset(
                name,
                description=description,
                metadata=metadata,
                input_schema=input_schema,
                expected_output_schema=expected_output_schema,
            )
        return DatasetClient(data, [], self)

    def create_dataset_item(
        self,
        *,
        dataset_name: str,
        input: Any = None,
        expected_output: Any = None,
        metadata: Any = None,
        source_trace_id: str | None = None,
        source_observation_id: str | None = None,
        status: str | None = None,
        id: str | None = None,
    ) -> DatasetItem:
        """An item of the dataset, made (or updated, on its ``id``). ``LangfuseMedia`` (and data URIs) in its
        values become reference strings, their bytes stored or uploaded first, as the SDK does."""
        input, expected_output, metadata, media = self._item_media(input, expected_output, metadata)
        if media:
            id = id or str(uuid.uuid4())  # the media name the item before it exists
            self._keep_dataset_media(dataset_name, id, media)
        fields = {
            "input": input,
            "expected_output": expected_output,
            "metadata": metadata,
            "source_trace_id": source_trace_id,
            "source_observation_id": source_observation_id,
            "status": status,
        }
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            body = {"datasetName": dataset_name, "id": id, "input": input, "expectedOutput": expected_output}
            body.update({"metadata": metadata, "sourceTraceId": source_trace_id, "status": status})
            body["sourceObservationId"] = source_observation_id
            data = langfuse_api.create_dataset_item(self.settings, body)
        else:
            data = self.store.upsert_dataset_item(dataset_name, id, **fields)
        if data is None:
            raise DatasetNotFound(f"no dataset {dataset_name!r}: create it first (create_dataset(name=...))")
        return DatasetItem(data)

    def _item_media(self, *values: Any) -> tuple[Any, ...]:
        """The item's input, expected output and metadata with their media taken out, and the media (each
        ``MediaLink.field`` the API's name of the value it was in)."""
        from .media import Extractor
        from .serialize import MEDIA_SINK, to_jsonable

        extractor = Extractor(enabled=self.settings.media_upload_enabled)
        MEDIA_SINK.extractor = extractor
        try:
            out = []
            for field_name, value in zip(("input", "expectedOutput", "metadata"), values, strict=True):
                extractor.begin(field_name, None)
                out.append(value if value is None else extractor.extract(to_jsonable(value)))
        finally:
            MEDIA_SINK.extractor = None
        return (*out, extractor.end_trace())

    def _keep_dataset_media(self, dataset_name: str, item_id: str, media: list[Any]) -> None:
        """A dataset item's media: uploaded to Langfuse with keys (before the item), else kept in the store."""
        if not self.settings.langfuse_enabled:
            for link in media:
                self.store.announce_media(
                    link.media_id, link.content_type, len(link.content), link.sha256,
                    field=link.field, dataset_item_id=item_id,
                )  # fmt: skip
                self.store.store_media_content(link.media_id, link.content)
            return
        from .exporters import langfuse_api
        from .exporters.otlp import LangfuseExporter

        dataset = langfuse_api.get_dataset(self.settings, dataset_name)
        if dataset is None:
            raise DatasetNotFound(f"no dataset {dataset_name!r}: create it first (create_dataset(name=...))")
        s = self.settings
        exporter = LangfuseExporter(s.base_url, s.public_key or "", s.secret_key or "", s.timeout)
        where = {"datasetId": dataset["id"], "datasetItemId": item_id}
        try:
            result = exporter.upload_media([(where, link) for link in media])
        finally:
            exporter.close()
        if not result.ok:
            raise LftraceError(f"the dataset item's media could not be uploaded to Langfuse: {result.message}")

    def get_dataset(
        self,
        name: str,
        *,
        fetch_items_page_size: int | None = 50,
        version: datetime | None = None,
        **ignored: Any,
    ) -> DatasetClient:
        """The dataset and all its items (page by page from Langfuse); with ``version`` (a timezone-aware
        datetime) its items as they were at that time, as SDK 5 asks Langfuse for them. The local store keeps no
        history of an item: there, items created since are left out, and an item changed since is an
        ``InputError`` (``DatasetHistoryMissing``) rather than its current content presented as the old one."""
        size = max(1, fetch_items_page_size or 50)
        if version is not None and (not isinstance(version, datetime) or version.tzinfo is None):
            raise ValueError("version must be a timezone-aware datetime (UTC), as the Langfuse SDK takes it")
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            data = langfuse_api.get_dataset(self.settings, name)
            rows = (
                langfuse_api.dataset_items(self.settings, name, page_size=size, version=version)
                if data is not None
                else []
            )
        else:
            as_of = ns_from_datetime(version) if version is not None else None
            data = self.store.get_dataset(name)
            rows = []
            while data is not None:
                page, total = self.store.dataset_items(name, offset=len(rows), limit=size, as_of_ns=as_of)
                rows += page
                if not page or len(rows) >= total:
                    break
        if data is None:
            raise DatasetNotFound(f"no dataset {name!r}")
        local = None if self.settings.langfuse_enabled else self.store
        dataset = DatasetClient(data, [DatasetItem(_with_media_references(row, local)) for row in rows], self)
        dataset.version = version
        return dataset

    # -- experiments ----------------------------------------------------------------------------------------
    def run_experiment(
        self,
        *,
        name: str,
        data: Sequence[Any],
        task: Callable[..., Any],
        run_name: str | None = None,
        description: str | None = None,
        evaluators: Sequence[Callable[..., Any]] = (),
        run_evaluators: Sequence[Callable[..., Any]] = (),
        max_concurrency: int = 50,
        metadata: dict[str, Any] | None = None,
        experiment_id: str | None = None,
        composite_evaluator: Callable[..., Any] | None = None,
        _dataset_version: datetime | None = None,
        **ignored: Any,
    ) -> ExperimentResult:
        """Run ``task(item=...)`` on every item (dicts with ``input``/``expected_output``/``metadata``, or dataset
        items), evaluate each output with ``evaluators(input=, output=, expected_output=, metadata=)``, then
        ``composite_evaluator(..., evaluations=)`` over an item's evaluations, and the run with
        ``run_evaluators(item_results=)``. An item whose task raises is left out (its trace says why)."""
        if experiment_id is not None and (not isinstance(experiment_id, str) or not experiment_id.strip()):
            raise ValueError("experiment_id must be a non-empty string if given")
        run_name = run_name or f"{name} - {datetime.now(UTC).isoformat().replace('+00:00', 'Z')}"
        dataset_id = next(
            (_field(i, "dataset_id") for i in data if not isinstance(i, dict) and _field(i, "dataset_id")), None
        )
        project_id = experiment_project(self)
        experiment = experiment_id or experiment_id_for(project_id, dataset_id, run_name)
        version = experiment_item_version(_dataset_version) if _dataset_version is not None else None
        plan = _Plan(name, run_name, description, metadata, experiment, dataset_id, task, evaluators,
                     composite_evaluator, version)  # fmt: skip

        async def everything() -> list[ExperimentItemResult | None]:
            gate = asyncio.Semaphore(max(1, max_concurrency))

            async def one(item: Any) -> ExperimentItemResult | None:
                async with gate:
                    try:
                        return await self._experiment_item(item, plan)
                    except Exception as exc:  # the item's trace records the error; the run goes on
                        log.error("lftrace: experiment %r: an item failed: %s", name, exc)
                        return None

            return list(await asyncio.gather(*(one(item) for item in data)))

        results = [r for r in run_to_end(everything()) if r is not None]
        run_evaluations: list[Evaluation] = []
        for evaluator in run_evaluators:
            try:
                run_evaluations += evaluations_of(run_to_end(call_maybe_async(evaluator, item_results=results)))
            except Exception as exc:
                log.error("lftrace: run evaluator %s failed: %s", getattr(evaluator, "__name__", evaluator), exc)
        for evaluation in run_evaluations:
            self.create_score(  # type: ignore[attr-defined]
                name=evaluation.name, value=evaluation.value, dataset_run_id=experiment, comment=evaluation.comment,
                metadata=evaluation.metadata, data_type=evaluation.data_type, config_id=evaluation.config_id,
            )  # fmt: skip
        self.flush()  # type: ignore[attr-defined]
        return ExperimentResult(
            name=name,
            run_name=run_name,
            description=description,
            item_results=results,
            run_evaluations=run_evaluations,
            experiment_id=experiment,
            experiment_url=experiment_url(self.settings, project_id, experiment),
        )

    async def _experiment_item(self, item: Any, plan: _Plan) -> ExperimentItemResult:
        given, expected, item_metadata = (
            _field(item, "input"),
            _field(item, "expected_output"),
            _field(item, "metadata"),
        )
        if given is None:
            raise ValueError("the item has no input")
        item_id = None if isinstance(item, dict) else _field(item, "id")
        about: dict[str, Any] = {"experiment_name": plan.name, "experiment_run_name": plan.run_name}
        if item_id is not None and plan.dataset_id is not None:
            about.update(dataset_id=_field(item, "dataset_id"), dataset_item_id=item_id)
        mine = item_metadata if isinstance(item_metadata, dict) else {}
        shown = {**about, **mine, **(plan.metadata or {}), **about}
        with self.start_as_current_span(name="experiment-item-run") as root:  # type: ignore[attr-defined]
            # the item's trace and all its spans are the experiment's environment, as the SDK records them
            root._fragment.trace.environment = root._observation.environment = EXPERIMENT_ENVIRONMENT
            with root.start_as_current_span(name="experiment-item-task", input=given) as task_span:
                attributes = {
                    "id": plan.experiment,
                    "name": plan.run_name,
                    "description": plan.description,
                    "metadata": plan.metadata,
                    "dataset.id": _field(item, "dataset_id") if item_id is not None else None,
                    "item.version": plan.version if item_id is not None else None,
                    "item.id": item_id or hashlib.sha256(json.dumps(given, default=str).encode()).hexdigest()[:16],
                    "item.expected_output": expected,
                    "item.metadata": item_metadata if isinstance(item_metadata, dict) else None,
                    "item.root_observation_id": task_span.id,
                }
                root.update_trace(metadata={EXPERIMENT_KEY: {k: v for k, v in attributes.items() if v is not None}})
                task_span.update(metadata=shown)
                try:
                    output = await call_maybe_async(plan.task, item=item)
                except Exception as exc:
                    task_span.update(output=f"Error: {exc}", level="ERROR", status_message=str(exc))
                    root.update(output=f"Error: {exc}", level="ERROR", status_message=str(exc))
                    raise
                task_span.update(output=output)
            root.update(input=given, output=output, metadata=shown)
            arguments = {"input": given, "output": output, "expected_output": expected, "metadata": item_metadata}
            evaluations = await _evaluate(root, plan, arguments) if plan.evaluators else []
            for evaluation in evaluations:  # scores of the task's observation, as SDK 5 records them
                self.create_score(  # type: ignore[attr-defined]
                    trace_id=root.trace_id, observation_id=task_span.id, name=evaluation.name,
                    value=evaluation.value, comment=evaluation.comment, metadata=evaluation.metadata,
                    data_type=evaluation.data_type, config_id=evaluation.config_id,
                )  # fmt: skip
            return ExperimentItemResult(
                item=item, output=output, evaluations=evaluations, trace_id=root.trace_id, experiment_id=plan.experiment
            )


@dataclass(frozen=True)
class _Plan:
    """What every item of one experiment run shares."""

    name: str
    run_name: str
    description: str | None
    metadata: dict[str, Any] | None
    experiment: str
    dataset_id: str | None
    task: Callable[..., Any]
    evaluators: Sequence[Callable[..., Any]]
    composite: Callable[..., Any] | None
    version: str | None  # the dataset version the items are from (get_dataset(version=...)), as Langfuse reads it


async def _evaluate(root: Any, plan: _Plan, arguments: dict[str, Any]) -> list[Evaluation]:
    """The item's evaluations under ``experiment-item-evaluation``: each evaluator an EVALUATOR span, then the
    composite evaluator over what they found (when they found something), as SDK 5 records them."""
    evaluations: list[Evaluation] = []
    failed = 0
    with root.start_as_current_span(name="experiment-item-evaluation") as judging:
        for index, evaluator in enumerate(plan.evaluators):
            found = await _judged(judging, evaluator, arguments, {"evaluator_kind": "item", "evaluator_index": index})
            failed += found is None
            evaluations += found or []
        skipped = plan.composite is not None and not evaluations
        if plan.composite is not None and evaluations:
            shown = {**arguments, "evaluations": _serialized(evaluations)}
            found = await _judged(
                judging, plan.composite, {**arguments, "evaluations": list(evaluations)}, {"evaluator_kind": "composite"},
                shown=shown,
            )  # fmt: skip
            failed += found is None
            evaluations += found or []
        judging.update(
            output={
                "evaluator_count": len(plan.evaluators) + (plan.composite is not None),
                "evaluation_count": len(evaluations),
                "failed_evaluator_count": failed,
                "skipped_evaluator_count": int(skipped),
            }
        )
    return evaluations


async def _judged(
    judging: Any,
    evaluator: Callable[..., Any],
    arguments: dict[str, Any],
    metadata: dict[str, Any],
    shown: dict[str, Any] | None = None,
) -> list[Evaluation] | None:
    """One evaluator's evaluations, in an EVALUATOR span of its own; None when it raised (the span says why)."""
    name = getattr(evaluator, "__name__", "evaluator")
    with judging.start_as_current_observation(
        name=name, as_type="evaluator", input=shown or arguments, metadata=metadata
    ) as span:
        try:
            found = evaluations_of(await call_maybe_async(evaluator, **arguments))
        except Exception as exc:
            span.update(output={"error": str(exc)}, level="ERROR", status_message=str(exc))
            log.error("lftrace: evaluator %s failed: %s", name, exc)
            return None
        span.update(output=_serialized(found))
        return found


def _serialized(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    fields = ("name", "value", "comment", "metadata", "data_type", "config_id")
    return [{f: getattr(e, f) for f in fields if getattr(e, f) is not None} for e in evaluations]


def run_to_end(coroutine: Any) -> Any:
    """Run to the end: here when no event loop runs in this thread, else on a thread of its own (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
