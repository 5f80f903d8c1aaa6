"""The LangChain/LangGraph callback handler: LangChain's run tree -> one ``Trace`` per top-level run.

Hot path (PERF_FACTS.md): every callback runs on the user's thread and only captures - a
timestamp, random ids, references or shallow copies of inputs/outputs - into ``Observation``
objects. When the top-level run ends, the finished ``Trace`` goes to ``client._submit`` (a queue
put); serialising, masking, pricing and SQLite writes happen on the writer thread.

State lives in dicts keyed by run id (single dict operations are atomic under the GIL), so one
handler can serve many concurrent runs (threads, ``asyncio.gather``). ``run_inline = True`` keeps
async callbacks on the event loop instead of hopping to executor threads.

LangChain emits no callbacks for ``Embeddings.embed_*`` calls, so EMBEDDING observations only
appear when a retriever/tool wraps them; this handler never invents them.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import re
import threading
import traceback
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .errors import CANCELLED, TERMINATED, CtrlC, LftraceError, Terminated, interrupt_behind
from .ids import new_span_id, new_trace_id
from .model import CANCELLED_KEY, EXPERIMENT_KEY, INTERRUPTS_KEY, Observation, Trace
from .sdk import _current as _current_span
from .sdk import current_observation, prompt_reference, propagated_attributes
from .serialize import state_fields
from .sharing import Captures, Frozen, held_in
from .usage import usage_from_result

if TYPE_CHECKING:
    from typing import Protocol

    from .config import Settings

    class TracingClient(Protocol):
        """What the handler needs from a client (``lftrace.client.Langfuse`` is one)."""

        settings: Settings

        @property
        def tracing_active(self) -> bool: ...

        def should_sample(self, trace_id: str) -> bool: ...

        def _submit(self, trace: Trace) -> None: ...

        def _submit_fragment(self, trace: Trace) -> None: ...


_log = logging.getLogger("lftrace")

HIDDEN_TAG = "langsmith:hidden"
TRACE_ATTRIBUTE_KEYS = ("langfuse_session_id", "langfuse_user_id", "langfuse_tags", "langfuse_trace_name")
_STRIPPED_KEYS = frozenset((*TRACE_ATTRIBUTE_KEYS, "langfuse_prompt"))
TARGET_KEY = "lftrace_target"  # `lftrace run`'s TARGET: kept in the trace's metadata, not in every observation's
# what an observation's metadata leaves out: the keys above, and what the trace's metadata alone keeps (the target, and
# the dataset run of `lftrace test dataset:NAME`, sent to Langfuse as langfuse.experiment.* attributes)
_NOT_OBSERVATION_KEYS = _STRIPPED_KEYS | {TARGET_KEY, EXPERIMENT_KEY}  # one lookup per key on the hot path
_PARAMETER_NOISE = frozenset(("_type", "tools"))
_CONTROL_FLOW = frozenset(("GraphBubbleUp", "GraphInterrupt", "ParentCommand"))
# a run whose stream its reader closed before the end (GeneratorExit): LangGraph's invoke() reads its own stream,
# so Ctrl-C landing in invoke() between two chunks ends the graph this way rather than with KeyboardInterrupt
STREAM_CLOSED = "stopped (the stream was closed before the run ended)"
MAX_RESUMABLE = 1024  # paused LangGraph threads remembered per handler (the official handler's bound)
FRAGMENT_SIZE = 200  # finished observations of a running trace handed to the writer together (bounded memory)
# ... doubling per fragment up to this: each part is a transaction that merges it into the stored trace (its sums
# added to the trace's, the trace's search document written again), so fewer, larger parts cost less per step
FRAGMENT_MAX = 800
# ... or sooner, once its observations hold this many items of the user's lists in all (``_weight``). A list that
# extends one captured just before holds only its new items (sharing.Captures), so an agent loop's steps weigh a
# few items each; a list that starts a new lineage is held whole (a reference to the user's list, alive until
# the part is written): 800 of 20,000 messages would hold ~130 MB of pointers, this keeps it to ~8 MB
FRAGMENT_WEIGHT = 1_000_000
# a key of a dict among an input's values (a state field merged into at every step) counts as this many items:
# the dict is copied whole at every step, and its converted copy is ~130 bytes a key (a shared message: a pointer)
MAP_KEY_WEIGHT = 8
# ... and a text among them one item per 2**TEXT_WEIGHT_SHIFT characters (a part holds ~16 MB of texts at most)
TEXT_WEIGHT_SHIFT = 4
# ... or, when the parts are sent while the run goes on (``Settings.streams_parts``), once its inputs and outputs
# hold PART_ITEMS list items counted whole (what exporting them sends: every span carries its whole input), or
# 1/2**PART_SHIFT of what the run's earlier parts held, whichever is more. The export sends a part after it is
# written, so what the flush at the end still sends is the last part: 800 observations at a loop's end held half of
# its bytes (1,000 steps: 134 of 143 MB, 0.40 s of the flush; now ~0.05 s). The share keeps the parts of a very
# long run few: 173 at 10,007 steps, against 34 cut by observations alone.
PART_ITEMS = 50_000
PART_SHIFT = 5
RECENT_MAX = 64  # finished observations kept for the live view
_TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


_NO_RUN = UUID(int=0)


class _TraceState:
    """One top-level run: its trace, the run ids still open under it, its finished observations not yet handed off.

    Finished observations go to the writer every ``FRAGMENT_SIZE`` (``client._submit_fragment``), so a run of
    any length keeps only its open observations, one fragment and a window of recent ones (``running_traces``)
    in memory. ``trace.observations`` stays empty until the trace is submitted.
    """

    __slots__ = (
        "done",
        "done_items",
        "done_weight",
        "fragments",
        "graph_interrupted",
        "nested",
        "open_runs",
        "parted_items",
        "recent",
        "resume_key",
        "root_parent_id",
        "root_run_id",
        "sampled",
        "stored_open",
        "submitted",
        "trace",
    )

    def __init__(self, trace: Trace, root_run_id: UUID, sampled: bool, streams: bool = False) -> None:
        self.trace = trace
        self.root_run_id = root_run_id
        self.open_runs: set[UUID] = {root_run_id}
        self.sampled = sampled
        self.submitted = False
        self.root_parent_id: str | None = None  # a resumed run: the root of the run it resumes
        self.resume_key: str | None = None  # LangGraph thread_id of the top-level run
        self.graph_interrupted = False  # a LangGraph interrupt() paused the run: a Command(resume=...) may follow
        self.done: deque[Observation] = deque()  # append/popleft are atomic: threads of one run share it
        self.done_weight = 0  # captured list items held by ``done`` (approximate under threads: a trigger only)
        # list items of ``done`` counted whole, and of the parts before, when the parts are sent as the run goes
        # on (``PART_ITEMS``); -1 when they are not
        self.done_items = 0 if streams else -1
        self.parted_items = 0
        self.fragments = 0
        self.stored_open: set[str] = set()  # ids of open observations a part stored as parents of its own
        self.recent: deque[Observation] = deque(maxlen=RECENT_MAX)  # newest finished ones, for a live view
        self.nested = False  # inside an SDK span: the span sets the trace's name, input and output


@dataclasses.dataclass(slots=True, eq=False)
class _Run:
    """One open LangChain run: its observation (None when sampled out or its trace was submitted) and trace.

    A slots class, not a NamedTuple: made once per span on the user's thread, ~0.4 us against ~0.65 us.
    """

    obs: Observation | None
    state: _TraceState
    token: Any = None  # the contextvar token that made this run the current observation for @observe


# Runs still open when their trace was submitted (Ctrl-C, finish_open_runs) map to this entry, so their
# late ends and late children are recognised and dropped instead of starting new orphan traces. It
# holds no trace, so a run that never ends keeps only its run id alive, not the submitted trace.
_SUBMITTED = _TraceState(Trace(id="0" * 32, name="submitted", timestamp=0), _NO_RUN, False)
_SUBMITTED.submitted = True
_SUBMITTED_RUN = _Run(None, _SUBMITTED)


def _as_returned(message: Any) -> Any:
    """The model's message as it is when the call ends (a shallow copy, ~4.5 us per call): agents change it in
    place afterwards (LangGraph's ``create_react_agent`` and LangChain's ``create_agent`` set ``response.name``),
    and the writer converts it later. The official handler serialises it here, so the generation shows what the
    model returned; the node's output, which ends after the change, shows the changed message in both."""
    try:
        return copy.copy(message)
    except Exception:  # an object that cannot be copied: kept as it is
        return message


def _drain(done: deque[Observation]) -> list[Observation]:
    """Everything in ``done`` now (popleft is atomic: an observation appended meanwhile waits for the next drain)."""
    out: list[Observation] = []
    try:
        for _ in range(len(done)):
            out.append(done.popleft())
    except IndexError:
        pass
    return out


def _weight(value: Any, whole: bool = False) -> int:
    """Items of the user's lists a captured value holds (``Frozen`` lists, alone or as values of a dict; the keys of
    dicts among those values);
    ``whole``: the lists' whole lengths (what exporting the value sends)."""
    kind = type(value)
    if kind is Frozen:
        return value.size if whole else value.held()
    if kind is dict:
        total = 0
        for item in value.values():
            item_kind = type(item)
            if item_kind is Frozen:
                total += item.size if whole else item.held()
            elif item_kind is dict:  # a copy (a state field that grows by merging: held whole at every step), and
                # each key converted costs the writer far more than a shared list item: parts come sooner
                total += len(item) * MAP_KEY_WEIGHT
                total += held_in(item, whole)  # its lists captured levels down (``Captures._inner``)
            elif item_kind is list:  # a short list holding dicts or lists (``state["agents"]``)
                total += held_in(item, whole)
            elif item_kind is str:  # a text held until the part is written (a draft that grows: a new one per step)
                total += len(item) >> TEXT_WEIGHT_SHIFT
        return total
    if kind is list:
        return len(value)
    return 0


def _start_time(obs: Observation) -> int:
    return obs.start_time


def _run_name(serialized: Mapping[str, Any] | None, name: Any, default: str) -> str:
    if name is not None:
        return str(name)
    if serialized:
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


def _observation_metadata(
    metadata: Mapping[str, Any] | None, tags: Sequence[str] | None, root: bool = False
) -> dict[str, Any] | None:
    out = {k: v for k, v in metadata.items() if k not in _NOT_OBSERVATION_KEYS} if metadata else {}
    if tags:
        out["tags"] = list(tags)
    if root:  # LangChain's own top-level run, marked as the official handler marks it
        out["is_langchain_root"] = True
    return out or None


def _is_internal_tag(tag: str) -> bool:
    """LangChain's own bookkeeping tags (``seq:step:2``): not something the user tagged the trace with."""
    return tag.startswith("seq:step:")


def _is_resume(inputs: Any) -> bool:
    """A LangGraph ``Command(resume=...)`` (by name: no langgraph import)."""
    return type(inputs).__name__ == "Command" and getattr(inputs, "resume", None) is not None


def _is_parent_command(error: BaseException) -> bool:
    """``Command(graph=Command.PARENT, ...)`` returned by a node of a subgraph: LangGraph raises it up to the parent
    graph as ``ParentCommand(command)`` (multi-agent handoffs)."""
    return type(error).__name__ == "ParentCommand" and bool(error.args) and type(error.args[0]).__name__ == "Command"


def _is_graph_interrupt(error: BaseException) -> bool:
    return any(cls.__name__ in ("GraphInterrupt", "NodeInterrupt") for cls in type(error).__mro__)


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _interruption(error: BaseException) -> str | None:
    """The status message for Ctrl-C / task cancellation (not failures), else None."""
    if isinstance(error, Terminated):
        return TERMINATED
    if isinstance(error, CtrlC):  # lftrace's own Ctrl-C (``lftrace run``)
        return CANCELLED
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, GeneratorExit):  # the graph's stream closed by its reader: a break, or Ctrl-C landing there
        return STREAM_CLOSED
    return None


def _is_control_flow(error: BaseException) -> bool:
    """A LangGraph interrupt/handoff (GraphBubbleUp family) - checked by name to avoid importing langgraph."""
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


def _note_interrupts(error: BaseException, obs: Observation, state: _TraceState) -> bool:
    """A GraphInterrupt: mark the node that paused (the first to see each interrupt) with its value as JSON.

    The interrupt bubbles up through every enclosing subgraph and node; only the innermost observation gets
    the marker, and the trace lists each interrupt once (``INTERRUPTS_KEY``). Returns whether ``error``
    carried interrupts (a ParentCommand or a bare GraphBubbleUp carries none).
    """
    pending = error.args[0] if error.args and isinstance(error.args[0], (tuple, list)) else ()
    items = [(getattr(i, "id", None), getattr(i, "value", None)) for i in pending if hasattr(i, "value")]
    if not items:
        return False
    trace = state.trace
    if trace.metadata is None:
        trace.metadata = {}
    known = trace.metadata.setdefault(INTERRUPTS_KEY, [])
    seen = {i.get("id") for i in known}
    for interrupt_id, value in items:
        if interrupt_id in seen:
            continue
        known.append({"id": interrupt_id, "value": value, "node": obs.name})
        obs.status_message = "interrupt: " + _compact_json(value)
        obs.metadata = {**(obs.metadata or {}), "interrupt": {"id": interrupt_id, "value": value}}
    return True


def _compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _model_name(
    serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None, params: Mapping[str, Any]
) -> str | None:
    if metadata and metadata.get("ls_model_name"):
        return str(metadata["ls_model_name"])
    sources: list[Any] = [serialized.get("kwargs") if serialized else None, params]
    for source in sources:
        if isinstance(source, Mapping):
            for key in ("model", "model_name", "model_id", "deployment_name"):
                if source.get(key):
                    return str(source[key])
    return _model_from_repr(serialized)


# Models that do not serialise (ChatHuggingFace, ChatOllama, ...) are passed as {"type": "not_implemented",
# "repr": "ChatHuggingFace(..., model_id='HuggingFaceH4/zephyr-7b-beta', ...)"}: the official handler reads the
# model from that repr, by class, with these fields. Other classes: the usual field names, in this order.
_REPR_MODEL_FIELDS = {
    "ChatHuggingFace": "model_id",
    "HuggingFaceHub": "model",
    "ChatTongyi": "model_name",
    "ChatAnyscale": "model_name",
    "Xinference": "model_uid",
    "ChatOCIGenAI": "model_id",
    "DeepInfra": "model_id",
}
_REPR_DEFAULT_FIELDS = ("model", "model_name", "model_id")


def _model_from_repr(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    text = serialized.get("repr")
    ids = serialized.get("id")
    if not isinstance(text, str) or not text:
        return None
    cls = str(ids[-1]) if isinstance(ids, list) and ids else ""
    fields = (_REPR_MODEL_FIELDS[cls],) if cls in _REPR_MODEL_FIELDS else _REPR_DEFAULT_FIELDS
    for name in fields:
        found = re.search(rf"\b{name}='(.*?)'", text)
        if found and found.group(1):
            return found.group(1)
    return None


def _response_model(generations: Sequence[Any], llm_output: Mapping[str, Any] | None) -> str | None:
    if isinstance(llm_output, Mapping) and llm_output.get("model_name"):
        return str(llm_output["model_name"])
    for gen in generations:
        meta = getattr(getattr(gen, "message", None), "response_metadata", None)
        if isinstance(meta, Mapping):
            for key in ("model_name", "model", "model_id"):
                if meta.get(key) and isinstance(meta[key], str):
                    return meta[key]
    return None


# A bound tool object -> its definition: the same tools are bound for every model call of an agent, and
# converting one (a JSON schema from its pydantic model) costs ~50 us on the user's thread. Keyed by id, with the
# tool kept so its id is not reused; the writer converts every captured value into a copy, so sharing is safe.
_TOOL_DEFINITIONS: dict[int, tuple[Any, Any]] = {}
_TOOL_DEFINITIONS_MAX = 512


def _tool_definition(tool: Any) -> Any:
    if isinstance(tool, Mapping):
        if tool.get("type") == "function":
            return tool
        return _convert_tool(tool)  # a dict may change between calls: never remembered
    known = _TOOL_DEFINITIONS.get(id(tool))
    if known is not None and known[0] is tool:
        return known[1]
    definition = _convert_tool(tool)
    if len(_TOOL_DEFINITIONS) >= _TOOL_DEFINITIONS_MAX:
        _TOOL_DEFINITIONS.clear()
    _TOOL_DEFINITIONS[id(tool)] = (tool, definition)
    return definition


def _convert_tool(tool: Any) -> Any:
    try:  # a raw BaseTool bound with model.bind(tools=[...]): show it the way the UI expects
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return convert_to_openai_tool(tool)
    except Exception:
        return tool


class CallbackHandler(BaseCallbackHandler):
    """Langfuse-compatible LangChain callback handler: ``config={"callbacks": [CallbackHandler()]}``."""

    run_inline = True
    raise_error = False

    def __init__(
        self,
        public_key: str | None = None,
        trace_context: Mapping[str, Any] | None = None,
        update_trace: bool = True,
        client: TracingClient | None = None,
        **ignored: Any,
    ) -> None:
        if ignored:
            _log.debug("lftrace: CallbackHandler ignores arguments %s", sorted(ignored))
        self._client: TracingClient | None = client  # given by `lftrace run`/`test`; else the registry's client
        if client is None:
            try:
                from .client import get_client

                self._client = get_client(public_key=public_key)
            except LftraceError as exc:
                _log.warning("lftrace: tracing disabled: %s", exc)
        settings = getattr(self._client, "settings", None)
        self._environment: str = getattr(settings, "environment", "default") or "default"
        self._release: str | None = getattr(settings, "release", None)
        self._version: str | None = getattr(settings, "version", None)
        self._streams_parts = bool(getattr(settings, "streams_parts", False))  # parts also cut by PART_ITEMS
        self._trace_id, self._parent_span_id = self._check_trace_context(trace_context)
        self._update_trace = update_trace
        self._runs: dict[UUID, _Run] = {}  # read through _observation(); one dict operation each: GIL-atomic
        self._traces: dict[UUID, _TraceState] = {}
        self._lock = threading.Lock()
        self._prompts: dict[UUID, tuple[str, int | None]] = {}  # chain run -> prompt its next generation uses
        self._resumable: OrderedDict[str, tuple[str, str]] = OrderedDict()  # thread_id -> (trace id, root obs id)
        self._warned: set[str] = set()
        # the last few long lists captured: a growing conversation is kept as what each step added
        self._captures = Captures(fields_of=state_fields)  # a state schema that is a model: its fields
        self.last_trace_id: str | None = None
        # why the run was stopped (`lftrace run` sets it on Ctrl-C/SIGTERM of an async run): the nodes the event loop
        # then cancels end with it instead of a bare "cancelled"
        self.stopped_by: str | None = None
        # observations started so far (for a progress display; a plain int += under the GIL)
        self.started_runs = 0

    # -- setup ----------------------------------------------------------------------------
    @staticmethod
    def _check_trace_context(context: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
        if not context:
            return None, None
        trace_id = context.get("trace_id")
        valid = isinstance(trace_id, str) and bool(_TRACE_ID_RE.match(trace_id)) and trace_id != "0" * 32
        if trace_id is not None and not valid:
            _log.warning("lftrace: trace_context trace_id %r is not 32 lowercase hex chars; generating one", trace_id)
            trace_id = None
        parent = context.get("parent_span_id")
        if parent is not None and not (isinstance(parent, str) and _SPAN_ID_RE.match(parent) and parent != "0" * 16):
            _log.warning("lftrace: trace_context parent_span_id %r is not 16 lowercase hex chars; ignored", parent)
            parent = None
        return trace_id, parent

    def _internal_error(self, where: str) -> None:
        """The handler's own bug: log it, never let it reach the user's run."""
        if where not in self._warned:
            self._warned.add(where)
            _log.warning("lftrace: %s failed; this run may be traced incompletely", where, exc_info=True)
        else:
            _log.debug("lftrace: %s failed", where, exc_info=True)

    # -- bookkeeping ----------------------------------------------------------------------
    def _observation(self, run_id: UUID) -> Observation | None:
        """The observation of an open run; None when the run is unknown, sampled out or its trace submitted."""
        run = self._runs.get(run_id)
        return run.obs if run is not None else None

    def _new_trace(
        self,
        run_id: UUID,
        now: int,
        name: str,
        inputs: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> _TraceState | None:
        client = self._client
        if client is None or not client.tracing_active:
            return None
        meta = metadata or {}
        # Inside an SDK span (@observe, start_as_current_span): this run nests under it, in its trace; the span
        # owns the trace's name, input and output.
        span = current_observation() if self._trace_id is None else None
        resumed = None
        if span is not None:
            resumed = (span.trace_id, span.id)
        elif self._resumable and self._trace_id is None:
            resumed = self._take_resumable(inputs, meta)
        trace_id = self._trace_id or (resumed[0] if resumed else new_trace_id())
        session_id = meta.get("langfuse_session_id")
        user_id = meta.get("langfuse_user_id")
        trace_name = meta.get("langfuse_trace_name")
        propagated = propagated_attributes()
        environment = self._environment
        if propagated:  # propagate_attributes(...) around this run
            environment = propagated.get("environment") or environment
            session_id = session_id if session_id is not None else propagated.get("session_id")
            user_id = user_id if user_id is not None else propagated.get("user_id")
            trace_name = trace_name or propagated.get("name")
            meta = {**(propagated.get("metadata") or {}), **meta}
            tags = [*(propagated.get("tags") or ()), *(tags or ())]
        trace_tags: list[str] = []
        for tag in [*(meta.get("langfuse_tags") or ()), *(tags or ())]:
            if str(tag) not in trace_tags and not _is_internal_tag(str(tag)):
                trace_tags.append(str(tag))
        trace_metadata = {k: v for k, v in meta.items() if k not in _STRIPPED_KEYS}
        if self._parent_span_id:
            trace_metadata["parent_span_id"] = self._parent_span_id
        if resumed is not None:  # merged into the paused trace: the pause it answers is no longer pending
            trace_metadata[INTERRUPTS_KEY] = []
        trace = Trace(
            id=trace_id,
            name=str(trace_name) if trace_name else (None if span is not None else name),
            timestamp=now,
            input=inputs if self._update_trace and span is None else None,
            session_id=str(session_id) if session_id is not None else None,
            user_id=str(user_id) if user_id is not None else None,
            release=self._release,
            version=self._version,
            metadata=trace_metadata or None,
            tags=trace_tags,
            environment=environment,
        )
        state = _TraceState(trace, run_id, bool(client.should_sample(trace_id)), self._streams_parts)
        thread_id = meta.get("thread_id")
        if thread_id is not None and self._trace_id is None:
            state.resume_key = str(thread_id)
        if resumed is not None:
            state.root_parent_id = resumed[1]
        state.nested = span is not None
        self._traces[run_id] = state
        if state.sampled:
            self.last_trace_id = trace_id
        return state

    def _open(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        kind: str,
        name: str,
        inputs: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> Observation | None:
        now = time_ns()
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None:  # a top-level run (or its parent is unknown to us): a new trace
            state = self._new_trace(run_id, now, name, inputs, tags, metadata)
            if state is None:
                return None
            parent_id = state.root_parent_id
        else:
            parent_obs, state = parent.obs, parent.state
            if state.submitted:  # a late child of a trace already submitted (interrupted): record nothing
                self._runs[run_id] = _SUBMITTED_RUN
                return None
            parent_id = parent_obs.id if parent_obs is not None else None
            state.open_runs.add(run_id)
        if not state.sampled:
            self._runs[run_id] = _Run(None, state)
            return None
        propagated = propagated_attributes()  # propagate_attributes(environment=...) inside the run (a node)
        obs = Observation(
            id=new_span_id(),
            trace_id=state.trace.id,
            parent_id=parent_id,
            type=kind,
            name=name,
            start_time=now,
            input=inputs,
            metadata=_observation_metadata(metadata, tags, parent_run_id is None),
            level="DEBUG" if tags and HIDDEN_TAG in tags else "DEFAULT",
            environment=(propagated and propagated.get("environment")) or state.trace.environment,
            version=self._version,
        )
        # @observe / start_as_current_span inside this run (a tool, a node) nest under it, as with the official
        # handler; the handler keeps the token and resets it when the run ends (~0.1 us)
        self._runs[run_id] = _Run(obs, state, _current_span.set(obs))
        self.started_runs += 1
        return obs

    def _close(
        self, run_id: UUID, output: Any, *, has_output: bool = True, interrupted: str | None = None
    ) -> Observation | None:
        run = self._runs.pop(run_id, None)
        if self._prompts:
            self._prompts.pop(run_id, None)
        if run is None:
            return None
        obs, state = run.obs, run.state
        if run.token is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs ~0.5 us per span on the user's thread
                _current_span.reset(run.token)
            except ValueError:  # ended in another context (a thread, a task) than it started in: nothing to undo
                pass
        state.open_runs.discard(run_id)
        if obs is not None:
            obs.end_time = time_ns()
            if has_output:
                obs.output = output
        if run_id == state.root_run_id:
            self._finish_trace(state, obs, interrupted=interrupted)
        elif obs is not None and not state.submitted:
            state.done.append(obs)
            state.recent.append(obs)
            state.done_weight += _weight(obs.input) + _weight(obs.output)
            if state.done_items >= 0:
                state.done_items += _weight(obs.input, True) + _weight(obs.output, True)
            if (
                len(state.done) >= min(FRAGMENT_SIZE << state.fragments, FRAGMENT_MAX)
                or state.done_weight >= FRAGMENT_WEIGHT
                or state.done_items >= max(PART_ITEMS, state.parted_items >> PART_SHIFT)
            ):
                self._submit_fragment(state)
        return obs

    def _submit_fragment(self, state: _TraceState) -> None:
        """Hand the finished observations of a still running trace to the writer (stored with merge, no export)."""
        batch = _drain(state.done)
        state.done_weight = 0
        if state.done_items > 0:
            state.parted_items += state.done_items
            state.done_items = 0
        if not batch:
            return
        state.fragments += 1
        trace = state.trace
        trace_input = None
        # the runs still open above these (the top-level run among them, with the first part), as copies: a run
        # killed later shows its tree under them, and the trace its input (their final versions replace them)
        batch.extend(self._open_parents(state, batch))
        if state.fragments == 1 and self._update_trace and not state.nested:
            root = self._observation(state.root_run_id)
            if root is not None:
                trace_input = root.input
        fragment = Trace(
            id=trace.id,
            name=trace.name,
            timestamp=trace.timestamp,
            session_id=trace.session_id,
            user_id=trace.user_id,
            release=trace.release,
            version=trace.version,
            metadata=trace.metadata if state.fragments == 1 else None,
            input=trace_input,
            tags=trace.tags,
            environment=trace.environment,
            observations=batch,
        )
        if self._client is not None:  # always set once a trace exists (_new_trace checks it)
            self._client._submit_fragment(fragment)

    def _open_parents(self, state: _TraceState, batch: list[Observation]) -> list[Observation]:
        """Copies of the still open observations that ``batch``'s ones hang under (and their open parents), each
        stored once, open: a run killed before they end shows its last steps under them, not as orphans at the
        top. Their final versions replace them. O(batch + open runs), once per part."""
        in_batch = {obs.id for obs in batch}
        wanted = {obs.parent_id for obs in batch if obs.parent_id is not None} - in_batch - state.stored_open
        if not wanted:
            return []
        still_open: dict[str, Observation] = {}
        for run_id in list(state.open_runs):  # a copy: other threads of the run open and end runs meanwhile
            obs = self._observation(run_id)
            if obs is not None:
                still_open[obs.id] = obs
        parents: list[Observation] = []
        while wanted:
            obs_id = wanted.pop()
            state.stored_open.add(obs_id)
            parent = still_open.get(obs_id)
            if parent is None:  # ended meanwhile (its final version follows) or in the run this one resumes
                continue
            parents.append(dataclasses.replace(parent))
            up = parent.parent_id
            if up is not None and up not in in_batch and up not in state.stored_open:
                wanted.add(up)
        return parents

    def _finish_trace(self, state: _TraceState, root: Observation | None, *, interrupted: str | None = None) -> None:
        """Submit the trace once; ``interrupted``: still-open runs end now as WARNING with that message."""
        with self._lock:  # the root ending and finish_open_runs (Ctrl-C) may race: submit once
            if state.submitted:
                return
            state.submitted = True
        self._traces.pop(state.root_run_id, None)
        runs = self._runs
        still_open: list[Observation] = []
        for run_id in list(state.open_runs):
            run = runs.get(run_id)
            if run is not None:  # still open: its late end (or late children) must not start a new trace
                if run.obs is not None and run.obs is not root:
                    still_open.append(run.obs)
                runs[run_id] = _SUBMITTED_RUN
        state.open_runs.clear()
        if not state.sampled:
            return
        trace = state.trace
        observations = _drain(state.done)
        observations.extend(still_open)
        if root is not None:
            observations.append(root)
        observations.sort(key=_start_time)  # parents start before their children
        trace.observations = observations
        now = time_ns()
        if root is not None and root.end_time is None:
            still_open.append(root)
        for obs in still_open:
            if obs.end_time is None:
                obs.end_time = now
                if interrupted is not None:
                    obs.level = "ERROR" if obs.level == "ERROR" else "WARNING"
                    obs.status_message = obs.status_message or interrupted
        if interrupted is not None:
            trace.metadata = {**(trace.metadata or {}), CANCELLED_KEY: True}
        trace.end_time = root.end_time if root is not None and root.end_time is not None else now
        if self._update_trace and root is not None and not state.nested:
            trace.input = root.input
            trace.output = root.output
        if state.graph_interrupted and state.resume_key is not None and root is not None:
            self._remember_resumable(state.resume_key, trace.id, root.id)
        if self._client is not None:
            self._client._submit(trace)

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        run = self._runs.get(run_id)
        obs, state = (run.obs, run.state) if run is not None else (None, None)
        interrupted = _interruption(error)
        if self.stopped_by is not None and (
            isinstance(error, (asyncio.CancelledError, GeneratorExit))
            or (interrupted is None and interrupt_behind(error) is not None)
        ):  # the run is being stopped (Ctrl-C, SIGTERM): a cancelled task, a closed stream, or an error raised
            # while the stop went through library code, ends with the stop's reason
            interrupted = self.stopped_by
        if obs is not None and state is not None:
            message = str(error) or type(error).__name__
            if interrupted is not None:  # Ctrl-C / cancellation: the run was stopped, it did not fail
                obs.level = "WARNING"
                obs.status_message = interrupted
            elif _is_parent_command(error):  # a handoff to the parent graph: the node's output is the Command
                self._close(run_id, self._captures.freeze(error.args[0]))
                return
            elif _is_control_flow(error):  # a LangGraph interrupt is control flow, not a failure
                if not _note_interrupts(error, obs, state):
                    obs.status_message = message
                if _is_graph_interrupt(error):
                    state.graph_interrupted = True
            else:
                obs.level = "ERROR"
                obs.status_message = message
                obs.metadata = {
                    **(obs.metadata or {}),
                    "error.type": _qualified_name(type(error)),
                    "error.traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
                }
        self._close(run_id, None, has_output=False, interrupted=interrupted)

    # -- LangGraph resume and prompt links ------------------------------------------------
    def _remember_resumable(self, thread_id: str, trace_id: str, root_id: str) -> None:
        """A run paused by interrupt(): a later Command(resume=...) on this thread continues its trace."""
        with self._lock:
            self._resumable[thread_id] = (trace_id, root_id)
            self._resumable.move_to_end(thread_id)
            while len(self._resumable) > MAX_RESUMABLE:
                self._resumable.popitem(last=False)

    def _take_resumable(self, inputs: Any, metadata: Mapping[str, Any]) -> tuple[str, str] | None:
        """(trace id, root observation id) of the paused run this top-level run resumes, used once.

        Like the official handler: only an explicit ``Command(resume=...)`` on the same ``thread_id`` resumes;
        its root becomes a child of the paused run's root, in the same trace. (The official handler 5.0.4 only
        records the paused run when its root raises GraphInterrupt; current LangGraph returns from ``invoke``
        with ``__interrupt__`` instead, so here any interrupt() inside the run counts.)
        """
        thread_id = metadata.get("thread_id")
        if thread_id is None or not _is_resume(inputs):
            return None
        with self._lock:
            return self._resumable.pop(str(thread_id), None)

    def _register_prompt(self, run_id: UUID, parent_run_id: UUID | None, metadata: Mapping[str, Any] | None) -> None:
        """``metadata={"langfuse_prompt": prompt}`` on a chain (a prompt template) links the next generation
        under the same parent (or below it) to the prompt, as the official handler does."""
        if parent_run_id is None:
            return
        prompt = metadata.get("langfuse_prompt") if metadata else None
        if prompt is not None:
            reference = prompt_reference(prompt)
            if reference is not None:
                self._prompts[parent_run_id] = reference
        elif self._prompts and parent_run_id in self._prompts:
            self._prompts[run_id] = self._prompts[parent_run_id]

    # -- public helpers -------------------------------------------------------------------
    def running_traces(self) -> list[Trace]:
        """The traces of top-level runs still going (for a live view; read-only, never blocks the run).

        Their observations hold what the handler captured so far: raw inputs/outputs (not yet serialised),
        so a live view shows names, timing, levels and usage rather than values.
        """
        out: list[Trace] = []
        for state in list(self._traces.values()):
            if not state.sampled or state.submitted:
                continue
            # finished ones go to the store as the run goes on: show the newest of them and the open ones
            runs = self._runs
            open_now = [run.obs for rid in list(state.open_runs) if (run := runs.get(rid)) and run.obs is not None]
            observations = sorted({id(o): o for o in [*state.recent, *open_now]}.values(), key=_start_time)
            out.append(dataclasses.replace(state.trace, observations=observations))
        return out

    def finish_open_runs(self, reason: str = "interrupted") -> None:
        """Close every still-open run (end now, WARNING, ``reason``) and submit the partial traces (Ctrl-C)."""
        for state in list(self._traces.values()):
            try:
                root = self._observation(state.root_run_id)
                self._finish_trace(state, root, interrupted=reason)
            except Exception:
                self._internal_error("finish_open_runs")

    # -- chains (LCEL, LangGraph graphs and nodes) -----------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = _run_name(serialized, kwargs.get("name"), "chain")
            ids = serialized.get("id") if serialized else None
            is_agent = "agent" in name.lower() or (
                isinstance(ids, list) and any("agent" in str(part).lower() for part in ids)
            )
            self._open(
                run_id,
                parent_run_id,
                "AGENT" if is_agent else "CHAIN",
                name,
                self._captures.freeze(inputs),
                tags,
                metadata,
            )
            if parent_run_id is not None and (self._prompts or (metadata and "langfuse_prompt" in metadata)):
                self._register_prompt(run_id, parent_run_id, metadata)
        except Exception:
            self._internal_error("on_chain_start")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            inputs = kwargs.get("inputs")
            if inputs is not None:
                # Streamed runs start with a placeholder ({"input": ""}); the real input arrives here.
                obs = self._observation(run_id)
                if obs is not None:
                    obs.input = self._captures.freeze(inputs)
            self._close(run_id, self._captures.freeze(outputs))
        except Exception:
            self._internal_error("on_chain_end")

    def on_chain_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._fail(run_id, error)
        except Exception:
            self._internal_error("on_chain_error")

    def on_agent_action(self, action: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._mark_agent(run_id)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._mark_agent(run_id)

    def _mark_agent(self, run_id: UUID) -> None:
        try:
            obs = self._observation(run_id)
            if obs is not None:
                obs.type = "AGENT"
        except Exception:
            self._internal_error("on_agent_action")

    # -- models ---------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            # one batch (the usual case): LangChain's own list, captured (no copy) unless tools are added to it
            inputs: Any = messages[0] if len(messages) == 1 else [m for batch in messages for m in batch]
            self._start_generation(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:
            self._internal_error("on_chat_model_start")

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            inputs: Any = prompts[0] if len(prompts) == 1 else list(prompts)
            self._start_generation(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:
            self._internal_error("on_llm_start")

    def _start_generation(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        tools = params.get("tools")
        if tools and isinstance(tools, list):
            inputs = [*inputs] if isinstance(inputs, list) else [inputs]
            inputs.extend({"role": "tool", "content": _tool_definition(t)} for t in tools)
        elif type(inputs) is list:
            inputs = self._captures.capture(inputs)
        name = _run_name(serialized, kwargs.get("name"), "llm")
        obs = self._open(run_id, parent_run_id, "GENERATION", name, inputs, tags, metadata)
        if obs is not None:
            prompt = self._prompts.pop(parent_run_id, None) if self._prompts and parent_run_id is not None else None
            if prompt is None:  # propagate_attributes(prompt=...) around the model call
                propagated = propagated_attributes()
                prompt = propagated.get("prompt") if propagated else None
            if prompt is not None:
                obs.prompt_name, obs.prompt_version = prompt
            obs.model = _model_name(serialized, metadata, params)
            obs.model_parameters = {
                k: v for k, v in params.items() if k not in _PARAMETER_NOISE and v is not None
            } or None

    def on_llm_new_token(self, token: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            obs = self._observation(run_id)
            if obs is not None and obs.completion_start_time is None:
                obs.completion_start_time = time_ns()
        except Exception:
            self._internal_error("on_llm_new_token")

    def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            obs = self._observation(run_id)
            if obs is None:
                self._close(run_id, None)
                return
            generations = [g for batch in (response.generations or ()) for g in batch]
            outputs = [_as_returned(g.message) if hasattr(g, "message") else g.text for g in generations]
            llm_output = response.llm_output
            obs.usage_details = usage_from_result(response.generations or (), llm_output)
            obs.model = _response_model(generations, llm_output) or obs.model
            self._close(run_id, outputs[0] if len(outputs) == 1 else outputs)
        except Exception:
            self._internal_error("on_llm_end")
            self._safe_close(run_id)

    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._fail(run_id, error)
        except Exception:
            self._internal_error("on_llm_error")

    # -- tools and retrievers -------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = _run_name(serialized, kwargs.get("name"), "tool")
            tool_input = self._captures.freeze(inputs) if inputs is not None else input_str
            obs = self._open(run_id, parent_run_id, "TOOL", name, tool_input, tags, metadata)
            if obs is not None and kwargs.get("tool_call_id"):
                obs.metadata = {**(obs.metadata or {}), "tool_call_id": kwargs["tool_call_id"]}
        except Exception:
            self._internal_error("on_tool_start")

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            obs = self._observation(run_id)
            if obs is not None and getattr(output, "status", None) == "error":  # a handled tool error (ToolMessage)
                obs.level = "ERROR"
                content = getattr(output, "content", "")
                obs.status_message = content if isinstance(content, str) else str(content)
            self._close(run_id, self._captures.freeze(output))
        except Exception:
            self._internal_error("on_tool_end")
            self._safe_close(run_id)

    def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._fail(run_id, error)
        except Exception:
            self._internal_error("on_tool_error")

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = _run_name(serialized, kwargs.get("name"), "retriever")
            self._open(run_id, parent_run_id, "RETRIEVER", name, query, tags, metadata)
        except Exception:
            self._internal_error("on_retriever_start")

    def on_retriever_end(
        self, documents: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._close(run_id, list(documents) if isinstance(documents, Sequence) else documents)
        except Exception:
            self._internal_error("on_retriever_end")
            self._safe_close(run_id)

    def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._fail(run_id, error)
        except Exception:
            self._internal_error("on_retriever_error")

    def _safe_close(self, run_id: UUID) -> None:
        """After an internal failure in an end callback: still close the run so the trace is submitted."""
        try:
            if run_id in self._runs:
                self._close(run_id, None, has_output=False)
        except Exception:
            _log.debug("lftrace: closing run %s failed", run_id, exc_info=True)
