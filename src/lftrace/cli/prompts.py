"""``lftrace prompts``: list the prompts, show one, create a version from a file (``lftrace.prompts``).

Where ``Langfuse.get_prompt`` finds them: Langfuse when its keys are set, else the local store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ..errors import InputError
from ..sanitize import clean, clean_line
from .app import app, console, print_json, resolve_settings


@app.command("prompts")
def prompts_command(
    name: Annotated[str | None, typer.Argument(help="A prompt to show (none: list them all).")] = None,
    version: Annotated[int | None, typer.Option("--version", help="Show this version.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Show the version with this label; with --create, labels to give (repeatable)."),
    ] = None,
    create: Annotated[
        str | None,
        typer.Option(
            "--create",
            metavar="FILE|-",
            help="Make a new version of NAME from a file: text, or a JSON list of chat messages.",
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="With --create: the prompt's tags.")] = None,
    config: Annotated[str | None, typer.Option("--config", help="With --create: its config, a JSON object.")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="With --create: a commit message.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print Langfuse's JSON.")] = False,
) -> None:
    """List the prompts that Langfuse.get_prompt serves (Langfuse's when its keys are set, else the local store's),
    show one, or create a version of one from a file.

    A file that holds a JSON list of messages ({"role", "content"}, or {"type": "placeholder", "name"}) makes a
    chat prompt; anything else is a text prompt. Variables are written {{name}}.

    Exit codes: 0 ok, 2 bad input, 4 no such prompt, 6 Langfuse unreachable or refused.

    [bold]Example[/bold]

      lftrace prompts --create movie-critic.txt movie-critic --label production
      lftrace prompts
      lftrace prompts movie-critic --label production
    """
    from ..client import client_for

    client = client_for(resolve_settings())
    if create is not None:
        if not name:
            raise InputError("--create makes a version of a prompt: name it (lftrace prompts NAME --create FILE)")
        made = client.create_prompt(
            name=name,
            labels=label or [],
            tags=tag,
            config=_config(config),
            commit_message=message,
            **_prompt_of(create),
        )
        _say(f"created {made.name} version {made.version} ({', '.join(made.labels)})")
        return
    if name is None:
        listed = client.list_prompts()
        if json_out:
            print_json(listed)
            return
        from ..render import render_prompt_list
        from .traces import print_table

        if not listed:
            _say("no prompts yet (create one: lftrace prompts NAME --create FILE)")
            return
        print_table(render_prompt_list(listed))
        return
    if label is not None and len(label) > 1:
        raise InputError("show one version: give one --label (or --version)")
    found = client.get_prompt(
        name, version=version, label=label[0] if label else None, cache_ttl_seconds=0, max_retries=0
    )
    data = {
        "name": found.name, "version": found.version, "type": "chat" if isinstance(found.prompt, list) else "text",
        "prompt": found.prompt, "config": found.config, "labels": found.labels, "tags": found.tags,
        "commitMessage": found.commit_message,
    }  # fmt: skip
    if json_out:
        print_json(data)
        return
    head = f"{found.name}  version {found.version}  {data['type']}  labels {', '.join(found.labels) or '-'}"
    if found.tags:
        head += f"  tags {', '.join(found.tags)}"
    out = console()
    out.print(Text(clean_line(head), style="bold"))
    if found.config:
        out.print(Text("config " + clean_line(json.dumps(found.config, ensure_ascii=False)), style="dim"))
    if isinstance(found.prompt, str):
        out.print(Text(clean(found.prompt)))
        return
    for entry in found.prompt:
        if entry["type"] == "placeholder":
            out.print(Text(f"[placeholder {clean_line(entry['name'])}]", style="dim"))
        else:
            out.print(Text.assemble((f"{clean_line(entry['role'])}: ", "bold"), clean(entry["content"])))


def _prompt_of(path: str) -> dict[str, Any]:
    """``prompt`` and ``type`` from a file: a JSON list of messages is a chat prompt, anything else text."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
        return {"prompt": parsed, "type": "chat"}
    return {
        "prompt": text.removesuffix("\n").removesuffix("\r"),
        "type": "text",
    }  # a file's last newline is not the prompt's


def _config(text: str | None) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--config is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError("--config must be a JSON object")
    return value


def _say(line: str) -> None:
    console().print(Text(clean_line(line)))
