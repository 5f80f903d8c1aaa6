"""Trace ids lead with the time they were made (store locality), stay 32 lowercase hex and unique."""

from __future__ import annotations

import re
import time

from langchain_core.runnables import RunnableLambda

from lftrace import get_client
from lftrace.ids import new_span_id, new_trace_id
from lftrace.langchain import CallbackHandler
from lftrace.sdk import new_trace_id as sdk_trace_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_trace_ids_are_hex_unique_and_lead_with_the_time():
    before = time.time_ns() // 1_000_000
    ids = [new_trace_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert all(HEX32.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)
    later = (time.sleep(0.005), new_trace_id())[1]
    assert later > max(ids)  # made later: sorts after (the store appends instead of scattering)
    assert len({new_span_id() for _ in range(20_000)}) == 20_000


def test_handler_and_sdk_ids_are_time_ordered_and_seeds_still_deterministic(isolated_env):
    handler = CallbackHandler()
    RunnableLambda(lambda x: x).invoke("hi", config={"callbacks": [handler]})
    assert get_client().flush() is True
    now_ms = time.time_ns() // 1_000_000
    for trace_id in (handler.last_trace_id, sdk_trace_id()):
        assert HEX32.match(trace_id) and abs(int(trace_id[:12], 16) - now_ms) < 60_000
    assert sdk_trace_id("external-123") == sdk_trace_id("external-123")
