"""The Langfuse docs' LangGraph chatbot: one ``chatbot`` node over an ``add_messages`` state.

lftrace run sample_graphs/chatbot.py:graph --input "What is Langfuse?"
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from langgraph.graph import StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

try:
    from sample_graphs._models import get_chat_model
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import get_chat_model


class State(TypedDict):
    messages: Annotated[list, add_messages]


graph_builder = StateGraph(State)
llm = get_chat_model(temperature=0.2)


def chatbot(state: State) -> dict:
    return {"messages": [llm.invoke(state["messages"])]}


graph_builder.add_node("chatbot", chatbot)
graph_builder.set_entry_point("chatbot")
graph_builder.set_finish_point("chatbot")
graph = graph_builder.compile()
