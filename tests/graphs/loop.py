"""A graph that loops forever (``ping`` <-> ``pong``): for the recursion limit and Ctrl-C."""

import sys
from typing import TypedDict

from langgraph.graph import START, StateGraph


class State(TypedDict):
    count: int


def ping(state: State):
    if state["count"] == 0:
        print("LOOP STARTED", flush=True)
        sys.stdout.flush()
    return {"count": state["count"] + 1}


def pong(state: State):
    return {"count": state["count"] + 1}


builder = StateGraph(State)
builder.add_node("ping", ping)
builder.add_node("pong", pong)
builder.add_edge(START, "ping")
builder.add_edge("ping", "pong")
builder.add_edge("pong", "ping")
graph = builder.compile()
