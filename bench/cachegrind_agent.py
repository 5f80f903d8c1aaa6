"""bench/overhead.py's agent counted in instructions, under cachegrind: the same figures on every run (not a test).

``overhead.py``'s wall and CPU ratios move by 0.15-0.27 between runs of the same code on a shared 2-core VM.
Cachegrind (valgrind) counts what the traced program executes instead, to within ~1%: each case runs the agent
(11 spans per invoke, the fake model's token counts changing per call) for 20 warm-up invokes and a flush, then
``--sizes`` invokes and a flush, in a child under cachegrind (all the child's threads counted; the export
helper process and the receiver are not). The table gives the marginal instructions per span between the two
sizes, over no handler, and as a ratio to the official Langfuse handler's.

Cases: ``none``, ``noop`` (a no-op handler: LangChain's dispatch), ``handler`` (lftrace's handler, its traces
dropped instead of written: the user's thread alone), ``store`` (store only), ``helper`` (exporting through the
export helper: the program's share), ``thread`` (exporting from a thread of the program), ``langfuse`` (the
official handler, exporting). Both tracers send to a 200-OK receiver on 127.0.0.1.

    .venv/bin/python bench/cachegrind_agent.py                      # all cases, 5 and 65 invokes: ~5 minutes
    .venv/bin/python bench/cachegrind_agent.py --cases none,store,helper --top 20

Needs valgrind (Debian: ``apt-get install valgrind``); runs two children at a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cachegrind import counts, valgrind  # noqa: E402

CASES = ("none", "noop", "handler", "store", "helper", "thread", "langfuse")
SPANS = 11  # per invoke of the agent (counted from a real trace by overhead.py)
WARM_UP = 20


def child(case: str, invokes: int) -> None:
    """One case: warm-up, flush, then ``invokes`` invokes and a flush (run under cachegrind by ``main``)."""
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import HumanMessage

    import lftrace
    from lftrace.langchain import CallbackHandler
    from support.fake_models import ToolCallingFakeModel, build_agent

    class Model(ToolCallingFakeModel):
        calls: int = 0

        def _respond(self, messages: Any, **kwargs: Any) -> Any:  # token counts that change, as overhead.py's
            self.calls += 1
            self.usage = {"input_tokens": 400 + self.calls % 997, "output_tokens": 20 + self.calls % 89}
            self.usage["total_tokens"] = self.usage["input_tokens"] + self.usage["output_tokens"]
            return super()._respond(messages, **kwargs)

    class NoopHandler(BaseCallbackHandler):
        run_inline = True

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            pass

    graph = build_agent(Model())
    payload = {"messages": [HumanMessage("Paris")]}
    client: Any = lftrace.get_client()
    make: Any = lambda: [CallbackHandler()]  # noqa: E731
    if case == "none":
        make = lambda: []  # noqa: E731
    elif case == "noop":
        make = lambda: [NoopHandler()]  # noqa: E731
    elif case == "handler":
        client._submit = lambda trace: None  # what the handler does on the user's thread, nothing written
    elif case == "langfuse":
        from langfuse import Langfuse as OfficialLangfuse
        from langfuse.langchain import CallbackHandler as OfficialHandler

        client = OfficialLangfuse()
        make = lambda: [OfficialHandler()]  # noqa: E731
    for n in (WARM_UP, invokes):
        for _ in range(n):
            graph.invoke(payload, config={"callbacks": make()})
        client.flush()
    client.shutdown()


def child_env(case: str, url: str, workdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_"))}
    env["LFTRACE_STORE"] = str(Path(workdir) / "traces.db")
    if case in ("helper", "thread", "langfuse"):
        env.update(LANGFUSE_BASE_URL=url, LANGFUSE_PUBLIC_KEY="pk-lf-bench", LANGFUSE_SECRET_KEY="sk-lf-bench")
        env["LANGFUSE_TRACING_ENVIRONMENT"] = "bench"
    if case in ("helper", "thread"):
        env["LFTRACE_EXPORT_PROCESS"] = "true" if case == "helper" else "false"
    return env


def run(case: str, invokes: int, url: str, outdir: Path, timeout: float) -> Path:
    out = outdir / f"{case}-{invokes}.cg"
    with tempfile.TemporaryDirectory(prefix="lftrace-cg-") as workdir:
        script = [str(Path(__file__).resolve()), "--child", case, "--invokes", str(invokes)]
        cmd = valgrind(out, sys.executable, *script, cache_sim=False)
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=child_env(case, url, workdir), cwd=workdir, timeout=timeout
        )
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"{case} with {invokes} invokes failed ({proc.returncode}): {proc.stderr.strip()[-600:]}")
    print(f"  {case:<8} {invokes:>4} invokes done", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5,65", help="two invoke counts after the warm-up: the marginal is between")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--top", type=int, default=0, help="the N functions whose counts grew most, none -> last case")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before giving up")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--invokes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.invokes)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    small, large = (int(s) for s in args.sizes.split(","))
    cases = ["none", *[c for c in args.cases.split(",") if c != "none"]]  # the baseline is always measured
    if unknown := [c for c in cases if c not in CASES]:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    from overhead import start_server

    url = start_server()
    print(f"cachegrind: the agent, {', '.join(cases)}, {small} and {large} invokes (two at a time)", flush=True)
    with tempfile.TemporaryDirectory(prefix="lftrace-cg-out-") as outdir, ThreadPoolExecutor(2) as pool:
        jobs = {(c, n): pool.submit(run, c, n, url, Path(outdir), args.timeout) for c in cases for n in (small, large)}
        read = {key: counts(job.result()) for key, job in jobs.items()}

    spans = (large - small) * SPANS
    per_span = {c: (read[(c, large)][0]["Ir"] - read[(c, small)][0]["Ir"]) / spans for c in cases}
    over = {c: per_span[c] - per_span["none"] for c in cases}
    print(f"\ninstructions per span, marginal between {small} and {large} invokes ({SPANS} spans each)")
    print("| case | per span | over none | x langfuse (over none) |")
    print("|---|---|---|---|")
    for case in cases:
        ratio = f"{over[case] / over['langfuse']:.3f}" if "langfuse" in over and over["langfuse"] > 0 else "-"
        print(f"| {case} | {per_span[case] / 1e3:,.1f}k | {over[case] / 1e3:,.1f}k | {ratio} |")
    if args.top and len(cases) > 1:
        last = cases[-1]
        growth: dict[str, int] = {}
        for case, sign in (("none", -1), (last, 1)):
            lo, hi = read[(case, small)][1], read[(case, large)][1]
            for fn in set(lo) | set(hi):
                ir = hi.get(fn, {}).get("Ir", 0) - lo.get(fn, {}).get("Ir", 0)
                growth[fn] = growth.get(fn, 0) + sign * ir
        print(f"\nfunctions whose instructions per span grew most from none to {last}")
        print("| function | instructions per span |")
        print("|---|---|")
        for fn, ir in sorted(growth.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"| {fn} | {ir / spans:+,.0f} |")


if __name__ == "__main__":
    main()
