"""Fake chat models for handler tests: real LangChain BaseChatModel subclasses, no network.

``ToolCallingFakeModel`` answers deterministically from the conversation, so many threads can
share one instance: with tools bound and no tool result yet it asks for a tool call; after a tool
result (or without tools) it answers with text. It reports ``usage_metadata``, streams token by
token (so ``on_llm_new_token`` fires) and supports ``bind_tools``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

USAGE = {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}


class ToolCallingFakeModel(BaseChatModel):
    model_name: str = "gpt-4o-mini"
    temperature: float = 0.2
    tool_name: str | None = "get_weather"
    answer_prefix: str = "The weather in"
    usage: dict[str, Any] = USAGE
    fail_with: str | None = None  # raise RuntimeError(fail_with) instead of answering
    delay: float = 0.0  # seconds to sleep per streamed token (to interleave threads)
    choices: int = 1  # >1: return several generations for one call (like OpenAI's n)

    @property
    def _llm_type(self) -> str:
        return "fake-tool-calling"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _respond(self, messages: list[BaseMessage], **kwargs: Any) -> AIMessage:
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        city = str(human.content) if human is not None else "nowhere"
        tool_results = [m for m in messages if isinstance(m, ToolMessage)]
        usage = dict(self.usage)
        if kwargs.get("tools") and self.tool_name and not tool_results:
            call = {"name": self.tool_name, "args": {"city": city}, "id": f"call_{len(messages)}", "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call], usage_metadata=usage)  # type: ignore[arg-type]
        tail = f": {tool_results[-1].content}" if tool_results else ""
        return AIMessage(
            content=f"{self.answer_prefix} {city}{tail}",
            usage_metadata=usage,  # type: ignore[arg-type]
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._respond(messages, **kwargs)
        generations = [ChatGeneration(message=message)]
        for i in range(1, self.choices):
            generations.append(ChatGeneration(message=AIMessage(content=f"{message.content} (choice {i + 1})")))
        return ChatResult(generations=generations, llm_output={"model_name": self.model_name})

    def _chunks(self, message: AIMessage) -> list[AIMessageChunk]:
        tokens = [t for t in re.split(r"(\s)", str(message.content)) if t] or [""]
        chunks = [AIMessageChunk(content=t) for t in tokens]
        last = chunks[-1]
        last.usage_metadata = message.usage_metadata
        last.response_metadata = dict(message.response_metadata)
        if message.tool_calls:
            last.tool_call_chunks = [
                {"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
                for i, c in enumerate(message.tool_calls)
            ]
        return chunks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        import time

        message = self._respond(messages, **kwargs)
        for chunk in self._chunks(message):
            if self.delay:
                time.sleep(self.delay)
            gen = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(str(chunk.content), chunk=gen)
            yield gen

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        message = self._respond(messages, **kwargs)
        for chunk in self._chunks(message):
            await asyncio.sleep(self.delay)
            gen = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(str(chunk.content), chunk=gen)
            yield gen


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def build_agent(model: ToolCallingFakeModel | None = None, *, tool_error: str | None = None) -> Any:
    """A LangGraph agent: ``agent`` node (model with tools) <-> ``tools`` node, conditional loop."""

    @tool
    def get_weather(city: str) -> str:
        """Return the weather for a city."""
        if tool_error is not None:
            raise ValueError(tool_error)
        return f"sunny in {city}"

    llm = (model or ToolCallingFakeModel()).bind_tools([get_weather])

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if getattr(last, "tool_calls", None) else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", RunnableLambda(call_model, afunc=acall_model))
    graph.add_node("tools", ToolNode([get_weather], handle_tool_errors=False))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()
