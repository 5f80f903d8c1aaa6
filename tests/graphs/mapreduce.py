"""The map-reduce how-to (``Send``): generate subjects, write a joke per subject in parallel, pick the best.

Plain ``typing.TypedDict`` state with a reducer channel, as the guide writes it; no model, so it runs fast.
    lftrace run tests/graphs/mapreduce.py:graph --input '{"topic": "animals"}'
"""

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class OverallState(TypedDict):
    topic: str
    subjects: list
    jokes: Annotated[list, operator.add]
    best_selected_joke: str


class JokeState(TypedDict):
    subject: str


def generate_topics(state: OverallState):
    return {"subjects": [f"{state['topic']} {kind}" for kind in ("cats", "dogs", "owls")]}


def generate_joke(state: JokeState):
    return {"jokes": [f"Why did the {state['subject']} cross the road?"]}


def continue_to_jokes(state: OverallState):
    return [Send("generate_joke", {"subject": s}) for s in state["subjects"]]


def best_joke(state: OverallState):
    return {"best_selected_joke": max(state["jokes"], key=len)}


builder = StateGraph(OverallState)
builder.add_node("generate_topics", generate_topics)
builder.add_node("generate_joke", generate_joke)
builder.add_node("best_joke", best_joke)
builder.add_edge(START, "generate_topics")
builder.add_conditional_edges("generate_topics", continue_to_jokes, ["generate_joke"])
builder.add_edge("generate_joke", "best_joke")
builder.add_edge("best_joke", END)
graph = builder.compile()
