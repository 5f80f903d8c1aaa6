"""live.py: the tree of a run while it runs, and following a store that other processes write."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TypedDict

from rich.console import Console

from lftrace.live import LiveTree, follow, tail_line
from lftrace.store import TraceStore

HELPERS = Path(__file__).resolve().parent / "support" / "store_worker.py"


def render(renderable, width: int = 100, height: int = 40) -> str:
    console = Console(width=width, height=height, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()


def test_the_live_tree_grows_while_a_real_graph_runs():
    from langgraph.graph import END, START, StateGraph

    from lftrace.langchain import CallbackHandler

    release = threading.Event()

    class State(TypedDict):
        steps: list[str]

    def plan(state: State) -> dict:
        return {"steps": ["plan"]}

    def slow(state: State) -> dict:
        release.wait(10)
        return {"steps": [*state["steps"], "slow"]}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("slow", slow)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "slow")
    builder.add_edge("slow", END)
    graph = builder.compile()
    handler = CallbackHandler()
    live = LiveTree(handler, "graph.py:graph")
    assert "running graph.py:graph" in render(live)  # nothing started yet
    runner = threading.Thread(target=lambda: graph.invoke({"steps": []}, {"callbacks": [handler]}))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while "CHAIN slow" not in (text := render(live)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "CHAIN plan  step 1" in text and "CHAIN slow  step 2  open" in text  # done, and still going
        assert "LangGraph  … running" in text or "LangGraph" in text.splitlines()[0]
    finally:
        release.set()
        runner.join(10)
    assert handler.running_traces() == []  # finished: nothing left to show live


def test_the_live_tree_keeps_the_newest_rows_when_taller_than_the_terminal():
    from lftrace.model import Observation, Trace

    trace = Trace(id="a" * 32, name="long", timestamp=1)
    trace.observations = [
        Observation(id=f"{i:016x}", trace_id=trace.id, parent_id=None, type="CHAIN", name=f"step-{i}", start_time=i + 1)
        for i in range(50)
    ]

    class Handler:
        def running_traces(self):
            return [trace]

    text = render(LiveTree(Handler(), "t.py:g"), height=12)
    lines = text.splitlines()
    assert len(lines) <= 12 and "step-49" in text and "step-0 " not in text
    assert lines[0].startswith("long") and "earlier rows above" in lines[-1]


def test_follow_yields_traces_other_processes_write_once_finished(tmp_path):
    store_path = tmp_path / "shared.db"
    with TraceStore(store_path) as store:
        start = store.latest_position()
    found = []
    done = threading.Event()

    def reader() -> None:
        with TraceStore(store_path, create=False) as store:
            for summary in follow(store.changes_since, start, interval=0.05, stop=done.is_set):
                found.append(summary)
                if len(found) == 6:
                    done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    writer = subprocess.run(
        [sys.executable, str(HELPERS), "write", str(store_path), "w1", "6", "2"], capture_output=True, text=True
    )
    assert writer.returncode == 0, writer.stderr
    thread.join(10)
    done.set()
    assert len(found) == 6 and len({s.id for s in found}) == 6
    line = tail_line(found[0]).plain
    assert found[0].id[:8] in line and "ok" in line


def test_follow_holds_a_running_trace_back_until_it_finishes(tmp_path):
    sys.path.insert(0, str(HELPERS.parents[1]))
    from support.traces import make_trace

    store_path = tmp_path / "t.db"
    running = make_trace(finished=False)
    with TraceStore(store_path) as store:
        start = store.latest_position()
        store.write_traces([running])
        stream = follow(store.changes_since, start, interval=0.01)
        finished = make_trace(running.id)
        timer = threading.Timer(0.1, lambda: store.write_traces([finished], merge=True))
        timer.start()
        first = next(stream)
        timer.join()
    assert first.id == running.id and first.status == "ok" and first.latency is not None
