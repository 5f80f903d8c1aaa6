"""A graph factory that takes the run's config, the ``langgraph.json`` convention."""

from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    question: str
    answer: str


def make_graph(config: RunnableConfig):
    style = config.get("configurable", {}).get("style", "plain")

    def answer(state: State):
        return {"answer": f"[{style}] {state['question']}"}

    builder = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile()
