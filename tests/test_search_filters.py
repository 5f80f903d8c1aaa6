"""TraceFilter, FTS5 search and the sessions query against a store built from real LangGraph/LangChain runs."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lftrace.errors import InputError
from lftrace.filters import TraceFilter
from lftrace.model import Trace
from lftrace.runner import execute
from lftrace.store import TraceStore

SAMPLES = Path(__file__).resolve().parents[1] / "sample_graphs"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Trace]:
    """Real runs of the samples, with sessions, users and tags, in one store (built once for the module)."""
    store_path = tmp_path_factory.mktemp("search") / "traces.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("LFTRACE_STORE", str(store_path))
    from lftrace import client as client_module

    client_module.reset_clients()
    runs = {
        "paris": (f"{SAMPLES}/agent.py:graph", "What is the weather in Paris?", "s-weather", "ada", ["nightly"]),
        "oslo": (f"{SAMPLES}/agent.py:graph", "What is the weather in Oslo?", "s-weather", "ada", ["nightly"]),
        "math": (f"{SAMPLES}/multi_agent.py:graph", "What is 6 times 7?", "s-math", "bob", ["smoke"]),
        "chat": (f"{SAMPLES}/chatbot.py:graph", "What is Langfuse?", None, None, []),
        "joke": (f"{SAMPLES}/joke_chain.py:chain", '{"topic": "penguins"}', None, "bob", []),
        "fail": (f"{SAMPLES}/failing.py:chain", "go", "s-math", "bob", ["smoke"]),
    }
    traces: dict[str, Trace] = {}
    try:
        for key, (target, text, session, user, tags) in runs.items():
            result = execute(target, text, session_id=session, user_id=user, tags=tags)
            assert result.trace is not None, key
            traces[key] = result.trace
            time.sleep(0.002)  # distinct start times
        # a run stopped half-way: a real trace, marked as Ctrl-C'd by the handler would mark it
        stopped = replace(traces["chat"], id="f" * 32, metadata={"interrupted": True, "cancelled": True})
        stopped.observations = [replace(o, trace_id=stopped.id, end_time=None) for o in stopped.observations[:1]]
        # a trace written while its run was still going (no end yet)
        partial = replace(traces["chat"], id="e" * 32, end_time=None)
        partial.observations = [replace(o, trace_id=partial.id, end_time=None) for o in partial.observations[:1]]
        with TraceStore(store_path) as store:
            store.write_traces([stopped, partial])
        traces["stopped"], traces["partial"] = stopped, partial
    finally:
        client_module.reset_clients()
        mp.undo()
    traces["_store"] = store_path  # type: ignore[assignment]
    return traces


def ids(recorded, **criteria) -> set[str]:
    with TraceStore(recorded["_store"], create=False) as store:
        return {s.id for s in store.list_traces(limit=None, where=TraceFilter(**criteria))}


def key_of(recorded, found: set[str]) -> set[str]:
    return {k for k, t in recorded.items() if k != "_store" and t.id in found}


def test_search_finds_inputs_outputs_and_error_messages(recorded):
    assert key_of(recorded, ids(recorded, search="Oslo")) == {"oslo"}  # input and output
    assert key_of(recorded, ids(recorded, search="18°C sunny")) == {"paris"}  # a tool result in the output
    assert key_of(recorded, ids(recorded, search="budget")) == {"fail"}  # the error message
    assert key_of(recorded, ids(recorded, search="weath")) == {"paris", "oslo"}  # a word's start
    assert key_of(recorded, ids(recorded, search="penguins")) == {"joke"}
    assert ids(recorded, search="nothing-like-this-anywhere") == set()
    # FTS syntax in the user's text is just words
    assert key_of(recorded, ids(recorded, search='Oslo" OR "Paris')) == set()
    with pytest.raises(InputError, match="no words"):
        TraceFilter(search="!!!")


def test_every_filter(recorded):
    assert key_of(recorded, ids(recorded, status="error")) == {"fail"}
    stopped = key_of(recorded, ids(recorded, status="cancelled")) | key_of(
        recorded, ids(recorded, status="interrupted")
    )
    assert stopped == {"stopped"}  # 'cancelled' once Ctrl-C has its own status, 'interrupted' before
    assert key_of(recorded, ids(recorded, status="running")) == {"partial"}
    assert not key_of(recorded, ids(recorded, status="ok")) & {"fail", "stopped", "partial"}
    assert key_of(recorded, ids(recorded, name=recorded["math"].name)) == {"math"}
    assert key_of(recorded, ids(recorded, model="fake-gpt-4o-mini")) == {"paris", "oslo", "math", "chat", "joke"}
    assert key_of(recorded, ids(recorded, tags=("smoke",))) == {"math", "fail"}
    assert key_of(recorded, ids(recorded, tags=("smoke", "nightly"))) == set()
    assert key_of(recorded, ids(recorded, user_id="bob")) == {"math", "joke", "fail"}
    assert key_of(recorded, ids(recorded, session_id="s-weather")) == {"paris", "oslo"}
    start = recorded["math"].timestamp
    assert key_of(recorded, ids(recorded, since_ns=start)) == {"math", "chat", "joke", "fail", "stopped", "partial"}
    assert key_of(recorded, ids(recorded, until_ns=start)) == {"paris", "oslo"}
    slowest = max((t for k, t in recorded.items() if k != "_store" and t.latency), key=lambda t: t.latency)
    assert ids(recorded, min_latency=slowest.latency) == {slowest.id}
    biggest = max(t.total_tokens for k, t in recorded.items() if k != "_store")
    assert key_of(recorded, ids(recorded, min_tokens=biggest)) == {
        k for k, t in recorded.items() if k != "_store" and t.total_tokens == biggest
    }
    assert ids(recorded, min_cost=0.0) == set()  # the fake model has no price: no trace has a cost
    # combined with AND
    assert key_of(recorded, ids(recorded, user_id="bob", search="budget", tags=("smoke",))) == {"fail"}
    assert key_of(recorded, ids(recorded, user_id="ada", status="error")) == set()


def test_bad_filter_values_are_usage_errors():
    with pytest.raises(InputError, match="unknown status 'fine'"):
        TraceFilter(status="fine")
    with pytest.raises(InputError, match="--min-tokens must be 0 or more"):
        TraceFilter(min_tokens=-1)


def test_the_same_filter_drives_iter_traces_and_sessions(recorded):
    with TraceStore(recorded["_store"], create=False) as store:
        full = list(store.iter_traces(where=TraceFilter(user_id="bob", status="ok")))
        assert {t.id for t in full} == {recorded["math"].id, recorded["joke"].id}
        sessions = {s.id: s for s in store.list_sessions()}
    assert set(sessions) == {"s-weather", "s-math"}
    weather, math = sessions["s-weather"], sessions["s-math"]
    assert weather.traces == 2 and weather.user_ids == ["ada"] and weather.status == "ok"
    assert weather.total_tokens == recorded["paris"].total_tokens + recorded["oslo"].total_tokens
    assert weather.first == recorded["paris"].timestamp and weather.last == recorded["oslo"].end_time
    assert math.traces == 2 and math.errors == 1 and math.status == "1 error"
    assert list(sessions) == ["s-math", "s-weather"]  # the most recently active first


def test_the_migration_backfills_the_search_index_of_an_existing_store(tmp_path, recorded):
    """A store written before search existed (schema 1) gets its traces indexed when it is opened."""
    old = tmp_path / "old.db"
    with TraceStore(old) as store:
        store.write_traces([recorded["paris"], recorded["fail"]])
    conn = sqlite3.connect(old)
    conn.executescript(
        "DROP TABLE trace_search; DROP INDEX observations_model; "
        "DELETE FROM _migrations WHERE version >= 2; PRAGMA user_version = 1;"
    )
    conn.close()
    with TraceStore(old) as store:
        assert [s.id for s in store.list_traces(where=TraceFilter(search="budget"))] == [recorded["fail"].id]
        assert [s.id for s in store.list_traces(where=TraceFilter(search="Paris"))] == [recorded["paris"].id]


def test_a_rewritten_or_merged_trace_is_searched_as_it_is_now(tmp_path, recorded):
    path = tmp_path / "rewrite.db"
    paris = recorded["paris"]
    with TraceStore(path) as store:
        store.write_traces([paris])
        changed = replace(paris, output={"messages": [{"role": "assistant", "content": "Tokyo instead"}]}, input=None)
        store.write_traces([changed])
        assert store.list_traces(where=TraceFilter(search="Paris")) == []
        assert [s.id for s in store.list_traces(where=TraceFilter(search="Tokyo"))] == [paris.id]
        store.write_traces([replace(changed, output={"answer": "Lisbon"}, observations=[])], merge=True)
        assert [s.id for s in store.list_traces(where=TraceFilter(search="Lisbon"))] == [paris.id]


VISION_GRAPH = """
import base64, random
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

IMAGE = base64.b64encode(random.Random(7).randbytes(30_000)).decode()


def draw(state: MessagesState):
    return {"messages": [AIMessage(content=[
        {"type": "text", "text": "Here is your lighthouse drawing."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
        {"type": "image", "source_type": "base64", "mime_type": "image/png", "data": IMAGE},
        {"type": "text", "text": "ref QmFzZTY0IGlzIGZpbmU"},
    ])]}


builder = StateGraph(MessagesState)
builder.add_node("draw", draw)
builder.add_edge(START, "draw")
builder.add_edge("draw", END)
graph = builder.compile()
"""


def test_images_and_other_base64_payloads_are_not_indexed_the_words_around_them_are(tmp_path, monkeypatch):
    """A vision app's image (a data URI, or bare base64) would be thousands of random words in the index."""
    (tmp_path / "vision.py").write_text(VISION_GRAPH, encoding="utf-8")
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "traces.db"))
    from lftrace import client as client_module

    client_module.reset_clients()
    try:
        result = execute(f"{tmp_path / 'vision.py'}:graph", "Draw a lighthouse")
    finally:
        client_module.reset_clients()
    assert result.trace is not None
    with TraceStore(tmp_path / "traces.db", create=False) as store:
        found = store.list_traces(where=TraceFilter(search="lighthouse drawing"))
        assert [s.id for s in found] == [result.trace.id]
        # a short base64-looking word is a word (an id someone may look for)
        assert len(store.list_traces(where=TraceFilter(search="QmFzZTY0IGlzIGZpbmU"))) == 1
        (body,) = store._read(lambda c: c.execute("SELECT body FROM trace_search").fetchone())
    assert "Draw a lighthouse" in body and "Here is your lighthouse drawing." in body
    assert len(body) < 500, body  # 40,000 characters of base64, twice, left out
