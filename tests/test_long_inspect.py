"""Inspecting long traces: ``show --json`` and ``export`` stream from the store and give what ``get_trace``
gives; ``list``, ``stats`` and ``diff`` count a 3,000-observation trace right.

Real SQLite stores, real ``lftrace`` subprocesses; one trace from a real LangGraph loop (shared message lists
across pages), one of 3,000 observations written through the store API (children before parents, errors,
costs). Timings are in bench/long_run.py --inspect, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lftrace import client as client_module
from lftrace.langchain import CallbackHandler
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore
from support.traces import BASE_NS, new_id

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sample_graphs.long_loop import build_graph, loop_input, run_config  # noqa: E402

LFTRACE = str(Path(sys.executable).with_name("lftrace"))
MS = 1_000_000


def lftrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([LFTRACE, *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def as_json(trace: Trace) -> dict:
    """What a reader of ``show --json`` gets for this trace: its dict as parsed JSON."""
    return json.loads(json.dumps(trace.to_dict(), ensure_ascii=False, default=str))


def wide_trace(count: int, *, answer: str = "done", seed: int = 0) -> Trace:
    """A trace of ``count`` observations: a root, nodes under it, a generation (tokens, cost) under every
    third node, an error in one node, and every tenth node starting 1 ms before its parent (clock skew):
    children that come before their parents in start order."""
    tid = new_id()
    root = Observation(
        id=new_id(8),
        trace_id=tid,
        parent_id=None,
        type="CHAIN",
        name="agent",
        start_time=BASE_NS + 5 * MS,
        end_time=BASE_NS + (count + 10) * MS,
        input={"messages": [{"role": "user", "content": "go"}]},
        output={"messages": [{"role": "assistant", "content": answer}]},
    )
    observations = [root]
    node: Observation | None = None
    for index in range(1, count):
        start = BASE_NS + (index + 5) * MS
        if index % 3 == 0 and node is not None:
            observations.append(
                Observation(
                    id=new_id(8),
                    trace_id=tid,
                    parent_id=node.id,
                    type="GENERATION",
                    name="ChatModel",
                    start_time=node.start_time - MS if index % 10 == 0 else start,
                    end_time=start + MS // 2,
                    model="gpt-4o-mini",
                    input=[{"role": "user", "content": f"step {index}"}],
                    output={"role": "assistant", "content": f"reply {index} {answer if index == count - 1 else ''}"},
                    usage_details={"input": 10 + index % 7, "output": 3, "total": 13 + index % 7},
                    cost_details={
                        "input": 0.0000015 * index,
                        "output": 0.000001,
                        "total": 0.0000015 * index + 0.000001,
                    },
                )
            )
            continue
        node = Observation(
            id=new_id(8),
            trace_id=tid,
            parent_id=root.id,
            type="SPAN",
            name="think" if index % 2 else "critic",
            start_time=start,
            end_time=start + MS // 2,
            input={"step": index, "seed": seed},
            output={"note": f"n{index}", "ok": True},
            metadata={"langgraph_step": index, "langgraph_node": "think" if index % 2 else "critic"},
            level="ERROR" if index == 500 else "DEFAULT",
            status_message="ValueError: handled" if index == 500 else None,
        )
        observations.append(node)
    end = max(o.end_time or 0 for o in observations)
    return Trace(
        id=tid, name="agent", timestamp=BASE_NS + 5 * MS, end_time=end, observations=observations, tags=["long"]
    )


@pytest.fixture
def long_store(isolated_env):
    """Two 3,000-observation traces (the second with another final answer) written through the store API."""
    first, second = wide_trace(3000), wide_trace(3000, answer="other")
    with TraceStore(isolated_env) as store:
        store.write_traces([first])
        store.write_traces([second])
        expected = [store.get_trace(first.id), store.get_trace(second.id)]
    return isolated_env, expected


def test_stored_observations_stream_in_get_trace_order_across_pages(long_store):
    path, (first, _) = long_store
    with TraceStore(path, create=False) as store:
        streamed = list(store.iter_observations(first.id, size=7))
        outline = store.trace_outline(first.id)
    assert [o.id for o in streamed] == [o.id for o in first.observations]
    by_id = {o.id: o for o in first.observations}
    skewed = [o for o in first.observations if o.parent_id and o.start_time < by_id[o.parent_id].start_time]
    assert skewed  # some children start before their parents, and still come after them
    assert [o.to_dict() for o in streamed] == [o.to_dict() for o in first.observations]
    assert outline is not None
    assert [o.id for o in outline.observations] == [o.id for o in first.observations]
    assert outline.observations[1].input is None  # the outline reads no values
    fields = ("latency", "total_cost", "status", "handled_errors", "level")
    assert {f: getattr(outline, f) for f in fields} == {f: getattr(first, f) for f in fields}
    assert first.handled_errors == 1 and first.total_cost is not None


def test_show_json_and_export_of_a_long_trace_give_every_observation(long_store, tmp_path):
    _, (first, _) = long_store
    shown = json.loads(lftrace("show", first.id, "--json").stdout)
    assert shown == as_json(first)
    assert len(shown["observations"]) == 3000
    assert shown["totalCost"] == pytest.approx(first.total_cost)
    assert shown["handledErrors"] == 1 and shown["status"] == "ok"

    lftrace("export", first.id[:10], "-o", str(tmp_path / "one.json"))
    assert json.loads((tmp_path / "one.json").read_text()) == shown
    assert (tmp_path / "one.json").stat().st_mode & 0o777 == 0o600
    lines = lftrace("export", "--tag", "long").stdout.splitlines()
    assert len(lines) == 2  # JSONL, oldest first
    assert json.loads(lines[0]) == shown

    # a terminal that cannot take UTF-8: \uXXXX escapes, the same JSON
    ascii_env = dict(os.environ, PYTHONIOENCODING="ascii")
    text = lftrace("show", first.id, "--json", env=ascii_env).stdout
    assert text.isascii() and json.loads(text) == shown


def test_list_stats_and_diff_count_a_long_trace(long_store):
    _, (first, second) = long_store
    rows = {row["id"]: row for row in json.loads(lftrace("list", "--json").stdout)}
    row = rows[first.id]
    assert row["observationCount"] == 3000
    assert row["totalTokens"] == first.total_tokens > 0
    assert row["totalCost"] == pytest.approx(first.total_cost)
    assert row["status"] == "ok" and row["handledErrors"] == 1

    stats = json.loads(lftrace("stats", "--json").stdout)
    assert stats["traces"] == 2
    models = {m["name"]: m for m in stats["models"]}
    generations = sum(1 for o in first.observations if o.type == "GENERATION")
    assert models["gpt-4o-mini"]["count"] == 2 * generations
    assert models["gpt-4o-mini"]["tokens"] == first.total_tokens + second.total_tokens
    nodes = {n["name"]: n for n in stats["nodes"]}
    assert nodes["think"]["count"] + nodes["critic"]["count"] == 2 * (3000 - 1 - generations)
    assert nodes["critic"]["errors"] == 2

    diff = json.loads(lftrace("diff", first.id, second.id, "--json").stdout)
    assert diff["counts"]["same"] + diff["counts"]["changed"] == 3000
    assert diff["counts"]["added"] == diff["counts"]["removed"] == 0
    assert diff["outputsChanged"] is True  # the final answer differs


def test_show_json_of_a_real_long_loop_rebuilds_shared_inputs_across_pages(tmp_path, monkeypatch):
    steps = 400  # 1,001 observations, five pages; every node's input holds the conversation so far
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "loop.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    build_graph().invoke(loop_input(steps), run_config(steps, [handler]))
    client_module.get_client().shutdown()
    with TraceStore(tmp_path / "loop.db", create=False) as store:
        trace = store.get_trace(handler.last_trace_id or "")
    shown = json.loads(lftrace("show", "last", "--json").stdout)
    assert len(shown["observations"]) == 1 + steps * 2 + steps // 2
    assert shown == as_json(trace)
    thinks = [o for o in shown["observations"] if o["name"] == "think"]
    assert len(thinks[-1]["input"]["messages"]) == steps - 1


def test_show_reads_a_long_trace_without_inputs_and_fills_in_those_it_prints(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from lftrace import render as render_module
    from lftrace.render import render_trace

    monkeypatch.setattr(render_module, "LOAD_BATCH", 100)
    steps = 300
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "loop.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    build_graph().invoke(loop_input(steps), run_config(steps, [handler]))
    client_module.get_client().shutdown()

    def text(renderable: object) -> str:
        console = Console(width=120, color_system=None, file=io.StringIO())
        console.print(renderable, crop=False)
        return console.file.getvalue()  # type: ignore[attr-defined]

    with TraceStore(tmp_path / "loop.db", create=False) as store:
        trace_id = handler.last_trace_id or ""
        for options in ({}, {"expand": True}, {"full": True}, {"depth": 2}):
            full = store.get_trace(trace_id)
            lazy = store.get_trace(trace_id, inputs=False)
            asked: list[int] = []

            def load(observations, asked=asked):
                asked.append(len(observations))
                store.load_inputs(observations)

            assert text(render_trace(lazy, load_inputs=load, **options)) == text(render_trace(full, **options))
            assert asked and max(asked) <= 100  # LOAD_BATCH at a time
            if not options.get("expand"):
                assert sum(asked) < 60  # folded: the first and last rounds, not 751 observations
            else:
                assert len(asked) >= 4  # 451 bodies (ROUTE lines have none)
            assert all(o.input is None for o in lazy.observations)  # dropped again once laid out
    shown = lftrace("show", "last").stdout
    assert "× " in shown and "in: Critique" in shown


def test_iter_traces_reads_long_traces_a_few_at_a_time(tmp_path, monkeypatch):
    from lftrace import store as store_module

    assert list(store_module._pages_of_traces([("a", 15000), ("b", 4000), ("c", 30000), ("d", 1), ("e", 2)])) == [
        ["a", "b"],
        ["c"],
        ["d", "e"],
    ]
    monkeypatch.setattr(store_module, "PAGE_OBSERVATIONS", 5000)  # two 2,000-observation traces a page
    read: list[int] = []
    loader = store_module._load_traces

    def counting(conn, ids, **options):
        read.append(len(ids))
        return loader(conn, ids, **options)

    monkeypatch.setattr(store_module, "_load_traces", counting)
    written = [wide_trace(2000, seed=n) for n in range(5)]
    for n, trace in enumerate(written):
        for obs in trace.observations:
            obs.start_time += n * 10**12  # oldest first: the order written
        trace.timestamp += n * 10**12
    with TraceStore(tmp_path / "t.db") as store:
        store.write_traces(written)
        got = [(t.id, len(t.observations), t.observations[1].output) for t in store.iter_traces(outputs=False)]
    assert read == [2, 2, 1]
    assert [(tid, count) for tid, count, _ in got] == [(t.id, 2000) for t in written]
    assert all(output is None for _, _, output in got)


def test_show_json_is_the_text_json_dumps_writes(store):
    """Small floats (costs) spelt as Python spells them, nested values, scores, a trace without observations."""
    from lftrace.model import Score
    from support.traces import make_trace

    trace = make_trace(tags=["x"], error=True)
    trace.metadata = {"observations": [], "tiny": 1e-7, "big": 1e16, "nested": [{"f": 2.5e-05}], "sep": "\u2028"}
    trace.scores = [Score(id="s1", trace_id=trace.id, name="quality", timestamp=BASE_NS, value=0.00001)]
    empty = Trace(id="e" * 32, name="empty", timestamp=BASE_NS)
    store.write_traces([trace, empty])
    for tid in (trace.id, empty.id):
        expected = json.dumps(store.get_trace(tid).to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
        assert lftrace("show", tid, "--json").stdout == expected
        assert lftrace("export", tid).stdout == expected
