"""Long agent runs: linear store growth, full inputs on read, parts stored while the run goes on, crash safety.

Real LangGraph loops (sample_graphs/long_loop.py: think -> critic on MessagesState, fake model) with the real
handler, writer and SQLite store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from lftrace import client as client_module
from lftrace.langchain import FRAGMENT_MAX, FRAGMENT_SIZE, CallbackHandler
from lftrace.sharing import Frozen
from lftrace.store import TraceStore
from support.signals import with_ctrl_c

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sample_graphs.long_loop import build_graph, loop_input, run_config  # noqa: E402


def traced_loop(steps: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the loop for ``steps`` steps into ``store``; the trace id (client shut down, so the file is complete)."""
    monkeypatch.setenv("LFTRACE_STORE", str(store))
    client_module.reset_clients()
    handler = CallbackHandler()
    build_graph().invoke(loop_input(steps), run_config(steps, [handler]))
    client_module.get_client().shutdown()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def stored_bytes(store: Path) -> int:
    """What the trace takes in the store: the JSON of rows and list nodes (not SQLite's page slack)."""
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM observations").fetchone()[0]
        nodes = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM blobs").fetchone()[0]
        traces = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM traces").fetchone()[0]
    return int(rows + nodes + traces)


@contextlib.contextmanager
def exported_long_run(monkeypatch: pytest.MonkeyPatch, run: Callable[[list[Any]], Any]) -> Iterator[Any]:
    """``run(callbacks)`` traced by lftrace exporting to a real OTLP receiver on 127.0.0.1, flushed; yields
    (client, handler, stored trace, spans received, receiver) once every stored observation was received, and
    the trace has more observations than PAGED_OVER (so it was streamed from the store in pages)."""
    from lftrace.delivery import PAGED_OVER
    from support.otlp_receiver import running_receiver

    with running_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
        client_module.reset_clients()
        handler = CallbackHandler()
        run([handler])
        client = client_module.get_client()
        client.flush()
        stored = client.get_trace(handler.last_trace_id)
        assert len(stored.observations) > PAGED_OVER
        spans = receiver.spans()
        assert {s.span_id.hex() for s in spans} == {o.id for o in stored.observations}
        yield client, handler, stored, spans, receiver


def pages_read_as_text(store: TraceStore, trace_id: str, size: int) -> int:
    """Read the trace's pages as the export reads them (``as_text``: shared lists, dicts and texts as JSON text)
    and as values, assert both give the same JSON for every input and output; the observations compared."""
    as_text = store.trace_pages(trace_id, size, as_text=True)
    as_values = store.trace_pages(trace_id, size)
    compared = 0
    for text_page, value_page in zip(as_text, as_values, strict=True):
        for text_obs, value_obs in zip(text_page.observations, value_page.observations, strict=True):
            assert orjson.dumps(text_obs.input) == orjson.dumps(value_obs.input)
            assert orjson.dumps(text_obs.output) == orjson.dumps(value_obs.output)
            compared += 1
    return compared


def test_store_grows_linearly_with_the_steps(tmp_path, monkeypatch):
    small = traced_loop(150, tmp_path / "small.db", monkeypatch)
    large = traced_loop(300, tmp_path / "large.db", monkeypatch)
    ratio = stored_bytes(tmp_path / "large.db") / stored_bytes(tmp_path / "small.db")
    # before sharing, every node's input held the whole conversation: 2x the steps was ~4x the bytes
    assert 1.8 < ratio < 2.2, ratio
    with sqlite3.connect(tmp_path / "large.db") as conn:
        longest_row = conn.execute("SELECT max(length(data)) FROM observations").fetchone()[0]
        node_count = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
    assert longest_row < 2000  # no row holds the conversation
    assert node_count > 250  # one list node per growth of the conversation
    assert small != large


def test_every_observation_reads_back_its_full_input_and_output(tmp_path, monkeypatch):
    steps = 60
    trace_id = traced_loop(steps, tmp_path / "t.db", monkeypatch)
    with TraceStore(tmp_path / "t.db", create=False) as store:
        trace = store.get_trace(trace_id)
    conversation = trace.output["messages"]
    assert len(conversation) == steps + 1
    assert conversation[0] == {"role": "user", "content": "Plan a three-day trip to Lisbon."}
    assert trace.input == {"messages": [conversation[0]], "max_steps": steps}
    nodes = [o for o in trace.observations if o.name in ("think", "critic")]
    generations = [o for o in trace.observations if o.type == "GENERATION"]
    assert len(nodes) == steps and len(generations) == steps // 2
    for index, node in enumerate(sorted(nodes, key=lambda o: o.start_time)):
        # step k sees the k messages before it, in full, and adds one
        assert node.input == {"messages": conversation[: index + 1], "max_steps": steps}
        assert node.output == {"messages": [conversation[index + 1]]}
    for gen in generations:
        assert gen.input == conversation[: len(gen.input)]
        assert gen.output == conversation[len(gen.input)]
        assert gen.usage_details and gen.usage_details["input"] > 0
    # the same full values through the JSON a user reads (`show --json` prints Trace.to_dict())
    data = json.loads(json.dumps(trace.to_dict()))
    last = max((o for o in data["observations"] if o["name"] == "think"), key=lambda o: o["startTime"])
    assert last["input"]["messages"] == conversation[: steps - 1]


def test_a_running_trace_is_stored_in_parts_and_completed_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    client = client_module.get_client()
    handler = CallbackHandler()
    seen: list[tuple[int, float | None]] = []  # (observations stored, latency) while the run goes on
    steps = 400
    for index, _ in enumerate(build_graph().stream(loop_input(steps), run_config(steps, [handler]))):
        if index % 100 == 99:
            client._writer.flush()
            rows = client.store.list_traces(limit=1)
            if rows:
                seen.append((rows[0].observation_count, rows[0].latency))
    client.flush()
    assert seen and seen[-1][0] >= FRAGMENT_SIZE
    assert all(latency is None for _, latency in seen)  # no end yet: shown as running
    assert [count for count, _ in seen] == sorted(count for count, _ in seen)
    final = client.get_trace(handler.last_trace_id)
    summary = client.store.list_traces(limit=1)[0]
    assert summary.status == "ok" and summary.latency is not None
    assert summary.observation_count == len(final.observations) == 1 + steps * 2 + steps // 2
    assert len({o.id for o in final.observations}) == len(final.observations)


def _items(value) -> int:
    """List items an observation's input or output sends: its message list, or the lists in its state dict."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return sum(len(item) for item in value.values() if isinstance(item, list))
    return 0


@pytest.mark.parametrize("exported", [True, False])
def test_an_exported_long_run_is_cut_into_parts_by_what_its_spans_send(tmp_path, monkeypatch, receiver, exported):
    """Every span carries its whole input, so a loop's late steps send thousands of messages each: with a backend,
    parts are cut by the list items they send (at least PART_ITEMS, or a share of the parts before), and the flush
    at the run's end sends only the last one; store only, they stay 200, 400, then 800 observations."""
    from lftrace import langchain as langchain_module

    monkeypatch.setattr(langchain_module, "PART_ITEMS", 4_000)  # the loop below sends ~100,000 items in all
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    if exported:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.url}/v1/traces")
    client_module.reset_clients()
    client = client_module.get_client()
    parts: list[list[str]] = []
    submit = client._submit_fragment

    def record(part):  # open copies (the graph's root, a node still running) are not sent: each goes when it ends
        parts.append([o.id for o in part.observations if o.end_time is not None])
        submit(part)

    monkeypatch.setattr(client, "_submit_fragment", record)
    handler = CallbackHandler()
    steps = 250
    build_graph().invoke(loop_input(steps), run_config(steps, [handler]))
    assert client.flush() is True
    trace = client.get_trace(handler.last_trace_id)
    items = {o.id: _items(o.input) + _items(o.output) for o in trace.observations}
    in_parts = [sum(items[i] for i in ids) for ids in parts]
    rest = sum(items[o.id] for o in trace.observations if o.id not in {i for ids in parts for i in ids})
    step_items = max(items.values())  # what one observation may add past the limit
    if not exported:
        assert [len(ids) for ids in parts] == [200, 400]  # 625 observations
        return
    assert len(parts) >= 10
    for index, sent in enumerate(in_parts):
        limit = max(4_000, sum(in_parts[:index]) >> langchain_module.PART_SHIFT)
        assert sent <= limit + step_items or len(parts[index]) >= 200, (index, sent, limit)
    assert rest <= max(4_000, sum(in_parts) >> langchain_module.PART_SHIFT) + step_items  # left to the flush
    spans = receiver.wait_for_spans(len(trace.observations))
    assert sorted(s.span_id.hex() for s in spans) == sorted(items)  # each observation once, parts and rest


def test_memory_held_by_the_handler_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    sizes: list[int] = []

    steps = 1000  # 2,501 observations
    for index, _ in enumerate(build_graph().stream(loop_input(steps), run_config(steps, [handler]))):
        if index % 50 == 49:
            state = next(iter(handler._traces.values()))
            sizes.append(len(state.done) + len(state.open_runs) + len(state.trace.observations))
    # parts of 200, 400, 800, 800 observations went to the writer: never more than one part is held
    assert sizes and max(sizes) <= FRAGMENT_MAX + 10
    assert max(sizes) < 2501 // 2


def _held_items(value: object, seen: set[int]) -> int:
    """Items of the user's lists a captured value still holds (each capture counted once, bases included)."""
    captures = list(value.values()) if isinstance(value, dict) else [value]
    total = 0
    for capture in captures:
        while isinstance(capture, Frozen) and id(capture) not in seen:
            seen.add(id(capture))
            total += len(capture.items or ())
            capture = getattr(capture, "base", None)
    return total


def _sample_held(
    handler: CallbackHandler,
    chunks: Iterator[Any],
    held: list[tuple[int, int]],
    inputs_held: Callable[[object, set[int]], int] = _held_items,
) -> None:
    """Every 100 chunks of a streamed run, append (observations the handler holds, items of the user's lists
    they hold: ``inputs_held`` for inputs, ``_held_items`` for outputs) to ``held``."""
    for index, _ in enumerate(chunks):
        if index % 100 == 99:
            state = next(iter(handler._traces.values()))
            opened = [run.obs for run in handler._runs.values() if run.state is state and run.obs is not None]
            observations = [*state.done, *state.trace.observations, *state.recent, *opened]
            seen: set[int] = set()
            items = sum(inputs_held(o.input, seen) + _held_items(o.output, seen) for o in observations)
            held.append((len(observations), items))


def test_the_handler_keeps_what_each_step_added_not_each_steps_conversation(tmp_path, monkeypatch):
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    held: list[tuple[int, int]] = []  # (observations held, items of the conversation they hold)

    steps = 600
    _sample_held(handler, build_graph().stream(loop_input(steps), run_config(steps, [handler])), held)
    client_module.get_client().shutdown()
    # by reference, every node's and model's input held its whole conversation: ~k items per observation at
    # step k (60,000+ here); now one list per lineage plus what each step added
    assert held and all(items <= 2 * observations + 2 * steps for observations, items in held), held
    assert max(observations for observations, _ in held) > 100  # there was something held to count


class ModelState(BaseModel):
    """A state schema as LangGraph's how-to guides write one with pydantic."""

    messages: Annotated[list[AnyMessage], add_messages] = Field(default_factory=list)
    turns: int = 0


@dataclass
class DataclassState:
    """... and as a dataclass."""

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    turns: int = 0


def _model_state_loop(schema: str) -> Any:
    """think -> critic forever on ``ModelState`` or ``DataclassState`` (the conversation in an ``add_messages``
    field, a counter beside it)."""
    state_type: Any = ModelState if schema == "pydantic" else DataclassState

    def think(state: Any) -> dict[str, Any]:
        return {"messages": [AIMessage(f"thought {state.turns}")], "turns": state.turns + 1}

    def critic(state: Any) -> dict[str, Any]:
        return {"messages": [HumanMessage(f"critique {state.turns}")]}

    graph = StateGraph(state_type)
    graph.add_node("think", think)
    graph.add_node("critic", critic)
    graph.add_edge(START, "think")
    graph.add_edge("think", "critic")
    graph.add_edge("critic", "think")
    return graph.compile()


def _held_state_items(value: object, seen: set[int]) -> int:
    """``_held_items``, and the conversation of a state object held as it is (each list counted once)."""
    if isinstance(value, ModelState | DataclassState):
        if id(value.messages) in seen:
            return 0
        seen.add(id(value.messages))
        return len(value.messages)
    return _held_items(value, seen)


@pytest.mark.parametrize("schema", ["pydantic", "dataclass"])
def test_a_state_schema_that_is_a_model_is_captured_as_its_fields(tmp_path, monkeypatch, schema):
    """A pydantic or dataclass state reaches every node whole, as a new object each step: kept by reference (as
    before), every node's input held its whole conversation until the writer converted it (bench/long_run.py
    --state pydantic, 2,000 steps: 4.9x the plain run, 600 MB). Captured as its fields, it holds what each step
    added, and reads back in full."""
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    held: list[tuple[int, int]] = []
    steps = 400
    config = {"recursion_limit": steps, "callbacks": [handler]}
    with contextlib.suppress(GraphRecursionError):  # the loop never ends by itself
        chunks = _model_state_loop(schema).stream({"messages": [HumanMessage("go")]}, config)
        _sample_held(handler, chunks, held, _held_state_items)
    client = client_module.get_client()
    client.flush()
    assert held and all(items <= 2 * observations + 2 * steps for observations, items in held), held
    assert max(observations for observations, _ in held) > 100

    stored = client.get_trace(handler.last_trace_id)
    thinks = [o for o in stored.observations if o.name == "think"]
    assert len(thinks) > 150
    last = max(thinks, key=lambda o: o.start_time)
    # the node's input as the converter writes the state: its fields, the conversation whole
    assert last.input["turns"] == len(thinks) - 1
    contents = [m["content"] for m in last.input["messages"]]
    assert contents[0] == "go" and len(contents) == 2 * len(thinks) - 1
    assert contents[-2:] == [f"thought {len(thinks) - 2}", f"critique {len(thinks) - 1}"]


CRASHING_RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from sample_graphs.long_loop import build_graph, loop_input, run_config
    from lftrace.langchain import CallbackHandler

    steps = 1_000_000
    build_graph().invoke(loop_input(steps), run_config(steps, [CallbackHandler()]))
    """
)


def _stored_observations(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    except sqlite3.Error:
        return 0


@contextlib.contextmanager
def crashing_run(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The loop in a subprocess (``env``: its store and backend), running until three parts are stored; killed
    with SIGKILL when the block ends."""
    store = Path(env["LFTRACE_STORE"])
    script = tmp_path / "run.py"
    script.write_text(CRASHING_RUN.format(repo=str(REPO)))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _stored_observations(store) < 3 * FRAGMENT_SIZE:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended by itself"
        assert _stored_observations(store) >= 3 * FRAGMENT_SIZE
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_run_killed_midway_leaves_its_steps_readable_and_marked_incomplete(tmp_path):
    env = {**os.environ, "LFTRACE_STORE": str(tmp_path / "t.db")}
    with crashing_run(tmp_path, env):
        pass
    lftrace = str(Path(sys.executable).with_name("lftrace"))
    listing = subprocess.run([lftrace, "list", "--json"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert row["status"] == "incomplete" and row["latency"] is None  # its process is gone: it never ended
    assert row["observationCount"] >= 3 * FRAGMENT_SIZE
    for status, found in (("incomplete", [row["id"]]), ("running", [])):
        listed = subprocess.run(
            [lftrace, "list", "--status", status, "--json"], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == found, status
    shown = subprocess.run(
        [lftrace, "show", row["id"], "--json"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    thinks = [o for o in data["observations"] if o["name"] == "think"]
    assert len(thinks) > 100
    latest = max(thinks, key=lambda o: o["startTime"])
    # the graph's own run, stored open with the first part: the steps hang under it, the trace has its input
    (root,) = [o for o in data["observations"] if o["parentObservationId"] is None]
    assert (root["name"], root["endTime"]) == ("LangGraph", None)
    by_id = {o["id"]: o for o in data["observations"]}
    for think in thinks:
        parent = by_id[think["parentObservationId"]]
        assert parent["parentObservationId"] == root["id"] or parent["id"] == root["id"]
    assert data["input"]["messages"][0]["content"] == "Plan a three-day trip to Lisbon."
    assert len(latest["input"]["messages"]) > 200  # full inputs, rebuilt from the shared lists
    assert latest["input"]["messages"][0]["content"] == "Plan a three-day trip to Lisbon."
    tree = subprocess.run([lftrace, "show", row["id"]], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert tree.returncode == 0, tree.stderr
    header = tree.stdout.splitlines()[0]
    assert "✗ incomplete" in header and "running" not in header, header  # as `list` says: it never ended
    assert "never ended: its process is gone (killed or crashed)" in tree.stdout
    # the tree starts at the graph's run
    assert tree.stdout.splitlines()[3].startswith("└── CHAIN LangGraph  open"), tree.stdout


RESUMED_THEN_KILLED = textwrap.dedent(
    """
    import time
    from typing import Annotated
    import operator
    from typing_extensions import TypedDict
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    class State(TypedDict):
        notes: Annotated[list, operator.add]

    model = FakeListChatModel(responses=["noted"])

    def ask(state):
        return {{"notes": [interrupt("Go on?")]}}

    def draft(state):  # inside the subgraph: {calls} model calls, then it hangs until it is killed
        for i in range({calls}):
            model.invoke(f"note {{i}}")
        time.sleep(120)
        return {{"notes": ["never"]}}

    inner = StateGraph(State)
    inner.add_node("draft", draft)
    inner.add_edge(START, "draft")
    inner.add_edge("draft", END)

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_node("write", inner.compile())
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "write")
    builder.add_edge("write", END)
    graph = builder.compile()
    """
)


def test_a_resumed_run_killed_inside_a_node_shows_its_steps_under_the_open_nodes(tmp_path):
    """The parts of a running trace store the open observations their own hang under (open, with no end), so a
    run killed inside a node, here a subgraph's node after `--resume`, shows its model calls under that node and
    the subgraph, not as orphans at the top of the tree."""
    (tmp_path / "g.py").write_text(RESUMED_THEN_KILLED.format(calls=FRAGMENT_SIZE + 50))
    store = tmp_path / "t.db"
    env = {**os.environ, "LFTRACE_STORE": str(store)}
    lftrace = str(Path(sys.executable).with_name("lftrace"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([lftrace, *args], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)

    paused = cli("run", "g.py:graph", "--thread-id", "t1", "--input", '{"notes": []}')
    assert paused.returncode == 0 and "Go on?" in paused.stdout, paused.stdout + paused.stderr
    before = _stored_observations(store)
    proc = subprocess.Popen(
        [lftrace, "run", "g.py:graph", "--thread-id", "t1", "--resume", '"yes"'],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _stored_observations(store) < before + FRAGMENT_SIZE:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended by itself"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    listing = cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    killed = next(row for row in json.loads(listing.stdout) if row["status"] == "incomplete")
    shown = cli("show", killed["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    observations = json.loads(shown.stdout)["observations"]
    by_id = {o["id"]: o for o in observations}
    assert killed["observationCount"] == len(observations)  # each open one counted once
    assert all(o["parentObservationId"] in by_id for o in observations if o["parentObservationId"]), "orphans"
    (root,) = [o for o in observations if o["parentObservationId"] is None]
    calls = [o for o in observations if o["type"] == "GENERATION"]
    assert len(calls) >= FRAGMENT_SIZE - 5
    chain = []  # from a model call up to the root: draft, the subgraph, its node in the graph
    node = by_id[calls[0]["parentObservationId"]]
    while node is not root:
        chain.append((node["name"], node["endTime"]))
        node = by_id[node["parentObservationId"]]
    assert chain == [("draft", None), ("LangGraph", None), ("write", None)] and root["endTime"] is None, chain
    assert {o["parentObservationId"] for o in calls} == {calls[0]["parentObservationId"]}
    tree = cli("show", killed["id"], "--expand")
    assert tree.returncode == 0, tree.stderr
    top = [line for line in tree.stdout.splitlines() if line.startswith(("├── ", "└── "))]
    assert len(top) == 1 and top[0].startswith("└── CHAIN LangGraph  open"), tree.stdout[:2000]
    assert "CHAIN draft  step 1  open" in tree.stdout and "× " not in tree.stdout


def test_a_killed_runs_steps_reach_the_backend_with_the_next_push(tmp_path):
    """Exporting, the trace of a long run is queued by its first part but held while the run goes on (status says
    `running`, `push` sends nothing); killed midway, its stored steps go out with the next `push`, as the spans an
    OpenTelemetry SDK had sent before a crash would have."""
    from support.otlp_receiver import attributes, running_receiver

    lftrace = str(Path(sys.executable).with_name("lftrace"))
    with running_receiver() as receiver:
        endpoint = receiver.url + "/v1/traces"
        env = {
            **os.environ,
            "LFTRACE_STORE": str(tmp_path / "t.db"),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
            "LFTRACE_EXPORT_PROCESS": "false",  # no helper left sending after the kill: only `push` sends
        }

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([lftrace, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
            assert done.returncode == 0, (args, done.stderr)
            return done

        with crashing_run(tmp_path, env):
            (dest,) = json.loads(cli("status", "--json").stdout)["destinations"]
            assert (dest["name"], dest["running"], dest["pending"]) == (f"otlp:{endpoint}", 1, 0)
            assert f"otlp:{endpoint}: delivered 0, pending 0, failed 0" in cli("push").stdout  # held: it runs
        assert receiver.spans() == []
        (row,) = json.loads(cli("list", "--json").stdout)
        assert row["status"] == "incomplete"
        assert f"otlp:{endpoint}: delivered 1, pending 0, failed 0" in cli("push").stdout
        stored = json.loads(cli("show", row["id"], "--json").stdout)
        sent = receiver.spans()
        assert {s.span_id.hex() for s in sent} == {o["id"] for o in stored["observations"]}
        assert len(sent) >= 3 * FRAGMENT_SIZE
        assert {s.trace_id.hex() for s in sent} == {row["id"]}
        # the graph's run, still open when the process died: sent ending with the last stored step, as a WARNING
        # that says why (Langfuse would otherwise show a root of no duration and no word of what happened)
        (root,) = [s for s in sent if not s.parent_span_id]
        last_end = max(o["endTime"] for o in stored["observations"] if o["endTime"])
        root_attributes = attributes(root.attributes)
        assert root.name == "LangGraph" and root_attributes["langfuse.observation.level"] == "WARNING"
        assert (
            root_attributes["langfuse.observation.status_message"]
            == "never ended: its process is gone (killed or crashed)"
        )
        assert "Plan a three-day trip to Lisbon." in root_attributes["langfuse.trace.input"]
        assert root.end_time_unix_nano > root.start_time_unix_nano
        assert abs(root.end_time_unix_nano / 1e9 - datetime.fromisoformat(last_end).timestamp()) < 0.002
        (dest,) = json.loads(cli("status", "--json").stdout)["destinations"]
        assert (dest["delivered"], dest["running"], dest["pending"]) == (1, 0, 0)


def test_a_killed_runs_steps_are_sent_by_the_export_helper_as_the_program_dies(tmp_path):
    """With the export helper (the default on 2 CPUs or more), the program killed midway: the helper reads EOF on its
    pipe, and sends the trace as far as it got (its hold ends with the program) before it exits; no `push` needed."""
    from support.otlp_receiver import running_receiver

    store = tmp_path / "t.db"
    with running_receiver() as receiver:
        env = {
            **os.environ,
            "LFTRACE_STORE": str(store),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces",
            "LFTRACE_EXPORT_PROCESS": "true",
        }
        with crashing_run(tmp_path, env):
            pass
        with TraceStore(store, create=False) as opened:
            (summary,) = opened.list_traces()
            stored = {o.id for o in opened.get_trace(summary.id, inputs=False).observations}
        assert summary.status == "incomplete" and len(stored) >= 3 * FRAGMENT_SIZE
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stored <= {s.span_id.hex() for s in receiver.spans()}:
            time.sleep(0.1)
        assert stored <= {s.span_id.hex() for s in receiver.spans()}  # every stored step reached the backend
        with TraceStore(store, create=False) as opened:
            deadline = time.monotonic() + 10
            while (
                time.monotonic() < deadline
                and opened.delivery_counts()[f"otlp:{receiver.url}/v1/traces"]["delivered"] < 1
            ):
                time.sleep(0.1)
            assert opened.delivery_counts()[f"otlp:{receiver.url}/v1/traces"]["delivered"] == 1


def test_parts_read_for_the_export_start_from_the_lists_read_before(tmp_path, monkeypatch):
    """The export helper reads a running trace's parts one after the other: a part's lists extend those of the
    part before, so its read starts where they end instead of walking back to the run's first step. Shown by
    deleting the nodes the first read went through: the second still gives every observation its full lists."""
    path = tmp_path / "t.db"
    trace_id = traced_loop(150, path, monkeypatch)  # 376 observations
    with TraceStore(path, create=False) as store:
        expected = {o.id: (o.input, o.output) for o in store.get_trace(trace_id).observations}
        upto = store.last_written(trace_id)
        assert upto is not None
        middle = upto // 2
        first = list(store.trace_pages(trace_id, 200, as_text=True, written=(-1, middle), ids=False))
        kept = list(store._text_lists.lists())
        assert 0 < len(kept) <= 8
        with sqlite3.connect(path) as conn:  # the nodes of every list the first read built
            conn.execute(
                "WITH RECURSIVE chain(hash) AS (SELECT value FROM json_each(?) UNION "
                "SELECT b.prev FROM blobs b JOIN chain c ON b.hash = c.hash WHERE b.prev IS NOT NULL) "
                "DELETE FROM blobs WHERE hash IN chain",
                (json.dumps(kept),),
            )
            assert conn.total_changes > 50
        with TraceStore(path, create=False) as fresh:  # without them, a read finds lists missing
            late = list(fresh.trace_pages(trace_id, 200, as_text=True, written=(middle, upto), ids=False))
        assert any("<missing shared list" in orjson.dumps(o.input).decode() for p in late for o in p.observations)
        second = list(store.trace_pages(trace_id, 200, as_text=True, written=(middle, upto), ids=False))
    read = [o for page in first + second for o in page.observations]
    assert sorted(o.id for o in read) == sorted(expected)
    for obs in read:
        assert orjson.loads(orjson.dumps(obs.input)) == expected[obs.id][0], obs.name
        assert orjson.loads(orjson.dumps(obs.output)) == expected[obs.id][1], obs.name


def test_the_lists_kept_to_read_a_long_trace_go_once_it_is_exported(tmp_path, monkeypatch, receiver):
    """A program that delivers from its own thread keeps no conversation's text after exporting a long trace."""
    from lftrace.config import Settings
    from lftrace.delivery import PAGED_OVER, Deliverer, destinations_for

    path = tmp_path / "t.db"
    trace_id = traced_loop(420, path, monkeypatch)  # 1,051 observations: exported page by page
    settings = Settings(store=path, otlp_endpoint=receiver.url + "/v1/traces")
    with TraceStore(path) as store:
        assert len(store.get_trace(trace_id).observations) > PAGED_OVER
        deliverer = Deliverer(store, destinations_for(settings), settings)
        store.enqueue(deliverer.destinations[0].name, [trace_id])
        read = store.trace_pages  # the pages as delivery reads them, and what the store keeps meanwhile
        kept: list[int] = []

        def pages(*args, **kwargs):
            for page in read(*args, **kwargs):
                kept.append(len(list(store._text_lists.lists())))
                yield page

        monkeypatch.setattr(store, "trace_pages", pages)
        assert deliverer.deliver_now().delivered == 1
        assert len(kept) >= 5 and max(kept) > 0  # kept while its pages were read
        assert list(store._text_lists.lists()) == []  # and let go after
        deliverer.stop()
    assert len({s.span_id.hex() for s in receiver.spans()}) == 1 + 420 * 2 + 210


def test_a_long_trace_is_exported_page_by_page_with_every_full_input(monkeypatch):
    from lftrace.delivery import PAGE_OBSERVATIONS
    from support.otlp_receiver import attributes

    steps = 500  # 1,251 observations: more than PAGED_OVER, so streamed from the store in pages
    with exported_long_run(
        monkeypatch, lambda callbacks: build_graph().invoke(loop_input(steps), run_config(steps, callbacks))
    ) as (client, handler, stored, spans, receiver):
        assert len(spans) == len(stored.observations)  # each span once
        requests = [r for r in receiver.requests if r.request is not None]
        assert len(requests) >= len(stored.observations) // PAGE_OBSERVATIONS
        roots = [s for s in spans if not s.parent_span_id]
        assert len(roots) == 1 and "langfuse.trace.name" in attributes(roots[0].attributes)
        assert not any("langfuse.trace.name" in attributes(s.attributes) for s in spans if s.parent_span_id)
        last_think = max((s for s in spans if s.name == "think"), key=lambda s: s.start_time_unix_nano)
        sent = attributes(last_think.attributes)
        sent_input = json.loads(sent.get("langfuse.observation.input") or sent["input.value"])
        assert len(sent_input["messages"]) == steps - 1  # the full conversation, rebuilt from the shared lists
        assert client.store.delivery_counts()[f"otlp:{receiver.url}/v1/traces"]["delivered"] == 1
        # the export reads the pages' shared lists as each item's JSON text: the same bytes as the values
        assert pages_read_as_text(client.store, handler.last_trace_id, PAGE_OBSERVATIONS) == len(stored.observations)


def test_ctrl_c_stops_a_long_run_at_once_and_keeps_its_steps(tmp_path):
    store = tmp_path / "t.db"
    env = {**os.environ, "LFTRACE_STORE": str(store)}
    lftrace = str(Path(sys.executable).with_name("lftrace"))
    payload = json.dumps({"messages": [{"role": "user", "content": "Plan a trip"}], "max_steps": 1_000_000})
    cmd = [lftrace, "run", str(REPO / "sample_graphs" / "long_loop.py") + ":graph", "--input", payload]
    proc = subprocess.Popen(
        with_ctrl_c([*cmd, "--recursion-limit", "1000010"]), env=env, cwd=tmp_path, stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline and count < 2 * FRAGMENT_SIZE:
            time.sleep(0.1)
            try:
                with sqlite3.connect(store, timeout=5) as conn:
                    count = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
            except sqlite3.Error:
                count = 0
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert took < 10  # ~0.3 s measured (bench/long_run.py --ctrl-c); generous for a loaded CI machine
    listing = subprocess.run([lftrace, "list", "--json"], env=env, capture_output=True, text=True, cwd=tmp_path)
    (row,) = json.loads(listing.stdout)
    assert row["status"] in ("cancelled", "interrupted") and row["observationCount"] >= 2 * FRAGMENT_SIZE


def test_stats_and_diff_read_long_traces_without_their_inputs(tmp_path, monkeypatch):
    trace_id = traced_loop(40, tmp_path / "t.db", monkeypatch)
    with TraceStore(tmp_path / "t.db", create=False) as store:
        light = store.get_trace(trace_id, inputs=False)
        full = store.get_trace(trace_id)
        (streamed,) = list(store.iter_traces(inputs=False))
    assert all(o.input is None for o in light.observations + streamed.observations)
    assert [o.output for o in light.observations] == [o.output for o in full.observations]
    assert light.output == full.output and len(light.output["messages"]) == 41
    runner_env = {"LFTRACE_STORE": str(tmp_path / "t.db")}
    from typer.testing import CliRunner

    from lftrace.cli import app

    stats = CliRunner().invoke(app, ["stats", "--json"], env=runner_env)
    assert stats.exit_code == 0 and json.loads(stats.output)["traces"] == 1
    diff = CliRunner().invoke(app, ["diff", trace_id, trace_id], env=runner_env)
    assert diff.exit_code == 0, diff.output


def test_inputs_stay_exact_when_a_step_replaces_or_removes_an_earlier_message(tmp_path, monkeypatch):
    """Structural sharing only shares a prefix that is really the same: a LangGraph step that replaces an earlier
    message by id (add_messages swaps it in place in the new list) or removes one must show in every later input."""
    seen: list[list[str]] = []  # what each node saw, in order

    def step(state: MessagesState) -> dict:
        messages = state["messages"]
        seen.append([m.content for m in messages])
        k = len(seen)
        if k % 7 == 0:  # edit an early message in place, by id
            target = messages[k % 5]
            return {"messages": [AIMessage(f"edited at {k}", id=target.id)]}
        if k % 11 == 0:  # remove one from the middle
            return {"messages": [RemoveMessage(id=messages[len(messages) // 2].id)]}
        return {"messages": [AIMessage(f"reply {k}") if k % 2 else HumanMessage(f"ask {k}")]}

    def route(state: MessagesState) -> str:
        return "stop" if len(seen) >= 60 else "go"

    builder = StateGraph(MessagesState)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", route, {"go": "step", "stop": END})
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke(
        {"messages": [HumanMessage(f"start {i}") for i in range(12)]},
        {"callbacks": [handler], "recursion_limit": 200},
    )
    client_module.get_client().shutdown()
    with TraceStore(tmp_path / "t.db", create=False) as store:
        trace = store.get_trace(handler.last_trace_id)
    nodes = sorted((o for o in trace.observations if o.name == "step"), key=lambda o: o.start_time)
    assert len(nodes) == len(seen) == 60
    stored = [[m["content"] for m in node.input["messages"]] for node in nodes]
    assert any("edited at 7" in contents for contents in stored)  # the edits are there to be checked
    assert stored == seen


def test_lftrace_run_prints_a_long_run_reading_only_the_inputs_it_shows(tmp_path):
    """`lftrace run` on a run of more than READ_INPUTS_UP_TO observations reads its trace back without the inputs
    (each the conversation so far), as `show` does: the tree fills in those of its rows, --json streams them all."""
    from lftrace.runner import READ_INPUTS_UP_TO

    steps = 500  # ~1,250 observations
    env = {**os.environ, "LFTRACE_STORE": str(tmp_path / "t.db"), "COLUMNS": "200"}
    lftrace = str(Path(sys.executable).with_name("lftrace"))
    payload = json.dumps({"messages": [{"role": "user", "content": "Plan a trip"}], "max_steps": steps})
    target = str(REPO / "sample_graphs" / "long_loop.py") + ":graph"
    run = [lftrace, "run", target, "--input", payload, "--recursion-limit", str(steps + 10)]
    shown = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert shown.returncode == 0, shown.stderr
    tree = shown.stdout
    assert "×" in tree  # folded
    first_think = tree.index("CHAIN think  step 1 ")
    assert "in: Plan a trip" in tree[first_think : first_think + 300]  # the inputs of the rows shown, read back
    dumped = subprocess.run([*run, "--json"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert dumped.returncode == 0, dumped.stderr
    trace = json.loads(dumped.stdout)
    assert len(trace["observations"]) > READ_INPUTS_UP_TO
    thinks = sorted((o for o in trace["observations"] if o["name"] == "think"), key=lambda o: o["startTime"])
    assert [len(o["input"]["messages"]) for o in thinks] == list(range(1, steps, 2))  # every input, in full
    stored = subprocess.run(
        [lftrace, "show", trace["id"], "--json"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert json.loads(stored.stdout) == trace


class _Probe:
    """A state value whose text says which switch interval was in force when the writer converted it."""

    seen: list[tuple[str, float]] = []  # noqa: RUF012 - one test's record

    def __str__(self) -> str:
        import threading

        _Probe.seen.append((threading.current_thread().name, sys.getswitchinterval()))
        return "probe"


def test_the_writer_shortens_the_switch_interval_only_while_it_writes_a_part(tmp_path, monkeypatch):
    """A long run's parts are written while the program runs at a short switch interval (at Python's 5 ms the
    writer got a few percent of the GIL and the parts piled up until the run ended); the interval the program had
    is put back after each part, and one the program sets meanwhile is kept."""
    from typing import TypedDict

    from lftrace.writer import BUSY_SWITCH_INTERVAL_S

    class State(TypedDict):
        n: int
        limit: int
        probe: Any

    def step(state: State) -> dict[str, Any]:
        if state["n"] == 300:  # the program changes its own interval while parts are written
            sys.setswitchinterval(0.003)
        return {"n": state["n"] + 1, "probe": _Probe()}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < s["limit"] else END, ["step", END])
    graph = builder.compile()

    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    before = sys.getswitchinterval()
    _Probe.seen = []
    try:
        sys.setswitchinterval(0.004)
        handler = CallbackHandler()
        steps = 600
        graph.invoke({"n": 0, "limit": steps, "probe": None}, {"recursion_limit": steps + 10, "callbacks": [handler]})
        client = client_module.get_client()
        assert client.flush()
        assert sys.getswitchinterval() == pytest.approx(0.003)  # the program's own setting, not ours nor the old one
        stored = client.get_trace(handler.last_trace_id)
    finally:
        sys.setswitchinterval(before)
    steps_stored = [o for o in stored.observations if o.name == "step"]
    assert [o.output for o in steps_stored] == [{"n": i + 1, "probe": "probe"} for i in range(steps)]
    in_writer = [interval for thread, interval in _Probe.seen if thread == "lftrace-writer"]
    assert in_writer, "the writer converted the probes"
    # parts: at the short interval; the rest of the trace, written once the run ended: at the program's own
    assert BUSY_SWITCH_INTERVAL_S in in_writer
    assert {round(interval, 6) for interval in in_writer} <= {BUSY_SWITCH_INTERVAL_S, 0.004, 0.003}
    assert in_writer[-1] == pytest.approx(0.003)
