"""A worker run as a real subprocess by the store concurrency tests (several processes on one store).

python tests/support/store_worker.py write STORE WORKER COUNT PER_TXN   -> writes COUNT traces, PER_TXN per transaction
python tests/support/store_worker.py claim STORE OWNER DEST LIMIT       -> claims until nothing is left; prints the ids (JSON)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for _path in (TESTS.parent / "src", TESTS):  # run as a script: lftrace and the support package
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from lftrace.model import Trace  # noqa: E402
from lftrace.store import TraceStore  # noqa: E402
from support.traces import BASE_NS, make_trace  # noqa: E402


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
