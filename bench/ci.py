"""Throughput of ``lftrace test``: 200 cases of a fake-model agent at concurrency 1 and 8 (not a test).

Two targets, each a real subprocess of ``.venv/bin/lftrace test ... --json`` with its own store:

* ``sample_graphs/agent.py:graph`` with the offline fake model: no waiting at all, so the run is CPU-bound
  and threads share one GIL; this measures lftrace's own cost per case (graph + tracing + store + checks);
* the same kind of agent whose fake model waits ``--model-latency`` seconds per call (like a network round
  trip to a real model): the case CI actually has, where concurrency pays.

Cases per second come from the ``duration`` lftrace reports (the cases' time, without interpreter start and
the target's import); the wall time of the whole process is shown too.

    .venv/bin/python bench/ci.py                    # ~1 minute on 2 cores
    .venv/bin/python bench/ci.py --cases 500 --model-latency 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LFTRACE = ROOT / ".venv" / "bin" / "lftrace"
CITIES = ["Paris", "Tokyo", "Oslo", "Lima", "Cairo", "Sydney", "Quito", "Hanoi", "Dakar", "Reykjavik"]

SLOW_AGENT = '''
import os, time

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

LATENCY = float(os.environ["BENCH_MODEL_LATENCY"])


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class SlowFakeModel(BaseChatModel):
    @property
    def _llm_type(self):
        return "slow-fake"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        time.sleep(LATENCY)  # the network round trip of a real model: releases the GIL
        usage = {"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}
        if isinstance(messages[-1], ToolMessage):
            message = AIMessage(content=f"The weather: {messages[-1].content}", usage_metadata=usage)
        else:
            city = [m for m in messages if isinstance(m, HumanMessage)][-1].content.split()[-1].rstrip("?")
            call = {"name": "get_weather", "args": {"city": city}, "id": "call_1", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call], usage_metadata=usage)
        message.response_metadata = {"model_name": "gpt-4o-mini"}
        return ChatResult(generations=[ChatGeneration(message=message)])


model = SlowFakeModel()


def agent(state: MessagesState):
    return {"messages": [model.invoke(state["messages"])]}


def route(state: MessagesState):
    return "tools" if state["messages"][-1].tool_calls else END


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([get_weather]))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route, ["tools", END])
builder.add_edge("tools", "agent")
graph = builder.compile()
'''


def write_cases(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            city = CITIES[i % len(CITIES)]
            case = {
                "name": f"weather-{i:04d}",
                "input": f"What is the weather in {city}?",
                "expect": {"output": city, "tools": ["get_weather"], "max_llm_calls": 2, "no_errors": True},
            }
            f.write(json.dumps(case) + "\n")


def run(target: str, cases: Path, concurrency: int, workdir: Path, env: dict[str, str]) -> dict[str, float]:
    store = workdir / f"store-{concurrency}-{time.monotonic_ns()}.db"
    started = time.perf_counter()
    proc = subprocess.run(
        [str(LFTRACE), "test", target, str(cases), "--concurrency", str(concurrency), "--json"],
        capture_output=True,
        text=True,
        env={**env, "LFTRACE_STORE": str(store)},
        cwd=ROOT,
        timeout=1800,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"lftrace test failed ({proc.returncode}):\n{proc.stderr[-2000:]}\n{proc.stdout[-2000:]}")
    report = json.loads(proc.stdout)
    assert report["passed"] == len(report["cases"]), "every case should pass"
    return {"duration": report["duration"], "wall": wall, "cases": len(report["cases"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--model-latency", type=float, default=0.05, help="seconds per call of the slow fake model")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_", "LFTRACE_"))}
    env.update({"LFTRACE_SAMPLE_MODEL": "fake", "BENCH_MODEL_LATENCY": str(args.model_latency), "NO_COLOR": "1"})
    with tempfile.TemporaryDirectory(prefix="lftrace-bench-ci-") as tmp:
        workdir = Path(tmp)
        cases = workdir / "cases.jsonl"
        write_cases(cases, args.cases)
        (workdir / "slow_agent.py").write_text(SLOW_AGENT, encoding="utf-8")
        targets = {
            "sample agent, fake model (CPU-bound)": "sample_graphs/agent.py:graph",
            f"agent, model waits {args.model_latency * 1000:.0f} ms/call": str(workdir / "slow_agent.py") + ":graph",
        }
        print(f"lftrace test: {args.cases} cases, 2 LLM calls + 1 tool call each (python {sys.version.split()[0]})")
        for label, target in targets.items():
            print(f"\n{label}")
            print(f"  {'concurrency':>11}  {'cases/s':>8}  {'cases time':>10}  {'wall':>7}  speed-up")
            base: float | None = None
            for concurrency in args.concurrency:
                result = run(target, cases, concurrency, workdir, env)
                rate = result["cases"] / result["duration"]
                base = base or rate
                print(
                    f"  {concurrency:>11}  {rate:>8.1f}  {result['duration']:>9.2f}s  {result['wall']:>6.2f}s"
                    f"  {rate / base:>6.2f}x"
                )


if __name__ == "__main__":
    main()
