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
