"""LangChain v1's agent (``langchain.agents.create_agent``, a LangGraph graph under the hood) with one tool and a
scripted chat model that reports token usage: asks for the tool once, then answers from its result."""

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool


class ScriptedModel(BaseChatModel):
    model_name: str = "gpt-4o-mini"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        usage = {"input_tokens": 40 + 10 * len(messages), "output_tokens": 12, "total_tokens": 52 + 10 * len(messages)}
        if not results:
            call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call], usage_metadata=usage)
        else:
            message = AIMessage(content=f"It is {results[-1].content} in Paris.", usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": self.model_name})


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return "18C and sunny"


agent = create_agent(model=ScriptedModel(), tools=[get_weather], system_prompt="You answer about the weather.")
