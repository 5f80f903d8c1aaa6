"""Several top-level LangChain runs under one ``trace_context`` trace id add up to one trace (issue 13, item 1).

Real LangChain runs with a fake chat model; the store, ``lftrace show`` (a real subprocess) and the OTLP export to a
real receiver on 127.0.0.1 must all see every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

from langchain_core.messages import HumanMessage

from lftrace import Langfuse, get_client
from lftrace.langchain import CallbackHandler
from support.fake_models import ToolCallingFakeModel, build_agent
from support.otlp_receiver import running_receiver

LFTRACE = str(Path(sys.executable).with_name("lftrace"))


def shared_handler() -> tuple[str, CallbackHandler]:
    trace_id = uuid.uuid4().hex
    return trace_id, CallbackHandler(trace_context={"trace_id": trace_id})


def test_llm_batch_keeps_every_run():
    trace_id, handler = shared_handler()
    ToolCallingFakeModel().batch(["Riga", "Oslo", "Lima"], config={"callbacks": [handler]})
    trace = get_client().get_trace(trace_id)
    roots = trace.roots()
    assert len(roots) == 3 and all(o.type == "GENERATION" for o in roots)
    assert sorted(o.input[0]["content"] for o in roots) == ["Lima", "Oslo", "Riga"]
    assert trace.total_tokens == 3 * 19
    (summary,) = get_client().list_traces()
    assert (summary.observation_count, summary.total_tokens) == (3, 57)


def test_two_invokes_add_up_and_keep_trace_attributes():
    trace_id, handler = shared_handler()
    agent = build_agent()
    agent.invoke(
        {"messages": [HumanMessage("Paris")]},
        config={"callbacks": [handler], "metadata": {"langfuse_session_id": "s-1", "langfuse_tags": ["first"]}},
    )
    agent.invoke(
        {"messages": [HumanMessage("Quito")]},
        config={"callbacks": [handler], "metadata": {"langfuse_user_id": "u-2", "langfuse_tags": ["second"]}},
    )
    trace = get_client().get_trace(trace_id)
    assert len(trace.roots()) == 2
    assert len(trace.observations) == 2 * 11
    assert (trace.session_id, trace.user_id) == ("s-1", "u-2")
    assert trace.tags == ["first", "second"]
    assert trace.output["messages"][-1]["content"] == "The weather in Quito: sunny in Quito"  # the later run's
    assert trace.timestamp == min(o.start_time for o in trace.observations)
    assert trace.end_time == max(o.end_time for o in trace.observations if o.end_time)


def test_concurrent_threads_under_one_trace_id():
    trace_id, handler = shared_handler()
    agent = build_agent()
    cities = [f"city{i}" for i in range(8)]
    threads = [
        threading.Thread(
            target=agent.invoke, args=({"messages": [HumanMessage(c)]},), kwargs={"config": {"callbacks": [handler]}}
        )
        for c in cities
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trace = get_client().get_trace(trace_id)
    assert len(trace.roots()) == 8
    assert len(trace.observations) == 8 * 11
    assert get_client().list_traces()[0].total_tokens == 8 * 2 * 19


_PROCESS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from support.fake_models import ToolCallingFakeModel
    from lftrace import get_client
    from lftrace.langchain import CallbackHandler

    handler = CallbackHandler(trace_context={"trace_id": sys.argv[1]})
    ToolCallingFakeModel().batch([sys.argv[3] + str(i) for i in range(5)], config={"callbacks": [handler]})
    get_client().flush()
    """
)


def test_two_processes_under_one_trace_id_show_and_export(tmp_path):
    trace_id = uuid.uuid4().hex
    tests_dir = str(Path(__file__).parent)
    with running_receiver() as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _PROCESS, trace_id, tests_dir, prefix],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for prefix in ("a", "b")
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        # the export: spans of both processes under the one trace id (a merge may send some twice: Langfuse upserts
        # spans by id); whatever a process could not deliver within its flush (a loaded machine) stays in the outbox
        assert {s.trace_id.hex() for s in receiver.spans()} <= {trace_id}
        Langfuse(otlp_endpoint=receiver.url + "/v1/traces", timeout=30).flush()
        spans = receiver.spans()
        assert {s.trace_id.hex() for s in spans} == {trace_id}
        assert len({s.span_id.hex() for s in spans}) == 10
    trace = get_client().get_trace(trace_id)
    assert len(trace.observations) == 10
    shown = subprocess.run([LFTRACE, "show", trace_id], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    for prefix in ("a", "b"):
        for i in range(5):
            assert f"{prefix}{i}" in shown.stdout
    assert shown.stdout.count("ToolCallingFakeModel") >= 10


def test_export_of_a_merged_trace_in_one_process_has_every_run(tmp_path):
    with running_receiver() as receiver:
        Langfuse(otlp_endpoint=receiver.url + "/v1/traces")
        trace_id, handler = shared_handler()
        model = ToolCallingFakeModel()
        model.invoke("first", config={"callbacks": [handler]})
        model.invoke("second", config={"callbacks": [handler]})
        get_client().flush()
        span_ids = {s.span_id.hex() for s in receiver.spans()}
    trace = get_client().get_trace(trace_id)
    assert span_ids == {o.id for o in trace.observations}
    assert len(span_ids) == 2
