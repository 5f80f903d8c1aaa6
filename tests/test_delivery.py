"""Outbox delivery on a real SQLite store to a real receiver: outages, retries, rejections, two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from lftrace.config import Settings
from lftrace.delivery import Deliverer, DeliveryReport, destinations_for
from lftrace.exporters.encode import EncodedTrace
from lftrace.store import TraceStore
from support.otlp_receiver import Reply, closed_port, running_receiver
from support.traces import sample_trace

PK = "pk-lf-1234567890abcd"
SK = "sk-lf-topsecret99887766"


def otlp_settings(tmp_path, endpoint: str, **kw) -> Settings:
    return Settings(store=tmp_path / "traces.db", otlp_endpoint=endpoint, timeout=kw.pop("timeout", 3.0), **kw)


def langfuse_settings(tmp_path, base_url: str, secret: str = SK, **kw) -> Settings:
    return Settings(
        store=tmp_path / "traces.db", public_key=PK, secret_key=secret, base_url=base_url, timeout=3.0, **kw
    )


def write(store: TraceStore, settings: Settings, n: int = 3, **kw) -> list[str]:
    traces = [sample_trace(**kw) for _ in range(n)]
    store.write_traces(traces, destinations=[d.name for d in destinations_for(settings)])
    return [t.id for t in traces]


def deliver(store, settings, include_failed=False) -> DeliveryReport:
    deliverer = Deliverer(store, destinations_for(settings), settings)
    try:
        return deliverer.deliver(time.monotonic() + settings.timeout, include_failed=include_failed)
    finally:
        deliverer.stop()


def test_destinations_for_settings(tmp_path):
    assert destinations_for(Settings(store=tmp_path / "x.db")) == []
    both = destinations_for(
        Settings(public_key=PK, secret_key=SK, base_url="http://lf:3000", otlp_endpoint="http://otel:4318/v1/traces")
    )
    assert [d.name for d in both] == ["langfuse:http://lf:3000", "otlp:http://otel:4318/v1/traces"]
    assert destinations_for(Settings(public_key=PK)) == []  # both keys needed


def test_delivers_once_and_a_second_delivery_sends_nothing(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces")
    ids = write(store, settings)
    report = deliver(store, settings)
    assert (report.delivered, report.pending, report.failed) == (3, 0, 0)
    assert sorted(set(receiver.trace_ids())) == sorted(ids)
    assert report.summary() == "delivered 3 traces"
    requests = len(receiver.otlp_requests(ok_only=False))
    again = deliver(store, settings)
    assert again.delivered == 0 and again.summary() == "nothing to deliver"
    assert len(receiver.otlp_requests(ok_only=False)) == requests
    assert all(store.delivery_state(i) == {f"otlp:{settings.otlp_endpoint}": "delivered"} for i in ids)


def test_outage_keeps_traces_queued_then_they_are_delivered(tmp_path, store):
    port = closed_port()
    settings = otlp_settings(tmp_path, f"http://127.0.0.1:{port}/v1/traces", timeout=1.0)
    ids = write(store, settings, n=2)
    started = time.monotonic()
    down = deliver(store, settings)
    assert time.monotonic() - started < settings.timeout + 0.5  # a flush never hangs
    assert (down.delivered, down.pending) == (0, 2)
    assert "cannot connect" in (down.last_error or "")
    assert down.summary().startswith("queued: 2 traces pending (cannot connect")
    with running_receiver(port) as back:  # the server comes back on the same port
        up = deliver(store, settings)
        assert (up.delivered, up.pending) == (2, 0)
        assert sorted(set(back.trace_ids())) == sorted(ids)


def test_503_is_retried_within_one_flush(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces")
    write(store, settings, n=2)
    receiver.script(Reply(503, "<html><title>Service Unavailable</title></html>"), Reply(503, "busy"))
    report = deliver(store, settings)
    assert (report.delivered, report.pending) == (2, 0)
    statuses = [r.status for r in receiver.otlp_requests(ok_only=False)]
    assert statuses == [503, 503, 200]


def test_429_retry_after_is_honoured(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces", timeout=4.0)
    write(store, settings, n=1)
    receiver.script(Reply(429, '{"message": "rate limit"}', {"Retry-After": "1"}))
    report = deliver(store, settings)
    assert report.delivered == 1
    first, second = receiver.otlp_requests(ok_only=False)
    gap = second.at - first.at
    assert (first.status, second.status) == (429, 200)
    assert gap >= 0.95, gap


def test_429_beyond_the_deadline_stays_queued_for_later(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces", timeout=0.5)
    write(store, settings, n=1)
    receiver.script(Reply(429, '{"message": "slow down"}', {"Retry-After": "30"}))
    started = time.monotonic()
    report = deliver(store, settings)
    assert time.monotonic() - started < 1.0
    assert (report.delivered, report.pending) == (0, 1)
    assert "slow down" in report.summary()
    # the server's Retry-After is kept in the store: another process does not hammer it
    assert deliver(store, settings).delivered == 0
    assert len(receiver.otlp_requests(ok_only=False)) == 1


def test_401_is_kept_as_failed_with_the_message_then_fixed_key_delivers(tmp_path, store, receiver):
    receiver.expect_basic(PK, SK)
    wrong = langfuse_settings(tmp_path, receiver.url, secret="sk-lf-wrong-secret-0000")
    ids = write(store, wrong, n=2)
    report = deliver(store, wrong)
    assert (report.delivered, report.failed, report.pending) == (0, 2, 0)
    assert "Langfuse rejected the keys" in report.last_error and "401" in report.last_error
    assert "sk-lf-wrong-secret-0000" not in json.dumps(report.to_dict())
    counts = store.delivery_counts()[f"langfuse:{receiver.url}"]
    assert counts["failed"] == 2 and "LANGFUSE_SECRET_KEY" in counts["last_error"]
    assert store.get_trace(ids[0]).id == ids[0]  # nothing deleted
    # not retried automatically
    sent = len(receiver.otlp_requests(ok_only=False))
    assert deliver(store, wrong).delivered == 0
    assert len(receiver.otlp_requests(ok_only=False)) == sent
    # fixed key + push (include_failed) -> delivered
    fixed = langfuse_settings(tmp_path, receiver.url)
    pushed = deliver(store, fixed, include_failed=True)
    assert (pushed.delivered, pushed.failed) == (2, 0)
    assert sorted(set(receiver.trace_ids())) == sorted(ids)


def test_hanging_server_is_bounded_by_the_deadline(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces", timeout=0.6)
    write(store, settings, n=1)
    receiver.script(Reply(200, "{}", delay=3.0))
    started = time.monotonic()
    report = deliver(store, settings)
    assert time.monotonic() - started < 1.5
    assert report.pending == 1 and "timed out" in (report.last_error or "")


def test_twenty_megabyte_output_exports_and_the_store_keeps_the_full_copy(tmp_path, store, receiver):
    settings = langfuse_settings(tmp_path, receiver.url)
    big = "z" * (20 * 1024 * 1024)
    (trace_id,) = write(store, settings, n=1, tool_output=big)
    assert deliver(store, settings).delivered == 1
    tool = next(s for s in receiver.spans() if s.name == "get_weather")
    assert tool.ByteSize() < 2_000_000
    stored = store.get_trace(trace_id)
    assert next(o for o in stored.observations if o.type == "TOOL").output == big


def test_both_destinations_get_every_trace(tmp_path, store, receiver):
    with running_receiver() as otel:
        settings = Settings(
            store=tmp_path / "traces.db",
            public_key=PK,
            secret_key=SK,
            base_url=receiver.url,
            otlp_endpoint=otel.url + "/v1/traces",
        )
        ids = write(store, settings, n=2)
        report = deliver(store, settings)
        assert report.delivered == 4
        assert sorted(set(receiver.trace_ids())) == sorted(set(otel.trace_ids())) == sorted(ids)
        assert {s.name for s in otel.spans()} >= {"chat gpt-4o-mini-2024-07-18", "execute_tool get_weather"}


def test_background_thread_delivers_off_the_callers_path(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces")
    deliverer = Deliverer(store, destinations_for(settings), settings)
    deliverer.start_background(0.05)
    try:
        ids = write(store, settings, n=2)
        deliverer.wake()
        spans = receiver.wait_for_spans(6)
        assert sorted({s.trace_id.hex() for s in spans}) == sorted(ids)
    finally:
        deliverer.stop()
    assert deliverer._thread is None


WORKER = textwrap.dedent(
    """
    import sys, time
    from lftrace import delivery
    from lftrace.config import Settings
    from lftrace.store import TraceStore
    delivery.BATCH_TRACES = 7  # small claims, so the two processes interleave
    store = TraceStore(sys.argv[1])
    settings = Settings(store=sys.argv[1], otlp_endpoint=sys.argv[2], timeout=20)
    d = delivery.Deliverer(store, delivery.destinations_for(settings), settings)
    print(d.deliver(time.monotonic() + 20).delivered)
    d.stop()
    """
)


def test_two_processes_flushing_one_store_send_each_trace_exactly_once(tmp_path, store, receiver):
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces")
    ids = write(store, settings, n=120)
    receiver.script(*[Reply(200, "{}", delay=0.01) for _ in range(40)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "traces.db"), settings.otlp_endpoint],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    delivered = [int(out.strip()) for out, _ in outputs]
    assert sum(delivered) == 120
    roots = [s.trace_id.hex() for s in receiver.spans() if not s.parent_span_id]
    assert sorted(roots) == sorted(ids)  # each trace exactly once
    assert len(receiver.spans()) == 360


def test_push_with_rejected_keys_tries_once_not_until_the_deadline(tmp_path, store, receiver):
    receiver.expect_basic(PK, SK)
    wrong = langfuse_settings(tmp_path, receiver.url, secret="sk-lf-wrong-secret-0000")
    write(store, wrong, n=150)  # two batches
    deliverer = Deliverer(store, destinations_for(wrong), wrong)
    started = time.monotonic()
    report = deliverer.deliver(time.monotonic() + 30, include_failed=True)
    deliverer.stop()
    assert time.monotonic() - started < 3
    assert report.delivered == 0 and report.failed == 100 and report.pending == 50  # the second batch is untouched
    assert len(receiver.otlp_requests(ok_only=False)) == 1


def test_a_batch_specific_400_does_not_block_the_next_batches(tmp_path, store, receiver, monkeypatch):
    from lftrace import delivery

    monkeypatch.setattr(delivery, "BATCH_TRACES", 2)
    settings = otlp_settings(tmp_path, receiver.url + "/v1/traces")
    write(store, settings, n=4)
    receiver.script(Reply(400, '{"message": "span too large"}'))
    report = deliver(store, settings, include_failed=True)
    assert (report.delivered, report.failed) == (2, 2)
    assert "span too large" in store.delivery_counts()[f"otlp:{settings.otlp_endpoint}"]["last_error"]
    assert len(receiver.otlp_requests(ok_only=False)) == 2  # the failed batch is not re-claimed in the same call


def test_traces_remembered_from_the_writer_export_exactly_like_traces_read_back(tmp_path, store):
    """The copy encoded when written (first destination) and the store's copy (second) give the same spans."""
    with running_receiver() as first, running_receiver() as second:
        settings = Settings(
            store=tmp_path / "traces.db",
            public_key=PK,
            secret_key=SK,
            base_url=first.url,
            otlp_endpoint=second.url + "/v1/traces",
        )
        traces = [sample_trace(error=True), sample_trace()]
        store.write_traces(traces, destinations=[d.name for d in destinations_for(settings)])
        # the second destination speaks Langfuse's dialect too, so the two exports can be compared span by span
        destinations = destinations_for(settings)
        destinations[1].exporter.profile = destinations[0].exporter.profile
        from_memory = Deliverer(store, destinations[:1], settings)
        from_store = Deliverer(store, destinations[1:], settings)
        try:
            from_memory.remember(traces)
            kept = [v for versions in from_memory._recent.values() for v in versions.values()]
            assert len(kept) == 2 and all(isinstance(v, EncodedTrace) for v in kept)  # bytes, not the traces
            assert from_memory.deliver(time.monotonic() + settings.timeout).delivered == 2
            assert from_store.deliver(time.monotonic() + settings.timeout).delivered == 2
        finally:
            from_memory.stop()
            from_store.stop()
        assert from_memory._recent == {}  # each remembered trace is used once
        key = lambda s: s.span_id  # noqa: E731
        assert sorted(first.spans(), key=key) == sorted(second.spans(), key=key)


@pytest.mark.parametrize("helper", ["true", "false"])
def test_flush_after_every_request_during_an_outage_pays_the_retries_once_and_loses_nothing(
    tmp_path, monkeypatch, helper
):
    """A web app flushes after every request (the SDK's advice for short-lived work) while Langfuse is down: the
    first flush retries within the call, the later ones try once (a refused connection costs ~1 ms), every trace
    stays queued, and all of them go on the first flush after the server is back on its port. With the export
    helper process (the default on 2+ CPUs) and from a thread of the program."""
    import lftrace
    from lftrace import client as client_module

    monkeypatch.setenv("LFTRACE_EXPORT_PROCESS", helper)
    port = closed_port()
    client_module.reset_clients()
    lf = lftrace.Langfuse(
        public_key=PK, secret_key=SK, base_url=f"http://127.0.0.1:{port}", timeout=3.0, store=tmp_path / "t.db"
    )
    ids, took = [], []
    try:
        for i in range(6):
            with lf.start_as_current_span(name=f"request {i}", input={"i": i}) as span:
                ids.append(span.trace_id)
            started = time.monotonic()
            lf.flush()
            took.append(time.monotonic() - started)
        assert took[0] >= 0.15, took  # in-call retries: 0.05-0.1 + 0.1-0.2 + 0.2-0.4 s of backoff
        assert max(took[1:]) < took[0] and sorted(took[1:])[2] < 0.1, took  # one attempt each
        for trace_id in ids:
            assert lf.get_trace(trace_id).name == "request " + str(ids.index(trace_id))  # on disk, queued
        with running_receiver(port) as back:  # the server is back on the same port
            lf.flush()
            assert sorted(set(back.trace_ids())) == sorted(ids)
    finally:
        lf.shutdown()


PROGRAM = textwrap.dedent(
    """
    import time
    import lftrace
    lf = lftrace.get_client()
    with lf.start_as_current_span(name="nightly job", input={"n": 1}) as span:
        pass
    started = time.monotonic()
    lf.flush()
    print(span.trace_id, time.monotonic() - started)
    lf.shutdown()
    """
)


@pytest.mark.parametrize("helper", ["true", "false"])
def test_a_fresh_process_during_an_outage_tries_once_and_push_still_retries_in_full(tmp_path, receiver, helper):
    """A CI job runs one short program after another while the backend answers 503: the first pays the in-call
    retries, the next ones (new processes) find the outage in the store and try once; `lftrace push`, the explicit
    retry, retries in full and delivers them all; once delivered, a new program sends at once."""
    env = dict(
        os.environ,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url + "/v1/traces",
        LANGFUSE_TIMEOUT="3",
        LFTRACE_EXPORT_PROCESS=helper,
    )

    def program() -> tuple[str, float, int]:
        before = len(receiver.otlp_requests(ok_only=False))
        done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        trace_id, took = done.stdout.split()
        return trace_id, float(took), len(receiver.otlp_requests(ok_only=False)) - before

    receiver.script(*[Reply(503, "busy") for _ in range(8)])
    first, first_took, first_requests = program()
    second, second_took, second_requests = program()
    # the first flush retries (4 attempts; the helper's eager send before the flush adds one); the second tries once
    # (the helper: its eager send, then the flush's)
    assert first_requests >= 4, first_requests
    if helper == "false":
        assert second_requests == 1, second_requests
    else:
        assert 1 <= second_requests <= 2, second_requests
    assert second_took < first_took, (first_took, second_took)
    assert receiver.trace_ids() == []
    with TraceStore(tmp_path / "traces.db") as opened:
        pending = opened.delivery_counts()
    assert pending[f"otlp:{receiver.url}/v1/traces"]["pending"] == 2, pending  # both on disk, queued

    left = 8 - first_requests - second_requests  # 503s still scripted: push needs that many attempts, plus one
    assert 1 <= left <= 3
    before = len(receiver.otlp_requests(ok_only=False))
    pushed = subprocess.run(
        [sys.executable, "-m", "lftrace", "push"], env=env, capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert len(receiver.otlp_requests(ok_only=False)) - before == left + 1  # retried past every 503
    assert sorted(receiver.trace_ids()) == sorted([first, second])

    third, _, third_requests = program()  # nothing is down any more: sent at once
    assert third_requests == 1 and third in receiver.trace_ids()
