"""A two-node graph for the stop tests of `lftrace test` (Ctrl-C, SIGTERM): a case whose topic starts with "slow"
prints STARTED and then hangs, as a model call that never answers; any other case answers at once. The tests
copy this file next to their dataset and run `lftrace test slow_graph.py:graph cases.jsonl`."""

import os
import time

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict):
    topic: str
    answer: str


def think(state: State) -> dict:
    return {"answer": "thinking about " + state["topic"]}


def answer(state: State) -> dict:
    if state["topic"].startswith("slow"):
        os.write(1, b"STARTED\n")  # one write per line: two cases may print at once
        time.sleep(60)  # a hung model call: only a signal ends the test run
    return {"answer": state["answer"] + "!"}


builder = StateGraph(State)
builder.add_node("think", think)
builder.add_node("answer", answer)
builder.add_edge(START, "think")
builder.add_edge("think", "answer")
builder.add_edge("answer", END)
graph = builder.compile()
