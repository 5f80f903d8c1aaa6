"""The chat model the sample graphs use, chosen by the environment.

``get_chat_model()`` returns, in this order of precedence:

* ``LFTRACE_SAMPLE_MODEL=local``: ``ChatOpenAI`` against SmolLM2-135M-Instruct served by llama.cpp on
  127.0.0.1 (``sample_graphs/local_llm.py``; started on first use, stopped at exit). Fully offline, needs
  ``make install-local``. The tiny model does not call tools, so ``scripted_decisions()`` is True and the
  agent samples route by script and use the model for their answers.
* ``LFTRACE_SAMPLE_MODEL=fake``: the offline fake below, even when an OpenAI key is set.
* ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set: ``ChatOpenAI(model=$LFTRACE_SAMPLE_MODEL or "gpt-4o-mini")``.
* otherwise: ``FakeChatModel``, a deterministic offline model with realistic token usage, token-by-token
  streaming and scripted tool calls (a ``script`` callable decides them; see the agent samples).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

SAMPLE_MODEL_ENV = "LFTRACE_SAMPLE_MODEL"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
FAKE_MODEL_NAME = "fake-gpt-4o-mini"
LOCAL_MAX_TOKENS = 48  # SmolLM2 rambles; a short answer keeps a local run at a few hundred ms

ModelKind = Literal["fake", "openai", "local"]
# A script sees the conversation and returns tool calls to make, a reply text, or None for the default reply.
Script = Callable[[Sequence[BaseMessage]], "list[ToolCall] | str | None"]


def model_kind() -> ModelKind:
    """Which model ``get_chat_model()`` builds in the current environment."""
    chosen = os.environ.get(SAMPLE_MODEL_ENV, "").strip()
    if chosen == "local":
        return "local"
    if chosen == "fake":
        return "fake"
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    return "fake"


def scripted_decisions() -> bool:
    """True when the graph itself must make the tool/route decisions (the local model cannot call tools)."""
    return model_kind() == "local"


def get_chat_model(*, temperature: float = 0.2, script: Script | None = None) -> BaseChatModel:
    """The samples' chat model (see the module docstring). ``script`` only drives the fake model."""
    kind = model_kind()
    if kind == "local":
        return local_chat_model()
    if kind == "openai":
        from langchain_openai import ChatOpenAI

        model = os.environ.get(SAMPLE_MODEL_ENV) or DEFAULT_OPENAI_MODEL
        return ChatOpenAI(model=model, temperature=temperature, stream_usage=True)
    return FakeChatModel(temperature=temperature, script=script)


def local_chat_model(*, max_tokens: int = LOCAL_MAX_TOKENS) -> BaseChatModel:
    """``ChatOpenAI`` against the process-wide local llama.cpp server (started here on first use)."""
    from langchain_openai import ChatOpenAI

    from sample_graphs.local_llm import shared_server

    server = shared_server()
    # temperature 0: greedy decoding, so the same question gets the same answer
    return ChatOpenAI(
        model=server.model_alias,
        base_url=server.openai_base_url,
        api_key="local",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        stream_usage=True,
        max_retries=0,
    )


# ---------------------------------------------------------------------------------------------------------
# The deterministic fake


def estimate_tokens(chars: int) -> int:
    """About four characters per token, the usual rule of thumb for English with OpenAI tokenizers."""
    return math.ceil(chars / 4) if chars > 0 else 0


def message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = [part if isinstance(part, str) else str(part.get("text", "")) for part in content]
    return "".join(parts)


def count_input_chars(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None) -> int:
    chars = 0
    for message in messages:
        chars += len(message.type) + len(message_text(message))
        if isinstance(message, AIMessage) and message.tool_calls:
            chars += len(json.dumps([{"name": c["name"], "args": c["args"]} for c in message.tool_calls]))
    if tools:
        chars += len(json.dumps(tools, sort_keys=True))
    return chars


def last_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message).strip()
    return ""


def trailing_tool_results(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    """Tool results answering the most recent tool calls (the messages after the last AI message)."""
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        results.append(message)
    return list(reversed(results))


def make_tool_call(name: str, args: dict[str, Any], salt: str = "") -> ToolCall:
    """A tool call with an id derived from its content, so two runs produce the same ids."""
    digest = hashlib.sha1(f"{name}|{json.dumps(args, sort_keys=True)}|{salt}".encode()).hexdigest()
    return ToolCall(name=name, args=args, id=f"call_{digest[:24]}", type="tool_call")


JOKES = {
    "cats": "Why did the cat sit on the computer? To keep an eye on the mouse.",
    "dogs": "Why did the dog sit in the shade? Because he didn't want to be a hot dog.",
    "bears": "Why do bears have hairy coats? Fur protection.",
    "programmers": "Why do programmers prefer dark mode? Because light attracts bugs.",
    "python": "Why did the Python programmer wear glasses? Because they couldn't C.",
    "langfuse": "Why did the LLM call Langfuse? It wanted someone to follow its train of thought.",
    "tracing": "Why was the trace so calm? It had every span under control.",
}

FACTS = {
    "langfuse": (
        "Langfuse is an open-source LLM engineering platform that helps teams trace API calls, "
        "monitor performance and debug their AI applications."
    ),
    "langgraph": "LangGraph is a library for building stateful, multi-step agent workflows as graphs.",
    "langchain": "LangChain is a framework for composing LLM applications from prompts, models and tools.",
    "lftrace": "lftrace records LangChain and LangGraph runs as Langfuse-style traces from the command line.",
}

_JOKE_RE = re.compile(r"joke about (?P<topic>.+?)[\s.!?]*$", re.IGNORECASE | re.DOTALL)
_CONTEXT_RE = re.compile(r"context:\s*(?P<context>.*?)\n\s*question:\s*(?P<question>.+)", re.IGNORECASE | re.DOTALL)
_WORD_RE = re.compile(r"[a-z0-9]+")
_SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]?")
_STOPWORDS = {"a", "an", "the", "is", "are", "what", "how", "does", "do", "of", "to", "in", "and", "it", "for"}


def content_words(text: str) -> set[str]:
    return {word for word in _WORD_RE.findall(text.lower()) if word not in _STOPWORDS}


def answer_from_context(context: str, question: str) -> str:
    """The context sentence sharing the most words with the question (ties: the earliest)."""
    wanted = content_words(question)
    sentences = [s.strip() for s in _SENTENCE_RE.findall(context) if s.strip()]
    if not sentences:
        return "The context does not say."
    best = max(sentences, key=lambda sentence: len(wanted & content_words(sentence)))
    return f"According to the context: {best}"


def default_reply(messages: Sequence[BaseMessage], model_name: str) -> str:
    """A reply derived from the conversation: tool results, a joke, a context answer, a fact or an echo."""
    tool_results = trailing_tool_results(messages)
    if tool_results:
        return "Here is what I found: " + "; ".join(message_text(m).strip().rstrip(".") for m in tool_results) + "."
    question = last_human_text(messages)
    joke = _JOKE_RE.search(question)
    if joke:
        topic = joke.group("topic").strip()
        return JOKES.get(topic.lower(), f"Why did the {topic} cross the road? To get to the other trace.")
    grounded = _CONTEXT_RE.search(question)
    if grounded:
        return answer_from_context(grounded.group("context"), grounded.group("question"))
    for subject, fact in FACTS.items():
        if subject in question.lower():
            return fact
    return f'You said: "{question}". This is {model_name}, a deterministic offline model.'


def split_into_tokens(text: str) -> list[str]:
    """Word-sized pieces that join back into ``text`` exactly (what a stream of tokens looks like)."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]


class FakeChatModel(BaseChatModel):
    """A deterministic offline chat model that behaves like an OpenAI one in a trace.

    Replies are derived from the input (``default_reply``) unless ``script`` decides (tool calls or a
    reply text). ``usage_metadata`` and ``response_metadata['token_usage']`` count about 4 characters per
    token of every input message and bound tool schema, and of the reply. Streaming yields one chunk per
    word with the usage on the last chunk, as ``ChatOpenAI(stream_usage=True)`` does.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(default=FAKE_MODEL_NAME, alias="model")
    temperature: float = 0.0
    script: Script | None = Field(default=None, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "fake"
        params["ls_model_name"] = self.model_name
        params["ls_temperature"] = self.temperature
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def respond(self, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None) -> AIMessage:
        """The whole answer, usage included (``_generate`` returns it, ``_stream`` cuts it into chunks)."""
        decision = self.script(messages) if self.script is not None else None
        tool_calls: list[ToolCall] = []
        if isinstance(decision, list) and decision:
            tool_calls = decision
            content = ""
        elif isinstance(decision, str):
            content = decision
        else:
            content = default_reply(messages, self.model_name)
        input_tokens = estimate_tokens(count_input_chars(messages, tools))
        output_chars = len(content) + (
            len(json.dumps([[c["name"], c["args"]] for c in tool_calls])) if tool_calls else 0
        )
        output_tokens = max(1, estimate_tokens(output_chars))
        total = input_tokens + output_tokens
        return AIMessage(
            content=content,
            tool_calls=tool_calls,
            usage_metadata={"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": total},
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "token_usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": total,
                },
                "model_provider": "fake",
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self.respond(messages, kwargs.get("tools"))
        llm_output = {"token_usage": message.response_metadata["token_usage"], "model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self.respond(messages, kwargs.get("tools"))
        pieces = split_into_tokens(message.text) if message.text else []
        chunks = [AIMessageChunk(content=piece) for piece in pieces]
        for index, call in enumerate(message.tool_calls):
            call_chunk = tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index)
            chunks.append(AIMessageChunk(content="", tool_call_chunks=[call_chunk]))
        for message_chunk in chunks:
            chunk = ChatGenerationChunk(message=message_chunk)
            if run_manager is not None:
                run_manager.on_llm_new_token(message_chunk.text, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)
