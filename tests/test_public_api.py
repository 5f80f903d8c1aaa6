"""``Langfuse.api`` / ``async_api``: the public API under the names of the Langfuse SDK's generated client.

Without keys the answers come from the local store (``lftrace serve``'s routes, in the process); with keys from
"Langfuse", here a real ``lftrace serve`` subprocess, which the official SDK's own generated client reads too, so
the two clients' answers are compared field by field.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from langchain_core.messages import HumanMessage

from lftrace import Langfuse
from lftrace.langchain import CallbackHandler
from lftrace.public_api import ApiError
from serve_process import ServeProcess
from support.fake_models import ToolCallingFakeModel, build_agent


def traced_run(langfuse: Langfuse) -> str:
    """One LangGraph agent run traced by ``langfuse``, with a score; its trace id."""
    handler = CallbackHandler(public_key=langfuse.settings.public_key or "")
    graph = build_agent(ToolCallingFakeModel())
    graph.invoke(
        {"messages": [HumanMessage("Paris")]},
        config={"callbacks": [handler], "metadata": {"langfuse_session_id": "s-1"}},
    )
    trace_id = handler.last_trace_id
    assert trace_id is not None
    langfuse.create_score(trace_id=trace_id, name="helpful", value=0.9, comment="fine")
    langfuse.flush()
    return trace_id


def test_without_keys_the_api_reads_the_local_store(isolated_env):
    langfuse = Langfuse(public_key="")
    trace_id = traced_run(langfuse)
    stored = langfuse.get_trace(trace_id)

    page = langfuse.api.observations.get_many(trace_id=trace_id, fields="core,basic,usage", limit=100)
    assert sorted(o.id for o in page.data) == sorted(o.id for o in stored.observations)
    generation = next(o for o in page.data if o.type == "GENERATION")
    assert isinstance(generation.start_time, dt.datetime) and generation.start_time.tzinfo is not None
    assert generation.trace_id == trace_id and isinstance(generation.usage_details, dict)
    assert generation.usage_details["input"] > 0  # a plain dict, as the SDK's models hold it
    first = langfuse.api.observations.get_many(trace_id=trace_id, limit=2)
    assert len(first.data) == 2 and first.meta.cursor  # cursor pagination
    rest = langfuse.api.observations.get_many(trace_id=trace_id, limit=100, cursor=first.meta.cursor)
    assert len(first.data) + len(rest.data) == len(stored.observations)

    trace = langfuse.api.trace.get(trace_id)  # the v1 read of SDK 3, still served
    assert (trace.id, trace.session_id, len(trace.observations)) == (trace_id, "s-1", len(stored.observations))
    assert [(s.name, s.value, s.comment) for s in trace.scores] == [("helpful", 0.9, "fine")]
    assert trace.model_dump()["sessionId"] == "s-1" and trace["id"] == trace_id
    assert [t.id for t in langfuse.api.trace.list(session_id="s-1").data] == [trace_id]
    assert langfuse.api.sessions.get("s-1").id == "s-1"
    scores = langfuse.api.scores.get_many(trace_id=trace_id, fields="details")
    assert [(s.name, s.value, s.comment) for s in scores.data] == [("helpful", 0.9, "fine")]

    langfuse.create_dataset(name="capitals")
    langfuse.create_dataset_item(dataset_name="capitals", input="France", expected_output="Paris", id="fr")
    assert langfuse.api.datasets.get("capitals").name == "capitals"
    items = langfuse.api.dataset_items.list(dataset_name="capitals").data
    assert [(i.id, i.input, i.expected_output) for i in items] == [("fr", "France", "Paris")]
    assert langfuse.api.health.health().status == "OK"

    async def read_async() -> list[str]:
        answer = await langfuse.async_api.observations.get_many(trace_id=trace_id, limit=100)
        return sorted(o.id for o in answer.data)

    assert asyncio.run(read_async()) == sorted(o.id for o in stored.observations)


def test_observation_pages_are_iterated_as_the_sdk_5_pages_them(isolated_env):
    langfuse = Langfuse(public_key="")
    trace_id = traced_run(langfuse)
    traced_run(langfuse)  # another trace: the filter must keep it out
    stored = sorted(o.id for o in langfuse.get_trace(trace_id).observations)
    assert len(stored) > 7

    pages = list(langfuse.iter_observation_pages(trace_id=trace_id, limit=3))
    assert [len(p.data) for p in pages[:-1]] == [3] * (len(pages) - 1) and 0 < len(pages[-1].data) <= 3
    assert pages[-1].meta.cursor is None and all(p.meta.cursor for p in pages[:-1])
    assert sorted(o.id for p in pages for o in p.data) == stored

    # max_items: the last request asks only for what is left, and its cursor resumes right after it
    head = list(langfuse.iter_observation_pages(trace_id=trace_id, limit=3, max_items=4))
    assert [len(p.data) for p in head] == [3, 1]
    rest = langfuse.iter_observation_pages(trace_id=trace_id, limit=100, cursor=head[-1].meta.cursor)
    assert sorted([o.id for p in head for o in p.data] + [o.id for p in rest for o in p.data]) == stored

    generations = [o for p in langfuse.iter_observation_pages(trace_id=trace_id, type="GENERATION") for o in p.data]
    assert generations and {o.type for o in generations} == {"GENERATION"}
    assert {o.trace_id for o in generations} == {trace_id}

    async def read_async() -> list[list[str]]:
        return [[o.id for o in p.data] async for p in langfuse.aiter_observation_pages(trace_id=trace_id, limit=5)]

    async_pages = asyncio.run(read_async())
    assert len(async_pages) == -(-len(stored) // 5) and sorted(i for page in async_pages for i in page) == stored
    with pytest.raises(TypeError):
        langfuse.iter_observation_pages(trace="x")  # a misspelt filter fails at the call, as the SDK's does
    with pytest.raises(TypeError):
        langfuse.aiter_observation_pages(trace="x")


def test_errors_are_the_sdk_s_api_error_and_clear_mistakes(isolated_env):
    langfuse = Langfuse(public_key="")
    with pytest.raises(ApiError) as missing:
        langfuse.api.trace.get("f" * 32)
    assert missing.value.status_code == 404 and "not found" in str(missing.value.body)
    with pytest.raises(TypeError, match="needs trace_id"):
        langfuse.api.trace.get()
    with pytest.raises(AttributeError, match=r"api.trace has no fetch\(\) \(it has: get, list\)"):
        langfuse.api.trace.fetch()
    with pytest.raises(AttributeError, match="lftrace's api has no annotation_queues"):
        langfuse.api.annotation_queues.list()


def test_with_keys_the_api_is_langfuse_s_and_answers_as_the_official_client_does(tmp_path):
    from langfuse.api.client import LangfuseAPI

    with ServeProcess(tmp_path / "langfuse.db") as server:
        langfuse = Langfuse(public_key="pk-lf-api", secret_key="sk-lf-api", base_url=server.url)
        trace_id = traced_run(langfuse)
        official = LangfuseAPI(base_url=server.url, username="pk-lf-api", password="sk-lf-api")
        fields = "core,basic,time,io,metadata,model,usage,metrics"
        theirs = official.observations.get_many(trace_id=trace_id, fields=fields, limit=100).data
        ours = langfuse.api.observations.get_many(trace_id=trace_id, fields=fields, limit=100).data
        assert len(ours) == len(theirs) > 5
        for mine, reference in zip(ours, theirs, strict=True):
            for name in ("id", "trace_id", "type", "name", "start_time", "end_time", "parent_observation_id",
                         "level", "model", "usage_details", "cost_details", "input", "output", "metadata"):  # fmt: skip
                assert getattr(mine, name) == getattr(reference, name), name
        from langfuse import Langfuse as OfficialLangfuse

        if hasattr(OfficialLangfuse, "iter_observation_pages"):  # SDK 5: both clients page the same answers
            sdk = OfficialLangfuse(public_key="pk-lf-api", secret_key="sk-lf-api", base_url=server.url)
            their_pages = [[o.id for o in p.data] for p in sdk.iter_observation_pages(trace_id=trace_id, limit=4)]
            our_pages = [[o.id for o in p.data] for p in langfuse.iter_observation_pages(trace_id=trace_id, limit=4)]
            assert our_pages == their_pages and len(their_pages) > 1
            sdk.shutdown()
        their_scores = official.scores.get_many(trace_id=trace_id, fields="details").data
        our_scores = langfuse.api.scores.get_many(trace_id=trace_id, fields="details").data
        assert [(s.name, s.value, s.comment, s.timestamp) for s in our_scores] == [
            (s.name, s.value, s.comment, s.timestamp) for s in their_scores
        ]
        # the answers came from "Langfuse": the local store has no dataset the server has
        official.datasets.create(name="remote-only")
        assert langfuse.api.datasets.get("remote-only").name == "remote-only"
        assert langfuse.store.get_dataset("remote-only") is None
        langfuse.shutdown()


def test_without_keys_a_long_run_s_trace_is_read_whole_with_its_messages_shared(isolated_env):
    from sample_graphs.long_loop import build_graph, loop_input, run_config

    from lftrace.sharing import MIN_SHARED

    langfuse = Langfuse(public_key="")
    handler = CallbackHandler()
    build_graph().invoke(loop_input(30), config=run_config(30, [handler]))
    langfuse.flush()
    trace_id = handler.last_trace_id
    assert trace_id is not None

    trace = langfuse.api.trace.get(trace_id)
    as_served = langfuse.api.http().get(f"/api/public/traces/{trace_id}").json()
    assert trace.model_dump() == as_served  # the route's JSON, field for field
    assert trace.project_id == "lftrace-local" and isinstance(trace.timestamp, dt.datetime)

    # read from the store, not through JSON text: a message in the conversation is one object in every input
    lists = [
        o.input["messages"]
        for o in trace.observations
        if isinstance(o.input, dict) and len(o.input.get("messages") or []) >= MIN_SHARED
    ]
    assert len(lists) > 10
    first_messages = {id(messages[0]) for messages in lists}
    assert len(first_messages) == 1

    with pytest.raises(ApiError) as missing:  # an unknown id is still the route's 404
        langfuse.api.trace.get("e" * 32)
    assert missing.value.status_code == 404


def test_an_answer_read_is_let_go_at_once_not_left_to_the_garbage_collector(tmp_path):
    """httpx's responses sit in a reference cycle (encode/httpx#3733): each answer from Langfuse, megabytes for
    a long trace, lived until a collection; the client lets go of it once read."""
    import gc

    import httpx

    with ServeProcess(tmp_path / "langfuse.db") as server:
        langfuse = Langfuse(public_key="pk-lf-api", secret_key="sk-lf-api", base_url=server.url)
        assert langfuse.api.health.health().status == "OK"  # the HTTP client exists before counting
        gc.collect()
        gc.disable()
        try:
            for _ in range(10):
                assert langfuse.api.health.health().status == "OK"
            alive = sum(1 for obj in gc.get_objects() if isinstance(obj, httpx.Response))
        finally:
            gc.enable()
            langfuse.shutdown()
    assert alive == 0
