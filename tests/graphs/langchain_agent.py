"""LangChain v1's agent (``langchain.agents.create_agent``, a LangGraph graph under the hood) with one tool and a
scripted chat model that reports token usage: asks for the tool once, then answers from its result."""

from _scripted import WeatherModel
from langchain.agents import create_agent
from langchain_core.tools import tool


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return "18C and sunny"


model = WeatherModel(answer="It is {content} in Paris.", report_usage=True, model_name="gpt-4o-mini")
agent = create_agent(model=model, tools=[get_weather], system_prompt="You answer about the weather.")
