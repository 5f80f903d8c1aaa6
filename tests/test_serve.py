"""`lftrace serve` against real clients nobody here wrote: the official Python SDK (the Langfuse docs' three
examples, verbatim but for the host), the OpenTelemetry SDK's OTLP exporters, and our own exporter (what we
export must come back the same). One server process for the module; each test uses its own trace ids.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from tests.serve_process import ServeProcess

from lftrace.exporters.attributes import with_cost
from lftrace.exporters.encode import encode_traces
from lftrace.exporters.otlp import LangfuseExporter, OtlpExporter
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore
from support.openai_server import openai_server

EXAMPLES = Path(__file__).parent / "docs_examples"
LFTRACE = [sys.executable, "-m", "lftrace"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("serve") / "traces.db"
    with ServeProcess(store) as proc:
        yield proc


@pytest.fixture(scope="module")
def openai(server):
    with openai_server() as fake:
        yield fake


def _env(server: ServeProcess, openai_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "OPENAI_", "LFTRACE_"))}
    env.update({"OPENAI_API_KEY": "sk-test-not-a-real-key", "OPENAI_BASE_URL": openai_url})
    return env


def _run_example(name: str, tmp_path: Path, env: dict[str, str], replace: tuple[str, str] | None = None) -> str:
    source = (EXAMPLES / name).read_text()
    if replace:
        assert replace[0] in source
        source = source.replace(*replace)
    script = tmp_path / name
    script.write_text(source)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"TRACE_ID ([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def _show(server: ServeProcess, trace_id: str) -> str:
    env = {**os.environ, "LFTRACE_STORE": str(server.store), "NO_COLOR": "1", "COLUMNS": "120"}
    proc = subprocess.run([*LFTRACE, "show", trace_id], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _sdk_observations(server: ServeProcess, trace_id: str) -> list:
    from langfuse.api.client import LangfuseAPI

    api = LangfuseAPI(base_url=server.url, username="pk-lf-any", password="sk-lf-any")
    page = api.observations.get_many(trace_id=trace_id, fields="core,basic,io,usage,model,metrics")
    assert page.meta.cursor is None
    return list(page.data)


def test_docs_example1_official_sdk_constructor_arguments(server, openai, tmp_path):
    # the example passes host= explicitly: pointing it at the server is the one change
    trace_id = _run_example(
        "example1_constructor.py",
        tmp_path,
        _env(server, openai.url),
        replace=('host="https://cloud.langfuse.com"', f'host="{server.url}"'),
    )
    shown = _show(server, trace_id)
    assert "RunnableSequence" in shown and "ChatOpenAI" in shown and "gpt-4o-2024-08-06" in shown
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    assert [(o.type, o.name) for o in trace.observations] == [
        ("CHAIN", "RunnableSequence"),
        ("CHAIN", "ChatPromptTemplate"),
        ("GENERATION", "ChatOpenAI"),
    ]
    gen = trace.observations[2]
    assert gen.parent_id == trace.observations[0].id
    assert gen.usage_details and gen.usage_details["total"] == gen.usage_details["input"] + gen.usage_details["output"]
    assert gen.cost_details and gen.cost_details["total"] > 0  # priced by the server, as Langfuse does
    assert trace.input == {"topic": "cats"} and trace.name == "RunnableSequence"
    rows = {o.name: o for o in _sdk_observations(server, trace_id)}
    assert rows["ChatOpenAI"].type == "GENERATION" and rows["ChatOpenAI"].model == "gpt-4o-2024-08-06"
    assert rows["ChatOpenAI"].parent_observation_id == rows["RunnableSequence"].id
    assert rows["RunnableSequence"].is_root_observation is True


def test_docs_example2_official_sdk_env_file(server, openai, tmp_path):
    (tmp_path / ".env").write_text(
        f'LANGFUSE_SECRET_KEY="sk-lf-0000"\nLANGFUSE_PUBLIC_KEY="pk-lf-1111"\nLANGFUSE_HOST="{server.url}"\n'
    )
    env = _env(server, openai.url)
    # the official SDK does not read .env itself; the docs' users load it (python-dotenv) - so do we
    from dotenv import dotenv_values

    env.update({k: v for k, v in dotenv_values(tmp_path / ".env").items() if v})
    trace_id = _run_example("example2_env.py", tmp_path, env)
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    assert trace.input == {"input": "<user_input>"}
    assert {o.name for o in trace.observations} == {"RunnableSequence", "ChatPromptTemplate", "ChatOpenAI"}


def test_docs_example3_official_sdk_langgraph_streamed(server, openai, tmp_path):
    env = _env(server, openai.url)
    env.update({"LANGFUSE_HOST": server.url, "LANGFUSE_PUBLIC_KEY": "pk-lf-1", "LANGFUSE_SECRET_KEY": "sk-lf-1"})
    trace_id = _run_example("example3_langgraph.py", tmp_path, env)
    shown = _show(server, trace_id)
    assert "LangGraph" in shown and "chatbot" in shown
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    by_name = {o.name: o for o in trace.observations}
    assert trace.name == "LangGraph"
    gen = by_name["ChatOpenAI"]
    assert gen.parent_id == by_name["chatbot"].id and by_name["chatbot"].parent_id == by_name["LangGraph"].id
    assert (gen.model_parameters or {}).get("temperature") == 0.2
    assert gen.usage_details and gen.usage_details["output"] > 0
    assert by_name["chatbot"].metadata and by_name["chatbot"].metadata.get("langgraph_node") == "chatbot"
    # the read API: list, one trace
    listed = server.get("/api/public/traces", params={"name": "LangGraph"}).json()
    assert trace_id in [t["id"] for t in listed["data"]]
    one = server.get(f"/api/public/traces/{trace_id}").json()
    assert one["id"] == trace_id and len(one["observations"]) == 3
    assert one["observations"] == [o.to_dict() for o in trace.observations]


def _sample_trace(trace_id: str, start: int) -> Trace:
    root = Observation(
        id=trace_id[:15] + "a",
        trace_id=trace_id,
        parent_id=None,
        type="AGENT",
        name="agent",
        start_time=start,
        end_time=start + 5_000_000,
        input={"question": "2+2?"},
        output={"answer": "4"},
        metadata={"langgraph_node": "agent", "step": 3},
        environment="staging",
    )
    gen = Observation(
        id=trace_id[:15] + "b",
        trace_id=trace_id,
        parent_id=root.id,
        type="GENERATION",
        name="ChatOpenAI",
        start_time=start + 1_000_000,
        end_time=start + 4_000_000,
        completion_start_time=start + 2_000_000,
        model="gpt-4o-mini",
        model_parameters={"temperature": 0.5},
        input=[{"role": "user", "content": "2+2?"}],
        output={"role": "assistant", "content": "4"},
        usage_details={"input": 10, "output": 2, "total": 12},
        cost_details={"input": 0.001, "output": 0.002, "total": 0.003},
        level="WARNING",
        status_message="slow",
        environment="staging",
    )
    return Trace(
        id=trace_id,
        name="math",
        timestamp=start,
        input={"question": "2+2?"},
        output={"answer": "4"},
        session_id="sess-1",
        user_id="user-1",
        release="r1",
        metadata={"team": "ml"},
        tags=["a", "b"],
        environment="staging",
        observations=[root, gen],
        end_time=start + 5_000_000,
    )


@pytest.mark.parametrize("exporter_kind", ["langfuse", "otlp"])
def test_our_exports_round_trip(server, exporter_kind):
    trace_id = ("1a" if exporter_kind == "langfuse" else "2b") * 16
    original = _sample_trace(trace_id, 1_700_000_000_000_000_000)
    if exporter_kind == "langfuse":
        exporter: OtlpExporter = LangfuseExporter(server.url, "pk-lf-a", "sk-lf-b")
    else:
        exporter = OtlpExporter(server.url + "/v1/traces")
    # an exact copy needs the local cost sent too (LFTRACE_EXPORT_COST=1); by default the server prices usage itself
    exporter.profile = with_cost(exporter.profile, True)
    result = exporter.export([original])
    exporter.close()
    assert result.ok, result.message
    with TraceStore(server.store, create=False) as store:
        stored = store.get_trace(trace_id)
    assert stored.to_dict() == original.to_dict()


def test_otlp_json_encoding_and_spans_split_out_of_order(server):
    trace_id = "3c" * 16
    original = _sample_trace(trace_id, 1_700_000_100_000_000_000)
    payload = MessageToDict(encode_traces([original], profile=with_cost("langfuse", True)))  # a copy: cost too
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans:  # OTLP/JSON carries ids as hex, not protobuf's base64
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    child_first = [spans[1]], [spans[0]]
    for part in child_first:
        body = {
            "resourceSpans": [
                {**payload["resourceSpans"][0], "scopeSpans": [{"scope": {"name": "langfuse-sdk"}, "spans": part}]}
            ]
        }
        response = server.post(
            "/api/public/otel/v1/traces",
            content=gzip.compress(json.dumps(body).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {}
    with TraceStore(server.store, create=False) as store:
        stored = store.get_trace(trace_id)
    assert stored.to_dict() == original.to_dict()


def test_a_span_sent_twice_in_one_request_is_one_observation_in_list_and_its_totals(server):
    # an exporter that retried a batch into the next one sends a span again: the store keeps its last version,
    # and `lftrace list` counts it once (it counted both: 3 observations, 25 tokens)
    trace_id = "4d" * 16
    original = _sample_trace(trace_id, 1_700_000_200_000_000_000)
    root, generation = original.observations
    again = dataclasses.replace(generation, usage_details={"input": 10, "output": 3, "total": 13})
    original.observations = [root, generation, again]
    body = encode_traces([original], profile=with_cost("langfuse", True)).SerializeToString()
    response = server.post(
        "/api/public/otel/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    env = {**os.environ, "LFTRACE_STORE": str(server.store)}
    listed = subprocess.run([*LFTRACE, "list", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["id"] == trace_id)
    assert (row["observationCount"], row["totalTokens"], row["totalCost"]) == (2, 13, 0.003)
    with TraceStore(server.store, create=False) as store:
        stored = store.get_trace(trace_id)
    assert [o.usage_details for o in stored.observations] == [None, {"input": 10, "output": 3, "total": 13}]


def test_plain_opentelemetry_sdk_genai_spans(server):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "plain", "deployment.environment.name": "ci"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces")))
    tracer = provider.get_tracer("my-app")
    with tracer.start_as_current_span("handle request", attributes={"user.id": "u-9", "session.id": "s-9"}) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.request.temperature": 0.1,
                "gen_ai.usage.input_tokens": 21,
                "gen_ai.usage.output_tokens": 5,
                "http.status_code": 200,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool search", attributes={"gen_ai.operation.name": "execute_tool"}
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "tool failed"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    with TraceStore(server.store, create=False) as store:
        trace = store.get_trace(trace_id)
    by_name = {o.name: o for o in trace.observations}
    assert trace.name == "handle request" and trace.user_id == "u-9" and trace.session_id == "s-9"
    assert trace.environment == "ci"
    gen = by_name["chat gpt-4o-mini"]
    assert gen.type == "GENERATION" and gen.model == "gpt-4o-mini-2024-07-18"
    assert gen.usage_details == {"input": 21, "output": 5, "total": 26}
    assert gen.model_parameters == {"temperature": 0.1}
    assert (gen.metadata or {}).get("attributes") == {"http.status_code": 200}  # foreign attributes kept
    tool = by_name["execute_tool search"]
    assert tool.type == "TOOL" and tool.level == "ERROR" and tool.status_message == "tool failed"
    assert (trace.status, trace.handled_errors) == ("ok", 1)  # the request span finished: the error was handled


def test_read_api_pagination_sessions_and_v2_cursor(server):
    for n in range(3):
        trace = _sample_trace(f"{n + 1:02d}" * 16, 1_600_000_000_000_000_000 + n * 1_000_000_000)
        trace.session_id = "paged-session"
        trace.name = "paged"
        result = LangfuseExporter(server.url, "pk", "sk").export([trace])
        assert result.ok
    first = server.get("/api/public/traces", params={"name": "paged", "limit": 2, "page": 1}).json()
    second = server.get("/api/public/traces", params={"name": "paged", "limit": 2, "page": 2}).json()
    assert first["meta"] == {"page": 1, "limit": 2, "totalItems": 3, "totalPages": 2}
    assert len(first["data"]) == 2 and len(second["data"]) == 1
    assert [len(row["observations"]) for row in first["data"]] == [2, 2]  # ids, as TraceWithDetails has
    assert all(isinstance(i, str) for i in first["data"][0]["observations"])
    session = server.get("/api/public/sessions/paged-session").json()
    assert session["id"] == "paged-session" and len(session["traces"]) == 3
    assert "paged-session" in [s["id"] for s in server.get("/api/public/sessions").json()["data"]]
    seen = []
    cursor = None
    while True:
        params = {"sessionId": "paged-session", "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = server.get("/api/public/v2/observations", params=params).json()
        seen += [row["id"] for row in page["data"]]
        cursor = page["meta"]["cursor"]
        if not cursor:
            break
    assert len(seen) == 6 == len(set(seen))
    one = server.get(f"/api/public/observations/{seen[0]}").json()
    assert one["id"] == seen[0]
    assert server.get("/api/public/observations/ffffffffffffffff").status_code == 404
    assert server.get("/api/public/traces/" + "f" * 32).status_code == 404
    assert server.get("/api/public/traces", params={"limit": "x"}).status_code == 400
    assert httpx.get(server.url + "/api/public/health").json()["status"] == "OK"


_SCORING_APP = """
import sys
from langfuse import Langfuse

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
with langfuse.start_as_current_observation(name="scored-request") as span:
    span.score(name="accuracy", value=0.9, comment="close enough")
    span.score_trace(name="helpful", value=1, data_type="BOOLEAN")
    trace_id, span_id = span.trace_id, span.id
langfuse.create_score(trace_id=trace_id, name="label", value="good", data_type="CATEGORICAL", metadata={"by": "ci"})
langfuse.flush()
print("TRACE_ID", trace_id, span_id)
"""


def test_official_sdk_scores_are_created_and_read_back_through_v3(server, tmp_path):
    """The official SDK 5 sends scores as a list to POST /api/public/scores (they were refused: 405, and lost) and
    reads them with GET /api/public/v3/scores (not served before): both work unchanged against lftrace serve."""
    ran = server.run_sdk_program(tmp_path / "scoring_app.py", _SCORING_APP)
    trace_id, span_id = re.search(r"TRACE_ID ([0-9a-f]{32}) ([0-9a-f]{16})", ran.stdout).groups()
    from langfuse.api.client import LangfuseAPI

    api = LangfuseAPI(base_url=server.url, username="pk-lf-any", password="sk-lf-any")
    page = api.scores.get_many(trace_id=trace_id, fields="details,subject")
    by_name = {s.name: s for s in page.data}
    assert set(by_name) == {"accuracy", "helpful", "label"} and page.meta.cursor is None
    assert (by_name["accuracy"].data_type, by_name["accuracy"].value) == ("NUMERIC", 0.9)
    assert by_name["accuracy"].comment == "close enough"
    assert by_name["accuracy"].subject.kind == "observation" and by_name["accuracy"].subject.id == span_id
    assert (by_name["helpful"].data_type, by_name["helpful"].value) == ("BOOLEAN", True)
    assert by_name["helpful"].subject.kind == "trace" and by_name["helpful"].subject.id == trace_id
    assert (by_name["label"].data_type, by_name["label"].value, by_name["label"].metadata) == (
        "CATEGORICAL",
        "good",
        {"by": "ci"},
    )
    only = api.scores.get_many(trace_id=trace_id, data_type="BOOLEAN", value="true")
    assert [s.name for s in only.data] == ["helpful"]
    first = api.scores.get_many(trace_id=trace_id, limit=2)
    rest = api.scores.get_many(trace_id=trace_id, limit=2, cursor=first.meta.cursor)
    assert len(first.data) == 2 and len(rest.data) == 1 and rest.meta.cursor is None
    assert {s.id for s in first.data + rest.data} == {s.id for s in page.data}
    with TraceStore(server.store, create=False) as store:
        assert sorted(s.name for s in store.get_trace(trace_id).scores) == ["accuracy", "helpful", "label"]


_PROMPT_LINKING_APP = """
import sys
from langfuse import Langfuse, propagate_attributes

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_prompt(name="movie-critic", prompt="Review {{movie}}", labels=["production"])
prompt = langfuse.get_prompt("movie-critic")
with langfuse.start_as_current_observation(name="review-request") as root:
    with langfuse.start_as_current_observation(name="explicit", as_type="generation", prompt=prompt):
        pass
    with propagate_attributes(environment="staging", prompt={"name": "critic-v2", "version": 3}):
        with langfuse.start_as_current_observation(name="propagated", as_type="generation"):
            pass
        with langfuse.start_as_current_observation(name="plain-span"):
            pass
langfuse.flush()
print("TRACE_ID", root.trace_id, prompt.version)
"""


def test_official_sdk_prompt_links_and_propagated_environment_are_kept(server, tmp_path):
    """A generation's prompt (``prompt=`` or SDK 5's ``propagate_attributes(prompt=...)``) arrives as
    ``langfuse.observation.prompt.name``/``.version``: kept on generations (Langfuse links no other type) and
    answered by the API; a propagated environment is the environment of the spans started inside."""
    ran = server.run_sdk_program(tmp_path / "prompt_linking_app.py", _PROMPT_LINKING_APP)
    trace_id, version = re.search(r"TRACE_ID ([0-9a-f]{32}) (\d+)", ran.stdout).groups()
    with TraceStore(server.store, create=False) as store:
        stored = {o.name: o for o in store.get_trace(trace_id).observations}
    assert (stored["explicit"].prompt_name, stored["explicit"].prompt_version) == ("movie-critic", int(version))
    assert (stored["propagated"].prompt_name, stored["propagated"].prompt_version) == ("critic-v2", 3)
    assert (stored["plain-span"].prompt_name, stored["review-request"].prompt_name) == (None, None)
    assert [stored[n].environment for n in ("review-request", "explicit", "propagated", "plain-span")] == [
        "staging",  # the span current when propagate_attributes began takes it too (the SDK sets it there)
        "default",
        "staging",
        "staging",
    ]
    answered = {o["name"]: o for o in server.get(f"/api/public/traces/{trace_id}").json()["observations"]}
    assert (answered["propagated"]["promptName"], answered["propagated"]["promptVersion"]) == ("critic-v2", 3)


_SESSION_SCORING_APP = """
import sys
from langfuse import Langfuse

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_score(name="csat", value=4, session_id="serve-chat-1", comment="fast")
langfuse.create_score(name="exact-match", value=0.8, dataset_run_id="serve-run-1")
langfuse.flush()
"""


def test_official_sdk_session_and_dataset_run_scores_are_kept_and_read_back(server, tmp_path):
    """Scores with no trace (a session's, a dataset run's): refused before (and lost by the SDK); now stored and
    read back through v3 (``sessionId``, ``experimentId``, their subjects) and v2."""
    server.run_sdk_program(tmp_path / "session_scoring_app.py", _SESSION_SCORING_APP)
    from langfuse.api.client import LangfuseAPI

    api = LangfuseAPI(base_url=server.url, username="pk-lf-any", password="sk-lf-any")
    (csat,) = api.scores.get_many(session_id="serve-chat-1", fields="details,subject").data
    assert (csat.name, csat.value, csat.comment) == ("csat", 4.0, "fast")
    assert (csat.subject.kind, csat.subject.id) == ("session", "serve-chat-1")
    (run,) = api.scores.get_many(experiment_id="serve-run-1", fields="subject").data
    assert (run.name, run.value, run.subject.kind, run.subject.id) == ("exact-match", 0.8, "experiment", "serve-run-1")
    v2 = server.get("/api/public/v2/scores", params={"sessionId": "serve-chat-1"}).json()["data"]
    assert [(s["name"], s["sessionId"], s["traceId"], s["trace"]) for s in v2] == [("csat", "serve-chat-1", None, None)]
    with TraceStore(server.store, create=False) as store:
        assert [s.name for s in store.session_scores("serve-chat-1")] == ["csat"]


def test_scores_endpoints_answer_as_langfuse_does(server):
    single = server.post("/api/public/scores", json={"traceId": "ab" * 16, "name": "n", "value": 1})
    assert single.status_code == 200 and set(single.json()) == {"id"}
    mixed = server.post(
        "/api/public/scores", json=[{"traceId": "ab" * 16, "name": "ok", "value": 2}, {"name": "no-trace", "value": 1}]
    )
    assert mixed.status_code == 207
    assert (
        mixed.json()["accepted"] == 1
        and mixed.json()["rejected"] == 1
        and "traceId" in mixed.json()["errors"][0]["message"]
    )
    assert server.post("/api/public/scores", json=[{"traceId": "ab" * 16, "name": "x", "value": 3}]).status_code == 202
    assert server.post("/api/public/scores", content=b"{not json").status_code == 400
    for params in (
        {"limit": 101},
        {"fields": "details,everything"},
        {"observationId": "cd" * 8},
        {"traceId": "ab" * 16, "sessionId": "s"},
        {"valueMin": 1},
        {"dataType": "BOOLEAN", "value": "yes"},
    ):
        assert server.get("/api/public/v3/scores", params=params).status_code == 400, params
    listed = server.get(
        "/api/public/v3/scores", params={"traceId": "ab" * 16, "dataType": "NUMERIC", "valueMin": 2}
    ).json()
    assert [(s["name"], s["value"]) for s in listed["data"]] == [("x", 3.0), ("ok", 2.0)] and listed["meta"] == {
        "limit": 50
    }


_EXPERIMENT_APP = """
import sys
from datetime import datetime, timezone
from langfuse import Langfuse, Evaluation

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_dataset(name="capitals-exp")
langfuse.create_dataset_item(dataset_name="capitals-exp", id="fr", input={"country": "France"}, expected_output="Paris",
                             metadata={"difficulty": "easy"})
langfuse.create_dataset_item(dataset_name="capitals-exp", id="es", input={"country": "Spain"}, expected_output="Madrid")
version = datetime.now(timezone.utc)
dataset = langfuse.get_dataset("capitals-exp", version=version)


def task(*, item, **kwargs):
    return {"France": "Paris"}.get(item.input["country"], "?")


def exact(*, output, expected_output, **kwargs):
    return Evaluation(name="exact", value=1.0 if output == expected_output else 0.0)


def average(*, item_results, **kwargs):
    return Evaluation(name="average", value=sum(r.evaluations[0].value for r in item_results) / len(item_results))


result = dataset.run_experiment(name="capitals", run_name="capitals-run-1", description="first try", task=task,
                                evaluators=[exact], run_evaluators=[average], metadata={"model": "fake"})
langfuse.run_experiment(name="loose", data=[{"input": "a", "expected_output": "A"}], task=lambda *, item, **k: "A")
langfuse.flush()
print("EXPERIMENT", result.experiment_id, dataset.id, version.isoformat())
"""


def test_official_sdk_experiments_are_read_back_through_the_experiments_api(server, tmp_path):
    """SDK 5 derives experiments from the ``langfuse.experiment.*`` attributes of its spans (no dataset run API):
    ``serve`` keeps them on the trace and answers ``api.experiments.list`` / ``list_items`` from them: the run, its
    items (dataset item, the dataset version they ran on, input, output, expected output), their scores and the
    run's own scores. ``show`` names the experiment and the item."""
    from datetime import datetime

    from langfuse.api.client import LangfuseAPI

    started = datetime.now(UTC)
    ran = server.run_sdk_program(tmp_path / "experiment_app.py", _EXPERIMENT_APP)
    experiment_id, dataset_id, version = re.search(r"EXPERIMENT (\S+) (\S+) (\S+)", ran.stdout).groups()
    api = LangfuseAPI(base_url=server.url, username="pk-lf-any", password="sk-lf-any")

    listed = api.experiments.list(from_start_time=started, fields="core,metadata,scores").data
    assert [e.name.split(" - ")[0] for e in listed] == ["loose", "capitals-run-1"]  # latest activity first
    (run,) = [e for e in listed if e.id == experiment_id]
    assert (run.name, run.description, run.item_count, run.dataset_id) == ("capitals-run-1", "first try", 2, dataset_id)
    assert run.metadata == {"model": "fake"}
    assert [(s.name, s.value) for s in run.scores] == [("average", 0.5)]
    assert run.start_time <= run.end_time and run.start_time >= started

    page = api.experiments.list_items(
        from_start_time=started,
        experiment_id=experiment_id,
        fields="core,dataset,io,itemMetadata,experimentMetadata,scores",
    ).data
    items = {i.experiment_item_id: i for i in page}
    assert set(items) == {"fr", "es"}
    fr = items["fr"]
    assert (fr.input, fr.output, fr.expected_output) == ({"country": "France"}, "Paris", "Paris")
    assert (fr.experiment_id, fr.experiment_name, fr.experiment_dataset_id) == (
        experiment_id,
        "capitals-run-1",
        dataset_id,
    )
    assert fr.experiment_item_version == datetime.fromisoformat(version)  # the version the items were read at
    assert (fr.experiment_item_metadata, fr.experiment_metadata) == ({"difficulty": "easy"}, {"model": "fake"})
    assert (fr.level, fr.environment, fr.experiment_description) == ("DEFAULT", "sdk-experiment", "first try")
    assert [(s.name, s.value) for s in fr.scores] == [("exact", 1.0)]
    assert [(s.name, s.value) for s in items["es"].scores] == [("exact", 0.0)]
    with TraceStore(server.store, create=False) as store:
        task_span = next(o for o in store.get_trace(fr.trace_id).observations if o.name == "experiment-item-task")
    assert fr.id == task_span.id  # an item is its root observation: the task span

    # the default groups (core, dataset): no input or scores; pages follow the cursor; a filter narrows
    first = api.experiments.list_items(from_start_time=started, experiment_id=experiment_id, limit=1)
    assert first.data[0].input is None and first.data[0].scores is None and first.meta.cursor
    second = api.experiments.list_items(
        from_start_time=started, experiment_id=experiment_id, limit=1, cursor=first.meta.cursor
    )
    assert {first.data[0].experiment_item_id, second.data[0].experiment_item_id} == {"fr", "es"}
    assert second.meta.cursor is None
    assert [e.id for e in api.experiments.list(from_start_time=started, dataset_id=dataset_id).data] == [experiment_id]
    assert api.experiments.list(from_start_time=datetime.now(UTC)).data == []
    refused = server.get("/api/public/experiments")
    assert refused.status_code == 400 and "fromStartTime" in refused.json()["message"]

    shown = _show(server, fr.trace_id)
    assert "capitals-run-1 (item fr)" in shown
