"""The Langfuse SDK surface around the handler: ``@observe``, spans and generations as context managers, the current
trace/observation, trace attributes and scores - with the official SDK's names, so code written for ``langfuse``
works with only the import changed.

How it is recorded: the spans a process opens for one trace id form a *fragment* (a ``Trace`` holding their
observations and the trace attributes set through them). When the fragment's last open span ends, the fragment goes
to the writer like a handler's trace, and the store merges it with whatever else has that trace id (LangChain runs
inside the spans, other threads, other processes). A LangChain run started inside a span nests under it: the
callback handler reads the current span from ``current_observation()`` (a contextvar; ~0.1 us).

Stdlib and ``model`` only at import; the client is imported when a span starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar, overload

from .ids import new_span_id
from .ids import new_trace_id as _random_trace_id
from .model import OBSERVATION_TYPES, Observation, Score, Trace, ns_from_datetime
from .sharing import snapshot

log = logging.getLogger("lftrace")

F = TypeVar("F", bound=Callable[..., Any])
_TYPES = {t.lower(): t for t in OBSERVATION_TYPES}
# The innermost span around the running code: an SDK span, or the Observation of a LangChain run (set by the
# callback handler, wrapped on demand by _current_span so the handler allocates nothing per run).
_current: contextvars.ContextVar[LangfuseObservation | Observation | None] = contextvars.ContextVar(
    "lftrace_current_observation", default=None
)
_propagated: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "lftrace_propagated_attributes", default=None
)


def _span_id() -> str:
    return new_span_id()


def new_trace_id(seed: str | None = None) -> str:
    """32 lowercase hex; with a seed, the same id every time (the first 16 bytes of its SHA-256, as the SDK does)."""
    if seed:
        return hashlib.sha256(seed.encode("utf-8")).digest()[:16].hex()
    return _random_trace_id()


def _ns(value: datetime | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return ns_from_datetime(value if value.tzinfo is not None else value.astimezone())  # naive: local time
    return int(value)


def _current_span() -> LangfuseObservation | None:
    value = _current.get()
    if type(value) is Observation:
        # a LangChain run; one that already ended (its reset happened in another context) is no parent
        return _RunSpan(value) if value.end_time is None else None
    return value  # type: ignore[return-value]


def current_observation() -> LangfuseObservation | None:
    """The span/generation of the innermost ``start_as_current_*`` or ``@observe`` (or LangChain run) around this code."""
    return _current_span()


def propagated_attributes() -> dict[str, Any] | None:
    """Trace attributes set by ``propagate_attributes`` around this code (user_id, session_id, tags, ...)."""
    return _propagated.get()


class _Fragment:
    """The spans this process opened for one trace id, and the trace attributes set through them."""

    def __init__(self, client: Any, trace_id: str, *, remote_parent: bool) -> None:
        self.client = client
        self.trace = Trace(id=trace_id, name=None, timestamp=0, environment=_environment(client))
        propagated = _propagated.get()
        if propagated and "environment" in propagated:  # propagate_attributes(environment=...) around this span
            self.trace.environment = propagated["environment"]
        self.remote_parent = remote_parent  # started under a span of another process: not the trace's root
        self.open = 0
        self.lock = threading.Lock()
        self.submitted = False

    def opened(self, obs: Observation) -> None:
        with self.lock:
            self.open += 1
            self.trace.observations.append(obs)
            if not self.trace.timestamp or obs.start_time < self.trace.timestamp:
                self.trace.timestamp = obs.start_time

    def closed(self, is_root: bool) -> None:
        """Submit when the last span ends - or when the root ends while children are still open (they follow)."""
        with self.lock:
            self.open -= 1
            due = self.open <= 0 or is_root or self.submitted
            if due:
                self.submitted = True
                ends = [o.end_time for o in self.trace.observations if o.end_time is not None]
                roots = [o for o in self.trace.observations if o.parent_id is None]
                snapshot = Trace(
                    id=self.trace.id,
                    # Langfuse names a trace after its root span unless told otherwise
                    name=self.trace.name or (roots[0].name if roots and not self.remote_parent else None),
                    timestamp=self.trace.timestamp,
                    input=self.trace.input,
                    output=self.trace.output,
                    session_id=self.trace.session_id,
                    user_id=self.trace.user_id,
                    release=self.trace.release,
                    version=self.trace.version,
                    metadata=dict(self.trace.metadata) if self.trace.metadata else None,
                    tags=list(self.trace.tags),
                    environment=self.trace.environment,
                    public=self.trace.public,
                    observations=list(self.trace.observations),
                    end_time=max(ends) if ends else None,
                    scores=list(self.trace.scores),
                )
                self.trace.scores = []
        if due:
            _submit(self.client, snapshot)


def _environment(client: Any) -> str:
    settings = getattr(client, "settings", None)
    return getattr(settings, "environment", None) or "default"


def _submit(client: Any, trace: Trace) -> None:
    if client is None or not getattr(client, "tracing_active", False):
        return
    if not client.should_sample(trace.id):
        return
    client._submit(trace)


def prompt_reference(prompt: Any) -> tuple[str, int | None] | None:
    """(name, version) of a Langfuse prompt client (duck-typed) or a ``{"name", "version"}`` dict; None for others.

    A fallback prompt (the SDK's default when the prompt could not be fetched) links nothing, as upstream.
    """
    if isinstance(prompt, Mapping):
        name, version, fallback = prompt.get("name"), prompt.get("version"), prompt.get("is_fallback")
    else:
        name = getattr(prompt, "name", None)
        version = getattr(prompt, "version", None)
        fallback = getattr(prompt, "is_fallback", False)
    if not isinstance(name, str) or not name or fallback is True:
        return None
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    return name, version if isinstance(version, int) and not isinstance(version, bool) else None


def _prompt_fields(prompt: Any) -> tuple[str | None, int | None]:
    found = prompt_reference(prompt)
    return found if found is not None else (None, None)


class LangfuseObservation:
    """A span, generation, agent, tool, ... (the SDK's ``LangfuseSpan``/``LangfuseGeneration``): one observation.

    Use as the SDK's objects: ``update``, ``update_trace``, ``end``, ``score``, ``score_trace``, ``start_*``.
    """

    def __init__(
        self,
        fragment: _Fragment,
        *,
        name: str,
        as_type: str = "span",
        parent_id: str | None = None,
        input: Any = None,
        output: Any = None,
        metadata: Any = None,
        version: str | None = None,
        level: str | None = None,
        status_message: str | None = None,
        completion_start_time: datetime | int | None = None,
        model: str | None = None,
        model_parameters: dict[str, Any] | None = None,
        usage_details: dict[str, int] | None = None,
        cost_details: dict[str, float] | None = None,
        prompt: Any = None,
        start_time: int | None = None,
    ) -> None:
        self._fragment = fragment
        self._ended = False
        kind = _TYPES.get(str(as_type).lower(), "SPAN")
        self._observation = Observation(
            id=_span_id(),
            trace_id=fragment.trace.id,
            parent_id=parent_id,
            type=kind,
            name=str(name),
            start_time=start_time or time.time_ns(),
            environment=fragment.trace.environment,
        )
        propagated = _propagated.get()
        if propagated:  # propagate_attributes(environment=..., prompt=...) around this observation
            self._observation.environment = propagated.get("environment") or fragment.trace.environment
            if prompt is None and kind == "GENERATION" and "prompt" in propagated:
                prompt = {"name": propagated["prompt"][0], "version": propagated["prompt"][1]}
        self.update(
            input=input,
            output=output,
            metadata=metadata,
            version=version,
            level=level,
            status_message=status_message,
            completion_start_time=completion_start_time,
            model=model,
            model_parameters=model_parameters,
            usage_details=usage_details,
            cost_details=cost_details,
            prompt=prompt,
        )
        fragment.opened(self._observation)

    # -- identity --------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._observation.id

    @property
    def trace_id(self) -> str:
        return self._observation.trace_id

    @property
    def is_trace_root(self) -> bool:
        return self._observation.parent_id is None and not self._fragment.remote_parent

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._observation.type} {self._observation.name!r} id={self.id}>"

    # -- updates ----------------------------------------------------------------------------------------
    def update(
        self,
        *,
        name: str | None = None,
        input: Any = None,
        output: Any = None,
        metadata: Any = None,
        version: str | None = None,
        level: str | None = None,
        status_message: str | None = None,
        completion_start_time: datetime | int | None = None,
        model: str | None = None,
        model_parameters: dict[str, Any] | None = None,
        usage_details: dict[str, int] | None = None,
        cost_details: dict[str, float] | None = None,
        prompt: Any = None,
        **kwargs: Any,
    ) -> LangfuseObservation:
        """Set what is given (None leaves a field as it is), like the SDK."""
        obs = self._observation
        if name is not None:
            obs.name = str(name)
        # dicts and lists copied: the caller may change them in place after this call (the SDK serialises here)
        if input is not None:
            obs.input = input = snapshot(input)
            if self.is_trace_root:  # Langfuse: the root span's input/output are the trace's
                self._fragment.trace.input = input
        if output is not None:
            obs.output = output = snapshot(output)
            if self.is_trace_root:
                self._fragment.trace.output = output
        if metadata is not None:
            obs.metadata = (
                {**(obs.metadata or {}), **metadata} if isinstance(metadata, Mapping) else {"metadata": metadata}
            )
        if version is not None:
            obs.version = version
        if level is not None:
            obs.level = str(level).upper()
        if status_message is not None:
            obs.status_message = str(status_message)
        if completion_start_time is not None:
            obs.completion_start_time = _ns(completion_start_time)
        if model is not None:
            obs.model = model
        if model_parameters is not None:
            obs.model_parameters = dict(model_parameters)
        if usage_details is not None:
            from .usage import normalise_usage

            obs.usage_details = normalise_usage(usage_details) or dict(usage_details)
        if cost_details is not None:
            obs.cost_details = dict(cost_details)
        if prompt is not None:
            obs.prompt_name, obs.prompt_version = _prompt_fields(prompt)
        if kwargs.get("usage") is not None:  # the v2 SDK's name
            from .usage import normalise_usage

            obs.usage_details = normalise_usage(kwargs["usage"])
        return self

    def update_trace(
        self,
        *,
        name: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        version: str | None = None,
        release: str | None = None,
        input: Any = None,
        output: Any = None,
        metadata: Any = None,
        tags: list[str] | None = None,
        public: bool | None = None,
        **kwargs: Any,
    ) -> LangfuseObservation:
        """Trace attributes (the SDK v3's ``update_trace``)."""
        _update_trace(
            self._fragment.trace,
            name=name,
            user_id=user_id,
            session_id=session_id,
            version=version,
            release=release,
            input=input,
            output=output,
            metadata=metadata,
            tags=tags,
            public=public,
        )
        return self

    def set_trace_as_public(self) -> LangfuseObservation:
        self._fragment.trace.public = True
        return self

    def end(self, *, end_time: datetime | int | None = None) -> LangfuseObservation:
        if self._ended:
            return self
        self._ended = True
        self._observation.end_time = _ns(end_time) or time.time_ns()
        self._fragment.closed(self.is_trace_root or self._observation.parent_id is None)
        return self

    # -- scores -------------------------------------------------------------------------------------------
    def score(self, *, name: str, value: float | str | bool, **kwargs: Any) -> None:
        """Score this observation."""
        _add_score(self._fragment, name=name, value=value, observation_id=self.id, **kwargs)

    def score_trace(self, *, name: str, value: float | str | bool, **kwargs: Any) -> None:
        """Score the whole trace."""
        _add_score(self._fragment, name=name, value=value, observation_id=None, **kwargs)

    # -- children -------------------------------------------------------------------------------------------
    def start_observation(self, *, name: str, as_type: str = "span", **fields: Any) -> LangfuseObservation:
        """A child observation, not made current; call ``end()`` on it."""
        return LangfuseObservation(self._fragment, name=name, as_type=as_type, parent_id=self.id, **fields)

    def start_span(self, name: str, **fields: Any) -> LangfuseObservation:
        return self.start_observation(name=name, as_type="span", **fields)

    def start_generation(self, name: str, **fields: Any) -> LangfuseObservation:
        return self.start_observation(name=name, as_type="generation", **fields)

    def create_event(self, *, name: str, **fields: Any) -> LangfuseObservation:
        event = self.start_observation(name=name, as_type="event", **fields)
        return event.end(end_time=event._observation.start_time)

    def start_as_current_observation(
        self, *, name: str, as_type: str = "span", end_on_exit: bool | None = None, **fields: Any
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        return _as_current(lambda: self.start_observation(name=name, as_type=as_type, **fields), end_on_exit)

    def start_as_current_span(
        self, *, name: str, **fields: Any
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        return self.start_as_current_observation(name=name, as_type="span", **fields)

    def start_as_current_generation(
        self, *, name: str, **fields: Any
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        return self.start_as_current_observation(name=name, as_type="generation", **fields)


class _RunSpan(LangfuseObservation):
    """A LangChain run seen from SDK code running inside it (a tool or node with ``@observe``): spans started here
    nest under the run's observation, in its trace; the run itself is recorded and ended by the handler."""

    def __init__(self, run: Observation) -> None:  # no super().__init__: it would open a new observation
        client = client_factory(public_key=None) if client_factory is not None else None
        self._fragment = _Fragment(client, run.trace_id, remote_parent=True)
        self._observation = run
        self._ended = True  # end() is the handler's

    @property
    def is_trace_root(self) -> bool:
        return False

    def update_trace(self, **values: Any) -> LangfuseObservation:
        """Trace attributes from inside a LangChain run: written at once as a fragment of the run's trace."""
        trace = Trace(id=self.trace_id, name=None, timestamp=0, environment=_environment(self._fragment.client))
        _update_trace(trace, **values)
        _submit(self._fragment.client, trace)
        return self

    def score(self, *, name: str, value: float | str | bool, **kwargs: Any) -> None:
        kwargs.pop("trace_id", None)
        _add_score(
            None,
            name=name,
            value=value,
            trace_id=self.trace_id,
            observation_id=self.id,
            client=self._fragment.client,
            **kwargs,
        )

    def score_trace(self, *, name: str, value: float | str | bool, **kwargs: Any) -> None:
        kwargs.pop("trace_id", None)
        _add_score(None, name=name, value=value, trace_id=self.trace_id, client=self._fragment.client, **kwargs)


# The SDK's class names, for ``isinstance`` checks and type hints in user code.
LangfuseSpan = LangfuseGeneration = LangfuseAgent = LangfuseTool = LangfuseChain = LangfuseObservation
LangfuseRetriever = LangfuseEvaluator = LangfuseEmbedding = LangfuseGuardrail = LangfuseEvent = LangfuseObservation


def _update_trace(trace: Trace, **values: Any) -> None:
    if values.get("name") is not None:
        trace.name = str(values["name"])
    for key in ("user_id", "session_id", "version", "release"):
        if values.get(key) is not None:
            setattr(trace, key, str(values[key]))
    for key in ("input", "output"):
        if values.get(key) is not None:
            setattr(trace, key, snapshot(values[key]))
    metadata = values.get("metadata")
    if metadata is not None:
        trace.metadata = (
            {**(trace.metadata or {}), **metadata} if isinstance(metadata, Mapping) else {"metadata": metadata}
        )
    tags = values.get("tags")
    if tags:
        trace.tags = list(dict.fromkeys([*trace.tags, *(str(t) for t in tags)]))
    if values.get("public") is not None:
        trace.public = bool(values["public"])


def _add_score(
    fragment: _Fragment | None,
    *,
    name: str,
    value: float | str | bool,
    trace_id: str | None = None,
    observation_id: str | None = None,
    score_id: str | None = None,
    data_type: str | None = None,
    comment: str | None = None,
    config_id: str | None = None,
    metadata: Any = None,
    timestamp: datetime | None = None,
    session_id: str | None = None,
    dataset_run_id: str | None = None,
    environment: str | None = None,
    client: Any = None,
    **ignored: Any,
) -> None:
    """A score joins its trace's open fragment (written with it), or is written alone as a fragment of its trace;
    a session's or dataset run's score (no trace) is written on its own."""
    target = trace_id or (fragment.trace.id if fragment is not None else None)
    if target is None and not (session_id or dataset_run_id):
        log.warning("lftrace: score %r has no trace: pass trace_id, or score inside a span", name)
        return
    client = client if client is not None else (fragment.client if fragment is not None else None)
    try:
        score = Score.create(
            id=score_id or _span_id(),
            trace_id=target,
            name=str(name),
            value=value,
            data_type=data_type,
            timestamp=_ns(timestamp) or time.time_ns(),
            observation_id=observation_id,
            session_id=session_id,
            dataset_run_id=dataset_run_id,
            comment=comment,
            metadata=metadata,
            config_id=config_id,
            environment=environment or _environment(client),
        )
    except (TypeError, ValueError) as exc:
        log.warning("lftrace: score %r not recorded: %s", name, exc)
        return
    if target is None:  # a session's or dataset run's: always kept (sampling is per trace), as the official SDK
        if client is not None and getattr(client, "tracing_active", False):
            client._submit_scores([score])
        return
    if fragment is not None and fragment.trace.id == target and not fragment.submitted:
        with fragment.lock:
            fragment.trace.scores.append(score)
        return
    _submit(
        client, Trace(id=target, name=None, timestamp=score.timestamp, scores=[score], environment=score.environment)
    )


def _start(
    client: Any, *, name: str, as_type: str, trace_context: Mapping[str, Any] | None, **fields: Any
) -> LangfuseObservation:
    """A new observation: under the current one, or under ``trace_context``, or as the root of a new trace."""
    parent = _current_span()
    context = dict(trace_context or {})
    if parent is not None and not context:
        return parent.start_observation(name=name, as_type=as_type, **fields)
    trace_id = context.get("trace_id")
    if not (isinstance(trace_id, str) and len(trace_id) == 32):
        if trace_id is not None:
            log.warning("lftrace: trace_context trace_id %r is not 32 hex chars; a new trace id is used", trace_id)
        trace_id = new_trace_id()
    parent_span = context.get("parent_span_id")
    fragment = _Fragment(client, str(trace_id).lower(), remote_parent=parent_span is not None)
    attributes = _propagated.get()
    if attributes:
        _update_trace(fragment.trace, **attributes)
    return LangfuseObservation(
        fragment, name=name, as_type=as_type, parent_id=str(parent_span) if parent_span else None, **fields
    )


@contextlib.contextmanager
def _as_current(start: Callable[[], LangfuseObservation], end_on_exit: bool | None) -> Iterator[LangfuseObservation]:
    observation = start()
    token = _current.set(observation)
    try:
        yield observation
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            observation.update(level="ERROR", status_message=str(exc) or type(exc).__name__)
        raise
    finally:
        _current.reset(token)
        if end_on_exit is not False:
            observation.end()


class TracingApi:
    """The SDK's tracing methods, mixed into ``lftrace.Langfuse``."""

    def start_observation(
        self, *, name: str, as_type: str = "span", trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> LangfuseObservation:
        """An observation that is not made current; call ``end()`` on it."""
        return _start(self, name=name, as_type=as_type, trace_context=trace_context, **fields)

    def start_span(
        self, name: str, trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> LangfuseObservation:
        return self.start_observation(name=name, as_type="span", trace_context=trace_context, **fields)

    def start_generation(
        self, name: str, trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> LangfuseObservation:
        return self.start_observation(name=name, as_type="generation", trace_context=trace_context, **fields)

    def start_as_current_observation(
        self,
        *,
        name: str,
        as_type: str = "span",
        trace_context: Mapping[str, Any] | None = None,
        end_on_exit: bool | None = None,
        **fields: Any,
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        """``with langfuse.start_as_current_observation(name=..., as_type="span") as span:`` - nests what runs inside."""
        return _as_current(
            lambda: _start(self, name=name, as_type=as_type, trace_context=trace_context, **fields), end_on_exit
        )

    def start_as_current_span(
        self, *, name: str, trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        return self.start_as_current_observation(name=name, as_type="span", trace_context=trace_context, **fields)

    def start_as_current_generation(
        self, *, name: str, trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> contextlib.AbstractContextManager[LangfuseObservation]:
        return self.start_as_current_observation(name=name, as_type="generation", trace_context=trace_context, **fields)

    def create_event(
        self, *, name: str, trace_context: Mapping[str, Any] | None = None, **fields: Any
    ) -> LangfuseObservation:
        event = _start(self, name=name, as_type="event", trace_context=trace_context, **fields)
        return event.end(end_time=event._observation.start_time)

    def update_current_trace(self, **values: Any) -> None:
        """Trace attributes of the trace around this code (name, user_id, session_id, tags, metadata, input, ...)."""
        current = _current_span()
        if current is None:
            log.debug("lftrace: update_current_trace outside a span: nothing to update")
            return
        current.update_trace(**values)

    def update_current_span(self, **values: Any) -> None:
        current = _current_span()
        if current is not None:
            current.update(**values)

    update_current_generation = update_current_span

    def set_current_trace_as_public(self) -> None:
        current = _current_span()
        if current is not None:
            current.set_trace_as_public()

    def get_current_trace_id(self) -> str | None:
        current = _current_span()
        return current.trace_id if current is not None else None

    def get_current_observation_id(self) -> str | None:
        current = _current_span()
        return current.id if current is not None else None

    @staticmethod
    def create_trace_id(*, seed: str | None = None) -> str:
        return new_trace_id(seed)

    def create_score(
        self,
        *,
        name: str,
        value: float | str | bool,
        trace_id: str | None = None,
        observation_id: str | None = None,
        **fields: Any,
    ) -> None:
        """A score for a trace (or one of its observations), a session (``session_id``) or a dataset run
        (``dataset_run_id``): stored, shown by ``show`` (a session's by ``show --session ID``), exported to Langfuse."""
        current = _current_span()
        joins = current is not None and current.trace_id == trace_id and not isinstance(current, _RunSpan)
        fragment = current._fragment if joins and current is not None else None
        if trace_id is None and not (fields.get("session_id") or fields.get("dataset_run_id")):
            log.warning(
                "lftrace: create_score(%r) needs trace_id, session_id or dataset_run_id (or use score_current_trace)",
                name,
            )
            return
        _add_score(
            fragment, name=name, value=value, trace_id=trace_id, observation_id=observation_id, client=self, **fields
        )

    def score_current_trace(self, *, name: str, value: float | str | bool, **fields: Any) -> None:
        current = _current_span()
        if current is None:
            log.warning("lftrace: score_current_trace(%r) outside a span: no trace to score", name)
            return
        current.score_trace(name=name, value=value, **fields)

    def score_current_span(self, *, name: str, value: float | str | bool, **fields: Any) -> None:
        current = _current_span()
        if current is None:
            log.warning("lftrace: score_current_span(%r) outside a span: nothing to score", name)
            return
        current.score(name=name, value=value, **fields)


@contextlib.contextmanager
def propagate_attributes(
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    version: str | None = None,
    tags: list[str] | None = None,
    trace_name: str | None = None,
    environment: str | None = None,
    prompt: Any = None,
    **ignored: Any,
) -> Iterator[None]:
    """The SDK v4/v5's way to set trace attributes for everything inside (spans and LangChain runs).

    ``environment`` (SDK 5) is the environment of the current span's trace and of every trace and observation
    started inside, over the client's; ``prompt`` (a prompt client or ``{"name", "version"}``) links the
    generations started inside that do not name a prompt of their own. An environment or a prompt that is not
    valid is left out with a warning, as the SDK drops it."""
    given: dict[str, Any] = {
        "user_id": user_id,
        "session_id": session_id,
        "metadata": metadata,
        "version": version,
        "tags": tags,
        "name": trace_name,
        "environment": _valid_environment(environment) if environment is not None else None,
        "prompt": _propagated_prompt(prompt) if prompt is not None else None,
    }
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    current = _current_span()
    if current is not None:
        trace_values = {k: v for k, v in values.items() if k not in ("environment", "prompt")}
        if trace_values:  # (inside a LangChain run, each call writes a fragment of its trace: none for nothing)
            current.update_trace(**trace_values)
        if "environment" in values:  # the current span takes it, as the SDK sets it there (a LangChain run too)
            current._observation.environment = values["environment"]
            if not isinstance(current, _RunSpan):  # ... and the trace of an SDK span (a run's is the handler's)
                current._fragment.trace.environment = values["environment"]
    merged = {**(_propagated.get() or {}), **values}
    token = _propagated.set(merged)
    try:
        yield
    finally:
        _propagated.reset(token)


_ENVIRONMENT = re.compile(r"(?!langfuse)[a-z0-9_-]{1,40}")


def _valid_environment(value: Any) -> str | None:
    """A propagated environment as Langfuse takes it (lowercase letters, digits, ``-``, ``_``; at most 40; not
    ``langfuse...``), else None and a warning."""
    if isinstance(value, str) and _ENVIRONMENT.fullmatch(value):
        return value
    log.warning(
        "lftrace: propagate_attributes(environment=%r) left out: an environment is up to 40 lowercase letters, "
        "digits, '-' or '_', not starting with 'langfuse'",
        str(value)[:60],
    )
    return None


def _propagated_prompt(prompt: Any) -> tuple[str, int] | None:
    """(name, version) to link generations to; None for a fallback prompt, and with a warning for a prompt with no
    name or no integer version (the SDK needs both to link a propagated prompt)."""
    found = prompt_reference(prompt)
    is_fallback = prompt.get("is_fallback") if isinstance(prompt, Mapping) else getattr(prompt, "is_fallback", False)
    if is_fallback is True:
        return None
    if found is None or found[1] is None:
        log.warning("lftrace: propagate_attributes(prompt=...) left out: a prompt needs a name and an integer version")
        return None
    return found[0], found[1]


# -- @observe ---------------------------------------------------------------------------------------------------


# Set by ``lftrace.client`` when it is imported (this module must not import it: no import cycles).
client_factory: Callable[..., Any] | None = None


def _client(public_key: str | None) -> Any:
    if client_factory is None:
        import importlib

        importlib.import_module("lftrace.client")  # registers client_factory
    try:
        return client_factory(public_key=public_key) if client_factory is not None else None
    except Exception as exc:  # tracing never breaks the user's program
        log.warning("lftrace: tracing disabled for @observe: %s", exc)
        return None


def _function_input(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(func).parameters
        is_method = "self" in params or "cls" in params
    except (TypeError, ValueError):
        is_method = False
    return {"args": list(args[1:] if is_method else args), "kwargs": dict(kwargs)}


def _generator_output(items: list[Any], transform: Callable[[Any], Any] | None) -> Any:
    if transform is not None:
        return transform(items)
    if items and all(isinstance(i, str) for i in items):
        return "".join(items)
    return items


@overload
def observe(func: F) -> F: ...


@overload
def observe(
    func: None = None,
    *,
    name: str | None = None,
    as_type: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    transform_to_string: Callable[[Any], str] | None = None,
) -> Callable[[F], F]: ...


def observe(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    as_type: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    transform_to_string: Callable[[Any], str] | None = None,
) -> Any:
    """``@observe`` / ``@observe(name=..., as_type="generation")``: a span around each call (sync, async,
    generators, async generators), nested under the span around the caller. Input = ``{"args", "kwargs"}``, output
    = the return value (a generator's items, joined when they are strings). ``langfuse_trace_id``,
    ``langfuse_parent_observation_id`` and ``langfuse_public_key`` keyword arguments are taken out, as the SDK does.
    """
    env_capture = os.environ.get("LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED", "true").lower() not in ("false", "0")
    want_input = env_capture if capture_input is None else capture_input
    want_output = env_capture if capture_output is None else capture_output

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        label = str(name or getattr(fn, "__name__", "function"))
        kind = as_type or "span"

        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, LangfuseObservation | None]:
            trace_id = kwargs.pop("langfuse_trace_id", None)
            parent_id = kwargs.pop("langfuse_parent_observation_id", None)
            public_key = kwargs.pop("langfuse_public_key", None)
            client = _client(public_key)
            if client is None or not getattr(client, "tracing_active", False):
                return None, None
            context = {"trace_id": trace_id, "parent_span_id": parent_id} if trace_id else None
            if context and not parent_id:
                context.pop("parent_span_id")
            fields = {"input": _function_input(fn, args, kwargs)} if want_input else {}
            try:
                return client, _start(client, name=label, as_type=kind, trace_context=context, **fields)
            except Exception:
                log.warning("lftrace: @observe could not start a span for %s", label, exc_info=True)
                return None, None

        def failed(span: LangfuseObservation, exc: BaseException) -> None:
            span.update(level="ERROR", status_message=str(exc) or type(exc).__name__)
            span.end()

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                _, span = begin(args, kwargs)
                source = fn(*args, **kwargs)
                if span is not None:
                    source = _wrap_async_iterator(source, span, want_output, transform_to_string)
                async for item in source:
                    yield item

            return agen_wrapper

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                _, span = begin(args, kwargs)
                if span is None:
                    return await fn(*args, **kwargs)
                token = _current.set(span)
                try:
                    result = await fn(*args, **kwargs)
                except (Exception, asyncio.CancelledError) as exc:
                    failed(span, exc)
                    raise
                finally:
                    _current.reset(token)
                if inspect.isasyncgen(result):
                    return _wrap_async_iterator(result, span, want_output, transform_to_string)
                if want_output:
                    span.update(output=result)
                span.end()
                return result

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            _, span = begin(args, kwargs)
            if span is None:
                return fn(*args, **kwargs)
            token = _current.set(span)
            try:
                result = fn(*args, **kwargs)
            except (Exception, asyncio.CancelledError) as exc:
                failed(span, exc)
                raise
            finally:
                _current.reset(token)
            if inspect.isgenerator(result):
                return _wrap_iterator(result, span, want_output, transform_to_string)
            if inspect.isasyncgen(result):
                return _wrap_async_iterator(result, span, want_output, transform_to_string)
            if want_output:
                span.update(output=result)
            span.end()
            return result

        return sync_wrapper

    if func is not None and callable(func):
        return decorate(func)
    return decorate


def _wrap_iterator(
    gen: Any, span: LangfuseObservation, capture: bool, transform: Callable[[Any], Any] | None
) -> Iterator[Any]:
    """The generator's items, each produced with the span current (so work inside nests under it)."""
    items: list[Any] = []
    try:
        while True:
            token = _current.set(span)
            try:
                item = next(gen)
            except StopIteration:
                break
            finally:
                _current.reset(token)
            if capture:
                items.append(item)
            yield item
    except (Exception, asyncio.CancelledError) as exc:
        span.update(level="ERROR", status_message=str(exc) or type(exc).__name__)
        span.end()
        raise
    except GeneratorExit:
        gen.close()
        if capture:
            span.update(output=_generator_output(items, transform))
        span.end()
        raise
    if capture:
        span.update(output=_generator_output(items, transform))
    span.end()


async def _wrap_async_iterator(
    agen: Any, span: LangfuseObservation, capture: bool, transform: Callable[[Any], Any] | None
) -> AsyncIterator[Any]:
    items: list[Any] = []
    try:
        while True:
            token = _current.set(span)
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                break
            finally:
                _current.reset(token)
            if capture:
                items.append(item)
            yield item
    except (Exception, asyncio.CancelledError) as exc:
        span.update(level="ERROR", status_message=str(exc) or type(exc).__name__)
        span.end()
        raise
    if capture:
        span.update(output=_generator_output(items, transform))
    span.end()
