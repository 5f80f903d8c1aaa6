"""Long agent runs: cost of tracing a LangGraph loop of N steps (not a test).

The graph is ``sample_graphs/long_loop.py``: ``think -> critic -> think ...`` on ``MessagesState`` with the
deterministic fake chat model, so every node's input holds the whole growing conversation. Each case runs in
its own subprocess (clean peak RSS):

* ``plain``      the graph with no callbacks
* ``noop``       a callback handler that does nothing (on_chat_model_start included): LangChain's own cost of
                 dispatching callbacks at all, the floor of any tracer
* ``store``      lftrace, store only (no backend configured)
* ``otlp``       lftrace exporting to a local OTLP receiver on 127.0.0.1 (a 200-OK sink that reads the body),
                 as this machine makes it (its helper process with 2 CPUs or more, else a thread of the program)
* ``otlp-helper`` the same with LFTRACE_EXPORT_PROCESS=true: from the export helper process, which sends the
                 run's parts while it runs (the helper's CPU and peak RSS are printed apart); left out by
                 default where ``otlp`` is that already
* ``langfuse``   the official langfuse CallbackHandler exporting to a local 200-OK server (<= 2,000 steps)

Two more cases take lftrace apart, only when ``--cases`` names them (``bench/cachegrind.py`` takes them too):

* ``store-stripped``  lftrace's handler given ``{}`` for every chain input and output and no messages for a model
                      call: what observations, their metadata, the parts and the writer cost without capturing values
* ``store-unwritten`` lftrace whose writer drops every part of the run as it takes it: the program's side alone

Per case: wall time of run + flush (for ``otlp`` also until every span was delivered), peak RSS of the
process, store size (the store file after the client shut down); for lftrace, the CPU of its writer thread and
the time the program's thread waited for the writer to take a part of the run (its back-pressure). One run of a case varies by up to 1.7x here
(a shared 2-core VM), so every case runs ``--repeat`` times, the rounds interleaved, and the table gives medians
(and the spread); ratios are median against the median of ``plain`` measured in the same rounds. Each run also reports the
CPU of the program's own thread (its callbacks included, lftrace's threads not) and how often the garbage collector ran
(young/middle/old): a handler that keeps more containers alive between collections makes the collector run more
often, and each young collection walks that step's conversation-sized lists. ``--pin`` runs every case on one CPU:
steadier for comparing two versions of the program's side (plain 3,000-step runs spread by 13-27% pinned against
31-40% unpinned here), but lftrace's writer thread and export helper then share that CPU with the program. ``--ctrl-c`` also runs ``lftrace run`` as a subprocess, sends SIGINT mid-run and times the exit.

    .venv/bin/python bench/long_run.py                 # 500 and 1,000 steps, 3 rounds: about a minute and a half
    .venv/bin/python bench/long_run.py --full          # 1,000 / 2,000 / 4,000 / 10,007 steps, the official handler too
    .venv/bin/python bench/long_run.py --sizes 500,1000 --cases plain,store --ctrl-c
    .venv/bin/python bench/long_run.py --inspect       # show/list/stats/diff/export on 5k/10k/20k observations

``--state pydantic`` runs a loop like it with its state written as a pydantic model and no model calls (every
node gets a new state object holding the whole conversation). ``--state notes`` / ``--state draft`` run another loop instead, one whose
state grows as a dict (a note merged into ``Annotated[dict, merge]`` at every step) or as a text (a paragraph
appended to a draft at every step) or as a list inside a state field's dict (``--state scratch``:
``state["scratch"]["history"]``) or two levels down in a list of dicts (``--state team``:
``state["team"]["agents"][0]["notes"]``) or in each of a long list of dicts (``--state tasks``: ten tasks with a log each,
``state["tasks"][i]["log"]``), no model: what lftrace's sharing of growing dicts, texts and nested lists costs
(store, RSS, time); the default is ``messages``.

``--inspect`` (only that, unless ``--cases`` is given too) stores two runs of the loop per size (2,000, 4,000 and
8,000 steps by default: ~5,000, 10,000 and 20,000 observations) and times the commands that read them as
``lftrace`` subprocesses: wall time and peak RSS of each, ratios against ``lftrace list`` on an empty store
measured in the same run. ``show --json`` and ``export`` go to /dev/null: every observation carries its full
input, so their output grows with the square of the steps (13 GB at 8,000 steps).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (500, 1000)
DEFAULT_REPEAT = 3  # one run of a case varies by up to 1.7x on a shared 2-core VM: medians of interleaved rounds
FULL_SIZES = (1000, 2000, 4000, 10007)
CASES = ("plain", "noop", "store", "otlp", "otlp-helper", "langfuse")
# diagnostics, only when named in --cases: lftrace's handler with every input and output replaced by {}, and
# lftrace whose writer drops the parts of the run (see the docstring)
DIAGNOSTIC_CASES = ("store-stripped", "store-unwritten")
OFFICIAL_MAX_STEPS = 2000
# Exporting sends every observation's full input: for an append-only conversation that is the square of the
# run's length in bytes until each value reaches its 1 MB cap. At 10,007 steps the receiver reads ~14 GB (17,000
# requests; ~35 s here, the export helper's ~11 s of CPU beside the run); --otlp-max leaves out bigger sizes.
OTLP_MAX_STEPS = 10_007
PK, SK = "pk-lf-bench-0000000000", "sk-lf-bench-0000000000"


class Sink:
    """A 200-OK HTTP server on 127.0.0.1 that reads every body (OTLP receiver and Langfuse stand-in)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle + the client's delayed ACK held
            # each keep-alive response ~40 ms (a real server sets it; uvicorn does)
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _ok(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_GET = do_PUT = _ok

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------- one case (child)


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


STATES = ("messages", "pydantic", "notes", "draft", "scratch", "team", "tasks")
TASKS = 10  # ``--state tasks``: a plan's tasks, each with its own log (a list of MIN_SHARED items or more)


_GROWS = {
    "notes": "a dict",
    "draft": "a text",
    "scratch": "a list inside a dict",
    "team": "a list inside a list of dicts inside a dict",
    "tasks": "a list inside each dict of a long list of dicts",
}


def merge(left: dict, right: dict) -> dict:
    return {**left, **right}


class Notes(TypedDict):
    """The state of the ``--state notes`` / ``draft`` / ``scratch`` / ``team`` loops (at module level: LangGraph reads its
    annotations)."""

    n: int
    limit: int
    notes: Annotated[dict[str, Any], merge]
    draft: str
    scratch: dict[str, Any]
    team: dict[str, Any]
    tasks: list[dict[str, Any]]


class ModelLoopState(BaseModel):
    """The state of the ``--state pydantic`` loop, as LangGraph's guides write a state schema with pydantic."""

    messages: Annotated[list[AnyMessage], add_messages] = Field(default_factory=list)
    turns: int = 0
    limit: int = 0


def _model_loop() -> tuple[Any, Any, Any]:
    """think -> critic on ``ModelLoopState``, no model: each node gets a new state object holding the whole
    conversation (and returns one message)."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import END, START, StateGraph

    def think(s: ModelLoopState) -> dict[str, Any]:
        return {
            "messages": [AIMessage(f"Thought {s.turns}: step {s.turns // 2} could be tighter.")],
            "turns": s.turns + 1,
        }

    def critic(s: ModelLoopState) -> dict[str, Any]:
        return {"messages": [HumanMessage(f"Critique {s.turns}: tighten step {s.turns // 2} and try again.")]}

    builder = StateGraph(ModelLoopState)
    builder.add_node("think", think)
    builder.add_node("critic", critic)
    builder.add_edge(START, "think")
    builder.add_conditional_edges("think", lambda s: "critic" if s.turns < s.limit else END, ["critic", END])
    builder.add_edge("critic", "think")

    def model_input(steps: int) -> dict[str, Any]:
        return {"messages": [HumanMessage("Plan a three-day trip to Lisbon.")], "limit": steps // 2}

    def model_config(steps: int, callbacks: list[Any] | None = None) -> dict[str, Any]:
        return {"recursion_limit": steps + 10, "callbacks": callbacks or []}

    return builder.compile(), model_input, model_config


def loop_for(state: str) -> tuple[Any, Any, Any]:
    """(compiled graph, input for N steps, config for N steps and callbacks) of the loop whose state grows so."""
    from sample_graphs.long_loop import build_graph, loop_input, run_config

    if state == "messages":
        return build_graph(), loop_input, run_config
    from langgraph.graph import END, START, StateGraph

    if state == "pydantic":
        return _model_loop()

    def step(s: Notes) -> dict[str, Any]:
        n = s["n"] + 1
        if state == "notes":
            return {"n": n, "notes": {f"note-{n}": {"text": f"note {n}: what step {n} found out", "step": n}}}
        if state == "scratch":  # a list that grows one level down, inside a state field's dict
            history = [*s["scratch"].get("history", []), f"step {n}: what step {n} found out"]
            return {"n": n, "scratch": {"history": history, "last": n}}
        if state == "team":  # two levels down, in a list of dicts: state["team"]["agents"][0]["notes"]
            first, *others = s["team"]["agents"]
            notes = [*first["notes"], f"step {n}: what step {n} found out"]
            return {"n": n, "team": {"lead": "a", "agents": [{**first, "notes": notes}, *others]}}
        if state == "tasks":  # a plan's tasks worked round-robin, each with its log: state["tasks"][i]["log"]
            tasks = list(s["tasks"])
            task = tasks[n % TASKS]
            tasks[n % TASKS] = {**task, "log": [*task["log"], f"step {n}: what step {n} found out"]}
            return {"n": n, "tasks": tasks}
        return {"n": n, "draft": s["draft"] + f"Paragraph {n}: what step {n} found out about the plan.\n"}

    builder = StateGraph(Notes)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < s["limit"] else END, ["step", END])

    def state_input(steps: int) -> dict[str, Any]:
        team = {"lead": "a", "agents": [{"name": "a", "notes": []}, {"name": "b", "notes": []}]}
        tasks = [{"id": i, "title": f"task {i}", "log": []} for i in range(TASKS)]
        return {"n": 0, "limit": steps, "notes": {}, "draft": "", "scratch": {}, "team": team, "tasks": tasks}

    def state_config(steps: int, callbacks: list[Any] | None = None) -> dict[str, Any]:
        return {"recursion_limit": 2 * steps + 10, "callbacks": callbacks or []}

    return builder.compile(), state_input, state_config


def run_case(case: str, steps: int, workdir: Path, url: str, state: str = "messages") -> dict[str, Any]:
    """Runs in the child process; returns the figures as a dict (printed as JSON)."""
    store = workdir / "traces.db"
    for name in [n for n in os.environ if n.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_"))]:
        del os.environ[name]
    os.environ["LFTRACE_STORE"] = str(store)
    os.environ["LANGFUSE_TIMEOUT"] = "600"  # flush waits for the whole export: we time it
    if case in ("otlp", "otlp-helper"):
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{url}/v1/traces"
    if case == "otlp-helper":
        os.environ["LFTRACE_EXPORT_PROCESS"] = "true"
    if case == "langfuse":
        os.environ.update(LANGFUSE_BASE_URL=url, LANGFUSE_PUBLIC_KEY=PK, LANGFUSE_SECRET_KEY=SK)

    graph, loop_input, run_config = loop_for(state)
    waited = [0.0]  # seconds the program's thread waited for the writer to take a part (its back-pressure)
    callbacks: list[Any] = []
    flush: Any = lambda: None  # noqa: E731
    shutdown: Any = lambda: None  # noqa: E731
    if case == "noop":  # LangChain's own cost of dispatching every callback to a handler that does nothing
        from langchain_core.callbacks import BaseCallbackHandler

        class Noop(BaseCallbackHandler):
            run_inline = True

            # implemented, as every tracer implements it: without it LangChain falls back to on_llm_start and
            # first renders the whole conversation as text for every model call (get_buffer_string)
            def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
                pass

        callbacks = [Noop()]
    if case in ("store", "otlp", "otlp-helper", *DIAGNOSTIC_CASES):
        import lftrace
        from lftrace.langchain import CallbackHandler

        client = lftrace.get_client()
        callbacks = [_stripped_handler() if case == "store-stripped" else CallbackHandler()]
        flush, shutdown = client.flush, client.shutdown
        if case == "store-unwritten":
            _drop_parts(client._writer)
        _time_part_waits(client._writer, waited)
    elif case == "langfuse":
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler as OfficialHandler

        official = Langfuse()
        callbacks = [OfficialHandler()]
        flush, shutdown = official.flush, official.shutdown
    # warm-up: imports, lazy caches, the store file and its schema
    graph.invoke(loop_input(4), run_config(4, callbacks))
    flush()
    before = _store_bytes(store)

    waited[0] = 0.0
    writer_cpu = _writer_cpu()
    collections = [0, 0, 0]  # the garbage collector's runs by generation (young, middle, old) during the run

    def count_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    gc.callbacks.append(count_collections)
    start, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    graph.invoke(loop_input(steps), run_config(steps, callbacks))
    ran = time.perf_counter()
    own = time.thread_time() - own  # the program's thread alone (its callbacks included)
    gc.callbacks.remove(count_collections)
    flush()
    flushed = time.perf_counter()
    cpu = time.process_time() - cpu  # every thread of the process: the user's and lftrace's
    writer_end = _writer_cpu()
    shutdown()  # the export helper (otlp) exits and is reaped here: its CPU and peak RSS are the children's
    helper = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = {
        "run": ran - start,
        "total": flushed - start,
        "cpu": cpu,
        "thread_cpu": own,
        "collections": collections,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "helper_cpu": helper.ru_utime + helper.ru_stime,
        "helper_rss_mb": helper.ru_maxrss / 1024,
        "store_mb": (_store_bytes(store) - before) / 1e6 if case.startswith(("store", "otlp")) else None,
    }
    if case.startswith(("store", "otlp")):
        out["waited"] = waited[0]
        if writer_cpu is not None and writer_end is not None:
            out["writer_cpu"] = writer_end - writer_cpu
    if case.startswith("otlp"):
        report = client.last_delivery
        out["pending"] = report.pending if report is not None else None
    return out


def _stripped_handler() -> Any:
    """lftrace's handler given ``{}`` for every chain input and output and no messages for a model call: its
    per-observation machinery (observations, metadata, parts, the writer) without capturing or converting values."""
    from lftrace.langchain import CallbackHandler

    class Stripped(CallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            super().on_chain_start(serialized, {}, **kwargs)

        def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
            kwargs.pop("inputs", None)
            super().on_chain_end({}, **kwargs)

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            super().on_chat_model_start(serialized, [[]], **kwargs)

    return Stripped()


def _drop_parts(writer: Any) -> None:
    """The writer lets go of every part of a running trace as it takes it (nothing converted or written; the
    trace's last observations are written when it ends): the program's side of lftrace alone."""
    from lftrace.writer import _Fragment

    prepare = writer._prepare_item

    def dropping(item: Any, prepared: list[Any]) -> None:
        if not isinstance(item, _Fragment):
            prepare(item, prepared)

    writer._prepare_item = dropping


def _time_part_waits(writer: Any, waited: list[float]) -> None:
    """Add the time the program's thread spends handing parts of the run to lftrace's writer to ``waited[0]``:
    the writer's back-pressure (``MAX_QUEUED_PARTS``), where the program waits for parts still being written."""
    submit = writer.submit_fragment

    def timed(trace: Any) -> None:
        began = time.perf_counter()
        try:
            submit(trace)
        finally:
            waited[0] += time.perf_counter() - began

    writer.submit_fragment = timed


def _writer_cpu() -> float | None:
    """CPU seconds lftrace's writer thread has used (Linux /proc, in clock ticks: +-10 ms); None without one."""
    thread = next((t for t in threading.enumerate() if t.name == "lftrace-writer"), None)
    try:
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_store(steps: int, workdir: Path) -> dict[str, Any]:
    """Runs in the child process: two runs of the loop into ``workdir/traces.db`` (``diff`` needs two)."""
    store = workdir / "traces.db"
    for name in [n for n in os.environ if n.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_"))]:
        del os.environ[name]
    os.environ["LFTRACE_STORE"] = str(store)

    from sample_graphs.long_loop import build_graph, loop_input, run_config

    import lftrace
    from lftrace.langchain import CallbackHandler

    graph = build_graph()
    start = time.perf_counter()
    for _ in range(2):
        graph.invoke(loop_input(steps), run_config(steps, [CallbackHandler()]))
    client = lftrace.get_client()
    client.flush()
    client.shutdown()
    return {"build_s": time.perf_counter() - start, "store_mb": _store_bytes(store) / 1e6}


# ---------------------------------------------------------------------------------------------- the driver


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["LFTRACE_SAMPLE_MODEL"] = "fake"
    return env


def measure(
    case: str, steps: int, sink: Sink, timeout: float, state: str = "messages", pin: bool = False
) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix="lftrace-long-") as tmp:
        before = (sink.requests, sink.bytes)
        cmd = [sys.executable, __file__, "--child", case, "--steps", str(steps), "--workdir", tmp, "--url", sink.url]
        cmd += ["--state", state] + (["--pin"] if pin else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  {case} {steps}: timed out after {timeout:.0f} s", flush=True)
            return None
        if proc.returncode != 0:
            print(f"  {case} {steps}: failed ({proc.returncode}): {proc.stderr.strip()[-800:]}", flush=True)
            return None
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["sent_mb"] = (sink.bytes - before[1]) / 1e6
        result["requests"] = sink.requests - before[0]
        return result


def ctrl_c(steps: int, after: float) -> dict[str, Any]:
    """``lftrace run`` on the loop; SIGINT ``after`` seconds into the run; time to exit, exit code, what was kept."""
    with tempfile.TemporaryDirectory(prefix="lftrace-ctrlc-") as tmp:
        env = child_env()
        for name in [n for n in env if n.startswith(("LANGFUSE_", "OTEL_"))]:
            del env[name]
        env["LFTRACE_STORE"] = str(Path(tmp) / "traces.db")
        lftrace = str(Path(sys.executable).with_name("lftrace"))
        payload = json.dumps({"messages": [{"role": "user", "content": "Plan a trip"}], "max_steps": steps})
        cmd = [lftrace, "run", str(ROOT / "sample_graphs" / "long_loop.py") + ":graph", "--input", payload]
        cmd += ["--config", json.dumps({"recursion_limit": steps + 10})]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp)
        time.sleep(after)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        exit_s = time.perf_counter() - sent
        listing = subprocess.run(
            [lftrace, "list", "--json"], capture_output=True, text=True, env=env, cwd=tmp, timeout=60
        ).stdout
        try:
            rows = json.loads(listing)
        except json.JSONDecodeError:
            rows = []
        row = rows[0] if rows else {}
        return {
            "exit_s": exit_s,
            "code": proc.returncode,
            "status": row.get("status"),
            "observations": row.get("observationCount"),
            "store_mb": _store_bytes(Path(tmp) / "traces.db") / 1e6,
            "output_lines": len(out.decode(errors="replace").splitlines()),
            "stderr": err.decode(errors="replace").strip().splitlines()[-1:] if err else [],
        }


INSPECT_SIZES = (2000, 4000, 8000)  # steps: ~5,000, 10,000 and 20,000 observations per trace
INSPECT_COMMANDS = (
    ("list", ["list"]),
    ("list --json", ["list", "--json"]),
    ("stats", ["stats"]),
    ("show", ["show", "last"]),
    ("show --expand", ["show", "last", "--expand"]),
    ("diff", ["diff", "last~1", "last"]),
    ("show --json", ["show", "last", "--json"]),
    ("export", ["export", "last"]),
)


def time_command(args: list[str], store: Path, timeout: float) -> dict[str, Any]:
    """One ``lftrace`` subprocess, output to /dev/null: wall seconds, its own peak RSS (wait4), exit code."""
    env = child_env()
    for name in [n for n in env if n.startswith(("LANGFUSE_", "OTEL_"))]:
        del env[name]
    env["LFTRACE_STORE"] = str(store)
    lftrace = str(Path(sys.executable).with_name("lftrace"))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([lftrace, *args], stdout=subprocess.DEVNULL, stderr=errors, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        error = errors.read().decode(errors="replace").strip()
    return {"s": wall, "rss_mb": usage.ru_maxrss / 1024, "code": proc.returncode, "error": error[-300:]}


def inspect(sizes: list[int], timeout: float) -> None:
    """Time the reading commands on stores of two long traces; ratios against `list` on an empty store."""
    print("\nReading long traces: two runs of the loop per store; each command an `lftrace` subprocess")
    with tempfile.TemporaryDirectory(prefix="lftrace-inspect-") as tmp:
        base_runs = [time_command(["list"], Path(tmp) / "empty.db", timeout) for _ in range(3)]
        base = min(r["s"] for r in base_runs)
        print(f"  baseline: `lftrace list` on an empty store {base:.3f} s, peak RSS {base_runs[0]['rss_mb']:.0f} MB")
    table: list[tuple[int, str, dict[str, Any]]] = []
    for steps in sizes:
        with tempfile.TemporaryDirectory(prefix="lftrace-inspect-") as tmp:
            cmd = [sys.executable, __file__, "--child", "build", "--steps", str(steps), "--workdir", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=timeout * 4)
            if proc.returncode != 0:
                print(f"  {steps} steps: building the store failed: {proc.stderr.strip()[-800:]}", flush=True)
                continue
            built = json.loads(proc.stdout.strip().splitlines()[-1])
            store = Path(tmp) / "traces.db"
            listing = subprocess.run(
                [str(Path(sys.executable).with_name("lftrace")), "list", "--json", "-n", "1"],
                capture_output=True,
                text=True,
                env=dict(child_env(), LFTRACE_STORE=str(store)),
                timeout=timeout,
            )
            count = json.loads(listing.stdout)[0]["observationCount"]
            print(
                f"  {steps:,} steps: {count:,} observations per trace, 2 traces, store {built['store_mb']:.1f} MB "
                f"(built in {built['build_s']:.1f} s)",
                flush=True,
            )
            for label, args in INSPECT_COMMANDS:
                result = time_command(args, store, timeout)
                result["observations"] = count
                table.append((steps, label, result))
                failed = f"  exit {result['code']}: {result['error']}" if result["code"] else ""
                print(
                    f"    {label:<14} {result['s']:7.2f} s ({result['s'] / base:6.1f}x empty list)  "
                    f"peak RSS {result['rss_mb']:6.0f} MB{failed}",
                    flush=True,
                )
    print("\n| observations | command | wall s | x empty `list` | peak RSS MB |")
    print("|---|---|---|---|---|")
    for _, label, r in table:
        print(f"| {r['observations']:,} | {label} | {r['s']:.2f} | {r['s'] / base:.1f} | {r['rss_mb']:.0f} |")


def default_cases(official: bool) -> list[str]:
    """Every case; ``otlp-helper`` only where it differs from ``otlp`` (which is the helper with 2 CPUs or more)."""
    sys.path[:0] = [str(ROOT / "src")]
    from lftrace.export_process import MIN_CPUS, usable_cpus

    helper_default = usable_cpus() >= MIN_CPUS
    return [c for c in CASES if (c != "langfuse" or official) and not (c == "otlp-helper" and helper_default)]


def describe(result: dict[str, Any]) -> str:
    """One run's figures, as measured (the ratios come in the summary, from medians)."""
    extra = f", {result['sent_mb']:.1f} MB sent in {result['requests']} requests" if "pending" in result else ""
    if result.get("pending"):
        extra += f", {result['pending']} traces still pending"
    if "waited" in result:  # lftrace's writer thread: its CPU is in the process's; the program's waits for it
        writer = f"writer thread CPU {result['writer_cpu']:.2f} s, " if "writer_cpu" in result else ""
        extra += f"; {writer}waited for the writer {result['waited']:.2f} s"
    if result.get("helper_cpu"):  # the export helper process: not in the CPU and RSS figures before it
        extra += f"; export helper CPU {result['helper_cpu']:.2f} s, peak RSS {result['helper_rss_mb']:.0f} MB"
    young, middle, old = result["collections"]
    return (
        f"run {result['run']:6.2f} s  run+flush {result['total']:6.2f} s  CPU {result['cpu']:6.2f} s "
        f"(program's thread {result['thread_cpu']:6.2f} s)  collections {young}/{middle}/{old}  "
        f"peak RSS {result['rss_mb']:5.0f} MB  store {fmt(result['store_mb'], '.1f')} MB{extra}"
    )


def summarise(runs: dict[tuple[int, str], list[dict[str, Any]]]) -> None:
    """The table of medians: ratios against the plain run of the same size (median against median), and the
    median of each round's ratio against that round's plain run ("paired"): this VM's speed drifts by up to 1.7x
    over minutes, mostly slowly, so a ratio within one round is steadier than one between medians of rounds."""

    def median(rs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    print(
        "\n| steps | case | runs | run+flush s (median, min-max) | x plain | x plain, paired (min-max) | x noop handler "
        "| CPU x plain | program's thread CPU x plain | young collections | peak RSS MB | RSS - plain MB | store MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (steps, case), rs in runs.items():
        base, floor = runs.get((steps, "plain")), runs.get((steps, "noop"))
        total = median(rs, "total")
        spread = f"{min(r['total'] for r in rs):.2f}-{max(r['total'] for r in rs):.2f}"
        ratio = fmt(total / median(base, "total"), ".2f") if base else "-"
        plain_of_round = {r["round"]: r["total"] for r in base or ()}
        paired = [r["total"] / plain_of_round[r["round"]] for r in rs if r["round"] in plain_of_round]
        in_round = f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})" if paired else "-"
        over_noop = fmt(total / median(floor, "total"), ".2f") if floor else "-"
        cpu_ratio = fmt(median(rs, "cpu") / median(base, "cpu"), ".2f") if base else "-"
        own_ratio = fmt(median(rs, "thread_cpu") / median(base, "thread_cpu"), ".2f") if base else "-"
        young = statistics.median(r["collections"][0] for r in rs)
        rss = median(rs, "rss_mb")
        delta = fmt(rss - median(base, "rss_mb"), ".0f") if base else "-"
        store = fmt(statistics.median(r["store_mb"] for r in rs) if rs[0]["store_mb"] is not None else None, ".1f")
        print(
            f"| {steps:,} | {case} | {len(rs)} | {total:.2f} ({spread}) | {ratio} | {in_round} | {over_noop} | {cpu_ratio} "
            f"| {own_ratio} | {young:.0f} | {rss:.0f} | {delta} | {store} |"
        )
    for (steps, case), rs in runs.items():
        if all("writer_cpu" in r for r in rs):  # what the process's CPU holds of lftrace's own thread
            print(
                f"{steps:,} steps {case}: writer thread CPU {median(rs, 'writer_cpu'):.2f} s (median), the program "
                f"waited {median(rs, 'waited'):.2f} s for it to take parts"
            )
    stores = sorted((steps, median(rs, "store_mb")) for (steps, case), rs in runs.items() if case == "store")
    for (n1, s1), (n2, s2) in itertools.pairwise(stores):
        print(f"store growth {n1:,} -> {n2:,} steps ({n2 / n1:.2f}x steps): {s2 / s1:.2f}x size")


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="comma-separated step counts (default 500,1000; --full: 1000,2000,4000,10007)")
    parser.add_argument("--full", action="store_true", help="every size, and the official handler up to 2,000 steps")
    parser.add_argument(
        "--cases", default=None, help=f"comma-separated subset of {','.join((*CASES, *DIAGNOSTIC_CASES))}"
    )
    parser.add_argument("--official", action="store_true", help="include the official handler (slow: ~30 s at 1,000)")
    parser.add_argument("--ctrl-c", action="store_true", help="also time Ctrl-C of `lftrace run` mid-run")
    parser.add_argument(
        "--repeat", type=int, help=f"rounds of every case, medians reported (default {DEFAULT_REPEAT}; --full: 1)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case before giving up")
    parser.add_argument("--otlp-max", type=int, default=OTLP_MAX_STEPS, help="largest size for the OTLP case")
    parser.add_argument(
        "--inspect", action="store_true", help="time show/list/stats/diff/show --json/export on long stored traces"
    )
    parser.add_argument(
        "--state", choices=STATES, default="messages", help="what grows at every step (default: the conversation)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run every case on one CPU (A/B of the program's own cost: steadier, but lftrace's threads and the "
        "export helper share that CPU with the program)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "build":
        sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
        print(json.dumps(build_store(args.steps, Path(args.workdir))))
        return
    if args.child:
        if args.pin:  # the first CPU this process may use; its threads and children (the export helper) inherit it
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
        print(json.dumps(run_case(args.child, args.steps, Path(args.workdir), args.url, args.state)))
        return

    if args.inspect and not args.cases:
        inspect([int(s) for s in args.sizes.split(",")] if args.sizes else list(INSPECT_SIZES), args.timeout)
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(FULL_SIZES if args.full else DEFAULT_SIZES)
    cases = args.cases.split(",") if args.cases else default_cases(args.full or args.official)
    if unknown := [c for c in cases if c not in (*CASES, *DIAGNOSTIC_CASES)]:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join((*CASES, *DIAGNOSTIC_CASES))}")
    if "plain" not in cases:
        cases.insert(0, "plain")
    repeat = args.repeat if args.repeat is not None else (1 if args.full else DEFAULT_REPEAT)
    sink = Sink()
    print(
        (
            "LangGraph loop think -> critic (sample_graphs/long_loop.py), fake model"
            if args.state == "messages"
            else "LangGraph loop think -> critic on a pydantic state, no model (--state pydantic)"
            if args.state == "pydantic"
            else f"LangGraph loop whose state grows as {_GROWS[args.state]} (--state {args.state})"
        )
        + f"; cases: {', '.join(cases)}; "
        f"{repeat} round(s), each case once per round, medians below"
        + ("; every case pinned to one CPU (--pin)" if args.pin else "")
    )
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for round_no in range(1, repeat + 1):
        for steps in sizes:
            for case in cases:
                if (case == "langfuse" and steps > OFFICIAL_MAX_STEPS) or (
                    case.startswith("otlp") and steps > args.otlp_max
                ):
                    continue
                result = measure(case, steps, sink, args.timeout, args.state, args.pin)
                if result is None:
                    continue
                result["round"] = round_no
                runs.setdefault((steps, case), []).append(result)
                print(f"  round {round_no}  {steps:>6} steps  {case:<11} {describe(result)}", flush=True)
    summarise(runs)

    if args.ctrl_c:
        steps = max(FULL_SIZES)  # long enough to be still running when SIGINT comes
        after = 3.0
        result = ctrl_c(steps, after)
        print(
            f"\nCtrl-C of `lftrace run` ({steps:,} steps) after {after:.0f} s: exited in {result['exit_s']:.2f} s "
            f"with {result['code']}, trace {result['status']} with {result['observations']} observations, "
            f"store {result['store_mb']:.1f} MB, {result['output_lines']} lines printed {result['stderr']}"
        )
    sink.close()
    if args.inspect:
        inspect(sizes, args.timeout)


if __name__ == "__main__":
    main()
