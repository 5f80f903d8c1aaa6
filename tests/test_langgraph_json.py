"""Graphs named by a ``langgraph.json`` (the LangGraph CLI's project file), run as ``langgraph dev`` would load them.

tests/projects/docs_app is LangGraph's documented application structure (``my_agent/agent.py`` importing
``my_agent.utils.nodes``, a ``dependencies`` entry, an ``env`` file, a graph given as a factory module path).
Real ``lftrace`` subprocesses, a real store in a temp dir, a real fake-Langfuse HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent / "projects" / "docs_app"
LFTRACE = str(Path(sys.executable).parent / "lftrace")


def lftrace(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the project, so a test may change its files."""
    return Path(shutil.copytree(APP, tmp_path / "app"))


def one_line(ran: subprocess.CompletedProcess[str]) -> str:
    (line,) = ran.stderr.strip().splitlines()  # one line, no traceback
    assert "Traceback" not in ran.stderr
    return line


def test_a_graph_of_the_documented_app_structure_runs_by_its_id(app):
    ran = lftrace("run", "agent", "-i", "weather in Paris?", cwd=app)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("agent  ✓ ok")  # the trace is named after the graph id
    trace = json.loads(lftrace("show", "last", "--json", cwd=app).stdout)
    assert trace["name"] == "agent" and trace["metadata"]["lftrace_target"] == "agent"
    assert trace["output"]["messages"][-1]["content"] == "Sunny in Paris."
    generations = [o for o in trace["observations"] if o["type"] == "GENERATION"]
    assert [g["usageDetails"] for g in generations] == [{"input": 42, "output": 9, "total": 51}] * 2
    # the project's env file reached the graph: the model's system prompt comes from it
    assert generations[0]["input"][0] == {"role": "system", "content": "You are a terse weather assistant."}
    (tool,) = [o for o in trace["observations"] if o["type"] == "TOOL"]
    assert tool["name"] == "get_weather" and tool["output"]["content"] == "sunny in Paris"

    # the real environment wins over the project's env; LFTRACE_DOTENV=0 turns the project's env off
    persona = {**os.environ, "AGENT_PERSONA": "From the shell."}
    assert lftrace("run", "agent", "-i", "hi", cwd=app, env=persona).returncode == 0
    assert "From the shell." in lftrace("show", "last", "--json", cwd=app).stdout
    off = {**os.environ, "LFTRACE_DOTENV": "0"}
    assert lftrace("run", "agent", "-i", "hi", cwd=app, env=off).returncode == 0
    assert "the project's env was not read" in lftrace("show", "last", "--json", cwd=app).stdout
    # "env" may be a mapping instead of a file
    project = json.loads((app / "langgraph.json").read_text())
    (app / "langgraph.json").write_text(json.dumps({**project, "env": {"AGENT_PERSONA": "From the mapping."}}))
    assert lftrace("run", "agent", "-i", "hi", cwd=app).returncode == 0
    assert "From the mapping." in lftrace("show", "last", "--json", cwd=app).stdout


def test_a_project_graph_from_another_directory_and_in_lftrace_test(app, tmp_path):
    config = str(app / "langgraph.json")
    ran = lftrace(
        "run", f"{config}:echo", "-i", '{"text": "hi"}', "--config", '{"configurable": {"prefix": "> "}}', "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    trace = json.loads(ran.stdout)
    assert trace["name"] == "echo" and trace["output"] == {"text": "> hi"}  # a factory taking the run's config

    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps({"name": "plain", "input": {"text": "a"}, "expect": {"output": "^a$"}})
        + "\n"
        + json.dumps(
            {
                "name": "prefixed",
                "input": {"text": "b"},
                "config": {"configurable": {"prefix": "#"}},
                "expect": {"output": "#b"},
            }
        )
        + "\n"
    )
    tested = lftrace("test", f"{config}:echo", str(cases), "--json", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    report = json.loads(tested.stdout)
    assert [(c["name"], c["passed"]) for c in report["cases"]] == [("plain", True), ("prefixed", True)]


def test_without_a_target_the_only_graph_runs_and_several_must_be_named(app, tmp_path):
    several = lftrace("run", "-i", "hi", cwd=app)
    assert several.returncode == 2
    assert one_line(several) == "error: langgraph.json has 2 graphs (agent, echo): name one, e.g. `lftrace run agent`"

    single = tmp_path / "single"
    single.mkdir()
    (single / "langgraph.json").write_text(json.dumps({"graphs": {"echo": f"{app}/my_agent/echo.py:make_graph"}}))
    ran = lftrace("run", "-i", '{"text": "solo"}', "--json", cwd=single)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["output"] == {"text": "solo"}

    nothing = lftrace("run", "-i", "hi", cwd=tmp_path)
    assert nothing.returncode == 2 and "missing TARGET" in one_line(nothing)
    bare = lftrace("run", "agent", "-i", "hi", cwd=tmp_path)  # no langgraph.json here
    assert bare.returncode == 2 and "a graph id needs its langgraph.json in this directory" in one_line(bare)


def test_the_project_env_may_hold_the_langfuse_keys(app, receiver):
    receiver.expect_basic("pk-lf-project", "sk-lf-project-secret")
    (app / ".env.agent").write_text(
        "AGENT_PERSONA=terse\n"
        "LANGFUSE_PUBLIC_KEY=pk-lf-project\n"
        "LANGFUSE_SECRET_KEY=sk-lf-project-secret\n"
        f"LANGFUSE_BASE_URL={receiver.url}\n"
    )
    ran = lftrace("run", "agent", "-i", "hi", cwd=app)
    assert ran.returncode == 0, ran.stderr
    trace_id = ran.stdout.strip().splitlines()[-2].split()[-1]
    assert ran.stdout.strip().splitlines()[-1] == f"{receiver.url}/project/{receiver.project_id}/traces/{trace_id}"
    assert set(receiver.trace_ids()) == {trace_id}
    assert "sk-lf-project-secret" not in ran.stdout + ran.stderr


@pytest.mark.parametrize(
    ("config", "target", "why"),
    [
        ("{nope", "agent", "langgraph.json is not valid JSON: Expecting property name"),
        ('{"graphs": {}}', "agent", 'langgraph.json names no graphs (add "graphs"'),
        ('{"graphs": {"agent": "./a.py:graph"}}', "other", "langgraph.json has no graph 'other' (its graphs: agent)"),
        ('{"graphs": {"ui": "./src/agent.ts:graph"}}', "ui", "is a JavaScript graph (./src/agent.ts:graph)"),
        ('{"graphs": {"agent": {"description": "x"}}}', "agent", "graph 'agent' in "),
        ('{"graphs": {"agent": "./missing.py:graph"}}', "agent", "no file"),
    ],
)
def test_a_bad_langgraph_json_is_one_line_exit_3(tmp_path, config, target, why):
    (tmp_path / "langgraph.json").write_text(config)
    ran = lftrace("run", target, "-i", "hi", cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    assert why in one_line(ran)


def test_the_langgraph_new_template_layout_runs_without_installing_the_package(tmp_path):
    """``langgraph new``'s template: a src-layout package whose modules import each other by package name."""
    project = tmp_path / "new-langgraph-project"
    package = project / "src" / "agent"
    package.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "agent"\nversion = "0.0.1"\n')
    (project / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"agent": "./src/agent/graph.py:graph"}, "env": ".env"})
    )
    (package / "__init__.py").write_text("from agent.graph import graph\n")
    (package / "state.py").write_text("from typing import TypedDict\n\n\nclass State(TypedDict):\n    text: str\n")
    (package / "graph.py").write_text(
        "from langgraph.graph import StateGraph\n"
        "from agent.state import State\n\n\n"
        "def call_model(state: State) -> State:\n"
        '    return {"text": "output from call_model: " + state["text"]}\n\n\n'
        'graph = StateGraph(State).add_node(call_model).set_entry_point("call_model").compile(name="New Graph")\n'
    )
    ran = lftrace("run", "-i", '{"text": "hi"}', "--json", cwd=project)  # no .env: fine, as for langgraph dev
    assert ran.returncode == 0, ran.stderr
    trace = json.loads(ran.stdout)
    assert trace["name"] == "agent" and trace["output"] == {"text": "output from call_model: hi"}
