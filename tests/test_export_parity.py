"""What reaches Langfuse (issue 13, items 3, 4 and 7): usage without our cost by default (LFTRACE_EXPORT_COST=1
sends it), the prompt link on the generation's span, and scores on the scores API (score-create events for a v3 server).

Real runs through the client and its delivery to a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate

from lftrace import Langfuse
from lftrace.client import reset_clients
from lftrace.config import EXPORT_COST, Settings
from lftrace.langchain import CallbackHandler
from lftrace.model import ns_from_iso
from support.fake_models import ToolCallingFakeModel
from support.otlp_receiver import Reply, attributes

PK = "pk-lf-1234567890abcd"
SK = "sk-lf-topsecret99887766"


def generation_span(receiver) -> dict:
    spans = [attributes(s.attributes) for s in receiver.spans()]
    return next(a for a in spans if a.get("langfuse.observation.type") == "generation")


def run_priced_generation(client: Langfuse) -> None:
    model = ToolCallingFakeModel(model_name="gpt-4o-mini")
    template = ChatPromptTemplate.from_template("Weather in {city}?").with_config(
        metadata={"langfuse_prompt": {"name": "weather", "version": 4}}
    )
    (template | model).invoke({"city": "Riga"}, config={"callbacks": [CallbackHandler()]})
    client.flush()


def test_usage_is_sent_and_cost_is_not_by_default(receiver):
    client = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    run_priced_generation(client)
    gen = generation_span(receiver)
    assert json.loads(gen["langfuse.observation.usage_details"]) == {"input": 12, "output": 7, "total": 19}
    assert "langfuse.observation.cost_details" not in gen
    # the local estimate is still kept for show/stats/--max-cost
    stored = client.get_trace("last")
    (generation,) = [o for o in stored.observations if o.type == "GENERATION"]
    assert generation.cost_details is not None and generation.cost_details["total"] > 0
    # item 3: the prompt link travels with the span
    assert (gen["langfuse.observation.prompt.name"], gen["langfuse.observation.prompt.version"]) == ("weather", 4)


def test_export_cost_setting_sends_the_local_cost(receiver, monkeypatch):
    monkeypatch.setenv(EXPORT_COST, "1")
    assert Settings.resolve({}).export_cost is True
    client = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    run_priced_generation(client)
    cost = json.loads(generation_span(receiver)["langfuse.observation.cost_details"])
    assert cost["total"] == pytest.approx(12 * 0.15e-6 + 7 * 0.6e-6)
    assert set(cost) == {"input", "output", "total"}


def test_bad_export_cost_value_is_a_one_line_error(monkeypatch):
    from lftrace.errors import ConfigError

    monkeypatch.setenv(EXPORT_COST, "maybe")
    with pytest.raises(ConfigError) as err:
        Settings.resolve({})
    assert EXPORT_COST in str(err.value) and "\n" not in str(err.value)


def _scored_trace(receiver: Any) -> tuple[Any, str, str]:
    reset_clients()
    client = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    with client.start_as_current_span(name="qa") as span:
        span.score(name="relevance", value=0.5)
        client.score_current_trace(name="verdict", value="good", comment="ok")
        trace_id = span.trace_id
    client.flush()
    return client, trace_id, span.id


def test_scores_go_to_the_scores_api_as_the_official_sdk_sends_them(receiver):
    """A list on POST /api/public/scores (the official SDK 5; Langfuse Cloud removed /api/public/ingestion on
    2026-11-16): text for a categorical score, a number otherwise, an ISO timestamp, None left out."""
    client, trace_id, span_id = _scored_trace(receiver)
    posts = [r for r in receiver.requests if r.path == "/api/public/scores"]
    assert len(posts) == 1 and posts[0].headers["authorization"].startswith("Basic ")
    assert not [r for r in receiver.requests if r.path == "/api/public/ingestion"]
    scores = {s["name"]: s for s in json.loads(posts[0].body)}
    relevance = scores["relevance"]
    assert relevance == {
        "id": relevance["id"],
        "traceId": trace_id,
        "observationId": span_id,
        "name": "relevance",
        "value": 0.5,
        "dataType": "NUMERIC",
        "environment": "default",
        "timestamp": relevance["timestamp"],
    }
    assert ns_from_iso(relevance["timestamp"]) > 0
    assert (scores["verdict"]["value"], scores["verdict"]["dataType"], scores["verdict"]["comment"]) == (
        "good",
        "CATEGORICAL",
        "ok",
    )
    assert "observationId" not in scores["verdict"]
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1


def test_a_server_without_the_scores_api_gets_score_create_events(receiver):
    """A self-hosted Langfuse v3 without POST /api/public/scores for a list: the legacy ingestion batch instead."""
    receiver.scores_api = False
    client, trace_id, _ = _scored_trace(receiver)
    assert [r.status for r in receiver.requests if r.path == "/api/public/scores"] == [404]
    posts = [r for r in receiver.requests if r.path == "/api/public/ingestion"]
    assert len(posts) == 1
    batch = json.loads(posts[0].body)["batch"]
    assert {e["type"] for e in batch} == {"score-create"}
    assert {e["body"]["name"]: e["body"]["traceId"] for e in batch} == {"relevance": trace_id, "verdict": trace_id}
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1


def test_scores_langfuse_rejects_leave_the_trace_failed_with_why(receiver):
    answer = {"accepted": 1, "rejected": 1, "errors": [{"message": "value must be between 0 and 1"}]}
    receiver.scores_reply = Reply(207, json.dumps(answer))
    client, _, _ = _scored_trace(receiver)
    counts = client.store.delivery_counts()[f"langfuse:{receiver.url}"]
    assert (counts["failed"], counts["delivered"]) == (1, 0)  # shown by `lftrace status`, sent again by `push`
    assert counts["last_error"] == "Langfuse rejected 1 of 2 scores: value must be between 0 and 1"


def test_get_trace_url_is_the_official_sdk_s_link(receiver):
    """``get_trace_url``: the same link as the official SDK's for the same keys and server; None where it has none."""
    from langfuse import Langfuse as OfficialLangfuse

    from support.otlp_receiver import closed_port

    receiver.expect_basic(PK, SK)
    client = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    official = OfficialLangfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    try:
        trace_id = client.create_trace_id(seed="order-42")
        expected = f"{receiver.url}/project/{receiver.project_id}/traces/{trace_id}"
        assert client.get_trace_url(trace_id=trace_id) == official.get_trace_url(trace_id=trace_id) == expected
        with client.start_as_current_span(name="job") as span:  # the current trace's
            assert client.get_trace_url() == f"{receiver.url}/project/{receiver.project_id}/traces/{span.trace_id}"
        assert client.get_trace_url() is None is official.get_trace_url()  # outside a trace
    finally:
        official.shutdown()
    projects_asked = [r for r in receiver.requests if r.path == "/api/public/projects"]
    assert len(projects_asked) == 2  # once by each client: lftrace keeps the id (in the store, too)
    reset_clients()
    again = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    assert again.get_trace_url(trace_id=trace_id) == expected
    assert len([r for r in receiver.requests if r.path == "/api/public/projects"]) == 2  # from the store's meta

    assert Langfuse(public_key="", store=client.settings.store).get_trace_url(trace_id=trace_id) is None  # local
    down = Langfuse(public_key=PK, secret_key=SK, base_url=f"http://127.0.0.1:{closed_port()}", timeout=1)
    assert down.get_trace_url(trace_id=trace_id) is None  # Langfuse unreachable: no link, no exception
