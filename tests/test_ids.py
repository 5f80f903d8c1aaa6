"""Trace and span ids: 32 / 16 lowercase hex, unique, shared by the handler and the SDK (seeds stay deterministic)."""

from __future__ import annotations

import re

from langchain_core.runnables import RunnableLambda

from lftrace import get_client
from lftrace.ids import new_span_id, new_trace_id
from lftrace.langchain import CallbackHandler
from lftrace.sdk import new_trace_id as sdk_trace_id


def test_ids_are_hex_unique_and_their_short_prefixes_tell_traces_apart():
    ids = [new_trace_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({i[:8] for i in ids}) > 19_900  # `show 3f9c2a1b`: eight characters name a trace
    spans = [new_span_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in spans) and len(set(spans)) == len(spans)


def test_handler_and_sdk_make_random_ids_and_seeds_stay_deterministic(isolated_env):
    handler = CallbackHandler()
    RunnableLambda(lambda x: x).invoke("hi", config={"callbacks": [handler]})
    assert get_client().flush() is True
    assert re.fullmatch(r"[0-9a-f]{32}", handler.last_trace_id or "")
    assert sdk_trace_id() != sdk_trace_id()
    assert sdk_trace_id("external-123") == sdk_trace_id("external-123")
