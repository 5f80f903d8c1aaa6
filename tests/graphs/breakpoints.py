"""Static breakpoints as LangGraph's breakpoints guide writes them: three steps, a checkpointer, and
``interrupt_before`` / ``interrupt_after`` at compile time; ``async_graph`` has async-only nodes (ainvoke)."""

from __future__ import annotations

from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict):
    input: str


def step_1(state: State) -> dict:
    return {"input": state["input"] + " 1"}


def step_2(state: State) -> dict:
    return {"input": state["input"] + " 2"}


def step_3(state: State) -> dict:
    return {"input": state["input"] + " 3"}


async def astep_1(state: State) -> dict:
    return step_1(state)


async def astep_2(state: State) -> dict:
    return step_2(state)


async def astep_3(state: State) -> dict:
    return step_3(state)


def _builder(*steps) -> StateGraph:
    builder = StateGraph(State)
    for name, step in zip(("step_1", "step_2", "step_3"), steps, strict=True):
        builder.add_node(name, step)
    builder.add_edge(START, "step_1")
    builder.add_edge("step_1", "step_2")
    builder.add_edge("step_2", "step_3")
    builder.add_edge("step_3", END)
    return builder


graph = _builder(step_1, step_2, step_3).compile(checkpointer=MemorySaver(), interrupt_before=["step_3"])
after = _builder(step_1, step_2, step_3).compile(checkpointer=MemorySaver(), interrupt_after=["step_1"])
no_checkpointer = _builder(step_1, step_2, step_3).compile(interrupt_before=["step_3"])
async_graph = _builder(astep_1, astep_2, astep_3).compile(checkpointer=MemorySaver(), interrupt_before=["step_3"])


# -- a subgraph's own breakpoint: the parent runs the compiled subgraph as its node `inner` ------------------
def _inner(**breakpoints) -> object:
    builder = StateGraph(State)
    builder.add_node("draft", lambda state: {"input": state["input"] + " drafted"})
    builder.add_node("review", lambda state: {"input": state["input"] + " reviewed"})
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    return builder.compile(**breakpoints)


def _outer(inner: object, **compiled) -> object:
    builder = StateGraph(State)
    builder.add_node("inner", inner)
    builder.add_node("publish", lambda state: {"input": state["input"] + " published"})
    builder.add_edge(START, "inner")
    builder.add_edge("inner", "publish")
    builder.add_edge("publish", END)
    return builder.compile(**compiled)


subgraph = _outer(_inner(interrupt_before=["review"]), checkpointer=MemorySaver())
subgraph_after_last = _outer(_inner(interrupt_after=["review"]), checkpointer=MemorySaver())
subgraph_no_checkpointer = _outer(_inner(interrupt_before=["review"]))
