"""Settings: argument > environment > .env > default, validation, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from lftrace import config
from lftrace.config import Settings, mask_secret, parse_headers
from lftrace.errors import ConfigError

PK = "pk-lf-1111222233334444"
SK = "sk-lf-aaaabbbbccccdddd"


def test_defaults_without_anything():
    s = Settings.resolve(environ={}, dotenv={})
    assert s.base_url == "https://cloud.langfuse.com"
    assert s.environment == "default"
    assert s.sample_rate == 1.0
    assert s.tracing_enabled is True
    assert (s.flush_at, s.flush_interval, s.timeout) == (512, 5.0, 5.0)
    assert s.langfuse_enabled is False
    assert s.otlp_endpoint is None
    assert s.store.name == "traces.db"


def test_argument_beats_environment_beats_dotenv():
    env = {config.PUBLIC_KEY: "pk-env", config.RELEASE: "env-release"}
    dotenv = {config.PUBLIC_KEY: "pk-dotenv", config.RELEASE: "dotenv-release", config.ENVIRONMENT: "staging"}
    s = Settings.resolve({"public_key": "pk-arg"}, environ=env, dotenv=dotenv)
    assert s.public_key == "pk-arg"
    assert s.release == "env-release"
    assert s.environment == "staging"


def test_dotenv_file_in_cwd_is_read_and_real_env_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        f'LANGFUSE_PUBLIC_KEY="{PK}"\nLANGFUSE_SECRET_KEY={SK}\nLANGFUSE_RELEASE=from-file\n'
    )
    monkeypatch.setenv("LANGFUSE_RELEASE", "from-env")
    s = Settings.resolve()
    assert s.public_key == PK and s.secret_key == SK
    assert s.release == "from-env"
    assert s.langfuse_enabled


def test_base_url_preferred_over_host_and_host_argument_accepted():
    env = {config.BASE_URL: "https://eu.example.com", config.HOST: "https://old.example.com"}
    assert Settings.resolve(environ=env, dotenv={}).base_url == "https://eu.example.com"
    assert (
        Settings.resolve(environ={config.HOST: "https://old.example.com/"}, dotenv={}).base_url
        == "https://old.example.com"
    )
    assert (
        Settings.resolve({"host": "http://localhost:3000"}, environ=env, dotenv={}).base_url == "http://localhost:3000"
    )


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"sample_rate": 2}, "sample_rate"),
        ({"sample_rate": "lots"}, "sample_rate"),
        ({"environment": "Prod!"}, "environment"),
        ({"environment": "langfuse-prod"}, "environment"),
        ({"flush_at": 0}, "flush_at"),
        ({"timeout": 0}, "timeout"),
        ({"tracing_enabled": "maybe"}, "tracing_enabled"),
        ({"base_url": "cloud.langfuse.com"}, "base_url"),
    ],
)
def test_invalid_settings_name_the_setting(arguments, needle):
    with pytest.raises(ConfigError) as err:
        Settings.resolve(arguments, environ={}, dotenv={})
    assert needle in str(err.value)


def test_invalid_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="LANGFUSE_SAMPLE_RATE"):
        Settings.resolve(environ={config.SAMPLE_RATE: "1.5"}, dotenv={})


def test_booleans_and_numbers_from_env():
    env = {config.TRACING_ENABLED: "false", config.DEBUG: "1", config.FLUSH_AT: "10", config.TIMEOUT: "2.5"}
    s = Settings.resolve(environ=env, dotenv={})
    assert (s.tracing_enabled, s.debug, s.flush_at, s.timeout) == (False, True, 10, 2.5)


def test_store_from_env_and_argument(tmp_path):
    s = Settings.resolve(environ={config.STORE: str(tmp_path / "a.db")}, dotenv={})
    assert s.store == tmp_path / "a.db"
    assert Settings.resolve({"store": tmp_path / "b.db"}, environ={}, dotenv={}).store == Path(tmp_path / "b.db")


def test_otlp_endpoint_and_headers():
    env = {config.OTLP_ENDPOINT: "http://127.0.0.1:4318/", config.OTLP_HEADERS: "Authorization=Bearer%20abc,x-team=ml"}
    s = Settings.resolve(environ=env, dotenv={})
    assert s.otlp_endpoint == "http://127.0.0.1:4318/v1/traces"
    assert s.otlp_headers == {"authorization": "Bearer abc", "x-team": "ml"}
    env[config.OTLP_TRACES_ENDPOINT] = "http://collector:4318/custom"
    with pytest.raises(ConfigError, match="plain http to another machine"):  # the auth header would travel in clear
        Settings.resolve(environ=env, dotenv={})
    env[config.ALLOW_INSECURE_HTTP] = "true"
    assert Settings.resolve(environ=env, dotenv={}).otlp_endpoint == "http://collector:4318/custom"
    with pytest.raises(ConfigError, match="key=value"):
        parse_headers("novalue")


def test_secrets_never_in_repr_or_masked_view():
    s = Settings.resolve(
        {"public_key": PK, "secret_key": SK, "otlp_headers": {"authorization": "Bearer topsecret"}},
        environ={},
        dotenv={},
    )
    text = repr(s) + str(s.masked())
    assert SK not in text and PK not in text and "topsecret" not in text
    assert "sk-lf-...dddd" in text
    assert mask_secret(None) == "(not set)"
    assert mask_secret("short") == "***"


def test_every_env_var_is_in_env_example_and_readme():
    root = Path(__file__).resolve().parents[1]
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    for name in config.ALL_ENV_VARS:
        assert name in example, f"{name} missing from .env.example"
        assert name in readme, f"{name} missing from README.md"
