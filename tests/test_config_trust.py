"""Where traces and keys go: .env is named when it decides, keys never mix silently, never plain http out."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from lftrace import Langfuse
from lftrace.config import Settings, load_dotenv_into_environ, redact_url, redact_urls
from lftrace.errors import ConfigError

PK, SK = "pk-lf-1234567890abcd", "sk-lf-topsecret99887766"


@pytest.fixture
def keys_in_env(monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)


def test_a_dotenv_host_over_plain_http_never_gets_the_keys(tmp_path: Path, keys_in_env) -> None:
    (tmp_path / ".env").write_text("LANGFUSE_BASE_URL=http://some-host:3000\n")
    with pytest.raises(ConfigError) as err:
        Settings.resolve()
    message = str(err.value)
    assert "plain http" in message and str(tmp_path / ".env") in message
    assert "LFTRACE_ALLOW_INSECURE_HTTP" in message and SK not in message


def test_a_dotenv_cannot_allow_plain_http_itself(tmp_path: Path, keys_in_env, monkeypatch) -> None:
    (tmp_path / ".env").write_text("LANGFUSE_BASE_URL=http://some-host\nLFTRACE_ALLOW_INSECURE_HTTP=true\n")
    with pytest.raises(ConfigError, match="plain http"):
        Settings.resolve()
    monkeypatch.setenv("LFTRACE_ALLOW_INSECURE_HTTP", "true")  # the real environment may
    assert Settings.resolve().base_url == "http://some-host"


def test_plain_http_to_this_machine_is_fine(keys_in_env, monkeypatch) -> None:
    for url in ("http://localhost:3000", "http://127.0.0.1:3000", "http://[::1]:3000"):
        monkeypatch.setenv("LANGFUSE_BASE_URL", url)
        assert Settings.resolve().base_url == url


def test_otlp_headers_are_keys_too(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    assert Settings.resolve().otlp_endpoint  # no headers: nothing secret travels
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc")
    with pytest.raises(ConfigError, match="its headers would cross the network unencrypted"):
        Settings.resolve()


def test_keys_from_the_environment_and_host_from_dotenv_is_said_on_stderr(tmp_path: Path, keys_in_env, caplog) -> None:
    (tmp_path / ".env").write_text("LANGFUSE_BASE_URL=https://elsewhere.example\n")
    with caplog.at_level(logging.WARNING, logger="lftrace"):
        client = Langfuse()
    assert client.settings.dotenv == tmp_path / ".env"
    assert client.settings.sources["base_url"] == f".env ({tmp_path / '.env'})"
    assert client.settings.sources["secret_key"] == "environment"
    said = [r.getMessage() for r in caplog.records]
    assert any("https://elsewhere.example comes from .env" in m and "keys from the environment" in m for m in said), (
        said
    )


def test_a_dotenv_that_holds_everything_says_where_traces_go(tmp_path: Path, caplog) -> None:
    (tmp_path / ".env").write_text(
        f"LANGFUSE_BASE_URL=https://mine.example\nLANGFUSE_PUBLIC_KEY={PK}\nLANGFUSE_SECRET_KEY={SK}\n"
    )
    settings = Settings.resolve()
    assert settings.notices == (
        f"lftrace: traces go to https://mine.example (LANGFUSE_BASE_URL from .env ({tmp_path / '.env'}))",
    )


def test_lftrace_dotenv_0_turns_dotenv_off(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"LANGFUSE_PUBLIC_KEY={PK}\nLANGFUSE_SECRET_KEY={SK}\nLFTRACE_STORE=/nowhere/x.db\n")
    assert Settings.resolve().langfuse_enabled
    monkeypatch.setenv("LFTRACE_DOTENV", "0")
    settings = Settings.resolve()
    assert not settings.langfuse_enabled and settings.dotenv is None
    assert load_dotenv_into_environ() is None


def test_the_cli_loading_dotenv_into_the_environment_keeps_the_source(tmp_path: Path, keys_in_env, monkeypatch) -> None:
    (tmp_path / ".env").write_text("LANGFUSE_BASE_URL=https://elsewhere.example\n")
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    try:
        assert load_dotenv_into_environ() == tmp_path / ".env"
        settings = Settings.resolve()
        assert settings.sources["base_url"].startswith(".env") and settings.notices
    finally:
        os.environ.pop("LANGFUSE_BASE_URL", None)
        from lftrace import config

        config._FROM_DOTENV.clear()


def test_credentials_inside_urls_are_masked() -> None:
    assert redact_url("https://user:pass@host.example/x") == "https://user:***@host.example/x"
    assert redact_url("https://token@host.example") == "https://***@host.example"
    assert redact_url("https://h.example/v1?api_key=abc&x=1") == "https://h.example/v1?api_key=***&x=1"
    assert redact_url("https://h.example/v1") == "https://h.example/v1"
    text = "cannot connect to https://u:hunter2@h.example/v1/traces?token=t0k"
    assert "hunter2" not in redact_urls(text) and "t0k" not in redact_urls(text)


def test_settings_never_print_url_credentials(monkeypatch) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", "https://user:hunter2@lf.example")
    settings = Settings.resolve()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.masked())
    assert "hunter2" not in repr(Langfuse())
    from lftrace.delivery import destination_names

    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    assert all("hunter2" not in n for n in destination_names(Settings.resolve()))


def test_header_values_echoed_by_a_server_are_masked(tmp_path: Path) -> None:
    from lftrace.delivery import Deliverer, destinations_for
    from lftrace.store import TraceStore
    from support.otlp_receiver import Reply, running_receiver
    from support.traces import sample_trace

    vendor_key = "hny_0123456789abcdef"
    with running_receiver() as receiver:
        url = receiver.url.replace("http://", "http://user:hunter2@") + "/v1/traces"
        settings = Settings(store=tmp_path / "t.db", otlp_endpoint=url, otlp_headers={"x-team-key": vendor_key})
        receiver.script(Reply(401, f'{{"message": "unknown team key {vendor_key} for user:hunter2"}}'))
        with TraceStore(settings.store) as store:
            store.write_traces([sample_trace()], destinations=[d.name for d in destinations_for(settings)])
            deliverer = Deliverer(store, destinations_for(settings), settings)
            report = deliverer.deliver(time.monotonic() + 2)
            deliverer.stop()
            stored = json.dumps(store.delivery_counts())
    shown = json.dumps(report.to_dict()) + stored
    assert "unknown team key ***" in shown
    assert vendor_key not in shown and "hunter2" not in shown
