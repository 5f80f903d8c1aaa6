"""cli.py through typer's CliRunner: run/show/list, exit codes, one-line errors, help text, the import rule."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from lftrace.cli import app

runner = CliRunner()

TARGET = """
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from support.fake_models import ToolCallingFakeModel, build_agent

chain = ChatPromptTemplate.from_template("Tell me a joke about {topic}") | ToolCallingFakeModel(tool_name=None)
graph = build_agent()

def _fail(x):
    raise ValueError("the model is on fire")

failing = RunnableLambda(lambda x: x, name="prepare") | RunnableLambda(_fail, name="explode")
"""


@pytest.fixture
def app_file(tmp_path):
    path = tmp_path / "cli_app.py"
    path.write_text(textwrap.dedent(TARGET), encoding="utf-8")
    return "cli_app.py"


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def test_run_shows_the_tree_output_and_trace_id(app_file):
    # 120 columns: at 80 the generation line leaves out the model and token count to keep its cost and id
    result = runner.invoke(app, ["run", f"{app_file}:chain", "--input", "cats"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # an unnamed RunnableSequence is named after the target's file
    assert lines[0].startswith("cli_app  ") and "19 tokens (12 in, 7 out)" in lines[0] and "✓ ok" in lines[0]
    assert "target cli_app.py:chain" in lines[1]
    assert any("GENERATION ToolCallingFakeModel" in line and "gpt-4o-mini  12→7 tok" in line for line in lines)
    assert "The weather in Tell me a joke about cats" in result.stdout
    assert lines[-1].startswith("Trace ID: ") and len(lines[-1].split()[-1]) == 32
    assert "\x1b[" not in result.stdout


def test_run_json_prints_only_the_trace(app_file):
    result = invoke(
        "run", f"{app_file}:graph", "-i", "Paris", "--json", "--tag", "a", "--tag", "b", "--session-id", "s"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tags"] == ["a", "b"] and data["sessionId"] == "s"
    assert {o["type"] for o in data["observations"]} >= {"GENERATION", "TOOL", "AGENT"}
    assert data["output"]["messages"][-1]["content"] == "The weather in Paris: sunny in Paris"


def test_run_reads_stdin_and_streams(app_file):
    result = invoke("run", f"{app_file}:graph", "--input-file", "-", "--stream", input="Oslo\n")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.index("▸ agent: [tool calls: get_weather") < out.index("▸ tools: sunny in Oslo") < out.index("└── CHAIN")


def test_run_full_and_name(app_file):
    result = invoke("run", f"{app_file}:chain", "-i", '{"topic": "owls"}', "--full", "--name", "owl-jokes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("owl-jokes  ")
    assert '"topic": "owls"' in result.stdout


def test_target_that_raises_exits_1_with_the_trace_saved(app_file):
    result = invoke("run", f"{app_file}:failing", "-i", "x")
    assert result.exit_code == 1
    assert "CHAIN explode" in result.stdout and "error: the model is on fire" in result.stdout
    assert result.stderr.startswith(f"error: {app_file}:failing raised ValueError: the model is on fire (trace ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    shown = invoke("show", "last", "--json")
    assert [o["level"] for o in json.loads(shown.stdout)["observations"]].count("ERROR") == 2


def test_target_that_raises_with_debug_prints_the_traceback(app_file):
    result = invoke("run", f"{app_file}:failing", "-i", "x", "--debug")
    assert result.exit_code == 1 and "Traceback" in result.stderr and "the model is on fire" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["run", "cli_app.py:nope"],
            3,
            "error: 'cli_app.py' has no attribute 'nope' (runnable names there: chain, failing, graph)",
        ),
        (["run", "missing.py:graph"], 3, "error: cannot load 'missing.py:graph': no file 'missing.py'"),
        (["run", "cli_app.py"], 2, "error: target 'cli_app.py' has no ':ATTR'"),
        (
            ["run", "cli_app.py:chain", "-i", '{"subject": 1}'],
            2,
            "error: input for 'cli_app.py:chain' is missing 'topic'",
        ),
        (["run", "cli_app.py:chain", "-i", "x", "--config", "{"], 2, "error: --config is not valid JSON"),
        (["show", "abcdef"], 7, "error: no trace store at "),
        (["list", "--since", "yesterday"], 2, "error: --since 'yesterday' is not a duration or date"),
        (["list", "--level", "loud"], 2, "error: --level 'LOUD' is not a level"),
    ],
)
def test_errors_are_one_line_with_the_exit_code(app_file, args, code, message):
    result = invoke(*args)
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2():
    assert invoke("run").exit_code == 2
    assert invoke("list", "--limit", "zero").exit_code == 2
    assert invoke("nosuchcommand").exit_code == 2


def test_show_by_prefix_last_depth_and_observation(app_file):
    first = json.loads(invoke("run", f"{app_file}:chain", "-i", "cats", "--json").stdout)
    second = json.loads(invoke("run", f"{app_file}:graph", "-i", "Paris", "--json").stdout)
    by_prefix = invoke("show", first["id"][:6])
    assert by_prefix.exit_code == 0 and first["id"] in by_prefix.stdout and "ChatPromptTemplate" in by_prefix.stdout
    assert second["id"] in invoke("show").stdout  # 'last' is the default
    shallow = invoke("show", "last", "--depth", "1").stdout
    assert "GENERATION" not in shallow and "more (use --depth 2 or more)" in shallow
    tool = next(o for o in second["observations"] if o["type"] == "TOOL")
    focused = invoke("show", second["id"], "--observation", tool["id"][:10])
    assert "TOOL get_weather" in focused.stdout and "AGENT" not in focused.stdout
    as_json = json.loads(invoke("show", "last", "--observation", tool["id"], "--json").stdout)
    assert [o["id"] for o in as_json["observations"]] == [tool["id"]]
    missing = invoke("show", "0" * 32)
    assert missing.exit_code == 4 and missing.stderr.startswith("error: no trace")
    unknown_obs = invoke("show", "last", "--observation", "zzzz")
    assert unknown_obs.exit_code == 4 and "no observation 'zzzz'" in unknown_obs.stderr


def test_list_table_json_and_filters(app_file):
    empty = invoke("list")
    assert empty.exit_code == 0 and empty.stdout.startswith("No traces yet in ")
    assert json.loads(invoke("list", "--json").stdout) == []
    invoke("run", f"{app_file}:chain", "-i", "cats", "--tag", "nightly", "--user-id", "ann")
    invoke("run", f"{app_file}:failing", "-i", "x")
    table = [line.split("\t") for line in invoke("list").stdout.splitlines()]  # not a terminal: TSV
    assert table[0][:7] == ["time", "id", "name", "duration_s", "tokens", "cost_usd", "status"]
    assert table[1][2] == "cli_app" and table[1][6] == "error" and len(table[1][1]) == 32  # newest first
    assert table[2][6] == "ok" and table[2][8] == "ann" and table[2][9] == "nightly" and len(table) == 3
    rows = json.loads(invoke("list", "--json").stdout)
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert [r["status"] for r in json.loads(invoke("list", "--json", "--level", "error").stdout)] == ["error"]
    assert len(json.loads(invoke("list", "--json", "--tag", "nightly", "--user", "ann").stdout)) == 1
    assert len(json.loads(invoke("list", "--json", "--limit", "1").stdout)) == 1
    assert len(json.loads(invoke("list", "--json", "--since", "1h").stdout)) == 2
    assert json.loads(invoke("list", "--json", "--since", "2999-01-01").stdout) == []
    assert invoke("list", "--name", "nothing-like-this").stdout.startswith("No traces match these filters.")


def test_store_option_wins_over_the_environment(app_file, tmp_path):
    other = tmp_path / "other.db"
    assert invoke("--store", str(other), "run", f"{app_file}:chain", "-i", "cats").exit_code == 0
    assert other.exists()
    assert json.loads(invoke("list", "--json").stdout) == []  # the default store (LFTRACE_STORE) is untouched
    assert len(json.loads(invoke("--store", str(other), "list", "--json").stdout)) == 1


def test_corrupted_store_exits_7(tmp_path):
    (tmp_path / "bad.db").write_text("this is not sqlite", encoding="utf-8")
    result = invoke("--store", str(tmp_path / "bad.db"), "list")
    assert result.exit_code == 7 and "bad.db" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_version_and_help_with_an_example_on_every_command():
    from lftrace import __version__

    assert invoke("--version").stdout.strip() == f"lftrace {__version__}"
    for args in ([], *([c.name] for c in app.registered_commands)):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, args
        assert "Example" in result.stdout and f"lftrace {' '.join(args)}".strip() in result.stdout, args


def test_every_command_names_stored_traces_the_same_way(app_file, cli):
    """`show last~1` finds the trace `export last~1` finds (one resolver for id, prefix, last, last~N)."""
    first = json.loads(cli("run", f"{app_file}:chain", "-i", "cats", "--json").stdout)["id"]
    second = json.loads(cli("run", f"{app_file}:chain", "-i", "dogs", "--json").stdout)["id"]
    for ref, expected in (("last~1", first), ("last", second), ("last~0", second), (first[:8], first)):
        shown = cli("show", ref, "--json")
        exported = cli("export", ref)
        assert shown.exit_code == exported.exit_code == 0, (ref, shown.stderr, exported.stderr)
        assert json.loads(shown.stdout)["id"] == json.loads(exported.stdout)["id"] == expected, ref
    for ref, code in (("last~2", 4), ("last~x", 2)):
        shown, exported = cli("show", ref), cli("export", ref)
        assert shown.exit_code == exported.exit_code == code, ref
        assert shown.stderr == exported.stderr and shown.stderr.startswith("error: "), ref


def test_importing_the_cli_imports_no_langchain_or_heavy_module():
    code = (
        "import lftrace.cli, sys; "
        "print([m for m in sys.modules if m.startswith(('langchain', 'langgraph', 'genai_prices', 'opentelemetry', 'httpx'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_list_and_show_start_without_assertions_dataset_client_or_httpx(app_file):
    assert invoke("run", f"{app_file}:chain", "-i", "cats").exit_code == 0
    heavy = ("lftrace.assertions", "lftrace.dataset", "lftrace.client", "lftrace.delivery", "httpx", "langchain")
    heavy += ("ctypes", "hashlib", "_hashlib")  # the store's writing side only (~4 ms of every start-up)
    code = (
        "import sys; from lftrace.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in sys.modules if m.startswith({heavy!r})], file=sys.stderr)"
    )
    for args in (["list"], ["show", "last"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        assert done.stderr.strip() == "[]", args
        assert "cli_app" in done.stdout


def test_main_builds_only_the_invoked_command_but_help_and_typos_see_all():
    from lftrace.cli import app_for

    assert [c.name for c in app_for(["--store", "x.db", "--debug", "list", "-n", "3"]).registered_commands] == ["list"]
    assert [c.name for c in app_for(["--store=x.db", "show", "--remote"]).registered_commands] == ["show"]
    everything = [c.name for c in app.registered_commands]
    assert len(everything) >= 11
    for args in (["--help"], [], ["lst"], ["--version"]):
        assert [c.name for c in app_for(args).registered_commands] == everything
    done = subprocess.run([sys.executable, "-m", "lftrace", "lst"], capture_output=True, text=True)
    assert done.returncode == 2 and "Did you mean 'list'?" in done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "lftrace", "--debug", "list", "--help"], capture_output=True, text=True
    )
    assert listed.returncode == 0 and "Usage: lftrace list [OPTIONS]" in listed.stdout


PK, SK = "pk-lf-remote-1234567890", "sk-lf-remote-secret-0987654321"


@pytest.fixture
def langfuse(monkeypatch):
    from support.otlp_receiver import running_receiver

    with running_receiver() as receiver:
        receiver.expect_basic(PK, SK)
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
        monkeypatch.setenv("LANGFUSE_BASE_URL", receiver.url)
        monkeypatch.setenv("LANGFUSE_TIMEOUT", "2")
        yield receiver


def test_show_remote_renders_what_langfuse_stored_v2_then_v1(app_file, langfuse):
    ran = invoke("run", f"{app_file}:graph", "-i", "Paris")
    assert ran.exit_code == 0, ran.stderr
    trace_id = ran.stdout.splitlines()[-2].split()[-1]
    assert ran.stdout.splitlines()[-1].endswith(f"/project/proj-123/traces/{trace_id}")
    local = invoke("show", trace_id)
    remote = invoke("show", "--remote", "last")
    assert remote.exit_code == 0, remote.stderr
    assert any(r.path == "/api/public/v2/observations" for r in langfuse.requests)

    def tree(text: str) -> list[str]:  # the context lines say what each side knows (target, delivery: local)
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith(("└── ", "├── ")))
        return [line.split("  ")[0] for line in lines[:1] + lines[first:]]

    assert tree(remote.stdout) == tree(local.stdout)  # same renderer, same tree
    assert "GENERATION" in remote.stdout and f"Trace ID: {trace_id}" in remote.stdout
    assert invoke("show", "--remote", "last~0").stdout == remote.stdout  # the same references as the local store

    langfuse.v2_observations, langfuse.v1_traces = False, True  # an older (v3) server
    as_json = invoke("show", "--remote", trace_id, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    local_data = json.loads(invoke("show", trace_id, "--json").stdout)
    assert data["id"] == trace_id
    assert sorted(o["id"] for o in data["observations"]) == sorted(o["id"] for o in local_data["observations"])
    assert any(r.path == f"/api/public/traces/{trace_id}" for r in langfuse.requests)


def test_show_remote_errors_exit_2_without_keys_4_unknown_id_6_server_down(monkeypatch, langfuse):
    unknown = invoke("show", "--remote", "0" * 32)
    assert unknown.exit_code == 4 and unknown.stderr.startswith("error: no trace '" + "0" * 32 + "' in Langfuse")
    monkeypatch.delenv("LANGFUSE_SECRET_KEY")
    no_keys = invoke("show", "--remote", "0" * 32)
    assert no_keys.exit_code == 2
    assert (
        no_keys.stderr == "error: --remote needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL)\n"
    )
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    from support.otlp_receiver import closed_port

    monkeypatch.setenv("LANGFUSE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    down = invoke("show", "--remote", "0" * 32)
    assert down.exit_code == 6 and "cannot connect to Langfuse" in down.stderr
    assert SK not in unknown.stderr + no_keys.stderr + down.stderr


def test_invalid_setting_stops_run_before_the_graph_runs(app_file, tmp_path, monkeypatch):
    marker = tmp_path / "ran.txt"
    (tmp_path / "side_effect.py").write_text(
        "from langchain_core.runnables import RunnableLambda\n"
        f"chain = RunnableLambda(lambda x: open({str(marker)!r}, 'w').write('ran'))\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1234567890abcd")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-1234567890abcd")
    monkeypatch.setenv("LANGFUSE_BASE_URL", "notaurl")
    result = invoke("run", "side_effect.py:chain", "--input", "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: LANGFUSE_BASE_URL: 'notaurl' is not an http(s) URL (expected e.g. https://cloud.langfuse.com)"
    )
    assert not marker.exists()
    assert "sk-lf-1234567890abcd" not in result.stdout + result.stderr
