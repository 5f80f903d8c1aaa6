"""Human in the loop: the model drafts, a person reviews at ``interrupt()``, the graph revises or publishes.

Written as LangGraph's human-in-the-loop guide writes it (``interrupt`` + ``Command(resume=...)``, an
in-memory checkpointer); ``lftrace run`` keeps the thread's checkpoints on disk, so the review can be
answered by a second command:

    lftrace run sample_graphs/human_review.py:graph --input "release notes for v2"
    lftrace run sample_graphs/human_review.py:graph --thread-id <printed id> --resume '"yes"'
    lftrace run sample_graphs/human_review.py:graph --input "release notes for v2" --interactive
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

try:
    from sample_graphs._models import get_chat_model
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import get_chat_model


class Input(TypedDict):
    topic: str


class State(TypedDict):
    topic: str
    draft: str
    feedback: str


llm = get_chat_model(temperature=0.2)


def write_draft(state: State) -> dict:
    ask = f"Write a short draft about: {state['topic']}"
    if state.get("feedback"):
        ask += f"\nRevise it: {state['feedback']}"
    return {"draft": str(llm.invoke(ask).content)}


def human_review(state: State) -> Command[Literal["write_draft", "__end__"]]:
    answer = interrupt({"question": "Publish this draft? (yes, or say what to change)", "draft": state["draft"]})
    if str(answer).strip().lower() in ("yes", "y", "ok", "approve"):
        return Command(goto=END, update={"feedback": "approved"})
    return Command(goto="write_draft", update={"feedback": str(answer)})


builder = StateGraph(State, input_schema=Input)
builder.add_node("write_draft", write_draft)
builder.add_node("human_review", human_review)
builder.add_edge(START, "write_draft")
builder.add_edge("write_draft", "human_review")
graph = builder.compile(checkpointer=InMemorySaver())
