"""LangGraph's time travel from the command line: ``lftrace history`` lists a thread's checkpoints, ``lftrace run
--checkpoint-id`` replays one (no input) or forks it (with ``--input``), as LangGraph's time-travel guide does
with ``get_state_history`` and ``invoke(..., {"configurable": {"checkpoint_id": ...}})``.

Real ``lftrace`` subprocesses on the sample agent (its checkpoints in lftrace's file beside the store) and on a
graph with its own ``SqliteSaver``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LFTRACE = str(Path(sys.executable).parent / "lftrace")
AGENT = f"{REPO / 'sample_graphs' / 'agent.py'}:graph"


def lftrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60)


def history(target: str, thread: str) -> list[dict]:
    ran = lftrace("history", target, "--thread-id", thread, "--json")
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def names(trace_json: str) -> list[str]:
    return [o["name"] for o in json.loads(trace_json)["observations"] if o["type"] in ("TOOL", "GENERATION")]


@pytest.mark.heavy
def test_history_lists_the_checkpoints_and_a_run_replays_or_forks_one(isolated_env):
    first = lftrace("run", AGENT, "-i", "What is 6 times 7?", "--thread-id", "tt-1")
    assert first.returncode == 0, first.stderr
    points = history(AGENT, "tt-1")
    assert [(p["step"], p["ran"], p["next"]) for p in points] == [
        (-1, [], ["__start__"]),
        (0, ["__start__"], ["agent"]),
        (1, ["agent"], ["tools"]),
        (2, ["tools"], ["agent"]),
        (3, ["agent"], []),
    ]
    assert points[0]["source"] == "input" and points[1]["appended"]["messages"][0]["content"] == "What is 6 times 7?"
    assert points[2]["appended"]["messages"][0]["tool_calls"][0]["name"] == "multiply"
    assert points[3]["appended"]["messages"][0]["content"] == "42.0"

    # replay from "before tools": the tool and the answer run again, the first model call does not
    replay = lftrace("run", AGENT, "--thread-id", "tt-1", "--checkpoint-id", points[2]["checkpointId"], "--json")
    assert replay.returncode == 0, replay.stderr
    assert names(replay.stdout) == ["multiply", "FakeChatModel"]
    assert json.loads(replay.stdout)["output"]["messages"][-1]["content"] == "Here is what I found: 42.0."

    # fork from "after the question" with another question: a branch of the thread
    fork = lftrace(
        "run", AGENT, "--thread-id", "tt-1", "--checkpoint-id", points[1]["checkpointId"],
        "-i", "What is the weather in Paris?", "--json",
    )  # fmt: skip
    assert fork.returncode == 0, fork.stderr
    assert names(fork.stdout) == ["FakeChatModel", "get_weather", "FakeChatModel"]
    messages = json.loads(fork.stdout)["output"]["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "What is 6 times 7?",
        "What is the weather in Paris?",
    ]
    branches = history(AGENT, "tt-1")[len(points) :]  # the replay's branch, then the fork's
    assert [(p["source"], p["ran"], p["next"]) for p in branches] == [
        ("fork", [], ["tools"]),  # the replay starts with a copy of the checkpoint it replays
        ("loop", ["tools"], ["agent"]),
        ("loop", ["agent"], []),
        ("input", [], ["__start__"]),  # the fork starts with its input
        ("loop", ["__start__"], ["agent"]),
        ("loop", ["agent"], ["tools"]),
        ("loop", ["tools"], ["agent"]),
        ("loop", ["agent"], []),
    ]
    assert branches[4]["appended"]["messages"][0]["content"] == "What is the weather in Paris?"  # vs its parent
    assert branches[-1]["appended"]["messages"][0]["content"] == "Here is what I found: Paris: 18°C and sunny."

    table = lftrace("history", AGENT, "--thread-id", "tt-1")  # piped: tab-separated, a header first
    rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert rows[0] == ["step", "ran", "next", "changed", "checkpoint_id"]
    assert rows[3][:4] == ["1", "agent", "tools", 'messages +1: [tool calls: multiply({"a": 6, "b": 7})]']
    assert [row[4] for row in rows[1:6]] == [p["checkpointId"] for p in points]


def test_a_graph_with_its_own_sqlite_saver(isolated_env, tmp_path):
    app = tmp_path / "counter.py"
    app.write_text(
        f"""
import sqlite3
from typing import TypedDict
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import StateGraph

class State(TypedDict):
    n: int

def add(state: State) -> State:
    return {{"n": state["n"] + 1}}

builder = StateGraph(State)
builder.add_node("add", add)
builder.set_entry_point("add")
graph = builder.compile(checkpointer=SqliteSaver(sqlite3.connect({str(tmp_path / "own.db")!r}, check_same_thread=False)))
"""
    )
    assert lftrace("run", f"{app}:graph", "-i", '{"n": 1}', "--thread-id", "own").returncode == 0
    points = history(f"{app}:graph", "own")
    assert [(p["step"], p["set"]) for p in points] == [(-1, {}), (0, {"n": 1}), (1, {"n": 2})]
    assert not (isolated_env.parent / "traces-checkpoints.db").exists()  # the graph's own saver, not lftrace's


@pytest.mark.parametrize(
    ("args", "code", "why"),
    [
        (["run", AGENT, "--checkpoint-id", "x"], 2, "--checkpoint-id needs --thread-id"),
        (["run", AGENT, "--thread-id", "t", "--checkpoint-id", "x", "--resume", "yes"], 2, "give --input to fork it"),
        (["history", AGENT], 2, "give the thread with --thread-id"),
        (["history", AGENT, "--thread-id", "never-ran"], 4, "thread 'never-ran' has no checkpoints in"),
        (
            ["history", f"{REPO / 'sample_graphs' / 'joke_chain.py'}:chain", "--thread-id", "t"],
            2,
            "is not a LangGraph graph",
        ),
    ],
)
def test_time_travel_mistakes_are_one_line(isolated_env, args, code, why):
    ran = lftrace(*args)
    assert ran.returncode == code, ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert why in line and "Traceback" not in ran.stderr


def test_an_unknown_checkpoint_is_refused_before_the_run(isolated_env):
    assert lftrace("run", AGENT, "-i", "What is 6 times 7?", "--thread-id", "tt-2").returncode == 0
    ran = lftrace("run", AGENT, "--thread-id", "tt-2", "--checkpoint-id", "1f000000-0000-0000-0000-000000000000")
    assert ran.returncode == 2
    assert ran.stderr.strip() == (
        "error: thread 'tt-2' has no checkpoint '1f000000-0000-0000-0000-000000000000' "
        "(`lftrace history TARGET --thread-id ID` lists them)"
    )
    assert len(json.loads(lftrace("list", "--json").stdout)) == 1  # nothing ran, nothing was recorded
