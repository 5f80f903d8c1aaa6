"""CPU the local store spends writing each observation (not a test).

The traces are the real ones of bench/overhead.py's agent (agent -> tools -> agent, ~11 observations per invoke):
the agent runs with lftrace's CallbackHandler (store only) and the traces the writer hands to
``TraceStore.write_traces`` are kept as it prepared them. Then the same prepared traces are written again and again
under new trace ids, as the writer does (``merge=True``, one transaction per batch), and the process CPU of
``write_traces`` is divided by the observations written. Each round writes into a fresh copy of one store prefilled
with ``--prefill`` traces: the cost of index upkeep grows with the store, so every round sees the same size.

    .venv/bin/python bench/store_write.py                 # ~20 s
    .venv/bin/python bench/store_write.py --batch 1 --rounds 9
    .venv/bin/python bench/store_write.py --profile        # cProfile of the writes, top 30 by own time
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def capture_traces(invokes: int, workdir: Path) -> list[Any]:
    """The prepared traces of ``invokes`` runs of the agent, as the writer passes them to the store."""
    from langchain_core.messages import HumanMessage

    import lftrace
    from lftrace.langchain import CallbackHandler
    from lftrace.store import TraceStore
    from support.fake_models import ToolCallingFakeModel, build_agent

    class Model(ToolCallingFakeModel):
        """Token counts that change from call to call, as bench/overhead.py's model."""

        calls: int = 0

        def _respond(self, messages: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.usage = {"input_tokens": 400 + self.calls % 997, "output_tokens": 20 + self.calls % 89}
            self.usage["total_tokens"] = self.usage["input_tokens"] + self.usage["output_tokens"]
            return super()._respond(messages, **kwargs)

    captured: list[Any] = []
    original = TraceStore.write_traces

    def recording(self: TraceStore, traces: Any, destinations: Any = (), merge: bool = False) -> set[str]:
        captured.extend(traces)
        return original(self, traces, destinations, merge)

    TraceStore.write_traces = recording  # type: ignore[method-assign]
    try:
        client = lftrace.Langfuse(public_key="", store=workdir / "capture.db")
        graph = build_agent(Model())
        payload = {"messages": [HumanMessage("Paris")]}
        for _ in range(invokes):
            graph.invoke(payload, config={"callbacks": [CallbackHandler(public_key="")]})
        client.flush()
        client.shutdown()
    finally:
        TraceStore.write_traces = original  # type: ignore[method-assign]
    return captured


def write_all(store: Any, traces: list[Any], batch: int, tag: str, destinations: tuple[str, ...]) -> float:
    """CPU seconds to write every trace under a new id (``tag`` appended), ``batch`` traces per transaction."""
    originals = [t.id for t in traces]
    for trace in traces:
        trace.id = f"{trace.id[:24]}{tag}"
    try:
        gc.collect()
        start = time.process_time()
        for i in range(0, len(traces), batch):
            store.write_traces(traces[i : i + batch], destinations=destinations, merge=True)
        return time.process_time() - start
    finally:
        for trace, tid in zip(traces, originals, strict=True):
            trace.id = tid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invokes", type=int, default=200, help="agent runs captured (default 200)")
    parser.add_argument("--batch", type=int, default=32, help="traces per write_traces call (default 32)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, each all traces once (default 7)")
    parser.add_argument("--prefill", type=int, default=3000, help="traces in the store before a round (default 3000)")
    parser.add_argument("--export", action="store_true", help="with one delivery destination (exporting mode)")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed rounds instead of timing them")
    args = parser.parse_args()

    from lftrace.store import TraceStore

    workdir = Path(tempfile.mkdtemp(prefix="lftrace-store-bench-"))
    traces = capture_traces(args.invokes, workdir)
    observations = sum(len(t.observations) for t in traces)
    destinations = ("langfuse",) if args.export else ()
    print(
        f"{len(traces)} prepared traces, {observations} observations ({observations / len(traces):.1f} per trace); "
        f"batches of {args.batch}; destinations {list(destinations)}"
    )
    template = workdir / "template.db"
    with TraceStore(template) as store:
        for n in range(-(-args.prefill // len(traces))):
            write_all(store, traces[: args.prefill - n * len(traces)], 64, f"f{n:07d}", destinations)

    def fresh_store(round_no: int) -> Any:
        path = workdir / f"round{round_no}.db"
        shutil.copyfile(template, path)
        return TraceStore(path)

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        for round_no in range(args.rounds):
            store = fresh_store(round_no)
            profiler.enable()
            write_all(store, traces, args.batch, f"p{round_no:07d}", destinations)
            profiler.disable()
            store.close()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    per_obs: list[float] = []
    for round_no in range(args.rounds):
        store = fresh_store(round_no)
        cpu = write_all(store, traces, args.batch, f"r{round_no:07d}", destinations)
        store.close()
        os.unlink(workdir / f"round{round_no}.db")
        per_obs.append(cpu / observations * 1e6)
    print(
        f"write_traces(merge=True): median {statistics.median(per_obs):.1f} us CPU per observation "
        f"(min {min(per_obs):.1f}, max {max(per_obs):.1f}; {args.rounds} rounds into a store of {args.prefill} "
        f"traces, {os.path.getsize(template) / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
