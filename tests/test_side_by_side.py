"""Side by side with the official handler (issue 13): the same LangChain/LangGraph runs go through the official
``langfuse`` CallbackHandler (exporting over OTLP to a real receiver on 127.0.0.1) and through ours (the store), both
handlers attached to the very same run, and the trees, types, levels, models, usage and trace attributes agree.
"""

from __future__ import annotations

import asyncio
import json
import operator
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Send

from lftrace import get_client
from lftrace.langchain import CallbackHandler
from lftrace.model import Trace
from support.fake_models import ToolCallingFakeModel, build_agent
from support.otlp_receiver import attributes, running_receiver

PK = "pk-lf-sidebyside0001"
SK = "sk-lf-sidebyside0001"


@pytest.fixture(scope="module")
def official() -> Iterator[tuple[Any, Any]]:
    """The official client exporting to a local receiver (one per module: it starts exporter threads)."""
    from langfuse import Langfuse as OfficialLangfuse

    with running_receiver() as receiver:
        client = OfficialLangfuse(public_key=PK, secret_key=SK, base_url=receiver.url, flush_at=1)
        yield client, receiver
        client.shutdown()


def run_both(
    official: tuple[Any, Any], work: Callable[[list[Any]], None], **handler_kwargs: Any
) -> tuple[list[dict], Trace]:
    """Run ``work(callbacks)`` once with both handlers; (official spans as dicts, our stored trace)."""
    from langfuse.langchain import CallbackHandler as OfficialHandler

    client, receiver = official
    before = len(receiver.spans())
    theirs = OfficialHandler(public_key=PK, **handler_kwargs)
    ours = CallbackHandler(**handler_kwargs)
    work([theirs, ours])
    client.flush()
    spans = receiver.spans()[before:]
    assert spans, "the official handler exported nothing"
    assert ours.last_trace_id is not None
    return [_span_dict(s) for s in spans], get_client().get_trace(ours.last_trace_id)


def _span_dict(span: Any) -> dict:
    a = attributes(span.attributes)
    return {
        "id": span.span_id.hex(),
        "parent": span.parent_span_id.hex() or None,
        "start": span.start_time_unix_nano,
        "name": span.name,
        "type": str(a.get("langfuse.observation.type", "span")).upper(),
        "level": a.get("langfuse.observation.level", "DEFAULT"),
        "model": a.get("langfuse.observation.model.name"),
        "usage": json.loads(a["langfuse.observation.usage_details"])
        if "langfuse.observation.usage_details" in a
        else None,
        "prompt": (a.get("langfuse.observation.prompt.name"), a.get("langfuse.observation.prompt.version")),
        "attrs": a,
    }


def their_tree(spans: list[dict]) -> list[tuple[str, str, int, str]]:
    ids = {s["id"] for s in spans}
    kids: dict[str | None, list[dict]] = {}
    for s in sorted(spans, key=lambda s: s["start"]):
        kids.setdefault(s["parent"] if s["parent"] in ids else None, []).append(s)
    out: list[tuple[str, str, int, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in kids.get(parent, []):
            out.append((s["type"], s["name"], depth, s["level"]))
            walk(s["id"], depth + 1)

    walk(None, 0)
    return out


def our_tree(trace: Trace) -> list[tuple[str, str, int, str]]:
    kids = trace.children()
    ids = {o.id for o in trace.observations}
    roots = [o for o in trace.observations if o.parent_id is None or o.parent_id not in ids]
    out: list[tuple[str, str, int, str]] = []

    def walk(nodes: list[Any], depth: int) -> None:
        for o in sorted(nodes, key=lambda o: o.start_time):
            out.append((o.type, o.name, depth, o.level))
            walk(kids.get(o.id, []), depth + 1)

    walk(roots, 0)
    return out


def generations(spans: list[dict], trace: Trace) -> tuple[list[tuple], list[tuple]]:
    theirs = sorted(
        (s["name"], s["model"], _without_added_total(s["usage"], s["usage"]), s["prompt"])
        for s in spans
        if s["type"] == "GENERATION"
    )
    ours = []
    for o in trace.observations:
        if o.type == "GENERATION":
            official = next((s["usage"] for s in spans if s["type"] == "GENERATION"), None)
            ours.append(
                (o.name, o.model, _without_added_total(o.usage_details, official), (o.prompt_name, o.prompt_version))
            )
    return theirs, sorted(ours)


def _without_added_total(usage: dict | None, official: dict | None) -> dict | None:
    """We add ``total`` when the provider gives none; the official handler leaves Langfuse to add it."""
    if usage is None:
        return None
    if official is not None and "total" not in official:
        return {k: v for k, v in usage.items() if k != "total"}
    return usage


def assert_same(spans: list[dict], trace: Trace) -> None:
    assert our_tree(trace) == their_tree(spans)
    theirs, ours = generations(spans, trace)
    assert ours == theirs


# -- scenarios ------------------------------------------------------------------------------------------------


def test_lcel_chain_with_a_linked_prompt(official):
    from langfuse.api import Prompt_Text
    from langfuse.model import TextPromptClient

    prompt = TextPromptClient(
        Prompt_Text(
            name="weather", version=2, prompt="Weather in {{city}}?", config={}, labels=[], tags=[], type="text"
        )
    )
    template = ChatPromptTemplate.from_template(prompt.get_langchain_prompt()).with_config(
        metadata={"langfuse_prompt": prompt}
    )
    chain = template | ToolCallingFakeModel()
    spans, trace = run_both(
        official,
        lambda cb: chain.invoke(
            {"city": "Riga"},
            config={
                "callbacks": cb,
                "metadata": {"langfuse_user_id": "u-1", "langfuse_session_id": "s-1"},
                "tags": ["t1"],
            },
        ),
    )
    assert_same(spans, trace)
    root = next(s for s in spans if s["parent"] is None)["attrs"]
    assert (trace.user_id, trace.session_id) == (root["user.id"], root["session.id"])
    assert trace.tags == list(root["langfuse.trace.tags"])
    assert next(o for o in trace.observations if o.parent_id is None).metadata["is_langchain_root"] is True
    assert root["langfuse.observation.metadata.is_langchain_root"] == "true"


def test_react_agent_with_a_failing_tool(official):
    agent = build_agent(tool_error="weather service down")

    def work(cb: list[Any]) -> None:
        with pytest.raises(ValueError):
            agent.invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb})

    spans, trace = run_both(official, work)
    assert_same(spans, trace)
    assert any(level == "ERROR" for *_, level in our_tree(trace))


def test_raising_node_is_error_in_both(official):
    def boom(state: dict) -> dict:
        raise ValueError("node failed")

    graph = StateGraph(dict)
    graph.add_node("boom", boom)
    graph.add_edge(START, "boom")
    graph.add_edge("boom", END)
    app = graph.compile()

    def work(cb: list[Any]) -> None:
        with pytest.raises(ValueError):
            app.invoke({"x": 1}, config={"callbacks": cb})

    spans, trace = run_both(official, work)
    assert_same(spans, trace)
    assert trace.level == "ERROR"


class FanState(TypedDict):
    items: list[str]
    results: Annotated[list[str], operator.add]


def test_send_fan_out_and_parallel_branches(official):
    model = ToolCallingFakeModel(tool_name=None)

    def fan(state: FanState) -> list[Send]:
        return [Send("worker", {"items": [i], "results": []}) for i in state["items"]]

    def worker(state: FanState) -> dict:
        reply = model.invoke(state["items"][0])
        return {"results": [reply.content]}

    graph = StateGraph(FanState)
    graph.add_node("worker", worker)
    graph.add_conditional_edges(START, fan, ["worker"])
    graph.add_edge("worker", END)
    app = graph.compile()
    spans, trace = run_both(
        official, lambda cb: app.invoke({"items": ["a", "b"], "results": []}, config={"callbacks": cb})
    )
    assert sorted(our_tree(trace)) == sorted(their_tree(spans))  # the two branches may start in either order
    theirs, ours = generations(spans, trace)
    assert ours == theirs


class Docs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content=f"about {query}")]


def test_retriever(official):
    spans, trace = run_both(official, lambda cb: Docs().invoke("cats", config={"callbacks": cb}))
    assert_same(spans, trace)


def test_batch_under_one_trace_context(official):
    trace_id = uuid.uuid4().hex
    model = ToolCallingFakeModel()
    spans, trace = run_both(
        official,
        lambda cb: model.batch(["Riga", "Oslo"], config={"callbacks": cb}),
        trace_context={"trace_id": trace_id},
    )
    assert {bytes.fromhex(s["id"]) and s["attrs"].get("langfuse.observation.type") for s in spans} == {"generation"}
    assert trace.id == trace_id and len(trace.observations) == len(spans) == 2
    theirs, ours = generations(spans, trace)
    assert ours == theirs


def test_streamed_chat_model_usage_and_model(official):
    model = ToolCallingFakeModel()

    def work(cb: list[Any]) -> None:
        for _ in model.stream("Lima", config={"callbacks": cb}):
            pass

    spans, trace = run_both(official, work)
    assert_same(spans, trace)


class Shelf(TypedDict):
    items: list[int]
    doc: dict[str, Any]


def test_a_node_that_changes_its_input_in_place_shows_the_same_input_in_both(official):
    # the official handler serialises each input when its run starts; ours copies what it keeps and serialises
    # later: a node that sorts, clears or edits its state in place afterwards must not change either's record
    def sort_and_edit(state: Shelf) -> dict[str, Any]:
        state["items"].sort()
        state["doc"]["text"] = "edited in place"
        return {"items": [9, 8, 7]}

    def clear(state: Shelf) -> dict[str, Any]:
        state["items"].clear()
        return {}

    graph = StateGraph(Shelf)
    graph.add_node("sort_and_edit", sort_and_edit)
    graph.add_node("clear", clear)
    graph.add_edge(START, "sort_and_edit")
    graph.add_edge("sort_and_edit", "clear")
    graph.add_edge("clear", END)
    app = graph.compile()
    spans, trace = run_both(
        official, lambda cb: app.invoke({"items": [3, 1, 2], "doc": {"text": "original"}}, config={"callbacks": cb})
    )
    assert_same(spans, trace)
    theirs = {s["name"]: json.loads(s["attrs"]["langfuse.observation.input"]) for s in spans}
    ours = {o.name: o.input for o in trace.observations}
    assert theirs["sort_and_edit"] == ours["sort_and_edit"] == {"items": [3, 1, 2], "doc": {"text": "original"}}
    assert theirs["clear"] == ours["clear"] == {"items": [9, 8, 7], "doc": {"text": "edited in place"}}
    assert theirs["LangGraph"] == ours["LangGraph"] == trace.input


def levels_and_messages(spans: list[dict], trace: Trace) -> tuple[list[tuple], list[tuple]]:
    """(name, level, status message) of every observation: theirs, ours."""
    theirs = sorted((s["name"], s["level"], s["attrs"].get("langfuse.observation.status_message")) for s in spans)
    return theirs, sorted((o.name, o.level, o.status_message) for o in trace.observations)


def test_fallbacks_and_retries_record_each_failed_attempt_as_error(official):
    fallback = ToolCallingFakeModel(fail_with="rate limited").with_fallbacks(
        [ToolCallingFakeModel(model_name="gpt-4o")]
    )
    attempts = {"n": 0}

    def flaky(text: str) -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ValueError(f"attempt {attempts['n']} failed")
        return text

    retried = RunnableLambda(flaky).with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    for chain, failed in ((fallback, 1), (retried, 2)):
        spans, trace = run_both(official, lambda cb, chain=chain: chain.invoke("Riga", config={"callbacks": cb}))
        assert_same(spans, trace)
        theirs, ours = levels_and_messages(spans, trace)
        assert ours == theirs
        assert [level for _, level, _ in ours].count("ERROR") == failed
        assert (trace.status, trace.handled_errors) == ("ok", failed)  # the run still finished: handled errors


def test_parallel_steps_and_a_tool_node_that_handles_its_tools_error(official):
    parallel = RunnableParallel(answer=ToolCallingFakeModel(tool_name=None), shout=RunnableLambda(str.upper))
    spans, trace = run_both(official, lambda cb: parallel.invoke("oslo", config={"callbacks": cb}))
    assert sorted(our_tree(trace)) == sorted(their_tree(spans))  # the two steps may start in either order
    assert levels_and_messages(spans, trace)[1] == levels_and_messages(spans, trace)[0]

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise ValueError("weather service down")

    model = ToolCallingFakeModel().bind_tools([get_weather])

    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([get_weather], handle_tool_errors=True))  # the error goes back to the model
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    app = graph.compile()
    spans, trace = run_both(
        official, lambda cb: app.invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb})
    )
    assert_same(spans, trace)
    theirs, ours = levels_and_messages(spans, trace)
    assert ours == theirs and ("get_weather", "ERROR", "weather service down") in ours
    assert (trace.status, trace.handled_errors) == ("ok", 1)  # the run ended well: a handled error


def test_async_subgraph_streamed_in_messages_mode(official):
    model = ToolCallingFakeModel(tool_name=None)

    async def answer(state: MessagesState) -> dict:
        return {"messages": [await model.ainvoke(state["messages"])]}

    inner = StateGraph(MessagesState)
    inner.add_node("answer", answer)
    inner.add_edge(START, "answer")
    inner.add_edge("answer", END)
    graph = StateGraph(MessagesState)
    graph.add_node("inner", inner.compile())
    graph.add_edge(START, "inner")
    graph.add_edge("inner", END)
    app = graph.compile()

    async def work(cb: list[Any]) -> None:
        stream = app.astream(
            {"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb}, stream_mode="messages", subgraphs=True
        )
        assert [chunk async for chunk in stream]

    spans, trace = run_both(official, lambda cb: asyncio.run(work(cb)))
    assert_same(spans, trace)
    assert [depth for kind, _, depth, _ in our_tree(trace) if kind == "GENERATION"] == [4]


def test_a_named_prebuilt_agent_s_model_output_is_what_the_model_returned(official):
    # LangGraph's create_react_agent (and LangChain's create_agent) set `response.name = name` on the model's
    # message after the model call ended: the official handler serialised it at the end of the call, so must we
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    agent = create_react_agent(ToolCallingFakeModel(), [get_weather], name="weather_agent")
    spans, trace = run_both(
        official, lambda cb: agent.invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb})
    )
    assert_same(spans, trace)
    theirs = [
        json.loads(s["attrs"]["langfuse.observation.output"])
        for s in sorted(spans, key=lambda s: s["start"])
        if s["type"] == "GENERATION"
    ]
    ours = [o.output for o in sorted(trace.observations, key=lambda o: o.start_time) if o.type == "GENERATION"]
    assert len(ours) == len(theirs) == 2
    assert [o.get("name") for o in ours] == [t.get("name") for t in theirs] == [None, None]
    assert [o["content"] for o in ours] == [t["content"] for t in theirs]
    # the node's output is the message after the agent named it, in both
    node_out = [o.output for o in trace.observations if o.name == "agent"]
    assert {m["name"] for out in node_out for m in out["messages"]} == {"weather_agent"}


def test_langchain_v1_agent_with_middleware(official):
    # create_agent's middleware hooks are graph nodes of their own ("<name>.before_model", ...) and wrap_model_call
    # wraps the model inside the "model" node: the trees agree, hook by hook
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware, after_model, before_model, wrap_model_call

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    @before_model
    def note_turn(state: Any, runtime: Any) -> None:
        return None

    @after_model
    def check_reply(state: Any, runtime: Any) -> None:
        return None

    @wrap_model_call
    def passthrough(request: Any, handler: Any) -> Any:
        return handler(request)

    agent = create_agent(
        model=ToolCallingFakeModel(),
        tools=[get_weather],
        middleware=[note_turn, check_reply, passthrough, ModelCallLimitMiddleware(run_limit=5)],
    )
    spans, trace = run_both(
        official, lambda cb: agent.invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb})
    )
    assert_same(spans, trace)
    names = [name for _, name, *_ in our_tree(trace)]
    assert {"note_turn.before_model", "check_reply.after_model", "ModelCallLimitMiddleware.after_model"} <= set(names)


def test_propagated_environment_and_prompt_reach_the_runs_inside_in_both(official):
    # SDK 5's propagate_attributes(environment=..., prompt=...) around a LangChain run: the official SDK sets them
    # on every span started inside (Langfuse links the prompt to generations only); ours, on the trace and its
    # observations, and on its generations
    from langfuse import propagate_attributes as their_propagate

    from lftrace import propagate_attributes as our_propagate

    chain = ChatPromptTemplate.from_template("Weather in {city}?") | ToolCallingFakeModel()
    prompt = {"name": "weather", "version": 4}

    def work(cb: list[Any]) -> None:
        with (
            their_propagate(environment="staging", prompt=prompt),
            our_propagate(environment="staging", prompt=prompt),
        ):
            chain.invoke({"city": "Riga"}, config={"callbacks": cb})

    spans, trace = run_both(official, work)
    assert_same(spans, trace)  # the generations' prompt links included
    assert {s["attrs"]["langfuse.environment"] for s in spans} == {"staging"}
    assert trace.environment == "staging" and {o.environment for o in trace.observations} == {"staging"}
    linked = [(o.prompt_name, o.prompt_version) for o in trace.observations if o.type == "GENERATION"]
    assert linked == [("weather", 4)]


def test_attributes_propagated_inside_a_node_reach_what_it_starts_in_both(official):
    # propagate_attributes entered inside a graph node: the model call it makes there gets the environment and the
    # prompt; the nodes before it keep the client's environment
    from langfuse import propagate_attributes as their_propagate

    from lftrace import propagate_attributes as our_propagate

    model = ToolCallingFakeModel()

    def plan(state: MessagesState) -> dict:
        return {"messages": [HumanMessage("plan: ask the model")]}

    def ask(state: MessagesState) -> dict:
        prompt = {"name": "asker", "version": 7}
        with their_propagate(environment="eval", prompt=prompt), our_propagate(environment="eval", prompt=prompt):
            return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("plan", plan)
    graph.add_node("ask", ask)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "ask")
    app = graph.compile()
    spans, trace = run_both(
        official, lambda cb: app.invoke({"messages": [HumanMessage("Oslo")]}, config={"callbacks": cb})
    )
    assert_same(spans, trace)
    their_env = {s["name"]: s["attrs"].get("langfuse.environment", "default") for s in spans}
    our_env = {o.name: o.environment for o in trace.observations}
    assert our_env == their_env
    assert our_env["ToolCallingFakeModel"] == "eval" and our_env["plan"] == "default"
    assert trace.environment == "default"  # the trace began outside: it keeps the client's environment
