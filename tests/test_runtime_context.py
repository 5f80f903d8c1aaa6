"""LangGraph's runtime context (``context_schema`` + ``Runtime[Context]``, LangGraph 0.6+'s way to hand a run its
user id, settings or clients): ``lftrace run --context`` and ``lftrace test`` (``--context``, a case's "context").
And the functional API (``@entrypoint``/``@task``) paused at ``interrupt()`` and resumed in a second process.

Real ``lftrace`` subprocesses on the graphs of tests/graphs/runtime_context.py, a real store in a temp dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GRAPHS = Path(__file__).resolve().parent / "graphs"
LFTRACE = str(Path(sys.executable).parent / "lftrace")


def target(attr: str) -> str:
    return f"{GRAPHS / 'runtime_context.py'}:{attr}"


def lftrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("attr", ["graph", "async_graph"])  # invoke, and ainvoke (an async-only node)
def test_context_reaches_the_nodes(isolated_env, attr):
    ran = lftrace("run", target(attr), "-i", '{"question": "why?"}', "--context", '{"user_id": "u-7", "tone": "warm"}')
    assert ran.returncode == 0, ran.stderr
    assert '"answer": "[warm] u-7 asked why?"' in ran.stdout
    trace = json.loads(lftrace("show", "last", "--json").stdout)
    (node,) = [o for o in trace["observations"] if o["name"] == "respond"]
    assert node["output"] == {"answer": "[warm] u-7 asked why?"}


def test_context_from_a_file_and_a_pydantic_schema_with_its_defaults(isolated_env):
    (isolated_env.parent / "ctx.json").write_text('{"user_id": "ada"}')
    ran = lftrace("run", target("pydantic_graph"), "-i", '{"question": "one two"}', "--context", "@ctx.json")
    assert ran.returncode == 0, ran.stderr
    assert '"answer": "ada: one two"' in ran.stdout


def test_a_context_that_does_not_fit_the_schema_is_exit_2_before_the_run(isolated_env):
    for attr, context, why in (
        ("graph", '{"name": "x"}', "unexpected keyword argument 'name'"),
        ("pydantic_graph", '{"user_id": "a", "max_words": "many"}', "max_words: Input should be a valid integer"),
    ):
        ran = lftrace("run", target(attr), "-i", '{"question": "q"}', "--context", context)
        assert ran.returncode == 2, ran.stderr
        (line,) = ran.stderr.strip().splitlines()  # one line, no traceback
        assert line.startswith("error: --context does not fit the graph's context_schema") and why in line
        assert "user_id (required)" in line
    assert lftrace("list", "--json").stdout.strip() in ("", "[]")  # nothing ran, nothing recorded
    for context, why in (("{nope", "--context is not valid JSON"), ("[1]", "--context must be a JSON object")):
        ran = lftrace("run", target("graph"), "-i", '{"question": "q"}', "--context", context)
        assert ran.returncode == 2 and why in ran.stderr


def test_context_for_a_chain_that_is_not_a_graph_is_a_usage_error(isolated_env):
    (isolated_env.parent / "chain_app.py").write_text(
        "from langchain_core.runnables import RunnableLambda\nchain = RunnableLambda(lambda x: x)\n"
    )
    ran = lftrace("run", "chain_app.py:chain", "-i", '"x"', "--context", '{"user_id": "u"}')
    assert ran.returncode == 2
    assert "is not a graph (use --config)" in ran.stderr


def test_a_graph_that_needs_a_context_and_got_none_says_how_to_give_it(isolated_env):
    ran = lftrace("run", target("graph"), "-i", '{"question": "q"}')
    assert ran.returncode == 1  # the graph raised (its trace is saved)
    note = "note: the graph declares context_schema Context (user_id (required), tone): give it with --context"
    assert note in ran.stderr and """'{"user_id": ...}'""" in ran.stderr
    assert json.loads(lftrace("list", "--json").stdout)[0]["status"] == "error"


def test_lftrace_test_gives_each_case_its_context(isolated_env):
    cases = isolated_env.parent / "cases.jsonl"
    cases.write_text(
        json.dumps(
            {
                "name": "own",
                "input": {"question": "q"},
                "context": {"user_id": "case-user"},
                "expect": {"output": "case-user"},
            }
        )
        + "\n"
        + json.dumps({"name": "shared", "input": {"question": "q"}, "expect": {"output": r"\[loud\] cli-user"}})
        + "\n"
    )
    ran = lftrace("test", target("graph"), str(cases), "--context", '{"user_id": "cli-user", "tone": "loud"}', "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert [(c["name"], c["passed"]) for c in report["cases"]] == [("own", True), ("shared", True)]
    cases.write_text(json.dumps({"name": "bad", "input": {"question": "q"}, "context": ["not", "an", "object"]}) + "\n")
    ran = lftrace("test", target("graph"), str(cases))
    assert ran.returncode == 2 and '"context" must be an object' in ran.stderr


def test_a_functional_api_workflow_pauses_and_resumes_in_a_second_process(isolated_env):
    first = lftrace("run", target("essay_workflow"), "-i", '"otters"', "--json")
    assert first.returncode == 0, first.stderr
    paused = json.loads(first.stdout)
    assert paused["metadata"]["langgraph_interrupts"][0]["value"] == {
        "essay": "An essay about otters",
        "action": "approve?",
    }
    assert [o["name"] for o in paused["observations"] if o["name"] == "draft"] == ["draft"]  # the @task is a span
    second = lftrace("run", target("essay_workflow"), "--thread-id", paused["sessionId"], "--resume", "true", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["output"] == {"essay": "An essay about otters", "approved": True}


def test_retried_node_shows_its_failed_attempts_and_stream_shows_what_nodes_write(isolated_env):
    ran = lftrace("run", target("retrying_graph"), "-i", '{"question": "q"}', "--stream")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    progress = [line.strip() for line in lines if line.strip().startswith("◦")]
    assert progress == [f'◦ {{"progress": "attempt {n}"}}' for n in (1, 2, 3)]
    assert lines.index(next(x for x in lines if x.startswith("▸ flaky:"))) > lines.index(
        next(x for x in lines if "attempt 3" in x)
    )
    trace = json.loads(lftrace("show", "last", "--json").stdout)
    attempts = [(o["level"], o["statusMessage"]) for o in trace["observations"] if o["name"] == "flaky"]
    assert attempts == [("ERROR", "transient failure 1"), ("ERROR", "transient failure 2"), ("DEFAULT", None)]
    assert trace["output"]["answer"] == "ok after 3 attempts!"  # the deferred node ran last
    (row,) = json.loads(lftrace("list", "--json").stdout)
    assert (row["status"], row["handledErrors"]) == ("ok", 2)


def test_a_node_that_routes_with_a_command_shows_its_update_and_where_it_goes(isolated_env):
    ran = lftrace("run", target("command_graph"), "-i", '{"x": 1}')
    assert ran.returncode == 0, ran.stderr
    assert "out: x: 2 | → double" in ran.stdout  # not "graph: null | update: ... | resume: null | goto: double"
    trace = json.loads(lftrace("show", "last", "--json").stdout)
    (bump,) = [o for o in trace["observations"] if o["name"] == "bump"]
    assert bump["output"] == {"graph": None, "update": {"x": 2}, "resume": None, "goto": "double"}  # stored whole
    assert trace["output"] == {"x": 4}


def test_a_langchain_v1_agent_shows_its_model_calls_tool_and_usage(isolated_env):
    agent = f"{GRAPHS / 'langchain_agent.py'}:agent"
    ran = lftrace("run", agent, "-i", "What is the weather in Paris?")
    assert ran.returncode == 0, ran.stderr
    model_node = ran.stdout.split("CHAIN model")[1].splitlines()[2]  # its "out:" line: the Command it returned
    assert model_node.strip().endswith('out: [tool calls: get_weather({"city": "Paris"})]'), model_node
    assert "graph: null" not in ran.stdout and '"graph": null' not in ran.stdout
    assert "It is 18C and sunny in Paris." in ran.stdout
    trace = json.loads(lftrace("show", "last", "--json").stdout)
    kinds = [(o["type"], o["name"]) for o in trace["observations"] if o["type"] in ("GENERATION", "TOOL")]
    assert kinds == [("GENERATION", "WeatherModel"), ("TOOL", "get_weather"), ("GENERATION", "WeatherModel")]
    generations = [o for o in trace["observations"] if o["type"] == "GENERATION"]
    assert [g["usageDetails"]["output"] for g in generations] == [12, 12] and all(g["model"] for g in generations)
    assert generations[0]["input"][0] == {"role": "system", "content": "You answer about the weather."}


def test_a_handoff_to_the_parent_graph_is_the_node_s_output_not_an_error(isolated_env):
    ran = lftrace("run", target("handoff_graph"), "-i", '{"log": []}')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count('out: log: ["alice"] | → bob | in the parent graph') == 3  # the node, its graph, "alice"
    trace = json.loads(lftrace("show", "last", "--json").stdout)
    assert trace["output"] == {"log": ["alice", "bob"]}
    assert {o["level"] for o in trace["observations"]} == {"DEFAULT"}
    (works,) = [o for o in trace["observations"] if o["name"] == "alice_works"]
    assert works["output"] == {"graph": "__parent__", "update": {"log": ["alice"]}, "resume": None, "goto": "bob"}
    assert works["statusMessage"] is None


def test_the_prebuilt_react_agent_pauses_inside_its_tool_and_resumes_in_another_process(isolated_env):
    agent = f"{GRAPHS / 'prebuilt_agent.py'}:agent"
    paused = lftrace("run", agent, "-i", "What is the weather in Paris?", "--thread-id", "hitl-1")
    assert paused.returncode == 0, paused.stderr
    assert '⏸ interrupt: {"question": "look up the weather in Paris?"}' in paused.stdout  # on the TOOL
    assert 'in: [tool call: get_weather({"city": "Paris"})]' in paused.stdout  # the ToolNode's Send, readable
    assert "resume: lftrace run" in paused.stdout and "--thread-id hitl-1 --resume VALUE" in paused.stdout
    first = json.loads(lftrace("show", "last", "--json").stdout)
    (tool,) = [o for o in first["observations"] if o["type"] == "TOOL"]
    assert tool["level"] == "DEFAULT" and tool["metadata"]["interrupt"]["value"] == {
        "question": "look up the weather in Paris?"
    }

    resumed = lftrace("run", agent, "--thread-id", "hitl-1", "--resume", "yes", "--json")
    assert resumed.returncode == 0, resumed.stderr
    trace = json.loads(resumed.stdout)
    assert trace["output"]["messages"][-1]["content"] == "It is 18C and sunny."
    kinds = [(o["type"], o["name"]) for o in trace["observations"] if o["type"] in ("GENERATION", "TOOL")]
    assert kinds == [("TOOL", "get_weather"), ("GENERATION", "WeatherModel")]  # the tool ran again, answered "yes"
    assert trace["sessionId"] == first["sessionId"] == "hitl-1"
