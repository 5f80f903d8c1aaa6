"""push / status / doctor, the run-result line and show --remote, against a real fake Langfuse on 127.0.0.1."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from lftrace.cli import app
from lftrace.cli.backend import describe_destination_result, fetch_remote_trace
from lftrace.config import Settings
from lftrace.delivery import Deliverer, destinations_for
from lftrace.errors import ConfigError, TraceNotFound
from lftrace.store import TraceStore
from support.otlp_receiver import Reply, closed_port, running_receiver
from support.traces import sample_trace

PK = "pk-lf-1234567890abcd"
SK = "sk-lf-topsecret99887766"


def make_app() -> typer.Typer:
    return app


def invoke(*args: str):
    result = CliRunner().invoke(make_app(), list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert SK not in output and "sk-lf-wrong-key-9999" not in output  # secrets never printed
    return result, output


@pytest.fixture
def receiver():
    with running_receiver() as rec:
        rec.expect_basic(PK, SK)
        yield rec


@pytest.fixture
def langfuse_env(monkeypatch, receiver):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    monkeypatch.setenv("LANGFUSE_BASE_URL", receiver.url)
    monkeypatch.setenv("LANGFUSE_TIMEOUT", "2")
    return receiver


def write_traces(isolated_env, n: int = 3, destinations=None) -> list[str]:
    traces = [sample_trace() for _ in range(n)]
    with TraceStore(isolated_env) as store:
        store.write_traces(traces, destinations=destinations if destinations is not None else [])
    return [t.id for t in traces]


def test_push_without_backend_says_how_to_configure_one(isolated_env):
    write_traces(isolated_env)
    result, output = invoke("push")
    assert result.exit_code == 2
    assert "LANGFUSE_PUBLIC_KEY" in output and "OTEL_EXPORTER_OTLP_ENDPOINT" in output


def test_push_sends_pending_traces_and_a_second_push_sends_nothing(isolated_env, langfuse_env):
    ids = write_traces(isolated_env, destinations=[f"langfuse:{langfuse_env.url}"])
    result, output = invoke("push")
    assert result.exit_code == 0, output
    assert f"langfuse:{langfuse_env.url}: delivered 3, pending 0, failed 0" in output
    assert sorted(set(langfuse_env.trace_ids())) == sorted(ids)
    sent = len(langfuse_env.otlp_requests(ok_only=False))
    result, output = invoke("push")
    assert result.exit_code == 0
    assert "delivered 0, pending 0, failed 0" in output
    assert len(langfuse_env.otlp_requests(ok_only=False)) == sent


def test_push_all_queues_traces_recorded_before_the_backend_was_configured(isolated_env, langfuse_env):
    ids = write_traces(isolated_env, destinations=[])  # recorded offline
    result, output = invoke("push")
    assert "delivered 0" in output and not langfuse_env.spans()
    result, output = invoke("push", "--all", "--dry-run")
    assert result.exit_code == 0
    assert "queued 3 older traces" in output and "would send 3 traces (dry run)" in output
    assert not langfuse_env.otlp_requests(ok_only=False)
    result, output = invoke("push", "--all")
    assert result.exit_code == 0, output
    assert "delivered 3" in output
    assert sorted(set(langfuse_env.trace_ids())) == sorted(ids)


def test_push_while_down_exits_6_and_status_shows_the_queue(isolated_env, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    monkeypatch.setenv("LANGFUSE_BASE_URL", url)
    monkeypatch.setenv("LANGFUSE_TIMEOUT", "1")
    write_traces(isolated_env, n=2, destinations=[f"langfuse:{url}"])
    result, output = invoke("push")
    assert result.exit_code == 6
    assert "queued: 2 traces pending (cannot connect" in output
    result, output = invoke("status", "--json")
    assert result.exit_code == 0
    (dest,) = json.loads(result.output)["destinations"]
    assert (dest["name"], dest["pending"], dest["delivered"], dest["configured"]) == (f"langfuse:{url}", 2, 0, True)
    assert "cannot connect" in dest["last_error"]
    result, output = invoke("status")
    assert f"langfuse:{url}: delivered 0, pending 2, failed 0" in output
    assert "last error: cannot connect" in output


def test_rejected_keys_are_kept_failed_then_push_with_fixed_keys_delivers(isolated_env, langfuse_env, monkeypatch):
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong-key-9999")
    ids = write_traces(isolated_env, n=2, destinations=[f"langfuse:{langfuse_env.url}"])
    result, output = invoke("push")
    assert result.exit_code == 6
    assert "failed 2" in output and "Langfuse rejected the keys" in output and "pk-lf-...abcd" in output
    status = json.loads(invoke("status", "--json")[0].output)["destinations"][0]
    assert status["failed"] == 2 and "401" in status["last_error"]
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    result, output = invoke("push")
    assert result.exit_code == 0, output
    assert "delivered 2, pending 0, failed 0" in output
    assert sorted(set(langfuse_env.trace_ids())) == sorted(ids)


def test_doctor_all_good_masks_secrets_and_caches_the_project(isolated_env, langfuse_env):
    write_traces(isolated_env, n=1)
    result, output = invoke("doctor")
    assert result.exit_code == 0, output
    assert "public_key: pk-lf-...abcd" in output and "secret_key: sk-lf-...7766" in output
    assert f"Langfuse at {langfuse_env.url} is up" in output and "version 4.16.0" in output
    assert "project proj-123" in output
    assert "store " in output and "1 traces" in output
    assert "off   OTLP export" in output
    cpus = len(os.sched_getaffinity(0))
    where = "a helper process" if cpus >= 2 else "a thread of the traced program"
    assert f"info  delivery from {where} ({cpus} CPUs" in output
    with TraceStore(isolated_env) as store:
        assert store.get_meta(f"langfuse.project_id:{langfuse_env.url}:{PK}") == "proj-123"


def test_doctor_says_where_delivery_runs_when_it_is_forced(langfuse_env, monkeypatch):
    monkeypatch.setenv("LFTRACE_EXPORT_PROCESS", "false")
    result, output = invoke("doctor")
    assert result.exit_code == 0, output
    assert "export_process: False" in output
    assert "info  delivery from a thread of the traced program (LFTRACE_EXPORT_PROCESS=false)" in output


def test_doctor_wrong_key_exits_6_naming_the_fix(langfuse_env, monkeypatch):
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong-key-9999")
    result, output = invoke("doctor")
    assert result.exit_code == 6
    assert f"Langfuse rejected the keys for {langfuse_env.url} (401)" in output
    assert "LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, pk-lf-...abcd" in output


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("down", "cannot connect to Langfuse"),
        ("html", "with an HTML page"),
        ("garbage", "with a non-JSON answer"),
        ("missing_key", "LANGFUSE_SECRET_KEY is not set"),
    ],
)
def test_doctor_reports_broken_langfuse(langfuse_env, monkeypatch, setup, expected):
    if setup == "down":
        monkeypatch.setenv("LANGFUSE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    elif setup == "html":
        langfuse_env.health_reply = Reply(200, "<html><title>Welcome to nginx</title></html>")
    elif setup == "garbage":
        langfuse_env.health_reply = Reply(200, "\x00 not json")
    else:
        monkeypatch.delenv("LANGFUSE_SECRET_KEY")
    result, output = invoke("doctor")
    assert result.exit_code == 6, output
    assert expected in output


def test_doctor_checks_the_otlp_endpoint(monkeypatch):
    with running_receiver() as otel:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otel.url)
        result, output = invoke("doctor")
        assert result.exit_code == 0, output
        assert f"OTLP endpoint {otel.url}/v1/traces accepts traces" in output
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otel.url + "/wrong")
        result, output = invoke("doctor")
        assert result.exit_code == 6
        assert "HTTP 404" in output and "/v1/traces" in output


def deliver_all(settings: Settings, store: TraceStore):
    deliverer = Deliverer(store, destinations_for(settings), settings)
    try:
        return deliverer.deliver_now()
    finally:
        deliverer.stop()


def test_describe_destination_result_gives_the_langfuse_url_or_the_queue(isolated_env, receiver):
    settings = Settings(public_key=PK, secret_key=SK, base_url=receiver.url, store=isolated_env)
    dest = f"langfuse:{receiver.url}"
    (trace_id,) = write_traces(isolated_env, n=1, destinations=[dest])
    with TraceStore(isolated_env) as store:
        report = deliver_all(settings, store)
        lines = describe_destination_result(settings, store, trace_id, report)
        assert lines == [f"{receiver.url}/project/proj-123/traces/{trace_id}"]
        assert store.get_meta(f"langfuse.project_id:{receiver.url}:{PK}") == "proj-123"
    projects_calls = sum(r.path == "/api/public/projects" for r in receiver.requests)
    with TraceStore(isolated_env) as store:  # cached: no second projects call
        assert describe_destination_result(settings, store, trace_id)[0].endswith(f"/traces/{trace_id}")
    assert sum(r.path == "/api/public/projects" for r in receiver.requests) == projects_calls

    down = Settings(
        public_key=PK, secret_key=SK, base_url=f"http://127.0.0.1:{closed_port()}", timeout=0.5, store=isolated_env
    )
    (queued_id,) = write_traces(isolated_env, n=1, destinations=[f"langfuse:{down.base_url}"])
    with TraceStore(isolated_env) as store:
        report = deliver_all(down, store)
        (line,) = describe_destination_result(down, store, queued_id, report)
    assert line.startswith("queued: 1 trace pending for langfuse:") and "(cannot connect" in line
    assert describe_destination_result(Settings(store=isolated_env), TraceStore(isolated_env), trace_id) == []


def test_fetch_remote_trace_v2_with_pagination_and_v1_fallback(isolated_env, receiver):
    settings = Settings(public_key=PK, secret_key=SK, base_url=receiver.url, store=isolated_env)
    trace = sample_trace()
    with TraceStore(isolated_env) as store:
        store.write_traces([trace], destinations=[f"langfuse:{receiver.url}"])
        assert deliver_all(settings, store).delivered == 1
    remote = fetch_remote_trace(settings, trace.id)
    pages = [r for r in receiver.requests if r.path == "/api/public/v2/observations"]
    assert len(pages) == 2  # 3 observations, 2 per page: the cursor was followed
    assert remote.id == trace.id and remote.name == "weather-agent"
    assert (remote.user_id, remote.session_id, remote.tags) == ("user-1", "sess-1", ["prod", "agent"])
    local = {o.id: o for o in trace.observations}
    assert {o.id: o.parent_id for o in remote.observations} == {o.id: o.parent_id for o in trace.observations}
    gen = next(o for o in remote.observations if o.type == "GENERATION")
    assert gen.model == local[gen.id].model and gen.usage_details == local[gen.id].usage_details
    assert gen.input == local[gen.id].input  # v2 raw strings decoded
    assert gen.start_time == local[gen.id].start_time

    receiver.v2_observations = False  # a v3 server
    receiver.v1_traces = True
    remote = fetch_remote_trace(settings, trace.id)
    assert sorted(o.id for o in remote.observations) == sorted(local)
    assert remote.observations[0].parent_id is None or remote.roots()
    receiver.v1_traces = False
    with pytest.raises(TraceNotFound, match="no trace"):
        fetch_remote_trace(settings, "0" * 32)
    with pytest.raises(ConfigError, match="LANGFUSE_PUBLIC_KEY"):
        fetch_remote_trace(Settings(store=isolated_env), trace.id)


def test_every_command_has_help_with_an_example():
    for command in ("push", "status", "doctor"):
        result = CliRunner().invoke(make_app(), [command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output and "lftrace " + command in result.output, command


def test_push_in_a_real_subprocess(isolated_env, langfuse_env):
    ids = write_traces(isolated_env, n=2, destinations=[f"langfuse:{langfuse_env.url}"])
    run = subprocess.run([sys.executable, "-m", "lftrace", "push"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "delivered 2" in run.stdout
    assert SK not in run.stdout + run.stderr
    assert sorted(set(langfuse_env.trace_ids())) == sorted(ids)


def test_a_remote_answer_is_let_go_once_read_not_left_to_the_garbage_collector(isolated_env, receiver):
    """httpx's response and its stream refer to each other (encode/httpx#3733): every answer of the Langfuse API
    (a remote trace's pages, dataset items) stayed alive, body and all, until a garbage collection."""
    import httpx

    settings = Settings(public_key=PK, secret_key=SK, base_url=receiver.url, store=isolated_env)
    trace = sample_trace(tool_output="x" * 100_000)
    with TraceStore(isolated_env) as store:
        store.write_traces([trace], destinations=[f"langfuse:{receiver.url}"])
        assert deliver_all(settings, store).delivered == 1

    def responses() -> int:
        return sum(1 for obj in gc.get_objects() if isinstance(obj, httpx.Response))

    fetch_remote_trace(settings, trace.id)
    gc.collect()
    gc.disable()
    try:
        before = responses()
        for _ in range(3):
            assert fetch_remote_trace(settings, trace.id).id == trace.id
        with pytest.raises(TraceNotFound):
            fetch_remote_trace(settings, "0" * 32)  # a 404 answer too
        left = responses() - before
    finally:
        gc.enable()
    pages = [r for r in receiver.requests if r.path == "/api/public/v2/observations"]
    assert len(pages) >= 8  # the answers were real: 2 pages per fetch
    assert left == 0
