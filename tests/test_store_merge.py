"""TraceStore.write_traces(merge=True): fragments of one trace id (runs, threads, processes) add up to one trace."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lftrace.config import Settings
from lftrace.delivery import Deliverer, destinations_for
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore
from support.otlp_receiver import running_receiver
from support.traces import BASE_NS, make_trace, new_id

MS = 1_000_000
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def store(tmp_path: Path):
    with TraceStore(tmp_path / "store.db") as opened:
        yield opened


def fragment(trace_id: str, start: int, **kw) -> Trace:
    """One top-level run of a shared trace: make_trace's four observations with fresh ids."""
    return make_trace(trace_id, start=start, **kw)


def test_merge_combines_observations_and_trace_fields(store: TraceStore) -> None:
    tid = new_id()
    first = fragment(tid, BASE_NS + 10 * MS, tags=["a", "b"], session_id="s1", answer="first")
    second = fragment(tid, BASE_NS, tags=["b", "c"], user_id="u2", answer="second", error=True)
    second.roots()[0].level = "ERROR"  # this run raised (make_trace errs in a node only)
    second.session_id = None
    second.metadata = {"run": "second", "extra": 1}
    second.name = ""
    store.write_traces([first], merge=True)
    store.write_traces([second], merge=True)

    got = store.get_trace(tid)
    assert {o.id for o in got.observations} == {o.id for o in first.observations + second.observations}
    assert len(got.observations) == 8
    assert got.timestamp == BASE_NS  # min start
    assert got.end_time == BASE_NS + 60 * MS  # max end (first ends at +10 + 50 ms)
    assert got.tags == ["a", "b", "c"]  # union, first seen first
    assert got.session_id == "s1"  # the incoming value is empty: the stored one stays
    assert got.user_id == "u2"  # the incoming non-empty value wins
    assert got.name == "agent"  # an empty incoming name does not erase the stored one
    assert got.output == {"answer": "second"}
    assert got.metadata == {"run": "second", "unicode": "héllo ✓", "extra": 1}

    (summary,) = store.list_traces()
    assert summary.observation_count == 8
    assert summary.total_tokens == 30  # 15 + 15, recomputed from the stored observations
    assert summary.total_cost == pytest.approx(2 * 0.0000036)
    assert summary.level == "ERROR"  # worst of
    assert summary.status == "error"
    assert summary.latency == pytest.approx(0.06)
    assert summary.tags == ["a", "b", "c"]
    # the summary columns agree with what the model computes from the merged trace
    assert (summary.total_tokens, summary.total_cost, summary.level) == (got.total_tokens, got.total_cost, got.level)


def test_merge_never_lowers_level_or_status(store: TraceStore) -> None:
    tid = new_id()
    store.write_traces([fragment(tid, BASE_NS, interrupted=True)], merge=True)  # Ctrl-C: cancelled
    store.write_traces([fragment(tid, BASE_NS + MS, error=True)], merge=True)
    store.write_traces([fragment(tid, BASE_NS + 2 * MS)], merge=True)
    (summary,) = store.list_traces()
    assert (summary.level, summary.status, summary.handled_errors) == ("ERROR", "cancelled", 0)


def test_merge_keeps_handled_errors_and_a_raised_run(store: TraceStore) -> None:
    tid = new_id()
    store.write_traces([fragment(tid, BASE_NS, error=True)], merge=True)  # a node failed, the run finished
    store.write_traces([fragment(tid, BASE_NS + MS, error=True)], merge=True)
    (summary,) = store.list_traces()
    assert (summary.level, summary.status, summary.handled_errors) == ("ERROR", "ok", 2)
    assert (store.get_trace(tid).status, store.get_trace(tid).handled_errors) == ("ok", 2)
    raised = fragment(tid, BASE_NS + 2 * MS, error=True)
    raised.roots()[0].level = "ERROR"
    store.write_traces([raised], merge=True)
    (summary,) = store.list_traces()
    assert (summary.status, summary.handled_errors) == ("error", 0)


def test_merge_upserts_an_observation_written_again(store: TraceStore) -> None:
    partial = make_trace(finished=False)
    partial.observations = partial.observations[:2]
    for obs in partial.observations:
        obs.end_time = None
    store.write_traces([partial], merge=True)
    assert store.list_traces()[0].status == "running"

    final = make_trace(partial.id)
    for old, new in zip(partial.observations, final.observations, strict=False):
        new.id = old.id  # the same runs, now finished
    store.write_traces([final], merge=True)

    got = store.get_trace(partial.id)
    assert len(got.observations) == 4
    assert all(o.end_time is not None for o in got.observations)
    assert got.to_dict() == final.to_dict()
    assert store.list_traces()[0].status == "ok"


def test_same_id_twice_in_one_batch_is_merged_not_dropped(store: TraceStore) -> None:
    tid = new_id()
    a, b = fragment(tid, BASE_NS), fragment(tid, BASE_NS + MS)
    other = make_trace()
    fresh = store.write_traces([a, other, b], destinations=("d",), merge=True)
    assert fresh == {other.id}  # only the unshared trace is stored exactly as given
    assert len(store.get_trace(tid).observations) == 8
    assert {s.id: s.observation_count for s in store.list_traces(limit=None)} == {tid: 8, other.id: 4}
    assert store.delivery_state(tid) == {"d": "pending"}


@pytest.mark.parametrize("merge", [True, False])
def test_an_observation_twice_in_one_trace_is_stored_and_counted_once_as_its_last_version(
    store: TraceStore, merge: bool
) -> None:
    stored_before = make_trace()
    store.write_traces([stored_before], merge=merge)
    for trace in (make_trace(), make_trace(stored_before.id)):  # a new trace, and one written over a stored one
        gen = next(o for o in trace.observations if o.type == "GENERATION")
        again = dataclasses.replace(gen, usage_details={"input": 1, "output": 1, "total": 2}, level="WARNING")
        trace.observations.append(again)
        fresh = store.write_traces([trace], destinations=("d",), merge=merge)
        # not "fresh": what is stored is not the trace as given, so delivery must read it from the store
        assert fresh == set()
        got = store.get_trace(trace.id)
        assert [o for o in got.observations if o.id == gen.id] == [again]
        kept = len(stored_before.observations) if merge and trace.id == stored_before.id else 0
        assert len(got.observations) == kept + len(trace.observations) - 1
        assert _stored_totals(store, trace.id) == _totals(got)
        assert _totals(got)[1] == "WARNING"


def test_replace_is_still_the_default(store: TraceStore) -> None:
    tid = new_id()
    store.write_traces([fragment(tid, BASE_NS)])
    assert store.write_traces([fragment(tid, BASE_NS)]) == set()  # replaced: not new
    assert len(store.get_trace(tid).observations) == 4


def test_merge_sends_every_destination_the_merged_trace_again(store: TraceStore) -> None:
    tid = new_id()
    store.write_traces([fragment(tid, BASE_NS)], destinations=("a", "b"), merge=True)
    assert store.claim_revisions("a", "me", 10) == [(tid, 0)]
    store.mark_delivered("a", [tid])
    store.mark_delivered("b", [tid])
    # a process configured for another destination only merges a fragment: a and b get the whole trace again
    store.write_traces([fragment(tid, BASE_NS + MS)], destinations=("c",), merge=True)
    assert store.delivery_state(tid) == {"a": "pending", "b": "pending", "c": "pending"}
    assert store.claim_revisions("a", "me", 10) == [(tid, 1)]
    assert store.claim_revisions("c", "me", 10) == [(tid, 0)]


def test_merge_during_delivery_is_delivered_again(store: TraceStore) -> None:
    tid = new_id()
    store.write_traces([fragment(tid, BASE_NS)], destinations=("d",), merge=True)
    assert store.claim_pending("d", "me", 10) == [tid]
    store.write_traces([fragment(tid, BASE_NS + MS)], destinations=("d",), merge=True)
    store.mark_delivered("d", [tid])  # the export in flight had only the first fragment
    assert store.delivery_state(tid) == {"d": "pending"}


def test_deliverer_exports_the_stored_merge_not_a_stale_memory_copy(tmp_path: Path, store: TraceStore) -> None:
    """Another process merged a fragment after this one wrote (and remembered) the first: export has both."""
    with running_receiver() as receiver:
        settings = Settings(store=tmp_path / "store.db", otlp_endpoint=receiver.url + "/v1/traces", timeout=3.0)
        names = [d.name for d in destinations_for(settings)]
        tid = new_id()
        first = fragment(tid, BASE_NS)
        assert store.write_traces([first], destinations=names, merge=True) == {tid}
        store.write_traces([fragment(tid, BASE_NS + MS)], destinations=names, merge=True)  # "the other process"
        deliverer = Deliverer(store, destinations_for(settings), settings)
        try:
            deliverer.remember([first])
            report = deliverer.deliver(time.monotonic() + settings.timeout)
        finally:
            deliverer.stop()
        assert report.delivered == 1
        assert len(receiver.spans()) == 8


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path[:0] = [sys.argv[5], sys.argv[6]]
    from support.traces import make_trace
    from lftrace.store import TraceStore

    path, tid, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    barrier = Path(sys.argv[7])
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.001)
    with TraceStore(path) as store:
        for i in range(count):
            frag = make_trace(tid, start=1_760_000_000_000_000_000 + worker * 1000 + i, tags=[f"w{worker}"])
            store.write_traces([frag], destinations=("d",), merge=True)
    """
)


def test_two_processes_merging_one_trace_id_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    TraceStore(path).close()
    tid = new_id()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    tests_dir = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), tid, str(w), "25", str(SRC), tests_dir, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for w in range(2)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    (barrier / "go").touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with TraceStore(path, create=False) as store:
        got = store.get_trace(tid)
        (summary,) = store.list_traces()
        assert store.count_traces() == 1
    assert len(got.observations) == 2 * 25 * 4
    assert summary.observation_count == 200
    assert summary.total_tokens == 50 * 15
    assert sorted(got.tags) == ["w0", "w1"]
    assert got.timestamp == BASE_NS


def test_merge_into_a_long_trace_stays_cheap(store: TraceStore) -> None:
    tid = new_id()
    big = make_trace(tid)
    for i in range(2000):
        big.observations.append(
            Observation(
                id=new_id(8),
                trace_id=tid,
                parent_id=big.observations[0].id,
                type="GENERATION",
                name=f"g{i}",
                start_time=BASE_NS + i,
                end_time=BASE_NS + i + 10,
                usage_details={"input": 1, "output": 1, "total": 2},
            )
        )
    store.write_traces([big], merge=True)
    started = time.perf_counter()
    for i in range(20):
        store.write_traces([fragment(tid, BASE_NS + i)], merge=True)
    per_merge = (time.perf_counter() - started) / 20
    assert store.list_traces()[0].total_tokens == 15 + 4000 + 20 * 15
    print(f"merge into 2,000 observations: {per_merge * 1e3:.2f} ms")
    assert per_merge < 0.05, f"{per_merge * 1e3:.1f} ms per merge into a 2,000-observation trace"


def _totals(trace: Trace) -> tuple:
    return (len(trace.observations), trace.level, trace.total_tokens, trace.total_cost)


def _stored_totals(store: TraceStore, tid: str) -> tuple:
    summary = next(s for s in store.list_traces(limit=None) if s.id == tid)
    return (summary.observation_count, summary.level, summary.total_tokens, summary.total_cost)


def test_parts_add_their_totals_and_rewrites_recount_as_a_whole_trace_would(store: TraceStore) -> None:
    tid = new_id()
    parts = [fragment(tid, BASE_NS + n * MS, error=(n == 2)) for n in range(4)]
    parts[1].observations[2].usage_details = {"input": 5, "output": 6}  # no total: counts only in the sum of counts
    parts[3].observations[2].cost_details = {"total": 0.25}
    parts[3].observations[1].level = "WARNING"
    whole = Trace(id=tid, name="agent", timestamp=BASE_NS, observations=[o for p in parts for o in p.observations])
    for part in parts:
        store.write_traces([part], merge=True)
        assert _stored_totals(store, tid) == _totals(
            Trace(id=tid, name="x", timestamp=0, observations=whole.observations[: 4 * (parts.index(part) + 1)])
        )
    assert _stored_totals(store, tid) == _totals(whole) == _totals(store.get_trace(tid))

    # an observation written again (its usage changed): recounted over the whole trace, the same rules
    before = store.get_trace(tid).total_tokens
    rewritten = dataclasses.replace(parts[0].observations[2], usage_details={"input": 100, "output": 1, "total": 101})
    old_total = parts[0].observations[2].usage_details["total"]
    again = fragment(tid, BASE_NS)
    again.observations = [rewritten]
    store.write_traces([again], merge=True)
    assert _stored_totals(store, tid) == _totals(store.get_trace(tid))
    assert store.get_trace(tid).total_tokens == before - old_total + 101

    # the observation that held the worst level written again with a lower one: the level is recounted
    failed = next(o for o in store.get_trace(tid).observations if o.level == "ERROR")
    calmer = fragment(tid, BASE_NS)
    calmer.observations = [dataclasses.replace(failed, level="DEFAULT", status_message=None)]
    store.write_traces([calmer], merge=True)
    assert _stored_totals(store, tid) == _totals(store.get_trace(tid))
    assert _stored_totals(store, tid)[1] == "WARNING"
    # the only observation with a cost written again without one: no cost left, not a cost of 0.0
    priced = [o for o in store.get_trace(tid).observations if (o.cost_details or {}).get("total") is not None]
    unpriced = fragment(tid, BASE_NS)
    unpriced.observations = [dataclasses.replace(o, cost_details={}) for o in priced]
    store.write_traces([unpriced], merge=True)
    assert _stored_totals(store, tid) == _totals(store.get_trace(tid))
    assert _stored_totals(store, tid)[3] is None

    # a trace stored before the sums were kept (no "_totals" in its data): recounted, then kept
    store._connection().execute("UPDATE traces SET data = json_remove(data, '$._totals') WHERE id = ?", (tid,))
    store.write_traces([fragment(tid, BASE_NS + 9 * MS)], merge=True)
    assert _stored_totals(store, tid) == _totals(store.get_trace(tid))


def test_a_long_runs_root_written_open_then_whole_is_counted_once_without_a_recount(store: TraceStore) -> None:
    """A long run's first part holds its root still open (so a run killed later shows its tree); the whole trace at
    its end writes the root again: the stored sums lose the open copy's and gain the final one's, read from those
    rows only, not recounted over the whole trace."""
    tid = new_id()
    root = Observation(
        id=new_id(8), trace_id=tid, parent_id=None, type="CHAIN", name="LangGraph", start_time=BASE_NS, end_time=None
    )
    steps = [
        Observation(
            id=new_id(8),
            trace_id=tid,
            parent_id=root.id,
            type="GENERATION",
            name="think",
            start_time=BASE_NS + (i + 1) * MS,
            end_time=BASE_NS + (i + 2) * MS,
            usage_details={"input": 3, "output": 2, "total": 5},
            cost_details={"total": 0.5},
        )
        for i in range(300)
    ]
    first = Trace(id=tid, name="LangGraph", timestamp=BASE_NS, observations=[dataclasses.replace(root), *steps[:100]])
    store.write_traces([first], merge=True, running=True)
    assert _stored_totals(store, tid) == (101, "DEFAULT", 500, 50.0)
    store.write_traces([Trace(id=tid, name="LangGraph", timestamp=BASE_NS, observations=steps[100:200])], merge=True)
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    try:
        final_root = dataclasses.replace(root, end_time=BASE_NS + 400 * MS, output={"done": True})
        end = Trace(
            id=tid,
            name="LangGraph",
            timestamp=BASE_NS,
            end_time=final_root.end_time,
            observations=[*steps[200:], final_root],
        )
        store.write_traces([end], merge=True)
    finally:
        store._connection().set_trace_callback(None)
    got = store.get_trace(tid)
    assert _stored_totals(store, tid) == _totals(got) == (301, "DEFAULT", 1500, 150.0)
    assert next(o for o in got.observations if o.id == root.id).end_time == final_root.end_time
    totals = [s for s in statements if "json_each(o.data, '$.usage_details')" in s]
    assert totals and all("o.id IN" in s for s in totals), totals  # only the rewritten root's row was summed


_PART_WRITER = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [sys.argv[3], sys.argv[4]]
    from support.traces import make_trace
    from lftrace.store import TraceStore

    part = make_trace(sys.argv[2], finished=False)
    part.observations = part.observations[:2]
    for obs in part.observations:
        obs.end_time = None
    with TraceStore(sys.argv[1]) as store:
        store.write_traces([part], destinations=sys.argv[5:], merge=True, running=True)  # a long run's part
    """
)


def _write_part_in_a_process(path: Path, tid: str, *destinations: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _PART_WRITER, str(path), tid, str(SRC), str(Path(__file__).parent), *destinations],
        stderr=subprocess.PIPE,
    )


def test_a_trace_without_an_end_is_running_while_its_process_lives_then_incomplete(tmp_path: Path) -> None:
    """A killed or crashed run's stored parts never get an end: once the process that wrote them is gone (a zombie
    not reaped yet counts as gone) the trace is `incomplete` in every reader, not `running` forever."""
    path = tmp_path / "store.db"
    ours, reaped, zombie = new_id(), new_id(), new_id()
    with TraceStore(path) as store:
        part = make_trace(ours, finished=False)
        part.observations = part.observations[:2]
        for obs in part.observations:
            obs.end_time = None
        store.write_traces([part], merge=True, running=True)  # written by this process, which is still here
    done = _write_part_in_a_process(path, reaped)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    child = _write_part_in_a_process(path, zombie)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited; not reaped: a zombie until wait()
    try:
        with TraceStore(path, create=False) as store:
            status = {s.id: s.status for s in store.list_traces()}
            assert status == {ours: "running", reaped: "incomplete", zombie: "incomplete"}
            assert [s.id for s in store.list_traces(status="running")] == [ours]
            assert {s.id for s in store.list_traces(status="incomplete")} == {reaped, zombie}
            assert store.get_trace(ours).shown_status == "running"
            assert store.get_trace(reaped).shown_status == "incomplete"
            assert store.get_trace(zombie, inputs=False).shown_status == "incomplete"
    finally:
        child.wait()

    with TraceStore(path) as store:  # the run that was cut off is written again to its end: no longer incomplete
        whole = make_trace(reaped)
        store.write_traces([whole], merge=True)
        assert {s.id: s.status for s in store.list_traces()}[reaped] == "ok"
        assert store.get_trace(reaped).shown_status == "ok"


def test_a_running_traces_export_is_held_until_it_ends_or_its_process_is_gone(tmp_path: Path) -> None:
    """A long run's parts queue its trace for export, held while the run goes on: it goes out whole when the run
    ends, or as far as it got once the process is gone (a killed run's steps reach the backend with `push`)."""
    path = tmp_path / "store.db"
    ours, theirs = new_id(), new_id()
    with TraceStore(path) as store:
        part = make_trace(ours, finished=False)
        part.observations = part.observations[:2]
        for obs in part.observations:
            obs.end_time = None
        store.write_traces([part], destinations=("d",), merge=True, running=True)
        assert store.claim_pending("d", "me", 10) == []  # held: its process (this one) is still running it
        assert store.waiting_counts(["d"])["d"]["pending"] == 0
        counts = store.delivery_counts()["d"]
        assert (counts["pending"], counts["running"]) == (0, 1)

        child = _write_part_in_a_process(path, theirs, "d")
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert store.claim_pending("d", "me", 10) == [theirs]  # its process is gone: incomplete, sent as it is
        store.mark_delivered("d", [theirs])

        store.write_traces([make_trace(ours)], destinations=("d",), merge=True)  # the run ends
        assert store.claim_pending("d", "me", 10) == [ours]
        assert store.delivery_counts()["d"]["running"] == 0
        store.mark_delivered("d", [ours])

        # resumed after an interrupt: a delivered trace (it has an end) gets a long run's parts again: held too,
        # not sent whole again after every part
        resumed = make_trace(ours, start=BASE_NS + 10**9)
        store.write_traces([resumed], destinations=("d",), merge=True, running=True)
        assert {s.id: s.status for s in store.list_traces()}[ours] == "ok"  # it has an end: not shown running
        assert store.claim_pending("d", "me", 10) == []
        store.write_traces([make_trace(ours, start=BASE_NS + 2 * 10**9)], destinations=("d",), merge=True)
        assert store.claim_pending("d", "me", 10) == [ours]
