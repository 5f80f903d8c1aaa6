"""The background writer under bad data and an unwritable store: nothing poisoned, nothing silently lost."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda

from lftrace import Langfuse, get_client
from lftrace.langchain import CallbackHandler
from lftrace.store import TraceStore
from lftrace.writer import TraceWriter
from support.traces import make_trace

SRC = Path(__file__).resolve().parents[1] / "src"


def _traced(value, *, fail: bool = False, **metadata) -> str:
    def body(x):
        if fail:
            raise ValueError(f"bad input {x}")
        return f"echo {x}"

    handler = CallbackHandler()
    with contextlib.suppress(ValueError):
        RunnableLambda(body).invoke(value, config={"callbacks": [handler], "metadata": metadata})
    assert handler.last_trace_id
    return handler.last_trace_id


def test_lone_surrogate_is_stored_escaped_and_blocks_nothing(isolated_env):
    bad = _traced("caf\udce9")
    good = [_traced(f"case {i}") for i in range(4)]
    assert get_client().flush() is True
    with TraceStore(isolated_env, create=False) as store:
        trace = store.get_trace(bad)
        assert trace.input == "caf\\udce9"
        assert trace.output == "echo caf\\udce9"
        assert [store.get_trace(t).input for t in good] == [f"case {i}" for i in range(4)]
    # and the writer keeps writing afterwards (no poisoned batch carried along)
    later = _traced("after")
    assert get_client().flush() is True
    assert get_client().get_trace(later).input == "after"


def test_one_unstorable_trace_in_a_batch_does_not_sink_the_others(tmp_path):
    store = TraceStore(tmp_path / "s.db")
    writer = TraceWriter(lambda: store, lambda: ())
    traces = [make_trace(name=f"t{i}") for i in range(5)]
    traces[2].name = "bad \udcff name"
    traces[3].observations[0].input = {"k\udc80": ["v\ud800", 2**80]}
    traces[4].observations[0].start_time = 2**70  # an integer column cannot hold it: clamped
    for trace in traces:
        writer.submit(trace)
    assert writer.flush(10) is True
    assert store.count_traces() == 5
    assert store.get_trace(traces[2].id).name == "bad \\udcff name"
    assert store.get_trace(traces[3].id).observations[0].input == {
        "k\\udc80": ["v\\ud800", "1208925819614629174706176"]
    }
    writer.stop()
    store.close()


def test_values_over_a_million_characters_are_stored_whole(isolated_env):
    big = "x" * 1_500_000
    many = list(range(20_000))
    trace_id = _traced({"text": big, "items": many})
    get_client().flush()
    trace = get_client().get_trace(trace_id)
    assert trace.input == {"text": big, "items": many}


def test_mask_covers_names_tags_sessions_status_messages_and_model_parameters(isolated_env):
    def mask(data, **kwargs):
        if isinstance(data, str):
            return data.replace("alice@example.com", "[EMAIL]")
        if isinstance(data, dict):
            return {k: mask(data=v) for k, v in data.items()}
        if isinstance(data, list):
            return [mask(data=v) for v in data]
        return data

    Langfuse(mask=mask)
    email = "alice@example.com"
    handler = CallbackHandler()
    model = FakeListChatModel(responses=["hi"]).bind(stop=[email])
    model.invoke("hello", config={"callbacks": [handler]})
    failed = _traced(
        email,
        fail=True,
        langfuse_trace_name=f"run for {email}",
        langfuse_session_id=f"session-{email}",
        langfuse_user_id=email,
        langfuse_tags=[f"user:{email}"],
    )
    assert get_client().flush() is True
    raw = b"".join(p.read_bytes() for p in isolated_env.parent.glob("traces.db*"))
    assert email.encode() not in raw
    trace = get_client().get_trace(failed)
    assert trace.name == "run for [EMAIL]"
    assert trace.session_id == "session-[EMAIL]" and trace.user_id == "[EMAIL]"
    assert trace.tags == ["user:[EMAIL]"]
    assert "bad input [EMAIL]" in (trace.observations[0].status_message or "")
    generation = get_client().get_trace(handler.last_trace_id).observations[-1]
    assert generation.model_parameters and "[EMAIL]" in str(generation.model_parameters)


_FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import logging, os, resource, sys, time
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.path.insert(0, sys.argv[2])
    from tests.support.traces import make_trace
    from lftrace import Langfuse
    client = Langfuse(store=sys.argv[1])
    client._submit(make_trace(name="small"))
    assert client.flush() is True
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    used = max(os.path.getsize(p) for p in (sys.argv[1], sys.argv[1] + "-wal") if os.path.exists(p))
    resource.setrlimit(resource.RLIMIT_FSIZE, (used + 4096, hard))
    big = make_trace(name="big", answer="y" * 300_000)
    client._submit(big)
    print("flush while full:", client.flush(), flush=True)
    print("error:", client.write_error, flush=True)
    for i in range(3):  # later traces wait behind the outage, one warning in all
        client._submit(make_trace(name=f"later{i}"))
        client.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    time.sleep(1.2)  # the writer retries by itself
    print("flush after:", client.flush(), flush=True)
    print("count:", client.store.count_traces(), flush=True)
    print("big stored:", len(client.get_trace(big.id).observations[0].output["messages"][0]["content"]), flush=True)
    """
)


def test_unwritable_store_keeps_traces_in_memory_retries_and_flush_says_so(tmp_path):
    """A real file size limit (RLIMIT_FSIZE) stands in for a full disk; then space comes back."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{root}"}
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path / "t.db"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lost" not in proc.stderr
    out = proc.stdout
    assert "flush while full: False" in out
    assert "error: cannot write to the trace store" in out
    assert "flush after: True" in out
    assert "count: 5" in out
    assert "big stored: 300000" in out
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING") and "could not write" in line]
    assert len(warnings) == 1, proc.stderr
    assert "keeping them in memory and retrying" in warnings[0]


def test_warning_is_logged_once_per_outage(tmp_path, caplog):
    class Broken:
        def write_traces(self, traces, destinations=(), merge=False):
            raise __import__("lftrace.errors", fromlist=["StoreError"]).StoreError("disk is full")

    writer = TraceWriter(lambda: Broken(), lambda: ())
    with caplog.at_level(logging.WARNING, logger="lftrace"):
        for _ in range(3):
            writer.submit(make_trace())
            assert writer.flush(5) is False
    assert writer.unwritten == 3
    assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1
    writer.stop(1)


def _counting_store(tmp_path: Path) -> tuple[TraceStore, list[int]]:
    """A real store that notes how many traces each ``write_traces`` (one transaction) was given."""
    store = TraceStore(tmp_path / "s.db")
    calls: list[int] = []
    real = store.write_traces

    def counting(traces, *args, **kwargs):
        calls.append(len(traces))
        return real(traces, *args, **kwargs)

    store.write_traces = counting  # type: ignore[method-assign]
    return store, calls


def test_traces_arriving_together_are_written_in_one_transaction_and_flush_does_not_wait_the_linger(tmp_path):
    store, calls = _counting_store(tmp_path)
    writer = TraceWriter(lambda: store, lambda: (), linger=30.0)
    for i in range(20):
        writer.submit(make_trace(name=f"t{i}"))
    started = time.monotonic()
    assert writer.flush(timeout=20) is True
    assert time.monotonic() - started < 10  # the flush ends the linger: it does not wait 30 s
    assert calls == [20]  # one batch, one transaction
    assert len(store.list_traces(limit=None)) == 20
    writer.stop()


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_part_of_a_running_trace_does_not_wait_for_the_linger_of_traces_queued_before_it(tmp_path):
    """The writer sleeps through a batch's linger (not woken by every trace submitted), but a part of a long run
    wakes it: the run waits for its parts to be taken (back-pressure), so a part must not wait the linger."""
    store = TraceStore(tmp_path / "s.db")
    writer = TraceWriter(lambda: store, lambda: (), linger=30.0)
    for i in range(3):
        writer.submit(make_trace(name=f"t{i}"))
    time.sleep(0.3)  # the writer has taken them and sleeps through the linger
    part = make_trace(name="long run")
    started = time.monotonic()
    writer.submit_fragment(part)
    names = lambda: {t.name for t in store.list_traces(limit=None)}  # noqa: E731
    assert _wait_for(lambda: "long run" in names()), "the part waited for the 30 s linger"
    assert time.monotonic() - started < 10
    assert len(store.list_traces(limit=None)) == 4  # the traces before it went in the same transaction
    writer.submit(make_trace(name="last"))
    time.sleep(0.3)
    started = time.monotonic()
    writer.stop(timeout=20)  # stop ends a linger too, and what was queued is written
    assert time.monotonic() - started < 10
    assert len(store.list_traces(limit=None)) == 5


def test_traces_submitted_during_the_linger_are_all_taken_when_it_ends(tmp_path):
    store, calls = _counting_store(tmp_path)
    writer = TraceWriter(lambda: store, lambda: (), linger=0.5)
    for i in range(5):
        writer.submit(make_trace(name=f"t{i}"))
        time.sleep(0.02)
    assert _wait_for(lambda: sum(calls) == 5), calls  # written without a flush, once the linger ended
    assert calls == [5]
    writer.stop()


def _agent_inputs(client) -> list:
    from langchain_core.messages import HumanMessage

    from support.fake_models import build_agent

    handler = CallbackHandler()
    build_agent().invoke({"messages": [HumanMessage("Paris")]}, config={"callbacks": [handler]})
    assert client.flush() is True
    trace = client.get_trace(handler.last_trace_id)
    return [o.input for o in trace.observations if o.name in ("agent", "call_model")][:2]


def test_one_state_shared_by_several_spans_is_stored_whole_in_each(isolated_env):
    assert _agent_inputs(get_client()) == [{"messages": [{"role": "user", "content": "Paris"}]}] * 2


def test_a_mask_changing_a_shared_state_in_place_changes_only_its_own_span(isolated_env):
    seen: list[list] = []  # the lists themselves: their ids stay unique while they are held

    def mask(data):
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            data["messages"].append("masked")  # in place: must not leak into other spans' values
            seen.append(data["messages"])
        return data

    client = Langfuse(mask=mask)
    assert _agent_inputs(client) == [{"messages": [{"role": "user", "content": "Paris"}, "masked"]}] * 2
    assert len(seen) == len({id(x) for x in seen})  # every span's value was its own list


@pytest.mark.parametrize("streamed", [False, True])
def test_parts_of_a_running_trace_wait_for_a_slow_writer_instead_of_piling_up(tmp_path, streamed):
    """A run that makes parts faster than they are written waits (bounded memory); every part is written. Parts
    sent while the run goes on wait for the one before to be written: the helper gets each one as soon as it can."""
    from lftrace.writer import MAX_QUEUED_PARTS, MAX_QUEUED_STREAMED_PARTS

    limit = MAX_QUEUED_STREAMED_PARTS if streamed else MAX_QUEUED_PARTS
    store = TraceStore(tmp_path / "s.db")
    real = store.write_traces
    queued_at_write: list[int] = []

    def slow_disk(traces, *args, **kwargs):
        time.sleep(0.05)  # the program, waiting for a part before this one to be written, has handed the next over
        queued_at_write.append(writer._queued_parts)
        return real(traces, *args, **kwargs)

    store.write_traces = slow_disk  # type: ignore[method-assign]
    writer = TraceWriter(lambda: store, lambda: (), streamed_parts=streamed)
    trace = make_trace(name="long run")
    started = time.monotonic()
    for index, obs in enumerate(trace.observations * 3):
        part = make_trace(trace.id, name="long run")
        part.observations = [dataclasses.replace(obs, id=f"{index:016x}")]
        writer.submit_fragment(part)
    submitted = time.monotonic() - started
    assert writer.flush(timeout=20) is True
    assert max(queued_at_write) == limit  # a part being written, and those queued behind it
    assert submitted >= 0.05 * (len(trace.observations) * 3 - limit - 1)  # it waited for the disk
    assert len(store.get_trace(trace.id).observations) == len(trace.observations) * 3
    writer.stop()


def _stuck_store(path: Path, disk: threading.Event, limit: float = 20) -> TraceStore:
    """A real store whose writes wait until ``disk`` is set (at most ``limit`` seconds): a stuck disk."""
    store = TraceStore(path)
    real = store.write_traces

    def stuck(traces, *args, **kwargs):
        disk.wait(limit)
        return real(traces, *args, **kwargs)

    store.write_traces = stuck  # type: ignore[method-assign]
    return store


def _parts(trace, count: int) -> list:
    """``count`` parts of ``trace``, as a long run hands them over: one new observation each."""
    parts = []
    for index in range(count):
        part = make_trace(trace.id, name=trace.name)
        part.observations = [dataclasses.replace(trace.observations[0], id=f"{index:016x}")]
        parts.append(part)
    return parts


def test_a_stuck_store_stalls_a_long_run_once_then_never_again(tmp_path, monkeypatch, caplog):

    from lftrace import writer as writer_module

    monkeypatch.setattr(writer_module, "PART_WAIT_S", 0.3)
    disk = threading.Event()
    store = _stuck_store(tmp_path / "s.db", disk)
    writer = TraceWriter(lambda: store, lambda: ())
    trace = make_trace(name="long run")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lftrace"):
        for part in _parts(trace, 8):
            writer.submit_fragment(part)
    assert 0.3 <= time.monotonic() - started < 3  # one wait of 0.3 s, not one per part
    assert "no longer waiting" in caplog.text
    disk.set()
    assert writer.flush(timeout=20) is True
    assert len(store.get_trace(trace.id).observations) == 8
    writer.stop()


def test_prepared_values_are_json_text_stored_and_exported_exactly_even_when_a_field_needs_the_fallback(
    isolated_env, receiver, monkeypatch
):
    """The writer keeps a prepared input/output as JSON text (sharing.as_json); an int over 64 bits in the same
    observation's metadata sends the store's and the exporter's JSON through the stdlib fallback, which must still
    write the text as the value it is, not as a Python repr."""
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("LANGFUSE_BASE_URL", receiver.url)
    handler = CallbackHandler()
    chain = RunnableLambda(lambda value: {"answer": [value["q"], 2]})
    chain.invoke({"q": "why", "n": [1, 2]}, config={"callbacks": [handler], "metadata": {"big": 2**70}})
    client = get_client()
    assert client.flush() is True
    (obs,) = client.get_trace(handler.last_trace_id).observations
    assert obs.input == {"q": "why", "n": [1, 2]}
    assert obs.output == {"answer": ["why", 2]}
    assert obs.metadata["big"] in (2**70, str(2**70))
    from support.otlp_receiver import attributes

    (span,) = receiver.wait_for_spans(1)
    sent = attributes(span.attributes)
    assert json.loads(sent["langfuse.observation.input"]) == {"q": "why", "n": [1, 2]}
    assert json.loads(sent["langfuse.observation.output"]) == {"answer": ["why", 2]}
    assert sent["langfuse.observation.metadata.big"] == str(2**70)


def test_only_values_the_store_shares_stay_structures_after_prepare(tmp_path):
    """A list long enough for the store to share (sharing.MIN_SHARED) stays a list for the Packer; shorter values
    become JSON text, read back unchanged either way."""
    from lftrace.sharing import MIN_SHARED, is_json_text

    store = TraceStore(tmp_path / "s.db")
    writer = TraceWriter(lambda: store, lambda: ())
    trace = make_trace(name="mixed")
    long_list = [{"role": "user", "content": f"m{i}"} for i in range(MIN_SHARED)]
    trace.observations[0].input = {"messages": long_list}
    trace.observations[0].output = {"messages": long_list[:2]}
    prepared = writer.prepare(dataclasses.replace(trace, observations=[dataclasses.replace(trace.observations[0])]))
    assert not is_json_text(prepared.observations[0].input)
    assert is_json_text(prepared.observations[0].output)
    writer.submit(trace)
    assert writer.flush(10) is True
    stored = store.get_trace(trace.id).observations[0]
    assert stored.input == {"messages": long_list}
    assert stored.output == {"messages": long_list[:2]}
    writer.stop()
    store.close()


def test_ctrl_c_while_a_part_waits_for_the_writer_still_keeps_that_part(tmp_path):
    """The back-pressure wait is where a long run spends its time when the disk is slow: Ctrl-C (or SIGTERM)
    arriving there must not drop the part being handed over (its observations would be lost)."""
    import signal

    from lftrace.writer import MAX_QUEUED_PARTS

    release = threading.Event()
    store = _stuck_store(tmp_path / "s.db", release, limit=10)
    writer = TraceWriter(lambda: store, lambda: ())
    parts = _parts(make_trace(name="long run"), MAX_QUEUED_PARTS + 1)
    trace = parts[0]
    for part in parts[:-1]:
        writer.submit_fragment(part)  # MAX_QUEUED_PARTS handed over (one held by the stuck writer): the next waits
    # Ctrl-C as the terminal sends it, to the main thread (which is waiting); Python's own handler, whatever
    # started the test run (a background job inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    try:
        writer.submit_fragment(parts[-1])
        raise AssertionError("the part did not wait for the writer")
    except KeyboardInterrupt:
        pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        release.set()
    assert writer.flush(timeout=20) is True
    assert len(store.get_trace(trace.id).observations) == len(parts)
    writer.stop()


def test_metadata_lists_repeated_across_a_long_run_are_stored_right_for_every_span(isolated_env):
    """LangGraph gives every node's spans the same short lists (``langgraph_triggers``, ``langgraph_path``); the
    writer keeps one list per content for them (fewer objects alive while a long run goes on). Each span still
    reads back its own node's values."""
    from langchain_core.messages import HumanMessage
    from sample_graphs.long_loop import build_graph

    handler = CallbackHandler()
    build_graph().invoke(
        {"messages": [HumanMessage("Plan a trip")], "max_steps": 12},
        config={"callbacks": [handler], "recursion_limit": 50},
    )
    assert get_client().flush() is True
    trace = get_client().get_trace(handler.last_trace_id)
    stepped = [o for o in trace.observations if (o.metadata or {}).get("langgraph_node")]
    assert len(stepped) >= 24
    nodes = set()
    for obs in stepped:
        node = obs.metadata["langgraph_node"]
        nodes.add(node)
        assert obs.metadata["langgraph_triggers"] == [f"branch:to:{node}"], obs.name
        assert obs.metadata["langgraph_path"] == ["__pregel_pull", node], obs.name
        if obs.name == node:  # the node's own span: tagged with its step (a tag that differs at every step)
            assert obs.metadata["tags"] == [f"graph:step:{obs.metadata['langgraph_step']}"], obs.metadata
    assert nodes == {"think", "critic"}


def test_prepare_shares_equal_short_metadata_lists_between_spans_but_not_under_a_mask(tmp_path):
    store = TraceStore(tmp_path / "s.db")

    def prepared(writer: TraceWriter) -> list:
        trace = make_trace(name="shared")
        for i, obs in enumerate(trace.observations):
            obs.metadata = {"path": ["__pregel_pull", "think"], "tags": [f"step:{i}"], "n": i, "ids": [1, 2]}
        return [obs.metadata for obs in writer.prepare(trace).observations]

    writer = TraceWriter(lambda: store, lambda: ())
    first, second, *_ = prepared(writer)
    assert first["path"] is second["path"] and first["path"] == ["__pregel_pull", "think"]
    assert first["tags"] == ["step:0"] and second["tags"] == ["step:1"]  # other contents: their own lists
    assert first["ids"] is not second["ids"]  # only lists of texts are shared
    assert prepared(writer)[0]["path"] is first["path"]  # and from one trace to the next

    masked = TraceWriter(lambda: store, lambda: (), mask=lambda data: data)
    first, second, *_ = prepared(masked)
    assert first["path"] == second["path"] and first["path"] is not second["path"]  # a mask may change it in place
    for w in (writer, masked):
        w.stop()
    store.close()
