"""A ReAct loop whose tool fails: ``ToolNode`` turns the error into an error ToolMessage and the agent answers.

A scripted chat model (a real ``BaseChatModel``) asks for the tool once, then answers from its result.
"""

from _scripted import WeatherModel
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    raise ConnectionError("weather service down")


llm = WeatherModel(answer="Sorry, the weather service failed ({status}).").bind_tools([get_weather])


def agent(state: MessagesState):
    return {"messages": [llm.invoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([get_weather], handle_tool_errors=True))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
graph = builder.compile()
