"""Export benchmark: lftrace's outbox delivery vs the official langfuse SDK, to a local OTLP sink.

    .venv/bin/python bench/export.py [--quick]

1. Throughput: spans/s exported from the store (encode + gzip + POST) vs the official SDK building and
   flushing the same spans (``start_observation`` ... ``end()`` then ``flush()``) to the same sink.
2. Flush latency (``Deliverer.deliver``) for 1, 100 and 10,000 pending traces.
3. Export off the user's path: per-run latency of a LangGraph agent (fake model) with export off, and with
   export on to a sink that takes 50 ms per request; plus the final flush.

The sink is a real HTTP server on 127.0.0.1 that reads the body and answers 200 (no decoding, so both
sides pay the same server cost). Numbers are medians on a shared 2-core machine: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT)]

PK, SK = "pk-lf-bench-0000000000", "sk-lf-bench-0000000000"


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no Nagle/delayed-ACK stall

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.requests += 1
                sink.bytes += len(body)
                if delay:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fill_store(path: Path, n: int, destination: str):
    from lftrace.store import TraceStore
    from support.traces import sample_trace

    store = TraceStore(path)
    base = time.time_ns()
    traces = [sample_trace(start=base + i * 1000) for i in range(n)]
    for i in range(0, n, 500):
        store.write_traces(traces[i : i + 500], destinations=[destination])
    return store, traces


def lftrace_export(n_traces: int, sink: Sink) -> tuple[float, int]:
    """Seconds to deliver n traces from the store; spans sent."""
    from lftrace.config import Settings
    from lftrace.delivery import Deliverer, destinations_for

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store=Path(tmp) / "t.db", public_key=PK, secret_key=SK, base_url=sink.url, timeout=60)
        (dest,) = destinations_for(settings)
        store, traces = fill_store(settings.store, n_traces, dest.name)
        deliverer = Deliverer(store, [dest], settings)
        started = time.perf_counter()
        report = deliverer.deliver(time.monotonic() + 120)
        elapsed = time.perf_counter() - started
        deliverer.stop()
        store.close()
        assert report.delivered == n_traces, report
        return elapsed, sum(len(t.observations) for t in traces)


def sdk_export(n_traces: int, sink: Sink) -> tuple[float, float]:
    """The official SDK: seconds to create the same spans, and seconds for the final flush."""
    from langfuse import Langfuse

    from support.traces import sample_trace

    client = Langfuse(public_key=PK, secret_key=SK, base_url=sink.url, flush_at=512, flush_interval=5)
    traces = [sample_trace() for _ in range(n_traces)]
    started = time.perf_counter()
    for trace in traces:
        root, gen, tool = trace.observations
        with client.start_as_current_observation(name=root.name, as_type="chain", input=root.input) as span:
            g = client.start_observation(
                name=gen.name,
                as_type="generation",
                model=gen.model,
                model_parameters=gen.model_parameters,
                input=gen.input,
                usage_details=gen.usage_details,
                cost_details=gen.cost_details,
                metadata=gen.metadata,
            )
            g.update(output=gen.output)
            g.end()
            t = client.start_observation(name=tool.name, as_type="tool", input=tool.input)
            t.update(output=tool.output)
            t.end()
            span.update(output=root.output)
    created = time.perf_counter() - started
    started = time.perf_counter()
    client.flush()
    flushed = time.perf_counter() - started
    client.shutdown()
    return created, flushed


def flush_latency(n_traces: int, sink: Sink) -> float:
    elapsed, _ = lftrace_export(n_traces, sink)
    return elapsed


def run_latency(export_on: bool, runs: int) -> tuple[float, float, float]:
    """Median and p95 ms per agent run, and the final flush in ms."""
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    sink = Sink(delay=0.05) if export_on else None
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LFTRACE_STORE"] = str(Path(tmp) / "run.db")
        if sink:
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
        from sample_graphs.agent import graph

        from lftrace import client as client_module
        from lftrace.langchain import CallbackHandler

        client_module.reset_clients()
        client = client_module.get_client()
        question = {"messages": [("user", "What is the weather in Paris, and what is 6 times 7?")]}
        graph.invoke(question, config={"callbacks": [CallbackHandler()]})  # warm up
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            graph.invoke(question, config={"callbacks": [CallbackHandler()]})
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.flush()
        flush_ms = (time.perf_counter() - started) * 1000
        if sink:
            assert client.last_delivery is not None and client.last_delivery.pending == 0, client.last_delivery
        client.shutdown()
        client_module.reset_clients()
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        if sink:
            sink.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], flush_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    sink = Sink()
    try:
        print(f"1. throughput: {n} traces x 3 spans to a local sink")
        lftrace_export(20, sink)  # warm imports and connections
        elapsed, spans = lftrace_export(n, sink)
        print(f"   lftrace outbox delivery : {spans / elapsed:10.0f} spans/s ({elapsed:.2f} s, from the store)")
        created, flushed = sdk_export(n, sink)
        total = created + flushed
        print(
            f"   langfuse SDK            : {3 * n / total:10.0f} spans/s ({created:.2f} s creating spans"
            f" + {flushed:.2f} s flush)"
        )
        print("2. flush latency (Deliverer.deliver, traces pending in the store)")
        for count in (1, 100, 1000 if args.quick else 10_000):
            print(f"   {count:>6} traces: {flush_latency(count, sink) * 1000:9.1f} ms")
    finally:
        sink.close()
    runs = 20 if args.quick else 60
    print(f"3. agent run latency ({runs} runs, fake model), export to a sink answering in 50 ms")
    off = run_latency(False, runs)
    on = run_latency(True, runs)
    print(f"   export off: median {off[0]:.2f} ms, p95 {off[1]:.2f} ms; final flush {off[2]:.1f} ms")
    print(f"   export on : median {on[0]:.2f} ms, p95 {on[1]:.2f} ms; final flush {on[2]:.1f} ms")


if __name__ == "__main__":
    main()
