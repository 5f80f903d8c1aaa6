"""Reads from the Langfuse public API: health, projects (the auth check), and a remote trace.

Every failure is a ``BackendError`` with one line naming the host and the fix: server down, an HTML or
garbage answer (wrong URL), rejected keys (401/403), an invalid URL. ``httpx`` is imported lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from ..config import Settings, mask_secret, redact_url
from ..errors import BackendError, LftraceError, TraceNotFound
from ..model import Observation, Trace, json_or_text, ns_from_iso

if TYPE_CHECKING:
    from ..store import TraceStore

V2_FIELDS = "core,basic,time,io,metadata,model,usage,prompt,metrics,trace_context"
MAX_PAGES = 100


def _check_base_url(base_url: str) -> str:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BackendError(
            f"'{base_url}' is not an http(s) URL (set LANGFUSE_BASE_URL to e.g. https://cloud.langfuse.com)"
        )
    return base_url.rstrip("/")


def _get(
    base_url: str,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """GET and decode JSON; returns (status, data) for 2xx and 404, raises BackendError otherwise."""
    return _call("GET", base_url, path, auth=auth, params=params, timeout=timeout, headers=headers)


def _call(
    method: str,
    base_url: str,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    params: dict[str, Any] | None = None,
    body: Any = None,
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request with a JSON answer: (status, data) for 2xx and 404, BackendError otherwise. ``headers``: the
    client's ``additional_headers`` (a proxy's), sent with every request to Langfuse, as the SDK sends them."""
    import httpx

    from .otlp import call_with_deadline, release, shutdown_connections

    host = _check_base_url(base_url)
    url = host + path
    host = redact_url(host)  # in messages: a password inside the URL is never shown
    client = httpx.Client(timeout=timeout, follow_redirects=True, headers=dict(headers or {}))
    try:
        # one deadline for the whole call: httpx's timeouts bound each read, not a server trickling its answer
        done, response = call_with_deadline(
            lambda: client.request(method, url, auth=auth, params=params, json=body),
            timeout,
            lambda: shutdown_connections(client),
        )
        if not done:
            raise httpx.ReadTimeout("deadline")
    except httpx.TimeoutException:
        raise BackendError(f"Langfuse at {host} did not answer within {timeout:g}s (is the server up?)") from None
    except httpx.ConnectError:
        raise BackendError(
            f"cannot connect to Langfuse at {host} (is the server up and LANGFUSE_BASE_URL right?)"
        ) from None
    except httpx.HTTPError as exc:
        raise BackendError(
            f"request to Langfuse at {host} failed: {type(exc).__name__} (check LANGFUSE_BASE_URL)"
        ) from None
    finally:
        client.close()
    try:
        return _answer(response, host, url, path, auth)
    finally:  # the response and its stream refer to each other (encode/httpx#3733): let go of the body now
        release(response)


def _answer(response: Any, host: str, url: str, path: str, auth: tuple[str, str] | None) -> tuple[int, Any]:
    """A read answer's (status, data), or the BackendError that says what is wrong with it."""
    status = response.status_code
    if status in (401, 403):
        public_key = mask_secret(auth[0]) if auth else "(no key)"
        raise BackendError(
            f"Langfuse rejected the keys for {host} ({status}): check LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, {public_key}"
        )
    try:
        data = response.json()
    except ValueError:
        kind = "an HTML page" if response.text.lstrip().startswith("<") else "a non-JSON answer"
        raise BackendError(
            f"{redact_url(url)} answered {status} with {kind}: is {host} a Langfuse server? (check LANGFUSE_BASE_URL)"
        ) from None
    if status == 404 or 200 <= status < 300:
        return status, data
    message = data.get("message") if isinstance(data, dict) else None
    raise BackendError(f"Langfuse at {host} answered {status} for {path}" + (f": {message}" if message else ""))


def health(base_url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"status": "OK", "version": ...}`` or BackendError."""
    status, data = _get(base_url, "/api/public/health", timeout=timeout, headers=headers)
    if status != 200 or not isinstance(data, dict) or "status" not in data:
        raise BackendError(
            f"{base_url.rstrip('/')}/api/public/health is not a Langfuse health endpoint (check LANGFUSE_BASE_URL)"
        )
    return data


def projects(
    base_url: str, public_key: str, secret_key: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The key's projects (one for a project key): the credentials check and the project id."""
    status, data = _get(
        base_url, "/api/public/projects", auth=(public_key, secret_key), timeout=timeout, headers=headers
    )
    if status != 200 or not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BackendError(
            f"{base_url.rstrip('/')}/api/public/projects gave an unexpected answer (check LANGFUSE_BASE_URL)"
        )
    return data["data"]


def project_id(
    base_url: str, public_key: str, secret_key: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None
) -> str:
    found = projects(base_url, public_key, secret_key, timeout, headers)
    if not found or not found[0].get("id"):
        raise BackendError(f"Langfuse at {base_url.rstrip('/')} lists no project for {mask_secret(public_key)}")
    return str(found[0]["id"])


def _prompt_path(name: str) -> str:
    return f"/api/public/v2/prompts/{quote(name, safe='')}"  # a prompt in a folder ("a/b") is one path segment


def _project_call(
    settings: Settings,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    timeout: float | None = None,
) -> dict[str, Any] | None:
    """A call of the project's API with the configured keys: its JSON object, None for a 404 (no such thing)."""
    status, data = _call(
        method,
        settings.base_url,
        path,
        auth=_auth(settings),
        params=params,
        body=body,
        timeout=timeout or settings.timeout,
        headers=settings.langfuse_headers,
    )
    return data if status != 404 and isinstance(data, dict) else None


def _made(settings: Settings, found: dict[str, Any] | None, api: str) -> dict[str, Any]:
    if found is None:
        raise BackendError(f"Langfuse at {redact_url(settings.base_url)} has no {api} API (it answered 404)")
    return found


def _pages(settings: Settings, path: str, params: dict[str, Any], page_size: int) -> list[dict[str, Any]] | None:
    """Every row of a paged list (``data`` and ``meta.totalPages``); None when Langfuse has no such list."""
    out: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        found = _project_call(settings, "GET", path, params={**params, "page": page, "limit": page_size})
        rows = found.get("data") if found is not None else None
        if not isinstance(rows, list):
            return None if page == 1 else out
        out += rows
        if not rows or page >= int((found.get("meta") or {}).get("totalPages") or 1):  # type: ignore[union-attr]
            break
    return out


def get_prompt(
    settings: Settings, name: str, *, version: int | None, label: str | None, timeout: float
) -> dict[str, Any] | None:
    """A prompt version from Langfuse (Langfuse's ``Prompt`` JSON); None when it has no such prompt."""
    params = {k: v for k, v in (("version", version), ("label", label)) if v is not None}
    return _project_call(settings, "GET", _prompt_path(name), params=params, timeout=timeout)


def create_prompt(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/public/v2/prompts``: the new version, as Langfuse made it."""
    return _made(settings, _project_call(settings, "POST", "/api/public/v2/prompts", body=body), "prompts")


def list_prompts(settings: Settings) -> list[dict[str, Any]]:
    """Every prompt of the project (Langfuse's ``PromptMeta``: name, type, versions, labels, tags)."""
    rows = _pages(settings, "/api/public/v2/prompts", {}, 100)
    if rows is None:
        raise BackendError(f"Langfuse at {redact_url(settings.base_url)} has no prompts API (it answered 404)")
    return rows


def label_prompt(settings: Settings, name: str, version: int, new_labels: list[str]) -> dict[str, Any] | None:
    """``PATCH .../versions/{version}``: the version with its new labels; None when Langfuse has no such version."""
    path = f"{_prompt_path(name)}/versions/{int(version)}"
    return _project_call(settings, "PATCH", path, body={"newLabels": new_labels})


def create_dataset(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/public/v2/datasets``: the dataset, as Langfuse made (or kept) it."""
    return _made(settings, _project_call(settings, "POST", "/api/public/v2/datasets", body=body), "datasets")


def create_dataset_item(settings: Settings, body: dict[str, Any]) -> dict[str, Any] | None:
    """``POST /api/public/dataset-items``: the item; None when Langfuse has no such dataset."""
    return _project_call(settings, "POST", "/api/public/dataset-items", body=body)


def get_dataset(settings: Settings, name: str) -> dict[str, Any] | None:
    return _project_call(settings, "GET", f"/api/public/v2/datasets/{quote(name, safe='')}")


def dataset_items(
    settings: Settings, name: str, *, page_size: int = 50, version: datetime | None = None
) -> list[dict[str, Any]]:
    """Every item of a dataset, page by page; with ``version``, as they were at that time (Langfuse keeps them)."""
    params: dict[str, Any] = {"datasetName": name}
    if version is not None:
        params["version"] = version.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return _pages(settings, "/api/public/dataset-items", params, page_size) or []


def _auth(settings: Settings) -> tuple[str, str]:
    return (settings.public_key or "", settings.secret_key or "")


def project_meta_key(settings: Settings) -> str:
    """Where the store's meta keeps the project id of these keys on this host (no password in it)."""
    return f"langfuse.project_id:{redact_url(settings.base_url)}:{settings.public_key}"


def cached_project_id(settings: Settings, store: TraceStore | None) -> str | None:
    """The project id of the configured keys, for trace URLs: from the store's meta, else asked of Langfuse
    (``/api/public/projects``) and kept there. None without keys, or when Langfuse cannot be asked."""
    if not (settings.public_key and settings.secret_key):  # (narrows both for mypy: langfuse_enabled cannot)
        return None
    key = project_meta_key(settings)
    try:
        pid = store.get_meta(key) if store is not None else None
    except LftraceError:  # a store that cannot be read only costs the cache
        store = None
        pid = None
    if pid is None:
        try:
            pid = project_id(
                settings.base_url,
                settings.public_key,
                settings.secret_key,
                timeout=settings.timeout,
                headers=settings.langfuse_headers,
            )
        except BackendError:
            return None
        if store is not None:
            with contextlib.suppress(LftraceError):
                store.set_meta(key, pid)
    return pid


def fetch_trace(
    base_url: str,
    public_key: str,
    secret_key: str,
    trace_id: str,
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
) -> Trace:
    """A trace from Langfuse: v2 observations API (v4 servers), else v1 ``/api/public/traces/{id}``."""
    auth = (public_key, secret_key)
    observations: list[dict[str, Any]] = []
    cursor: str | None = None
    v2_available = True
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"traceId": trace_id, "fields": V2_FIELDS, "limit": 1000, "expandMetadata": "true"}
        if cursor:
            params["cursor"] = cursor
        status, data = _get(
            base_url, "/api/public/v2/observations", auth=auth, params=params, timeout=timeout, headers=headers
        )
        if status == 404:
            v2_available = False
            break
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BackendError(f"Langfuse at {base_url.rstrip('/')} sent an unexpected observations page")
        observations.extend(data["data"])
        cursor = (data.get("meta") or {}).get("cursor")
        if not cursor:
            break
    if observations:
        return trace_from_v2(trace_id, observations)
    status, data = _get(base_url, f"/api/public/traces/{trace_id}", auth=auth, timeout=timeout, headers=headers)
    if status == 404 or not isinstance(data, dict):
        where = "" if v2_available else " (v1 API)"
        raise TraceNotFound(
            f"no trace '{trace_id}' in Langfuse at {base_url.rstrip('/')}{where} "
            "(it may still be processing: Langfuse Cloud shows traces 15-30 s after export)"
        )
    data.setdefault("id", trace_id)
    return Trace.from_dict(data)


def trace_from_v2(trace_id: str, rows: list[dict[str, Any]]) -> Trace:
    observations = []
    for row in rows:
        obs = Observation.from_dict(
            {
                **row,
                "traceId": row.get("traceId") or trace_id,
                "model": row.get("providedModelName") or row.get("model"),
                "input": json_or_text(row.get("input")),
                "output": json_or_text(row.get("output")),
                "metadata": json_or_text(row.get("metadata")),
            }
        )
        if obs.metadata is not None and not isinstance(obs.metadata, dict):
            obs.metadata = {"value": obs.metadata}
        observations.append(obs)
    known = {o.id for o in observations}
    roots = [o for o in observations if o.parent_id is None or o.parent_id not in known]
    root_rows = [r for r in rows if r.get("isRootObservation") or r.get("parentObservationId") in (None, "")]
    first = root_rows[0] if root_rows else (rows[0] if rows else {})
    root = min(roots, key=lambda o: o.start_time) if roots else None
    ends = [o.end_time for o in observations if o.end_time is not None]
    # parents first, like the local store
    order = {o.id: i for i, o in enumerate(sorted(observations, key=lambda o: o.start_time))}
    observations.sort(key=lambda o: (o.parent_id is not None, order[o.id]))
    return Trace(
        id=trace_id,
        name=first.get("traceName") or (root.name if root else None),
        timestamp=min((o.start_time for o in observations), default=ns_from_iso(first.get("startTime")) or 0),
        input=root.input if root else None,
        output=root.output if root else None,
        session_id=first.get("sessionId"),
        user_id=first.get("userId"),
        release=first.get("release"),
        version=first.get("version"),
        tags=list(first.get("tags") or []),
        environment=first.get("environment") or "default",
        public=bool(first.get("public", False)),
        observations=observations,
        end_time=max(ends) if ends else None,
    )
