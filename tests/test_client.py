"""The Langfuse-compatible client: configuration, flush durability, sampling, masking, reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from lftrace import Langfuse, get_client
from lftrace.client import parse_since
from lftrace.errors import ConfigError, InputError, TraceNotFound
from lftrace.langchain import CallbackHandler
from lftrace.store import TraceStore

SK = "sk-lf-supersecret00001111"
PK = "pk-lf-public0000222233"


def make_chain(reply: str = "a joke"):
    return ChatPromptTemplate.from_template("Tell me a joke about {topic}") | FakeListChatModel(responses=[reply])


def run_traced(chain=None, **metadata) -> str:
    handler = CallbackHandler()
    (chain or make_chain()).invoke({"topic": "cats"}, config={"callbacks": [handler], "metadata": metadata})
    assert handler.last_trace_id
    return handler.last_trace_id


def test_get_client_returns_the_configured_client(isolated_env):
    client = Langfuse(public_key=PK, secret_key=SK, host="http://127.0.0.1:9")
    assert get_client() is client
    assert get_client(public_key=PK) is client
    assert client.settings.base_url == "http://127.0.0.1:9"


def test_get_client_without_configuration_uses_environment(isolated_env):
    client = get_client()
    assert client.settings.store == isolated_env
    assert not client.settings.langfuse_enabled


def test_flush_makes_trace_durable_and_readable_from_a_new_store(isolated_env):
    trace_id = run_traced()
    get_client().flush()
    with TraceStore(isolated_env, create=False) as store:
        trace = store.get_trace(trace_id)
    assert trace.input == {"topic": "cats"}
    assert [o.type for o in trace.observations][-1] == "GENERATION"


def test_get_trace_by_prefix_and_last_and_missing(isolated_env):
    trace_id = run_traced()
    client = get_client()
    assert client.get_trace(trace_id[:8]).id == trace_id
    assert client.get_trace("last").id == trace_id
    with pytest.raises(TraceNotFound):
        client.get_trace("0" * 32)


def test_get_trace_on_missing_store_is_not_found_and_creates_nothing(isolated_env):
    with pytest.raises(TraceNotFound):
        get_client().get_trace("abc")
    assert not isolated_env.exists()
    assert get_client().list_traces() == []
    assert not isolated_env.exists()


def test_list_traces_filters_newest_first(isolated_env):
    first = run_traced(langfuse_session_id="s1", langfuse_user_id="u1", langfuse_tags=["smoke"])
    second = run_traced(langfuse_session_id="s2")
    client = get_client()
    assert [t.id for t in client.list_traces()] == [second, first]
    assert [t.id for t in client.list_traces(session_id="s1")] == [first]
    assert [t.id for t in client.list_traces(user_id="u1")] == [first]
    assert [t.id for t in client.list_traces(tag="smoke")] == [first]
    assert [t.id for t in client.list_traces(limit=1)] == [second]
    assert client.list_traces(since="1h") and client.list_traces(since="2999-01-01") == []


def test_flush_with_unreachable_backend_is_bounded_and_keeps_the_trace(isolated_env):
    Langfuse(public_key=PK, secret_key=SK, host="http://127.0.0.1:9", timeout=1)
    trace_id = run_traced()
    started = time.monotonic()
    get_client().flush()
    assert time.monotonic() - started < 3
    with TraceStore(isolated_env, create=False) as store:
        assert store.get_trace(trace_id)
        assert store.delivery_state(trace_id) == {"langfuse:http://127.0.0.1:9": "pending"}


def test_sample_rate_zero_records_nothing_and_one_records_all(isolated_env):
    Langfuse(sample_rate=0.0)
    handler = CallbackHandler()
    make_chain().invoke({"topic": "x"}, config={"callbacks": [handler]})
    get_client().flush()
    assert get_client().list_traces() == []


def test_sampling_is_deterministic_by_trace_id(isolated_env):
    client = Langfuse(sample_rate=0.5)
    ids = [f"{i:032x}" for i in range(0, 2**64, 2**58)]
    decisions = [client.should_sample(i) for i in ids]
    assert decisions == [client.should_sample(i) for i in ids]
    assert 0 < sum(decisions) < len(decisions)


def test_tracing_disabled_records_nothing(isolated_env, monkeypatch):
    monkeypatch.setenv("LANGFUSE_TRACING_ENABLED", "false")
    handler = CallbackHandler()
    assert make_chain().invoke({"topic": "x"}, config={"callbacks": [handler]}).content == "a joke"
    get_client().flush()
    assert get_client().list_traces() == []


def test_mask_applies_to_input_output_and_metadata_before_storage(isolated_env):
    def mask(data, **kwargs):
        if isinstance(data, str):
            return data.replace("secret-number-42", "[REDACTED]")
        if isinstance(data, dict):
            return {k: mask(data=v) for k, v in data.items()}
        if isinstance(data, list):
            return [mask(data=v) for v in data]
        return data

    Langfuse(mask=mask)
    handler = CallbackHandler()
    chain = ChatPromptTemplate.from_template("{topic}") | RunnableLambda(lambda p: f"reply with {p.to_string()}")
    chain.invoke(
        {"topic": "secret-number-42"}, config={"callbacks": [handler], "metadata": {"note": "secret-number-42"}}
    )
    get_client().flush()
    raw = isolated_env.read_bytes() + (
        isolated_env.with_name(isolated_env.name + "-wal").read_bytes()
        if isolated_env.with_name(isolated_env.name + "-wal").exists()
        else b""
    )
    assert b"secret-number-42" not in raw
    trace = get_client().get_trace(handler.last_trace_id)
    assert "[REDACTED]" in str(trace.to_dict())


def test_failing_mask_masks_everything_instead_of_leaking(isolated_env):
    def mask(data, **kwargs):
        raise RuntimeError("bad mask")

    Langfuse(mask=mask)
    trace_id = run_traced()
    trace = get_client().get_trace(trace_id)
    assert trace.input == "<fully masked due to failed mask function>"


def test_invalid_settings_raise_clear_errors(isolated_env):
    with pytest.raises(ConfigError, match="sample_rate"):
        Langfuse(sample_rate=2)
    with pytest.raises(ConfigError, match="environment"):
        Langfuse(environment="Prod!")


def test_secrets_not_in_repr(isolated_env):
    client = Langfuse(public_key=PK, secret_key=SK)
    assert SK not in repr(client) and SK not in repr(client.settings)
    assert PK not in repr(client)


def test_sdk_only_arguments_are_accepted(isolated_env):
    client = Langfuse(media_upload_thread_count=2, blocked_instrumentation_scopes=["x"])
    assert client.settings.tracing_enabled


def test_environment_and_release_reach_traces(isolated_env):
    Langfuse(environment="staging", release="v1.2")
    trace = get_client().get_trace(run_traced())
    assert trace.environment == "staging" and trace.release == "v1.2"
    assert {o.environment for o in trace.observations} == {"staging"}


def test_traces_are_flushed_at_interpreter_exit(tmp_path):
    store = tmp_path / "exit.db"
    script = textwrap.dedent(
        """
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from lftrace.langchain import CallbackHandler
        handler = CallbackHandler()
        FakeListChatModel(responses=["hi"]).invoke("hello", config={"callbacks": [handler]})
        print(handler.last_trace_id)
        """
    )
    env = {"LFTRACE_STORE": str(store), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with TraceStore(store, create=False) as s:
        assert s.get_trace(proc.stdout.strip()).observations[0].type == "GENERATION"


def test_parse_since():
    assert parse_since(None) is None
    assert parse_since("1h") < parse_since("1m")
    assert parse_since("2026-01-01") == 1767225600 * 10**9
    with pytest.raises(InputError, match="--since"):
        parse_since("yesterday-ish")


def test_sdk_5_request_headers_compression_and_export_path_reach_langfuse(receiver, isolated_env, monkeypatch, caplog):
    """``Langfuse(additional_headers=..., otel_compression=...)`` and ``LANGFUSE_OTEL_TRACES_EXPORT_PATH``, as the
    official SDK 5 takes them (a proxy in front of Langfuse that wants its own token, on its own path): every
    request to Langfuse carries the headers, the spans go to that path, compressed as asked; the header values are
    never shown."""
    monkeypatch.setenv("LANGFUSE_OTEL_TRACES_EXPORT_PATH", "v1/traces")  # the receiver serves OTLP there too
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")  # Langfuse's own setting wins over this
    langfuse = Langfuse(
        public_key="pk-lf-proxy",
        secret_key="sk-lf-proxy",
        base_url=receiver.url,
        additional_headers={"X-Proxy-Token": "proxy-secret-123"},
        otel_compression="gzip",
    )
    with langfuse.start_as_current_observation(name="through-the-proxy"):
        pass
    assert langfuse.flush() is not False
    assert langfuse.auth_check()
    langfuse.shutdown()
    [spans] = receiver.otlp_requests()
    assert spans.path == "/v1/traces" and spans.headers["content-encoding"] == "gzip"
    assert [s.name for s in spans.spans()] == ["through-the-proxy"]
    projects = [r for r in receiver.requests if r.path == "/api/public/projects"]
    assert projects and all(r.headers["x-proxy-token"] == "proxy-secret-123" for r in [spans, *projects])
    assert "proxy-secret-123" not in repr(langfuse.settings) + str(langfuse.settings.masked())

    monkeypatch.setenv("LANGFUSE_OTEL_COMPRESSION", "brotli")  # not one the SDK sends: passed over, as it does
    with caplog.at_level("WARNING", logger="lftrace"):
        settings = Langfuse(public_key="pk-lf-x", secret_key="sk-lf-x", base_url=receiver.url).settings
    assert settings.langfuse_compression is None and "LANGFUSE_OTEL_COMPRESSION: 'brotli'" in caplog.text
    monkeypatch.setenv("LANGFUSE_OTEL_TRACES_EXPORT_PATH", "https://elsewhere/otel")
    with pytest.raises(ConfigError, match=r"LANGFUSE_OTEL_TRACES_EXPORT_PATH: .* is not a path on the Langfuse host"):
        Langfuse(public_key="pk-lf-x", secret_key="sk-lf-x", base_url=receiver.url)
