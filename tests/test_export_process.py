"""Writes and delivery from the export helper process (export_process.py): real programs, a real receiver, real
processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lftrace.store import TraceStore
from support.otlp_receiver import Reply

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def helper_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper whatever this machine's CPUs (unset, it is used with 2 or more: see the last tests)."""
    monkeypatch.setenv("LFTRACE_EXPORT_PROCESS", "true")


PROGRAM = """
import json, os, signal, sys
if sys.argv[2:]:  # the CPUs this process may use
    os.sched_setaffinity(0, set(range(int(sys.argv[2]))))
if sys.argv[1] == "frozen":  # as a PyInstaller application: sys.executable is the application itself
    sys.frozen = True
import time
from langchain_core.runnables import RunnableLambda
import lftrace
from lftrace.langchain import CallbackHandler
from lftrace.store import TraceStore

commits = []  # the store writes this program makes itself
_write_traces = TraceStore.write_traces
TraceStore.write_traces = lambda self, traces, **kw: commits.append(len(traces)) or _write_traces(self, traces, **kw)

client = lftrace.get_client()
handler = CallbackHandler()
RunnableLambda(lambda x: x + "!").invoke("hi", config={"callbacks": [handler], "run_name": "shout"})
if sys.argv[1] == "killed":  # written to the store, then gone without a flush or an exit handler
    client.flush(deliver=False)
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "fork":  # a child made with fork() traces too: on its own, not with the parent's threads
    client.flush()
    parent_helper = getattr(client._deliverer, "_proc", None)
    child = os.fork()
    if child == 0:
        RunnableLambda(lambda x: x).invoke("child", config={"callbacks": [handler], "run_name": "child"})
        flushed = client.flush()
        own = getattr(client._deliverer, "_proc", None)
        report = client.last_delivery
        problem = (
            "" if flushed else "the child's flush did not write its trace; ",
            "" if report is not None and report.pending == 0 else f"the child's delivery left {report}; ",
            "" if own is None or own is not parent_helper else "the child used its parent's helper; ",
        )
        os.write(2, "".join(problem).encode())
        os._exit(3 if any(problem) else 0)
    assert os.waitpid(child, 0)[1] == 0, "the forked child failed (its reasons are above)"
    RunnableLambda(lambda x: x).invoke("parent", config={"callbacks": [handler], "run_name": "parent"})
if sys.argv[1] == "atexit":  # no flush: the client's exit handler writes and delivers
    sys.exit(0)
if sys.argv[1] == "handed-over":  # handed to the helper to write, then gone before it said it did
    while not client._writer._shipped:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
client.flush()
print(json.dumps({
    "trace": handler.last_trace_id,
    "waiting": client.last_delivery.pending + client.last_delivery.failed,
    "delivered": client.store.delivery_counts()[f"langfuse:{os.environ['LANGFUSE_BASE_URL']}"]["delivered"],
    "helper": client._deliverer._proc.pid if getattr(client._deliverer, "_proc", None) else None,
    "exporters_loaded": "lftrace.exporters.otlp" in sys.modules,
    "commits": len(commits),
}))
"""


def run_program(tmp_path: Path, receiver, mode: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "program.py").write_text(textwrap.dedent(PROGRAM))
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "LANGFUSE_PUBLIC_KEY": "pk-lf-helper",
        "LANGFUSE_SECRET_KEY": "sk-lf-helper",
        "LANGFUSE_BASE_URL": receiver.url,
        **env,
    }
    return subprocess.run(
        [sys.executable, "program.py", mode, *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_program_s_traces_are_sent_by_a_helper_process_not_by_the_program(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "flush")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["waiting"], result["delivered"]) == (0, 1)  # by the flush, or just before it
    assert result["helper"] not in (None, os.getpid())
    assert result["exporters_loaded"] is False  # encoding and sending never ran in the traced program
    assert result["commits"] == 0  # nor did the store's commits: the helper wrote the trace
    (span,) = receiver.wait_for_spans(1)
    assert span.name == "shout"
    assert span.trace_id.hex() == result["trace"]


def test_a_helper_slow_to_start_is_waited_for_not_given_up(tmp_path: Path, receiver) -> None:
    """A helper whose start takes 3 s (its imports on a busy machine) still writes and sends the first trace; the
    program does not give it up after 2 s and write the trace itself (it did, and delivered from a thread
    from then on)."""
    slow = ROOT / "tests" / "support" / "slow_helper"
    path = os.pathsep.join([str(slow), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    done = run_program(tmp_path, receiver, "flush", PYTHONPATH=path, LFTRACE_TEST_SLOW_HELPER="3")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["commits"] == 0  # the helper wrote the trace
    assert (result["waiting"], result["delivered"]) == (0, 1)
    assert result["helper"] not in (None, os.getpid())
    assert result["exporters_loaded"] is False  # and sent it: no fallback to a thread of the program


def test_with_export_process_false_the_program_sends_them_itself(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "flush", LFTRACE_EXPORT_PROCESS="false")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["waiting"], result["delivered"]) == (0, 1)
    assert result["helper"] is None and result["exporters_loaded"] is True
    assert result["commits"] == 1
    assert len(receiver.wait_for_spans(1)) == 1


def test_a_frozen_application_is_never_started_again_as_its_own_helper(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "frozen")  # LFTRACE_EXPORT_PROCESS=true
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["helper"] is None and result["exporters_loaded"] is True  # a thread of the program sent it
    assert (result["waiting"], result["delivered"]) == (0, 1)


def test_a_program_killed_after_writing_still_gets_its_trace_delivered_by_the_helper(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "killed")
    assert done.returncode == -signal.SIGKILL
    (span,) = receiver.wait_for_spans(1, timeout=10)  # the helper saw its pipe close and delivered what was written
    assert span.name == "shout"
    with TraceStore(tmp_path / "traces.db") as store:
        deadline = time.monotonic() + 5
        while store.delivery_counts().get(f"langfuse:{receiver.url}", {}).get("delivered") != 1:
            assert time.monotonic() < deadline, store.delivery_counts()
            time.sleep(0.05)


@pytest.mark.parametrize("helper", ["true", "false"])
def test_a_forked_child_traces_on_its_own_and_nothing_is_lost(tmp_path: Path, receiver, helper: str) -> None:
    """multiprocessing, gunicorn and Celery workers are made with fork() after the parent traced: the child has
    none of the parent's threads (its writer's flush waited forever, its trace was lost) and must not use the
    parent's SQLite connection. It gets its own writer, store connection and delivery."""
    # a generous delivery deadline: the child imports the exporters and starts its own delivery, which took over
    # the 5 s default once on a loaded machine (the suite's two workers): its flush then reported a pending span
    done = run_program(tmp_path, receiver, "fork", LFTRACE_EXPORT_PROCESS=helper, LANGFUSE_TIMEOUT="30")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # the parent's flush may count its last trace as waiting: the child's helper, as the child exits, delivers what
    # is pending in the store, and may hold that trace's claim (a lease of another process) at that moment
    assert result["waiting"] in (0, 1)
    spans = receiver.wait_for_spans(3)
    assert sorted(s.name for s in spans) == ["child", "parent", "shout"]
    with TraceStore(tmp_path / "traces.db") as store:
        assert sorted(t.name for t in store.list_traces()) == ["child", "parent", "shout"]
        deadline = time.monotonic() + 10
        while store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 3


def test_a_program_that_never_flushes_has_its_trace_stored_and_sent_at_exit(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "atexit")
    assert done.returncode == 0, done.stderr
    (span,) = receiver.wait_for_spans(1, timeout=10)
    assert span.name == "shout"
    with TraceStore(tmp_path / "traces.db") as store:
        (summary,) = store.list_traces()
        assert store.delivery_state(summary.id) == {f"langfuse:{receiver.url}": "delivered"}


def test_a_program_killed_after_handing_a_trace_over_still_gets_it_stored_and_sent(tmp_path: Path, receiver) -> None:
    done = run_program(tmp_path, receiver, "handed-over")
    assert done.returncode == -signal.SIGKILL
    (span,) = receiver.wait_for_spans(1, timeout=10)  # the helper read its pipe to the end: wrote, then delivered
    assert span.name == "shout"
    with TraceStore(tmp_path / "traces.db") as store:
        (summary,) = store.list_traces()
        assert summary.name == "shout"
        assert store.get_trace(summary.id).observations[0].output == "hi!"


def test_traces_handed_to_a_helper_that_dies_are_written_by_the_program(receiver, isolated_env: Path) -> None:
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler

    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    client.prepare_delivery()
    helper = client._deliverer._proc
    os.kill(helper.pid, signal.SIGSTOP)  # it takes the trace on its pipe, and writes nothing
    handler = CallbackHandler()
    RunnableLambda(lambda x: x * 2).invoke(21, config={"callbacks": [handler]})
    deadline = time.monotonic() + 5
    while not client._writer._shipped:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(helper.pid, signal.SIGKILL)
    started = time.monotonic()
    assert client.flush() is True
    assert time.monotonic() - started < 1.5  # seen dead at once, not waited for
    assert client.get_trace(handler.last_trace_id).observations[0].output == 42
    assert len(receiver.wait_for_spans(1)) == 1  # and delivered from a thread of the program


def test_a_store_the_helper_cannot_write_makes_flush_false_until_it_can(receiver, isolated_env: Path) -> None:
    import resource

    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler

    TraceStore(isolated_env).close()  # made, so the helper only opens it
    grown = max(p.stat().st_size for p in isolated_env.parent.glob("traces.db*")) + 64_000
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (grown, hard))  # inherited by the helper: it cannot grow the store
    try:
        client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
        client.prepare_delivery()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # this process can, as before
    handler = CallbackHandler()
    RunnableLambda(lambda x: x).invoke("y" * 300_000, config={"callbacks": [handler]})
    assert client.flush() is False  # (Python ignores SIGXFSZ: the helper's write fails, the helper lives on)
    assert "cannot be written" in str(client.write_error) and "file size limit" in str(client.write_error)
    assert client._deliverer._proc.poll() is None
    assert client.list_traces() == []
    assert client.flush() is False  # still: nothing new to hand over, and the helper still cannot write

    # the disk has room again: the next flush has the helper try again, and says so
    resource.prlimit(client._deliverer._proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert client.flush() is True
    assert client.write_error is None
    assert [t.id for t in client.list_traces()] == [handler.last_trace_id]
    assert len(receiver.wait_for_spans(1)) == 1


def test_a_trace_id_written_again_by_the_program_lands_after_the_helper_s_version(receiver, isolated_env: Path) -> None:
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler

    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    trace_id = "ab" * 16
    handler = CallbackHandler(trace_context={"trace_id": trace_id})
    RunnableLambda(lambda x: x).invoke("short", config={"callbacks": [handler], "run_name": "first"})
    RunnableLambda(lambda x: x).invoke(list(range(5_000)), config={"callbacks": [handler], "run_name": "second"})
    assert client.flush() is True
    trace = client.get_trace(trace_id)
    assert [o.name for o in sorted(trace.observations, key=lambda o: o.start_time)] == ["first", "second"]
    assert trace.observations[-1].output == list(range(5_000))


def test_a_helper_killed_mid_session_is_replaced_by_delivery_in_the_program(receiver, isolated_env: Path) -> None:
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler

    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    chain = RunnableLambda(lambda x: x * 2)
    chain.invoke(1, config={"callbacks": [CallbackHandler()]})
    assert client.flush() is True
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1
    helper = client._deliverer._proc
    helper.kill()
    helper.wait(5)
    for value in range(2, 5):
        chain.invoke(value, config={"callbacks": [CallbackHandler()]})
    assert client.flush() is True
    assert client.last_delivery.summary() == "delivered 3 traces"
    assert len(receiver.wait_for_spans(4)) == 4
    with TraceStore(isolated_env) as store:
        assert store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 4


def test_the_helper_s_warnings_reach_the_program_s_logging(
    receiver, isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler

    receiver.script(Reply(400, b'{"message": "bad span"}'))
    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    RunnableLambda(lambda x: x).invoke("x", config={"callbacks": [CallbackHandler()]})
    with caplog.at_level(logging.WARNING, logger="lftrace"):
        assert client.flush() is True
    assert client.last_delivery.failed == 1
    warned = [r for r in caplog.records if r.name == "lftrace.delivery" and "rejected 1 traces" in r.getMessage()]
    assert warned and "bad span" in warned[0].getMessage()
    assert client._deliverer._proc.pid != os.getpid()  # said by the helper, logged here


def test_a_long_run_s_spans_are_sent_while_it_runs_each_once(receiver, isolated_env: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from langchain_core.runnables import RunnableLambda
    from sample_graphs._models import FakeChatModel
    from sample_graphs.long_loop import build_graph, loop_input, run_config

    import lftrace
    from lftrace.langchain import FRAGMENT_SIZE, CallbackHandler

    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    client.prepare_delivery()
    steps = 1000  # ~2,500 observations: written in parts of FRAGMENT_SIZE and more while the run goes on
    handler = CallbackHandler()
    fake = FakeChatModel()

    waited = []

    def model(messages: list) -> object:  # halfway, time for the helper to send the parts written so far
        if len(messages) >= steps // 2 and not waited:
            waited.append(True)
            deadline = time.monotonic() + 10
            while not receiver.otlp_requests() and time.monotonic() < deadline:
                time.sleep(0.05)
        return fake.invoke(messages)

    graph = build_graph(RunnableLambda(model))
    graph.invoke(loop_input(steps), run_config(steps, [handler]))
    ended = time.monotonic()
    early = [r for r in receiver.otlp_requests() if r.at < ended]
    assert client.flush() is True
    assert waited
    assert early, "no span was sent while the run went on"
    assert sum(len(r.spans()) for r in early) >= FRAGMENT_SIZE
    stored = client.get_trace(handler.last_trace_id)
    spans = receiver.spans()
    assert sorted(s.span_id.hex() for s in spans) == sorted(o.id for o in stored.observations)  # each exactly once
    roots = [s for s in spans if not s.parent_span_id]
    assert len(roots) == 1 and roots[0] not in [s for r in early for s in r.spans()]  # the root, last, whole
    assert client.last_delivery.pending == 0 and client.last_delivery.failed == 0  # maybe sent before the flush
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1


def test_a_part_the_backend_refuses_is_sent_with_the_trace_at_its_end(receiver, isolated_env: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from sample_graphs.long_loop import build_graph, loop_input, run_config

    import lftrace
    from lftrace.langchain import CallbackHandler

    receiver.script(Reply(503, b'{"message": "busy"}'))  # the first request: the run's first part
    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    client.prepare_delivery()
    handler = CallbackHandler()
    build_graph().invoke(loop_input(400), run_config(400, [handler]))
    assert client.flush() is True
    stored = client.get_trace(handler.last_trace_id)
    assert receiver.otlp_requests(ok_only=False)[0].status == 503
    spans = receiver.spans()
    assert {s.span_id.hex() for s in spans} == {o.id for o in stored.observations}
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1


@pytest.mark.parametrize("written_by", ["helper", "program"])
def test_a_helper_that_stops_answering_is_replaced_and_its_traces_still_go_out(
    receiver, isolated_env: Path, written_by: str
) -> None:
    """A stopped helper: the traces it was handed to write are written by the program once it has not answered
    for SHIP_WAIT_S (and delivered at once, from a thread); with a trace the program writes itself (a long list),
    it is the delivery that goes unanswered, given up after its deadline and a grace period."""
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler
    from lftrace.writer import SHIP_WAIT_S

    client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url, timeout=0.5)
    client.prepare_delivery()
    helper = client._deliverer._proc
    value = "x" if written_by == "helper" else [f"item {i}" for i in range(3_000)]  # too long to hand over
    deadline = time.monotonic() + 30
    while not client._deliverer._ready:  # started (a helper still starting is given START_WAIT_S more)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(helper.pid, signal.SIGSTOP)  # alive, holding its pipe, answering nothing
    try:
        RunnableLambda(lambda x: x).invoke(value, config={"callbacks": [CallbackHandler()]})
        started = time.monotonic()
        assert client.flush() is True  # every trace is in the store all the same
        took = time.monotonic() - started
        if written_by == "helper":
            assert SHIP_WAIT_S - 0.1 < took < SHIP_WAIT_S + 0.5 + 1.5
            assert client.last_delivery.summary() == "delivered 1 trace"  # from a thread of this process
        else:
            assert took < 0.5 + 2.0 + 1.5
            assert client.last_delivery.pending == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper.pid, signal.SIGCONT)
    assert helper.poll() is not None  # killed, so its claims are a dead process's
    assert client.flush() is True  # now from a thread of this process
    assert client.last_delivery.pending == 0
    spans = receiver.wait_for_spans(1)
    assert len(spans) == 1
    stored = client.get_trace(client.store.last_trace_id())
    assert stored.observations[0].input == value


def test_unset_the_helper_is_used_only_with_cores_to_spare(tmp_path: Path, receiver) -> None:
    for allowed in sorted({1, len(os.sched_getaffinity(0))}):  # this machine's CPUs, and one of them
        done = run_program(tmp_path, receiver, "flush", str(allowed), LFTRACE_EXPORT_PROCESS="")  # "" is unset
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert (result["helper"] is not None) is (allowed >= 2), (allowed, result)
        assert result["waiting"] == 0


def test_on_one_cpu_a_long_run_moves_delivery_to_the_helper_and_its_spans_go_out_once(
    receiver, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(ROOT))
    from langchain_core.runnables import RunnableLambda
    from sample_graphs.long_loop import build_graph, loop_input, run_config

    import lftrace
    from lftrace.langchain import CallbackHandler

    monkeypatch.delenv("LFTRACE_EXPORT_PROCESS")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU: a short run is delivered from a thread of the program
    try:
        client = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
        RunnableLambda(lambda x: x).invoke("short", config={"callbacks": [CallbackHandler()]})
        assert client.flush() is True
        assert type(client._deliverer).__name__ == "Deliverer"
        handler = CallbackHandler()
        build_graph().invoke(loop_input(600), run_config(600, [handler]))  # parts written while it runs
        assert client.flush() is True
    finally:
        os.sched_setaffinity(0, cpus)
    assert type(client._deliverer).__name__ == "DeliveryProcess"
    long_run = client.get_trace(handler.last_trace_id)
    spans = receiver.spans()
    assert len(spans) == len({s.span_id.hex() for s in spans}) == len(long_run.observations) + 1  # each once
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 2


def test_what_the_program_hands_over_and_what_it_writes_itself() -> None:
    """Prepared traces go to the helper as they are, JSON text included; long lists, big values, scores and
    values orjson refuses stay with the program."""
    import orjson

    from lftrace.model import Observation, Score, Trace
    from lftrace.shipping import MAX_SHIPPED_BYTES, MAX_SHIPPED_ITEMS, shipped, unshipped

    def trace(value: object, **fields: object) -> Trace:
        obs = Observation(
            id="1" * 16, trace_id="a" * 32, parent_id=None, type="GENERATION", name="llm", start_time=5,
            end_time=9, model="gpt-4o-mini", input=value, output=orjson.Fragment(b'{"role":"assistant"}'),
            metadata={"langgraph_step": 1, "tags": ["x"]}, usage_details={"input": 3}, cost_details={"input": 0.5},
        )  # fmt: skip
        return Trace(id="a" * 32, name="t", timestamp=5, input="hi", tags=["k"], observations=[obs], **fields)

    original = trace(orjson.Fragment(b'[{"role":"user","content":"hi \\u00e9"}]'), end_time=9, public=True)
    (back,) = unshipped([orjson.loads(orjson.dumps(shipped(original)))], lambda t: t)
    assert type(back.observations[0].input) is orjson.Fragment  # stored and sent as the very same text
    assert orjson.dumps(back.observations[0].input) == orjson.dumps(original.observations[0].input)
    assert orjson.dumps(back) == orjson.dumps(original)  # every field of the trace and its observation

    assert shipped(trace(list(range(MAX_SHIPPED_ITEMS)))) is not None
    assert shipped(trace(list(range(MAX_SHIPPED_ITEMS + 1)))) is None  # a long list: the program's Packer shares it
    assert shipped(trace("x" * MAX_SHIPPED_BYTES)) is None
    assert shipped(trace(2**70)) is None
    score = Score(id="s", trace_id="a" * 32, name="ok", timestamp=5, value=1.0)
    assert shipped(trace("hi", scores=[score])) is None


def _comparable(trace: object) -> str:
    """A stored trace as JSON with what differs between two runs of one graph (ids, times, uuids) masked."""
    import re

    import orjson

    text = orjson.dumps(trace.to_dict(), default=str, option=orjson.OPT_SORT_KEYS).decode()  # type: ignore[attr-defined]
    for pattern, mask in (
        (r'"[0-9a-f]{16}(?:[0-9a-f]{16})?"', '"ID"'),
        (r"/trace/[0-9a-f]{32}", "/trace/ID"),
        (r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "TIME"),
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID"),
        (r'"(latency|timeToFirstToken)":[0-9.e-]+', r'"\1":0'),
    ):
        text = re.sub(pattern, mask, text)
    return text


def test_a_trace_the_helper_prepares_from_what_was_captured_is_the_one_the_program_would_store(
    receiver, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program hands a finished trace over as captured (one orjson pass) and the helper prepares it: messages,
    tool calls, LangGraph's metadata, usage and cost, and an image taken out as media come out as when the
    program prepares and stores the trace itself (store only)."""
    import base64

    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableLambda

    import lftrace
    from lftrace.langchain import CallbackHandler
    from lftrace.writer import TraceWriter
    from support.fake_models import ToolCallingFakeModel, build_agent

    prepared_here: list[str] = []  # traces the program's own writer prepared (a spy: each call goes through)
    prepare = TraceWriter.prepare
    monkeypatch.setattr(
        TraceWriter, "prepare", lambda self, t, **kw: prepared_here.append(t.id) or prepare(self, t, **kw)
    )
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"pixels" * 40).decode()
    question = HumanMessage(
        content=[{"type": "text", "text": "Paris?"}, {"type": "image_url", "image_url": {"url": image}}]
    )
    graph = build_agent(ToolCallingFakeModel())

    helper = lftrace.Langfuse(public_key="pk-lf-helper", secret_key="sk-lf-helper", base_url=receiver.url)
    local = lftrace.Langfuse(public_key="", store=isolated_env.with_name("local.db"))
    # a first trace through the helper, so that its start (slow on a busy machine) is behind us
    RunnableLambda(lambda x: x).invoke("warm", config={"callbacks": [CallbackHandler(public_key="pk-lf-helper")]})
    assert helper.flush() is True
    assert helper._deliverer._proc.poll() is None, "the helper did not start or write in time on this machine"
    prepared_here.clear()
    ids = []
    for client, key in ((helper, "pk-lf-helper"), (local, "")):
        handler = CallbackHandler(public_key=key)
        graph.invoke({"messages": [question]}, config={"callbacks": [handler]})
        assert client.flush() is True
        ids.append(handler.last_trace_id)

    assert type(helper._deliverer).__name__ == "DeliveryProcess"
    assert prepared_here == [ids[1]]  # the helper prepared the first trace, the program only the store-only one
    from_helper, from_program = helper.get_trace(ids[0]), local.get_trace(ids[1])
    assert _comparable(from_helper) == _comparable(from_program)
    generation = next(o for o in from_helper.observations if o.type == "GENERATION")
    assert generation.cost_details and generation.cost_details["total"] > 0  # priced in the helper
    assert "@@@langfuseMedia:type=image/png" in json.dumps(from_helper.observations[1].input)
    media = helper.store.trace_media([ids[0]])[ids[0]], local.store.trace_media([ids[1]])[ids[1]]
    assert [(m.content_type, m.field, m.content) for m in media[0]] == [
        (m.content_type, m.field, m.content) for m in media[1]
    ]
    assert {m.content_type for m in media[0]} == {"image/png"}
    spans = len(from_helper.observations) + 1  # and the first trace's
    assert len(receiver.wait_for_spans(spans)) == spans


def test_what_the_program_hands_over_as_captured_and_what_it_prepares_itself() -> None:
    """A finished trace goes to the helper as captured unless it holds media objects (their bytes are taken out
    here), a value orjson refuses, a long captured conversation (shared by the program's converter) or scores;
    then the program prepares it and ``shipped`` decides."""
    from langchain_core.messages import AIMessage, HumanMessage
    from pydantic import BaseModel, ConfigDict

    from lftrace.media import LangfuseMedia
    from lftrace.model import Observation, Score, Trace
    from lftrace.sharing import Frozen
    from lftrace.shipping import MAX_SHIPPED_ITEMS, captured, unshipped
    from lftrace.writer import TraceWriter

    def trace(value: object, **fields: object) -> Trace:
        obs = Observation(
            id="1" * 16, trace_id="a" * 32, parent_id=None, type="GENERATION", name="llm", start_time=5, end_time=9,
            model="gpt-4o-mini", input=value, output=AIMessage("ok"), metadata={"langgraph_path": ("__pregel_pull", "agent")},
            usage_details={"input": 3, "output": 1, "total": 4},
        )  # fmt: skip
        return Trace(id="a" * 32, name="t", timestamp=5, input="hi", tags=["k"], observations=[obs], **fields)

    class Report(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        title: str
        attachment: LangfuseMedia

    conversation = [HumanMessage("hi"), AIMessage("hello", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}])]
    import orjson

    writer = TraceWriter(lambda: None, lambda: [])
    form = captured(trace({"messages": Frozen(conversation)}))
    assert form is not None
    (from_helper,) = unshipped([orjson.loads(orjson.dumps(form))], writer.prepare)
    here = writer.prepare(trace({"messages": Frozen(conversation)}))
    assert orjson.dumps(from_helper) == orjson.dumps(here)  # every field, the priced generation included
    assert from_helper.observations[0].cost_details == here.observations[0].cost_details != None  # noqa: E711

    pdf = LangfuseMedia(content_bytes=b"%PDF-1.4", content_type="application/pdf")
    assert captured(trace([pdf])) is None
    assert captured(trace({"report": Report(title="q3", attachment=pdf)})) is None  # inside a model too
    assert captured(trace(2**70)) is None
    assert captured(trace(Frozen(list(range(MAX_SHIPPED_ITEMS))))) is not None
    assert captured(trace({"messages": Frozen(list(range(MAX_SHIPPED_ITEMS + 1)))})) is None
    score = Score(id="s", trace_id="a" * 32, name="ok", timestamp=5, value=1.0)
    assert captured(trace("hi", scores=[score])) is None
