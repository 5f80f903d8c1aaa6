"""`lftrace serve` ingestion benchmark against Arize Phoenix on the same load and machine.

    .venv/bin/python bench/serve.py [--spans 60000] [--clients 4] [--sdk-spans 3000] [--memory-spans 0]
                                    [--no-phoenix]

1. OTLP load generator: pre-encoded protobuf requests (100 spans each: agent-like traces of a chain, two
   generations with ~1 KB of messages and usage, and a tool), sent by ``--clients`` concurrent keep-alive
   connections; every request gets fresh trace ids (a 12-byte marker in the ids is swapped per send, the body
   stays valid protobuf). Figures: spans/s until the server has *stored* every span (both servers are polled;
   Phoenix ingests asynchronously), request latency p50/p99, server RSS.
2. The official Python SDK (``langfuse``) creating ``--sdk-spans`` spans (a root span with three
   generations), flushed, until all are stored. The SDK itself is the bottleneck here (~0.5 ms per span).
3. ``--memory-spans N`` (e.g. 1000000): lftrace only, RSS at ten checkpoints while N spans stream in.

Phoenix runs from .venv-phoenix (``make install-phoenix``) with a file-backed SQLite database, like our store.
The machine is shared and has 2 cores: compare the ratio measured in one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from lftrace.exporters.encode import encode_traces  # noqa: E402
from lftrace.model import Observation, Trace  # noqa: E402

PHOENIX = ROOT / ".venv-phoenix" / "bin" / "phoenix"
if not PHOENIX.exists():
    PHOENIX = Path("/work/main/.venv-phoenix/bin/phoenix")
MARKER = b"\xa5LFTRACEBENC"  # 12 bytes of every trace id, swapped per request
SPAN_MARKER = b"\xb7\xc3\xd9\xe1"  # 4 bytes of every span id (Phoenix keeps span ids unique across traces)
SPANS_PER_TRACE = 4
TRACES_PER_REQUEST = 25
MESSAGE = "You are a helpful assistant. " * 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and its children (Phoenix may fork)."""
    total = rss_kb(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(tree_rss_kb(int(c)) for c in children)


# ---------------------------------------------------------------- load


def _trace(n: int, template: int) -> Trace:
    trace_id = (MARKER + (template * 1000 + n).to_bytes(4, "big")).hex()
    start = time.time_ns()
    span_prefix = SPAN_MARKER.hex()
    root = Observation(
        f"{span_prefix}{template:02x}{n:04x}00", trace_id, None, "CHAIN", "agent", start, start + 9_000_000
    )
    root.input = {"messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    root.output = {"answer": "Sunny, 21 C."}
    observations = [root]
    for i, (kind, name) in enumerate(
        (("GENERATION", "ChatOpenAI"), ("TOOL", "get_weather"), ("GENERATION", "ChatOpenAI"))
    ):
        obs = Observation(
            f"{span_prefix}{template:02x}{n:04x}{i + 1:02x}", trace_id, root.id, kind, name, start + (i + 1) * 2_000_000
        )
        obs.end_time = obs.start_time + 1_500_000
        if kind == "GENERATION":
            obs.model = "gpt-4o-mini-2024-07-18"
            obs.model_parameters = {"temperature": 0.2}
            obs.input = [{"role": "system", "content": MESSAGE}, {"role": "user", "content": "Weather in Paris?"}]
            obs.output = {"role": "assistant", "content": "It is sunny in Paris, 21 C."}
            obs.usage_details = {"input": 140, "output": 12, "total": 152}
            obs.metadata = {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini"}
        else:
            obs.input = {"city": "Paris"}
            obs.output = "sunny, 21 C"
        observations.append(obs)
    return Trace(
        trace_id, "agent", start, root.input, root.output, observations=observations, end_time=start + 9_000_000
    )


def templates(count: int = 8) -> list[bytes]:
    return [encode_traces([_trace(n, t) for n in range(TRACES_PER_REQUEST)]).SerializeToString() for t in range(count)]


class Load:
    """``clients`` keep-alive connections POSTing fresh copies of the templates until ``requests`` are sent."""

    def __init__(self, host: str, port: int, path: str, bodies: list[bytes], requests: int, clients: int) -> None:
        self.host, self.port, self.path = host, port, path
        self.bodies, self.requests, self.clients = bodies, requests, clients
        self.latencies: list[float] = []
        self.sent = 0
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def _next(self) -> int | None:
        with self._lock:
            if self.sent >= self.requests:
                return None
            self.sent += 1
            return self.sent

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while (i := self._next()) is not None:
            body = self.bodies[i % len(self.bodies)].replace(MARKER, os.urandom(12)).replace(SPAN_MARKER, os.urandom(4))
            started = time.perf_counter()
            conn.request("POST", self.path, body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            self.latencies.append(time.perf_counter() - started)
            if response.status != 200:
                self.errors.append(f"HTTP {response.status}: {response.read()[:200]!r}")
                return
        conn.close()

    def run(self) -> float:
        started = time.perf_counter()
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else float("nan")


# ---------------------------------------------------------------- servers


class Server:
    name = ""
    otlp_path = "/v1/traces"
    proc: subprocess.Popen[bytes]
    port: int

    def stored_spans(self) -> int:
        raise NotImplementedError

    def wait_for(self, spans: int, timeout: float = 600.0) -> float:
        """Seconds until at least ``spans`` are stored (polled every 0.2 s)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.stored_spans() >= spans:
                return time.perf_counter()
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: only {self.stored_spans()} of {spans} spans stored after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Lftrace(Server):
    name = "lftrace serve"
    otlp_path = "/api/public/otel/v1/traces"

    def __init__(self, work: Path) -> None:
        self.store = work / "traces.db"
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        env = {k: v for k, v in env.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lftrace", "serve", "--port", "0", "--store", str(self.store)],
            env=env,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode()
            match = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
            if line.startswith("Press Ctrl-C"):
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        import sqlite3

        self._db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, check_same_thread=False)

    def stored_spans(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM observations").fetchone()[0])


class Phoenix(Server):
    name = "Arize Phoenix"

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))},
            "PHOENIX_WORKING_DIR": str(work),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
            "PHOENIX_ENABLE_MCP_SERVER": "false",
            "PHOENIX_LOG_MIGRATIONS": "false",
            "PHOENIX_LOGGING_LEVEL": "warning",
            "TMPDIR": str(work),
        }
        self.log = (work / "phoenix.log").open("w")
        self.proc = subprocess.Popen(
            [str(PHOENIX), "serve"], env=env, cwd=work, stdout=self.log, stderr=subprocess.STDOUT
        )
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phoenix exited: {(work / 'phoenix.log').read_text()[-2000:]}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("phoenix not ready after 120 s")

    def stored_spans(self) -> int:
        query = "{ projects { edges { node { name recordCount } } } }"
        data = self.http.post("/graphql", json={"query": query}).json()
        return sum(edge["node"]["recordCount"] for edge in data["data"]["projects"]["edges"])


# ---------------------------------------------------------------- measurements


def otlp_run(server: Server, bodies: list[bytes], spans: int, clients: int, checkpoints: int = 0) -> dict[str, Any]:
    per_request = TRACES_PER_REQUEST * SPANS_PER_TRACE
    requests = max(spans // per_request, 1)
    before = server.stored_spans()
    load = Load("127.0.0.1", server.port, server.otlp_path, bodies, requests, clients)
    memory: list[int] = []
    done = threading.Event()

    def sample() -> None:
        step = max(requests // max(checkpoints, 1), 1)
        next_mark = step
        while not done.is_set():
            if checkpoints and load.sent >= next_mark:
                memory.append(tree_rss_kb(server.proc.pid))
                next_mark += step
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    sending = load.run()
    if load.errors:
        done.set()
        raise RuntimeError(f"{server.name}: {load.errors[:3]}")
    stored_at = server.wait_for(before + requests * per_request)
    done.set()
    sampler.join()
    total = stored_at - started
    return {
        "spans": requests * per_request,
        "spans_per_s": requests * per_request / total,
        "accepted_per_s": requests * per_request / sending,
        "p50_ms": percentile(load.latencies, 0.50) * 1000,
        "p99_ms": percentile(load.latencies, 0.99) * 1000,
        "rss_mb": tree_rss_kb(server.proc.pid) / 1024,
        "memory_mb": [round(kb / 1024, 1) for kb in memory],
    }


SDK_SCRIPT = r"""
import sys, time
from langfuse import Langfuse
kind, url, spans = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "lftrace":
    client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=url)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=url,
                      span_exporter=OTLPSpanExporter(endpoint=url + "/v1/traces"))
message = [{"role": "system", "content": "You are a helpful assistant. " * 20}, {"role": "user", "content": "hi"}]
print("START", time.time(), flush=True)  # after the imports: the clock starts with the first span
started = time.perf_counter()
for _ in range(spans // 4):
    with client.start_as_current_observation(name="agent", as_type="span", input={"q": "weather?"}) as root:
        for i in range(3):
            with client.start_as_current_observation(name="ChatOpenAI", as_type="generation", model="gpt-4o-mini",
                                                      input=message) as gen:
                gen.update(output={"role": "assistant", "content": "sunny"},
                           usage_details={"input": 140, "output": 12, "total": 152})
        root.update(output={"a": "sunny"})
client.flush()
print(time.perf_counter() - started)
"""


def sdk_run(server: Server, spans: int, python: str) -> dict[str, Any]:
    before = server.stored_spans()
    kind = "lftrace" if isinstance(server, Lftrace) else "phoenix"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env["LANGFUSE_FLUSH_AT"] = "512"
    proc = subprocess.run(
        [python, "-c", SDK_SCRIPT, kind, f"http://127.0.0.1:{server.port}", str(spans)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    sdk_seconds = float(proc.stdout.strip().splitlines()[-1])
    first_span = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("START")))
    server.wait_for(before + (spans // 4) * 4)
    stored_wall = time.time()
    return {"spans_per_s": (spans // 4) * 4 / (stored_wall - first_span), "sdk_seconds": sdk_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sdk-spans", type=int, default=2_000)
    parser.add_argument("--memory-spans", type=int, default=0)
    parser.add_argument(
        "--phoenix-spans", type=int, default=4_000, help="OTLP spans sent to Phoenix (it ingests ~100x slower)"
    )
    parser.add_argument("--no-phoenix", action="store_true")
    args = parser.parse_args()
    bodies = templates()
    print(
        f"request: {TRACES_PER_REQUEST * SPANS_PER_TRACE} spans, {len(bodies[0]):,} bytes protobuf; {args.clients} clients"
    )
    work = Path(tempfile.mkdtemp(prefix="lftrace-bench-serve-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        servers: list[type[Server]] = [Lftrace] if args.no_phoenix or not PHOENIX.exists() else [Lftrace, Phoenix]
        if not args.no_phoenix and not PHOENIX.exists():
            print(f"Phoenix not installed at {PHOENIX} (make install-phoenix): lftrace only")
        for cls in servers:
            (work / cls.__name__).mkdir()
            server = cls(work / cls.__name__)
            try:
                phoenix = isinstance(server, Phoenix)
                otlp_run(server, bodies, 400 if phoenix else 2_000, args.clients)  # warm up (imports, first pages)
                spans = min(args.spans, args.phoenix_spans) if phoenix else args.spans
                otlp = otlp_run(server, bodies, spans, args.clients, checkpoints=10)
                sdk = sdk_run(
                    server, min(args.sdk_spans, args.phoenix_spans) if phoenix else args.sdk_spans, sys.executable
                )
                results[server.name] = {"otlp": otlp, "sdk": sdk}
                print(
                    f"{server.name:14} OTLP load, {otlp['spans']:,} spans: {otlp['spans_per_s']:8,.0f} spans/s stored "
                    f"({otlp['accepted_per_s']:,.0f}/s accepted), p50 {otlp['p50_ms']:.1f} ms, p99 {otlp['p99_ms']:.1f} ms, "
                    f"RSS {otlp['rss_mb']:.0f} MB {otlp['memory_mb']}"
                )
                print(
                    f"{'':14} official SDK: {sdk['spans_per_s']:8,.0f} spans/s stored "
                    f"(the SDK itself took {sdk['sdk_seconds']:.1f} s to build and flush them)"
                )
                if args.memory_spans and isinstance(server, Lftrace):
                    memory = otlp_run(server, bodies, args.memory_spans, args.clients, checkpoints=10)
                    print(
                        f"{'':14} memory over {memory['spans']:,} spans: RSS MB at ten checkpoints {memory['memory_mb']} "
                        f"({memory['spans_per_s']:,.0f} spans/s, p99 {memory['p99_ms']:.1f} ms)"
                    )
            finally:
                server.stop()
        if len(results) == 2:
            ours, theirs = results["lftrace serve"], results["Arize Phoenix"]
            print(
                f"ratio lftrace/Phoenix: OTLP {ours['otlp']['spans_per_s'] / theirs['otlp']['spans_per_s']:.1f}x spans/s, "
                f"p99 {theirs['otlp']['p99_ms'] / ours['otlp']['p99_ms']:.1f}x lower; "
                f"SDK {ours['sdk']['spans_per_s'] / theirs['sdk']['spans_per_s']:.1f}x"
            )
        print(json.dumps(results, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
