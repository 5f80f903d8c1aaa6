"""TraceStore on real SQLite files: round trips, upserts, lookups, listing, migrations, damage, concurrency, outbox."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lftrace.errors import ExitStatus, InputError, StoreError, TraceNotFound
from lftrace.model import Observation, Trace
from lftrace.store import APPLICATION_ID, LATEST_VERSION, MIGRATIONS, WAL_CHECKPOINT_PAGES, TraceStore, no_deliveries
from support.traces import BASE_NS, make_trace, new_id

HELPER = Path(__file__).parent / "support" / "store_worker.py"
SEC = 1_000_000_000


@pytest.fixture
def store(tmp_path: Path):
    with TraceStore(tmp_path / "store.db") as opened:
        yield opened


# -- round trip and upsert ---------------------------------------------------------------------------------------


def test_round_trip_keeps_every_field(store: TraceStore) -> None:
    trace = make_trace(session_id="s1", user_id="u1", tags=["smoke", "ci"])
    store.write_traces([trace])

    got = store.get_trace(trace.id)

    assert got.to_dict() == trace.to_dict()
    assert got.observations[2].usage_details == {"input": 12, "output": 3, "total": 15}
    assert got.observations[2].completion_start_time == trace.observations[2].completion_start_time


def test_trace_heads_read_a_traces_own_fields_without_its_observations(store: TraceStore) -> None:
    first = make_trace(session_id="s1", tags=["a"])
    first.metadata = {"thread_id": "t-1", "k": [1, 2]}
    second = make_trace(session_id="s2")
    store.write_traces([first, second])
    assert first.observations  # make_trace gives it some: the heads leave them out
    heads = store.trace_heads([second.id, new_id(32), first.id, second.id])  # unknown ids skipped, order kept
    assert [h.id for h in heads] == [second.id, first.id]
    assert heads[1].metadata == {"thread_id": "t-1", "k": [1, 2]} and heads[1].session_id == "s1"
    assert heads[1].tags == ["a"] and heads[1].observations == []


def test_round_trip_survives_reopen_and_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    trace = make_trace()
    trace.metadata = {"big": 2**70, "when": object.__name__, 3: "int key", "set": {1}}
    with TraceStore(path) as store:
        store.write_traces([trace])  # odd values are written, not fatal
    with TraceStore(path, create=False) as store:
        got = store.get_trace(trace.id)
    assert got.metadata is not None
    assert got.metadata["3"] == "int key"
    assert got.metadata["when"] == "object"
    assert got.metadata["big"] == str(2**70)  # beyond 64 bits: its digits kept exactly, as text (as exported)
    assert got.metadata["set"] == "{1}"
    assert got.observations[0].input == trace.observations[0].input


def test_observations_come_back_by_start_time_with_parents_first(store: TraceStore) -> None:
    trace = make_trace()
    root, node, gen, tool = trace.observations
    # A child that claims to start before its parent (clock skew), and a shuffled input order.
    gen.start_time = node.start_time - 1
    trace.observations = [tool, gen, root, node]
    store.write_traces([trace])

    got = [o.id for o in store.get_trace(trace.id).observations]

    assert got == [root.id, node.id, gen.id, tool.id]


def test_write_again_replaces_trace_observations_and_tags(store: TraceStore) -> None:
    partial = make_trace(finished=False, tags=["draft", "keep"])
    partial.observations = partial.observations[:2]
    store.write_traces([partial])
    assert store.list_traces()[0].status == "running"

    final = make_trace(partial.id, tags=["keep", "final"], answer="five")
    store.write_traces([final])

    got = store.get_trace(partial.id)
    assert got.to_dict() == final.to_dict()
    assert len(got.observations) == 4
    assert store.count_traces() == 1
    assert [s.tags for s in store.list_traces()] == [["keep", "final"]]
    assert store.list_traces(tag="draft") == []
    assert store.list_traces()[0].status == "ok"


def test_same_id_twice_in_one_batch_last_wins(store: TraceStore) -> None:
    first = make_trace(answer="first")
    second = make_trace(first.id, answer="second")
    store.write_traces([first, second])
    assert store.get_trace(first.id).output == {"answer": "second"}
    assert len(store.get_trace(first.id).observations) == 4


def raised(trace: Trace) -> Trace:
    """The run itself raised: its top-level observation ends in ERROR too (make_trace errs in a node only)."""
    trace.roots()[0].level = "ERROR"
    return trace


def test_summary_columns(store: TraceStore) -> None:
    trace = raised(make_trace(error=True, session_id="s", user_id="u", tags=["a"]))
    store.write_traces([trace])
    (summary,) = store.list_traces()
    assert summary.id == trace.id
    assert summary.level == "ERROR"
    assert summary.status == "error"
    assert summary.handled_errors == 0
    assert summary.total_tokens == 15
    assert summary.total_cost == pytest.approx(0.0000036)
    assert summary.observation_count == 4
    assert summary.latency == pytest.approx(0.05)
    assert (summary.session_id, summary.user_id, summary.tags) == ("s", "u", ["a"])


# -- lookups -----------------------------------------------------------------------------------------------------


def test_prefix_lookup_ambiguity_and_not_found(store: TraceStore) -> None:
    a = make_trace("abc1" + "0" * 28)
    b = make_trace("abc2" + "0" * 28)
    c = make_trace("ffff" + "1" * 28)
    store.write_traces([a, b, c])

    assert store.get_trace(a.id).id == a.id
    assert store.get_trace("abc1").id == a.id
    assert store.get_trace("FFF").id == c.id  # pasted in upper case

    with pytest.raises(InputError) as ambiguous:
        store.get_trace("abc")
    message = str(ambiguous.value)
    assert "'abc' matches 2 traces" in message and "abc1" in message and "abc2" in message
    assert "give more characters" in message
    assert ambiguous.value.exit_code == ExitStatus.USAGE

    with pytest.raises(TraceNotFound) as missing:
        store.get_trace("0123")
    assert "no trace '0123'" in str(missing.value) and str(store.path) in str(missing.value)
    assert "lftrace list" in str(missing.value)
    assert missing.value.exit_code == ExitStatus.NOT_FOUND

    with pytest.raises(InputError):
        store.get_trace("  ")


def test_get_traces_by_exact_ids_keeps_order(store: TraceStore) -> None:
    traces = [make_trace(start=BASE_NS + i) for i in range(3)]
    store.write_traces(traces)
    wanted = [traces[2].id, "f" * 32, traces[0].id, traces[2].id]
    got = store.get_traces(wanted)
    assert [t.id for t in got] == [traces[2].id, traces[0].id]
    assert [t.to_dict() for t in got] == [traces[2].to_dict(), traces[0].to_dict()]
    assert store.get_traces([traces[0].id[:8]]) == []  # exact ids only, no prefixes


def test_last_trace_id(store: TraceStore) -> None:
    assert store.last_trace_id() is None
    old, new = make_trace(start=BASE_NS), make_trace(start=BASE_NS + SEC)
    store.write_traces([new, old])
    assert store.last_trace_id() == new.id


# -- listing -----------------------------------------------------------------------------------------------------


def test_list_filters_combine_and_order_newest_first(store: TraceStore) -> None:
    traces = [
        make_trace(name="qa", start=BASE_NS + 0 * SEC, session_id="s1", user_id="alice", tags=["smoke"]),
        raised(make_trace(name="qa", start=BASE_NS + 1 * SEC, session_id="s1", user_id="bob", error=True)),
        make_trace(name="rag", start=BASE_NS + 2 * SEC, session_id="s2", user_id="alice", tags=["smoke", "rag"]),
        make_trace(name="qa", start=BASE_NS + 3 * SEC, interrupted=True, user_id="alice"),
        make_trace(name="rag", start=BASE_NS + 4 * SEC, tags=["rag"]),
    ]
    store.write_traces(traces)
    t0, t1, t2, t3, t4 = (t.id for t in traces)

    def ids(**filters) -> list[str]:
        return [s.id for s in store.list_traces(**filters)]

    assert ids() == [t4, t3, t2, t1, t0]
    assert ids(limit=2) == [t4, t3]
    assert ids(limit=None) == [t4, t3, t2, t1, t0]
    assert ids(name="qa") == [t3, t1, t0]
    assert ids(level="ERROR") == [t1]
    assert ids(level="error") == [t1]  # a status: cancelled traces are not 'error'
    assert ids(level="cancelled") == [t3]  # Ctrl-C (metadata written before 'cancelled' existed)
    assert ids(level="interrupted") == []
    assert ids(level="ok") == [t4, t2, t0]
    assert ids(level="WARNING") == [t4, t3, t2, t0]
    assert ids(session_id="s1") == [t1, t0]
    assert ids(user_id="alice") == [t3, t2, t0]
    assert ids(tag="smoke") == [t2, t0]
    assert ids(tag="rag", name="rag") == [t4, t2]
    assert ids(since_ns=BASE_NS + 2 * SEC) == [t4, t3, t2]
    assert ids(name="qa", user_id="alice", since_ns=BASE_NS + 1) == [t3]
    assert ids(name="nope") == []
    assert ids(since_ns=10**30) == []  # year 2999 and beyond: beyond SQLite's 64-bit integers
    assert ids(limit=10**30) == [t4, t3, t2, t1, t0]
    assert store.list_traces()[1].status == "cancelled"
    with pytest.raises(InputError, match="unknown level 'loud'"):
        store.list_traces(level="loud")


def test_list_does_not_read_observation_blobs(store: TraceStore) -> None:
    trace = make_trace(tags=["x"])
    store.write_traces([trace])
    read_tables: set[str] = set()

    def authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if action == sqlite3.SQLITE_READ and arg1:
            read_tables.add(arg1)
        return sqlite3.SQLITE_OK

    conn = store._conn
    assert conn is not None
    conn.set_authorizer(authorizer)
    try:
        assert [s.id for s in store.list_traces(tag="x")] == [trace.id]
    finally:
        conn.set_authorizer(None)
    assert "observations" not in read_tables
    assert "traces" in read_tables


def test_iter_traces_yields_full_traces(store: TraceStore) -> None:
    traces = [make_trace(name="a" if i % 2 else "b", start=BASE_NS + i * SEC) for i in range(450)]
    store.write_traces(traces)
    everything = list(store.iter_traces())
    assert [t.id for t in everything] == [t.id for t in traces]  # oldest first, across pages
    assert all(len(t.observations) == 4 for t in everything)
    only_a = list(store.iter_traces(name="a", since_ns=BASE_NS + 400 * SEC))
    assert [t.id for t in only_a] == [t.id for t in traces[401::2]]


# -- file handling -----------------------------------------------------------------------------------------------


def test_migrations_recorded_once_and_file_stamped(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with TraceStore(path) as store:
        first = store.migrations()
    with TraceStore(path) as store, TraceStore(path, create=False) as reader:
        assert store.migrations() == first
        assert reader.migrations() == first
    assert [(v, n) for v, n, _ in first] == [(v, fn.__name__) for v, _, fn in MIGRATIONS]
    assert first[-1][0] == LATEST_VERSION
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()
    assert {"traces_timestamp", "traces_name", "trace_tags_tag", "deliveries_due"} <= indexes


def test_read_path_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "traces.db"
    with pytest.raises(StoreError) as err:
        TraceStore(path, create=False)
    assert f"no trace store at {path}" in str(err.value)
    assert "LFTRACE_STORE" in str(err.value)
    assert err.value.exit_code == ExitStatus.STORE
    assert not path.exists() and not path.parent.exists()


def test_meta_round_trip(store: TraceStore) -> None:
    assert store.get_meta("project") is None
    store.set_meta("project", "p1")
    store.set_meta("project", "p2")
    assert store.get_meta("project") == "p2"


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"hello, I am a text file\n", b"SQLite format 3\x00" + os.urandom(200)],
    ids=["random-bytes", "text", "bad-sqlite-header"],
)
def test_garbage_file_gives_store_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "traces.db"
    path.write_bytes(content)
    for create in (True, False):
        with pytest.raises(StoreError) as err:
            TraceStore(path, create=create)
        message = str(err.value)
        assert str(path) in message and "LFTRACE_STORE" in message
        assert "\n" not in message
    assert path.read_bytes() == content  # never rewritten


def test_truncated_store_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    with TraceStore(path) as store:
        store.write_traces([make_trace() for _ in range(200)])
        conn = store._conn
        assert conn is not None
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    for wal in tmp_path.glob("traces.db-*"):
        wal.unlink()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError) as err, TraceStore(path, create=False) as damaged:
        damaged.list_traces(limit=None)
        list(damaged.iter_traces())
    assert str(path) in str(err.value) and ("corrupted" in str(err.value) or "not an lftrace" in str(err.value))


def test_writers_checkpoint_the_wal_every_few_thousand_pages(tmp_path: Path) -> None:
    """The WAL goes back into the database once it holds WAL_CHECKPOINT_PAGES (not SQLite's default 1,000: each
    checkpoint copies the hot pages every commit rewrote, with two fsyncs), and it does go back: the file stops
    growing there (it keeps its size once reset; SQLite reuses it from the start)."""
    path = tmp_path / "traces.db"
    wal = tmp_path / "traces.db-wal"
    with TraceStore(path) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
        frame = conn.execute("PRAGMA page_size").fetchone()[0] + 24  # a WAL frame: page plus its header
        answer = "lorem " * 8_000  # ~48 KB, in four values of each trace: ~50 pages a trace
        written = 0
        while wal.stat().st_size < 2_000 * frame:  # past the default's threshold, twice over
            store.write_traces([make_trace(answer=answer)])
            written += 1
            assert written < 400, "the WAL never grew past 2,000 pages"
        per_trace = wal.stat().st_size / written
        for _ in range(int(3 * WAL_CHECKPOINT_PAGES * frame / per_trace)):  # three thresholds' worth more
            store.write_traces([make_trace(answer=answer)])
        assert wal.stat().st_size < WAL_CHECKPOINT_PAGES * frame + 4 * per_trace
        assert store.count_traces() == written + int(3 * WAL_CHECKPOINT_PAGES * frame / per_trace)


def test_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        TraceStore(path)
    assert f"{path} is not an lftrace trace store" in str(err.value)
    conn = sqlite3.connect(path)
    try:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # we did not switch it to WAL
    finally:
        conn.close()


def test_other_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an lftrace trace store"):
        TraceStore(path, create=False)


def test_store_from_newer_lftrace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    TraceStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="created by a newer lftrace"):
        TraceStore(path, create=False)


def test_store_of_another_lftrace_build_is_refused_by_its_migration_names(tmp_path: Path) -> None:
    """Same numbers, another schema (a branch's store): refused on open, naming the migration, not later by a
    missing table; the CLI says so in one line, exit 7, and the file is left as it was."""
    path = tmp_path / "branch.db"
    with TraceStore(path) as store:
        store.write_traces([make_trace()])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE _migrations SET name = 'm002_something_else' WHERE version = 2")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for create in (True, False):
        with pytest.raises(StoreError, match="its migration 2 is 'm002_something_else', this lftrace's is 'm002_"):
            TraceStore(path, create=create)
    listed = subprocess.run(
        [sys.executable, "-m", "lftrace", "--store", str(path), "list"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == ExitStatus.STORE and len(listed.stderr.splitlines()) == 1, listed.stderr
    assert "made by another lftrace build" in listed.stderr and "move it away" in listed.stderr
    assert path.read_bytes() == before


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with TraceStore(path, create=False) as store:
        assert store.list_traces() == []
        assert store.migrations()[0][0] == 1


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "c.db")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.list_traces()


# -- concurrency -------------------------------------------------------------------------------------------------


def _run_workers(commands: list[list[str]], barrier: Path) -> list[str]:
    """Run helper workers as real processes, released together once all have started."""
    barrier.mkdir()
    env = {**os.environ, "LFTRACE_TEST_BARRIER": str(barrier)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPER), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for cmd in commands
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            break  # a worker died early: its stderr is reported below
        time.sleep(0.005)
    (barrier / "go").touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        outputs.append(out)
    return outputs


def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # not created up front: the workers race to create and migrate it
    _run_workers([["write", str(path), str(w), "200", "1"] for w in range(4)], tmp_path / "barrier")
    with TraceStore(path, create=False) as store:
        assert store.count_traces() == 800
        for w in range(4):
            listed = store.list_traces(limit=None, name=f"w{w}", tag=f"worker-{w}")
            assert len(listed) == 200
            assert all(s.observation_count == 4 for s in listed)
        assert store.delivery_counts()["langfuse"]["pending"] == 800
        assert len(store.migrations()) == len(MIGRATIONS)


def test_threads_sharing_one_store(store: TraceStore) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                store.write_traces([make_trace(), make_trace()], destinations=("d",))
                store.list_traces(limit=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_traces() == 200


def test_concurrent_claims_from_two_processes_never_overlap(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with TraceStore(path) as store:
        traces = [make_trace(start=BASE_NS + i) for i in range(300)]
        store.write_traces(traces, destinations=("otlp",))
    outputs = _run_workers([["claim", str(path), f"owner-{n}", "otlp", "7"] for n in range(3)], tmp_path / "barrier")
    claimed = [json.loads(out) for out in outputs]
    flat = [tid for ids in claimed for tid in ids]
    assert len(flat) == len(set(flat)), "a trace was claimed twice"
    assert set(flat) == {t.id for t in traces}
    with TraceStore(path, create=False) as store:
        counts = store.delivery_counts()["otlp"]
        assert counts == {**no_deliveries(), "delivered": 300}


# -- outbox ------------------------------------------------------------------------------------------------------


def test_claims_are_leased_oldest_first_and_exclusive(store: TraceStore) -> None:
    traces = [make_trace(start=BASE_NS + i * SEC) for i in range(5)]
    store.write_traces(list(reversed(traces)), destinations=("a", "b"))
    ids = [t.id for t in traces]

    assert store.claim_pending("a", "w1", 3) == ids[:3]
    assert store.claim_pending("a", "w2", 10) == ids[3:]  # claimed rows are invisible
    assert store.claim_pending("a", "w3", 10) == []
    assert store.claim_pending("b", "w1", 2) == ids[:2]  # destinations are independent
    assert store.claim_pending("a", "w1", 0) == []

    store.release("a", ids[:2])
    assert store.claim_pending("a", "w3", 10) == ids[:2]

    assert store.claim_pending("b", "w4", 10, lease_seconds=0) == ids[2:]
    assert store.claim_pending("b", "w5", 10) == ids[2:]  # an expired lease can be taken over


def test_retry_failed_delivered_bookkeeping(store: TraceStore) -> None:
    t1, t2, t3 = (make_trace(start=BASE_NS + i) for i in range(3))
    store.write_traces([t1, t2, t3], destinations=("langfuse",))
    assert store.delivery_state(t1.id) == {"langfuse": "pending"}
    assert store.delivery_counts() == {"langfuse": {**no_deliveries(), "pending": 3}}

    assert store.claim_pending("langfuse", "me", 10) == [t1.id, t2.id, t3.id]
    store.mark_delivered("langfuse", [t1.id])
    store.mark_retry("langfuse", [t2.id], "HTTP 503", time.time_ns() + 3600 * SEC)
    store.mark_failed("langfuse", [t3.id], "HTTP 401: invalid credentials")

    counts = store.delivery_counts()["langfuse"]
    assert counts == {
        **no_deliveries(),
        "pending": 1,
        "delivered": 1,
        "failed": 1,
        "last_error": "HTTP 401: invalid credentials",
    }
    assert store.delivery_state(t2.id) == {"langfuse": "pending"}
    assert store.delivery_state(t3.id) == {"langfuse": "failed"}
    assert store.claim_pending("langfuse", "me", 10) == []  # t2 waits for its backoff, t3 is failed
    assert store.claim_pending("langfuse", "me", 10, include_failed=True) == [t3.id]

    store.mark_retry("langfuse", [t2.id], "HTTP 502", 0)
    assert store.claim_pending("langfuse", "me", 10) == [t2.id]
    store.mark_retry("langfuse", [t2.id, t3.id], "timeout", 0)
    conn = sqlite3.connect(store.path)
    try:
        attempts = dict(conn.execute("SELECT trace_id, attempts FROM deliveries").fetchall())
    finally:
        conn.close()
    assert attempts == {t1.id: 0, t2.id: 3, t3.id: 2}
    assert store.delivery_counts()["langfuse"]["last_error"] == "timeout"
    store.mark_delivered("langfuse", [t2.id, t3.id])
    assert store.delivery_counts()["langfuse"] == {**no_deliveries(), "delivered": 3}


def test_rewritten_trace_is_delivered_again(store: TraceStore) -> None:
    trace = make_trace(finished=False)
    store.write_traces([trace], destinations=("d",))
    assert store.claim_pending("d", "me", 10) == [trace.id]
    store.mark_delivered("d", [trace.id])
    assert store.delivery_state(trace.id) == {"d": "delivered"}

    store.write_traces([make_trace(trace.id)], destinations=("d",))
    assert store.delivery_state(trace.id) == {"d": "pending"}
    assert store.claim_pending("d", "me", 10) == [trace.id]


def test_rewrite_during_delivery_is_not_lost(store: TraceStore) -> None:
    trace = make_trace(finished=False)
    store.write_traces([trace], destinations=("d",))
    assert store.claim_pending("d", "me", 10) == [trace.id]  # the partial trace is being exported...
    store.write_traces([make_trace(trace.id)], destinations=("d",))  # ...when the final version lands
    store.mark_delivered("d", [trace.id])
    assert store.delivery_state(trace.id) == {"d": "pending"}
    assert store.claim_pending("d", "me", 10) == [trace.id]
    store.mark_delivered("d", [trace.id])
    assert store.delivery_state(trace.id) == {"d": "delivered"}


def test_enqueue_adds_missing_rows_for_a_new_destination(store: TraceStore) -> None:
    t1, t2, t3 = (make_trace(start=BASE_NS + i) for i in range(3))
    store.write_traces([t1, t2], destinations=("old",))
    store.write_traces([t3])

    assert store.enqueue("new", [t1.id, "f" * 32]) == 1  # unknown ids are ignored
    assert store.enqueue("new") == 2
    assert store.enqueue("new") == 0
    assert store.delivery_counts()["new"]["pending"] == 3
    assert store.delivery_state(t3.id) == {"new": "pending"}
    assert store.delivery_state(t1.id) == {"new": "pending", "old": "pending"}


def test_batched_writes_are_fast_enough(store: TraceStore) -> None:
    # PERF_FACTS: ~20 us per ~1 KB row batched. A trace here is 5 rows (+ tag + delivery); allow a shared, noisy CI
    # machine a generous margin while still catching a regression to one transaction per row.
    traces = [make_trace(tags=["perf"]) for _ in range(500)]
    started = time.perf_counter()
    for start in range(0, len(traces), 100):
        store.write_traces(traces[start : start + 100], destinations=("d",))
    per_trace = (time.perf_counter() - started) / len(traces)
    assert store.count_traces() == 500
    assert per_trace < 2e-3, f"{per_trace * 1e6:.0f} us per trace"


def test_observation_without_parent_in_trace_is_kept(store: TraceStore) -> None:
    trace = make_trace()
    trace.observations.append(
        Observation(
            id=new_id(8), trace_id=trace.id, parent_id="0" * 16, type="EVENT", name="orphan", start_time=BASE_NS
        )
    )
    store.write_traces([trace])
    assert [o.name for o in store.get_trace(trace.id).observations][:2] == ["agent", "orphan"]


def test_migration_4_converts_stored_statuses(tmp_path: Path) -> None:
    """Stores written before issue 9: Ctrl-C was 'interrupted' and any ERROR observation made the trace 'error'."""
    path = tmp_path / "old.db"
    handled, raised_trace, ctrl_c = make_trace(error=True), raised(make_trace(error=True)), make_trace()
    with TraceStore(path) as opened:
        opened.write_traces([handled, raised_trace, ctrl_c])
    conn = sqlite3.connect(path)
    conn.executescript(
        f"UPDATE traces SET status = 'error' WHERE id = '{handled.id}'; "
        f"UPDATE traces SET status = 'interrupted' WHERE id = '{ctrl_c.id}'; "
        "ALTER TABLE traces DROP COLUMN handled_errors; DELETE FROM _migrations WHERE version = 4; "
        "PRAGMA user_version = 3;"
    )
    conn.close()
    with TraceStore(path) as opened:
        got = {s.id: (s.status, s.handled_errors) for s in opened.list_traces()}
    assert got == {handled.id: ("ok", 1), raised_trace.id: ("error", 0), ctrl_c.id: ("cancelled", 0)}


def test_migration_4_on_a_store_that_already_has_its_column(tmp_path: Path) -> None:
    """A store written by a pre-release build numbered its migrations differently: the column is there, the record
    of migration 4 is not. It opens (it failed with 'duplicate column name: handled_errors') and keeps its traces."""
    path = tmp_path / "prerelease.db"
    trace = make_trace()
    with TraceStore(path) as opened:
        opened.write_traces([trace])
    conn = sqlite3.connect(path)
    conn.executescript("DELETE FROM _migrations WHERE version >= 4; PRAGMA user_version = 3;")
    conn.close()
    with TraceStore(path) as opened:
        assert [s.id for s in opened.list_traces()] == [trace.id]
        assert [v for v, _, _ in opened.migrations()] == list(range(1, LATEST_VERSION + 1))


def test_round_trip_through_the_store_keeps_every_field(store: TraceStore) -> None:
    """Every dataclass field is set and compared: a field the store's rows would drop fails here."""
    from support.traces import every_field_trace, unset_fields

    trace = every_field_trace()
    assert unset_fields(trace) == [] and unset_fields(trace.observations[0]) == []
    store.write_traces([trace])
    assert dataclasses.asdict(store.get_trace(trace.id)) == dataclasses.asdict(trace)


# -- multi-row inserts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 7, 256, 300, 1000])
def test_insert_rows_writes_what_executemany_writes_in_a_few_statements(tmp_path: Path, count: int) -> None:
    """Rows in order, a key repeated within one statement upserted over its earlier row as executemany does it,
    and 1,000 rows in 7 statements (256 x 3, 128, 64, 32, 8), not 1,000."""
    from lftrace.store import insert_rows

    head = "INSERT INTO t (k, v)"
    tail = "ON CONFLICT (k) DO UPDATE SET v = t.v || '+' || excluded.v, n = n + 1"
    rows = [(i % max(count * 4 // 5, 1), f"v{i}") for i in range(count)]  # the last fifth repeats earlier keys
    tables = {}
    for way in ("executemany", "insert_rows"):
        conn = sqlite3.connect(tmp_path / f"{way}.db")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER DEFAULT 0)")
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        if way == "executemany":
            conn.executemany(f"{head} VALUES (?, ?) {tail}", rows)
        else:
            insert_rows(conn, head, rows, tail)
        conn.set_trace_callback(None)
        conn.commit()
        tables[way] = conn.execute("SELECT k, v, n FROM t ORDER BY k").fetchall()
        conn.close()
        if way == "insert_rows":
            assert len([s for s in statements if s.startswith("INSERT")]) == count // 256 + bin(count % 256).count("1")
    assert tables["insert_rows"] == tables["executemany"]
    assert len(tables["executemany"]) == max(count * 4 // 5, 1)


def test_insert_rows_keeps_under_sqlites_variable_limit(tmp_path: Path) -> None:
    from lftrace.store import insert_rows

    conn = sqlite3.connect(tmp_path / "limited.db")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 12 columns: at most 8 rows per statement
    conn.execute(f"CREATE TABLE wide ({', '.join(f'c{i}' for i in range(12))})")
    insert_rows(conn, "INSERT INTO wide", [tuple(range(r, r + 12)) for r in range(50)])
    assert conn.execute("SELECT count(*), sum(c0), max(c11) FROM wide").fetchone() == (50, sum(range(50)), 60)
