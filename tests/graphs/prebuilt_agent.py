"""LangGraph's prebuilt ``create_react_agent`` with a tool that asks a human first (``interrupt()`` inside the tool),
as LangGraph's "add human-in-the-loop to tools" guide writes it, with a scripted chat model that reports usage."""

from _scripted import WeatherModel
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent
from langgraph.types import interrupt


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city, once a human allows the lookup."""
    answer = interrupt({"question": f"look up the weather in {city}?"})
    return "18C and sunny" if answer == "yes" else "lookup refused"


model = WeatherModel(answer="It is {content}.", report_usage=True, model_name="gpt-4o-mini")
agent = create_react_agent(model, tools=[get_weather], checkpointer=InMemorySaver())
