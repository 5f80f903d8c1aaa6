"""Shared fixtures: every test gets its own store in tmp_path and a clean environment."""

from __future__ import annotations

import os

import pytest

_PREFIXES = ("LANGFUSE_", "OTEL_", "LFTRACE_", "OPENAI_")


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
