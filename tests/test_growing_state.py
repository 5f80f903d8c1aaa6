"""Long runs whose state grows as a dict or a text (issue 11: "a state that grows"): a field merged into at every
step (``Annotated[dict, merge]``, as LangGraph's how-tos keep notes or documents by id) is stored as a chain of
list nodes of its pairs, a draft appended to at every step as a chain of the pieces it adds, so the store grows
linearly, and every observation still reads back, shows and exports its full input. Real LangGraph loops, the
real handler, writer and SQLite store, a real OTLP receiver.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from lftrace import client as client_module
from lftrace.langchain import CallbackHandler
from lftrace.sharing import ESCAPED, MAP_REF, MIN_SHARED_MAP, MIN_SHARED_TEXT, REF, TEXT_REF
from lftrace.store import TraceStore
from test_long_runs import exported_long_run, pages_read_as_text, stored_bytes

LFTRACE = str(Path(sys.executable).with_name("lftrace"))


def merge(left: dict, right: dict) -> dict:
    return {**left, **right}


class Notes(TypedDict):
    n: int
    limit: int
    notes: Annotated[dict[str, Any], merge]


def add_note(state: Notes) -> dict:
    n = state["n"] + 1
    update: dict[str, Any] = {f"note-{n}": {"text": f"note number {n}", "step": n}}
    if n % 10 == 0 and "note-3" in state["notes"]:  # now and then an earlier note is rewritten, not only added to
        update["note-3"] = {"text": f"note 3, revised at {n}", "step": n}
    return {"n": n, "notes": update}


def build() -> Any:
    builder = StateGraph(Notes)
    builder.add_node("add_note", add_note)
    builder.add_edge(START, "add_note")
    builder.add_conditional_edges("add_note", lambda s: "add_note" if s["n"] < s["limit"] else END, ["add_note", END])
    return builder.compile()


def expected_notes(n: int) -> dict[str, Any]:
    """The notes after ``n`` steps, as the graph builds them."""
    notes: dict[str, Any] = {}
    for i in range(1, n + 1):
        notes = merge(notes, add_note({"n": i - 1, "limit": 0, "notes": notes})["notes"])
    return notes


def traced(steps: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LFTRACE_STORE", str(store))
    client_module.reset_clients()
    handler = CallbackHandler()
    build().invoke({"n": 0, "limit": steps, "notes": {}}, {"callbacks": [handler], "recursion_limit": 10 * steps})
    client_module.get_client().shutdown()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def test_a_dict_that_grows_at_every_step_grows_the_store_linearly(tmp_path, monkeypatch):
    traced(150, tmp_path / "small.db", monkeypatch)
    traced(300, tmp_path / "large.db", monkeypatch)
    ratio = stored_bytes(tmp_path / "large.db") / stored_bytes(tmp_path / "small.db")
    # each step's input held every note so far: before, 2x the steps was ~3.7x the bytes
    assert 1.7 < ratio < 2.3, ratio
    with sqlite3.connect(tmp_path / "large.db") as conn:
        longest_row = conn.execute("SELECT max(length(data)) FROM observations").fetchone()[0]
        refs = conn.execute("SELECT count(*) FROM observations WHERE data LIKE ?", (f"%{MAP_REF[1:]}%",)).fetchone()
    assert longest_row < 4000  # no row holds the notes
    assert refs[0] > 250


def test_every_step_reads_back_and_shows_its_full_notes_in_order(tmp_path, monkeypatch):
    steps = 80
    trace_id = traced(steps, tmp_path / "t.db", monkeypatch)
    with TraceStore(tmp_path / "t.db", create=False) as store:
        trace = store.get_trace(trace_id)
    nodes = sorted((o for o in trace.observations if o.name == "add_note"), key=lambda o: o.start_time)
    assert len(nodes) == steps
    for index, node in enumerate(nodes):
        notes = node.input["notes"]
        assert notes == expected_notes(index)
        assert list(notes) == list(expected_notes(index))  # the keys in the order the program holds them
        assert node.output["notes"] == {k: v for k, v in expected_notes(index + 1).items() if v["step"] == index + 1}
    assert nodes[-1].input["notes"]["note-3"]["text"] == f"note 3, revised at {(steps - 1) // 10 * 10}"
    assert trace.output["notes"] == expected_notes(steps)
    data = json.loads(json.dumps(trace.to_dict()))  # what `show --json` prints
    last = max((o for o in data["observations"] if o["name"] == "add_note"), key=lambda o: o["startTime"])
    assert len(last["input"]["notes"]) == steps - 1 and MAP_REF not in json.dumps(data)


def test_a_growing_dict_is_exported_in_full_from_the_store(monkeypatch):
    from lftrace.delivery import PAGE_OBSERVATIONS
    from support.otlp_receiver import attributes

    steps = 600  # more observations than PAGED_OVER: streamed from the store in pages, read as text
    with exported_long_run(
        monkeypatch,
        lambda callbacks: build().invoke(
            {"n": 0, "limit": steps, "notes": {}}, {"callbacks": callbacks, "recursion_limit": 10 * steps}
        ),
    ) as (client, handler, stored, spans, _):
        last = max((s for s in spans if s.name == "add_note"), key=lambda s: s.start_time_unix_nano)
        sent = attributes(last.attributes)
        sent_input = json.loads(sent.get("langfuse.observation.input") or sent["input.value"])
        assert sent_input["notes"] == expected_notes(steps - 1)
        assert pages_read_as_text(client.store, handler.last_trace_id, PAGE_OBSERVATIONS) == len(stored.observations)


def test_a_users_dict_holding_the_reference_key_reads_back_as_it_was(tmp_path, monkeypatch):
    odd = {MAP_REF: "not a reference", **{f"k{i}": i for i in range(MIN_SHARED_MAP)}}

    class State(TypedDict):
        odd: dict[str, Any]
        other: dict[str, Any]

    builder = StateGraph(State)
    builder.add_node("echo", lambda s: {"other": {f"o{i}": [i] for i in range(MIN_SHARED_MAP)}})
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke({"odd": odd, "other": {}}, {"callbacks": [handler]})
    trace = client_module.get_client().get_trace(handler.last_trace_id)
    echo = next(o for o in trace.observations if o.name == "echo")
    assert echo.input == {"odd": odd, "other": {}}
    assert echo.output == {"other": {f"o{i}": [i] for i in range(MIN_SHARED_MAP)}}
    assert trace.output["odd"] == odd


def test_a_note_changed_in_place_shows_as_it_was_at_each_step(tmp_path, monkeypatch):
    """A node that edits a value of the long dict in place (not through the reducer): the steps before still show
    the value as it was when they ran, the steps after the edit show the edit."""

    def edit_in_place(state: Notes) -> dict:
        n = state["n"] + 1
        if n == 50:
            state["notes"]["note-1"]["text"] = "edited in place"
        return {"n": n, "notes": {f"note-{n}": {"text": f"note number {n}", "step": n}}}

    builder = StateGraph(Notes)
    builder.add_node("add_note", edit_in_place)
    builder.add_edge(START, "add_note")
    builder.add_conditional_edges("add_note", lambda s: "add_note" if s["n"] < s["limit"] else END, ["add_note", END])
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke({"n": 0, "limit": 60, "notes": {}}, {"callbacks": [handler], "recursion_limit": 600})
    trace = client_module.get_client().get_trace(handler.last_trace_id)
    nodes = sorted((o for o in trace.observations if o.name == "add_note"), key=lambda o: o.start_time)
    texts = [node.input["notes"]["note-1"]["text"] for node in nodes[1:]]
    assert texts[:49] == ["note number 1"] * 49  # steps 2..50 ran before the edit
    assert texts[49:] == ["edited in place"] * 10
    assert [len(node.input["notes"]) for node in nodes] == list(range(60))


class Draft(TypedDict):
    n: int
    limit: int
    draft: str


def write_more(state: Draft) -> dict:
    n = state["n"] + 1
    return {"n": n, "draft": state["draft"] + f"Paragraph {n}: " + "more words about the plan. " * 3 + "\n"}


def drafting(steps: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    builder = StateGraph(Draft)
    builder.add_node("write_more", write_more)
    builder.add_edge(START, "write_more")
    builder.add_conditional_edges(
        "write_more", lambda s: "write_more" if s["n"] < s["limit"] else END, ["write_more", END]
    )
    monkeypatch.setenv("LFTRACE_STORE", str(store))
    client_module.reset_clients()
    handler = CallbackHandler()
    initial = {"n": 0, "limit": steps, "draft": ""}
    builder.compile().invoke(initial, {"callbacks": [handler], "recursion_limit": 10 * steps})
    client_module.get_client().shutdown()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def draft_after(n: int) -> str:
    draft = ""
    for i in range(n):
        draft = write_more({"n": i, "limit": 0, "draft": draft})["draft"]
    return draft


def test_a_text_appended_to_at_every_step_grows_the_store_linearly_and_reads_back_whole(tmp_path, monkeypatch):
    drafting(150, tmp_path / "small.db", monkeypatch)
    trace_id = drafting(300, tmp_path / "large.db", monkeypatch)
    ratio = stored_bytes(tmp_path / "large.db") / stored_bytes(tmp_path / "small.db")
    # each step's input held the whole draft: before, 2x the steps was ~3.8x the bytes
    assert 1.4 < ratio < 2.2, ratio
    assert len(draft_after(150)) > 5 * MIN_SHARED_TEXT
    with TraceStore(tmp_path / "large.db", create=False) as store:
        trace = store.get_trace(trace_id)
        nodes = sorted((o for o in trace.observations if o.name == "write_more"), key=lambda o: o.start_time)
        assert [node.input["draft"] for node in nodes] == [draft_after(i) for i in range(300)]
        assert trace.output["draft"] == draft_after(300)
        # the export reads the texts from the store's pieces as JSON text: the same bytes
        assert pages_read_as_text(store, trace_id, 100) == len(trace.observations)


def test_a_users_dict_holding_the_text_reference_key_reads_back_as_it_was(tmp_path, monkeypatch):
    odd = {TEXT_REF: "x" * MIN_SHARED_TEXT, "long": "y" * MIN_SHARED_TEXT}
    builder = StateGraph(dict)
    builder.add_node("echo", lambda s: {"reply": "z" * MIN_SHARED_TEXT})
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "t.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke(odd, {"callbacks": [handler]})
    trace = client_module.get_client().get_trace(handler.last_trace_id)
    echo = next(o for o in trace.observations if o.name == "echo")
    assert echo.input == odd
    assert echo.output == {"reply": "z" * MIN_SHARED_TEXT}


def test_a_dict_whose_stored_nodes_are_gone_reads_back_saying_so(tmp_path, monkeypatch):
    trace_id = traced(60, tmp_path / "t.db", monkeypatch)
    with sqlite3.connect(tmp_path / "t.db") as conn:  # a damaged store: the first node of every chain deleted
        gone = conn.execute("DELETE FROM blobs WHERE prev IS NULL").rowcount
    assert gone > 0
    with TraceStore(tmp_path / "t.db", create=False) as store:
        trace = store.get_trace(trace_id)
        last = max((o for o in trace.observations if o.name == "add_note"), key=lambda o: o.start_time)
        assert "<missing shared dict>" in last.input["notes"]
        assert last.input["notes"]["note-59"] == {"text": "note number 59", "step": 59}  # what is left is read
        assert pages_read_as_text(store, trace_id, 50) == len(trace.observations)


class Memory(BaseModel):
    """A model held in a state field, with a list that grows (``state["memory"].facts``)."""

    facts: list[str] = Field(default_factory=list)


class Scratch(TypedDict):
    n: int
    limit: int
    scratch: dict[str, Any]  # {"history": [...], "last": n}: a list that grows one level down
    memory: Memory


def look(state: Scratch) -> dict:
    n = state["n"] + 1
    return {
        "n": n,
        "scratch": {"history": [*state["scratch"].get("history", []), f"step {n}: read source {n}"], "last": n},
    }


def remember(state: Scratch) -> dict:
    memory = state["memory"]
    facts = memory.facts if isinstance(memory, Memory) else memory.get("facts", [])
    return {"memory": Memory(facts=[*facts, f"fact {state['n']}"])}  # its output: the model alone


def two_node_loop(state: type, first: tuple[str, Any], second: tuple[str, Any]) -> Any:
    """``first -> second -> first ...`` on ``state`` until its ``n`` reaches its ``limit``."""
    (first_name, first_node), (second_name, second_node) = first, second
    builder = StateGraph(state)
    builder.add_node(first_name, first_node)
    builder.add_node(second_name, second_node)
    builder.add_edge(START, first_name)
    builder.add_edge(first_name, second_name)
    builder.add_conditional_edges(second_name, lambda s: first_name if s["n"] < s["limit"] else END, [first_name, END])
    return builder.compile()


def traced_loop(graph: Any, loop_input: dict[str, Any], store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``graph`` run on ``loop_input`` with lftrace storing to ``store``; the trace id (client shut down)."""
    monkeypatch.setenv("LFTRACE_STORE", str(store))
    client_module.reset_clients()
    handler = CallbackHandler()
    graph.invoke(loop_input, {"callbacks": [handler], "recursion_limit": 10 * loop_input["limit"]})
    client_module.get_client().shutdown()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def stored_linearly(traced: Any, steps: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``traced`` at ``steps`` // 2 and ``steps`` steps: the store at most ~2x (linear), no observation row
    holding a growing list (each under 2,000 bytes); the id of the longer run's trace, in tmp_path / "large.db"."""
    traced(steps // 2, tmp_path / "small.db", monkeypatch)
    trace_id = traced(steps, tmp_path / "large.db", monkeypatch)
    ratio = stored_bytes(tmp_path / "large.db") / stored_bytes(tmp_path / "small.db")
    assert 1.6 < ratio < 2.3, ratio
    with sqlite3.connect(tmp_path / "large.db") as conn:
        longest_row = conn.execute("SELECT max(length(data)) FROM observations").fetchone()[0]
    assert longest_row < 2000
    return trace_id


def scratching() -> Any:
    return two_node_loop(Scratch, ("look", look), ("remember", remember))


def scratch_input(steps: int) -> dict[str, Any]:
    return {"n": 0, "limit": steps, "scratch": {}, "memory": {"facts": []}}


def traced_scratch(steps: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return traced_loop(scratching(), scratch_input(steps), store, monkeypatch)


def test_a_list_that_grows_one_level_down_grows_the_store_linearly_and_reads_back_whole(tmp_path, monkeypatch):
    """A list inside a dict or a model held in a state field: each step's input and output held it whole, and
    the store kept every copy (2,000 steps: 176-247 MB, the square). Now it is a chain of list nodes one level
    down, and every step still reads back, shows and exports its whole history."""
    steps = 300
    trace_id = stored_linearly(traced_scratch, steps, tmp_path, monkeypatch)  # no row holds the history or the facts
    with TraceStore(tmp_path / "large.db", create=False) as store:
        trace = store.get_trace(trace_id)
        nodes = sorted((o for o in trace.observations if o.name == "look"), key=lambda o: o.start_time)
        assert len(nodes) == steps
        memories = sorted((o for o in trace.observations if o.name == "remember"), key=lambda o: o.start_time)
        assert len(memories) == steps
        for index, (node, memory) in enumerate(zip(nodes, memories, strict=True)):
            history = [f"step {i}: read source {i}" for i in range(1, index + 1)]
            facts = [f"fact {i}" for i in range(1, index + 1)]
            assert node.input["scratch"] == ({"history": history, "last": index} if index else {})
            assert node.input["memory"] == {"facts": facts}
            assert node.output["scratch"]["history"] == [*history, f"step {index + 1}: read source {index + 1}"]
            assert memory.output == {"memory": {"facts": [*facts, f"fact {index + 1}"]}}
        assert trace.output["memory"]["facts"][-1] == f"fact {steps}"
        data = json.dumps(trace.to_dict())  # what `show --json` prints
        assert REF not in data and len(json.loads(data)["output"]["scratch"]["history"]) == steps
        # the export reads the lists from the store's nodes as JSON text: the same bytes
        assert pages_read_as_text(store, trace_id, 100) == len(trace.observations)


def test_a_list_one_level_down_is_exported_in_full_from_the_store(monkeypatch):
    from support.otlp_receiver import attributes

    steps = 600  # more observations than PAGED_OVER: streamed from the store in pages, read as text
    with exported_long_run(
        monkeypatch,
        lambda callbacks: scratching().invoke(
            scratch_input(steps), {"callbacks": callbacks, "recursion_limit": 10 * steps}
        ),
    ) as (_client, _handler, _stored, spans, _):
        last = max((s for s in spans if s.name == "look"), key=lambda s: s.start_time_unix_nano)
        remembered = max((s for s in spans if s.name == "remember"), key=lambda s: s.start_time_unix_nano)
        sent = attributes(last.attributes)
        sent_input = json.loads(sent.get("langfuse.observation.input") or sent["input.value"])
        assert sent_input["scratch"]["history"] == [f"step {i}: read source {i}" for i in range(1, steps)]
        assert sent_input["memory"]["facts"] == [f"fact {i}" for i in range(1, steps)]
        sent = attributes(remembered.attributes)
        sent_output = json.loads(sent.get("langfuse.observation.output") or sent["output.value"])
        assert sent_output == {"memory": {"facts": [f"fact {i}" for i in range(1, steps + 1)]}}


class Team(TypedDict):
    n: int
    limit: int
    # {"researcher": {"notes": [...], "log": {"entries": [...]}}}: lists that grow two and three levels down, the
    # entries appended to in place (the same list object at every step)
    team: dict[str, Any]
    agents: list[dict[str, Any]]  # [{"name": "a", "tasks": [...]}, {"name": "b"}]: a list inside a short list


SEEN_AT = 100  # the step that changes an earlier entry in place


def research(state: Team) -> dict:
    n = state["n"] + 1
    researcher = state["team"]["researcher"]
    entries = researcher["log"]["entries"]
    if n == SEEN_AT:
        entries[-1]["seen"] = True  # the entry the step before recorded, changed in place: it showed it unchanged
    entries.append({"step": n})  # in place too
    return {"n": n, "team": {"researcher": {"notes": [*researcher["notes"], f"note {n}"], "log": {"entries": entries}}}}


def delegate(state: Team) -> dict:
    first, second = state["agents"]
    return {"agents": [{**first, "tasks": [*first["tasks"], f"task {state['n']}"]}, second]}


def teaming() -> Any:
    return two_node_loop(Team, ("research", research), ("delegate", delegate))


def team_input(steps: int) -> dict[str, Any]:
    return {
        "n": 0,
        "limit": steps,
        "team": {"researcher": {"notes": [], "log": {"entries": []}}},
        "agents": [{"name": "a", "tasks": []}, {"name": "b"}],
    }


def researcher_at(k: int) -> dict[str, Any]:
    """``state["team"]["researcher"]`` after ``k`` steps."""
    entries = [{"step": i, "seen": True} if i == SEEN_AT - 1 and k >= SEEN_AT else {"step": i} for i in range(1, k + 1)]
    return {"notes": [f"note {i}" for i in range(1, k + 1)], "log": {"entries": entries}}


def agents_at(k: int) -> list[dict[str, Any]]:
    """``state["agents"]`` after ``k`` delegations."""
    return [{"name": "a", "tasks": [f"task {i}" for i in range(1, k + 1)]}, {"name": "b"}]


def traced_team(steps: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return traced_loop(teaming(), team_input(steps), store, monkeypatch)


def test_lists_that_grow_levels_down_or_in_a_list_of_dicts_grow_the_store_linearly_and_read_back_whole(
    tmp_path, monkeypatch
):
    """A list two or three levels down (``state["team"]["researcher"]["log"]["entries"]``), one appended to and
    changed in place, and one in a dict inside a short list (``state["agents"][0]["tasks"]``): each step's input and output
    held them whole (1,000 / 2,000 steps: 100 / 349 MB stored, 462 MB RSS). Now they are chains of list nodes
    where they sit, and every step reads back, shows and exports them whole, as they were at that step."""
    steps = 300
    trace_id = stored_linearly(traced_team, steps, tmp_path, monkeypatch)  # no row holds the notes, entries or tasks
    with TraceStore(tmp_path / "large.db", create=False) as store:
        trace = store.get_trace(trace_id)
        studies = sorted((o for o in trace.observations if o.name == "research"), key=lambda o: o.start_time)
        delegations = sorted((o for o in trace.observations if o.name == "delegate"), key=lambda o: o.start_time)
        assert len(studies) == len(delegations) == steps
        for index, (study, delegation) in enumerate(zip(studies, delegations, strict=True)):
            assert study.input["team"] == {"researcher": researcher_at(index)}
            assert study.input["agents"] == agents_at(index)
            assert study.output["team"] == {"researcher": researcher_at(index + 1)}
            assert delegation.input["team"] == {"researcher": researcher_at(index + 1)}
            assert delegation.output == {"agents": agents_at(index + 1)}
        assert trace.output["team"] == {"researcher": researcher_at(steps)}
        data = json.dumps(trace.to_dict())  # what `show --json` prints
        assert REF not in data and json.loads(data)["output"]["agents"] == agents_at(steps)
        # the export reads the lists from the store's nodes as JSON text: the same bytes
        assert pages_read_as_text(store, trace_id, 100) == len(trace.observations)


def test_lists_levels_down_are_exported_in_full_from_the_store(monkeypatch):
    from support.otlp_receiver import attributes

    steps = 600  # more observations than PAGED_OVER: streamed from the store in pages, read as text
    with exported_long_run(
        monkeypatch,
        lambda callbacks: teaming().invoke(team_input(steps), {"callbacks": callbacks, "recursion_limit": 10 * steps}),
    ) as (_client, _handler, _stored, spans, _):
        last = max((s for s in spans if s.name == "research"), key=lambda s: s.start_time_unix_nano)
        delegated = max((s for s in spans if s.name == "delegate"), key=lambda s: s.start_time_unix_nano)
        sent = attributes(last.attributes)
        sent_input = json.loads(sent.get("langfuse.observation.input") or sent["input.value"])
        assert sent_input["team"] == {"researcher": researcher_at(steps - 1)}
        assert sent_input["agents"] == agents_at(steps - 1)
        sent = attributes(delegated.attributes)
        sent_output = json.loads(sent.get("langfuse.observation.output") or sent["output.value"])
        assert sent_output == {"agents": agents_at(steps)}


# A user's dicts that hold the keys the store's references use, at every level the reader looks for references
# (a value of the state, and one to five levels of short dicts and lists below it), beside lists that grow at those
# levels (so the store writes them as references around the odd dicts). Values the user gave: they must read back,
# show and export as they were, never as a reference to another list ("<missing shared list ...>") or another's.
ODD_KEYS = {
    "level1": {MAP_REF: "not a map", "n": 1},
    "level1_list_ref": {REF: "not a list"},
    "level2": {"inner": {TEXT_REF: "not a text"}},
    "level3": [{"a": {REF: "not a list either"}}],
    "level4": {"a": {"b": {"c": {REF: 5}}}},
    "level5": [[[[{ESCAPED: {REF: "nested escape"}}]]]],
}


class Odd(TypedDict):
    n: int
    limit: int
    odd: dict[str, Any]
    team: dict[str, Any]  # {"log": {"lines": [...]}, "odd": {...}}: a list growing two levels down, odd dicts beside


def odd_step(state: Odd) -> dict:
    n = state["n"] + 1
    lines = [*state["team"]["log"]["lines"], f"line {n}"]
    return {"n": n, "team": {"log": {"lines": lines, "marker": {REF: f"step {n}"}}, "odd": ODD_KEYS}}


def odd_echo(state: Odd) -> dict:
    return {"odd": {**ODD_KEYS, "at": state["n"]}}


def odd_input(steps: int) -> dict[str, Any]:
    return {"n": 0, "limit": steps, "odd": ODD_KEYS, "team": {"log": {"lines": [], "marker": {}}, "odd": ODD_KEYS}}


def odd_team_at(k: int) -> dict[str, Any]:
    return {"log": {"lines": [f"line {i}" for i in range(1, k + 1)], "marker": {REF: f"step {k}"}}, "odd": ODD_KEYS}


def test_a_users_dicts_holding_reference_keys_levels_down_read_back_show_and_export_as_they_were(tmp_path, monkeypatch):
    from support.otlp_receiver import attributes

    steps = 400  # 1,201 observations: more than PAGED_OVER, so the export streams the store in pages
    graph = two_node_loop(Odd, ("odd_step", odd_step), ("odd_echo", odd_echo))
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "odd.db"))
    with exported_long_run(
        monkeypatch,
        lambda callbacks: graph.invoke(odd_input(steps), {"callbacks": callbacks, "recursion_limit": 10 * steps}),
    ) as (client, handler, stored, spans, _):
        trace_id = handler.last_trace_id
        steps_seen = [o for o in stored.observations if o.name == "odd_step"]
        assert len(steps_seen) == steps
        for index, obs in enumerate(steps_seen):
            assert obs.input["odd"] == ({**ODD_KEYS, "at": index} if index else ODD_KEYS)
            assert obs.input["team"] == (odd_team_at(index) if index else odd_input(0)["team"])
            assert obs.output["team"] == odd_team_at(index + 1)
        assert stored.output["odd"] == {**ODD_KEYS, "at": steps}
        assert stored.output["team"] == odd_team_at(steps)
        # the export: from the store's pages, as JSON text, the same values
        assert pages_read_as_text(client.store, trace_id, 100) == len(stored.observations)
        last = max((s for s in spans if s.name == "odd_step"), key=lambda s: s.start_time_unix_nano)
        sent = attributes(last.attributes)
        sent_input = json.loads(sent.get("langfuse.observation.input") or sent["input.value"])
        assert sent_input == {
            "n": steps - 1,
            "limit": steps,
            "odd": {**ODD_KEYS, "at": steps - 1},
            "team": odd_team_at(steps - 1),
        }
    # the store still shares the growing list around the odd dicts: no row holds the whole log
    with sqlite3.connect(tmp_path / "odd.db") as conn:
        assert conn.execute("SELECT max(length(data)) FROM observations").fetchone()[0] < 3000
    # `lftrace show --json`, a real subprocess reading the store
    shown = subprocess.run(
        [LFTRACE, "show", trace_id, "--json"], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["output"]["odd"] == {**ODD_KEYS, "at": steps}
    shown_steps = [o for o in data["observations"] if o["name"] == "odd_step"]
    assert shown_steps[-1]["input"]["team"] == odd_team_at(steps - 1)
    assert "<missing shared" not in shown.stdout


class Crew(TypedDict):
    n: int
    limit: int
    crew: list[dict[str, Any]]  # agents, each with a log that grows when its turn comes


def crew_step(state: Crew) -> dict:
    n = state["n"] + 1
    crew = list(state["crew"])
    turn = n % len(crew)
    crew[turn] = {**crew[turn], "log": [*crew[turn]["log"], f"step {n}: agent {turn} reports"]}
    return {"n": n, "crew": crew}


def crew_at(k: int, size: int) -> list[dict[str, Any]]:
    """``state["crew"]`` of ``size`` agents after ``k`` steps."""
    return [
        {"name": f"agent {a}", "log": [f"step {n}: agent {a} reports" for n in range(1, k + 1) if n % size == a]}
        for a in range(size)
    ]


def traced_crew(steps: int, size: int, store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    graph = StateGraph(Crew)
    graph.add_node("crew_step", crew_step)
    graph.add_edge(START, "crew_step")
    graph.add_conditional_edges("crew_step", lambda s: "crew_step" if s["n"] < s["limit"] else END, ["crew_step", END])
    start = {"n": 0, "limit": steps, "crew": [{"name": f"agent {a}", "log": []} for a in range(size)]}
    return traced_loop(graph.compile(), start, store, monkeypatch)


@pytest.mark.parametrize("size", [7, 10])
def test_logs_growing_side_by_side_grow_the_store_linearly_and_read_back_whole(tmp_path, monkeypatch, size):
    """Seven or ten agents' logs, each appended to when its turn comes round: each log must find its version of
    a turn before among the lists the handler, the writer and the store remember. With four captures and eight
    stored lists remembered, seven logs were copied and stored whole again at each turn (1,000 / 2,000 steps:
    7.5 / 24.7 MB; now 4.8 / 9.2 MB). Ten agents are a long list (``MIN_SHARED``), which was stored as a list of
    whole agents, log included (80 MB at 2,000 steps); now it is walked as a short one (``WALKED_LIST``)."""
    steps = 700
    traced_crew(steps // 2, size, tmp_path / "small.db", monkeypatch)
    trace_id = traced_crew(steps, size, tmp_path / "large.db", monkeypatch)
    ratio = stored_bytes(tmp_path / "large.db") / stored_bytes(tmp_path / "small.db")
    assert 1.6 < ratio < 2.3, ratio  # before: 2.53 (seven), 3.64 (ten)
    # the longest row holds the logs while they are short (under MIN_SHARED items, kept in the row): it does not
    # grow with the steps
    longest = []
    for name in ("small.db", "large.db"):
        with sqlite3.connect(tmp_path / name) as conn:
            longest.append(conn.execute("SELECT max(length(data)) FROM observations").fetchone()[0])
    assert longest[1] <= longest[0] < 6000, longest
    with TraceStore(tmp_path / "large.db", create=False) as store:
        trace = store.get_trace(trace_id)
        turns = sorted((o for o in trace.observations if o.name == "crew_step"), key=lambda o: o.start_time)
        assert len(turns) == steps
        for index in (0, 1, size, 350, steps - 1):
            assert turns[index].input["crew"] == crew_at(index, size)
            assert turns[index].output["crew"] == crew_at(index + 1, size)
        assert trace.output["crew"] == crew_at(steps, size)
        assert pages_read_as_text(store, trace_id, 100) == len(trace.observations)
