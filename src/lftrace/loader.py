"""``package.module:attr`` / ``path/to/file.py:attr`` -> a LangChain Runnable, with errors that say how to fix them.

The attribute may be a compiled LangGraph graph, any Runnable, or a factory returning one (taking no argument,
or only `config`, as in `langgraph.json`).
Every failure is one ``LoadError`` line naming the target (exit 3); a malformed TARGET is a usage error (exit 2).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ExitStatus, LoadError

EXAMPLE = "use MODULE:ATTR, e.g. 'app.graph:graph' or 'path/to/app.py:graph'"


@dataclass(frozen=True)
class TargetSpec:
    text: str  # as the user typed it
    module: str  # dotted module name or a file path
    attr: str  # attribute path inside the module (dots allowed)

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py") or "/" in self.module or os.sep in self.module


def parse_target(text: str) -> TargetSpec:
    """Split TARGET at its last ':' (so Windows drive letters survive); malformed -> LoadError with exit 2."""
    module, sep, attr = text.strip().rpartition(":")
    if not sep or not module or not attr:
        if not sep:
            hint = f"'{text}:graph'" if text.strip() else "'app.py:graph'"
            graph_id = "" if "." in text or "/" in text else "; a graph id needs its langgraph.json in this directory"
            raise LoadError(
                f"target '{text}' has no ':ATTR' (name the graph or chain inside it, e.g. {hint}{graph_id})",
                exit_code=ExitStatus.USAGE,
            )
        raise LoadError(f"target '{text}' is malformed ({EXAMPLE})", exit_code=ExitStatus.USAGE)
    if not all(part.isidentifier() for part in attr.split(".")):
        raise LoadError(f"target '{text}': '{attr}' is not an attribute name ({EXAMPLE})", exit_code=ExitStatus.USAGE)
    return TargetSpec(text=text, module=module, attr=attr)


def load_target(text: str, config: Mapping[str, Any] | None = None) -> Any:
    """Import the module, find the attribute, call it if it is a factory; return the Runnable.

    A factory may take one argument named ``config`` (the ``langgraph.json`` convention): it gets the run's
    RunnableConfig (``--config`` and the run options, without lftrace's callbacks).
    """
    return target_factory(text)(config)


def target_factory(text: str) -> Callable[[Mapping[str, Any] | None], Any]:
    """Import once; the returned function gives the Runnable for a config (calling a config factory each time).

    ``lftrace test`` uses it so a factory that takes ``config`` sees each case's config.
    """
    spec = parse_target(text)
    module = _import_file(spec) if spec.is_file else _import_module(spec)
    value: Any = module
    for i, part in enumerate(spec.attr.split(".")):
        if not hasattr(value, part):
            where = spec.module if i == 0 else ".".join(spec.attr.split(".")[:i])
            raise LoadError(f"'{where}' has no attribute '{part}'{_candidates_hint(module, i == 0)}")
        value = getattr(value, part)
    if not is_runnable(value) and callable(value) and _takes_config(value):
        factory = value
        return lambda config: _call_factory(factory, spec, dict(config or {}))
    made = _as_runnable(value, spec)
    return lambda config: made


def _import_module(spec: TargetSpec) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # what `python -m` does: the project root is importable
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (spec.module == missing or spec.module.startswith(missing + ".")):
            raise LoadError(
                f"cannot import '{spec.text}': no module named '{missing}' "
                "(run from your project root, set PYTHONPATH, or give a file path like 'app.py:graph')"
            ) from err
        raise _import_raised(spec.module, err) from err
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        raise _import_raised(spec.module, err) from err


def _import_file(spec: TargetSpec) -> ModuleType:
    path = Path(spec.module).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.py"))[:8] if path.parent.is_dir() else []
        found = (
            f" (Python files there: {', '.join(near)})"
            if near
            else " (check the path; it is relative to the current directory)"
        )
        raise LoadError(f"cannot load '{spec.text}': no file '{spec.module}'{found}")
    name = path.stem if path.stem.isidentifier() else "lftrace_target"
    # like `python app.py`: the file's directory comes first, so its sibling imports work
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise LoadError(f"cannot load '{spec.text}': '{spec.module}' is not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # pydantic/dataclasses/typing resolve names through sys.modules
    try:
        module_spec.loader.exec_module(module)
    except BaseException as err:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        if isinstance(err, KeyboardInterrupt):
            raise
        raise _import_raised(spec.module, err) from err
    return module


def _import_raised(what: str, err: BaseException) -> LoadError:
    if isinstance(err, SyntaxError):
        where = f"{Path(err.filename).name}:{err.lineno}" if err.filename else what
        return LoadError(f"importing '{what}' failed: syntax error at {where}: {err.msg}")
    if isinstance(err, SystemExit):
        return LoadError(
            f"importing '{what}' called sys.exit({err.code}) (guard script code with `if __name__ == \"__main__\":`)"
        )
    detail = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, KeyError):
        detail = repr(err.args[0]) if err.args else ""
    hint = " (install it in this environment)" if isinstance(err, ModuleNotFoundError) else ""
    return LoadError(f"importing '{what}' raised {type(err).__name__}{': ' + detail if detail else ''}{hint}")


def is_runnable(value: Any) -> bool:
    try:
        from langchain_core.runnables import Runnable
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return False
    return isinstance(value, Runnable)


def _required_params(func: Any) -> list[str] | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _takes_config(func: Any) -> bool:
    """``def make_graph(config: RunnableConfig)``: exactly one required parameter, named ``config``."""
    return _required_params(func) == ["config"]


def _as_runnable(value: Any, spec: TargetSpec) -> Any:
    if is_runnable(value):
        return value
    if _looks_uncompiled(value):
        raise LoadError(
            f"'{spec.text}' is a {type(value).__name__} that is not compiled "
            f"(point at the compiled graph, e.g. `graph = builder.compile()`)"
        )
    if callable(value):
        required = _required_params(value)
        if required:
            raise LoadError(
                f"'{spec.text}' is a function that needs arguments ({', '.join(required)}): "
                "point at a Runnable, a zero-argument factory, or a factory taking only `config`"
            )
        return _call_factory(value, spec, None)
    raise LoadError(
        f"'{spec.text}' is a {type(value).__name__}, not a Runnable "
        "(point at a chain, a compiled graph, or a zero-argument factory returning one)"
    )


def _call_factory(value: Any, spec: TargetSpec, config: dict[str, Any] | None) -> Any:
    """Call a factory (with ``config`` when it takes one) and check that it made a Runnable."""
    try:
        made = value() if config is None else value(config)
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        detail = str(err).splitlines()[0] if str(err) else ""
        raise LoadError(
            f"calling factory '{spec.text}' raised {type(err).__name__}{': ' + detail if detail else ''}"
        ) from err
    if is_runnable(made):
        return made
    if _looks_uncompiled(made):
        raise LoadError(
            f"factory '{spec.text}' returned an uncompiled {type(made).__name__} (return builder.compile())"
        )
    raise LoadError(
        f"factory '{spec.text}' returned {type(made).__name__}, not a Runnable (return a chain or a compiled graph)"
    )


def _looks_uncompiled(value: Any) -> bool:
    return not inspect.isclass(value) and hasattr(value, "compile") and type(value).__name__.endswith("Graph")


def runnable_candidates(module: ModuleType) -> list[str]:
    """Names in the module that look runnable: Runnables and compiled graphs first, then local zero-arg factories."""
    runnables, factories = [], []
    for name, value in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        if is_runnable(value) or _looks_uncompiled(value):
            runnables.append(name)
        elif (
            inspect.isfunction(value)
            and value.__module__ == module.__name__
            and _required_params(value) in ([], ["config"])
        ):
            factories.append(f"{name}()")
    return runnables + factories


def _candidates_hint(module: ModuleType, top_level: bool) -> str:
    if not top_level:
        return ""
    names = runnable_candidates(module)
    if not names:
        return " (it defines nothing runnable: no chain, compiled graph or zero-argument factory)"
    return f" (runnable names there: {', '.join(names[:10])})"
