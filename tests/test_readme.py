"""README stays true: every command, exit code and environment variable is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from lftrace import cli
from lftrace.errors import ExitStatus

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def command_names() -> list[str]:
    group = typer.main.get_command(cli.app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_command_has_a_readme_section_with_an_example():
    names = command_names()
    assert {"run", "show", "list", "push", "status", "doctor", "test", "export", "import", "diff", "stats"} <= set(
        names
    )
    for name in names:
        assert re.search(rf"^### .*`lftrace {name}`", README, re.MULTILINE), f"no README section for lftrace {name}"
        assert re.search(rf"^\$ lftrace {name}\b", README, re.MULTILINE), f"no example of lftrace {name} in README"


def test_every_exit_code_is_in_the_readme_table():
    table = README.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for status in ExitStatus:
        assert re.search(rf"^\| {int(status)} \|", table, re.MULTILINE), f"exit code {int(status)} not documented"


def test_quick_start_is_the_two_make_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "$ make demo" in quick and "$ make test" in quick
