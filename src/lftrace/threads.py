"""LangGraph threads for ``lftrace run``/``test``: checkpoints that outlive the process, interrupts, resume, async.

A ``thread_id`` must mean the same thing in two ``lftrace run`` calls, so a graph compiled without a checkpointer
or with an in-memory one (``InMemorySaver``, as the how-to guides write them) runs on a copy of itself with
``langgraph-checkpoint-sqlite``'s saver in a file beside the trace store, the way LangGraph's own server
attaches its checkpointer. A graph's own persistent checkpointer (SQLite, Postgres, ...) is used as it is.

Imported only by runner.py, inside a run: langgraph is imported here lazily, never by ``show``/``list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

BUSY_TIMEOUT_S = 30.0  # parallel `lftrace test` cases write one checkpoint file


@dataclass(frozen=True)
class PendingInterrupt:
    """One ``interrupt()`` a paused graph waits on: its id (for ``--resume ID=VALUE``), value and node.

    ``breakpoint``: ``"before"``/``"after"`` for a static breakpoint (``interrupt_before``/``interrupt_after``):
    the graph stopped before or after ``node`` without raising, and waits for nothing but to be continued.
    """

    id: str | None
    value: Any
    node: str | None = None
    breakpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        found = {"id": self.id, "value": self.value, "node": self.node}
        return {**found, "breakpoint": self.breakpoint} if self.breakpoint else found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingInterrupt:
        """``to_dict`` undone (a stored trace's pending interrupts)."""
        return cls(data.get("id"), data.get("value"), data.get("node"), data.get("breakpoint"))


def checkpoint_path(store: Path) -> Path:
    """The checkpoint file beside the trace store: ``lftrace.db`` -> ``lftrace-checkpoints.db``."""
    return store.with_name(f"{store.stem}-checkpoints.db")


def new_thread_id() -> str:
    return str(uuid.uuid4())


def _is_in_memory(checkpointer: Any) -> bool:
    try:
        from langgraph.checkpoint.memory import InMemorySaver
    except ImportError:  # pragma: no cover - langgraph is a dependency
        return False
    return isinstance(checkpointer, InMemorySaver)


def needs_checkpointer(graph: Any, thread_id: str | None) -> bool:
    """Attach lftrace's saver: the graph keeps state in memory only, or has none and a thread was asked for
    (or it has static breakpoints, which pause a run only to be continued from a checkpoint)."""
    own = getattr(graph, "checkpointer", None)
    if _is_in_memory(own):
        return True
    if own is None and has_breakpoints(graph):
        return True
    return thread_id is not None and own in (None, False)


def _breakpoint_nodes(graph: Any, which: str) -> Sequence[str] | str:
    """``interrupt_before``/``interrupt_after`` of a compiled graph: node names, or ``"*"`` for every node."""
    nodes = getattr(graph, f"interrupt_{which}_nodes", None)
    if nodes == "*":
        return "*"
    return [str(n) for n in nodes] if isinstance(nodes, (list, tuple)) else []


def has_breakpoints(graph: Any) -> bool:
    """The graph, or a subgraph it runs as a node, was compiled with ``interrupt_before``/``interrupt_after``."""
    try:
        graphs = [graph, *(sub for _, sub in graph.get_subgraphs(recurse=True))]
    except Exception:  # not a LangGraph graph, or one that cannot list its subgraphs
        graphs = [graph]
    return any(_breakpoint_nodes(g, "before") or _breakpoint_nodes(g, "after") for g in graphs)


def has_checkpointer(graph: Any) -> bool:
    own = getattr(graph, "checkpointer", None)
    return own not in (None, False, True)


_READY: set[str] = set()
_READY_LOCK = threading.Lock()


def _private_file(path: Path, setup: Callable[[sqlite3.Connection], None], **connect: Any) -> None:
    """Create a file of the graph's own data 0600 (checkpoints: messages, tool results; memory), set up once.

    LangGraph's savers and stores switch the file to WAL and create their tables on first use; two of them doing
    that at the same moment (``lftrace test --concurrency``, parallel CI jobs) got "database is locked" at once,
    without waiting. So the file is set up here first, one connection at a time, retrying while another process
    does it (a WAL file that is already WAL needs no lock to say so).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    key = str(path.resolve())
    with _READY_LOCK:
        if key in _READY:
            return
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, **connect)
        try:
            for attempt in range(50):  # another process setting it up at the same moment: wait for it
                try:
                    setup(conn)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    time.sleep(0.1)
        finally:
            conn.close()
        _READY.add(key)


@contextlib.contextmanager
def _connected(
    path: Path, setup: Callable[[sqlite3.Connection], None], make: Callable[[Any], Any], **connect: Any
) -> Iterator[Any]:
    _private_file(path, setup, **connect)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, **connect)
    try:
        yield make(conn)
    finally:
        conn.close()


def _saver_tables(conn: sqlite3.Connection) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    SqliteSaver(conn).setup()


def _store_tables(conn: sqlite3.Connection) -> None:
    from langgraph.store.sqlite import SqliteStore

    conn.execute("PRAGMA journal_mode=WAL")
    SqliteStore(conn).setup()


def sqlite_checkpointer(path: Path) -> contextlib.AbstractContextManager[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    return _connected(path, _saver_tables, SqliteSaver)


@contextlib.asynccontextmanager
async def async_sqlite_checkpointer(path: Path) -> AsyncIterator[Any]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    _private_file(path, _saver_tables)
    async with aiosqlite.connect(str(path), timeout=BUSY_TIMEOUT_S) as conn:
        yield AsyncSqliteSaver(conn)


def with_checkpointer(graph: Any, checkpointer: Any) -> Any:
    """A copy of the compiled graph that saves to ``checkpointer`` (the user's object is left as it was)."""
    return graph.copy(update={"checkpointer": checkpointer})


def memory_path(store: Path) -> Path:
    """The long-term memory file beside the trace store: ``lftrace.db`` -> ``lftrace-memory.db``."""
    return store.with_name(f"{store.stem}-memory.db")


def needs_store(graph: Any) -> bool:
    """A compiled graph without a store (``BaseStore``): it runs with lftrace's, in a file, as LangGraph's server
    gives every graph one, so nodes that take ``store`` or call ``get_store()`` run, and what one run puts there
    the next run finds. A graph's own store (even ``InMemoryStore``, maybe set up with a search index) is kept."""
    return getattr(graph, "store", False) is None  # (a compiled graph: runner.is_graph said so)


@contextlib.contextmanager
def attached(graph: Any, checkpoints: Path | None, memory: Path | None) -> Iterator[Any]:
    """The graph as it runs: a copy with lftrace's SQLite saver (``checkpoints``) and store (``memory``) where it
    needs them, else the graph itself."""
    with contextlib.ExitStack() as stack:
        update: dict[str, Any] = {}
        if checkpoints is not None:
            update["checkpointer"] = stack.enter_context(sqlite_checkpointer(checkpoints))
        if memory is not None:
            update["store"] = stack.enter_context(_sqlite_store(memory))
        yield graph.copy(update=update) if update else graph


@contextlib.asynccontextmanager
async def aattached(graph: Any, checkpoints: Path | None, memory: Path | None) -> AsyncIterator[Any]:
    """``attached`` for an async run (aiosqlite connections)."""
    async with contextlib.AsyncExitStack() as stack:
        update: dict[str, Any] = {}
        if checkpoints is not None:
            update["checkpointer"] = await stack.enter_async_context(async_sqlite_checkpointer(checkpoints))
        if memory is not None:
            update["store"] = await stack.enter_async_context(_async_sqlite_store(memory))
        yield graph.copy(update=update) if update else graph


def _sqlite_store(path: Path) -> contextlib.AbstractContextManager[Any]:
    from langgraph.store.sqlite import SqliteStore

    return _connected(path, _store_tables, SqliteStore, isolation_level=None)


@contextlib.asynccontextmanager
async def _async_sqlite_store(path: Path) -> AsyncIterator[Any]:
    import aiosqlite
    from langgraph.store.sqlite import AsyncSqliteStore

    _private_file(path, _store_tables, isolation_level=None)
    async with aiosqlite.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None) as conn:
        yield AsyncSqliteStore(conn)


def thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _nested(task: Any) -> Any:
    """The state of the subgraph a task runs (``get_state(..., subgraphs=True)``), None for a plain node or a
    subgraph that has not started (no checkpoint of its own yet)."""
    state = getattr(task, "state", None)
    if state is None or not hasattr(state, "next") or getattr(state, "created_at", None) is None:
        return None
    return state


def _interrupts_of(snapshot: Any) -> list[PendingInterrupt]:
    """The interrupts a thread waits on, each named by the innermost node that raised it (``approve`` inside the
    subgraph node ``review``: the subgraph's task carries it too, as the trace's footer names it)."""
    found: list[PendingInterrupt] = []
    seen: set[Any] = set()

    def collect(state: Any, depth: int) -> None:
        for task in getattr(state, "tasks", ()) or ():
            inner = _nested(task)
            if inner is not None and depth < 20:
                collect(inner, depth + 1)  # the innermost node first: its name wins
            for item in getattr(task, "interrupts", ()) or ():
                key = getattr(item, "id", None) or id(item)
                if key not in seen:
                    seen.add(key)
                    found.append(PendingInterrupt(getattr(item, "id", None), getattr(item, "value", None), task.name))

    collect(snapshot, 0)
    for item in getattr(snapshot, "interrupts", ()) or ():
        key = getattr(item, "id", None) or id(item)
        if key not in seen:
            seen.add(key)
            found.append(PendingInterrupt(getattr(item, "id", None), getattr(item, "value", None)))
    return found


def _subgraph(graph: Any, node: str) -> Any:
    """The compiled subgraph a node runs, None when there is none (or it cannot be found)."""
    try:
        return next((sub for _, sub in graph.get_subgraphs(namespace=node)), None)
    except Exception:
        return None


def _tree(graph: Any, snapshot: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """(graph, state) for the thread's state and every started subgraph's inside it, outermost first."""
    yield graph, snapshot
    if depth >= 20:
        return
    for task in getattr(snapshot, "tasks", ()) or ():
        inner = _nested(task)
        if inner is not None:
            yield from _tree(_subgraph(graph, str(task.name)), inner, depth + 1)


def _ran_lookups(graph: Any, snapshot: Any) -> list[tuple[int, Any]]:
    """The checkpoints to read for ``_stops``: the step before each pause of a graph with ``interrupt_after``
    (its state's ``parent_config``), keyed by ``id(state)``."""
    return [
        (id(state), state.parent_config)
        for sub, state in _tree(graph, snapshot)
        if _breakpoint_nodes(sub, "after") and getattr(state, "parent_config", None)
    ]


def _stops(graph: Any, snapshot: Any, ran: Mapping[int, Sequence[str]]) -> list[PendingInterrupt]:
    """The static breakpoints a thread is paused at: nodes are due next (``snapshot.next``) and none of them
    waits on ``interrupt()``; a graph that returned normally with work left stopped at a breakpoint.
    ``ran``: by ``id(state)``, the nodes of the step before the pause (an ``interrupt_after`` node is one of them).

    A subgraph's own breakpoint stops the subgraph inside the parent's node: the stop is the subgraph's node
    (``review`` inside the parent's ``inner``, as the trace names nested nodes), found in its state."""
    inner = [
        stop
        for task in getattr(snapshot, "tasks", ()) or ()
        if (state := _nested(task)) is not None
        for stop in _stops(_subgraph(graph, str(task.name)), state, ran)
    ]
    if inner:
        return inner
    due = [str(n) for n in getattr(snapshot, "next", ()) or ()]
    before_nodes, after_nodes = _breakpoint_nodes(graph, "before"), _breakpoint_nodes(graph, "after")
    before = [n for n in due if before_nodes == "*" or n in before_nodes]
    if before:
        return [PendingInterrupt(None, None, n, "before") for n in before]
    after = [str(n) for n in ran.get(id(snapshot), ()) if after_nodes == "*" or n in after_nodes]
    if after:  # a subgraph stopped after its last node has nothing due: its parent's node is
        return [PendingInterrupt(None, None, n, "after") for n in after]
    # a breakpoint we cannot place (a runtime one): the graph stopped before what is due
    return [PendingInterrupt(None, None, n, "before") for n in due]


def pending_interrupts(graph: Any, thread_id: str) -> list[PendingInterrupt]:
    """What the thread's latest checkpoint waits on: its interrupts (with the node that raised each one), else
    the static breakpoint it stopped at (inside a subgraph: the subgraph's node)."""
    snapshot = graph.get_state(thread_config(thread_id), subgraphs=True)
    found = _interrupts_of(snapshot)
    if found or not getattr(snapshot, "next", None):
        return found
    ran = {key: graph.get_state(config).next for key, config in _ran_lookups(graph, snapshot)}
    return _stops(graph, snapshot, ran)


async def apending_interrupts(graph: Any, thread_id: str) -> list[PendingInterrupt]:
    snapshot = await graph.aget_state(thread_config(thread_id), subgraphs=True)
    found = _interrupts_of(snapshot)
    if found or not getattr(snapshot, "next", None):
        return found
    ran = {key: (await graph.aget_state(config)).next for key, config in _ran_lookups(graph, snapshot)}
    return _stops(graph, snapshot, ran)


def asked_checkpoint(config: Mapping[str, Any]) -> str | None:
    """The ``checkpoint_id`` a run starts from (``--checkpoint-id``: LangGraph's time travel), None for the latest."""
    configurable = config.get("configurable")
    value = configurable.get("checkpoint_id") if isinstance(configurable, Mapping) else None
    return None if value is None else str(value)


def check_checkpoint(snapshot: Any, config: Mapping[str, Any]) -> None:
    """InputError when the thread has no such checkpoint: LangGraph would start the graph with no input instead."""
    if getattr(snapshot, "created_at", None) is None:
        configurable = config.get("configurable") or {}
        raise InputError(
            f"thread {configurable.get('thread_id')!r} has no checkpoint {configurable.get('checkpoint_id')!r} "
            "(`lftrace history TARGET --thread-id ID` lists them)"
        )


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a thread's history (``graph.get_state_history``), with what changed since the one before.

    ``ran``: the nodes whose writes made it (what the checkpoint before it had next); ``appended``: items added at
    the end of a list channel (an append-only message list); ``set``: the other channels that changed, whole."""

    checkpoint_id: str
    step: int | None
    source: str | None
    created_at: str | None
    ran: tuple[str, ...]
    next: tuple[str, ...]
    appended: dict[str, list[Any]]
    set: dict[str, Any]
    interrupts: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpointId": self.checkpoint_id,
            "step": self.step,
            "source": self.source,
            "createdAt": self.created_at,
            "ran": list(self.ran),
            "next": list(self.next),
            "appended": self.appended,
            "set": self.set,
            "interrupts": self.interrupts,
        }


def history(snapshots: Sequence[Any]) -> list[Checkpoint]:
    """A thread's checkpoints oldest first, from ``get_state_history``'s snapshots (newest first). Each is compared
    with its parent checkpoint, so a fork (``--checkpoint-id``) reads from where it branched off."""
    from .serialize import to_jsonable

    ordered = list(reversed(list(snapshots)))
    by_id = {_checkpoint_id(s.config): s for s in ordered}
    out: list[Checkpoint] = []
    for snapshot in ordered:
        parent = by_id.get(_checkpoint_id(snapshot.parent_config)) if snapshot.parent_config else None
        values, before = _values(snapshot), _values(parent) if parent is not None else {}
        appended: dict[str, list[Any]] = {}
        changed: dict[str, Any] = {}
        for key, value in values.items():
            old = before.get(key)
            if key in before and (old is value or _same(old, value)):
                continue
            if (
                isinstance(old, list)
                and isinstance(value, list)
                and len(value) > len(old)
                and _same(value[: len(old)], old)
            ):
                appended[key] = to_jsonable(value[len(old) :])
            else:
                changed[key] = to_jsonable(value)
        metadata = snapshot.metadata or {}
        source = metadata.get("source")
        out.append(
            Checkpoint(
                checkpoint_id=_checkpoint_id(snapshot.config),
                step=metadata.get("step"),
                source=source,
                created_at=snapshot.created_at,
                ran=tuple(parent.next or ()) if parent is not None and source == "loop" else (),
                next=tuple(snapshot.next or ()),
                appended=appended,
                set=changed,
                interrupts=[to_jsonable(i.value) for t in snapshot.tasks or () for i in getattr(t, "interrupts", ())],
            )
        )
    return out


def _checkpoint_id(config: Mapping[str, Any] | None) -> str:
    return str(((config or {}).get("configurable") or {}).get("checkpoint_id", ""))


def _values(snapshot: Any) -> Mapping[str, Any]:
    return snapshot.values if isinstance(snapshot.values, Mapping) else {"value": snapshot.values}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a value whose == raises (arrays): counted as changed
        return False


def interrupts_in_output(output: Any) -> list[PendingInterrupt]:
    """``invoke`` of a graph without checkpointer returns its interrupts under ``__interrupt__``."""
    items = output.get("__interrupt__") if isinstance(output, Mapping) else None
    if not isinstance(items, (list, tuple)):
        return []
    return [PendingInterrupt(getattr(i, "id", None), getattr(i, "value", None)) for i in items]


def parse_value(text: str) -> Any:
    """A resume value: JSON when it parses, otherwise the text itself (a string)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resume_command(values: Sequence[str], pending: Sequence[PendingInterrupt]) -> Any:
    """``Command(resume=...)`` for the ``--resume`` values given.

    One pending interrupt takes one value. Several pending interrupts take ``ID=VALUE`` items (ID: the
    interrupt id or a unique prefix of it), one for each interrupt to answer.
    """
    from langgraph.types import Command

    if not pending:
        raise InputError("the thread has no pending interrupt, so there is nothing to resume (run it with --input)")
    if all(p.breakpoint for p in pending):
        # a static breakpoint waits for no answer: LangGraph continues it with no input (`invoke(None, config)`);
        # a Command(resume=value) would hand the value to the next interrupt() instead
        return None
    by_id: dict[str, Any] = {}
    plain: list[str] = []
    for text in values:
        interrupt_id, sep, rest = text.partition("=")
        matches = [p.id for p in pending if p.id and sep and len(interrupt_id) >= 4 and p.id.startswith(interrupt_id)]
        if len(matches) == 1:
            by_id[matches[0]] = parse_value(rest)
        else:
            plain.append(text)
    if by_id and not plain:
        return Command(resume=by_id)
    if len(pending) == 1 and len(plain) == 1 and not by_id:
        return Command(resume=parse_value(plain[0]))
    if len(pending) == 1:
        raise InputError("the thread waits on one interrupt: give one --resume VALUE")
    ids = ", ".join(str(p.id) for p in pending)
    raise InputError(
        f"the thread waits on {len(pending)} interrupts ({ids}): answer each with --resume ID=VALUE "
        f"(ID may be a prefix of the interrupt id)"
    )


def resume_hint(target: str, thread_id: str | None, pending: Sequence[PendingInterrupt]) -> str:
    """The exact command that resumes a paused run, with the interrupt's value as a placeholder answer.

    A static breakpoint needs no answer: the thread goes on from its checkpoint with no input."""
    args = ["lftrace", "run", target]
    if thread_id is not None:
        args += ["--thread-id", thread_id]
    if pending and all(p.breakpoint for p in pending):
        pass
    elif len(pending) == 1:
        args += ["--resume", "VALUE"]
    else:
        for item in pending:
            args += ["--resume", f"{item.id}=VALUE"]
    return " ".join(shlex.quote(a) for a in args)


# -- async-only graphs ----------------------------------------------------------------------------------------


def is_async_only(runnable: Any, _depth: int = 0) -> bool:
    """True when a node can only run under ``ainvoke`` (an ``async def`` node: no sync function to call).

    Checked before running, over the graph's nodes and their subgraphs, so ``lftrace run`` picks ``ainvoke``
    by itself instead of failing with LangGraph's "No synchronous function provided".
    """
    if _depth > 20 or runnable is None:
        return False
    nodes = getattr(runnable, "nodes", None)
    if isinstance(nodes, Mapping) and hasattr(runnable, "stream_mode"):  # a compiled graph
        return any(is_async_only(getattr(node, "bound", node), _depth + 1) for node in nodes.values())
    if getattr(runnable, "afunc", None) is not None and getattr(runnable, "func", None) is None:
        return True  # RunnableCallable(None, afunc) / RunnableLambda(async def ...)
    steps = getattr(runnable, "steps", None)
    if isinstance(steps, (list, tuple)):
        return any(is_async_only(step, _depth + 1) for step in steps)
    bound = getattr(runnable, "bound", None)
    return bound is not None and bound is not runnable and is_async_only(bound, _depth + 1)
