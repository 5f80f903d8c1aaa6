"""Run a loaded Runnable with the lftrace handler attached: input shaping, invoke/stream/async, Ctrl-C.

``execute`` is the whole ``lftrace run`` pipeline without any printing (``lftrace test`` reuses it):
load -> read and shape the input -> run with ``config={"callbacks": [handler], "metadata": {...}}`` ->
flush the client -> read the trace back from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, LftraceError, StoreError, Terminated, TraceNotFound
from .model import Trace

if TYPE_CHECKING:
    from .config import Settings

Progress = Callable[[str, Any], None]  # (event, payload): "loading"/"running"/"chunk"/"finishing"

INTERRUPTED = "interrupted"


@dataclass
class RunResult:
    """What a run produced. ``error`` is the exception the target raised (None when it succeeded)."""

    trace: Trace | None
    output: Any
    error: BaseException | None = None
    trace_id: str | None = None
    interrupted: bool = False
    elapsed: float = 0.0
    target: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. why no trace was recorded

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted

    @property
    def terminated(self) -> bool:
        """Stopped by SIGTERM (exit 143) rather than Ctrl-C (exit 130)."""
        return isinstance(self.error, Terminated)


# ---------------------------------------------------------------- input


def read_input(text: str | None, input_file: str | None, stdin: Any = None) -> str | None:
    """The raw input: ``--input`` text, or the content of ``--input-file`` (``-`` = stdin), which must be UTF-8."""
    from .validate import decode_utf8, read_text

    if text is not None and input_file is not None:
        raise InputError("give either --input or --input-file, not both")
    if input_file is None:
        return text
    if input_file == "-":
        stream = stdin or sys.stdin
        binary = getattr(stream, "buffer", None)
        if binary is not None:
            return decode_utf8(binary.read(), "stdin")
        try:
            return str(stream.read())
        except UnicodeDecodeError:
            raise InputError("stdin: not UTF-8 text; save the input as UTF-8") from None
    if not os.path.exists(input_file):
        raise InputError(f"cannot read --input-file '{input_file}': No such file or directory")
    return read_text(Path(input_file), "input file")


def parse_input(raw: str | None) -> Any:
    """JSON if it parses, otherwise the text itself (``None`` when no input was given)."""
    if raw is None:
        return None
    from .validate import loads

    try:
        return loads(raw, "the input")
    except json.JSONDecodeError as err:
        if _looks_like_json(raw):
            # Meant as JSON but broken: running the graph on the raw text would hide the typo.
            raise InputError(
                f"the input looks like JSON but does not parse: {err.msg} (line {err.lineno}, column {err.colno}); "
                "fix the JSON, or pass text that does not start with '{' or '['"
            ) from None
        return raw.rstrip("\n") if raw.endswith("\n") and raw.count("\n") == 1 else raw


_JSON_ARRAY_START = re.compile(r'^\s*\[\s*[\[{"\d\-\]]')


def _looks_like_json(raw: str) -> bool:
    """An object, or an array of JSON values: '[urgent] help me' is text, '[{"a": 1' is broken JSON."""
    return raw.lstrip().startswith("{") or bool(_JSON_ARRAY_START.match(raw))


def is_graph(runnable: Any) -> bool:
    """A compiled LangGraph graph (checked without importing langgraph when the target did not)."""
    pregel = sys.modules.get("langgraph.pregel")
    cls = getattr(pregel, "Pregel", None)
    if cls is not None and isinstance(runnable, cls):
        return True
    return hasattr(runnable, "channels") and hasattr(runnable, "stream_mode") and hasattr(runnable, "get_graph")


# id(runnable) -> (weak ref, its input JSON schema). get_input_jsonschema builds a pydantic model on each call
# (~25 ms for a real graph) and `lftrace test` shapes every case's input against the same runnable. Keyed by id
# because pydantic-based runnables are not hashable; the weak ref proves the entry is still that object and
# its callback drops the entry when the runnable is freed (before its id can be reused).
_SCHEMAS: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}
_SCHEMAS_LOCK = threading.Lock()


def input_schema(runnable: Any) -> dict[str, Any]:
    """The runnable's input JSON schema, computed once per runnable (callers must not mutate it)."""
    key = id(runnable)
    entry = _SCHEMAS.get(key)
    if entry is not None and entry[0]() is runnable:
        return entry[1]
    schema = _compute_input_schema(runnable)

    def forget(ref: weakref.ref[Any]) -> None:
        with _SCHEMAS_LOCK:
            if _SCHEMAS.get(key, (None,))[0] is ref:
                del _SCHEMAS[key]

    try:
        ref = weakref.ref(runnable, forget)
    except TypeError:  # not weak-referenceable: nothing to key a safe cache on
        return schema
    with _SCHEMAS_LOCK:
        _SCHEMAS[key] = (ref, schema)
    return schema


def _compute_input_schema(runnable: Any) -> dict[str, Any]:
    try:
        schema = runnable.get_input_jsonschema()
    except Exception:  # e.g. pydantic refuses typing.TypedDict on 3.11; graphs still know their state keys
        return _graph_state_schema(runnable)
    return schema if isinstance(schema, dict) else {}


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _graph_state_schema(runnable: Any) -> dict[str, Any]:
    """A minimal JSON schema from a StateGraph's input TypedDict: its keys, their types, the required ones."""
    state = getattr(getattr(runnable, "builder", None), "input_schema", None)
    if state is None:
        return {}
    try:
        import typing

        hints = typing.get_type_hints(state)
    except Exception:
        hints = dict(getattr(state, "__annotations__", {}) or {})
    if not hints:
        return {}
    props = {name: ({"type": _JSON_TYPES[kind]} if kind in _JSON_TYPES else {}) for name, kind in hints.items()}
    required = sorted(getattr(state, "__required_keys__", ()) or ())
    return {"type": "object", "properties": props, "required": required}


def _properties(schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    props = schema.get("properties")
    required = schema.get("required") or []
    return (dict(props) if isinstance(props, dict) else {}), [str(r) for r in required]


def _has_messages_channel(runnable: Any, schema: Mapping[str, Any]) -> bool:
    channels = getattr(runnable, "channels", None)
    if isinstance(channels, Mapping) and "messages" in channels:
        return True
    return "messages" in _properties(schema)[0]


def _type_name(prop: Any) -> str:
    if not isinstance(prop, dict):
        return "any"
    if "type" in prop:
        kind = prop["type"]
        return "|".join(kind) if isinstance(kind, list) else str(kind)
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if isinstance(prop.get(key), list):
            return "|".join(_type_name(p) for p in prop[key])
    return "any"


def describe_fields(schema: Mapping[str, Any]) -> str:
    props, required = _properties(schema)
    if not props:
        return "no declared fields"
    parts = [f"{name}: {_type_name(prop)}{' (required)' if name in required else ''}" for name, prop in props.items()]
    return ", ".join(parts)


def shape_input(runnable: Any, value: Any, target: str = "the target") -> Any:
    """Text becomes what the target expects; JSON is checked against the input schema (InputError if it can't fit)."""
    schema = input_schema(runnable)
    props, required = _properties(schema)
    graph = is_graph(runnable)
    if value is None:
        if (graph and _has_messages_channel(runnable, schema)) or required:
            raise InputError(
                f"{target} needs input: give --input TEXT or JSON, or --input-file PATH (expected fields: {describe_fields(schema)})"
            )
        return {} if schema.get("type") == "object" or props else None
    if isinstance(value, str):
        if graph and _has_messages_channel(runnable, schema):
            return {"messages": [{"role": "user", "content": value}]}
        if len(required) == 1:
            return {required[0]: value}
        if not required and len(props) == 1:  # LangGraph states mark no field required
            return {next(iter(props)): value}
        if required or (graph and props):
            raise InputError(
                f"{target} takes several fields, so plain text cannot fill them: give JSON "
                f"(expected fields: {describe_fields(schema)})"
            )
        return value
    _check_fits(value, schema, target)
    return value


def _check_fits(value: Any, schema: Mapping[str, Any], target: str) -> None:
    props, required = _properties(schema)
    if schema.get("type") != "object" and not props:
        return
    expected = f"expected fields: {describe_fields(schema)}"
    if not isinstance(value, dict):
        raise InputError(f"input for {target} must be a JSON object, not {type(value).__name__} ({expected})")
    missing = [name for name in required if name not in value]
    if missing:
        raise InputError(f"input for {target} is missing {', '.join(repr(m) for m in missing)} ({expected})")
    unknown = [k for k in value if k not in props]
    if props and unknown and (len(unknown) == len(value) or schema.get("additionalProperties") is False):
        raise InputError(f"input for {target} has unknown field(s) {', '.join(repr(k) for k in unknown)} ({expected})")


def parse_config(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"--config is not valid JSON ({err.msg} at position {err.pos}); e.g. '{{\"recursion_limit\": 50}}'"
        ) from None
    if not isinstance(value, dict):
        raise InputError('--config must be a JSON object, e.g. \'{"configurable": {"thread_id": "1"}}\'')
    return value


def build_config(
    handler: Any,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Sequence[str] = (),
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """``{"callbacks": [handler], "metadata": {langfuse_*}}`` merged with the user's ``--config``."""
    metadata: dict[str, Any] = {}
    if session_id:
        metadata["langfuse_session_id"] = session_id
    if user_id:
        metadata["langfuse_user_id"] = user_id
    if tags:
        metadata["langfuse_tags"] = list(tags)
    if name:
        metadata["langfuse_trace_name"] = name
    config = dict(extra or {})
    user_callbacks = config.pop("callbacks", None) or []
    config["callbacks"] = [handler, *callbacks, *(user_callbacks if isinstance(user_callbacks, list) else [])]
    config["metadata"] = {**(config.get("metadata") or {}), **metadata}
    return config


# ---------------------------------------------------------------- running


def _accumulate(total: Any, chunk: Any) -> Any:
    """LangChain's rule for streamed chunks: add them (message chunks, strings, dicts) or keep the last."""
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        if isinstance(total, dict) and isinstance(chunk, dict):
            return {**total, **chunk}
        return chunk


def invoke(
    runnable: Any,
    value: Any,
    config: dict[str, Any],
    *,
    stream: bool = False,
    use_async: bool = False,
    on_chunk: Callable[[str, Any], None] | None = None,
) -> Any:
    """Run once; with ``stream`` report graph updates (``"update"``) or chain chunks (``"chunk"``) as they come."""
    graph = is_graph(runnable)
    emit = on_chunk or (lambda kind, chunk: None)
    if not stream:
        return asyncio.run(runnable.ainvoke(value, config)) if use_async else runnable.invoke(value, config)
    if graph:
        # "values" rides along so the final state is the output, exactly as invoke would return it
        def take(item: Any, state: list[Any]) -> None:
            mode, chunk = item
            if mode == "values":
                state[0] = chunk
            else:
                emit("update", chunk)

        state: list[Any] = [None]
        if use_async:

            async def consume() -> None:
                async for item in runnable.astream(value, config, stream_mode=["updates", "values"]):
                    take(item, state)

            asyncio.run(consume())
        else:
            for item in runnable.stream(value, config, stream_mode=["updates", "values"]):
                take(item, state)
        return state[0]
    total: list[Any] = [None]

    def add(chunk: Any) -> None:
        emit("chunk", chunk)
        total[0] = _accumulate(total[0], chunk)

    if use_async:

        async def consume_chain() -> None:
            async for chunk in runnable.astream(value, config):
                add(chunk)

        asyncio.run(consume_chain())
    else:
        for chunk in runnable.stream(value, config):
            add(chunk)
    return total[0]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the target runs, SIGTERM (CI runners, ``timeout``) raises Terminated in the main thread, so the run
    stops like Ctrl-C and its partial trace is saved. Elsewhere (another thread, no signals) nothing changes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


GENERIC_NAMES = frozenset(("LangGraph", "RunnableSequence", "RunnableParallel", "RunnableLambda", "CompiledStateGraph"))


def name_for_target(runnable: Any, target: str) -> str | None:
    """A trace name for a root whose own name says nothing (``LangGraph``, ``RunnableSequence``): the target's
    file or module (``mapreduce`` from ``mapreduce.py:graph`` or ``apps.mapreduce:graph``). None when the root
    has a name of its own (``StateGraph.compile(name="support")``), which the trace then keeps."""
    try:
        own = runnable.get_name() if hasattr(runnable, "get_name") else getattr(runnable, "name", None)
    except Exception:
        own = getattr(runnable, "name", None)
    if own and str(own) not in GENERIC_NAMES:
        return None
    where = target.rsplit(":", 1)[0]
    stem = where.replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem[:-3] if stem.endswith(".py") else stem.rsplit(".", 1)[-1]
    return stem or None


def span_count(handler: Any) -> int:
    """Observations started so far (the handler's ``started_runs``; 0 for a handler without the counter)."""
    counter = getattr(handler, "started_runs", 0)
    return counter if isinstance(counter, int) else 0


def execute(
    target: str | Any,
    input: str | None = None,
    *,
    input_file: str | None = None,
    stream: bool = False,
    use_async: bool = False,
    config: str | Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Sequence[str] = (),
    name: str | None = None,
    handler_extra: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    progress: Progress | None = None,
    stdin: Any = None,
    settings: Settings | None = None,
) -> RunResult:
    """Load (unless given a Runnable), shape the input, run with the handler, flush, and read the trace back.

    ``handler_extra``: keyword arguments for ``CallbackHandler`` (e.g. ``trace_context``); ``callbacks``: more
    LangChain callbacks to attach. Raises LftraceError for load/input problems; the target's own exception is
    returned in ``RunResult.error`` (its trace is saved); Ctrl-C returns ``interrupted=True`` with the partial trace.
    ``settings``: what the command decided (store, sampling); the run is traced by ``client_for(settings)``
    instead of the registry's default client.
    """
    notify = progress or (lambda event, payload: None)
    label = target if isinstance(target, str) else type(target).__name__
    raw = read_input(input, input_file, stdin)  # bad input is reported before the (slow) import
    extra_config = parse_config(config)
    notify("loading", label)
    if isinstance(target, str):
        from .loader import load_target

        runnable = load_target(target)
    else:
        runnable = target
    value = shape_input(runnable, parse_input(raw), f"'{label}'")
    if name is None and isinstance(target, str):
        name = name_for_target(runnable, target)

    from .client import client_for, get_client
    from .langchain import TARGET_KEY, CallbackHandler

    # invalid settings (a bad LANGFUSE_BASE_URL, ...) stop here, before the graph runs
    client = get_client() if settings is None else client_for(settings)
    if client.tracing_active:
        client.check_store()  # a corrupted, foreign or unwritable store stops here too, not after the run
    handler = CallbackHandler(**{"client": client, **dict(handler_extra or {})})
    run_config = build_config(
        handler, session_id=session_id, user_id=user_id, tags=tags, name=name, extra=extra_config, callbacks=callbacks
    )
    if isinstance(target, str):
        run_config["metadata"].setdefault(TARGET_KEY, target)
    notify("running", handler)
    started = time.perf_counter()
    output: Any = None
    error: BaseException | None = None
    interrupted = False
    try:
        with sigterm_as_interrupt():
            output = invoke(
                runnable,
                value,
                run_config,
                stream=stream,
                use_async=use_async,
                on_chunk=(lambda kind, chunk: notify("chunk", (kind, chunk))),
            )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        interrupted, error = True, err
    except LftraceError:
        raise
    except Exception as err:  # the user's graph raised: its trace is saved with the error
        error = err
    elapsed = time.perf_counter() - started
    notify("finishing", handler)
    if interrupted:
        # runs LangChain never closed end now; the handler marks the trace interrupted (not ERROR) itself
        handler.finish_open_runs("terminated (SIGTERM)" if isinstance(error, Terminated) else INTERRUPTED)
    result = RunResult(None, output, error, handler.last_trace_id, interrupted, elapsed, label)
    if not client.flush() and client.write_error is not None:
        # the trace is held in memory and retried until this process ends: say so, with the cause (exit 7)
        raise StoreError(f"the trace was not saved: {client.write_error}")
    result.trace = _read_back(client, handler, result)
    return result


def _read_back(client: Any, handler: Any, result: RunResult) -> Trace | None:
    if not client.tracing_active:
        result.notes.append("tracing is disabled (LANGFUSE_TRACING_ENABLED=false): no trace recorded")
        return None
    if handler.last_trace_id is None:
        result.notes.append("no trace recorded (sampled out by LANGFUSE_SAMPLE_RATE, or the target never started)")
        return None
    try:
        return client.get_trace(handler.last_trace_id)
    except TraceNotFound:
        result.notes.append(f"trace {handler.last_trace_id} was not written to the store")
        return None
