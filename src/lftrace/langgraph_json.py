"""``langgraph.json`` (the LangGraph CLI's project file): run a graph by its id, as ``langgraph dev`` serves it.

TARGET may be a graph id of ``./langgraph.json`` (``lftrace run agent``), ``path/to/langgraph.json:agent``, a
``langgraph.json`` path alone, or nothing when ``./langgraph.json`` names a single graph. Each becomes the
``module:attr`` / ``file.py:attr`` target the loader imports. Before that, the project is set up the way
``langgraph dev`` sets it up: its directory and its local ``dependencies`` go on ``sys.path``, and its ``env``
(a file, or a mapping of variables) fills the variables that are not set already.

Only ``json`` and ``pathlib`` here: the CLI resolves a target before it reads its settings (a project's ``env``
may hold the Langfuse keys), long before LangChain is imported.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import dotenv_enabled, fill_environ, read_dotenv
from .errors import InputError, LoadError

CONFIG_NAME = "langgraph.json"
_JS_SUFFIXES = (".ts", ".mts", ".cts", ".js", ".mjs", ".cjs")


@dataclass(frozen=True)
class ProjectGraph:
    graph_id: str
    target: str  # module:attr, or an absolute path/to/file.py:attr
    config_file: Path


def resolve_target(text: str | None) -> tuple[str, str | None]:
    """TARGET as typed -> (the target to import, the graph id when it came from a ``langgraph.json``).

    A ``module:attr`` or ``file.py:attr`` target comes back as it is. A project graph's project is set up
    (``sys.path``, ``env``) before this returns.
    """
    graph = find_graph(text, Path.cwd())
    if graph is None:
        if text is None or not text.strip():
            raise InputError(
                "missing TARGET: give module:attr or path/to/file.py:attr "
                f"(or run it where a {CONFIG_NAME} names the graph)"
            )
        return text, None
    set_up_project(graph.config_file)
    return graph.target, graph.graph_id


def find_graph(text: str | None, cwd: Path) -> ProjectGraph | None:
    """The ``langgraph.json`` graph that TARGET names; None when TARGET is not about a ``langgraph.json``."""
    text = (text or "").strip()
    local = cwd / CONFIG_NAME
    if not text:
        return _pick(local, None, "") if local.is_file() else None
    module, sep, attr = text.rpartition(":")
    if sep and module.endswith(".json"):
        return _pick(_config_path(module, cwd), attr, module + ":")
    if not sep and text.endswith(".json"):
        return _pick(_config_path(text, cwd), None, text + ":")
    if not sep and local.is_file() and "/" not in text and not text.endswith(".py"):
        return _pick(local, text, "")
    return None  # module:attr, file.py:attr, or a file without ':ATTR' (the loader says what is missing)


def _config_path(text: str, cwd: Path) -> Path:
    path = Path(text).expanduser()
    path = path if path.is_absolute() else cwd / path
    if not path.is_file():
        raise LoadError(f"no file '{text}' (give the path of your project's {CONFIG_NAME})")
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LoadError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise LoadError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise LoadError(f'{path} is not a LangGraph configuration (a JSON object with "graphs")')
    return data


def _graphs(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    graphs = data.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise LoadError(f'{path} names no graphs (add "graphs": {{"agent": "./agent.py:graph"}})')
    return graphs


def _pick(path: Path, graph_id: str | None, prefix: str) -> ProjectGraph:
    """``prefix``: how the user named the file (``path/langgraph.json:``, or nothing for ``./langgraph.json``)."""
    graphs = _graphs(path, _read(path))
    if graph_id is None:
        if len(graphs) > 1:
            ids = list(graphs)
            raise InputError(
                f"{path.name} has {len(ids)} graphs ({', '.join(ids)}): name one, e.g. `lftrace run {prefix}{ids[0]}`"
            )
        graph_id = next(iter(graphs))
    if graph_id not in graphs:
        raise LoadError(f"{path} has no graph '{graph_id}' (its graphs: {', '.join(graphs)})")
    entry = graphs[graph_id]
    spec = entry.get("path") if isinstance(entry, dict) else entry
    if not isinstance(spec, str) or not spec.strip():
        raise LoadError(f'graph \'{graph_id}\' in {path} has no path (give "./file.py:graph" or {{"path": ...}})')
    module, sep, attr = spec.strip().rpartition(":")
    if not sep or not module or not attr:
        raise LoadError(f"graph '{graph_id}' in {path}: '{spec}' is not in the form ./path/to/file.py:graph")
    if module.endswith(_JS_SUFFIXES):
        raise LoadError(f"graph '{graph_id}' in {path} is a JavaScript graph ({spec}); lftrace runs Python graphs")
    if "/" in module or "\\" in module or module.endswith(".py"):
        module = str((path.parent / module).resolve())  # relative to the project, wherever lftrace runs
    return ProjectGraph(graph_id=graph_id, target=f"{module}:{attr}", config_file=path)


def set_up_project(path: Path) -> None:
    """What ``langgraph dev`` does before it imports a graph: the project's directory and its local
    dependencies become importable (a dependency's ``src`` too, when it is a package with a src layout), and its
    ``env`` fills the unset variables (off with LFTRACE_DOTENV=0)."""
    data = _read(path)
    root = path.parent.resolve()
    folders = [root]
    dependencies = data.get("dependencies")
    for dependency in dependencies if isinstance(dependencies, list) else []:
        if isinstance(dependency, str) and dependency.startswith("."):
            folder = (root / dependency).resolve()
            if folder.is_dir():
                folders.append(folder)
            if (folder / "src").is_dir() and any((folder / f).is_file() for f in ("pyproject.toml", "setup.py")):
                # a src-layout package (`langgraph new`'s template) not installed with `pip install -e .`:
                # its packages import each other by name (`from agent.state import ...`)
                folders.append(folder / "src")
    for folder in folders:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    env = data.get("env")
    if not dotenv_enabled() or not env:
        return
    if isinstance(env, str):
        env_file = (root / env).resolve()
        if env_file.is_file():
            fill_environ(read_dotenv(env_file), env_file)
    elif isinstance(env, dict):
        fill_environ({str(k): str(v) for k, v in env.items() if v is not None}, path)
