"""CallbackHandler end to end: real LangChain/LangGraph runs with fake models -> client -> SQLite store."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, MessagesState, StateGraph

from lftrace import Langfuse, get_client
from lftrace.langchain import CallbackHandler
from lftrace.model import Observation, Trace
from support.fake_models import ToolCallingFakeModel, build_agent

AGENT_TREE = [
    ("CHAIN", "LangGraph", 0),
    ("AGENT", "agent", 1),
    ("CHAIN", "call_model", 2),
    ("GENERATION", "ToolCallingFakeModel", 3),
    ("CHAIN", "route", 2),
    ("CHAIN", "tools", 1),
    ("TOOL", "get_weather", 2),
    ("AGENT", "agent", 1),
    ("CHAIN", "call_model", 2),
    ("GENERATION", "ToolCallingFakeModel", 3),
    ("CHAIN", "route", 2),
]


def tree(trace: Trace) -> list[tuple[str, str, int]]:
    """(type, name, depth) in depth-first start order; fails on any dangling parent."""
    kids = trace.children()
    ids = {o.id for o in trace.observations}
    assert all(o.parent_id is None or o.parent_id in ids for o in trace.observations)
    assert len(kids.get(None, [])) == 1, "exactly one root observation"
    out: list[tuple[str, str, int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for obs in kids.get(parent, []):
            out.append((obs.type, obs.name, depth))
            walk(obs.id, depth + 1)

    walk(None, 0)
    return out


def by_type(trace: Trace, kind: str) -> list[Observation]:
    return sorted((o for o in trace.observations if o.type == kind), key=lambda o: o.start_time)


def stored(handler: CallbackHandler) -> Trace:
    assert handler.last_trace_id is not None
    return get_client().get_trace(handler.last_trace_id)


def ask(city: str = "Paris") -> dict[str, Any]:
    return {"messages": [HumanMessage(city)]}


def test_langgraph_agent_tree_generations_and_tools():
    handler = CallbackHandler()
    result = build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert result["messages"][-1].content == "The weather in Paris: sunny in Paris"

    trace = stored(handler)
    assert tree(trace) == AGENT_TREE
    assert trace.name == "LangGraph"
    assert len(trace.id) == 32 and all(len(o.id) == 16 for o in trace.observations)
    assert trace.input == {"messages": [{"role": "user", "content": "Paris"}]}
    assert trace.output["messages"][-1] == {"role": "assistant", "content": "The weather in Paris: sunny in Paris"}
    root = trace.roots()[0]
    assert root.input == trace.input and root.end_time is not None

    first, second = by_type(trace, "GENERATION")
    assert first.model == "gpt-4o-mini"
    assert first.model_parameters == {"model_name": "gpt-4o-mini", "temperature": 0.2}
    assert first.usage_details == {"input": 12, "output": 7, "total": 19}
    assert first.cost_details and first.cost_details["total"] == pytest.approx(12 * 0.15e-6 + 7 * 0.6e-6)
    assert first.input[0] == {"role": "user", "content": "Paris"}
    assert first.input[1]["role"] == "tool" and first.input[1]["content"]["function"]["name"] == "get_weather"
    assert first.output["tool_calls"][0]["name"] == "get_weather"
    assert first.output["tool_calls"][0]["args"] == {"city": "Paris"}
    assert second.output == {"role": "assistant", "content": "The weather in Paris: sunny in Paris"}
    assert [m["role"] for m in second.input] == ["user", "assistant", "tool", "tool"]
    assert first.metadata["langgraph_node"] == "agent" and first.metadata["langgraph_step"] == 1
    assert "langgraph_checkpoint_ns" in first.metadata

    (tool,) = by_type(trace, "TOOL")
    assert tool.input == {"city": "Paris"}
    assert tool.output["content"] == "sunny in Paris" and tool.output["role"] == "tool"
    assert tool.metadata["tool_call_id"] == "call_1"
    assert all(o.level == "DEFAULT" and o.environment == "default" for o in trace.observations)
    assert all(o.start_time <= o.end_time for o in trace.observations)
    assert trace.total_cost == pytest.approx(2 * first.cost_details["total"])


def test_lcel_chain_prompt_and_model():
    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{city}")])
    chain = prompt | ToolCallingFakeModel()
    handler = CallbackHandler()
    chain.invoke({"city": "Oslo"}, config={"callbacks": [handler], "run_name": "weather-chain"})
    trace = stored(handler)
    assert tree(trace) == [
        ("CHAIN", "weather-chain", 0),
        ("CHAIN", "ChatPromptTemplate", 1),
        ("GENERATION", "ToolCallingFakeModel", 1),
    ]
    assert trace.name == "weather-chain"
    assert trace.input == {"city": "Oslo"}
    (gen,) = by_type(trace, "GENERATION")
    assert gen.input == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Oslo"}]
    assert trace.output == {"role": "assistant", "content": "The weather in Oslo"}


def test_raw_tools_bound_with_bind_are_shown_as_definitions_every_call():
    """``model.bind(tools=[a_tool])`` passes the tool object itself: each generation shows its definition (the
    conversion is remembered per tool object, so the second call gets the same definition, not the object)."""
    from langchain_core.tools import tool

    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    model = ToolCallingFakeModel().bind(tools=[lookup])
    handler = CallbackHandler()
    chain = RunnableLambda(lambda city: [model.invoke(city), model.invoke(city)])
    chain.invoke("Oslo", config={"callbacks": [handler]})
    generations = by_type(stored(handler), "GENERATION")
    assert len(generations) == 2
    for gen in generations:
        definition = gen.input[-1]
        assert definition["role"] == "tool"
        assert definition["content"]["type"] == "function"
        assert definition["content"]["function"]["name"] == "lookup"
        assert definition["content"]["function"]["parameters"]["required"] == ["city"]


def test_streaming_sets_completion_start_time():
    handler = CallbackHandler()
    chunks = list(ToolCallingFakeModel().stream("Rome", config={"callbacks": [handler]}))
    assert "".join(str(c.content) for c in chunks) == "The weather in Rome"
    trace = stored(handler)
    (gen,) = trace.observations
    assert gen.type == "GENERATION" and trace.name == "ToolCallingFakeModel"
    assert gen.completion_start_time is not None
    assert gen.start_time < gen.completion_start_time <= gen.end_time
    assert gen.output["content"] == "The weather in Rome"
    assert gen.usage_details == {"input": 12, "output": 7, "total": 19}


def test_streamed_chain_records_its_real_input_not_the_placeholder():
    # LangChain starts a streamed RunnableSequence with inputs {"input": ""} and passes the real ones at the end.
    chain = ChatPromptTemplate.from_template("{city}") | ToolCallingFakeModel()
    handler = CallbackHandler()
    assert "".join(str(c.content) for c in chain.stream({"city": "Oslo"}, config={"callbacks": [handler]}))
    trace = stored(handler)
    assert trace.input == {"city": "Oslo"}
    assert trace.observations[0].input == {"city": "Oslo"}


def test_graph_stream_is_traced_like_invoke():
    handler = CallbackHandler()
    updates = list(build_agent().stream(ask("Lima"), config={"callbacks": [handler]}, stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    trace = stored(handler)
    assert tree(trace) == AGENT_TREE
    assert trace.output["messages"][-1]["content"] == "The weather in Lima: sunny in Lima"


def test_async_ainvoke_and_astream():
    graph = build_agent(ToolCallingFakeModel())
    handler = CallbackHandler()

    async def main() -> list[Any]:
        await graph.ainvoke(ask("Kyiv"), config={"callbacks": [handler]})
        first = handler.last_trace_id
        chunks = [c async for c in ToolCallingFakeModel().astream("Bern", config={"callbacks": [handler]})]
        return [first, chunks]

    first_id, chunks = asyncio.run(main())
    assert "".join(str(c.content) for c in chunks) == "The weather in Bern"
    agent_trace = get_client().get_trace(first_id)
    assert tree(agent_trace) == AGENT_TREE
    assert agent_trace.output["messages"][-1]["content"] == "The weather in Kyiv: sunny in Kyiv"
    streamed = stored(handler)
    assert streamed.id != first_id
    (gen,) = streamed.observations
    assert gen.start_time < gen.completion_start_time <= gen.end_time


def _failing_graph(error: Exception) -> Any:
    def boom(state: MessagesState) -> dict[str, Any]:
        raise error

    graph = StateGraph(MessagesState)
    graph.add_node("explode", boom)
    graph.add_edge(START, "explode")
    graph.add_edge("explode", END)
    return graph.compile()


def test_exception_in_node_is_recorded_and_propagates_unchanged():
    error = ValueError("node went wrong")
    handler = CallbackHandler()
    with pytest.raises(ValueError) as caught:
        _failing_graph(error).invoke(ask(), config={"callbacks": [handler]})
    assert caught.value is error

    trace = stored(handler)
    failed = [o for o in trace.observations if o.level == "ERROR"]
    assert {o.name for o in failed} == {"LangGraph", "explode"}
    assert trace.level == "ERROR" and trace.status == "error"
    node = next(o for o in failed if o.name == "explode")
    assert node.status_message == "node went wrong"
    assert node.metadata["error.type"] == "ValueError"
    assert "Traceback (most recent call last)" in node.metadata["error.traceback"]
    assert "raise error" in node.metadata["error.traceback"]
    assert node.metadata["langgraph_node"] == "explode"
    assert trace.output is None


def test_exception_without_message_uses_type_name():
    class Quiet(Exception):
        pass

    handler = CallbackHandler()
    with pytest.raises(Quiet):
        _failing_graph(Quiet()).invoke(ask(), config={"callbacks": [handler]})
    node = next(o for o in stored(handler).observations if o.name == "explode")
    assert node.status_message == "Quiet"
    assert node.metadata["error.type"].endswith("test_exception_without_message_uses_type_name.<locals>.Quiet")


def test_exception_in_tool():
    handler = CallbackHandler()
    with pytest.raises(ValueError, match="weather service down"):
        build_agent(tool_error="weather service down").invoke(ask(), config={"callbacks": [handler]})
    trace = stored(handler)
    (tool,) = by_type(trace, "TOOL")
    assert tool.level == "ERROR"
    assert tool.status_message == "weather service down"
    assert tool.metadata["error.type"] == "ValueError"
    assert "weather service down" in tool.metadata["error.traceback"]
    assert by_type(trace, "GENERATION")[0].level == "DEFAULT"


def test_eight_threads_share_one_handler():
    handler = CallbackHandler()
    graph = build_agent(ToolCallingFakeModel(delay=0.001))
    cities = [f"city{i}" for i in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(city: str) -> None:
        try:
            barrier.wait()
            graph.invoke(ask(city), config={"callbacks": [handler]})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in cities]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    _assert_one_clean_trace_per_city(cities)
    assert not handler._runs and not handler._traces  # nothing leaks


def test_asyncio_gather_shares_one_handler():
    handler = CallbackHandler()
    graph = build_agent(ToolCallingFakeModel(delay=0.001))
    cities = [f"town{i}" for i in range(8)]

    async def main() -> None:
        await asyncio.gather(*(graph.ainvoke(ask(c), config={"callbacks": [handler]}) for c in cities))

    asyncio.run(main())
    _assert_one_clean_trace_per_city(cities)


def _assert_one_clean_trace_per_city(cities: list[str]) -> None:
    client = get_client()
    summaries = client.list_traces(limit=100)
    assert len(summaries) == len(cities)
    seen = set()
    for summary in summaries:
        trace = client.get_trace(summary.id)
        assert tree(trace) == AGENT_TREE
        city = trace.input["messages"][0]["content"]
        seen.add(city)
        assert all(o.trace_id == trace.id for o in trace.observations)
        for gen in by_type(trace, "GENERATION"):
            assert gen.input[0] == {"role": "user", "content": city}
        (tool,) = by_type(trace, "TOOL")
        assert tool.input == {"city": city}
        assert trace.output["messages"][-1]["content"] == f"The weather in {city}: sunny in {city}"
    assert seen == set(cities)


TRACE_META = {
    "langfuse_session_id": "session-7",
    "langfuse_user_id": "user-42",
    "langfuse_tags": ["prod", "beta"],
    "langfuse_trace_name": "weather-bot",
    "team": "search",
}


def test_trace_attributes_from_metadata_are_stripped_from_observations():
    handler = CallbackHandler()
    build_agent().invoke(ask(), config={"callbacks": [handler], "metadata": TRACE_META, "tags": ["nightly"]})
    trace = stored(handler)
    assert (trace.name, trace.session_id, trace.user_id) == ("weather-bot", "session-7", "user-42")
    assert trace.tags == ["prod", "beta", "nightly"]
    assert trace.metadata["team"] == "search"
    for obs in trace.observations:
        assert not any(k.startswith("langfuse_") for k in obs.metadata), obs.name
        assert obs.metadata["team"] == "search"
    assert client_summary(trace.id).session_id == "session-7"


def client_summary(trace_id: str) -> Any:
    return next(s for s in get_client().list_traces(session_id="session-7") if s.id == trace_id)


def test_trace_attributes_when_the_root_is_a_bare_chat_model():
    handler = CallbackHandler()
    ToolCallingFakeModel().invoke("Nice", config={"callbacks": [handler], "metadata": TRACE_META})
    trace = stored(handler)
    assert (trace.name, trace.user_id, trace.session_id) == ("weather-bot", "user-42", "session-7")
    (gen,) = trace.observations
    assert not any(k.startswith("langfuse_") for k in gen.metadata)
    assert trace.input == [{"role": "user", "content": "Nice"}]
    assert trace.output == {"role": "assistant", "content": "The weather in Nice"}


def test_hidden_runs_are_debug_level():
    hidden = RunnableLambda(lambda x: x.upper(), name="internal").with_config(tags=["langsmith:hidden"])
    chain = RunnableLambda(lambda x: x + "!", name="visible") | hidden
    handler = CallbackHandler()
    assert chain.invoke("hi", config={"callbacks": [handler]}) == "HI!"
    levels = {o.name: o.level for o in stored(handler).observations}
    assert levels == {"RunnableSequence": "DEFAULT", "visible": "DEFAULT", "internal": "DEBUG"}


def test_trace_context_sets_the_trace_id(caplog):
    wanted = uuid.uuid4().hex
    handler = CallbackHandler(trace_context={"trace_id": wanted, "parent_span_id": "00f067aa0ba902b7"})
    ToolCallingFakeModel().invoke("Riga", config={"callbacks": [handler]})
    assert handler.last_trace_id == wanted
    trace = get_client().get_trace(wanted)
    assert trace.observations[0].trace_id == wanted
    assert trace.metadata["parent_span_id"] == "00f067aa0ba902b7"

    with caplog.at_level(logging.WARNING, logger="lftrace"):
        bad = CallbackHandler(trace_context={"trace_id": "NOT-HEX"})
    assert "trace_id" in caplog.text
    ToolCallingFakeModel().invoke("Riga", config={"callbacks": [bad]})
    assert bad.last_trace_id != "NOT-HEX" and len(bad.last_trace_id) == 32
    get_client().get_trace(bad.last_trace_id)


def test_masking_applies_to_everything_captured():
    def mask(data: Any) -> Any:
        return json.loads(json.dumps(data).replace("Paris", "[CITY]"))

    Langfuse(mask=mask)
    handler = CallbackHandler()
    build_agent().invoke(ask("Paris"), config={"callbacks": [handler], "metadata": {"city": "Paris"}})
    trace = stored(handler)
    assert "Paris" not in json.dumps(trace.to_dict())
    assert "[CITY]" in json.dumps(trace.input)


def test_trace_is_readable_from_a_new_process():
    handler = CallbackHandler()
    build_agent().invoke(ask("Quito"), config={"callbacks": [handler]})
    get_client().flush()
    code = (
        "import json, sys; from lftrace import get_client; "
        "t = get_client().get_trace(sys.argv[1]); "
        "print(json.dumps({'name': t.name, 'n': len(t.observations), "
        "'types': sorted({o.type for o in t.observations}), 'out': t.output['messages'][-1]['content']}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, handler.last_trace_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "name": "LangGraph",
        "n": len(AGENT_TREE),
        "types": ["AGENT", "CHAIN", "GENERATION", "TOOL"],
        "out": "The weather in Quito: sunny in Quito",
    }


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def test_internal_failures_never_break_the_users_run(caplog):
    handler = CallbackHandler()
    thing = Unprintable()
    chain = RunnableLambda(lambda x: {"payload": thing, "n": 1}, name="make")
    assert chain.invoke({"raw": thing}, config={"callbacks": [handler]})["payload"] is thing
    trace = stored(handler)
    assert trace.output["n"] == 1
    assert trace.output["payload"] == "<unrepresentable Unprintable>"

    # garbage arguments straight into the callbacks: logged, never raised
    with caplog.at_level(logging.DEBUG, logger="lftrace"):
        handler.on_chain_start({"id": 5}, None, run_id=None, parent_run_id=object(), tags=7, metadata="x")  # type: ignore[arg-type]
        handler.on_llm_end(42, run_id=uuid.uuid4())
        handler.on_chat_model_start(None, 3, run_id=uuid.uuid4())  # type: ignore[arg-type]
        handler.on_tool_error(None, run_id=uuid.uuid4())  # type: ignore[arg-type]
        handler.on_llm_new_token("x", run_id=[])  # type: ignore[arg-type]
    assert "on_chain_start failed" in caplog.text and "on_chat_model_start failed" in caplog.text
    # and the handler still works afterwards
    ToolCallingFakeModel().invoke("Baku", config={"callbacks": [handler]})
    assert stored(handler).output["content"] == "The weather in Baku"


def test_broken_llm_result_still_closes_the_trace():
    handler = CallbackHandler()
    root = uuid.uuid4()
    handler.on_chat_model_start({"name": "m"}, [[HumanMessage("q")]], run_id=root, invocation_params={"model": "x"})
    handler.on_llm_end(object(), run_id=root)  # no .generations: an internal failure
    trace = stored(handler)
    assert trace.observations[0].end_time is not None and trace.observations[0].model == "x"


def test_every_generation_is_kept():
    handler = CallbackHandler()
    ToolCallingFakeModel(choices=3).invoke("Doha", config={"callbacks": [handler]})
    (gen,) = stored(handler).observations
    assert [m["content"] for m in gen.output] == [
        "The weather in Doha",
        "The weather in Doha (choice 2)",
        "The weather in Doha (choice 3)",
    ]


def test_text_llm_and_retriever():
    class Shelf(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            return [Document(page_content=f"about {query}", metadata={"source": "shelf"})]

    handler = CallbackHandler()
    chain = Shelf() | RunnableLambda(lambda docs: docs[0].page_content) | FakeListLLM(responses=["ok"])
    assert chain.invoke("owls", config={"callbacks": [handler]}) == "ok"
    trace = stored(handler)
    kinds = {o.name: o for o in trace.observations}
    retriever = kinds["Shelf"]
    assert retriever.type == "RETRIEVER" and retriever.input == "owls"
    assert retriever.output == [{"page_content": "about owls", "metadata": {"source": "shelf"}}]
    llm = kinds["FakeListLLM"]
    assert llm.type == "GENERATION" and llm.input == "about owls" and llm.output == "ok"


def test_sampling_and_disabled_tracing_record_nothing():
    Langfuse(sample_rate=0.0)
    handler = CallbackHandler()
    build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert handler.last_trace_id is None and not handler._runs and not handler._traces
    assert get_client().list_traces() == []

    from lftrace.client import reset_clients

    reset_clients()
    Langfuse(tracing_enabled=False)
    handler = CallbackHandler()
    build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert handler.last_trace_id is None and get_client().list_traces() == []


def test_langgraph_interrupt_is_not_an_error():
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import interrupt

    def ask_human(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [HumanMessage(str(answer))]}

    graph = StateGraph(MessagesState)
    graph.add_node("ask_human", ask_human)
    graph.add_edge(START, "ask_human")
    graph.add_edge("ask_human", END)
    app = graph.compile(checkpointer=InMemorySaver())
    handler = CallbackHandler()
    result = app.invoke(ask(), config={"callbacks": [handler], "configurable": {"thread_id": "t1"}})
    assert "__interrupt__" in result
    trace = stored(handler)
    node = next(o for o in trace.observations if o.name == "ask_human")
    assert node.level == "DEFAULT" and "error.type" not in (node.metadata or {})
    assert trace.level != "ERROR"


def test_finish_open_runs_submits_partial_traces():
    started, release = threading.Event(), threading.Event()

    def slow(state: MessagesState) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {}

    graph = StateGraph(MessagesState)
    graph.add_node("slow", slow)
    graph.add_edge(START, "slow")
    graph.add_edge("slow", END)
    app = graph.compile()
    handler = CallbackHandler()
    worker = threading.Thread(target=app.invoke, args=(ask(),), kwargs={"config": {"callbacks": [handler]}})
    worker.start()
    assert started.wait(10)
    handler.finish_open_runs("interrupted by Ctrl-C")
    release.set()
    worker.join(10)

    trace = stored(handler)
    assert trace.metadata["cancelled"] is True and trace.status == "cancelled"
    open_ones = [o for o in trace.observations if o.level == "WARNING"]
    assert {o.name for o in open_ones} == {"LangGraph", "slow"}
    assert all(o.status_message == "interrupted by Ctrl-C" and o.end_time for o in open_ones)
    assert len(get_client().list_traces()) == 1  # the real end afterwards did not submit it again


def test_to_jsonable_message_memo_never_serves_stale_content():
    from langchain_core.messages import AIMessage

    from lftrace.serialize import to_jsonable

    msg = AIMessage("first")
    assert to_jsonable([msg, msg]) == [{"role": "assistant", "content": "first"}] * 2
    msg.content = "second"  # reassigned after a conversion: the memo must notice
    assert to_jsonable(msg) == {"role": "assistant", "content": "second"}
    converted = to_jsonable(msg)
    converted["content"] = "changed by a mask"  # callers get their own dict
    assert to_jsonable(msg)["content"] == "second"


def _graph(*nodes: tuple[str, Any]) -> Any:
    """START -> nodes in order -> END."""
    graph = StateGraph(MessagesState)
    previous = START
    for name, fn in nodes:
        graph.add_node(name, fn)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile()


def test_keyboard_interrupt_in_a_node_is_an_interruption_not_an_error():
    stop = KeyboardInterrupt()

    def ctrl_c(state: MessagesState) -> dict[str, Any]:
        raise stop

    handler = CallbackHandler()
    app = _graph(("fast", lambda state: {}), ("ctrl_c", ctrl_c))
    with pytest.raises(KeyboardInterrupt) as caught:
        app.invoke(ask(), config={"callbacks": [handler]})
    assert caught.value is stop  # propagates unchanged

    trace = stored(handler)
    levels = {o.name: (o.level, o.status_message) for o in trace.observations}
    assert levels["fast"] == ("DEFAULT", None)
    assert levels["ctrl_c"] == levels["LangGraph"] == ("WARNING", "interrupted (KeyboardInterrupt)")
    assert all("error.type" not in (o.metadata or {}) for o in trace.observations)
    assert trace.metadata["cancelled"] is True
    assert (trace.status, trace.level) == ("cancelled", "WARNING")
    assert all(o.end_time for o in trace.observations)

    # the CLI then calls finish_open_runs: nothing is left open, nothing is submitted twice
    handler.finish_open_runs("interrupted")
    handler.finish_open_runs("interrupted")
    assert [s.id for s in get_client().list_traces()] == [trace.id]
    again = stored(handler)
    assert [(o.name, o.level, o.status_message) for o in again.observations] == [
        (o.name, o.level, o.status_message) for o in trace.observations
    ]
    assert handler._runs == {} and handler._traces == {}


def test_cancelled_task_is_marked_cancelled():
    entered = asyncio.Event()

    async def waits(state: MessagesState) -> dict[str, Any]:
        entered.set()
        await asyncio.sleep(30)
        return {}

    handler = CallbackHandler()
    app = _graph(("waits", waits))

    async def main() -> None:
        task = asyncio.create_task(app.ainvoke(ask(), config={"callbacks": [handler]}))
        await asyncio.wait_for(entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    trace = stored(handler)
    levels = {o.name: (o.level, o.status_message) for o in trace.observations}
    assert levels["waits"] == levels["LangGraph"] == ("WARNING", "cancelled")
    assert trace.metadata["cancelled"] is True and trace.status == "cancelled"
    assert all(o.end_time for o in trace.observations)


def test_cancelled_child_under_a_surviving_root_does_not_interrupt_the_trace():
    async def slow(x: str) -> str:
        await asyncio.sleep(30)
        return x

    async def parent(x: str, config: Any) -> str:
        try:
            return await asyncio.wait_for(RunnableLambda(slow, name="slow").ainvoke(x, config), 0.05)
        except TimeoutError:
            return "gave up"

    handler = CallbackHandler()
    chain = RunnableLambda(parent, name="parent")
    assert asyncio.run(chain.ainvoke("x", config={"callbacks": [handler]})) == "gave up"
    trace = stored(handler)
    levels = {o.name: (o.level, o.status_message) for o in trace.observations}
    assert levels == {"parent": ("DEFAULT", None), "slow": ("WARNING", "cancelled")}
    assert trace.status == "ok" and "cancelled" not in (trace.metadata or {})


def test_runs_after_finish_open_runs_start_no_orphan_trace():
    started, release = threading.Event(), threading.Event()

    def slow(state: MessagesState) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {}

    handler = CallbackHandler()
    app = _graph(("slow", slow), ("after", lambda state: {}))
    worker = threading.Thread(target=app.invoke, args=(ask(),), kwargs={"config": {"callbacks": [handler]}})
    worker.start()
    assert started.wait(10)
    handler.finish_open_runs("interrupted")
    release.set()
    worker.join(10)
    assert not worker.is_alive()

    (summary,) = get_client().list_traces()  # "after" ran later, under the submitted trace: no new trace
    trace = get_client().get_trace(summary.id)
    assert {o.name for o in trace.observations} == {"LangGraph", "slow"}
    assert trace.status == "cancelled"
    assert handler._runs == {} and handler._traces == {}  # late ends cleaned up their markers


def test_started_runs_counts_recorded_observations():
    handler = CallbackHandler()
    assert handler.started_runs == 0
    build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert handler.started_runs == len(stored(handler).observations) == len(AGENT_TREE)
    build_agent().invoke(ask("Oslo"), config={"callbacks": [handler]})
    assert handler.started_runs == 2 * len(AGENT_TREE)


def test_started_runs_counts_while_running():
    seen: list[int] = []
    handler = CallbackHandler()

    def peek(state: MessagesState) -> dict[str, Any]:
        seen.append(handler.started_runs)  # LangGraph root + this node are open
        return {}

    _graph(("peek", peek)).invoke(ask(), config={"callbacks": [handler]})
    assert seen == [2]


def test_started_runs_stays_zero_when_nothing_is_recorded():
    from lftrace.client import reset_clients

    Langfuse(sample_rate=0.0)
    handler = CallbackHandler()
    build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert handler.started_runs == 0
    reset_clients()
    Langfuse(tracing_enabled=False)
    handler = CallbackHandler()
    build_agent().invoke(ask(), config={"callbacks": [handler]})
    assert handler.started_runs == 0
