"""`lftrace serve`: auth, refused binds, bad requests (nothing half-written), signals, SIGKILL mid-ingestion."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from tests.serve_process import LFTRACE, ServeProcess, basic_auth

from lftrace.exporters.encode import encode_traces
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _traces(prefix: int, count: int, spans: int = 4) -> list[Trace]:
    out = []
    for n in range(count):
        trace_id = f"{prefix:08x}{n:024x}"
        start = 1_700_000_000_000_000_000 + n
        observations = [
            Observation(
                id=f"{prefix:04x}{n:08x}{i:04x}",
                trace_id=trace_id,
                parent_id=None if i == 0 else f"{prefix:04x}{n:08x}{0:04x}",
                type="SPAN" if i else "CHAIN",
                name=f"step-{i}",
                start_time=start + i,
                end_time=start + 100,
                input={"i": i},
            )
            for i in range(spans)
        ]
        out.append(Trace(id=trace_id, name="load", timestamp=start, observations=observations, end_time=start + 100))
    return out


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    store = tmp_path_factory.mktemp("keyed") / "traces.db"
    with ServeProcess(store, "--public-key", "pk-lf-right", "--secret-key", "sk-lf-right") as proc:
        yield proc


def test_keys_are_checked_when_configured(keyed):
    body = encode_traces(_traces(1, 1)).SerializeToString()
    url = keyed.url + "/api/public/otel/v1/traces"
    assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
    wrong = httpx.post(url, content=body, headers={**PROTOBUF, **basic_auth("pk-lf-right", "sk-lf-wrong")})
    assert wrong.status_code == 401 and "invalid public key or secret key" in wrong.json()["message"]
    assert httpx.get(keyed.url + "/api/public/traces", headers=basic_auth("x", "y")).status_code == 401
    right = httpx.post(url, content=body, headers={**PROTOBUF, **basic_auth("pk-lf-right", "sk-lf-right")})
    assert right.status_code == 200
    assert httpx.get(keyed.url + "/api/public/health").status_code == 200  # health needs no auth, as in Langfuse
    page = httpx.get(keyed.url + "/", headers={})
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
    assert "sk-lf-right" not in "\n".join(keyed.banner)  # the secret is never printed


def test_keys_from_environment(tmp_path):
    env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-env", "LANGFUSE_SECRET_KEY": "sk-lf-env"}
    with ServeProcess(tmp_path / "t.db", env=env) as proc:
        assert proc.get("/api/public/projects", headers=basic_auth("pk-lf-env", "sk-lf-env")).status_code == 200
        assert proc.get("/api/public/projects", headers=basic_auth("pk-lf-env", "nope")).status_code == 401


def _serve_fails(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LFTRACE_STORE": str(tmp_path / "t.db"), "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run([*LFTRACE, *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("host", ["0.0.0.0", "app.localhost"])  # a name under localhost: a hosts file may move it
def test_refuses_non_loopback_without_keys(tmp_path, host):
    proc = _serve_fails(tmp_path, "--host", host, "--port", "0")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: refusing to listen on {host} without keys")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_port_in_use_is_a_usage_error(tmp_path, keyed):
    port = keyed.url.rsplit(":", 1)[1]
    proc = _serve_fails(tmp_path, "--port", port)
    assert proc.returncode == 2 and "the port is in use" in proc.stderr


def test_bad_requests_write_nothing(keyed):
    auth = basic_auth("pk-lf-right", "sk-lf-right")
    url = keyed.url + "/api/public/otel/v1/traces"
    cases = [
        (b"\x0a\xff\xff\xff", PROTOBUF, 400, "malformed OTLP protobuf"),
        (b'{"resourceSpans": [', {"Content-Type": "application/json"}, 400, "malformed JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            {"Content-Type": "application/json"},
            400,
            "invalid traceId",
        ),
        (b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "malformed gzip"),
        (b"x", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
    ]
    for body, headers, status, message in cases:
        response = httpx.post(url, content=body, headers={**auth, **headers})
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["message"]
    # one bad span (all-zero span id) rejects the whole request: the good trace beside it is not written
    good, bad = _traces(7, 2)
    bad.observations[1].id = "0" * 16
    response = httpx.post(url, content=encode_traces([good, bad]).SerializeToString(), headers={**auth, **PROTOBUF})
    assert response.status_code == 400 and "invalid span id" in response.json()["message"]
    # too big, and a gzip bomb
    huge = httpx.post(url, content=b"\0" * (33 * 1024 * 1024), headers={**auth, **PROTOBUF})
    assert huge.status_code == 413
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=1)
    inflated = httpx.post(url, content=bomb, headers={**auth, **PROTOBUF, "Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    legacy = httpx.post(keyed.url + "/api/public/ingestion", content=b"[1,2", headers=auth)
    assert legacy.status_code == 400
    with TraceStore(keyed.store, create=False) as store:
        assert not store.get_traces([good.id, bad.id])


def test_legacy_batch_per_event_results(keyed):
    auth = basic_auth("pk-lf-right", "sk-lf-right")
    batch = [
        {
            "id": "e1",
            "type": "trace-create",
            "timestamp": "2024-05-01T10:00:00Z",
            "body": {"id": "legacy-t1", "name": "chat", "userId": "u1", "tags": ["x"]},
        },
        {
            "id": "e2",
            "type": "span-create",
            "timestamp": "2024-05-01T10:00:00.1Z",
            "body": {
                "id": "span-1",
                "traceId": "legacy-t1",
                "name": "RunnableSequence",
                "startTime": "2024-05-01T10:00:00.100Z",
                "input": {"q": 1},
            },
        },
        {
            "id": "e3",
            "type": "generation-create",
            "timestamp": "2024-05-01T10:00:00.2Z",
            "body": {
                "id": "gen-1",
                "traceId": "legacy-t1",
                "parentObservationId": "span-1",
                "name": "ChatOpenAI",
                "startTime": "2024-05-01T10:00:00.200Z",
                "model": "gpt-4o-mini",
            },
        },
        {
            "id": "e4",
            "type": "generation-update",
            "timestamp": "2024-05-01T10:00:01Z",
            "body": {
                "id": "gen-1",
                "traceId": "legacy-t1",
                "endTime": "2024-05-01T10:00:01Z",
                "output": "hello",
                "usage": {"promptTokens": 5, "completionTokens": 2, "totalTokens": 7},
            },
        },
        {
            "id": "e5",
            "type": "span-update",
            "timestamp": "2024-05-01T10:00:01.1Z",
            "body": {"id": "span-1", "endTime": "2024-05-01T10:00:01.100Z", "output": "hello", "level": "WARNING"},
        },
        {
            "id": "e6",
            "type": "generation-create",
            "timestamp": "not a date",
            "body": {"id": "gen-2", "traceId": "legacy-t1"},
        },
        {"id": "e7", "type": "span-update", "timestamp": "2024-05-01T10:00:01Z", "body": {"id": "never-created"}},
        {
            "id": "e9",
            "type": "score-create",
            "timestamp": "2024-05-01T10:00:03Z",
            "body": {"id": "sc-1", "traceId": "legacy-t1", "name": "helpful", "value": 0.9, "comment": "good"},
        },
    ]
    response = httpx.post(keyed.url + "/api/public/ingestion", json={"batch": batch}, headers=auth)
    assert response.status_code == 207
    result = response.json()
    assert [s["id"] for s in result["successes"]] == ["e1", "e2", "e3", "e4", "e5", "e9"]
    assert {e["id"]: e["status"] for e in result["errors"]} == {"e6": 400, "e7": 400}
    with TraceStore(keyed.store, create=False) as store:
        trace = store.get_trace("legacy-t1")
    by_id = {o.id: o for o in trace.observations}
    assert trace.name == "chat" and trace.user_id == "u1" and trace.tags == ["x"]
    assert by_id["gen-1"].parent_id == "span-1" and by_id["gen-1"].output == "hello"
    assert by_id["gen-1"].usage_details == {"input": 5, "output": 2, "total": 7}
    assert by_id["span-1"].level == "WARNING" and by_id["span-1"].end_time is not None
    # a second batch updates the stored trace (an update arriving in a later request)
    later = [
        {
            "id": "e8",
            "type": "trace-create",
            "timestamp": "2024-05-01T10:00:02Z",
            "body": {"id": "legacy-t1", "output": "done"},
        }
    ]
    assert httpx.post(keyed.url + "/api/public/ingestion", json={"batch": later}, headers=auth).status_code == 207
    with TraceStore(keyed.store, create=False) as store:
        again = store.get_trace("legacy-t1")
    assert again.output == "done" and again.name == "chat" and len(again.observations) == 2
    assert [(sc.name, sc.value, sc.comment) for sc in again.scores] == [("helpful", 0.9, "good")]
    listed = httpx.get(keyed.url + "/api/public/v2/scores", params={"traceId": "legacy-t1"}, headers=auth).json()
    assert [(row["id"], row["value"]) for row in listed["data"]] == [("sc-1", 0.9)] and listed["meta"][
        "totalItems"
    ] == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_clean_shutdown_on_signals(tmp_path, sig, code):
    proc = ServeProcess(tmp_path / "t.db").start()
    returncode, out, err = proc.stop(sig)
    assert returncode == code, err
    assert "lftrace serve: stopped" in out and "Traceback" not in err


def test_sigkill_mid_ingestion_leaves_whole_requests(tmp_path):
    store_path = tmp_path / "t.db"
    proc = ServeProcess(store_path).start()
    per_request = 20
    bodies = [encode_traces(_traces(100 + r, per_request)).SerializeToString() for r in range(200)]
    stop = threading.Event()
    sent: list[int] = []

    def client() -> None:
        with httpx.Client(timeout=5) as http:
            for body in bodies:
                if stop.is_set():
                    return
                try:
                    if http.post(proc.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 200:
                        sent.append(1)
                except httpx.HTTPError:
                    return

    thread = threading.Thread(target=client)
    thread.start()
    while len(sent) < 5 and thread.is_alive():
        pass
    proc.stop(signal.SIGKILL)
    stop.set()
    thread.join(10)
    with TraceStore(store_path, create=False) as store:
        summaries = store.list_traces(limit=None)
        traces = store.get_traces([s.id for s in summaries])
    assert len(sent) >= 5
    # every request is all or nothing, every trace complete
    assert len(traces) % per_request == 0 and len(traces) >= len(sent) * per_request
    assert all(len(t.observations) == 4 for t in traces)
    # and a restarted server keeps adding to the same store
    with ServeProcess(store_path) as again:
        response = httpx.post(again.url + "/v1/traces", content=bodies[-1], headers=PROTOBUF)
        assert response.status_code == 200


def test_spans_of_one_trace_across_a_restart_add_up(tmp_path):
    store_path = tmp_path / "t.db"
    [trace] = _traces(900, 1)
    root, *children = trace.observations
    late = Trace(id=trace.id, name="load", timestamp=trace.timestamp, observations=children, end_time=trace.end_time)
    early = Trace(id=trace.id, name="load", timestamp=trace.timestamp, observations=[root], end_time=trace.end_time)
    for part in (late, early):  # children first, then (after a restart) the root
        with ServeProcess(store_path) as proc:
            response = httpx.post(
                proc.url + "/v1/traces", content=encode_traces([part]).SerializeToString(), headers=PROTOBUF
            )
            assert response.status_code == 200
    with TraceStore(store_path, create=False) as store:
        stored = store.get_trace(trace.id)
    assert [o.id for o in stored.observations] == [o.id for o in trace.observations]
    assert stored.observations[1].parent_id == root.id and stored.name == "load"
