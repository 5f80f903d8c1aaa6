"""The Langfuse public read API over the store, in the shapes of langfuse-openapi.yml.

``Trace.to_dict()`` is the one source of the trace and observation shapes; this module only selects,
filters, paginates and wraps (``{"data": [...], "meta": {page, limit, totalItems, totalPages}}``).
Filtering happens over the store's summaries and traces in Python: fine for a local store, not a warehouse.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..errors import DatasetHistoryMissing, LftraceError
from ..experiment_runs import EXPERIMENT_GROUPS, ITEM_GROUPS, experiment_items, experiments_of, run_scores
from ..jsonout import trace_chunks
from ..media import LangfuseMedia, reference_paths
from ..model import Observation, Score, Trace, iso_from_ns, ns_from_iso
from ..store import TraceStore
from .conditions import Condition, matches, parse_conditions
from .media import DOWNLOAD_PATH, SignedUrls

PROJECT_ID = "lftrace-local"
PROJECT = {
    "id": PROJECT_ID,
    "name": "lftrace",
    "organization": {"id": "lftrace", "name": "lftrace"},
    "metadata": {},
}
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class QueryError(Exception):
    pass


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int, low: int = 1, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"query parameter {name} must be an integer, not {raw[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise QueryError(f"query parameter {name} must be between {low} and {high or 'any'}")
    return value


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return ns_from_iso(raw)
    except ValueError:
        raise QueryError(f"query parameter {name} must be an ISO-8601 date-time, not {raw[:40]!r}") from None


def _list_param(request: Request, name: str) -> list[str]:
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v for v in raw.split(",") if v)
    return values


def _meta(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "totalItems": total, "totalPages": math.ceil(total / limit) if limit else 0}


SCORE_FIELD_GROUPS = ("details", "subject", "annotation")
SCORES_V3_MAX_LIMIT = 100  # Langfuse answers 400 above this
_SCORE_TYPES = ("NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION")


def score_v3(score: Score, groups: set[str]) -> dict[str, Any]:
    """``ScoreV3``: one ``value`` typed by ``dataType`` (number, boolean or string); the asked field groups."""
    stamp = iso_from_ns(score.timestamp)
    if score.data_type == "NUMERIC":
        value: Any = score.value if score.value is not None else 0.0
    elif score.data_type == "BOOLEAN":
        value = bool(score.value) if score.value is not None else score.string_value == "True"
    else:
        value = score.string_value or ""
    data: dict[str, Any] = {
        "id": score.id,
        "projectId": PROJECT_ID,
        "name": score.name,
        "value": value,
        "dataType": score.data_type,
        "source": score.source,
        "timestamp": stamp,
        "environment": score.environment,
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    if "details" in groups:
        data.update({"comment": score.comment, "configId": score.config_id, "metadata": score.metadata})
    if "subject" in groups:
        if score.observation_id:
            data["subject"] = {"kind": "observation", "id": score.observation_id, "traceId": score.trace_id}
        elif score.trace_id:
            data["subject"] = {"kind": "trace", "id": score.trace_id}
        elif score.session_id:
            data["subject"] = {"kind": "session", "id": score.session_id}
        else:
            data["subject"] = {"kind": "experiment", "id": score.dataset_run_id}
    if "annotation" in groups:
        data.update({"authorUserId": None, "queueId": None})
    return data


def _scores_v3_matching(store: TraceStore, request: Request) -> list[Score]:
    """The scores ``GET /api/public/v3/scores`` selects, newest first; QueryError (400) for what Langfuse refuses."""
    trace_ids, session_ids = set(_list_param(request, "traceId")), set(_list_param(request, "sessionId"))
    observation_ids, experiment_ids = set(_list_param(request, "observationId")), _list_param(request, "experimentId")
    if sum(bool(x) for x in (trace_ids, session_ids, experiment_ids)) > 1 or (observation_ids and session_ids):
        raise QueryError("traceId, sessionId and experimentId exclude each other (observationId goes with traceId)")
    if observation_ids and not trace_ids:
        raise QueryError("observationId needs traceId: observation ids are scoped to a trace")
    types = {t.upper() for t in _list_param(request, "dataType")}
    if types - set(_SCORE_TYPES):
        raise QueryError(f"dataType must be among {', '.join(_SCORE_TYPES)}")
    values = _list_param(request, "value")
    low, high = _float_param(request, "valueMin"), _float_param(request, "valueMax")
    if (values or low is not None or high is not None) and len(types) != 1:
        raise QueryError("value, valueMin and valueMax need exactly one dataType")
    (kind,) = types if len(types) == 1 else ("",)
    if (low is not None or high is not None) and kind != "NUMERIC":
        raise QueryError("valueMin and valueMax need dataType=NUMERIC")
    if values and kind not in ("NUMERIC", "BOOLEAN", "CATEGORICAL"):
        raise QueryError("value needs dataType NUMERIC, BOOLEAN or CATEGORICAL")
    wanted_values = _score_values(kind, values)
    since, until = _time_param(request, "fromTimestamp"), _time_param(request, "toTimestamp")
    ids, names = set(_list_param(request, "id")), set(_list_param(request, "name"))
    sources = {v.upper() for v in _list_param(request, "source")}
    environments, config_ids = set(_list_param(request, "environment")), set(_list_param(request, "configId"))
    if _list_param(request, "queueId") or _list_param(request, "authorUserId"):
        return []  # lftrace keeps no annotation queues or users: nothing matches
    in_sessions: set[str] = set()
    for session_id in session_ids:
        in_sessions.update(s.id for s in store.list_traces(limit=None, session_id=session_id))
    out = []
    for score in store.scores():
        number = score.value if score.value is not None else 0.0
        if (
            (ids and score.id not in ids)
            or (names and score.name not in names)
            or (sources and score.source.upper() not in sources)
            or (types and score.data_type not in types)
            or (environments and score.environment not in environments)
            or (config_ids and score.config_id not in config_ids)
            or (trace_ids and score.trace_id not in trace_ids)
            or (observation_ids and score.observation_id not in observation_ids)
            or (session_ids and score.trace_id not in in_sessions and score.session_id not in session_ids)
            or (experiment_ids and score.dataset_run_id not in experiment_ids)
            or (since is not None and score.timestamp < since)
            or (until is not None and score.timestamp >= until)
            or (wanted_values is not None and _score_key(score) not in wanted_values)
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            continue
        out.append(score)
    return out


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise QueryError(f"query parameter {name} must be a finite number, not {raw[:40]!r}")
    return value


def _score_values(kind: str, values: list[str]) -> set[Any] | None:
    """The exact values asked for, in the form ``_score_key`` gives a stored score."""
    if not values:
        return None
    if kind == "BOOLEAN":
        if any(v.lower() not in ("true", "false") for v in values):
            raise QueryError('a BOOLEAN value is "true" or "false"')
        return {v.lower() == "true" for v in values}
    if kind == "NUMERIC":
        try:
            numbers = {float(v) for v in values}
        except ValueError:
            raise QueryError("a NUMERIC value must be a finite number") from None
        if not all(math.isfinite(n) for n in numbers):
            raise QueryError("a NUMERIC value must be a finite number")
        return numbers
    return set(values)


def _score_key(score: Score) -> Any:
    if score.data_type == "BOOLEAN":
        return bool(score.value)
    if score.data_type == "NUMERIC":
        return score.value
    return score.string_value


def trace_with_details(trace: Trace) -> dict[str, Any]:
    """``TraceWithDetails`` (a list row): observation and score ids instead of the objects."""
    data = trace.to_dict()
    data["observations"] = [o["id"] for o in data.get("observations") or []]
    data["scores"] = [s["id"] if isinstance(s, dict) else s for s in data.get("scores") or []]
    data["projectId"] = PROJECT_ID
    return data


def observation_view(obs: Observation) -> dict[str, Any]:
    data = obs.to_dict()
    data["projectId"] = PROJECT_ID
    return data


def observation_v2(obs: Observation, trace: Trace, roots: set[str]) -> dict[str, Any]:
    """``ObservationV2``: every field group at once; io and metadata as raw strings, as Langfuse v4 answers."""
    data = obs.to_dict()
    for key in ("input", "output"):
        value = data.get(key)
        data[key] = None if value is None else (value if isinstance(value, str) else orjson.dumps(value).decode())
    data.update(
        {
            "projectId": PROJECT_ID,
            "isRootObservation": obs.id in roots,
            "providedModelName": obs.model,
            "totalCost": (obs.cost_details or {}).get("total"),
            "userId": trace.user_id,
            "sessionId": trace.session_id,
            "traceName": trace.name,
            "tags": list(trace.tags),
            "release": trace.release,
            "public": trace.public,
        }
    )
    return data


def _traces_matching(store: TraceStore, request: Request) -> list[str]:
    """Ids of the traces matching the /traces filters, in the requested order."""
    q = request.query_params
    since = _time_param(request, "fromTimestamp")
    until = _time_param(request, "toTimestamp")
    tags = _list_param(request, "tags")
    environments = set(_list_param(request, "environment"))
    summaries = store.list_traces(
        limit=None,
        name=q.get("name") or None,
        session_id=q.get("sessionId") or None,
        user_id=q.get("userId") or None,
        tag=tags[0] if tags else None,
        since_ns=since,
    )
    rows = [s for s in summaries if (until is None or s.timestamp < until) and set(tags) <= set(s.tags)]
    ids = [s.id for s in rows]
    version, release = q.get("version"), q.get("release")
    if environments or version or release:
        kept = []
        for trace in store.get_traces(ids, inputs=False, outputs=False):
            if environments and trace.environment not in environments:
                continue
            if version and trace.version != version:
                continue
            if release and trace.release != release:
                continue
            kept.append(trace.id)
        ids = kept
    order = q.get("orderBy") or ""
    if order:
        field_name, _, direction = order.partition(".")
        keys: dict[str, Callable[[Any], Any]] = {
            "timestamp": lambda s: s.timestamp,
            "id": lambda s: s.id,
            "name": lambda s: s.name or "",
            "userId": lambda s: s.user_id or "",
            "sessionId": lambda s: s.session_id or "",
        }
        if field_name not in keys or direction not in ("asc", "desc"):
            raise QueryError(f"orderBy {order[:40]!r}: use [timestamp|id|name|userId|sessionId].[asc|desc]")
        by_id = {s.id: s for s in rows}
        ids.sort(key=lambda i: keys[field_name](by_id[i]), reverse=direction == "desc")
    return ids


def _all_observations(
    store: TraceStore, trace_ids: Iterable[str] | None, *, values: bool = True
) -> Iterable[tuple[Observation, Trace]]:
    """``values=False``: without their inputs and outputs (see ``_with_values``)."""
    if trace_ids is not None:
        traces: Iterable[Trace] = store.get_traces(list(trace_ids), inputs=values, outputs=values)
    else:
        traces = store.iter_traces(inputs=values, outputs=values)
    for trace in traces:
        for obs in trace.observations:
            yield obs, trace


def _observations_matching(store: TraceStore, request: Request) -> list[tuple[Observation, Trace]]:
    q = request.query_params
    trace_id = q.get("traceId")
    since = _time_param(request, "fromStartTime")
    until = _time_param(request, "toStartTime")
    wanted_type = (q.get("type") or "").upper() or None
    level = (q.get("level") or "").upper() or None
    environments = set(_list_param(request, "environment"))
    trace_ids = [trace_id] if trace_id else None
    if trace_ids is None and (q.get("userId") or q.get("sessionId")):
        trace_ids = [
            s.id
            for s in store.list_traces(
                limit=None, user_id=q.get("userId") or None, session_id=q.get("sessionId") or None
            )
        ]
    is_root = q.get("isRootObservation")
    try:
        conditions = parse_conditions(q["filter"]) if q.get("filter") else []
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    roots: dict[str, set[str]] = {}
    out = []
    # matched without their inputs and outputs (a long run's inputs are most of a store) unless a filter condition
    # reads the answer's fields; the page returned is read in full after (``_with_values``)
    for obs, trace in _all_observations(store, trace_ids, values=bool(conditions)):
        if q.get("name") and obs.name != q.get("name"):
            continue
        if wanted_type and obs.type != wanted_type:
            continue
        if level and obs.level != level:
            continue
        if q.get("parentObservationId") and obs.parent_id != q.get("parentObservationId"):
            continue
        if q.get("version") and obs.version != q.get("version"):
            continue
        if environments and obs.environment not in environments:
            continue
        if since is not None and obs.start_time < since:
            continue
        if until is not None and obs.start_time >= until:
            continue
        if q.get("userId") and trace.user_id != q.get("userId"):
            continue
        if is_root in ("true", "false") and (obs.parent_id is None) != (is_root == "true"):
            continue
        if conditions and not _holds(conditions, obs, trace, roots):
            continue
        out.append((obs, trace))
    out.sort(key=lambda pair: pair[0].start_time, reverse=True)
    return out


def _with_values(store: TraceStore, rows: list[tuple[Observation, Trace]]) -> list[tuple[Observation, Trace]]:
    """The page of observations chosen, each read again with its input and output (one row each)."""
    return [(store.get_observation(trace.id, obs.id) or obs, trace) for obs, trace in rows]


def _holds(conditions: list[Condition], obs: Observation, trace: Trace, roots: dict[str, set[str]]) -> bool:
    """Whether the observation, as ``ObservationV2`` answers it, meets every condition of ``filter``."""
    if trace.id not in roots:
        roots[trace.id] = _roots_of(trace)
    try:
        return matches(conditions, observation_v2(obs, trace, roots[trace.id]))
    except ValueError as exc:  # a column ObservationV2 does not have
        raise QueryError(str(exc)) from None


def _roots_of(trace: Trace) -> set[str]:
    known = {o.id for o in trace.observations}
    return {o.id for o in trace.observations if o.parent_id is None or o.parent_id not in known}


EXPERIMENTS_MAX_LIMIT = 100  # Langfuse's maximum page of experiments and of experiment items
EXPERIMENT_SCORES_MAX = 50  # scoreLimit's maximum (and default)
_EXPERIMENT_FILTERS = (("id", "id"), ("name", "name"), ("datasetId", "datasetId"))
_ITEM_FILTERS = (
    ("experimentId", "experimentId"),
    ("experimentName", "experimentName"),
    ("experimentItemId", "experimentItemId"),
    ("experimentDatasetId", "datasetId"),
)


def _experiment_query(
    request: Request, known: dict[str, tuple[str, ...]], default: tuple[str, ...]
) -> tuple[int, int, set[str], list[Condition]]:
    """(limit, scoreLimit, field groups, filter conditions) of an experiments request; QueryError as Langfuse's 400."""
    limit = _int_param(request, "limit", DEFAULT_LIMIT, high=EXPERIMENTS_MAX_LIMIT)
    score_limit = _int_param(request, "scoreLimit", EXPERIMENT_SCORES_MAX, high=EXPERIMENT_SCORES_MAX)
    groups = set(_list_param(request, "fields")) or set(default)
    if groups - set(known):
        unknown = ", ".join(sorted(groups - set(known)))
        raise QueryError(f"fields takes {', '.join(known)}, not {unknown[:80]!r}")
    raw = request.query_params.get("filter")
    try:
        conditions = parse_conditions(raw) if raw else []
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    return limit, score_limit, groups | {"core"}, conditions


def _required_time(request: Request, name: str) -> int:
    found = _time_param(request, name)
    if found is None:
        raise QueryError(f"query parameter {name} is required (an ISO-8601 date-time): a lower bound on the time")
    return found


def _meets(conditions: list[Condition], row: dict[str, Any]) -> bool:
    try:
        return matches(conditions, row)
    except ValueError as exc:  # a column the answer does not have
        raise QueryError(str(exc)) from None


def _shaped(
    row: dict[str, Any],
    groups: set[str],
    known: dict[str, tuple[str, ...]],
    score_limit: int,
    scores: list[Score] | None,
) -> dict[str, Any]:
    """An experiment or item with the keys of the groups asked for (scores as ``ScoreV3``)."""
    out = {key: row[key] for group in known if group in groups and group != "scores" for key in known[group]}
    if "scores" in groups:
        chosen = scores if scores is not None else row["scores"]
        out["scores"] = [score_v3(s, {"details", "subject"}) for s in chosen[:score_limit]]
    return out


def _cursor_page(request: Request, rows: list[Any], limit: int, shape: Callable[[Any], Any]) -> dict[str, Any]:
    offset = _decode_cursor(request.query_params.get("cursor"))
    meta: dict[str, Any] = {}
    if offset + limit < len(rows):
        meta["cursor"] = _encode_cursor(offset + limit)  # absent on the last page, as Langfuse has it
    return {"data": [shape(row) for row in rows[offset : offset + limit]], "meta": meta}


def _decode_cursor(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)))
        return max(int(data["offset"]), 0)
    except (ValueError, KeyError, TypeError):
        raise QueryError("query parameter cursor is not a cursor from this server") from None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode().rstrip("=")


def _sessions(store: TraceStore, request: Request) -> list[dict[str, Any]]:
    since = _time_param(request, "fromTimestamp")
    until = _time_param(request, "toTimestamp")
    first: dict[str, int] = {}
    for summary in store.list_traces(limit=None, since_ns=since):
        if summary.session_id and (until is None or summary.timestamp < until):
            first[summary.session_id] = min(first.get(summary.session_id, summary.timestamp), summary.timestamp)
    rows = [
        {"id": sid, "createdAt": iso_from_ns(ts), "projectId": PROJECT_ID, "environment": "default"}
        for sid, ts in first.items()
    ]
    rows.sort(key=lambda r: r["createdAt"] or "", reverse=True)
    return rows


def routes(store: TraceStore, urls: SignedUrls) -> list[Route]:
    def with_media(request: Request, item: dict[str, Any]) -> dict[str, Any]:
        """A dataset item with its ``mediaReferences``: each reference string in its values whose media the
        store holds, with a signed download URL (SDK 5's ``get_dataset`` resolves them)."""
        found = []
        for field_name in ("input", "expectedOutput", "metadata"):
            for path, reference in reference_paths(item.get(field_name)):
                media_id = LangfuseMedia.parse_reference_string(reference)["media_id"]
                record = store.media_record(media_id)
                if record is None or not record["content"]:
                    continue
                url, expires = urls.sign(request, DOWNLOAD_PATH, media_id)
                media = {"mediaId": media_id, "contentType": record["content_type"], "contentLength": record["size"]}
                media.update(url=url, urlExpiry=iso_from_ns(expires * 1_000_000_000))
                found.append({"field": field_name, "referenceString": reference, "jsonPath": path, "media": media})
        return {**item, "mediaReferences": found}

    def endpoint(work: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            try:
                result = await run_in_threadpool(work, request)
            except QueryError as exc:
                return _error(400, str(exc))
            except LftraceError as exc:
                return _error(500, str(exc))
            if isinstance(result, Response):
                return result
            return _json(result)

        return handle

    def health(request: Request) -> Any:
        return {"status": "OK", "version": __version__}

    def projects(request: Request) -> Any:
        return {"data": [PROJECT]}

    def traces(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        ids = _traces_matching(store, request)
        chosen = ids[(page - 1) * limit : page * limit]
        # a list row names its observations: their values (a long run's inputs are most of a store) are not read
        rows = store.get_traces(chosen, inputs=False, outputs=False)
        return {"data": [trace_with_details(t) for t in rows], "meta": _meta(page, limit, len(ids))}

    def trace(request: Request) -> Any:
        """Streamed from the store a page of observations at a time (jsonout): a long agent run's trace is GBs of
        JSON (every input holds the conversation so far), never all in the server's memory."""
        trace_id = request.path_params["trace_id"]
        outline = store.trace_outline(trace_id)
        if outline is None:
            return _error(404, f"trace {trace_id[:64]!r} not found")
        header = {**outline.to_dict(observations=False), "projectId": PROJECT_ID}
        chunks = trace_chunks(header, store.iter_observations(trace_id), indent=False)
        return StreamingResponse(chunks, media_type="application/json")

    def observations(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        rows = _observations_matching(store, request)
        chosen = _with_values(store, rows[(page - 1) * limit : page * limit])
        return {"data": [observation_view(o) for o, _ in chosen], "meta": _meta(page, limit, len(rows))}

    def observations_v2(request: Request) -> Any:
        if (request.query_params.get("parseIoAsJson") or "").lower() == "true":
            raise QueryError("parseIoAsJson=true is not supported: input/output are returned as raw strings")
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        offset = _decode_cursor(request.query_params.get("cursor"))
        rows = _observations_matching(store, request)
        chosen = _with_values(store, rows[offset : offset + limit])
        roots_by_trace = {t.id: _roots_of(t) for _, t in chosen}
        data = [observation_v2(o, t, roots_by_trace[t.id]) for o, t in chosen]
        more = offset + limit < len(rows)
        return {"data": data, "meta": {"cursor": _encode_cursor(offset + limit) if more else None}}

    def observation(request: Request) -> Any:
        wanted = request.path_params["observation_id"]
        obs = store.get_observation(None, wanted)
        if obs is None:
            return _error(404, f"observation {wanted[:64]!r} not found")
        return observation_view(obs)

    def sessions(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        rows = _sessions(store, request)
        return {"data": rows[(page - 1) * limit : page * limit], "meta": _meta(page, limit, len(rows))}

    def session(request: Request) -> Any:
        session_id = request.path_params["session_id"]
        summaries = store.list_traces(limit=None, session_id=session_id)
        if not summaries:
            return _error(404, f"session {session_id[:64]!r} not found")
        traces = store.get_traces([s.id for s in reversed(summaries)], inputs=False, outputs=False)
        rows = []
        for t in traces:
            data = t.to_dict()
            data.pop("observations", None)
            data.pop("scores", None)
            rows.append(data)
        first = min(summaries, key=lambda s: s.timestamp)
        return {
            "id": session_id,
            "createdAt": iso_from_ns(first.timestamp),
            "projectId": PROJECT_ID,
            "environment": traces[0].environment if traces else "default",
            "traces": rows,
        }

    def scores(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        q = request.query_params
        trace_id = q.get("traceId")

        def wanted(score: Score) -> bool:
            return not (
                (q.get("name") and score.name != q.get("name"))
                or (q.get("observationId") and score.observation_id != q.get("observationId"))
                or (q.get("dataType") and score.data_type != q.get("dataType"))
                or (q.get("datasetRunId") and score.dataset_run_id != q.get("datasetRunId"))
            )

        def row(score: Score, trace: dict[str, Any] | None) -> dict[str, Any]:
            return {**score.to_v2_dict(), "trace": trace}

        # a score row takes the trace's user, tags and environment: not its observations' values
        traces = (
            store.get_traces([trace_id], inputs=False, outputs=False)
            if trace_id
            else store.iter_traces(inputs=False, outputs=False)
        )
        rows = []
        for t in traces:
            if q.get("userId") and t.user_id != q.get("userId"):
                continue
            if q.get("sessionId") and t.session_id != q.get("sessionId"):
                continue
            trace = {"userId": t.user_id, "tags": list(t.tags), "environment": t.environment}
            rows += [row(score, trace) for score in t.scores if wanted(score)]
        if not trace_id and not q.get("userId"):  # the scores of sessions and dataset runs
            rows += [
                row(score, None)
                for score in store.scores()
                if score.standalone and wanted(score) and q.get("sessionId") in (None, score.session_id)
            ]
        rows.sort(key=lambda r: r.get("timestamp") or "", reverse=True)
        return {"data": rows[(page - 1) * limit : page * limit], "meta": _meta(page, limit, len(rows))}

    def scores_v3(request: Request) -> Any:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=SCORES_V3_MAX_LIMIT)
        groups = set(_list_param(request, "fields"))
        if groups - set(SCORE_FIELD_GROUPS):
            raise QueryError(f"fields takes {', '.join(SCORE_FIELD_GROUPS)}, not {', '.join(sorted(groups))[:80]!r}")
        offset = _decode_cursor(request.query_params.get("cursor"))
        rows = _scores_v3_matching(store, request)
        meta: dict[str, Any] = {"limit": limit}
        if offset + limit < len(rows):
            meta["cursor"] = _encode_cursor(offset + limit)  # absent on the last page, as Langfuse has it
        return {"data": [score_v3(s, groups) for s in rows[offset : offset + limit]], "meta": meta}

    def experiments(request: Request) -> Any:
        limit, score_limit, groups, conditions = _experiment_query(request, EXPERIMENT_GROUPS, ("core",))
        since, until = _required_time(request, "fromStartTime"), _time_param(request, "toStartTime")
        wanted = {key: set(_list_param(request, param)) for key, param in _EXPERIMENT_FILTERS}
        rows = [
            row
            for row in experiments_of(experiment_items(store, since, until, io=False))
            if all(not want or row[key] in want for key, want in wanted.items()) and _meets(conditions, row)
        ]
        of_runs = run_scores(store) if "scores" in groups else {}
        return _cursor_page(request, rows, limit, lambda row: _shaped(row, groups, EXPERIMENT_GROUPS, score_limit,
                                                                       of_runs.get(row["id"], [])))  # fmt: skip

    def experiment_items_(request: Request) -> Any:
        limit, score_limit, groups, conditions = _experiment_query(request, ITEM_GROUPS, ("core", "dataset"))
        since, until = _required_time(request, "fromStartTime"), _time_param(request, "toStartTime")
        wanted = {key: set(_list_param(request, param)) for key, param in _ITEM_FILTERS}
        rows = [
            row
            for row in experiment_items(store, since, until, io="io" in groups)
            if all(not want or row[key] in want for key, want in wanted.items()) and _meets(conditions, row)
        ]
        return _cursor_page(request, rows, limit, lambda row: _shaped(row, groups, ITEM_GROUPS, score_limit, None))

    def prompt(request: Request) -> Any:
        name = request.path_params["name"]
        raw_version = request.query_params.get("version")
        version = _int_param(request, "version", 1) if raw_version not in (None, "") else None
        label = request.query_params.get("label") or None
        if version is not None and label is not None:
            raise QueryError("give a prompt's version or its label, not both")
        found = store.get_prompt(name, version=version, label=label)
        if found is None:
            wanted = f"version {version}" if version is not None else f"label {label or 'production'!r}"
            return _error(404, f"prompt {name[:200]!r} with {wanted[:100]} not found")
        return found

    def prompts(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        q = request.query_params
        rows = [
            meta
            for meta in store.list_prompts()
            if q.get("name") in (None, meta["name"])
            and q.get("label") in (None, *meta["labels"])
            and q.get("tag") in (None, *meta["tags"])
        ]
        return {"data": rows[(page - 1) * limit : page * limit], "meta": _meta(page, limit, len(rows))}

    def dataset(request: Request) -> Any:
        name = request.path_params["name"]
        found = store.get_dataset(name)
        if found is None:
            return _error(404, f"dataset {name[:200]!r} not found")
        return {**found, "projectId": PROJECT_ID}

    def datasets(request: Request) -> Any:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        rows = [{**d, "projectId": PROJECT_ID} for d in store.list_datasets()]
        return {"data": rows[(page - 1) * limit : page * limit], "meta": _meta(page, limit, len(rows))}

    def dataset_items(request: Request) -> Any:
        name = request.query_params.get("datasetName")
        if not name:
            raise QueryError("query parameter datasetName is required")
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        if store.get_dataset(name) is None:
            return _error(404, f"dataset {name[:200]!r} not found")
        try:  # version: the items as they were then (SDK 5's get_dataset(version=...))
            as_of = _time_param(request, "version")
            rows, total = store.dataset_items(name, offset=(page - 1) * limit, limit=limit, as_of_ns=as_of)
        except DatasetHistoryMissing as exc:
            return _error(400, str(exc))
        return {"data": [with_media(request, row) for row in rows], "meta": _meta(page, limit, total)}

    def dataset_item(request: Request) -> Any:
        item_id = request.path_params["item_id"]
        found = store.get_dataset_item(item_id)
        return (
            with_media(request, found) if found is not None else _error(404, f"dataset item {item_id[:64]!r} not found")
        )

    return [
        Route("/api/public/v2/datasets", endpoint(datasets), methods=["GET"]),
        Route("/api/public/v2/datasets/{name:path}", endpoint(dataset), methods=["GET"]),
        Route("/api/public/dataset-items", endpoint(dataset_items), methods=["GET"]),
        Route("/api/public/dataset-items/{item_id}", endpoint(dataset_item), methods=["GET"]),
        Route("/api/public/v2/prompts", endpoint(prompts), methods=["GET"]),
        Route("/api/public/v2/prompts/{name:path}", endpoint(prompt), methods=["GET"]),
        Route("/api/public/health", endpoint(health), methods=["GET"]),
        Route("/api/public/projects", endpoint(projects), methods=["GET"]),
        Route("/api/public/traces", endpoint(traces), methods=["GET"]),
        Route("/api/public/traces/{trace_id}", endpoint(trace), methods=["GET"]),
        Route("/api/public/observations", endpoint(observations), methods=["GET"]),
        Route("/api/public/v2/observations", endpoint(observations_v2), methods=["GET"]),
        Route("/api/public/observations/{observation_id}", endpoint(observation), methods=["GET"]),
        Route("/api/public/sessions", endpoint(sessions), methods=["GET"]),
        Route("/api/public/sessions/{session_id}", endpoint(session), methods=["GET"]),
        Route("/api/public/scores", endpoint(scores), methods=["GET"]),
        Route("/api/public/v2/scores", endpoint(scores), methods=["GET"]),
        Route("/api/public/v3/scores", endpoint(scores_v3), methods=["GET"]),
        Route("/api/public/experiments", endpoint(experiments), methods=["GET"]),
        Route("/api/public/experiment-items", endpoint(experiment_items_), methods=["GET"]),
    ]
