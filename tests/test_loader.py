"""loader.py: targets by module and by file path, factories, and one-line errors with the fix."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from lftrace.errors import ExitStatus, LoadError
from lftrace.loader import load_target, parse_target


def write_module(tmp_path, body: str, name: str | None = None) -> str:
    """A uniquely named module in tmp_path (the cwd), so tests never share sys.modules entries."""
    name = name or f"target_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name


CHAIN = """
from langchain_core.runnables import RunnableLambda
chain = RunnableLambda(lambda x: f"echo {x}")
not_runnable = 42
def make():
    return RunnableLambda(lambda x: x.upper())
def needs(a, b):
    return chain
def make_number():
    return 7
def broken_factory():
    raise RuntimeError("no API key")
"""


@pytest.fixture
def chain_module(tmp_path):
    name = write_module(tmp_path, CHAIN)
    yield name
    sys.modules.pop(name, None)


def test_module_attr_from_the_cwd(chain_module):
    assert load_target(f"{chain_module}:chain").invoke("hi") == "echo hi"


def test_file_path_target(tmp_path, chain_module):
    runnable = load_target(str(tmp_path / f"{chain_module}.py") + ":chain")
    assert runnable.invoke("x") == "echo x"
    assert load_target(f"./{chain_module}.py:chain").invoke("y") == "echo y"


def test_zero_argument_factory_is_called(chain_module):
    assert load_target(f"{chain_module}:make").invoke("abc") == "ABC"


def test_compiled_langgraph_graph(tmp_path):
    name = write_module(
        tmp_path,
        """
        from typing_extensions import TypedDict
        from langgraph.graph import StateGraph, START, END
        class S(TypedDict):
            n: int
        builder = StateGraph(S)
        builder.add_node("inc", lambda s: {"n": s["n"] + 1})
        builder.add_edge(START, "inc")
        builder.add_edge("inc", END)
        graph = builder.compile()
        """,
    )
    assert load_target(f"{name}:graph").invoke({"n": 1}) == {"n": 2}
    with pytest.raises(LoadError, match=r"is a StateGraph that is not compiled .*builder.compile\(\)"):
        load_target(f"{name}:builder")


def test_missing_attribute_lists_what_looks_runnable(chain_module):
    with pytest.raises(LoadError) as info:
        load_target(f"{chain_module}:grph")
    message = str(info.value)
    assert f"'{chain_module}' has no attribute 'grph'" in message
    assert "runnable names there: chain, broken_factory(), make(), make_number()" in message
    assert info.value.exit_code == ExitStatus.LOAD_FAILED


def test_not_runnable_and_bad_factories(chain_module):
    with pytest.raises(LoadError, match="is a int, not a Runnable"):
        load_target(f"{chain_module}:not_runnable")
    with pytest.raises(LoadError, match=r"needs arguments \(a, b\)"):
        load_target(f"{chain_module}:needs")
    with pytest.raises(LoadError, match="returned int, not a Runnable"):
        load_target(f"{chain_module}:make_number")
    with pytest.raises(LoadError, match=r"calling factory .* raised RuntimeError: no API key"):
        load_target(f"{chain_module}:broken_factory")


def test_missing_module_says_where_to_run_from():
    with pytest.raises(
        LoadError, match=r"cannot import 'nosuchmod\.app:graph': no module named 'nosuchmod' \(run from"
    ):
        load_target("nosuchmod.app:graph")


def test_missing_file_lists_python_files_there(tmp_path, chain_module):
    with pytest.raises(LoadError, match=rf"no file 'nope\.py' \(Python files there: {chain_module}\.py\)"):
        load_target("nope.py:graph")


def test_import_that_raises_names_the_exception(tmp_path):
    name = write_module(tmp_path, "import os\nKEY = os.environ['SURELY_NOT_SET_ANYWHERE']\n")
    with pytest.raises(LoadError) as info:
        load_target(f"{name}.py:chain")
    assert str(info.value) == f"importing '{name}.py' raised KeyError: 'SURELY_NOT_SET_ANYWHERE'"
    assert name not in sys.modules  # a failed import leaves nothing half-loaded behind


def test_missing_dependency_and_syntax_error(tmp_path):
    dep = write_module(tmp_path, "import surely_missing_dependency\n")
    with pytest.raises(
        LoadError, match="raised ModuleNotFoundError: No module named 'surely_missing_dependency' \\(install it"
    ):
        load_target(f"{dep}:x")
    bad = write_module(tmp_path, "def f(:\n    pass\n")
    with pytest.raises(LoadError, match=rf"syntax error at {bad}\.py:1"):
        load_target(f"{bad}.py:f")


def test_sys_exit_at_import_is_explained(tmp_path):
    name = write_module(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises(LoadError, match=r"called sys.exit\(3\) \(guard script code"):
        load_target(f"{name}.py:x")


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("app.py", "has no ':ATTR'"),
        ("app.py:", "is malformed"),
        (":graph", "is malformed"),
        ("app:1x", "is not an attribute"),
    ],
)
def test_malformed_targets_are_usage_errors(target, fragment):
    with pytest.raises(LoadError, match=fragment) as info:
        parse_target(target)
    assert info.value.exit_code == ExitStatus.USAGE


def test_windows_style_and_dotted_attributes(tmp_path):
    spec = parse_target(r"C:\work\app.py:graph")
    assert (spec.module, spec.attr, spec.is_file) == (r"C:\work\app.py", "graph", True)
    name = write_module(
        tmp_path,
        "from langchain_core.runnables import RunnableLambda\nclass NS:\n    chain = RunnableLambda(lambda x: 1)\n",
    )
    assert load_target(f"{name}:NS.chain").invoke(None) == 1
