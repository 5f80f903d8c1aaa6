"""A node that changes its input in place after the callback saw it: the trace shows what the node was given.

LangGraph passes a node the channel's own values, so ``state["items"].sort()`` or ``del state["messages"][0]``
changes the state itself (LangGraph's docs say to return updates instead; graphs in the wild do both). The
official Langfuse handler serialises each input when its run starts; lftrace keeps references and converts them
on its writer thread later, so it copies the dicts and lists it keeps (``sharing.Captures``, ``snapshot``).
Each node here records a deep copy of what it was given, the ground truth the stored trace must match. Real
LangGraph graphs, the real handler, writer and SQLite store.
"""

from __future__ import annotations

import copy
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

import lftrace
from lftrace import client as client_module
from lftrace.langchain import FRAGMENT_SIZE, CallbackHandler
from lftrace.store import TraceStore


def _stored(tmp_path, monkeypatch, run) -> Any:
    """Run ``run(handler)`` with a fresh client on a store in tmp_path; the stored trace (client shut down)."""
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    run(handler)
    client_module.get_client().shutdown()
    assert handler.last_trace_id is not None
    with TraceStore(tmp_path / "t.db", create=False) as store:
        return store.get_trace(handler.last_trace_id)


class Shelf(TypedDict):
    items: list[int]  # no reducer: a node's return replaces it
    doc: dict[str, Any]
    log: Annotated[list[dict[str, Any]], operator.add]


def test_a_typeddict_state_changed_in_place_is_stored_as_each_node_was_given_it(tmp_path, monkeypatch):
    given: dict[str, Any] = {}
    returned: dict[str, Any] = {}

    def sort_and_edit(state: Shelf) -> dict[str, Any]:
        given["sort_and_edit"] = copy.deepcopy(state)
        state["items"].sort()  # in place: the channel's own list
        state["doc"]["text"] = "changed by sort_and_edit"  # a nested dict
        state["log"][0]["seen"] = True  # a dict inside a list
        out = {"items": [99, 98], "log": [{"by": "sort_and_edit"}]}
        returned["sort_and_edit"] = copy.deepcopy(out)
        return out

    def clear(state: Shelf) -> dict[str, Any]:
        given["clear"] = copy.deepcopy(state)
        state["items"].clear()
        state["log"].pop()
        returned["clear"] = {}
        return {}

    def last(state: Shelf) -> dict[str, Any]:
        given["last"] = copy.deepcopy(state)
        returned["last"] = {"log": [{"by": "last"}]}
        return {"log": [{"by": "last"}]}

    builder = StateGraph(Shelf)
    for name, fn in (("sort_and_edit", sort_and_edit), ("clear", clear), ("last", last)):
        builder.add_node(name, fn)
    builder.add_edge(START, "sort_and_edit")
    builder.add_edge("sort_and_edit", "clear")
    builder.add_edge("clear", "last")
    builder.add_edge("last", END)
    graph = builder.compile()
    start = {"items": [3, 1, 2], "doc": {"text": "original"}, "log": [{"by": "user"}]}
    expected_input = copy.deepcopy(start)

    trace = _stored(tmp_path, monkeypatch, lambda h: graph.invoke(start, config={"callbacks": [h]}))

    nodes = {o.name: o for o in trace.observations if o.name in given}
    assert set(nodes) == {"sort_and_edit", "clear", "last"}
    for name, observation in nodes.items():
        assert observation.input == given[name], name
        assert observation.output == returned[name], name
    # what the user passed in, though the first node sorted and edited it (the graph's own run and the trace)
    root = next(o for o in trace.observations if o.parent_id is None)
    assert root.input == expected_input and trace.input == expected_input
    # the sanity of the set-up: the state really was changed in place under the handler
    assert given["clear"]["items"] == [99, 98] and given["last"]["items"] == []
    assert given["clear"]["doc"] == {"text": "changed by sort_and_edit"}


class Loop(MessagesState):
    step: int


def test_a_long_message_loop_whose_nodes_rewrite_the_conversation_in_place_keeps_each_steps_input(
    tmp_path, monkeypatch
):
    # long enough to be stored in parts while it runs (the shared-list path of a long run), with the in-place
    # changes LangGraph's channel lets through: an item replaced, an item deleted, the list reversed and back
    steps = 120
    seen: list[tuple[str, list[str]]] = []

    def think(state: Loop) -> dict[str, Any]:
        contents = [str(m.content) for m in state["messages"]]
        seen.append(("think", contents))
        step = state["step"] + 1
        if step % 7 == 0:  # the last message rewritten in place, after the callback saw the list
            old = state["messages"][-1]
            state["messages"][-1] = AIMessage(f"rewritten at {step}", id=old.id)
        return {"messages": [AIMessage(f"thought {step}")], "step": step}

    def tidy(state: Loop) -> dict[str, Any]:
        seen.append(("tidy", [str(m.content) for m in state["messages"]]))
        messages = state["messages"]
        if state["step"] % 10 == 0 and len(messages) > 3:
            del messages[1]  # the oldest answer dropped in place
        if state["step"] % 13 == 0:
            messages.reverse()
            seen.append(("reversed", [str(m.content) for m in messages]))
            messages.reverse()
        return {}

    def route(state: Loop) -> str:
        return END if state["step"] >= steps else "think"

    builder = StateGraph(Loop)
    builder.add_node("think", think)
    builder.add_node("tidy", tidy)
    builder.add_edge(START, "think")
    builder.add_edge("think", "tidy")
    builder.add_conditional_edges("tidy", route, ["think", END])
    graph = builder.compile()
    run = {"messages": [HumanMessage("start")], "step": 0}

    trace = _stored(
        tmp_path,
        monkeypatch,
        lambda h: graph.invoke(run, config={"callbacks": [h], "recursion_limit": 4 * steps}),
    )

    assert len(trace.observations) > FRAGMENT_SIZE  # stored in parts
    nodes = sorted((o for o in trace.observations if o.name in ("think", "tidy")), key=lambda o: o.start_time)
    truth = [entry for entry in seen if entry[0] != "reversed"]
    assert [o.name for o in nodes] == [name for name, _ in truth]
    for observation, (name, contents) in zip(nodes, truth, strict=True):
        stored = [m["content"] for m in observation.input["messages"]]
        assert stored == contents, f"{name} at {observation.start_time}"
    assert any("rewritten" in c for _, contents in truth for c in contents)  # the set-up changed what later steps saw


def test_observe_and_spans_record_values_as_they_were_when_given(tmp_path, monkeypatch):
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    langfuse = lftrace.get_client()

    @lftrace.observe()
    def collect(items: list[str], options: dict[str, Any]) -> list[str]:
        items.append("added by collect")  # the caller's list, changed after the span started
        options["seen"] = True
        return items

    basket = ["apple"]
    result = collect(basket, {"mode": "fast"})
    result.append("added by the caller")  # after the span ended
    assert basket == ["apple", "added by collect", "added by the caller"]  # the set-up changed them
    collected = langfuse.get_trace("last").observations[0]
    assert collected.input == {"args": [["apple"], {"mode": "fast"}], "kwargs": {}}
    assert collected.output == ["apple", "added by collect"]

    rows = [{"id": 1}]
    question = {"asked": ["q1"]}
    with langfuse.start_as_current_span(name="manual", input=rows) as span:
        rows.append({"id": 2})
        span.update(output=rows)
        span.update_trace(input=question)
        rows[0]["id"] = "changed"
        question["asked"].append("q2")
    manual = langfuse.get_trace("last")
    assert manual.observations[0].input == [{"id": 1}]
    assert manual.observations[0].output == [{"id": 1}, {"id": 2}]
    assert manual.input == {"asked": ["q1"]}
    langfuse.shutdown()


class Steps(TypedDict):
    n: int
    steps: Annotated[list[dict[str, Any]], operator.add]


def test_a_long_list_of_dicts_whose_last_item_is_changed_in_place_keeps_each_steps_input(tmp_path, monkeypatch):
    """``state["steps"][-1]["done"] = True`` at every step on a list long enough to be captured as the capture it
    extends: the item changed in place was copied when an earlier step captured it, and is not that copy any more;
    every node's input shows the list as that node was given it (not the earlier copy of the item)."""
    given: list[Any] = []

    def work(state: Steps) -> dict[str, Any]:
        given.append(copy.deepcopy(state))
        state["steps"][-1]["done"] = True  # an item of the channel's own list
        return {"n": state["n"] + 1, "steps": [{"step": state["n"] + 1}]}

    builder = StateGraph(Steps)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_conditional_edges("work", lambda s: "work" if s["n"] < 30 else END, ["work", END])
    graph = builder.compile()
    first = [{"step": -i} for i in range(12)]  # long from the start (``MIN_SHARED``)
    result: dict[str, Any] = {}
    trace = _stored(
        tmp_path, monkeypatch, lambda h: result.update(graph.invoke({"n": 0, "steps": first}, {"callbacks": [h]}))
    )
    works = sorted((o for o in trace.observations if o.name == "work"), key=lambda o: o.start_time)
    assert len(works) == len(given) == 30
    for node, truth in zip(works, given, strict=True):
        assert node.input == truth
    assert trace.output == result and result["steps"][-2] == {"step": 29, "done": True}
