"""A long agent loop: ``think -> critic -> think -> ...`` on ``MessagesState`` for ``max_steps`` LangGraph steps.

Every step appends one message, so every node's input holds the whole growing conversation: the shape of a
real agent that loops for hundreds or thousands of steps (bench/long_run.py, tests/test_long_runs.py).

lftrace run sample_graphs/long_loop.py:graph --input '{"messages": [{"role": "user", "content": "Plan a trip"}], "max_steps": 40}'
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

try:
    from sample_graphs._models import FakeChatModel
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import FakeChatModel

DEFAULT_STEPS = 20


class LoopState(MessagesState, total=False):
    max_steps: int


def _steps_done(state: LoopState) -> int:
    return len(state["messages"]) - 1  # every step appended one message to the first one


def build_graph(model: Any = None) -> Any:
    """The compiled loop. ``model``: a chat model (default: the deterministic offline fake)."""
    llm = model if model is not None else FakeChatModel()

    def think(state: LoopState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    def critic(state: LoopState) -> dict[str, Any]:
        step = _steps_done(state)
        return {"messages": [HumanMessage(f"Critique {step}: tighten step {step // 2} and try again.")]}

    def route(state: LoopState) -> str:
        limit = state.get("max_steps") or DEFAULT_STEPS
        return "stop" if _steps_done(state) >= limit else "go"

    builder = StateGraph(LoopState)
    builder.add_node("think", think)
    builder.add_node("critic", critic)
    builder.add_edge(START, "think")
    builder.add_conditional_edges("think", route, {"go": "critic", "stop": END})
    builder.add_conditional_edges("critic", route, {"go": "think", "stop": END})
    return builder.compile()


def loop_input(steps: int, text: str = "Plan a three-day trip to Lisbon.") -> dict[str, Any]:
    return {"messages": [HumanMessage(text)], "max_steps": steps}


def run_config(steps: int, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """LangGraph counts every step against ``recursion_limit``: leave room for ``steps``."""
    return {"recursion_limit": steps + 10, "callbacks": callbacks or []}


graph = build_graph()
