"""Every command block of the README runs as shown: real `lftrace` subprocesses, in README order, one store.

A ``console`` block's ``$ ...`` lines run in bash (a trailing ``\\`` continues a command) in a scratch directory
that holds ``sample_graphs/``; they share one store, so ``show last`` sees the ``run`` above it. The exit code
expected is the one the README states: a ``$ echo $?`` line and the number under it, or an ``# exit N``
comment at the end of the command or of its output line, else 0. Markers in an HTML comment on the line before a block:

- ``<!-- readme-test: skip REASON -->``: not run (needs a server, keys, or ids of your own runs);
- ``<!-- readme-test: output -->``: the output shown must be what the command prints, ids, times and durations
  normalised; lines that are only ``...``/``…`` (or start with ``...``) stand for output left out;
- ``<!-- readme-test: file NAME -->`` before any other block: its text is written to NAME first.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LFTRACE = Path(sys.executable).parent / "lftrace"  # the venv running the tests
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|output|file)\b\s*(.*?)\s*-->")


@dataclass
class Command:
    line: int
    text: str
    exit_code: int = 0
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    kind: str  # console, json, ...
    body: list[str]
    marker: str | None = None
    argument: str = ""
    commands: list[Command] = field(default_factory=list)


def parse_readme(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, kind = i, fence.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = Block(start + 1, kind, lines[i + 1 : j])
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.search(lines[k]) if k >= 0 else None
        if marker:
            block.marker, block.argument = marker.group(1), marker.group(2)
        if kind == "console":
            block.commands = _commands(block)
        blocks.append(block)
        i = j + 1
    return blocks


def _commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    body = block.body
    i = 0
    while i < len(body):
        line = body[i]
        if not line.startswith("$ "):
            if commands:
                commands[-1].shown.append(line)
                stated = re.search(r"\s#\s*exit (\d+)\s*$", line)  # `error: ...   # exit 3` under the command
                if stated:
                    commands[-1].exit_code = int(stated.group(1))
            i += 1
            continue
        text = line[2:]
        while text.rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            text = text.rstrip()[:-1] + " " + body[i].strip()
        if text.strip() == "echo $?":
            code = body[i + 1].strip() if i + 1 < len(body) else "0"
            commands[-1].exit_code = int(code)
            i += 2
            continue
        exit_comment = re.search(r"#\s*exit (\d+)\s*$", text)
        command = Command(block.line + i + 1, _strip_comment(text))
        if exit_comment:
            command.exit_code = int(exit_comment.group(1))
        commands.append(command)
        i += 1
    return commands


def _strip_comment(text: str) -> str:
    """The command without a trailing ``# ...`` comment (a ``#`` inside quotes stays)."""
    for match in re.finditer(r"\s#", text):
        head = text[: match.start()]
        try:
            shlex.split(head)  # raises while the # is inside quotes
        except ValueError:
            continue
        return head.rstrip()
    return text.rstrip()


_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{16}\b"), "<oid>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<run>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<sid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z| [A-Z][A-Za-z0-9+-]*\b)?"), "<time>"),
    (re.compile(r"[+-]?\d+m\d+\.\ds|[+-]?\d+(\.\d+)?(ms|s)\b"), "<dur>"),
    (re.compile(r"/tmp/\S+"), "<path>"),
    (re.compile(r"([━─═]){2,}"), r"\1"),  # rules as wide as their column, which depends on the durations
    (re.compile(r"[█░▒][ █░▒]*"), "<bar>"),  # a timeline's bars depend on the timing
    (re.compile(r"[ \t]+"), " "),
]


def normalise(line: str) -> str:
    for pattern, replacement in _NORMALISE:
        line = pattern.sub(replacement, line)
    return line.strip()


def _elided(line: str) -> bool:
    stripped = line.strip()
    return stripped in ("", "...", "…") or stripped.startswith(("...", "…", "(reformatted", "(the "))


def check_output(command: Command, stdout: str, stderr: str) -> None:
    """Every shown line appears in what the command printed (stdout then stderr), in order."""
    actual = [normalise(line) for line in (stdout + stderr).splitlines()]
    at = 0
    for shown in command.shown:
        if _elided(shown):
            continue
        wanted = normalise(re.sub(r"\s+#\s*exit \d+\s*$", "", shown))
        for index in range(at, len(actual)):
            if actual[index] == wanted:
                at = index + 1
                break
        else:
            printed = "\n".join((stdout + stderr).splitlines()[:80])
            raise AssertionError(
                f"README line {command.line}: `{command.text}` did not print\n  {shown!r}\n"
                f"(normalised {wanted!r}); it printed:\n{printed}"
            )


def test_the_readme_parses_into_runnable_blocks():
    blocks = parse_readme(README.read_text(encoding="utf-8"))
    console = [b for b in blocks if b.kind == "console"]
    assert len(console) >= 10
    runnable = [c for b in console if b.marker != "skip" for c in b.commands]
    assert any(c.text.startswith("lftrace run") for c in runnable)
    assert any(c.exit_code == 5 for c in runnable) and any(c.exit_code == 1 for c in runnable)
    for block in console:
        if block.marker == "skip":
            assert block.argument, f"README line {block.line}: say why a block is skipped"


@pytest.mark.timeout(600)  # ~40 real `lftrace` processes in a row (~1 min alone, more on a loaded machine)
@pytest.mark.heavy
def test_every_readme_command_block_runs_as_shown(tmp_path):
    if not LFTRACE.exists():
        pytest.fail(f"{LFTRACE} is missing: install the package (make install) first")
    work = tmp_path / "readme"
    work.mkdir()
    (work / "sample_graphs").symlink_to(REPO / "sample_graphs")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_", "OPENAI_")) and key != "NO_COLOR"
    }
    env.update(
        LFTRACE_STORE=str(tmp_path / "readme.db"), NO_COLOR="1", COLUMNS="100", LINES="50",
        PATH=f"{LFTRACE.parent}{os.pathsep}{env.get('PATH', '')}", TERM="dumb",
    )  # fmt: skip
    ran = 0
    for block in parse_readme(README.read_text(encoding="utf-8")):
        if block.marker == "file":
            (work / block.argument).write_text("\n".join(block.body) + "\n", encoding="utf-8")
            continue
        if block.kind != "console" or block.marker == "skip":
            continue
        for command in block.commands:
            done = subprocess.run(
                ["bash", "-c", command.text], cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            ran += 1
            assert done.returncode == command.exit_code, (
                f"README line {command.line}: `{command.text}` exited {done.returncode}, "
                f"the README says {command.exit_code}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
            )
            if block.marker == "output":
                check_output(command, done.stdout, done.stderr)
    assert ran >= 15


def update_readme() -> None:
    """``python tests/test_readme_examples.py``: rewrite the shown output of ``output`` blocks from real runs."""
    import tempfile

    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    replacements: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "readme"
        work.mkdir()
        (work / "sample_graphs").symlink_to(REPO / "sample_graphs")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_", "OPENAI_"))}
        env.update(LFTRACE_STORE=str(Path(tmp) / "readme.db"), NO_COLOR="1", COLUMNS="100", LINES="50", TERM="dumb")
        env["PATH"] = f"{LFTRACE.parent}{os.pathsep}{env.get('PATH', '')}"
        for block in parse_readme(text):
            if block.marker == "file":
                (work / block.argument).write_text("\n".join(block.body) + "\n", encoding="utf-8")
            if block.kind != "console" or block.marker == "skip":
                continue
            new_body: list[str] = []
            for command in block.commands:
                done = subprocess.run(["bash", "-c", command.text], cwd=work, env=env, capture_output=True, text=True)
                new_body.append(f"$ {command.text}")
                new_body.extend(line.rstrip() for line in (done.stdout + done.stderr).rstrip("\n").splitlines())
                if done.returncode:
                    new_body += ["$ echo $?", str(done.returncode)]
            if block.marker == "output":
                replacements[block.line] = new_body
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if i + 1 in replacements:
            out.extend(replacements[i + 1])
            i += 1
            while not lines[i].startswith("```"):
                i += 1
            out.append(lines[i])
        i += 1
    README.write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    update_readme()
