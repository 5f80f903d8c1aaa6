"""What the official langfuse CallbackHandler records that lftrace now records too (issue 13, items 3 and 6).

Real LangChain/LangGraph runs with fake models; prompt clients are the official SDK's own classes.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send, interrupt

from lftrace import get_client
from lftrace.langchain import CallbackHandler
from lftrace.model import Trace
from support.fake_models import ToolCallingFakeModel, build_agent


def stored(handler: CallbackHandler) -> Trace:
    assert handler.last_trace_id is not None
    return get_client().get_trace(handler.last_trace_id)


def text_prompt(name: str = "qa", version: int = 3) -> Any:
    from langfuse.api import Prompt_Text
    from langfuse.model import TextPromptClient

    return TextPromptClient(
        Prompt_Text(name=name, version=version, prompt="Answer {{q}}", config={}, labels=[], tags=[], type="text")
    )


# -- item 3: prompt linking ----------------------------------------------------------------------------------


def test_langfuse_text_prompt_client_links_the_generation():
    prompt = text_prompt()
    template = PromptTemplate.from_template(prompt.get_langchain_prompt(), metadata={"langfuse_prompt": prompt})
    handler = CallbackHandler()
    (template | ToolCallingFakeModel()).invoke({"q": "Riga"}, config={"callbacks": [handler]})
    trace = stored(handler)
    (generation,) = [o for o in trace.observations if o.type == "GENERATION"]
    assert (generation.prompt_name, generation.prompt_version) == ("qa", 3)
    assert generation.to_dict()["promptName"] == "qa" and generation.to_dict()["promptVersion"] == 3
    assert all(o.prompt_name is None for o in trace.observations if o is not generation)
    assert "langfuse_prompt" not in str(trace.to_dict())  # the client object itself is not stored


def test_langfuse_chat_prompt_client_and_plain_dict():
    from langfuse.api import Prompt_Chat
    from langfuse.model import ChatPromptClient

    chat = ChatPromptClient(
        Prompt_Chat(
            name="tone",
            version=2,
            prompt=[{"role": "system", "content": "Be {{tone}}", "type": "chatmessage"}],
            config={},
            labels=[],
            tags=[],
            type="chat",
        )
    )
    handler = CallbackHandler()
    template = ChatPromptTemplate.from_messages(chat.get_langchain_prompt()).with_config(
        metadata={"langfuse_prompt": chat}
    )
    (template | ToolCallingFakeModel()).invoke({"tone": "brief"}, config={"callbacks": [handler]})
    (generation,) = [o for o in stored(handler).observations if o.type == "GENERATION"]
    assert (generation.prompt_name, generation.prompt_version) == ("tone", 2)

    handler = CallbackHandler()
    template = ChatPromptTemplate.from_template("Say {x}").with_config(
        metadata={"langfuse_prompt": {"name": "say", "version": 7}}
    )
    (template | ToolCallingFakeModel()).invoke({"x": "hi"}, config={"callbacks": [handler]})
    (generation,) = [o for o in stored(handler).observations if o.type == "GENERATION"]
    assert (generation.prompt_name, generation.prompt_version) == ("say", 7)


def test_prompt_links_only_the_next_generation_and_survives_the_store():
    handler = CallbackHandler()
    template = ChatPromptTemplate.from_template("Say {x}").with_config(
        metadata={"langfuse_prompt": {"name": "say", "version": 1}}
    )
    model = ToolCallingFakeModel()
    chain = template | model | RunnableLambda(lambda m: m.content) | model
    chain.invoke({"x": "hi"}, config={"callbacks": [handler]})
    generations = sorted(
        (o for o in stored(handler).observations if o.type == "GENERATION"), key=lambda o: o.start_time
    )
    assert [(g.prompt_name, g.prompt_version) for g in generations] == [("say", 1), (None, None)]
    assert handler._prompts == {}  # nothing kept once the runs ended


def test_fallback_prompt_and_unrelated_values_link_nothing():
    from langfuse.api import Prompt_Text
    from langfuse.model import TextPromptClient

    fallback = TextPromptClient(
        Prompt_Text(name="qa", version=0, prompt="x", config={}, labels=[], tags=[], type="text"), is_fallback=True
    )
    for value in (fallback, "qa", {"version": 3}):
        handler = CallbackHandler()
        template = ChatPromptTemplate.from_template("Say {x}").with_config(metadata={"langfuse_prompt": value})
        (template | ToolCallingFakeModel()).invoke({"x": "hi"}, config={"callbacks": [handler]})
        (generation,) = [o for o in stored(handler).observations if o.type == "GENERATION"]
        assert generation.prompt_name is None


# -- item 6: smaller differences ---------------------------------------------------------------------------


def test_root_observation_is_marked_is_langchain_root():
    handler = CallbackHandler()
    build_agent().invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": [handler]})
    trace = stored(handler)
    marked = [o for o in trace.observations if (o.metadata or {}).get("is_langchain_root")]
    assert marked == trace.roots()
    assert "is_langchain_root" not in (trace.metadata or {})


class ChatHuggingFace(BaseChatModel):
    """Named like langchain_huggingface's model: not serialisable, so LangChain passes only its repr."""

    model_id: str = ""

    @property
    def _llm_type(self) -> str:
        return "huggingface-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])


def test_model_name_of_a_model_that_does_not_serialise():
    handler = CallbackHandler()
    ChatHuggingFace(model_id="HuggingFaceH4/zephyr-7b-beta").invoke("hi", config={"callbacks": [handler]})
    (generation,) = stored(handler).observations
    assert generation.model == "HuggingFaceH4/zephyr-7b-beta"


class FanState(TypedDict):
    items: list[str]
    results: Annotated[list[str], operator.add]


def test_langgraph_send_is_stored_as_structured_json():
    def fan(state: FanState) -> list[Send]:
        return [Send("worker", {"item": i, "results": []}) for i in state["items"]]

    def worker(state: dict[str, Any]) -> dict[str, Any]:
        return {"results": [state["item"].upper()]}

    graph = StateGraph(FanState)
    graph.add_node("worker", worker)
    graph.add_conditional_edges(START, fan, ["worker"])
    graph.add_edge("worker", END)
    handler = CallbackHandler()
    graph.compile().invoke({"items": ["a", "b"], "results": []}, config={"callbacks": [handler]})
    (router,) = [o for o in stored(handler).observations if o.name == "fan"]
    assert router.output == [
        {"node": "worker", "arg": {"item": "a", "results": []}},
        {"node": "worker", "arg": {"item": "b", "results": []}},
    ]


def test_langchain_sequence_tags_are_not_trace_tags():
    handler = CallbackHandler()
    inner = ToolCallingFakeModel().with_config(callbacks=[handler], tags=["mine"])
    (RunnableLambda(lambda x: x) | inner).invoke("hi")  # the handler sees a child run tagged seq:step:2
    trace = stored(handler)
    assert trace.tags == ["mine"]
    assert "seq:step:2" in trace.observations[0].metadata["tags"]  # still on the observation, as upstream


def _interrupting_graph() -> Any:
    def ask_human(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [HumanMessage(str(answer))]}

    graph = StateGraph(MessagesState)
    graph.add_node("ask_human", ask_human)
    graph.add_edge(START, "ask_human")
    graph.add_edge("ask_human", END)
    return graph.compile(checkpointer=InMemorySaver())


def test_resumed_run_continues_the_trace_it_resumes():
    app = _interrupting_graph()
    handler = CallbackHandler()
    config = {"callbacks": [handler], "configurable": {"thread_id": "t1"}}
    assert "__interrupt__" in app.invoke({"messages": [HumanMessage("hi")]}, config=config)
    first_id = handler.last_trace_id
    first_root = stored(handler).roots()[0]

    app.invoke(Command(resume="yes"), config=config)
    assert handler.last_trace_id == first_id
    trace = get_client().get_trace(first_id)
    assert len(trace.roots()) == 1
    resumed_root = next(o for o in trace.observations if o.parent_id == first_root.id and o.name == "LangGraph")
    assert resumed_root.output["messages"][-1]["content"] == "yes"
    assert len([o for o in trace.observations if o.name == "ask_human"]) == 2

    # a new run on the same thread that is not a resume starts its own trace, and so does another thread
    app.invoke({"messages": [HumanMessage("again")]}, config=config)
    assert handler.last_trace_id != first_id
    other = {"callbacks": [handler], "configurable": {"thread_id": "t2"}}
    app.invoke({"messages": [HumanMessage("x")]}, config=other)
    paused_t2 = handler.last_trace_id
    app.invoke(Command(resume="no"), config={"callbacks": [handler], "configurable": {"thread_id": "t1"}})
    assert handler.last_trace_id not in (first_id, paused_t2)  # t1's pause was consumed by the first resume
