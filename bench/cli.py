"""Start-up and rendering speed of the CLI (not a test).

* wall time (median of N runs, real subprocesses) of ``lftrace list`` and ``lftrace show <id>`` on a store with
  some traces, against ``python -c "import typer, rich"`` measured in the same run: target <= 1.5x;
* rendering a 5,000-observation trace to a 100-column console: target < 1 s;
* ``lftrace list --search WORD`` and ``lftrace sessions`` on a store of 100,000 traces (written directly with
  ``TraceStore.write_traces``, each searchable and in one of 20,000 sessions): within the same budget as ``list``.

    .venv/bin/python bench/cli.py            # ~20 s on 2 cores
    .venv/bin/python bench/cli.py --runs 20
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LFTRACE = ROOT / ".venv" / "bin" / "lftrace"
PYTHON = ROOT / ".venv" / "bin" / "python"


def wall(cmd: list[str], env: dict[str, str], runs: int) -> float:
    # one untimed run first: it writes the .pyc files (as an installed package has them) and warms the page cache
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fill_store(env: dict[str, str], traces: int) -> str:
    sample = ROOT / "sample_graphs" / "agent.py"
    last = ""
    for i in range(traces):
        done = subprocess.run(
            [str(LFTRACE), "run", f"{sample}:graph", "--input", f"What is the weather in city {i}?"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        last = done.stdout.strip().splitlines()[-1].split()[-1]
    return last


CITIES = ("paris", "london", "berlin", "tokyo", "oslo", "lima", "cairo", "delhi", "quito", "perth")


def fill_big_store(path: Path, traces: int) -> float:
    """``traces`` traces shaped like the agent sample's (5 observations), written in batches; seconds taken."""
    sys.path.insert(0, str(ROOT / "src"))
    from lftrace.model import Observation, Trace
    from lftrace.store import TraceStore

    t0, ms = 1_764_000_000_000_000_000, 1_000_000
    started = time.perf_counter()
    with TraceStore(path) as store:
        batch: list[Trace] = []
        for i in range(traces):
            tid, start = f"{i:032x}", t0 + i * 1000 * ms
            city = CITIES[i % len(CITIES)] + (str(i) if i % 1000 == 0 else "")  # "paris4000": a rare word
            question = {"messages": [{"role": "user", "content": f"What is the weather in {city}?"}]}
            answer = {"messages": [{"role": "assistant", "content": f"It is sunny in {city}, {i % 30} degrees."}]}
            ids = [f"{i:012x}{k:04x}" for k in range(5)]
            observations = [
                Observation(ids[0], tid, None, "CHAIN", "agent", start, start + 40 * ms, input=question, output=answer),
                Observation(ids[1], tid, ids[0], "CHAIN", "agent", start + ms, start + 20 * ms,
                            metadata={"langgraph_node": "agent", "langgraph_step": 1}),
                Observation(ids[2], tid, ids[1], "GENERATION", "ChatOpenAI", start + 2 * ms, start + 19 * ms,
                            model="gpt-4o-mini", usage_details={"input": 120, "output": 18, "total": 138},
                            cost_details={"total": 0.0000288}),
                Observation(ids[3], tid, ids[0], "TOOL", "get_weather", start + 21 * ms, start + 25 * ms,
                            input={"city": city}, output=f"sunny in {city}"),
                Observation(ids[4], tid, ids[0], "CHAIN", "agent", start + 26 * ms, start + 39 * ms,
                            metadata={"langgraph_node": "agent", "langgraph_step": 3}),
            ]  # fmt: skip
            batch.append(
                Trace(tid, "agent", start, input=question, output=answer, observations=observations,
                      end_time=start + 40 * ms, session_id=f"session-{i % (traces // 5 or 1)}", user_id=f"user-{i % 97}")
            )  # fmt: skip
            if len(batch) == 2000:
                store.write_traces(batch)
                batch = []
        store.write_traces(batch)
    return time.perf_counter() - started


def render_big(observations: int) -> tuple[float, int]:
    sys.path.insert(0, str(ROOT / "src"))
    from rich.console import Console

    from lftrace.model import Observation, Trace
    from lftrace.render import render_trace

    t0, tid, obs = 1_764_000_000_000_000_000, "ab" * 16, []
    parents: list[str | None] = [None]
    for i in range(observations):
        kind = "GENERATION" if i % 3 == 0 else "CHAIN"
        obs.append(
            Observation(
                id=f"{i:016x}", trace_id=tid, parent_id=parents[min(len(parents) - 1, i % 7)], type=kind,
                name=f"node-{i}", start_time=t0 + i * 1000, end_time=t0 + i * 1000 + 900,
                model="gpt-4o-mini" if kind == "GENERATION" else None,
                usage_details={"input": 12, "output": 7, "total": 19} if kind == "GENERATION" else None,
                cost_details={"total": 0.00001} if kind == "GENERATION" else None,
                input={"messages": [{"role": "user", "content": "tell me about tracing " * 8}]},
                output={"role": "assistant", "content": "traces are trees of spans " * 8},
            )
        )  # fmt: skip
        if i % 50 == 0:
            parents.append(f"{i:016x}")
    trace = Trace(id=tid, name="big", timestamp=t0, observations=obs, end_time=t0 + observations * 1000 + 900)
    best, lines = float("inf"), 0
    for _ in range(5):
        buffer = io.StringIO()
        console = Console(width=100, color_system=None, file=buffer)
        started = time.perf_counter()
        console.print(render_trace(trace), crop=False)
        best = min(best, time.perf_counter() - started)
        lines = buffer.getvalue().count("\n")
    return best, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--observations", type=int, default=5000)
    parser.add_argument("--big", type=int, default=100_000, help="traces in the store for search and sessions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LFTRACE_STORE": str(Path(tmp) / "traces.db"), "NO_COLOR": "1"}
        for name in list(env):
            # PYTHONDONTWRITEBYTECODE would make every run recompile our modules (~25 ms): users have .pyc files
            if name.startswith(("LANGFUSE_", "OTEL_")) or name == "PYTHONDONTWRITEBYTECODE":
                del env[name]
        last = fill_store(env, args.traces)
        baseline = wall([str(PYTHON), "-c", "import typer, rich"], env, args.runs)
        # typer >= 0.2x imports pydantic (~115 ms) to coerce any parameter: the floor of any typer command
        minimal = Path(tmp) / "minimal.py"
        minimal.write_text(
            "import typer, rich.console\napp = typer.Typer()\n@app.command()\n"
            "def main(limit: int = 20):\n    rich.console.Console().print(limit)\napp()\n"
        )
        floor = wall([str(PYTHON), str(minimal), "--limit", "3"], env, args.runs)
        listing = wall([str(LFTRACE), "list"], env, args.runs)
        showing = wall([str(LFTRACE), "show", last], env, args.runs)
        helping = wall([str(LFTRACE), "--help"], env, args.runs)
        big = Path(tmp) / "big.db"
        fill_s = fill_big_store(big, args.big)
        big_env = {**env, "LFTRACE_STORE": str(big)}
        big_list = wall([str(LFTRACE), "list"], big_env, args.runs)
        big_search = wall([str(LFTRACE), "list", "--search", "paris4000"], big_env, args.runs)
        big_search_common = wall([str(LFTRACE), "list", "--search", "sunny paris"], big_env, args.runs)
        big_sessions = wall([str(LFTRACE), "sessions"], big_env, args.runs)
        big_mb = big.stat().st_size / 1e6
    render_s, lines = render_big(args.observations)
    print(f"store: {args.traces} traces of sample_graphs/agent.py; median of {args.runs} runs each")
    print(f"python -c 'import typer, rich'   {baseline * 1000:7.0f} ms")
    print(f"minimal typer app, one option    {floor * 1000:7.0f} ms   {floor / baseline:4.2f}x  (typer's own floor)")
    for label, value in (("lftrace list", listing), (f"lftrace show {last[:8]}", showing), ("lftrace --help", helping)):
        ratio = value / baseline
        verdict = "ok" if ratio <= 1.5 else "OVER 1.5x"
        print(f"{label:<32} {value * 1000:7.0f} ms   {ratio:4.2f}x  {verdict}")
    print(f"store of {args.big:,} traces written directly: {fill_s:.1f} s, {big_mb:.0f} MB")
    for label, value in (
        ("lftrace list (100k)", big_list),
        ("lftrace list --search paris4000", big_search),
        ("lftrace list --search 'sunny paris'", big_search_common),
        ("lftrace sessions (20k sessions)", big_sessions),
    ):
        ratio = value / baseline
        verdict = "ok" if ratio <= 1.5 else "OVER 1.5x"
        print(f"{label:<36} {value * 1000:7.0f} ms   {ratio:4.2f}x  {verdict}")
    verdict = "ok" if render_s < 1 else "OVER 1 s"
    print(f"render {args.observations} observations  {render_s * 1000:7.0f} ms   ({lines} lines, best of 5)  {verdict}")


if __name__ == "__main__":
    main()
