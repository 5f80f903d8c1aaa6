"""Trace builders for store tests, and a worker script run as real subprocesses by the concurrency tests.

python tests/helpers_store.py write STORE WORKER COUNT PER_TXN   -> writes COUNT traces, PER_TXN per transaction
python tests/helpers_store.py claim STORE OWNER DEST LIMIT       -> claims until nothing is left; prints the ids (JSON)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # when run as a script by a subprocess
    sys.path.insert(0, str(SRC))

from lftrace.model import Observation, Trace  # noqa: E402
from lftrace.store import TraceStore  # noqa: E402

BASE_NS = 1_760_000_000_000_000_000  # a fixed clock: 2025-10-09


def new_id(nbytes: int = 16) -> str:
    return os.urandom(nbytes).hex()


def make_trace(
    trace_id: str | None = None,
    *,
    name: str = "agent",
    start: int = BASE_NS,
    error: bool = False,
    interrupted: bool = False,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: list[str] | None = None,
    finished: bool = True,
    answer: str = "4",
) -> Trace:
    """A trace shaped like a small LangGraph run: chain -> (node -> generation, tool), with usage and cost."""
    tid = trace_id or new_id()
    root, node, gen, tool = (new_id(8) for _ in range(4))
    ms = 1_000_000
    observations = [
        Observation(
            id=root,
            trace_id=tid,
            parent_id=None,
            type="CHAIN",
            name=name,
            start_time=start,
            end_time=start + 50 * ms if finished else None,
            input={"messages": [{"role": "user", "content": "what is 2+2?"}]},
            output={"messages": [{"role": "assistant", "content": answer}]} if finished else None,
            metadata={"langgraph_step": 0, "nested": {"a": [1, 2, {"b": None}]}},
        ),
        Observation(
            id=node,
            trace_id=tid,
            parent_id=root,
            type="SPAN",
            name="agent_node",
            start_time=start + 1 * ms,
            end_time=start + 40 * ms,
            input={"x": 1},
            output={"y": 2},
            level="ERROR" if error else "DEFAULT",
            status_message="ValueError: boom" if error else None,
        ),
        Observation(
            id=gen,
            trace_id=tid,
            parent_id=node,
            type="GENERATION",
            name="ChatOpenAI",
            start_time=start + 2 * ms,
            end_time=start + 30 * ms,
            completion_start_time=start + 5 * ms,
            model="gpt-4o-mini",
            model_parameters={"temperature": 0.0, "max_tokens": 64},
            input=[{"role": "user", "content": "what is 2+2?"}],
            output={"role": "assistant", "content": answer},
            usage_details={"input": 12, "output": 3, "total": 15},
            cost_details={"input": 0.0000018, "output": 0.0000018, "total": 0.0000036},
            version="v1",
        ),
        Observation(
            id=tool,
            trace_id=tid,
            parent_id=node,
            type="TOOL",
            name="calculator",
            start_time=start + 31 * ms,
            end_time=start + 35 * ms,
            input="2+2",
            output="4",
            level="WARNING",
        ),
    ]
    metadata: dict[str, Any] = {"run": "test", "unicode": "héllo ✓"}
    if interrupted:
        metadata["interrupted"] = True
    return Trace(
        id=tid,
        name=name,
        timestamp=start,
        input={"messages": [{"role": "user", "content": "what is 2+2?"}]},
        output={"answer": answer} if finished else None,
        session_id=session_id,
        user_id=user_id,
        release="1.2.3",
        version="v7",
        metadata=metadata,
        tags=list(tags or []),
        environment="ci",
        public=True,
        observations=observations,
        end_time=start + 50 * ms if finished else None,
    )


def _wait_for_go() -> None:
    barrier = os.environ.get("LFTRACE_TEST_BARRIER")
    if not barrier:
        return
    (Path(barrier) / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not (Path(barrier) / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("barrier: no go after 60 s")
        time.sleep(0.001)


def _write(store_path: str, worker: str, count: int, per_txn: int) -> None:
    with TraceStore(store_path) as store:
        batch: list[Trace] = []
        for i in range(count):
            batch.append(make_trace(name=f"w{worker}", start=BASE_NS + i * 1000, tags=[f"worker-{worker}"]))
            if len(batch) >= per_txn:
                store.write_traces(batch, destinations=("langfuse",))
                batch = []
        if batch:
            store.write_traces(batch, destinations=("langfuse",))
    print(json.dumps({"worker": worker, "written": count}))


def _claim(store_path: str, owner: str, destination: str, limit: int) -> None:
    claimed: list[str] = []
    with TraceStore(store_path, create=False) as store:
        while True:
            ids = store.claim_pending(destination, owner, limit)
            if not ids:
                break
            claimed.extend(ids)
            time.sleep(0.001)  # let the other claimer in between our transactions
            store.mark_delivered(destination, ids)
    print(json.dumps(claimed))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    _wait_for_go()
    if command == "write":
        _write(args[0], args[1], int(args[2]), int(args[3]))
    elif command == "claim":
        _claim(args[0], args[1], args[2], int(args[3]))
    else:
        raise SystemExit(f"unknown command {command!r}")
