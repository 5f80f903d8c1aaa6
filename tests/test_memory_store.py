"""Long-term memory (LangGraph's ``BaseStore``) for graphs compiled without a store, as LangGraph's server gives them.

Graphs written as LangGraph's "cross-thread persistence" guide writes them for the platform (nodes taking
``store: BaseStore``, or calling ``get_store()``), run by real ``lftrace run``/``test`` subprocesses: what one run
puts in the store the next run finds, sync and async, and a graph's own store is left alone.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

LFTRACE = str(Path(sys.executable).parent / "lftrace")

MEMORY_GRAPH = textwrap.dedent(
    """
    from typing import TypedDict

    from langchain_core.runnables import RunnableConfig
    from langgraph.config import get_store
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore
    from langgraph.store.memory import InMemoryStore


    class State(TypedDict):
        text: str
        memories: list[str]


    def remember(state: State, config: RunnableConfig, *, store: BaseStore) -> dict:
        namespace = ("memories", config["configurable"].get("user_id", "anon"))
        store.put(namespace, f"m{len(store.search(namespace))}", {"text": state["text"]})
        return {}


    def recall(state: State, config: RunnableConfig) -> dict:
        namespace = ("memories", config["configurable"].get("user_id", "anon"))
        return {"memories": sorted(item.value["text"] for item in get_store().search(namespace))}


    async def aremember(state: State, config: RunnableConfig, *, store: BaseStore) -> dict:
        namespace = ("memories", config["configurable"].get("user_id", "anon"))
        await store.aput(namespace, state["text"], {"text": state["text"]})
        return {"memories": sorted(i.value["text"] for i in await store.asearch(namespace))}


    def build(*nodes):
        builder = StateGraph(State)
        for node in nodes:
            builder.add_node(node)
        builder.add_edge(START, nodes[0].__name__)
        for first, then in zip(nodes, nodes[1:]):
            builder.add_edge(first.__name__, then.__name__)
        builder.add_edge(nodes[-1].__name__, END)
        return builder


    graph = build(remember, recall).compile()
    async_graph = build(aremember).compile()
    own_store = build(remember, recall).compile(store=InMemoryStore())
    """
)


def lftrace(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def output_of(ran: subprocess.CompletedProcess[str], cwd: Path) -> dict:
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = subprocess.run([LFTRACE, "show", "last", "--json"], capture_output=True, text=True, cwd=cwd, check=True)
    return json.loads(shown.stdout)["output"]


def run(cwd: Path, target: str, text: str, user: str = "ada") -> dict:
    config = json.dumps({"configurable": {"user_id": user}})
    return output_of(
        lftrace("run", f"memory_app.py:{target}", "-i", json.dumps({"text": text}), "--config", config, cwd=cwd), cwd
    )


def test_a_graph_without_a_store_gets_one_that_outlives_the_run(tmp_path):
    (tmp_path / "memory_app.py").write_text(MEMORY_GRAPH, encoding="utf-8")
    assert run(tmp_path, "graph", "likes tea")["memories"] == ["likes tea"]
    # another run (another thread): the same memory, read through get_store() too
    assert run(tmp_path, "graph", "lives in Oslo")["memories"] == ["likes tea", "lives in Oslo"]
    assert run(tmp_path, "graph", "x", user="bob")["memories"] == ["x"]
    memory = Path(os.environ["LFTRACE_STORE"]).with_name("traces-memory.db")
    assert memory.exists() and stat.S_IMODE(memory.stat().st_mode) == 0o600  # the graph's data: private
    # an async-only node gets the async store on the same file
    assert run(tmp_path, "async_graph", "async note")["memories"] == ["async note", "likes tea", "lives in Oslo"]


def test_a_graph_s_own_store_is_kept(tmp_path):
    (tmp_path / "memory_app.py").write_text(MEMORY_GRAPH, encoding="utf-8")
    assert run(tmp_path, "own_store", "one")["memories"] == ["one"]
    assert run(tmp_path, "own_store", "two")["memories"] == ["two"]  # its InMemoryStore: gone with the process
    assert not Path(os.environ["LFTRACE_STORE"]).with_name("traces-memory.db").exists()


def test_concurrent_test_cases_share_the_memory_file(tmp_path):
    (tmp_path / "memory_app.py").write_text(MEMORY_GRAPH, encoding="utf-8")
    cases = [{"name": f"c{i}", "input": {"text": f"note {i}"}, "config": {"configurable": {"user_id": "team"}}}
             for i in range(6)]  # fmt: skip
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    ran = lftrace("test", "memory_app.py:async_graph", "cases.jsonl", "--concurrency", "4", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert {c["status"] for c in json.loads(ran.stdout)["cases"]} == {"pass"}
    assert run(tmp_path, "async_graph", "last", user="team")["memories"] == sorted(
        [f"note {i}" for i in range(6)] + ["last"]
    )
