"""A supervisor routing between two specialist agents until it decides to FINISH.

    lftrace run sample_graphs/multi_agent.py:graph --input "Who created LangGraph, and what is 6 times 7?"

* ``researcher``: a tool agent with ``search_docs`` over a small built-in knowledge base;
* ``math_agent``: a tool agent with ``multiply`` and ``add``.

Each specialist is a compiled ``build_agent`` graph (see ``agent.py``) run inside a node; its final answer
goes back to the supervisor as an ``AIMessage`` named after it.

Routing rule (``route``): the researcher when the question names a known subject or asks to search/look up
or who, the math agent when it contains a sum or product; each needed specialist once, in that order,
then FINISH (a question needing neither goes to the researcher). The fake model answers the supervisor's
prompt with this rule; ``ChatOpenAI`` decides from the prompt itself; with the local SmolLM2 model
(``LFTRACE_SAMPLE_MODEL=local``), which cannot route reliably, the supervisor applies the rule without a
model call and the specialists use the model for their answers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

try:
    from sample_graphs._models import get_chat_model, last_human_text, message_text, scripted_decisions
    from sample_graphs.agent import TOOL_TRIGGERS, add, build_agent, multiply
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import get_chat_model, last_human_text, message_text, scripted_decisions
    from sample_graphs.agent import TOOL_TRIGGERS, add, build_agent, multiply

KNOWLEDGE = {
    "langfuse": "Langfuse is an open-source LLM engineering platform for tracing, evaluation and prompt management.",
    "langgraph": "LangGraph was created by LangChain Inc. to build stateful multi-agent applications as graphs.",
    "langchain": "LangChain was started by Harrison Chase in October 2022.",
    "lftrace": "lftrace traces LangChain and LangGraph runs locally and exports them to Langfuse over OTLP.",
    "paris": "Paris is the capital of France, with about 2.1 million inhabitants.",
}
_RESEARCH_WORDS = ("search", "look up", "who ", "history")


@tool
def search_docs(query: str) -> str:
    """Search the knowledge base for facts about a subject."""
    found = [fact for subject, fact in KNOWLEDGE.items() if subject in query.lower()]
    return " ".join(found) if found else f"No results for {query!r}."


MEMBERS = ("researcher", "math_agent")
Route = Literal["researcher", "math_agent", "FINISH"]
MAX_SPECIALIST_TURNS = 4  # a real model that never says FINISH still ends

SUPERVISOR_PROMPT = (
    "You are a supervisor managing these workers: researcher (searches facts) and math_agent (does "
    "arithmetic). Given the conversation, reply with the worker to act next, or FINISH when the question "
    "is fully answered. Reply with exactly one word: researcher, math_agent or FINISH."
)


def needs_research(question: str) -> bool:
    lowered = question.lower()
    return any(subject in lowered for subject in KNOWLEDGE) or any(word in lowered for word in _RESEARCH_WORDS)


def needs_math(question: str) -> bool:
    return TOOL_TRIGGERS["multiply"](question) is not None or TOOL_TRIGGERS["add"](question) is not None


def route(messages: Sequence[BaseMessage]) -> Route:
    """The scripted routing rule (see the module docstring)."""
    question = last_human_text(messages)
    done = {m.name for m in messages if isinstance(m, AIMessage) and m.name in MEMBERS}
    needed: list[Route] = [
        member
        for member, wanted in (("researcher", needs_research(question)), ("math_agent", needs_math(question)))
        if wanted
    ] or ["researcher"]
    return next((member for member in needed if member not in done), "FINISH")


def parse_route(reply: str) -> Route:
    """The first worker name (or FINISH) in the supervisor model's reply; FINISH when there is none."""
    lowered = reply.lower()
    positions = {option: lowered.find(option.lower()) for option in ("researcher", "math_agent", "FINISH")}
    found = [(index, option) for option, index in positions.items() if index >= 0]
    return min(found)[1] if found else "FINISH"  # type: ignore[return-value]


class SupervisorState(MessagesState):
    next: str


def next_worker(state: SupervisorState) -> str:
    return state["next"]


def build_supervisor() -> CompiledStateGraph:
    scripted = scripted_decisions()
    llm = None if scripted else get_chat_model(temperature=0, script=route)
    specialists = {
        "researcher": build_agent(
            [search_docs],
            name="researcher",
            system_prompt="You are a researcher. Use search_docs to find facts.",
            triggers={"search_docs": lambda question: {"query": question}},  # the researcher always searches
        ),
        "math_agent": build_agent(
            [multiply, add], name="math_agent", system_prompt="You are a math expert. Use the tools to compute."
        ),
    }

    def supervisor(state: SupervisorState, config: RunnableConfig) -> dict[str, str]:
        messages = state["messages"]
        turns = sum(1 for m in messages if isinstance(m, AIMessage) and m.name in MEMBERS)
        if turns >= MAX_SPECIALIST_TURNS:
            return {"next": "FINISH"}
        if llm is None:
            return {"next": route(messages)}
        reply = llm.invoke([SystemMessage(SUPERVISOR_PROMPT), *messages], config)
        return {"next": parse_route(message_text(reply))}

    def specialist(name: str) -> Callable[[SupervisorState, RunnableConfig], dict[str, list[BaseMessage]]]:
        agent = specialists[name]

        def run(state: SupervisorState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
            result = agent.invoke({"messages": state["messages"]}, config)
            answer = result["messages"][-1]
            return {"messages": [AIMessage(content=message_text(answer), name=name)]}

        return run

    builder = StateGraph(SupervisorState)
    builder.add_node("supervisor", supervisor)
    for name in MEMBERS:
        builder.add_node(name, specialist(name))
        builder.add_edge(name, "supervisor")
    builder.add_edge(START, "supervisor")
    builder.add_conditional_edges(
        "supervisor",
        next_worker,
        {"researcher": "researcher", "math_agent": "math_agent", "FINISH": END},
    )
    return builder.compile(name="multi_agent")


graph = build_supervisor()
