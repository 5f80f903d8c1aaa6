"""A graph whose nodes are ``async def`` only (LangGraph then has no sync function to call)."""

import asyncio
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    question: str
    answer: str


async def think(state: State):
    await asyncio.sleep(0.001)
    return {"answer": f"async answer to {state['question']}"}


builder = StateGraph(State)
builder.add_node("think", think)
builder.add_edge(START, "think")
builder.add_edge("think", END)
graph = builder.compile()
