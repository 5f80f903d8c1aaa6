"""What reaches Langfuse (issue 13, items 3, 4 and 7): usage without our cost by default (LFTRACE_EXPORT_COST=1
sends it), the prompt link on the generation's span, and scores as score-create events on the ingestion API.

Real runs through the client and its delivery to a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.prompts import ChatPromptTemplate

from lftrace import Langfuse
from lftrace.client import reset_clients
from lftrace.config import EXPORT_COST, Settings
from lftrace.langchain import CallbackHandler
from support.fake_models import ToolCallingFakeModel
from support.otlp_receiver import attributes

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


def test_scores_go_to_the_ingestion_api_as_score_create_events(receiver):
    reset_clients()
    client = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    with client.start_as_current_span(name="qa") as span:
        span.score(name="relevance", value=0.5)
        client.score_current_trace(name="verdict", value="good", comment="ok")
        trace_id = span.trace_id
    client.flush()
    posts = [r for r in receiver.requests if r.path == "/api/public/ingestion"]
    assert len(posts) == 1 and posts[0].headers["authorization"].startswith("Basic ")
    batch = json.loads(posts[0].body)["batch"]
    events = {e["body"]["name"]: e for e in batch}
    assert {e["type"] for e in batch} == {"score-create"}
    assert events["relevance"]["body"] == {
        "id": events["relevance"]["body"]["id"],
        "traceId": trace_id,
        "observationId": span.id,
        "name": "relevance",
        "value": 0.5,
        "dataType": "NUMERIC",
        "environment": "default",
    }
    assert (events["verdict"]["body"]["value"], events["verdict"]["body"]["dataType"]) == ("good", "CATEGORICAL")
    assert "observationId" not in events["verdict"]["body"]
    assert client.store.delivery_counts()[f"langfuse:{receiver.url}"]["delivered"] == 1
