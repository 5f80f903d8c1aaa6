"""Long runs counted in instructions and cache misses, under cachegrind: the same figures on every run (not a test).

Wall time on a shared VM moves by up to 1.7x between two runs of the same thing (bench/long_run.py), so a
change worth 5-10% on a long run cannot be seen there without many rounds. Cachegrind (valgrind) runs a
program on a simulated CPU and counts what it executes: instructions (Ir) and misses of the first-level data
cache (D1mr + D1mw, the cost of touching memory that is not at hand). Those counts repeat to within ~1%.

Each case is ``bench/long_run.py``'s child (the loop of ``sample_graphs/long_loop.py``: ``plain``, ``noop``,
``store``) run under cachegrind at two sizes; the table gives the *marginal* cost, the counts of the larger run
minus the smaller one's per step in between: start-up, imports and the warm-up run drop out, what is left is
what the steps cost. ``--top N`` lists the functions (C, in the interpreter and libraries) whose marginal
counts grew most from the first case to the last, ranked by cachegrind's rough cycle estimate (an instruction
1, a first-level miss 10, a last-level miss 100): where the extra cost goes. The last level is the CPU's as
valgrind reads it; on a VM that is a large L3 shared with the neighbours, where a run never misses:
``--ll-kb 2048`` simulates one core's L2 instead, which shows what a run's memory footprint costs.

    .venv/bin/python bench/cachegrind.py                         # noop and store, 200 and 500 steps: ~5 minutes
    .venv/bin/python bench/cachegrind.py --sizes 600,1500 --cases plain,noop,store --top 20

Needs valgrind (Debian: ``apt-get install valgrind``). Runs two cases at a time (one per core); each takes
~60x its native time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from long_run import child_env  # noqa: E402

# in-process cases only (the OTLP export helper is another process), and long_run.py's diagnostics
CASES = ("plain", "noop", "store", "store-stripped", "store-unwritten")
D1_MISSES = ("D1mr", "D1mw")
LL_MISSES = ("DLmr", "DLmw")  # data misses of the last-level cache: the ones that go to memory


def counts(path: Path) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """A cachegrind output file: (totals per event, {function: totals per event})."""
    events: list[str] = []
    per_function: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    totals: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("fn="):
            current = per_function.setdefault(line[3:], dict.fromkeys(events, 0))
        elif line.startswith("summary:"):
            totals = dict(zip(events, map(int, line.split()[1:]), strict=False))
        elif current is not None and line[:1].isdigit():
            for event, value in zip(events, line.split()[1:], strict=False):
                current[event] += int(value)
    return totals, per_function


def valgrind(out: Path, *command: str, cache_sim: bool = True, ll: str | None = None) -> list[str]:
    """The command line running ``command`` under cachegrind, its counts written to ``out`` (``ll``: the last-level
    cache to simulate, ``size,ways,line``)."""
    simulate = [f"--cache-sim={'yes' if cache_sim else 'no'}", *([f"--LL={ll}"] if ll else [])]
    return ["valgrind", "--tool=cachegrind", *simulate, f"--cachegrind-out-file={out}", *command]


def run(case: str, steps: int, outdir: Path, timeout: float, ll: str | None = None) -> Path:
    out = outdir / f"{case}-{steps}.cg"
    with tempfile.TemporaryDirectory(prefix="lftrace-cg-") as tmp:
        child = [str(ROOT / "bench" / "long_run.py"), "--child", case, "--steps", str(steps), "--workdir", tmp]
        cmd = valgrind(out, sys.executable, *child, "--url", "http://127.0.0.1:9", ll=ll)  # url unused: no export
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"{case} at {steps} steps failed ({proc.returncode}): {proc.stderr.strip()[-600:]}")
    print(f"  {case:<6} {steps:>6} steps done", flush=True)
    return out


def misses(values: dict[str, int], events: tuple[str, ...] = D1_MISSES) -> int:
    return sum(values.get(event, 0) for event in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,500", help="two step counts: the marginal is between them")
    parser.add_argument("--cases", default="noop,store", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--top", type=int, default=0, help="list the N functions that grew most (last vs first case)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before giving up")
    parser.add_argument(
        "--ll-kb",
        type=int,
        help="simulate a last-level cache of this many KB (16-way, 64-byte lines) instead of the one valgrind "
        "reads from this CPU: a VM shows a large shared L3 that its neighbours use too, so 2048 (one core's L2) "
        "says more about what goes to memory",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    small, large = (int(s) for s in args.sizes.split(","))
    cases = args.cases.split(",")
    if unknown := [c for c in cases if c not in CASES]:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    print(f"cachegrind: {', '.join(cases)} at {small:,} and {large:,} steps (two at a time)", flush=True)
    with tempfile.TemporaryDirectory(prefix="lftrace-cg-out-") as outdir, ThreadPoolExecutor(2) as pool:
        ll = f"{args.ll_kb * 1024},16,64" if args.ll_kb else None
        jobs = {(c, s): pool.submit(run, c, s, Path(outdir), args.timeout, ll) for c in cases for s in (small, large)}
        read = {key: counts(job.result()) for key, job in jobs.items()}

    steps = large - small
    marginal = {}
    for case in cases:
        (lo, _), (hi, _) = read[(case, small)], read[(case, large)]
        marginal[case] = (hi["Ir"] - lo["Ir"], misses(hi) - misses(lo), misses(hi, LL_MISSES) - misses(lo, LL_MISSES))
    base = "noop" if "noop" in cases else cases[0]
    print(f"\nmarginal cost of the steps from {small:,} to {large:,}, per step")
    print(
        f"| case | instructions | D1 misses | LL misses | x {base} (instructions) | x {base} (D1 misses) "
        f"| x {base} (LL misses) |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        ir, d1, ll_misses = marginal[case]
        print(
            f"| {case} | {ir / steps:,.0f} | {d1 / steps:,.0f} | {ll_misses / steps:,.0f} | "
            f"{ir / marginal[base][0]:.3f} | {d1 / marginal[base][1]:.3f} | {ll_misses / max(marginal[base][2], 1):.3f} |"
        )
    if args.top and len(cases) > 1:
        first, last = cases[0], cases[-1]
        growth: dict[str, tuple[int, int, int]] = {}
        for case, sign in ((first, -1), (last, 1)):
            lo, hi = read[(case, small)][1], read[(case, large)][1]
            for fn in set(lo) | set(hi):
                ir = hi.get(fn, {}).get("Ir", 0) - lo.get(fn, {}).get("Ir", 0)
                d1 = misses(hi.get(fn, {})) - misses(lo.get(fn, {}))
                ll_misses = misses(hi.get(fn, {}), LL_MISSES) - misses(lo.get(fn, {}), LL_MISSES)
                before = growth.get(fn, (0, 0, 0))
                growth[fn] = (before[0] + sign * ir, before[1] + sign * d1, before[2] + sign * ll_misses)
        print(f"\nfunctions whose marginal cost grew most from {first} to {last} (per step)")
        print("| function | instructions | D1 misses | LL misses |")
        print("|---|---|---|---|")
        # cachegrind's rough cycle estimate: an instruction 1, a first-level miss 10, a last-level miss 100
        for fn, (ir, d1, ll_misses) in sorted(
            growth.items(), key=lambda kv: -(kv[1][0] + 10 * kv[1][1] + 100 * kv[1][2])
        )[: args.top]:
            print(f"| {fn} | {ir / steps:+,.0f} | {d1 / steps:+,.0f} | {ll_misses / steps:+,.0f} |")


if __name__ == "__main__":
    main()
