"""``Langfuse.api``: the public REST API under the names of the Langfuse SDK's generated client.

``langfuse.api.observations.get_many(trace_id=...)``, ``langfuse.api.scores.get_many(session_id=...)``,
``langfuse.api.datasets.get(dataset_name)``, ... send the request that method sends: with Langfuse keys to Langfuse,
without keys to ``lftrace serve``'s own routes, run in this process over the local store (no server, no network).
Answers come back as ``ApiObject``: attributes in snake_case over the JSON's camelCase fields, times as datetimes,
as the SDK's models give them; ``dict()``/``model_dump()`` give the data. A non-2xx answer raises ``ApiError``
(``status_code``, ``body``), as the SDK's client does.

The methods are the SDK 5 client's read paths, its dataset/score/prompt writes, and the v1 trace, observation and
session reads of SDK 3 (``api.trace.get``, ``api.trace.list``, ``api.sessions.list``), which Langfuse still serves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .errors import LftraceError

_ROUTES: dict[str, dict[str, tuple[str, str]]] = {
    # resource -> method -> (HTTP method, path; {name} is a path parameter)
    "trace": {
        "get": ("GET", "/api/public/traces/{trace_id}"),
        "list": ("GET", "/api/public/traces"),
    },
    "observations": {
        "get_many": ("GET", "/api/public/v2/observations"),
        "get": ("GET", "/api/public/observations/{observation_id}"),
    },
    "sessions": {
        "list": ("GET", "/api/public/sessions"),
        "get": ("GET", "/api/public/sessions/{session_id}"),
    },
    "scores": {
        "get_many": ("GET", "/api/public/v3/scores"),
        "create": ("POST", "/api/public/scores"),
    },
    "datasets": {
        "list": ("GET", "/api/public/v2/datasets"),
        "get": ("GET", "/api/public/v2/datasets/{dataset_name}"),
        "create": ("POST", "/api/public/v2/datasets"),
    },
    "dataset_items": {
        "list": ("GET", "/api/public/dataset-items"),
        "get": ("GET", "/api/public/dataset-items/{id}"),
        "create": ("POST", "/api/public/dataset-items"),
    },
    "prompts": {
        "list": ("GET", "/api/public/v2/prompts"),
        "get": ("GET", "/api/public/v2/prompts/{prompt_name}"),
        "create": ("POST", "/api/public/v2/prompts"),
    },
    "media": {
        "get": ("GET", "/api/public/media/{media_id}"),
        "patch": ("PATCH", "/api/public/media/{media_id}"),
    },
    "experiments": {
        "list": ("GET", "/api/public/experiments"),
        "list_items": ("GET", "/api/public/experiment-items"),
    },
    "projects": {"get": ("GET", "/api/public/projects")},
    "health": {"health": ("GET", "/api/public/health")},
}
# free-form JSON in Langfuse's schema (dicts there too): returned as they are, not as ApiObject
_PLAIN = frozenset(
    ("metadata", "input", "output", "usageDetails", "costDetails", "modelParameters", "config", "expectedOutput",
     "inputSchema", "expectedOutputSchema", "experimentMetadata", "experimentItemMetadata")
)  # fmt: skip
# ``api.trace.get(id)`` without keys is answered from the store in this process (``_local_trace``)
_TRACE_PATH = re.compile(r"/api/public/traces/([^/]+)")
_TIME_KEY = re.compile(r"(?:^timestamp$|Time$|At$|Timestamp$|^version$|^experimentItemVersion$)")
_PATH_PARAM = re.compile(r"{(\w+)}")


class ApiError(LftraceError):
    """The API answered with an error status (``status_code``; ``body``: its JSON, or its text)."""

    def __init__(self, *, status_code: int | None, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"the Langfuse API answered {status_code}: {body}")
        self.status_code, self.body, self.headers = status_code, body, dict(headers or {})


class ApiObject:
    """One JSON object of an answer: ``obj.start_time`` reads ``startTime`` (a datetime), ``obj.data`` a list of
    them; ``obj["startTime"]`` and ``model_dump()`` (or ``dict()``) read the JSON itself."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getattr__(self, name: str) -> Any:
        data = self._data
        for key in (name, _camel(name)):
            if key in data:
                return _wrapped(key, data[key])
        if name.startswith("__"):
            raise AttributeError(name)
        return None  # an optional field the answer left out, as the SDK's models give it

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiObject) and other._data == self._data

    __hash__ = None  # type: ignore[assignment]

    def model_dump(self, **ignored: Any) -> dict[str, Any]:
        """The JSON object (camelCase keys, as the API sent it)."""
        return dict(self._data)

    dict = model_dump  # pydantic v1's name, which the SDK's models still answer to

    def __repr__(self) -> str:
        shown = ", ".join(f"{_snake(k)}={v!r}" for k, v in list(self._data.items())[:6])
        return f"ApiObject({shown}{', ...' if len(self._data) > 6 else ''})"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _wrapped(key: str, value: Any) -> Any:
    if key in _PLAIN:
        return value
    if isinstance(value, dict):
        return ApiObject(value)
    if isinstance(value, list):
        return [ApiObject(v) if isinstance(v, dict) else v for v in value]
    if isinstance(value, str) and _TIME_KEY.search(key):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def _wire(value: Any) -> Any:
    """A keyword argument as the API takes it: datetimes in ISO 8601, booleans as true/false."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


class _Resource:
    def __init__(self, api: PublicApi, name: str) -> None:
        self._api, self._name = api, name

    def __getattr__(self, method: str) -> Any:
        route = _ROUTES[self._name].get(method)
        if route is None:
            known = ", ".join(sorted(_ROUTES[self._name]))
            raise AttributeError(f"lftrace's api.{self._name} has no {method}() (it has: {known})")
        verb, path = route

        def call(*args: Any, request_options: Any = None, **kwargs: Any) -> Any:
            names = _PATH_PARAM.findall(path)
            values = dict(zip(names, args, strict=False))
            if len(args) > len(names):
                raise TypeError(f"api.{self._name}.{method}() takes {len(names)} positional argument(s)")
            values.update({n: kwargs.pop(n) for n in names if n in kwargs})
            missing = [n for n in names if n not in values]
            if missing:
                raise TypeError(f"api.{self._name}.{method}() needs {', '.join(missing)}")
            url = _PATH_PARAM.sub(lambda m: quote(str(values[m.group(1)]), safe=""), path)
            fields = {_camel(k): _wire(v) for k, v in kwargs.items() if v is not None}
            return self._api.request(verb, url, fields)

        call.__name__ = method
        return call


class PublicApi:
    """The client's ``api``: one attribute per resource of the SDK's generated client (``api.observations``...)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._http: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> _Resource:
        if name not in _ROUTES:
            raise AttributeError(f"lftrace's api has no {name} (it has: {', '.join(sorted(_ROUTES))})")
        return _Resource(self, name)

    def request(self, verb: str, path: str, fields: Mapping[str, Any]) -> Any:
        if verb == "GET" and not fields and not self._client.settings.langfuse_enabled:
            local = self._local_trace(path)
            if local is not None:
                return local
        http = self._transport()
        sent = {"params" if verb == "GET" else "json": dict(fields)}  # GET: query parameters; else a JSON body
        answer = http.request(verb, path, **sent)
        try:
            try:
                body = answer.json()
            except ValueError:
                body = answer.text
            status, headers = answer.status_code, dict(answer.headers)
        finally:  # a trace's answer can be megabytes: not kept until a garbage collection (otlp.release)
            from .exporters.otlp import release

            release(answer)
        if status >= 400:
            raise ApiError(status_code=status, body=body, headers=headers)
        return ApiObject(body) if isinstance(body, dict) else body

    def _local_trace(self, path: str) -> ApiObject | None:
        """``GET /api/public/traces/{id}`` over this process's store, the JSON the route answers but read into
        objects directly: a long run's trace is GBs as JSON text (every input holds the conversation so far),
        while the store's read shares the messages successive observations have in common (a 2,000-step loop:
        0.25 s and 170 MB instead of 15 s and 3.2 GB). None: not that path, or no such trace (the route's 404)."""
        match = _TRACE_PATH.fullmatch(path)
        if match is None:
            return None
        from urllib.parse import unquote

        from .server.api import PROJECT_ID

        found = self._client.store.get_traces([unquote(match.group(1))])
        if not found:
            return None
        return ApiObject({**found[0].to_dict(), "projectId": PROJECT_ID})

    def http(self) -> Any:
        """The HTTP client the requests go through (httpx to Langfuse, or the in-process server)."""
        return self._transport()

    def _transport(self) -> Any:
        with self._lock:
            if self._http is None:
                self._http = self._open()
            return self._http

    def _open(self) -> Any:
        settings = self._client.settings
        if settings.langfuse_enabled:
            import httpx

            assert settings.public_key is not None and settings.secret_key is not None
            return httpx.Client(
                base_url=settings.base_url.rstrip("/"),
                auth=(settings.public_key, settings.secret_key),
                headers=settings.langfuse_headers,
                timeout=settings.timeout,
            )
        # no keys: `lftrace serve`'s routes answer in this process, over the client's own store
        from starlette.testclient import TestClient

        from .server.app import ServerSettings, create_app

        store = self._client.store
        app = create_app(ServerSettings(store_path=store.path, loopback_only=False), store=store)
        return TestClient(app, base_url="http://lftrace.local", raise_server_exceptions=True)

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None


class AsyncPublicApi:
    """The client's ``async_api``: the same methods, awaited (each request on a worker thread)."""

    def __init__(self, api: PublicApi) -> None:
        self._api = api

    def __getattr__(self, name: str) -> _AsyncResource:
        return _AsyncResource(getattr(self._api, name))


class _AsyncResource:
    def __init__(self, resource: _Resource) -> None:
        self._resource = resource

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._resource, method)

        async def awaited(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(call, *args, **kwargs)

        awaited.__name__ = method
        return awaited
