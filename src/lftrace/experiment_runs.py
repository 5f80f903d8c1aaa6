"""Experiment runs in the store, as SDK 5's ``api.experiments`` reads them (``lftrace serve``'s
``GET /api/public/experiments`` and ``/experiment-items``) and ``lftrace experiments`` shows them.

An experiment item is one trace of ``run_experiment`` (lftrace's own, or the official SDK's sent to ``serve``):
its ``langfuse.experiment.*`` attributes (kept as the trace's ``model.EXPERIMENT_KEY`` metadata) say which
experiment, dataset item and dataset version it ran; its root observation (``item.root_observation_id``: the
``experiment-item-task`` span) gives its times, level, input and output. An experiment is its items grouped by
experiment id. Items are built whole here; the API keeps the field groups asked for and pages them.
"""

from __future__ import annotations

from typing import Any

from .model import EXPERIMENT_KEY, Observation, Score, Trace, iso_from_ns
from .store import TraceStore

# the field groups of an ExperimentItem, and the keys each adds (core is always there)
ITEM_GROUPS: dict[str, tuple[str, ...]] = {
    "core": (
        "id", "traceId", "startTime", "endTime", "level", "environment",
        "experimentId", "experimentName", "experimentItemId",
    ),
    "dataset": ("experimentDatasetId", "experimentItemVersion"),
    "io": ("input", "output", "expectedOutput"),
    "metadata": ("metadata",),
    "itemMetadata": ("experimentItemMetadata",),
    "experimentMetadata": ("experimentMetadata", "experimentDescription"),
    "scores": ("scores",),
}  # fmt: skip
EXPERIMENT_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("id", "name", "description", "startTime", "endTime", "itemCount", "datasetId"),
    "metadata": ("metadata",),
    "scores": ("scores",),
}


def experiment_items(
    store: TraceStore, since_ns: int, until_ns: int | None, *, io: bool = True
) -> list[dict[str, Any]]:
    """Every experiment item whose root observation started in [since_ns, until_ns), newest first, all groups;
    ``scores`` holds the item's Score objects (the API shapes them); ``_start``/``_end`` are its times in ns and
    ``_cost`` its trace's cost (keys with ``_`` are for lftrace, not in the API's answer). ``io=False``: without
    the items' input and output (None).

    The traces are read without their observations' values (an item's task may be a whole agent run); only each
    item's root observation is read whole."""
    # a trace starts at or before its root observation: read from since_ns on, then keep the items in range
    traces = store.get_traces(store.experiment_trace_ids(since_ns, until_ns), inputs=False, outputs=False)
    items = [item for trace in traces if (item := _item(trace)) is not None]
    items = [i for i in items if i["_start"] >= since_ns and (until_ns is None or i["_start"] < until_ns)]
    items.sort(key=lambda i: (i["_start"], i["id"]), reverse=True)
    for item in items if io else ():
        root = store.get_observation(item["traceId"], item["id"])
        if root is not None:
            item["input"], item["output"] = root.input, root.output
    return items


def run_scores(store: TraceStore) -> dict[str, list[Score]]:
    """The scores of whole runs (``run_evaluators``: ``dataset_run_id`` is the experiment id), newest first."""
    found: dict[str, list[Score]] = {}
    for score in store.scores():
        if score.dataset_run_id:
            found.setdefault(score.dataset_run_id, []).append(score)
    return found


def _item(trace: Trace) -> dict[str, Any] | None:
    about = (trace.metadata or {}).get(EXPERIMENT_KEY)
    if not isinstance(about, dict) or not isinstance(about.get("id"), str):
        return None
    root = _root(trace, about.get("item.root_observation_id"))
    if root is None:
        return None
    return {
        "id": root.id,
        "traceId": trace.id,
        "startTime": iso_from_ns(root.start_time),
        "endTime": iso_from_ns(root.end_time) if root.end_time is not None else None,
        "level": root.level,
        "environment": root.environment or trace.environment or "default",
        "experimentId": about["id"],
        "experimentName": _text(about.get("name")) or about["id"],
        "experimentItemId": _text(about.get("item.id")) or root.id,
        "experimentDatasetId": _text(about.get("dataset.id")),
        "experimentItemVersion": _text(about.get("item.version")),
        "input": root.input,
        "output": root.output,
        "expectedOutput": about.get("item.expected_output"),  # as ingest decoded it (or lftrace's own, as it was)
        "metadata": root.metadata if isinstance(root.metadata, dict) else None,
        "experimentItemMetadata": _mapping(about.get("item.metadata")),
        "experimentMetadata": _mapping(about.get("metadata")),
        "experimentDescription": _text(about.get("description")),
        "scores": list(trace.scores),
        "_cost": trace.total_cost,
        "_start": root.start_time,
        "_end": root.end_time if root.end_time is not None else root.start_time,
    }


def _root(trace: Trace, root_id: Any) -> Observation | None:
    """The item's root observation: the one its attributes name, else its task span, else the trace's first root."""
    by_id = {o.id: o for o in trace.observations}
    if isinstance(root_id, str) and root_id in by_id:
        return by_id[root_id]
    task = next((o for o in trace.observations if o.name == "experiment-item-task"), None)
    if task is not None:
        return task
    return next((o for o in trace.observations if o.parent_id not in by_id), None)


def experiments_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The experiments of these items (all groups but scores), the latest activity first."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        experiment = found.get(item["experimentId"])
        if experiment is None:
            experiment = found[item["experimentId"]] = {
                "id": item["experimentId"],
                "name": item["experimentName"],
                "description": item["experimentDescription"],
                "datasetId": item["experimentDatasetId"],
                "metadata": item["experimentMetadata"],
                "itemCount": 0,
                "_start": item["_start"],
                "_end": item["_end"],
            }
        experiment["itemCount"] += 1
        experiment["_start"] = min(experiment["_start"], item["_start"])
        experiment["_end"] = max(experiment["_end"], item["_end"])
        for key, source in _FROM_ITEM:  # the first item that says it
            if experiment[key] is None:
                experiment[key] = item[source]
    rows = sorted(found.values(), key=lambda e: (e["_end"], e["id"]), reverse=True)
    for row in rows:
        row["startTime"], row["endTime"] = iso_from_ns(row["_start"]), iso_from_ns(row["_end"])
    return rows


_FROM_ITEM = (
    ("description", "experimentDescription"),
    ("datasetId", "experimentDatasetId"),
    ("metadata", "experimentMetadata"),
)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def item_scores(item: dict[str, Any]) -> dict[str, float | str]:
    """An item's scores by name: numeric and boolean as numbers (booleans 0/1; the mean when a name repeats), else
    the value's text."""
    numbers: dict[str, list[float]] = {}
    texts: dict[str, str] = {}
    for score in item["scores"]:
        if score.data_type in ("NUMERIC", "BOOLEAN") and score.value is not None:
            numbers.setdefault(score.name, []).append(float(score.value))
        else:
            texts[score.name] = score.display_value()
    return {**texts, **{name: sum(found) / len(found) for name, found in numbers.items()}}


def compare_runs(items: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's items against a baseline run's, matched by experiment item id (a dataset item, or a hash of the
    input): per score the two means over the items both have and their difference, the items whose scores, output
    or status changed, the items only one run has, and ``regressed``: a mean score lower, or more items failed."""
    mine = {i["experimentItemId"]: i for i in items}
    theirs = {i["experimentItemId"]: i for i in base}
    matched = [key for key in theirs if key in mine]
    now = {key: item_scores(mine[key]) for key in matched}
    before = {key: item_scores(theirs[key]) for key in matched}
    changed: list[dict[str, Any]] = []
    for key in matched:
        run, was = mine[key], theirs[key]
        failed, failed_before = run["level"] == "ERROR", was["level"] == "ERROR"
        if now[key] == before[key] and run["output"] == was["output"] and failed == failed_before:
            continue
        changed.append({
            "item": key, "traceId": run["traceId"], "baseTraceId": was["traceId"], "scores": now[key],
            "baseScores": before[key], "output": run["output"], "baseOutput": was["output"], "failed": failed,
            "baseFailed": failed_before,
        })  # fmt: skip
    summary: dict[str, dict[str, float | None]] = {}
    for name in sorted(
        {n for scores in (*now.values(), *before.values()) for n, v in scores.items() if type(v) is float}
    ):
        run_mean, base_mean = _mean(now, name), _mean(before, name)
        delta = run_mean - base_mean if run_mean is not None and base_mean is not None else None
        summary[name] = {"base": base_mean, "run": run_mean, "delta": delta}
    errors = sum(mine[key]["level"] == "ERROR" for key in matched)
    base_errors = sum(theirs[key]["level"] == "ERROR" for key in matched)
    lower = [name for name, s in summary.items() if s["delta"] is not None and s["delta"] < -1e-9]
    return {
        "matched": len(matched),
        "scores": summary,
        "errors": errors,
        "baseErrors": base_errors,
        "changed": changed,
        "onlyInRun": sorted(key for key in mine if key not in theirs),
        "onlyInBase": sorted(key for key in theirs if key not in mine),
        "lower": lower,
        "regressed": bool(lower) or errors > base_errors,
    }


def _mean(scores: dict[str, dict[str, float | str]], name: str) -> float | None:
    values = [v for found in scores.values() if type(v := found.get(name)) is float]
    return sum(values) / len(values) if values else None
