"""Run a loaded Runnable with the lftrace handler attached: input shaping, invoke/stream/async, Ctrl-C.

``execute`` is the whole ``lftrace run`` pipeline without any printing (``lftrace test`` reuses it):
load -> read and shape the input -> run with ``config={"callbacks": [handler], "metadata": {...}}`` ->
flush the client -> read the trace back from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
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
from typing import TYPE_CHECKING, Any, Literal

from .errors import (
    CANCELLED,
    CtrlC,
    ExitStatus,
    InputError,
    LftraceError,
    StoreError,
    Terminated,
    TraceNotFound,
    interrupt_behind,
    stop_reason,
)
from .model import Trace
from .signals import Forwarding

if TYPE_CHECKING:
    from .client import Langfuse
    from .config import Settings
    from .langchain import CallbackHandler
    from .threads import PendingInterrupt

log = logging.getLogger("lftrace")

Progress = Callable[[str, Any], None]  # (event, payload): "loading"/"running"/"chunk"/"finishing"

_UNSET: Any = object()


@dataclass
class RunResult:
    """What a run produced. ``error`` is the exception the target raised (None when it succeeded).

    ``cancelled``: stopped by Ctrl-C (``error`` is the KeyboardInterrupt). ``interrupts``: the
    ``PendingInterrupt``s a LangGraph run paused at (a pause is not an error); resume them on ``thread_id``.
    """

    trace: Trace | None
    output: Any
    error: BaseException | None = None
    trace_id: str | None = None
    cancelled: bool = False
    elapsed: float = 0.0
    target: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. why no trace was recorded
    thread_id: str | None = None
    new_thread: bool = False  # the thread id was made up for this run (print it)
    interrupts: list[Any] = field(default_factory=list)
    runnable: Any = None  # what ran (a factory's product), so a resume in the same process reuses it
    # ``trace`` was read without its observations' inputs (a long run: ``READ_INPUTS_UP_TO``); the store has them
    inputs_left_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled

    @property
    def interrupted(self) -> bool:
        """Ctrl-C (the CLI's name until it reads ``cancelled``)."""
        return self.cancelled

    @property
    def paused(self) -> bool:
        return self.error is None and bool(self.interrupts)

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
    import typing

    try:
        hints = typing.get_type_hints(state)
    except Exception:
        hints = dict(getattr(state, "__annotations__", {}) or {})
    if not hints:
        return {}
    props = {}
    for name, kind in hints.items():
        base = typing.get_origin(kind) or kind
        props[name] = {"type": _JSON_TYPES[base]} if base in _JSON_TYPES else {}
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


def _string_fields(props: Mapping[str, Any], required: Sequence[str]) -> list[str]:
    """The fields plain text can fill: required text fields when there are any, else all text fields."""
    text = [name for name, prop in props.items() if "string" in _type_name(prop).split("|")]
    wanted = [name for name in text if name in required]
    return wanted or text


def json_example(schema: Mapping[str, Any], text: str = "...", *, graph: bool = False) -> str:
    """A JSON input built from the fields: ``{"topic": "<text>"}`` (a graph fills the channels left out)."""
    props, required = _properties(schema)
    example: dict[str, Any] = {}
    placeholders = {"array": [], "object": {}, "integer": 0, "number": 0, "boolean": False}
    for name, prop in props.items():
        kinds = _type_name(prop).split("|")
        if "string" in kinds and text not in example.values():
            example[name] = text
        elif not graph and name in required:
            example[name] = next((placeholders[k] for k in kinds if k in placeholders), "...")
    if not example and props:
        name, prop = next(iter(props.items()))
        example[name] = next((placeholders[k] for k in _type_name(prop).split("|") if k in placeholders), text)
    return json.dumps(example or {"input": text}, ensure_ascii=False)


def shape_input(runnable: Any, value: Any, target: str = "the target") -> Any:
    """The run's input from the user's value, refusing only what the target would refuse itself.

    A JSON object goes as it is (LangGraph fills the channels it leaves out). Text becomes a human message
    for a graph with a ``messages`` channel, or fills the single text field; other JSON values (numbers, lists,
    strings) go to targets whose input is not an object. What cannot fit is an InputError with a JSON example.
    """
    schema = input_schema(runnable)
    props, required = _properties(schema)
    graph = is_graph(runnable)
    messages = graph and _has_messages_channel(runnable, schema)
    if value is None:
        if messages or required:
            raise InputError(
                f"{target} needs input: give --input TEXT or JSON, or --input-file PATH, "
                f"e.g. --input '{json_example(schema, graph=graph)}' (fields: {describe_fields(schema)})"
            )
        return {} if schema.get("type") == "object" or props else None
    takes_object = schema.get("type") == "object" or bool(props)
    if isinstance(value, str):
        if messages:
            return {"messages": [{"role": "user", "content": value}]}
        if not takes_object:
            return value
        fields = _string_fields(props, required)
        if len(fields) == 1 and (len(props) == 1 or graph or set(required) <= set(fields)):
            return {fields[0]: value}
        several = f"several text fields ({', '.join(fields)})" if len(fields) > 1 else "no single text field"
        raise InputError(
            f"{target} takes {several}, so plain text cannot fill its input: give JSON, "
            f"e.g. --input '{json_example(schema, value, graph=graph)}' (fields: {describe_fields(schema)})"
        )
    if isinstance(value, dict) or not takes_object:
        if not graph:
            _check_fits(value, schema, target)
        return value
    if messages and isinstance(value, list):  # a list of messages for a chat graph
        return {"messages": value}
    raise InputError(
        f"input for {target} must be a JSON object, not {type(value).__name__}: "
        f"e.g. --input '{json_example(schema, graph=graph)}' (fields: {describe_fields(schema)})"
    )


def _check_fits(value: Any, schema: Mapping[str, Any], target: str) -> None:
    """A chain's input is checked before running: it would refuse a missing variable or a forbidden extra."""
    props, required = _properties(schema)
    if not isinstance(value, dict) or (schema.get("type") != "object" and not props):
        return
    expected = f"expected fields: {describe_fields(schema)}"
    missing = [name for name in required if name not in value]
    if missing:
        raise InputError(f"input for {target} is missing {', '.join(repr(m) for m in missing)} ({expected})")
    unknown = [k for k in value if k not in props]
    if props and unknown and schema.get("additionalProperties") is False:
        raise InputError(f"input for {target} has unknown field(s) {', '.join(repr(k) for k in unknown)} ({expected})")


def parse_config(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``--config``: a JSON object, or ``@path`` to a JSON file holding one."""
    if text is None:
        return {}
    return _json_object(text, "--config", '{"configurable": {"thread_id": "1"}}')


def parse_context(text: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``--context``: LangGraph's runtime context (``invoke(context=...)``), a JSON object or ``@path``."""
    if text is None:
        return None
    return _json_object(text, "--context", '{"user_id": "u-1"}')


def _json_object(text: str | Mapping[str, Any], option: str, example: str) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    where = option
    if text.startswith("@"):
        where = f"{option} file '{text[1:]}'"
        try:
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise InputError(f"cannot read {where}: {err.strerror or err}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where} is not valid JSON ({err.msg} at position {err.pos}); e.g. '{example}'") from None
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a JSON object, e.g. '{example}'")
    return value


def _context_schema(runnable: Any) -> Any:
    """The graph's ``context_schema`` (LangGraph 0.6+: what nodes read as ``runtime.context``), or None."""
    return getattr(runnable, "context_schema", None) if is_graph(runnable) else None


def check_context(runnable: Any, context: Mapping[str, Any] | None, label: str) -> None:
    """InputError (exit 2, before the run) when ``--context`` is given to a non-graph, or does not fit the graph's
    context schema (a dataclass or Pydantic model, built from it as LangGraph builds it)."""
    if context is None:
        return
    if not is_graph(runnable):
        raise InputError(f"--context is LangGraph's runtime context; '{label}' is not a graph (use --config)")
    schema = _context_schema(runnable)
    if not isinstance(schema, type) or not (dataclasses.is_dataclass(schema) or hasattr(schema, "model_fields")):
        return  # a TypedDict or none: the dict goes in as it is
    try:
        schema(**context)
    except Exception as err:  # TypeError (dataclass), pydantic's ValidationError (its first error, on one line)
        errors = getattr(err, "errors", None)
        problems = errors() if callable(errors) else None
        if problems:
            first = problems[0]
            detail = f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', '')}"
        else:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fields = ", ".join(_context_fields(schema)) or "none"
        raise InputError(
            f"--context does not fit the graph's context_schema {schema.__name__} ({detail}); its fields: {fields}"
        ) from None


DURABILITIES = ("async", "sync", "exit")


def check_durability(runnable: Any, durability: str | None, label: str) -> None:
    """InputError (exit 2, before the run) for ``--durability`` on a non-graph, an unknown value, or a LangGraph
    too old to take it (``durability`` came in 0.6)."""
    if durability is None:
        return
    if durability not in DURABILITIES:
        raise InputError(f"--durability takes {', '.join(DURABILITIES)}, not '{durability}'")
    if not is_graph(runnable):
        raise InputError(f"--durability is LangGraph's checkpoint durability; '{label}' is not a graph")
    import inspect

    try:
        takes = "durability" in inspect.signature(runnable.stream).parameters
    except (TypeError, ValueError):
        takes = True  # no signature to read: LangGraph says so itself if it does not take it
    if not takes:
        raise InputError("--durability needs LangGraph 0.6 or newer (pip install -U langgraph)")


def _context_fields(schema: Any) -> list[str]:
    """The context schema's field names, each marked " (required)" when it has no default (for messages)."""
    if dataclasses.is_dataclass(schema):
        missing = dataclasses.MISSING
        required = {f.name: f.default is missing and f.default_factory is missing for f in dataclasses.fields(schema)}
    else:
        required = {name: info.is_required() for name, info in getattr(schema, "model_fields", {}).items()}
    return [name + (" (required)" if needed else "") for name, needed in required.items()]


def context_note(runnable: Any, context: Mapping[str, Any] | None) -> str | None:
    """For a run that raised with no ``--context``: the graph's context schema and how to give it, if it has one
    with required fields (its nodes then read ``runtime.context`` as None)."""
    schema = _context_schema(runnable)
    if context is not None or not isinstance(schema, type):
        return None
    fields = _context_fields(schema)
    if not any(f.endswith("(required)") for f in fields):
        return None
    example = ", ".join(f'"{f.split(" ")[0]}": ...' for f in fields if f.endswith("(required)"))
    return (
        f"the graph declares context_schema {schema.__name__} ({', '.join(fields)}): "
        f"give it with --context '{{{example}}}'"
    )


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """``--metadata key=value`` (repeatable) -> a dict."""
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--metadata '{item}' is not KEY=VALUE (e.g. --metadata team=search)")
        metadata[key.strip()] = value
    return metadata


def user_config(
    extra: Mapping[str, Any] | None = None,
    *,
    thread_id: str | None = None,
    recursion_limit: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RunnableConfig the user asked for (``--config`` with the options on top), before tracing is added.

    Factories that take a ``config`` receive this (the ``langgraph.json`` convention).
    """
    config = dict(extra or {})
    if thread_id is not None:
        config["configurable"] = {**(config.get("configurable") or {}), "thread_id": thread_id}
    if recursion_limit is not None:
        if recursion_limit < 1:
            raise InputError(f"--recursion-limit must be at least 1 (got {recursion_limit})")
        config["recursion_limit"] = recursion_limit
    if metadata:
        config["metadata"] = {**(config.get("metadata") or {}), **metadata}
    return config


def thread_history(target: str, thread_id: str, *, settings: Settings, config: str | None = None) -> list[Any]:
    """The checkpoints of a graph's thread, oldest first (``threads.Checkpoint``), read through the graph as
    ``graph.get_state_history`` gives them: from lftrace's checkpoint file, or the graph's own saver."""
    from . import threads
    from .loader import load_target

    asked = user_config(parse_config(config), thread_id=thread_id)
    runnable = load_target(target, config=asked)
    if not is_graph(runnable):
        raise InputError(f"'{target}' is not a LangGraph graph: it has no threads")
    plan = _plan_thread(runnable, asked, None, settings.store)
    if not plan.checkpointed:
        raise InputError(f"'{target}' keeps no checkpoints: it has no thread history")
    if plan.attach and plan.checkpoints is not None:
        with threads.sqlite_checkpointer(plan.checkpoints) as saver:
            snapshots = list(threads.with_checkpointer(runnable, saver).get_state_history(asked))
    else:
        try:
            snapshots = list(runnable.get_state_history(asked))
        except NotImplementedError:  # an async-only saver of the graph's own (AsyncPostgresSaver, ...)

            async def collect() -> list[Any]:
                return [snapshot async for snapshot in runnable.aget_state_history(asked)]

            snapshots = asyncio.run(collect())
    if not snapshots:
        where = f"in {plan.checkpoints}" if plan.attach else "in the graph's checkpointer"
        raise TraceNotFound(f"thread '{thread_id}' has no checkpoints {where}: a run with --thread-id makes them")
    return threads.history(snapshots)


def config_thread_id(config: Mapping[str, Any]) -> str | None:
    configurable = config.get("configurable")
    value = configurable.get("thread_id") if isinstance(configurable, Mapping) else None
    return None if value is None else str(value)


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
    """``{"callbacks": [handler], "metadata": {langfuse_*}}`` merged with the user's ``--config``.

    A LangGraph ``thread_id`` becomes the trace's session id unless one is set (``--session-id`` or
    ``langfuse_session_id`` in the metadata), so all turns of a thread group together.
    """
    config = dict(extra or {})
    user_metadata = dict(config.get("metadata") or {})
    metadata: dict[str, Any] = {}
    thread_id = config_thread_id(config)
    if session_id:
        metadata["langfuse_session_id"] = session_id
    elif thread_id is not None and "langfuse_session_id" not in user_metadata:
        metadata["langfuse_session_id"] = thread_id
    if user_id:
        metadata["langfuse_user_id"] = user_id
    if tags:
        metadata["langfuse_tags"] = list(tags)
    if name:
        metadata["langfuse_trace_name"] = name
    user_callbacks = config.pop("callbacks", None) or []
    config["callbacks"] = [handler, *callbacks, *(user_callbacks if isinstance(user_callbacks, list) else [])]
    config["metadata"] = {**user_metadata, **metadata}
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


# --stream on a graph (its subgraphs' nodes too): each node's update, what nodes write with get_stream_writer() ("custom"), and the state
# ("values": the last one is the output, exactly as invoke returns it). "messages" (the models' tokens) only with
# --tokens: it makes chat models stream, which changes what some providers report (usage: langchain-openai drops
# it for an OPENAI_BASE_URL endpoint unless the model sets stream_usage=True) from what a run without it records.
GRAPH_STREAM_MODES = ("updates", "values", "custom")
TOKEN_STREAM_MODES = (*GRAPH_STREAM_MODES, "messages")
_STREAMED = {"updates": "update", "custom": "custom", "messages": "token"}  # stream mode -> the progress event's kind
StreamOption = Literal[False, True, "tokens"]


def stream_modes(stream: StreamOption) -> tuple[str, ...]:
    """``--stream`` / ``--tokens`` -> a graph's stream modes; () runs with invoke (a chain streams when not ())."""
    return TOKEN_STREAM_MODES if stream == "tokens" else GRAPH_STREAM_MODES if stream else ()


class _GraphStream:
    """The items of ``graph.stream(..., stream_mode=[...], subgraphs=True)``: each one a progress event (a
    subgraph's updates keyed by their path, ``{"researcher › search": {...}}``), except the states; the root
    graph's last state is kept: the output, exactly as invoke returns it."""

    def __init__(self, emit: Callable[[str, Any], None]) -> None:
        self.emit = emit
        self.state: Any = None

    def take(self, item: tuple[tuple[str, ...], str, Any]) -> None:
        namespace, mode, chunk = item
        if mode == "values":
            if not namespace:  # a subgraph's own state is not the output
                self.state = chunk
            return
        if namespace and mode == "updates" and isinstance(chunk, dict):
            path = " › ".join(part.partition(":")[0] for part in namespace)  # "node:<task id>" -> "node"
            # its pause is left out: the root graph reports the same __interrupt__
            chunk = {f"{path} › {node}": update for node, update in chunk.items() if node != "__interrupt__"}
            if not chunk:
                return
        self.emit(_STREAMED[mode], chunk)


def _run_sync(
    runnable: Any,
    value: Any,
    config: dict[str, Any],
    modes: Sequence[str],
    emit: Callable[[str, Any], None],
    **graph: Any,
) -> Any:
    """``modes``: ``stream_modes`` (none: invoke); ``graph``: keyword arguments only a graph takes (``context``)."""
    if not modes:
        return runnable.invoke(value, config, **graph)
    if is_graph(runnable):
        out = _GraphStream(emit)  # "values" rides along: the final state is the output
        for item in runnable.stream(value, config, stream_mode=list(modes), subgraphs=True, **graph):
            out.take(item)
        return out.state
    total: Any = None
    for chunk in runnable.stream(value, config):
        emit("chunk", chunk)
        total = _accumulate(total, chunk)
    return total


async def _run_async(
    runnable: Any,
    value: Any,
    config: dict[str, Any],
    modes: Sequence[str],
    emit: Callable[[str, Any], None],
    **graph: Any,
) -> Any:
    if not modes:
        return await runnable.ainvoke(value, config, **graph)
    if is_graph(runnable):
        out = _GraphStream(emit)
        async for item in runnable.astream(value, config, stream_mode=list(modes), subgraphs=True, **graph):
            out.take(item)
        return out.state
    total: Any = None
    async for chunk in runnable.astream(value, config):
        emit("chunk", chunk)
        total = _accumulate(total, chunk)
    return total


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
    emit = on_chunk or (lambda kind, chunk: None)
    if use_async:
        return asyncio.run(_run_async(runnable, value, config, stream_modes(stream), emit))
    return _run_sync(runnable, value, config, stream_modes(stream), emit)


@dataclass
class _Thread:
    """How a graph run uses its thread: the id, whether lftrace supplies the saver, what to resume."""

    thread_id: str | None = None
    attach: bool = False  # run on a copy with lftrace's SQLite saver
    checkpointed: bool = False  # the run saves checkpoints (its own saver or ours)
    new: bool = False  # the thread id was made up for this run
    resume: Sequence[str] | None = None
    checkpoints: Path | None = None
    memory: Path | None = None  # lftrace's store for a graph compiled without one (threads.needs_store)
    notes: list[str] = field(default_factory=list)


def _plan_thread(
    runnable: Any, config: dict[str, Any], resume: Sequence[str] | None, store: Path, label: str | None = None
) -> _Thread:
    from . import threads

    thread_id = config_thread_id(config)
    if not is_graph(runnable):
        if resume:
            raise InputError("--resume continues a LangGraph graph paused at interrupt(); this target is not a graph")
        return _Thread(thread_id)
    if resume and thread_id is None:
        raise _no_thread_to_resume(store, label)
    plan = _Thread(thread_id, resume=resume, checkpoints=threads.checkpoint_path(store))
    plan.memory = threads.memory_path(store) if threads.needs_store(runnable) else None
    plan.attach = threads.needs_checkpointer(runnable, thread_id)
    plan.checkpointed = plan.attach or threads.has_checkpointer(runnable)
    if plan.checkpointed and thread_id is None:
        plan.thread_id, plan.new = threads.new_thread_id(), True
        config["configurable"] = {**(config.get("configurable") or {}), "thread_id": plan.thread_id}
    return plan


RECENT_RUNS = 20  # the newest traces read to find the last paused run of a target (an error message's hint)


def _no_thread_to_resume(store: Path, label: str | None) -> InputError:
    """``--resume`` without ``--thread-id``: nothing is resumed on a guess, but the error names the thread the last
    paused run of this target waits on, with the command that resumes it (or why it cannot be resumed)."""
    message = "--resume needs the thread to resume: give --thread-id (printed when the run paused)"
    paused = _last_paused(store, label) if label else None
    if paused is None:
        return InputError(message)
    trace_id, thread_id, pending = paused
    if thread_id is None:
        return InputError(
            f"--resume needs the thread to resume, and the last paused run of {label} (trace {trace_id[:8]}) has "
            "none: the graph keeps no checkpoints. Run it again with --thread-id ID, then resume it with "
            "--thread-id ID --resume VALUE"
        )
    from .threads import resume_hint

    return InputError(
        f"--resume needs the thread to resume: give --thread-id. The last paused run of {label} "
        f"(trace {trace_id[:8]}) waits on thread {thread_id}: {resume_hint(label or '', thread_id, pending)}"
    )


def _last_paused(store: Path, label: str) -> tuple[str, str | None, list[PendingInterrupt]] | None:
    """(trace id, thread id or None, the interrupts it waits on) of the newest run of ``label`` among the
    store's ``RECENT_RUNS`` newest traces that paused and whose thread has not gone on since; None when there is
    none (or the store cannot be read: the plain message is enough then)."""
    from .langchain import TARGET_KEY
    from .model import INTERRUPTS_KEY
    from .store import TraceStore
    from .threads import PendingInterrupt

    if not store.is_file():
        return None
    try:
        with contextlib.closing(TraceStore(store, create=False)) as traces:
            summaries = traces.list_traces(limit=RECENT_RUNS)
            status = {summary.id: summary.status for summary in summaries}
            heads = traces.trace_heads(list(status))
    except Exception:  # an error message's hint: a store problem is for the commands that read it to report
        log.debug("lftrace: could not look up the last paused run of %s", label, exc_info=True)
        return None
    threads_seen: set[str] = set()
    for head in heads:  # newest first
        metadata = head.metadata or {}
        if metadata.get(TARGET_KEY) != label:
            continue
        thread = metadata.get("thread_id")
        thread_id = str(thread) if thread not in (None, "") else None
        if thread_id is not None:
            if thread_id in threads_seen:  # an older pause of a thread that went on since (resumed)
                continue
            threads_seen.add(thread_id)
        pending = metadata.get(INTERRUPTS_KEY)
        if status.get(head.id) == "interrupted" and isinstance(pending, list) and pending:
            # as the run stored them (PendingInterrupt.to_dict): resume_hint then says what each one takes
            waiting = [PendingInterrupt.from_dict(p) for p in pending if isinstance(p, dict)]
            return head.id, thread_id, waiting
    return None


def _resume_value(plan: _Thread, pending: list[Any]) -> Any:
    """What ``--resume`` sends: ``Command(resume=...)`` for interrupts, no input past a static breakpoint."""
    from . import threads

    assert plan.resume is not None
    value = threads.resume_command(plan.resume, pending)
    if value is None and any(text.strip() for text in plan.resume):
        where = ", ".join(f"{p.breakpoint} {p.node}" for p in pending)
        plan.notes.append(
            f"the thread was paused at a breakpoint ({where}), which takes no answer: it went on without the --resume value"
        )
    return value


def _drive_sync(run: _Run) -> tuple[Any, list[Any]]:
    """Run on this thread: with lftrace's saver when the plan says so, resuming a paused thread; (output, the
    interrupts it is paused at)."""
    from . import threads

    plan, value = run.plan, run.value
    with threads.attached(run.runnable, plan.checkpoints if plan.attach else None, plan.memory) as graph:
        if threads.asked_checkpoint(run.config):
            threads.check_checkpoint(graph.get_state(run.config), run.config)
        if plan.resume:
            assert plan.thread_id is not None
            value = _resume_value(plan, threads.pending_interrupts(graph, plan.thread_id))
        output = _run_sync(graph, value, run.config, run.stream, run.emit, **run.graph_kwargs)
        if plan.checkpointed and plan.thread_id is not None:
            return output, threads.pending_interrupts(graph, plan.thread_id)
        return output, threads.interrupts_in_output(output) if is_graph(run.runnable) else []


async def _drive_async(run: _Run) -> tuple[Any, list[Any]]:
    """``_drive_sync`` on the running event loop (ainvoke/astream, the async saver)."""
    from . import threads

    plan, value = run.plan, run.value
    async with threads.aattached(run.runnable, plan.checkpoints if plan.attach else None, plan.memory) as graph:
        if threads.asked_checkpoint(run.config):
            threads.check_checkpoint(await graph.aget_state(run.config), run.config)
        if plan.resume:
            assert plan.thread_id is not None
            value = _resume_value(plan, await threads.apending_interrupts(graph, plan.thread_id))
        output = await _run_async(graph, value, run.config, run.stream, run.emit, **run.graph_kwargs)
        if plan.checkpointed and plan.thread_id is not None:
            return output, await threads.apending_interrupts(graph, plan.thread_id)
        return output, threads.interrupts_in_output(output) if is_graph(run.runnable) else []


STOP_REPEAT_S = 1.0  # a run still going this long after Ctrl-C or SIGTERM is stopped again (see signals_as_interrupt)
STOPPED_DELIVERY_S = 1.0  # the delivery of a run stopped by Ctrl-C or SIGTERM, at most (the rest stays queued)
# a run's trace is read back whole up to this many observations; a longer one without its observations' inputs
# (each holds the state so far: a 4,000-step loop's, read whole, took ~140 MB more of the command's memory)
READ_INPUTS_UP_TO = 1000


@contextlib.contextmanager
def signals_as_interrupt(
    *, repeat: bool = False, on_stop: Callable[[KeyboardInterrupt], None] | None = None
) -> Iterator[None]:
    """While the target runs, Ctrl-C raises CtrlC and SIGTERM (CI runners, ``timeout``) raises Terminated in the
    main thread (both are KeyboardInterrupt), so the run stops and its partial trace is saved. SIGINT is taken over
    only from Python's own handler (not when it is ignored or the program installed its own). Elsewhere (another
    thread, no signals) nothing changes.

    ``repeat``: when the block is still running ``STOP_REPEAT_S`` after a signal, the same exception is raised in
    the main thread again (and again). LangGraph waits for the nodes it runs on its own threads (parallel branches,
    a ToolNode's tool calls) before letting the first one through, which a hung model or tool call makes forever.
    A second Ctrl-C from the user is one more of the same, and a signal that arrives as the block ends is ignored.
    ``on_stop`` is told the exception before it is raised.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raises: dict[int, type[KeyboardInterrupt]] = {}
    if hasattr(signal, "SIGTERM"):
        raises[signal.SIGTERM] = Terminated
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        raises[signal.SIGINT] = CtrlC
    inside = [True]
    lock = threading.Lock()
    timers: list[threading.Timer] = []
    main = threading.main_thread().ident
    repeat = repeat and hasattr(signal, "pthread_kill")
    forwarding = Forwarding(raises)  # a signal another thread caught still stops the run (signals.py)

    def again(signum: int) -> None:
        with lock:
            if inside[0] and main is not None:
                signal.pthread_kill(main, signum)

    def stop(signum: int, frame: Any) -> None:
        forwarding.ran(signum)
        if not inside[0]:  # a repeat that arrived as the block ended: it is over already
            return
        if repeat:
            timer = threading.Timer(STOP_REPEAT_S, again, (signum,))
            timer.daemon = True
            timers.append(timer)
            timer.start()
        stopping = raises[signum]()
        if on_stop is not None:
            on_stop(stopping)
        raise stopping

    previous: dict[int, Any] = {}
    try:
        for signum in raises:
            previous[signum] = signal.signal(signum, stop)
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        yield
        return
    try:
        with forwarding:
            yield
    finally:
        try:
            inside[0] = False  # a repeat due right now may still raise here: the handlers go all the same
        finally:
            inside[0] = False
            with lock:  # a repeat being sent now is delivered (and ignored) before the handlers go
                for timer in timers:
                    timer.cancel()
            for signum, handler in previous.items():
                signal.signal(signum, handler)


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
    stream: StreamOption = False,
    use_async: bool | None = None,
    config: str | Mapping[str, Any] | None = None,
    context: str | Mapping[str, Any] | None = None,
    thread_id: str | None = None,
    recursion_limit: int | None = None,
    durability: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    resume: Sequence[str] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Sequence[str] = (),
    name: str | None = None,
    label: str | None = None,
    handler_extra: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    progress: Progress | None = None,
    stdin: Any = None,
    settings: Settings | None = None,
    value: Any = _UNSET,
    deliver: bool = True,
) -> RunResult:
    """Load (unless given a Runnable), shape the input, run with the handler, flush, and read the trace back.

    ``context``: LangGraph's runtime context (``invoke(context=...)``, what nodes read as ``runtime.context``), a
    JSON object, ``@file`` or a dict, checked against the graph's context schema before the run.
    ``use_async``: None picks ``ainvoke`` when a node is async-only, True/False force it. ``thread_id``,
    ``recursion_limit`` and ``metadata`` go on top of ``config`` (JSON, ``@file`` or a dict); a graph that keeps
    checkpoints gets lftrace's persistent saver when it has none or an in-memory one, and a fresh thread id
    when none is given. ``resume``: ``--resume`` values, sent as ``Command(resume=...)`` to the paused thread.
    ``durability``: LangGraph's checkpoint durability for a graph run (``async``, ``sync`` or ``exit``).
    ``value``: an already parsed input (``lftrace test`` cases), instead of ``input``/``input_file`` text.
    ``deliver=False``: write the trace but leave delivery to the caller (``lftrace test`` delivers once, after
    its cases, so a slow backend never sits on the cases' path).
    ``handler_extra``: keyword arguments for ``CallbackHandler`` (e.g. ``trace_context``); ``callbacks``: more
    LangChain callbacks to attach. Raises LftraceError for load/input problems; the target's own exception is
    returned in ``RunResult.error`` (its trace is saved); Ctrl-C returns ``cancelled=True`` with the partial trace;
    a run paused at ``interrupt()`` returns its ``interrupts`` (not an error).
    ``settings``: what the command decided (store, sampling); the run is traced by ``client_for(settings)``
    instead of the registry's default client.
    """
    run = _prepare(
        target,
        input,
        input_file=input_file,
        stream=stream,
        use_async=use_async,
        config=config,
        context=context,
        thread_id=thread_id,
        recursion_limit=recursion_limit,
        durability=durability,
        metadata=metadata,
        resume=resume,
        session_id=session_id,
        user_id=user_id,
        tags=tags,
        name=name,
        label=label,
        handler_extra=handler_extra,
        callbacks=callbacks,
        progress=progress,
        stdin=stdin,
        settings=settings,
        value=value,
        deliver=deliver,
    )
    started = time.perf_counter()
    output: Any = None
    pending: list[Any] = []
    error: BaseException | None = None
    try:
        # the handler learns why at once: what the signal stops next (tasks the loop cancels, the stream of a graph
        # that LangGraph's invoke() closes) ends with that reason, not with CancelledError or GeneratorExit
        with signals_as_interrupt(
            repeat=True, on_stop=lambda err: setattr(run.handler, "stopped_by", stop_reason(err))
        ):
            if run.use_async:
                with asyncio.Runner() as loop:
                    output, pending = loop.run(_drive_async(run))
            else:
                output, pending = _drive_sync(run)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        error = err
    except LftraceError:
        raise
    except Exception as err:  # the user's graph raised: its trace is saved with the error
        # unless it was raised while a stop went through library code (see interrupt_behind): that is the stop
        error = interrupt_behind(err) or err
    return _finish(run, output, pending, error, time.perf_counter() - started)


async def aexecute(target: Any, input: str | None = None, **options: Any) -> RunResult:
    """``execute`` on the running event loop (``lftrace test --async``: many cases on one loop).

    The target should be a loaded Runnable (importing is blocking); flushing the trace runs in a worker thread.
    """
    run = _prepare(target, input, **options)
    started = time.perf_counter()
    output: Any = None
    pending: list[Any] = []
    error: BaseException | None = None
    try:
        output, pending = await _drive_async(run)
    except LftraceError:
        raise
    except Exception as err:
        error = interrupt_behind(err) or err  # raised while a stop went through library code: the stop
    except asyncio.CancelledError:  # the whole test run was stopped: keep the partial trace, stay cancelled
        _finish(run, None, [], asyncio.CancelledError(), time.perf_counter() - started)
        raise
    return await asyncio.to_thread(_finish, run, output, pending, error, time.perf_counter() - started)


@dataclass
class _Run:
    """A run ready to go: the runnable, its shaped input and config, the handler and the client that traces it."""

    runnable: Any
    value: Any
    config: dict[str, Any]
    plan: _Thread
    use_async: bool
    stream: tuple[str, ...]  # stream_modes: () runs with invoke
    handler: Any
    client: Any
    label: str
    notify: Progress
    emit: Callable[[str, Any], None]
    deliver: bool = True
    context: dict[str, Any] | None = None  # LangGraph's runtime context (graphs only)
    durability: str | None = None  # LangGraph's checkpoint durability (graphs only)

    @property
    def graph_kwargs(self) -> dict[str, Any]:
        """What only a graph's invoke/stream takes."""
        kwargs: dict[str, Any] = {} if self.context is None else {"context": self.context}
        if self.durability is not None:
            kwargs["durability"] = self.durability
        return kwargs


def _prepare(
    target: str | Any,
    input: str | None = None,
    *,
    input_file: str | None = None,
    stream: StreamOption = False,
    use_async: bool | None = None,
    config: str | Mapping[str, Any] | None = None,
    context: str | Mapping[str, Any] | None = None,
    thread_id: str | None = None,
    recursion_limit: int | None = None,
    durability: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    resume: Sequence[str] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Sequence[str] = (),
    name: str | None = None,
    label: str | None = None,
    handler_extra: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    progress: Progress | None = None,
    stdin: Any = None,
    settings: Settings | None = None,
    value: Any = _UNSET,
    deliver: bool = True,
) -> _Run:
    notify = progress or (lambda event, payload: None)
    label = label or (target if isinstance(target, str) else type(target).__name__)
    raw = read_input(input, input_file, stdin) if value is _UNSET else None  # reported before the (slow) import
    if resume and (raw is not None or value is not _UNSET):
        raise InputError("give either an input or --resume, not both (--resume answers a paused run)")
    asked = user_config(parse_config(config), thread_id=thread_id, recursion_limit=recursion_limit, metadata=metadata)
    run_context = parse_context(context)
    notify("loading", label)
    if isinstance(target, str):
        from .loader import load_target

        try:
            runnable = load_target(target, config=asked)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM while the target is imported: no run, nothing to save
            status = ExitStatus.TERMINATED if isinstance(err, Terminated) else ExitStatus.INTERRUPTED
            raise LftraceError(
                f"{stop_reason(err)} while '{label}' was imported: nothing ran, nothing was recorded", exit_code=status
            ) from None
    else:
        runnable = target
    check_context(runnable, run_context, label)
    check_durability(runnable, durability, label)
    if not resume:
        given = parse_input(raw) if value is _UNSET else value
        if given is None and config_thread_id(asked) is not None and is_graph(runnable):
            run_input: Any = None  # continue the thread from its last checkpoint
        else:
            run_input = shape_input(runnable, given, f"'{label}'")
    else:
        run_input = None
    if name is None and isinstance(target, str):
        name = name_for_target(runnable, target)

    from .client import client_for, get_client
    from .langchain import TARGET_KEY, CallbackHandler
    from .threads import is_async_only

    # invalid settings (a bad LANGFUSE_BASE_URL, ...) stop here, before the graph runs
    client = get_client() if settings is None else client_for(settings)
    if client.tracing_active:
        client.check_store()  # a corrupted, foreign or unwritable store stops here too, not after the run
        client.prepare_delivery()  # the export helper starts while the graph runs, not at the flush after it
    plan = _plan_thread(runnable, asked, resume, client.settings.store, label)
    run_async = is_async_only(runnable) if use_async is None else use_async
    handler = CallbackHandler(**{"client": client, **dict(handler_extra or {})})
    run_config = build_config(
        handler, session_id=session_id, user_id=user_id, tags=tags, name=name, extra=asked, callbacks=callbacks
    )
    if isinstance(target, str):
        run_config["metadata"].setdefault(TARGET_KEY, label)  # as typed: `agent` for a langgraph.json graph
    notify("running", handler)

    def emit(kind: str, chunk: Any) -> None:
        notify("chunk", (kind, chunk))

    return _Run(
        runnable,
        run_input,
        run_config,
        plan,
        run_async,
        stream_modes(stream),
        handler,
        client,
        label,
        notify,
        emit,
        deliver,
        run_context,
        durability,
    )


def _finish(run: _Run, output: Any, pending: list[Any], error: BaseException | None, elapsed: float) -> RunResult:
    """Close what the run left open (Ctrl-C), flush the trace to the store and read it back."""
    handler, client = run.handler, run.client
    cancelled = isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))
    run.notify("finishing", handler)
    if cancelled:
        # runs LangChain never closed end now; the handler marks the trace cancelled (not ERROR) itself
        handler.finish_open_runs(stop_reason(error) if isinstance(error, KeyboardInterrupt) else CANCELLED)
    result = RunResult(None, output, error, handler.last_trace_id, cancelled, elapsed, run.label)
    result.thread_id, result.new_thread, result.runnable = run.plan.thread_id, run.plan.new, run.runnable
    result.notes.extend(run.plan.notes)
    hint = context_note(run.runnable, run.context) if error is not None and not cancelled else None
    if hint is not None:
        result.notes.append(hint)
    if type(error).__name__ == "GraphRecursionError":
        limit = run.config.get("recursion_limit")
        reached = f"its recursion limit of {limit} steps" if limit else "LangGraph's default recursion limit"
        result.notes.append(f"the graph reached {reached}: give a higher one with --recursion-limit N")
    if error is None:
        _mark_breakpoints(client, handler.last_trace_id, pending)
    # stopped by the user (Ctrl-C, SIGTERM): they want out, so the partial trace gets a short delivery; what it
    # does not send in that time stays queued (`lftrace push`, or the next run's delivery, sends it)
    within = STOPPED_DELIVERY_S if cancelled else None
    if not client.flush(deliver=run.deliver, deliver_within=within) and client.write_error is not None:
        # the trace is held in memory and retried until this process ends: say so, with the cause (exit 7)
        raise StoreError(f"the trace was not saved: {client.write_error}")
    result.trace = _read_back(client, handler, result)
    result.interrupts = _with_nodes(pending, result.trace)
    return result


def _mark_breakpoints(client: Any, trace_id: str | None, pending: list[Any]) -> None:
    """A run stopped at a static breakpoint returned as if it had finished: its trace (already handed to the
    writer when the graph returned) is marked interrupted, naming where it stopped, by a merge of its metadata
    before the flush, so the store and the export both say so."""
    stops = [p.to_dict() for p in pending if getattr(p, "breakpoint", None)]
    if not stops or trace_id is None or not client.tracing_active:
        return
    from .model import INTERRUPTS_KEY

    client._submit(Trace(id=trace_id, name=None, timestamp=0, metadata={INTERRUPTS_KEY: stops}))


def _with_nodes(pending: list[Any], trace: Trace | None) -> list[Any]:
    """Name the node of each pending interrupt from the trace when the checkpoint did not say."""
    if not pending or trace is None:
        return pending
    nodes = {i.get("id"): i.get("node") for i in trace.interrupts}
    return [p if p.node else dataclasses.replace(p, node=nodes.get(p.id)) for p in pending]


def _read_back(client: Langfuse, handler: CallbackHandler, result: RunResult) -> Trace | None:
    if not client.tracing_active:
        result.notes.append("tracing is disabled (LANGFUSE_TRACING_ENABLED=false): no trace recorded")
        return None
    if handler.last_trace_id is None:
        result.notes.append("no trace recorded (sampled out by LANGFUSE_SAMPLE_RATE, or the target never started)")
        return None
    try:
        trace = client.get_trace(handler.last_trace_id, inputs=False)
    except TraceNotFound:
        result.notes.append(f"trace {handler.last_trace_id} was not written to the store")
        return None
    if len(trace.observations) <= READ_INPUTS_UP_TO:
        client.store.load_inputs(trace.observations)
    else:  # every input of a long run is its state so far: printing the tree reads only those of the rows shown
        result.inputs_left_out = True
    return trace
