"""Shared fixtures: every test gets its own store in tmp_path and a clean environment."""

from __future__ import annotations

import os
from typing import Any

import pytest

_PREFIXES = ("LANGFUSE_", "OTEL_", "LFTRACE_", "OPENAI_")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``heavy`` first (the rest in their order): xdist hands tests out in this order, and a minute-long
    test collected last kept one worker busy while the other sat idle at the end of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point the store at tmp_path, drop LANGFUSE_*/OTEL_*/LFTRACE_*/OPENAI_* and run from tmp_path (no stray .env)."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and name not in ("LFTRACE_SKIP_PHOENIX",):
            monkeypatch.delenv(name, raising=False)
    store = tmp_path / "traces.db"
    monkeypatch.setenv("LFTRACE_STORE", str(store))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    yield store
    from lftrace import client as client_module

    client_module.reset_clients()


@pytest.fixture
def receiver():
    """A real OTLP/HTTP receiver and small fake Langfuse on 127.0.0.1 that records and decodes what it gets."""
    from support.otlp_receiver import running_receiver

    with running_receiver() as rec:
        yield rec


@pytest.fixture
def store(isolated_env):
    """The test's own trace store (the file LFTRACE_STORE points at), open."""
    from lftrace.store import TraceStore

    with TraceStore(isolated_env) as opened:
        yield opened


@pytest.fixture
def cli():
    """Run ``lftrace`` in-process: ``cli("show", "last", "--json")`` -> click Result (stdout, stderr, exit_code).

    Each call ends with its clients shut down, as a new process would start without them.
    """
    from typer.testing import CliRunner

    from lftrace.cli import app
    from lftrace.client import reset_clients

    def invoke(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        try:
            return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)
        finally:
            reset_clients()

    return invoke
