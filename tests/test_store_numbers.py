"""Trace numbers (migration 8): observations and search documents keyed by ``traces.num``, not the random id;
partial session and user indexes (migration 9).

Real SQLite files: a store of the schema before (7) is opened and must read back exactly as it was written; the
search index written from memory must be the one ``_index_search`` reads back from the rows; merges in parts.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from lftrace.filters import TraceFilter
from lftrace.model import Observation, Score, Trace
from lftrace.sharing import as_json
from lftrace.store import LATEST_VERSION, TraceStore, _index_search
from support.traces import BASE_NS, make_trace, new_id

MS = 1_000_000


def _downgrade_to_schema_7(path: Path) -> None:
    """Rewrite a store into the layout of schema 7: observations keyed by trace id, search documents numbered by
    ``trace_search_docs`` (here in another order than the traces, so a migration that ignored it would mix them up),
    no ``traces.num``, session and user indexes over every trace (migration 9 makes them partial)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE observations_v7 (
            trace_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, parent_id TEXT, type TEXT NOT NULL,
            name TEXT, start_ns INTEGER NOT NULL, end_ns INTEGER, level TEXT NOT NULL, model TEXT,
            data TEXT NOT NULL, PRIMARY KEY (trace_id, id));
        INSERT INTO observations_v7 SELECT trace_id, id, seq, parent_id, type, name, start_ns, end_ns, level, model,
            data FROM observations ORDER BY rowid;
        DROP TABLE observations;
        ALTER TABLE observations_v7 RENAME TO observations;
        CREATE INDEX observations_model ON observations (model, trace_id) WHERE model IS NOT NULL;
        CREATE INDEX observations_order ON observations (trace_id, start_ns, seq);
        CREATE INDEX observations_problems ON observations (trace_id) WHERE level IN ('ERROR', 'WARNING');
        CREATE TABLE trace_search_docs (trace_id TEXT PRIMARY KEY);
        INSERT INTO trace_search_docs (rowid, trace_id) SELECT 1000 - num, id FROM traces;
        CREATE TEMP TABLE bodies AS SELECT 1000 - s.rowid AS doc, s.body AS body FROM trace_search s;
        DELETE FROM trace_search;
        INSERT INTO trace_search (rowid, body) SELECT doc, body FROM temp.bodies;
        DROP INDEX traces_num;
        DROP INDEX traces_session;
        CREATE INDEX traces_session ON traces (session_id, timestamp_ns DESC);
        DROP INDEX traces_user;
        CREATE INDEX traces_user ON traces (user_id, timestamp_ns DESC);
        ALTER TABLE traces DROP COLUMN num;
        DELETE FROM _migrations WHERE version >= 8;
        PRAGMA user_version = 7;
        """
    )
    conn.close()


def _long_trace(parts: int, per_part: int) -> list[Trace]:
    """One run written in ``parts`` fragments (as a long agent run is), each with an error or warning of its own."""
    tid = new_id()
    fragments = []
    for part in range(parts):
        observations = [
            Observation(
                id=new_id(8),
                trace_id=tid,
                parent_id=None,
                type="SPAN",
                name=f"step{part}.{i}",
                start_time=BASE_NS + (part * per_part + i) * MS,
                end_time=BASE_NS + (part * per_part + i + 1) * MS,
                input={"messages": [{"role": "user", "content": f"question {part}.{i}"}]},
                output=f"answer {part}.{i}",
                level="ERROR" if i == 0 else "DEFAULT",
                status_message=f"failure{part}word" if i == 0 else None,
                usage_details={"total": 3},
            )
            for i in range(per_part)
        ]
        fragments.append(
            Trace(
                id=tid,
                name="long",
                timestamp=BASE_NS + part * per_part * MS,
                input={"messages": [{"role": "user", "content": "firstpartinput"}]} if part == 0 else None,
                output={"answer": "lastpartoutput"} if part == parts - 1 else None,
                observations=observations,
                end_time=BASE_NS + (part + 1) * per_part * MS if part == parts - 1 else None,
            )
        )
    return fragments


def _everything(store: TraceStore, ids: list[str]) -> dict[str, Any]:
    """What the readers give: whole traces, listings, filters, searches, pages, outlines."""
    return {
        "traces": [dataclasses.asdict(store.get_trace(tid)) for tid in ids],
        "list": store.list_traces(limit=None),
        "model": [s.id for s in store.list_traces(where=TraceFilter(model="gpt-4o-mini"))],
        "session": [s.id for s in store.list_traces(session_id="s1")],
        "user": [s.id for s in store.list_traces(user_id="u1")],
        "sessions": store.list_sessions(),
        "search": {
            word: [s.id for s in store.list_traces(where=TraceFilter(search=word))]
            for word in ("boom", "firstpartinput", "lastpartoutput", "failure0word", "failure2word", "2+2", "nothing")
        },
        "pages": [[o.id for page in store.trace_pages(tid, size=3) for o in page.observations] for tid in ids],
        "outline": [_outline_ids(store, tid) for tid in ids],
        "streamed": [[dataclasses.asdict(o) for o in store.iter_observations(tid, size=2)] for tid in ids],
    }


def _outline_ids(store: TraceStore, trace_id: str) -> list[str]:
    outline = store.trace_outline(trace_id)
    return [] if outline is None else [o.id for o in outline.observations]


def test_a_store_of_schema_7_reads_back_the_same_after_migration_8(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    plain, failed = make_trace(tags=["a", "b"], user_id="u1"), make_trace(error=True, session_id="s1")
    failed.scores = [Score(id=new_id(8), trace_id=failed.id, name="quality", value=0.5, timestamp=BASE_NS)]
    long_parts = _long_trace(3, 4)
    ids = [plain.id, failed.id, long_parts[0].id]
    with TraceStore(path) as store:
        store.write_traces([plain, failed])
        for part in long_parts:
            store.write_traces([part], merge=True)
        before = _everything(store, ids)
    assert before["search"]["failure2word"] == [long_parts[0].id] and before["search"]["boom"] == [failed.id]
    assert before["session"] == [failed.id] and before["user"] == [plain.id] and len(before["sessions"]) == 1
    bodies = _search_bodies(path)
    _downgrade_to_schema_7(path)

    with TraceStore(path) as store:
        assert _everything(store, ids) == before
        assert _search_bodies(path) == bodies  # the documents were carried over, one per trace, none left behind
        assert _document_count(path) == len(ids)
        assert [v for v, _, _ in store.migrations()][-1] == LATEST_VERSION
        # written after the migration: numbered after every stored trace, found by search and by model
        late = make_trace(answer="latecomer")
        store.write_traces([late], merge=True)
        assert [s.id for s in store.list_traces(where=TraceFilter(search="latecomer"))] == [late.id]
        assert store.get_trace(late.id).to_dict() == late.to_dict()
    conn = sqlite3.connect(path)
    nums = dict(conn.execute("SELECT id, num FROM traces"))
    assert nums[late.id] == max(nums.values()) and len(set(nums.values())) == len(nums)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'trace_search_docs'").fetchone()[0] == 0
    assert "trace_num" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'observations_order'").fetchone()[0]
    for index in ("traces_session", "traces_user"):  # migration 9: only traces that have one
        assert "IS NOT NULL" in conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]


def _document_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM trace_search").fetchone()[0])
    finally:
        conn.close()


def _search_bodies(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT t.id, s.body FROM traces t JOIN trace_search s ON s.rowid = t.num"))
    finally:
        conn.close()


def test_the_search_document_written_from_memory_is_the_one_read_back_from_the_rows(tmp_path: Path) -> None:
    """A new trace is indexed from the values in memory; ``_index_search`` (merges, rewrites) reads the rows.
    Both must give the same document, whatever shape the values have."""
    path = tmp_path / "s.db"
    shared = make_trace()  # a trace whose input is a long list (stored as a shared list node) and JSON text
    shared.input = [{"role": "user", "content": f"turn {i}"} for i in range(12)]
    shared.output = as_json({"answer": "jsontextanswer", "n": 3})
    repeated = make_trace(error=True)  # the same observation id twice: the row is the last one written
    first = repeated.observations[1]
    repeated.observations.append(replace(first, level="DEFAULT", status_message="recovered"))
    repeated.observations.append(replace(repeated.observations[3], status_message="second warning"))
    odd = make_trace()
    odd.input = {"\u0000lf": "not a reference", "text": "escapedkey"}  # stored escaped, read back as it was
    odd.output = {"number": 2.5, "flag": True, "none": None, "nested": [[1, "deep"]], "mark": {"\u0000lf": "refword"}}
    strings = make_trace()
    strings.input, strings.output = "plain input text", None
    traces = [shared, repeated, odd, strings]
    with TraceStore(path) as store:
        store.write_traces(traces, merge=True)
    written = _search_bodies(path)
    assert "turn 11" in written[shared.id] and "jsontextanswer" in written[shared.id]
    assert "boom" not in written[repeated.id] and "second warning" in written[repeated.id]
    assert "escapedkey" in written[odd.id] and "refword" in written[odd.id]
    conn = sqlite3.connect(path)
    with conn:
        _index_search(conn, [t.id for t in traces])
    conn.close()
    assert _search_bodies(path) == written


def test_a_merge_in_parts_reads_back_as_the_trace_written_whole(tmp_path: Path) -> None:
    parts = _long_trace(4, 5)
    whole = Trace(
        id=parts[0].id,
        name="long",
        timestamp=parts[0].timestamp,
        input=parts[0].input,
        output=parts[-1].output,
        observations=[o for part in parts for o in part.observations],
        end_time=parts[-1].end_time,
    )
    with TraceStore(tmp_path / "parts.db") as store:
        for part in parts:
            store.write_traces([part], merge=True)
        in_parts = store.get_trace(whole.id)
        found = {w: [s.id for s in store.list_traces(where=TraceFilter(search=w))] for w in _words(parts)}
    with TraceStore(tmp_path / "whole.db") as store:
        store.write_traces([whole], merge=True)
        at_once = store.get_trace(whole.id)
    assert dataclasses.asdict(in_parts) == dataclasses.asdict(at_once)
    assert len(in_parts.observations) == 20 and in_parts.level == "ERROR"
    assert found == {w: [whole.id] for w in _words(parts)}  # text of every part is searchable
    assert _search_bodies(tmp_path / "parts.db") == _search_bodies(tmp_path / "whole.db")


def _words(parts: list[Trace]) -> list[str]:
    return ["firstpartinput", "lastpartoutput", *(f"failure{i}word" for i in range(len(parts)))]


def test_a_batch_of_new_and_merged_traces_numbers_each_trace_once(tmp_path: Path) -> None:
    """New traces, a trace repeated in the batch and one already stored, in one write: every row reaches its
    trace, and the search documents are one per trace."""
    path = tmp_path / "batch.db"
    stored = make_trace()
    a, b = _long_trace(2, 3), [make_trace(), make_trace()]
    with TraceStore(path) as store:
        store.write_traces([stored])
        more = replace(stored, observations=[replace(stored.observations[0], id=new_id(8))], input=None)
        store.write_traces([b[0], a[0], more, a[1], b[1]], merge=True)
        counts = {t.id: len(store.get_trace(t.id).observations) for t in (stored, a[0], *b)}
    assert counts == {stored.id: 5, a[0].id: 6, b[0].id: 4, b[1].id: 4}
    conn = sqlite3.connect(path)
    per_trace = conn.execute("SELECT count(DISTINCT trace_num), count(DISTINCT trace_id) FROM observations").fetchone()
    documents = conn.execute("SELECT count(*) FROM trace_search").fetchone()[0]
    conn.close()
    assert per_trace == (4, 4) and documents == 4
    assert set(_search_bodies(path)) == {stored.id, a[0].id, *(t.id for t in b)}
