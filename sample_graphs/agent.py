"""A tool-calling agent: the model, bound to tools, loops through a ToolNode until it stops calling tools.

    lftrace run sample_graphs/agent.py:graph --input "What is the weather in Paris, and what is 6 times 7?"

Who decides the tool calls:

* the fake model (default): its ``script`` is ``plan_tool_calls`` below, so the trace shows a real
  GENERATION that returns tool calls, then one that answers from the tool results;
* ``ChatOpenAI`` (``OPENAI_API_KEY`` set): the model itself, through ``bind_tools``;
* the local SmolLM2 model (``LFTRACE_SAMPLE_MODEL=local``): it cannot call tools, so the ``agent`` node
  runs ``plan_tool_calls`` itself (no model call for that step) and uses the model only for the final
  answer, asking it with the tool results written out as plain facts (``facts_prompt``): a 135M model
  reads those far better than tool messages.

``build_agent`` is reused by ``multi_agent.py`` for its specialists.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolCall
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

try:
    from sample_graphs._models import (
        get_chat_model,
        last_human_text,
        make_tool_call,
        message_text,
        scripted_decisions,
        trailing_tool_results,
    )
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import (
        get_chat_model,
        last_human_text,
        make_tool_call,
        message_text,
        scripted_decisions,
        trailing_tool_results,
    )

WEATHER = {
    "paris": "18°C and sunny",
    "london": "14°C and light rain",
    "berlin": "16°C and cloudy",
    "tokyo": "22°C and clear",
    "new york": "20°C and windy",
}


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    report = WEATHER.get(city.strip().lower())
    return f"{city}: {report}" if report else f"{city}: no weather data"


TOOLS: list[BaseTool] = [multiply, add, get_weather]

# ---------------------------------------------------------------------------------------------------------
# Scripted tool decisions: which tool a question asks for, and with which arguments

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_MULTIPLY_RE = re.compile(_NUMBER + r"\s*(?:\*|×|x|times|multiplied by)\s*" + _NUMBER, re.IGNORECASE)
_ADD_RE = re.compile(_NUMBER + r"\s*(?:\+|plus)\s*" + _NUMBER, re.IGNORECASE)
_WEATHER_RE = re.compile(r"weather\s+(?:in|for|at)\s+([a-z][a-z ]*?)\s*(?:[?.!,;]|\band\b|$)", re.IGNORECASE)


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def _two_numbers(pattern: re.Pattern[str]) -> Callable[[str], dict[str, Any] | None]:
    def trigger(question: str) -> dict[str, Any] | None:
        match = pattern.search(question)
        return {"a": _number(match.group(1)), "b": _number(match.group(2))} if match else None

    return trigger


def _weather_trigger(question: str) -> dict[str, Any] | None:
    match = _WEATHER_RE.search(question)
    return {"city": match.group(1).strip().title()} if match else None


# tool name -> question -> arguments, or None when the question does not ask for that tool
TOOL_TRIGGERS: dict[str, Callable[[str], dict[str, Any] | None]] = {
    "multiply": _two_numbers(_MULTIPLY_RE),
    "add": _two_numbers(_ADD_RE),
    "get_weather": _weather_trigger,
}


Trigger = Callable[[str], dict[str, Any] | None]


def plan_tool_calls(
    messages: Sequence[BaseMessage], tools: Sequence[BaseTool], triggers: Mapping[str, Trigger] = TOOL_TRIGGERS
) -> list[ToolCall]:
    """Call every tool the latest question asks for, all at once; once their results are in, answer."""
    if trailing_tool_results(messages):
        return []
    question = last_human_text(messages)
    calls = []
    for bound in tools:
        trigger = triggers.get(bound.name)
        args = trigger(question) if trigger else None
        if args is not None:
            calls.append(make_tool_call(bound.name, args, salt=str(len(messages))))
    return calls


FACTS_INSTRUCTION = "Answer the user's question in one sentence using the facts given."


def facts_prompt(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The latest question with the latest tool results as plain ``tool(args) = result`` lines."""
    calls = {call["id"]: call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls}
    lines = []
    for result in trailing_tool_results(messages):
        call = calls.get(result.tool_call_id)
        label = f"{call['name']}({json.dumps(call['args'])})" if call else (result.name or "tool")
        lines.append(f"{label} = {message_text(result)}")
    facts = "\n".join(lines)
    question = last_human_text(messages)
    return [SystemMessage(FACTS_INSTRUCTION), HumanMessage(f"Facts:\n{facts}\n\nQuestion: {question}")]


def build_agent(
    tools: Sequence[BaseTool],
    *,
    name: str = "agent",
    system_prompt: str | None = None,
    triggers: Mapping[str, Trigger] = TOOL_TRIGGERS,
    **compile_options: Any,
) -> CompiledStateGraph:
    """model <-> tools loop: ``agent`` -> ``tools`` while the model asks for tools, then END.

    ``triggers`` (tool name -> question -> arguments or None) script the tool decisions of the fake and
    local models. ``compile_options`` go to ``compile`` (``checkpointer``, ``interrupt_before``, ...).
    """
    tools = list(tools)
    scripted = scripted_decisions()
    llm = get_chat_model(temperature=0, script=lambda messages: plan_tool_calls(messages, tools, triggers))
    model = llm if scripted else llm.bind_tools(tools)

    def call_model(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        messages = state["messages"]
        if scripted:
            planned = plan_tool_calls(messages, tools, triggers)
            if planned:
                return {"messages": [AIMessage(content="", tool_calls=planned)]}
        if scripted and trailing_tool_results(messages):
            return {"messages": [model.invoke(facts_prompt(messages), config)]}
        prompt = [SystemMessage(system_prompt), *messages] if system_prompt else messages
        return {"messages": [model.invoke(prompt, config)]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(name=name, **compile_options)


graph = build_agent(TOOLS, system_prompt="You are a helpful assistant. Use the tools when they help.")
