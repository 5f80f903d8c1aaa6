"""End to end: real subprocesses of the installed ``lftrace`` (every sample graph, errors, Ctrl-C, .env)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.signals import signal_when_ready

REPO = Path(__file__).resolve().parent.parent
LFTRACE = str(Path(sys.executable).parent / "lftrace")
SAMPLES = [
    ("joke_chain.py:chain", '{"topic": "cats"}'),
    ("chatbot.py:graph", "What is Langfuse?"),
    ("agent.py:graph", "What is the weather in Paris, and what is 6 times 7?"),
    ("multi_agent.py:graph", "Who created LangGraph, and what is 6 times 7?"),
    ("rag.py:chain", "How does lftrace store traces?"),
]


def lftrace(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize(("target", "text"), SAMPLES)
def test_every_sample_graph_runs_and_is_stored(target, text):
    sample = REPO / "sample_graphs" / target.split(":")[0]
    ran = lftrace("run", f"{sample}:{target.split(':')[1]}", "--input", text)
    assert ran.returncode == 0, ran.stderr
    assert "✓ ok" in ran.stdout.splitlines()[0] and "Output:" in ran.stdout
    trace_id = ran.stdout.strip().splitlines()[-1].split()[-1]
    shown = lftrace("show", "last", "--json")
    data = json.loads(shown.stdout)
    assert data["id"] == trace_id and data["observations"]
    assert any(o["type"] == "GENERATION" for o in data["observations"])
    listed = json.loads(lftrace("list", "--json").stdout)
    assert listed[0]["id"] == trace_id and listed[0]["status"] == "ok"


def test_bad_target_exit_3_one_line_no_traceback(tmp_path):
    (tmp_path / "app.py").write_text("import os\nX = os.environ['NOT_SET_FOR_THIS_TEST']\n", encoding="utf-8")
    ran = lftrace("run", "app.py:graph", "-i", "hi")
    assert ran.returncode == 3
    assert ran.stderr == "error: importing 'app.py' raised KeyError: 'NOT_SET_FOR_THIS_TEST'\n"


def test_bad_json_input_exit_2_missing_trace_4_corrupted_store_7(tmp_path):
    sample = REPO / "sample_graphs" / "joke_chain.py"
    bad_input = lftrace("run", f"{sample}:chain", "-i", '{"subject": "cats"}')
    assert bad_input.returncode == 2 and "missing 'topic'" in bad_input.stderr and "Traceback" not in bad_input.stderr
    broken = lftrace("run", f"{sample}:chain", "-i", '{"topic": "cats"')
    assert broken.returncode == 2 and broken.stderr.startswith("error: the input looks like JSON but does not parse")
    lftrace("run", f"{sample}:chain", "-i", "cats")
    missing = lftrace("show", "f" * 32)
    assert missing.returncode == 4 and missing.stderr.startswith("error: no trace")
    (tmp_path / "broken.db").write_bytes(b"\x00garbage" * 100)
    broken = lftrace("--store", str(tmp_path / "broken.db"), "list")
    assert broken.returncode == 7 and len(broken.stderr.splitlines()) == 1 and "broken.db" in broken.stderr


def test_raising_graph_exit_1_and_error_trace_saved(tmp_path):
    (tmp_path / "failing.py").write_text(
        textwrap.dedent(
            """
            from langchain_core.runnables import RunnableLambda
            def explode(x):
                raise ZeroDivisionError("no budget left")
            chain = RunnableLambda(lambda x: x, name="prepare") | RunnableLambda(explode, name="explode")
            """
        ),
        encoding="utf-8",
    )
    ran = lftrace("run", "failing.py:chain", "-i", "go")
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: failing.py:chain raised ZeroDivisionError: no budget left (trace ")
    assert "Traceback" not in ran.stderr and "error: no budget left" in ran.stdout
    data = json.loads(lftrace("show", "last", "--json").stdout)
    assert [o["level"] for o in data["observations"] if o["name"] == "explode"] == ["ERROR"]


SLOW_GRAPH = """
import time
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START, END

class State(TypedDict):
    text: str

def fast(state):
    return {"text": state["text"] + "!"}

def slow(state):
    print("SLOW NODE STARTED", flush=True)
    time.sleep(60)
    return state

builder = StateGraph(State)
builder.add_node("fast", fast)
builder.add_node("slow", slow)
builder.add_edge(START, "fast")
builder.add_edge("fast", "slow")
builder.add_edge("slow", END)
graph = builder.compile()
"""


def test_ctrl_c_saves_the_partial_trace_marked_cancelled_and_exits_130(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_GRAPH, encoding="utf-8")
    code, out, err = signal_when_ready([LFTRACE, "run", "slow.py:graph", "-i", "hi"], "SLOW NODE STARTED")
    assert code == 130, err
    assert err.startswith("error: cancelled (Ctrl-C); partial trace saved: ") and "Traceback" not in err
    assert "⚠ cancelled" in out
    data = json.loads(lftrace("show", "last", "--json").stdout)
    assert data["metadata"]["cancelled"] is True
    assert {o["name"] for o in data["observations"]} >= {"fast", "slow"}
    assert all(o["endTime"] for o in data["observations"])


def test_ctrl_c_while_the_target_is_imported_says_so_in_one_line(tmp_path):
    (tmp_path / "slow_import.py").write_text(
        'import os, time\nos.write(1, b"IMPORTING\\n")\ntime.sleep(30)\ngraph = None\n', encoding="utf-8"
    )
    code, _, err = signal_when_ready([LFTRACE, "run", "slow_import.py:graph", "-i", "hi"], "IMPORTING")
    assert code == 130  # was 130 with nothing said
    assert (
        err
        == "error: cancelled (Ctrl-C) while 'slow_import.py:graph' was imported: nothing ran, nothing was recorded\n"
    )
    assert json.loads(lftrace("list", "--json").stdout) == []


def test_dotenv_in_the_cwd_is_loaded_but_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(f"LFTRACE_STORE={tmp_path / 'from_dotenv.db'}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "LFTRACE_STORE"}
    sample = REPO / "sample_graphs" / "joke_chain.py"
    assert lftrace("run", f"{sample}:chain", "-i", "cats", env=env).returncode == 0
    assert (tmp_path / "from_dotenv.db").exists()
    env["LFTRACE_STORE"] = str(tmp_path / "from_env.db")
    assert lftrace("run", f"{sample}:chain", "-i", "cats", env=env).returncode == 0
    assert (tmp_path / "from_env.db").exists()
    assert len(json.loads(lftrace("list", "--json", env=env).stdout)) == 1


PK, SK = "pk-lf-e2e-1234567890", "sk-lf-e2e-secret-0987654321"


def langfuse_env(base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LANGFUSE_PUBLIC_KEY": PK,
        "LANGFUSE_SECRET_KEY": SK,
        "LANGFUSE_BASE_URL": base_url,
        "LANGFUSE_TIMEOUT": "2",
    }


def test_run_prints_the_langfuse_url_and_the_server_got_the_spans():
    from support.otlp_receiver import running_receiver

    chatbot = f"{REPO / 'sample_graphs' / 'chatbot.py'}:graph"
    with running_receiver() as receiver:
        receiver.expect_basic(PK, SK)
        ran = lftrace("run", chatbot, "-i", "hi", env=langfuse_env(receiver.url))
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.strip().splitlines()
        trace_id = lines[-2].split()[-1]
        assert lines[-2] == f"Trace ID: {trace_id}"
        assert lines[-1] == f"{receiver.url}/project/{receiver.project_id}/traces/{trace_id}"
        assert set(receiver.trace_ids()) == {trace_id} and len(receiver.spans()) >= 2  # delivered before exit
        as_json = lftrace("run", chatbot, "-i", "hi", "--json", env=langfuse_env(receiver.url))
        data = json.loads(as_json.stdout)  # stdout is only the JSON; the URL goes to stderr
        assert as_json.stderr.strip() == f"{receiver.url}/project/{receiver.project_id}/traces/{data['id']}"
    assert SK not in ran.stdout + ran.stderr + as_json.stderr


def test_backend_down_queues_the_trace_exit_0_then_push_delivers_it():
    from support.otlp_receiver import closed_port, running_receiver

    port = closed_port()
    env = langfuse_env(f"http://127.0.0.1:{port}")
    ran = lftrace("run", f"{REPO / 'sample_graphs' / 'chatbot.py'}:graph", "-i", "hi", env=env)
    assert ran.returncode == 0, ran.stderr  # the run itself succeeded; export is retried later
    trace_id = ran.stdout.strip().splitlines()[-2].split()[-1]
    queued = ran.stdout.strip().splitlines()[-1]
    assert queued.startswith(f"queued: 1 trace pending for langfuse:http://127.0.0.1:{port} (cannot connect")
    assert queued.endswith("run `lftrace push` to retry")
    status = lftrace("status", env=env)
    assert status.returncode == 0 and "delivered 0, pending 1, failed 0" in status.stdout
    with running_receiver(port) as receiver:  # the same address comes back up
        receiver.expect_basic(PK, SK)
        pushed = lftrace("push", env=env)
        assert pushed.returncode == 0, pushed.stderr
        assert "delivered 1, pending 0, failed 0" in pushed.stdout
        assert set(receiver.trace_ids()) == {trace_id}
    assert "delivered 1, pending 0, failed 0" in lftrace("status", env=env).stdout


def test_closed_pipe_is_quiet():
    """`lftrace run --help | head -60`: the reader goes away mid-output; no 'unexpected BrokenPipeError'."""
    for _ in range(3):
        proc = subprocess.run(
            f"'{LFTRACE}' run --help | head -60", shell=True, capture_output=True, text=True, timeout=60
        )
        assert "Usage" in proc.stdout
        assert "BrokenPipe" not in proc.stderr and "error" not in proc.stderr
