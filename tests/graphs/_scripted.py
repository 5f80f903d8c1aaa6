"""A scripted chat model for the test graphs (a real ``BaseChatModel``): asks for ``get_weather`` once, then
answers from the tool's result with ``answer`` (``{content}``/``{status}`` of the ToolMessage)."""

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class WeatherModel(BaseChatModel):
    answer: str = "It is {content}."
    report_usage: bool = False  # usage_metadata on each reply, as a provider reports it
    model_name: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        usage = None
        if self.report_usage:
            prompt = 40 + 10 * len(messages)
            usage = {"input_tokens": prompt, "output_tokens": 12, "total_tokens": prompt + 12}
        if not results:
            call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call], usage_metadata=usage)
        else:
            text = self.answer.format(content=results[-1].content, status=results[-1].status)
            message = AIMessage(content=text, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": self.model_name})
