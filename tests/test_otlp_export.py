"""OTLP encoding and HTTP export against a real receiver on 127.0.0.1 (protobuf decoded back)."""

from __future__ import annotations

import base64
import gc
import gzip
import json
import os
import subprocess
import sys
import threading

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lftrace.exporters.encode import MAX_REQUEST_BYTES, encode_batches, encode_traces
from lftrace.exporters.otlp import LangfuseExporter, OtlpExporter
from support.otlp_receiver import Reply, attributes, closed_port
from support.traces import sample_trace

PK = "pk-lf-1234567890abcd"
SK = "sk-lf-topsecret99887766"


def spans_by_name(request) -> dict:
    return {s.name: s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}


def test_langfuse_attributes_ids_and_parentage():
    trace = sample_trace()
    request = encode_traces([trace])
    spans = spans_by_name(request)
    root, gen, tool = (spans[n] for n in ("LangGraph", "ChatOpenAI", "get_weather"))
    obs = {o.name: o for o in trace.observations}

    for name, span in spans.items():
        assert span.trace_id.hex() == trace.id
        assert span.span_id.hex() == obs[name].id
        assert span.start_time_unix_nano == obs[name].start_time
        assert span.end_time_unix_nano == obs[name].end_time
    assert root.parent_span_id == b""
    assert gen.parent_span_id.hex() == tool.parent_span_id.hex() == obs["LangGraph"].id

    r = attributes(root.attributes)
    assert r["langfuse.trace.name"] == "weather-agent"
    assert json.loads(r["langfuse.trace.input"]) == {"question": "weather in Paris?"}
    assert json.loads(r["langfuse.trace.output"]) == {"answer": "It is sunny"}
    assert r["langfuse.trace.tags"] == ["prod", "agent"]
    assert r["langfuse.trace.metadata.team"] == "search"
    assert json.loads(r["langfuse.trace.metadata.run"]) == {"n": 1}
    assert (r["user.id"], r["session.id"]) == ("user-1", "sess-1")
    assert r["langfuse.environment"] == "staging"
    assert r["langfuse.release"] == "1.2.3"
    assert r["langfuse.observation.type"] == "chain"
    assert json.loads(r["langfuse.observation.input"])["messages"][0]["content"] == "weather in Paris?"

    g = attributes(gen.attributes)
    assert "langfuse.trace.name" not in g  # trace attributes only on the root
    assert g["langfuse.observation.type"] == "generation"
    assert g["langfuse.observation.model.name"] == "gpt-4o-mini-2024-07-18"
    assert json.loads(g["langfuse.observation.model.parameters"]) == {"temperature": 0.2, "max_tokens": 256}
    assert json.loads(g["langfuse.observation.usage_details"])["input_cache_read"] == 100
    assert (
        "langfuse.observation.cost_details" not in g
    )  # Langfuse prices usage itself (LFTRACE_EXPORT_COST=1 sends ours)
    assert g["langfuse.observation.completion_start_time"] == "2025-10-09T08:53:20.015000Z"
    assert g["langfuse.observation.metadata.ls_provider"] == "openai"
    # GenAI conventions: totals include cache reads / reasoning
    assert g["gen_ai.operation.name"] == "chat"
    assert g["gen_ai.provider.name"] == "openai"
    assert g["gen_ai.request.model"] == "gpt-4o-mini"
    assert g["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (g["gen_ai.usage.input_tokens"], g["gen_ai.usage.output_tokens"]) == (120, 30)
    assert g["gen_ai.usage.cache_read.input_tokens"] == 100
    assert g["gen_ai.usage.reasoning.output_tokens"] == 10
    assert g["gen_ai.request.temperature"] == 0.2 and g["gen_ai.request.max_tokens"] == 256
    # OpenInference for Phoenix
    assert g["openinference.span.kind"] == "LLM"
    assert (g["llm.token_count.prompt"], g["llm.token_count.completion"], g["llm.token_count.total"]) == (120, 30, 150)

    t = attributes(tool.attributes)
    assert t["langfuse.observation.type"] == "tool"
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["gen_ai.tool.name"] == "get_weather"
    assert t["gen_ai.tool.call.id"] == "call_1"
    assert json.loads(t["langfuse.observation.output"]) == "sunny"

    resource = attributes(request.resource_spans[0].resource.attributes)
    assert resource["service.name"] == "lftrace"
    assert resource["telemetry.sdk.name"] == "lftrace"
    assert request.resource_spans[0].scope_spans[0].scope.name.startswith("langfuse-sdk")


def test_trace_context_parent_span_becomes_the_root_spans_parent(receiver):
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.runnables import RunnableLambda

    from lftrace import get_client
    from lftrace.langchain import CallbackHandler

    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    handler = CallbackHandler(trace_context={"trace_id": caller_trace, "parent_span_id": caller_span})
    chain = RunnableLambda(lambda x: x, name="prep") | FakeListLLM(responses=["ok"])
    assert chain.invoke("hi", config={"callbacks": [handler]}) == "ok"
    trace = get_client().get_trace(caller_trace)

    assert LangfuseExporter(receiver.url, PK, SK).export([trace]).ok
    spans = {s.name: s for s in receiver.spans()}  # decoded from the bytes the receiver got
    assert set(spans) == {"RunnableSequence", "prep", "FakeListLLM"}
    root = spans["RunnableSequence"]
    assert root.trace_id == bytes.fromhex(caller_trace)
    assert root.parent_span_id == bytes.fromhex(caller_span)
    r = attributes(root.attributes)
    assert r["langfuse.internal.as_root"] == "true"  # still the Langfuse trace root, so trace attributes apply
    assert r["langfuse.trace.name"] == "RunnableSequence"
    for child in ("prep", "FakeListLLM"):
        assert spans[child].parent_span_id == root.span_id
        assert "langfuse.internal.as_root" not in attributes(spans[child].attributes)


@pytest.mark.parametrize("parent", ["00F067AA0BA902B7", "00f067aa0ba902b", "zz" * 8, "0" * 16, 42, None])
def test_only_a_valid_foreign_parent_span_id_is_used(parent):
    trace = sample_trace()
    trace.metadata = {**(trace.metadata or {}), "parent_span_id": parent}
    root = spans_by_name(encode_traces([trace], profile="otlp"))["LangGraph"]
    if parent == "00F067AA0BA902B7":  # upper case hex is still a span id
        assert root.parent_span_id.hex() == parent.lower()
        assert attributes(root.attributes)["langfuse.internal.as_root"] == "true"
    else:
        assert root.parent_span_id == b""
        assert "langfuse.internal.as_root" not in attributes(root.attributes)


def test_error_level_sets_error_status_with_message():
    request = encode_traces([sample_trace(error=True)])
    root = spans_by_name(request)["LangGraph"]
    assert root.status.code == root.status.STATUS_CODE_ERROR
    assert root.status.message == "ValueError: boom"
    assert attributes(root.attributes)["langfuse.observation.level"] == "ERROR"
    assert spans_by_name(request)["ChatOpenAI"].status.code == root.status.STATUS_CODE_UNSET


def test_generic_otlp_profile_uses_genai_span_names_and_openinference_io():
    request = encode_traces([sample_trace()], profile="otlp")
    spans = spans_by_name(request)
    assert set(spans) == {"LangGraph", "chat gpt-4o-mini-2024-07-18", "execute_tool get_weather"}
    chat = attributes(spans["chat gpt-4o-mini-2024-07-18"].attributes)
    assert chat["lftrace.observation.name"] == "ChatOpenAI"
    assert json.loads(chat["input.value"]) == [{"role": "user", "content": "weather in Paris?"}]
    assert chat["input.mime_type"] == "application/json"
    assert "langfuse.observation.input" not in chat
    assert request.resource_spans[0].scope_spans[0].scope.name == "lftrace"


def test_request_validates_against_the_official_langfuse_otel_models():
    from langfuse.api.core.pydantic_utilities import parse_obj_as
    from langfuse.api.opentelemetry.types import OtelResourceSpan

    # OTLP/JSON: integer enums and hex ids (what Langfuse's JSON route expects)
    data = MessageToDict(encode_traces([sample_trace(error=True)]), use_integers_for_enums=True)
    for rs in data["resourceSpans"]:
        for span in rs["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64decode(span[key]).hex()
    assert data["resourceSpans"], data
    for resource_span in data["resourceSpans"]:
        model = parse_obj_as(OtelResourceSpan, resource_span)  # the SDK's own alias-aware parsing
        spans = model.scope_spans[0].spans
        assert len(spans) == 3
        for span in spans:
            assert span.name and len(span.trace_id) == 32 and len(span.span_id) == 16 and span.start_time_unix_nano
            assert span.kind in (1, 3)
            keys = {a.key for a in span.attributes}
            assert "langfuse.observation.type" in keys
            for attribute in span.attributes:
                v = attribute.value
                assert any(x is not None for x in (v.string_value, v.int_value, v.double_value, v.bool_value)) or (
                    "arrayValue" in (v.model_extra or {})
                ), attribute


def test_langfuse_exporter_posts_gzip_protobuf_with_basic_auth_and_v4_header(receiver):
    receiver.expect_basic(PK, SK)
    trace = sample_trace()
    result = LangfuseExporter(receiver.url, PK, SK, compression="gzip").export([trace])
    assert result.ok, result
    (req,) = receiver.otlp_requests()
    assert req.path == "/api/public/otel/v1/traces"
    assert req.headers["content-type"] == "application/x-protobuf"
    assert req.headers["content-encoding"] == "gzip"
    assert gzip.decompress(req.raw) == req.body
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"{PK}:{SK}".encode()).decode()
    assert req.headers["x-langfuse-ingestion-version"] == "4"
    assert req.headers["x-langfuse-sdk-name"] == "lftrace"
    assert req.headers["x-langfuse-public-key"] == PK
    assert req.headers["x-langfuse-sdk-version"]
    assert sorted(s.span_id.hex() for s in req.spans()) == sorted(o.id for o in trace.observations)


def test_otlp_exporter_sends_configured_headers(receiver):
    result = OtlpExporter(receiver.url + "/v1/traces", {"authorization": "Bearer tok-123"}).export([sample_trace()])
    assert result.ok
    (req,) = receiver.otlp_requests()
    assert req.headers["authorization"] == "Bearer tok-123"
    assert len(req.spans()) == 3


@pytest.mark.parametrize(
    ("reply", "retryable", "expected"),
    [
        (Reply(503, "<html><head><title>503 Service Unavailable</title></head></html>"), True, "HTML page"),
        (Reply(502, "\x00\x01garbage"), True, "HTTP 502"),
        (Reply(429, '{"message": "rate limited"}', {"Retry-After": "2"}), True, "rate limited"),
        (Reply(400, '{"message": "Invalid trace id"}'), False, "Invalid trace id"),
        (Reply(404, "<html><title>Not Found</title></html>"), False, "right URL"),
    ],
)
def test_error_answers_are_reported_not_raised(receiver, reply, retryable, expected):
    receiver.script(reply)
    result = LangfuseExporter(receiver.url, PK, SK).export([sample_trace()])
    assert not result.ok
    assert result.retryable is retryable
    assert result.status == reply.status
    assert expected in result.message
    assert SK not in result.message
    if reply.status == 429:
        assert result.retry_after == 2.0


def test_401_message_names_the_host_and_masked_key_never_the_secret(receiver):
    receiver.expect_basic(PK, "sk-lf-the-right-one-0000")
    result = LangfuseExporter(receiver.url, PK, SK).export([sample_trace()])
    assert (result.ok, result.retryable, result.status) == (False, False, 401)
    assert receiver.url in result.message
    assert "LANGFUSE_SECRET_KEY" in result.message
    assert "pk-lf-...abcd" in result.message
    assert SK not in result.message and PK not in result.message


def test_connection_refused_and_invalid_url_never_raise():
    down = OtlpExporter(f"http://127.0.0.1:{closed_port()}/v1/traces", timeout=1).export([sample_trace()])
    assert (down.ok, down.retryable, down.status) == (False, True, None)
    assert "cannot connect" in down.message
    bad = OtlpExporter("ftp://nowhere/v1/traces").export([sample_trace()])
    assert (bad.ok, bad.retryable) == (False, False)
    assert "invalid URL" in bad.message


def test_twenty_megabyte_tool_output_is_truncated_with_a_marker(receiver):
    big = "x" * (20 * 1024 * 1024)
    trace = sample_trace(tool_output={"blob": big})
    result = LangfuseExporter(receiver.url, PK, SK).export([trace])
    assert result.ok, result
    requests = receiver.otlp_requests()
    assert all(len(r.body) < 16_000_000 for r in requests)
    tool = next(s for s in receiver.spans() if s.name == "get_weather")
    assert tool.ByteSize() < 9_500_000
    output = json.loads(attributes(tool.attributes)["langfuse.observation.output"])
    assert isinstance(output, str) and "truncated by lftrace" in output
    assert str(len(json.dumps({"blob": big}, separators=(",", ":")))) in output
    # the trace object (what the store holds) keeps the full value
    assert len(trace.observations[2].output["blob"]) == len(big)


def test_large_batches_are_split_under_the_request_limit(receiver):
    traces = [sample_trace(tool_output="y" * 300_000) for _ in range(30)]  # ~9 MB of output in total
    requests = encode_batches(traces)
    assert len(requests) >= 3
    assert all(len(r) <= MAX_REQUEST_BYTES for r in requests)
    decoded = [ExportTraceServiceRequest.FromString(r) for r in requests]
    assert sum(len(spans_by_name(r)) for r in decoded) <= 90
    assert LangfuseExporter(receiver.url, PK, SK, compression="gzip").export(traces).ok  # as to a remote host
    assert len(receiver.spans()) == 90
    assert len(receiver.otlp_requests()) == len(requests)


def test_importing_the_exporter_imports_neither_protobuf_nor_httpx():
    code = (
        "import sys, lftrace.exporters.otlp, lftrace.delivery, lftrace.exporters.langfuse_api;"
        "bad=[m for m in sys.modules if m.startswith(('opentelemetry','httpx','google.protobuf'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_compression_is_gzip_for_a_remote_endpoint_none_on_this_machine_and_the_otel_variable_decides(
    receiver, tmp_path, monkeypatch
):
    """Compressing for a collector on this machine only costs the traced program CPU (a 1,000-step loop sends
    143 MB before gzip, 0.27 s of gzip); OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION overrides, as in OpenTelemetry."""
    from lftrace.config import ConfigError, Settings, is_loopback, is_loopback_host
    from lftrace.delivery import destinations_for
    from lftrace.exporters.otlp import OtlpExporter

    assert [is_loopback(u) for u in ("http://127.0.0.1:4318", "http://localhost/x", "http://[::1]:4318/")] == [True] * 3
    assert not any(is_loopback(u) for u in ("https://cloud.langfuse.com", "http://10.0.0.5:4318", "http://otel"))
    # one check for URLs and for hosts (`lftrace serve`'s clients and its bind address)
    assert [is_loopback_host(h) for h in ("127.0.0.2", "::1", "[::1]", "LOCALHOST", "app.localhost")] == [True] * 5
    assert not any(is_loopback_host(h) for h in (None, "", "10.0.0.1", "0.0.0.0", "127.example.com", "::"))
    assert not is_loopback("http://[::1")  # not a URL: not this machine, and no exception
    # where it guards access (serve without keys, its clients), a name under localhost does not count
    assert is_loopback_host("localhost", subdomains=False) and not is_loopback_host("a.localhost", subdomains=False)
    assert OtlpExporter("https://collector.example.com/v1/traces").gzip is True

    trace = sample_trace()
    assert OtlpExporter(receiver.url + "/v1/traces").export([trace]).ok  # 127.0.0.1: sent as it is
    (plain,) = receiver.otlp_requests()
    assert "content-encoding" not in plain.headers and plain.raw == plain.body
    assert sorted(s.span_id.hex() for s in plain.spans()) == sorted(o.id for o in trace.observations)

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    settings = Settings.resolve({"store": tmp_path / "t.db"})
    (dest,) = destinations_for(settings)
    assert dest.exporter.export([sample_trace()]).ok
    zipped = receiver.otlp_requests()[-1]
    assert zipped.headers["content-encoding"] == "gzip" and gzip.decompress(zipped.raw) == zipped.body

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")  # the traces variable wins
    (dest,) = destinations_for(Settings.resolve({"store": tmp_path / "t.db"}))
    assert dest.exporter.gzip is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'zstd' is not a compression"):
        Settings.resolve({"store": tmp_path / "t.db"})


def test_requests_sent_without_gzip_are_cut_at_a_megabyte_and_gzip_ones_at_four(receiver):
    """Uncompressed (an endpoint on this machine) a long run's requests are 1 MB at most: at 4 MB each the peak
    RSS of a 4,000-step loop grew by ~80 MB more; gzip requests stay at MAX_REQUEST_BYTES before compression."""
    from lftrace.exporters.encode import MAX_PLAIN_REQUEST_BYTES
    from lftrace.exporters.otlp import OtlpExporter

    trace = sample_trace(tool_output="x" * 400_000)  # three spans, one of ~400 KB: ~1.2 MB in all with the rest
    for obs in trace.observations:
        obs.input = {"text": "y" * 300_000}
    assert OtlpExporter(receiver.url + "/v1/traces").export([trace]).ok
    plain = receiver.otlp_requests()
    assert len(plain) >= 2 and all(len(r.body) <= MAX_PLAIN_REQUEST_BYTES + 500_000 for r in plain)
    assert sorted(s.span_id.hex() for r in plain for s in r.spans()) == sorted(o.id for o in trace.observations)

    assert OtlpExporter(receiver.url + "/v1/traces", compression="gzip").export([trace]).ok
    (zipped,) = receiver.otlp_requests()[len(plain) :]
    assert MAX_PLAIN_REQUEST_BYTES < len(zipped.body) <= MAX_REQUEST_BYTES
    assert len(zipped.spans()) == len(trace.observations)


def export_threads() -> list:
    return [t for t in threading.enumerate() if t.name == "lftrace-export"]


def test_requests_go_out_on_one_kept_thread_that_ends_with_close(receiver):
    others = set(export_threads())  # other tests' exporters
    exporter = OtlpExporter(receiver.url + "/v1/traces")
    seen = set()
    for _ in range(5):
        assert exporter.export([sample_trace()]).ok
        seen.update(set(export_threads()) - others)
    assert len(receiver.otlp_requests()) == 5
    assert len(seen) == 1  # one thread served every request, and is still there for the next one
    (thread,) = seen
    exporter.close()
    thread.join(2)
    assert not thread.is_alive()


def test_an_exporter_dropped_without_close_leaves_no_thread(receiver):
    others = set(export_threads())
    exporter = OtlpExporter(receiver.url + "/v1/traces")
    assert exporter.export([sample_trace()]).ok
    (thread,) = set(export_threads()) - others
    del exporter
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


def test_a_request_after_one_that_timed_out_is_sent_and_answered(receiver):
    receiver.script(Reply(200, "{}", delay=1.5))
    exporter = OtlpExporter(receiver.url + "/v1/traces", timeout=0.3)
    first = exporter.export([sample_trace()])
    assert (first.ok, first.timed_out, first.retryable) == (False, True, True)
    second = exporter.export([sample_trace()], timeout=3)
    assert second.ok, second
    assert len(receiver.otlp_requests()) == 2
    exporter.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_on_a_thread_of_its_own(receiver):
    exporter = OtlpExporter(receiver.url + "/v1/traces")
    assert exporter.export([sample_trace()]).ok  # the parent's worker thread exists now
    pid = os.fork()
    if pid == 0:  # the child has the exporter but not its thread: it must start one, not wait forever
        ok = False
        try:
            ok = exporter.export([sample_trace()], timeout=3).ok
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(receiver.otlp_requests()) == 2
    exporter.close()


def test_a_sent_request_is_let_go_at_once_not_left_to_the_garbage_collector(receiver):
    """httpx's response and its stream refer to each other (encode/httpx#3733): without ``release`` every request
    body stayed alive until a collection, and a long run's export piled up megabytes of them."""
    import tracemalloc

    from lftrace.exporters import wire

    exporter = OtlpExporter(receiver.url + "/v1/traces")
    trace = sample_trace(tool_output="x" * 200_000)
    assert exporter.export([trace]).ok  # the worker thread and the connection exist before measuring
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(10):
            assert exporter.export([trace]).ok
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        gc.enable()
        exporter.close()
    held = snapshot.filter_traces([tracemalloc.Filter(True, wire.__file__)]).statistics("filename")
    assert len(receiver.otlp_requests()) == 11
    assert sum(stat.size for stat in held) < 200_000  # one request body at most (each is ~200 KB)
