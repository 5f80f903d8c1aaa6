"""The ``lftrace`` command line: ``main`` (the console script) and ``app`` (the typer app, for tests).

Importing the package registers every command: app.py holds the app, each command module adds its commands.
"""

from __future__ import annotations

from . import backend, ci, experiments, prompts, run, serve, traces
from .app import app, app_for, main

# the order of `lftrace --help`; commands not named here follow in the order they were registered
_HELP_ORDER = (
    "run",
    "show",
    "list",
    "push",
    "status",
    "doctor",
    "test",
    "export",
    "import",
    "diff",
    "stats",
    "experiments",
    "serve",
)
app.registered_commands.sort(key=lambda c: _HELP_ORDER.index(c.name) if c.name in _HELP_ORDER else len(_HELP_ORDER))

__all__ = ["app", "app_for", "backend", "ci", "experiments", "main", "prompts", "run", "serve", "traces"]
