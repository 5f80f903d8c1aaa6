"""The local trace store: one SQLite file (WAL) holding traces, observations, tags and the delivery outbox.

The store is the source of truth; exporters read from it. Several processes (parallel CI jobs) may write one
store at once, so every write is a short ``BEGIN IMMEDIATE`` transaction with a busy timeout and a retry loop.
The schema is built by numbered migrations recorded in ``_migrations`` (the sqlite-utils model); the file is
stamped with ``PRAGMA application_id`` so another application's SQLite file is recognised as foreign.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import math
import os
import random
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson

from .errors import DatasetHistoryMissing, InputError, StoreError, TraceNotFound
from .filters import TraceFilter, legacy_level
from .model import (
    LEVEL_RANK,
    LEVELS,
    SCORE_KEY,
    Observation,
    Score,
    SessionSummary,
    Trace,
    TracePage,
    TraceSummary,
    iso_from_ns,
    score_key,
)
from .sharing import (
    Extended,
    Packer,
    TextBlocks,
    big_ints_as_text,
    is_json_text,
    json_default,
    json_text,
    materialize,
    references,
    text_default,
    unpack,
)

APPLICATION_ID = 0x6C667472  # b"lftr": marks the file as an lftrace store
BUSY_TIMEOUT_S = 30.0
RETRY_DEADLINE_S = 60.0  # total time spent retrying a busy/locked store before giving up
SQLITE_HEADER = b"SQLite format 3\x00"
DELIVERY_STATUSES = ("pending", "delivered", "failed")
_CHUNK = 500  # ids per IN (...) query, well below SQLite's variable limit
_FIX = "move it away or set LFTRACE_STORE (or --store) to another path"
VERIFY_MAX_BYTES = 32 * 1024 * 1024  # quick_check on open for writers up to here (~40 ms); header check above
# The WAL is copied back into the database (a checkpoint, two fsyncs) by the commit that takes it past this many
# pages (SQLite's default: 1,000, ~4 MB). Every commit rewrites the same hot pages (index roots, the newest leaves),
# and a checkpoint copies each page once however often it was rewritten: at 4,000, bench/overhead.py's writer
# thread spent 26-29 against 29-39 us of CPU per span (store only: 53-58 against 58-63 us per span over no
# handler, 3 interleaved runs) and a 1,000-step loop exporting over OTLP took 1.52 against 1.62x plain (5 rounds;
# its export helper reads the store while the program writes). The WAL file stays ~16 MB at most between
# checkpoints (a bigger transaction makes it bigger, as before); SQLite checkpoints and removes it at the last close.
WAL_CHECKPOINT_PAGES = 4_000

T = TypeVar("T")
Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[int, str, Migration]] = []


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register a schema migration; each runs once, in its own transaction, and is recorded in ``_migrations``."""

    def register(fn: Migration) -> Migration:
        if any(v == version for v, _, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration version {version}")
        MIGRATIONS.append((version, fn.__name__, fn))
        MIGRATIONS.sort(key=lambda m: m[0])
        return fn

    return register


@migration(1)
def m001_initial_schema(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE traces (
            id TEXT PRIMARY KEY,
            name TEXT,
            timestamp_ns INTEGER NOT NULL,
            end_ns INTEGER,
            latency REAL,
            level TEXT NOT NULL,
            status TEXT NOT NULL,
            session_id TEXT,
            user_id TEXT,
            environment TEXT,
            release TEXT,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            total_cost REAL,
            observation_count INTEGER NOT NULL DEFAULT 0,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX traces_timestamp ON traces (timestamp_ns DESC)",
        "CREATE INDEX traces_name ON traces (name, timestamp_ns DESC)",
        "CREATE INDEX traces_level ON traces (level, timestamp_ns DESC)",
        "CREATE INDEX traces_status ON traces (status, timestamp_ns DESC)",
        "CREATE INDEX traces_session ON traces (session_id, timestamp_ns DESC)",
        "CREATE INDEX traces_user ON traces (user_id, timestamp_ns DESC)",
        """CREATE TABLE observations (
            trace_id TEXT NOT NULL,
            id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            parent_id TEXT,
            type TEXT NOT NULL,
            name TEXT,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER,
            level TEXT NOT NULL,
            model TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (trace_id, id)
        )""",
        """CREATE TABLE trace_tags (
            trace_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (trace_id, tag)
        )""",
        "CREATE INDEX trace_tags_tag ON trace_tags (tag, trace_id)",
        # The outbox: one row per (trace, destination). `revision` counts rewrites of the trace so a delivery
        # claimed before a rewrite is not marked delivered for the newer version (see mark_delivered).
        """CREATE TABLE deliveries (
            trace_id TEXT NOT NULL,
            destination TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_ns INTEGER NOT NULL DEFAULT 0,
            claimed_by TEXT,
            claimed_until_ns INTEGER,
            claimed_revision INTEGER,
            revision INTEGER NOT NULL DEFAULT 0,
            enqueued_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            delivered_ns INTEGER,
            PRIMARY KEY (trace_id, destination)
        )""",
        "CREATE INDEX deliveries_due ON deliveries (destination, status, next_attempt_ns)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    ]
    for statement in statements:
        conn.execute(statement)


@migration(2)
def m002_search_index(conn: sqlite3.Connection) -> None:
    """Full-text search (FTS5) over each trace's input, output and error messages, and a model index.

    ``trace_search`` holds one document per trace, its rowid the trace's number (migration 8 adds the numbers and
    indexes the traces stored before; new ones are indexed as they are written).
    """
    conn.execute("CREATE VIRTUAL TABLE trace_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')")
    conn.execute("CREATE INDEX observations_model ON observations (model, trace_id) WHERE model IS NOT NULL")


@migration(3)
def m003_shared_lists(conn: sqlite3.Connection) -> None:
    # Content-addressed list nodes (sharing.py): a list that extends an earlier one is stored as the hash of
    # that one (prev) and its new items (data, JSON); rows refer to it as {"\u0000lf": hash}. A long agent run
    # stores each message once instead of once per step.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, prev TEXT, data TEXT NOT NULL) WITHOUT ROWID"
    )


@migration(4)
def m004_interrupted_cancelled_handled_errors(conn: sqlite3.Connection) -> None:
    """Statuses of issue 9: Ctrl-C is 'cancelled' (it was 'interrupted', now a LangGraph pause); an error
    inside a run that finished is a handled error (status ok) counted in ``handled_errors``."""
    # a store touched by a pre-release build may have the column without this migration's record: add it once
    if not any(row[1] == "handled_errors" for row in conn.execute("PRAGMA table_info(traces)")):
        conn.execute("ALTER TABLE traces ADD COLUMN handled_errors INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE traces SET status = 'cancelled' WHERE status = 'interrupted'")
    conn.execute(
        "UPDATE traces SET status = 'ok' WHERE status = 'error' AND EXISTS "
        "(SELECT 1 FROM observations o WHERE o.trace_id = traces.id AND o.parent_id IS NULL) AND NOT EXISTS "
        "(SELECT 1 FROM observations o WHERE o.trace_id = traces.id AND o.parent_id IS NULL AND o.level = 'ERROR')"
    )
    conn.execute(
        "UPDATE traces SET handled_errors = (SELECT count(*) FROM observations o "
        "WHERE o.trace_id = traces.id AND o.level = 'ERROR') WHERE level = 'ERROR' AND status = 'ok'"
    )


@migration(5)
def m005_scores(conn: sqlite3.Connection) -> None:
    """Scores (``create_score``, ``span.score``): numbered by id, several per trace or observation."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS scores (
            id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            observation_id TEXT,
            name TEXT NOT NULL,
            timestamp_ns INTEGER NOT NULL,
            data TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS scores_trace ON scores (trace_id, timestamp_ns)")


@migration(6)
def m006_observation_order(conn: sqlite3.Connection) -> None:
    # a long trace is read in pages (export, trace_pages): each page is an index range, not a sort of the trace
    conn.execute("CREATE INDEX IF NOT EXISTS observations_order ON observations (trace_id, start_ns, seq)")


@migration(7)
def m007_problem_index(conn: sqlite3.Connection) -> None:
    # the errors and warnings of a trace (search index, status of a merged trace) without reading every row of a
    # 20,000-observation trace each time a part of it is merged; partial: other rows cost nothing to insert
    conn.execute(
        "CREATE INDEX IF NOT EXISTS observations_problems ON observations (trace_id) WHERE level IN ('ERROR', 'WARNING')"
    )


_OBSERVATIONS_TABLE = """CREATE TABLE observations (
    trace_num INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    parent_id TEXT,
    type TEXT NOT NULL,
    name TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    level TEXT NOT NULL,
    model TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (trace_num, id)
)"""
_OBSERVATION_INDEXES = {
    "observations_order": "CREATE INDEX observations_order ON observations (trace_num, start_ns, seq)",
    "observations_model": "CREATE INDEX observations_model ON observations (model, trace_num) WHERE model IS NOT NULL",
    "observations_problems": (
        "CREATE INDEX observations_problems ON observations (trace_num) WHERE level IN ('ERROR', 'WARNING')"
    ),
}
_OBSERVATION_COLUMNS = "trace_id, id, seq, parent_id, type, name, start_ns, end_ns, level, model, data"


@migration(8)
def m008_trace_numbers(conn: sqlite3.Connection) -> None:
    """Each trace gets a number (``traces.num``, given in write order) that keys its observations and its search
    document in place of its id.

    Trace ids are random, so every index keyed by them took one random page per trace written: the observations'
    primary key and order index, and the search documents' id index, were most of what a write put in the WAL
    (~5 KB per observation of ~0.7 KB). Keyed by the number, a new trace's entries go at the end of those indexes.
    A column, not the rowid: VACUUM may renumber rowids. Safe to run again (each step checks what is there).
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(traces)")}
    if "num" not in columns:
        conn.execute("ALTER TABLE traces ADD COLUMN num INTEGER")
    conn.execute("UPDATE traces SET num = rowid WHERE num IS NULL")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS traces_num ON traces (num)")
    if not any(row[1] == "trace_num" for row in conn.execute("PRAGMA table_info(observations)")):
        conn.execute(_OBSERVATIONS_TABLE.replace("TABLE observations", "TABLE observations_by_num", 1))
        # in rowid order: a trace's rows keep their order where no index sorts them (the problems of a trace)
        conn.execute(
            f"INSERT INTO observations_by_num (trace_num, {_OBSERVATION_COLUMNS}) "
            f"SELECT t.num, {', '.join('o.' + c for c in _OBSERVATION_COLUMNS.split(', '))} "
            "FROM observations o JOIN traces t ON t.id = o.trace_id ORDER BY o.rowid"
        )
        conn.execute("DROP TABLE observations")  # and its indexes
        conn.execute("ALTER TABLE observations_by_num RENAME TO observations")
    for name, sql in _OBSERVATION_INDEXES.items():
        _ensure_index(conn, name, sql)  # one made by an earlier migration run again on this schema is replaced
    # search documents: the FTS rowid is the trace's number (trace_search_docs gave each trace one before)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'trace_search_docs'").fetchone():
        conn.execute(
            "CREATE TEMP TABLE search_bodies AS SELECT t.num AS num, s.body AS body FROM trace_search s "
            "JOIN trace_search_docs d ON d.rowid = s.rowid JOIN traces t ON t.id = d.trace_id"
        )
        conn.execute("DELETE FROM trace_search")
        conn.execute("INSERT INTO trace_search (rowid, body) SELECT num, body FROM temp.search_bodies")
        conn.execute("DROP TABLE temp.search_bodies")
        conn.execute("DROP TABLE trace_search_docs")
    missing = [
        row[0] for row in conn.execute("SELECT id FROM traces WHERE num NOT IN (SELECT rowid FROM trace_search)")
    ]
    for chunk in _chunks(missing):
        _index_search(conn, chunk)


_PARTIAL_TRACE_INDEXES = {
    "traces_session": (
        "CREATE INDEX traces_session ON traces (session_id, timestamp_ns DESC) WHERE session_id IS NOT NULL"
    ),
    "traces_user": "CREATE INDEX traces_user ON traces (user_id, timestamp_ns DESC) WHERE user_id IS NOT NULL",
}


@migration(9)
def m009_partial_session_user_indexes(conn: sqlite3.Connection) -> None:
    """The session and user indexes hold only traces that have one: every query through them asks for a value
    (``session_id = ?``, ``session_id IS NOT NULL``), and a trace without one cost an index entry all the same."""
    for name, sql in _PARTIAL_TRACE_INDEXES.items():
        _ensure_index(conn, name, sql)


@migration(10)
def m010_standalone_scores(conn: sqlite3.Connection) -> None:
    """Scores of a session or a dataset run (no trace): ``trace_id`` may be NULL, and the session and dataset
    run are columns (a session's scores are read by its id). The table is made again: SQLite cannot drop a
    NOT NULL. The columns are filled from each score's stored data."""
    conn.execute(
        """CREATE TABLE scores_v10 (
            id TEXT PRIMARY KEY,
            trace_id TEXT,
            observation_id TEXT,
            session_id TEXT,
            dataset_run_id TEXT,
            name TEXT NOT NULL,
            timestamp_ns INTEGER NOT NULL,
            data TEXT NOT NULL
        )"""
    )
    rows = conn.execute("SELECT id, trace_id, observation_id, name, timestamp_ns, data FROM scores").fetchall()
    conn.executemany(
        "INSERT INTO scores_v10 (id, trace_id, observation_id, session_id, name, timestamp_ns, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (sid, tid, oid, orjson.loads(data).get("session_id"), name, ts, data)
            for sid, tid, oid, name, ts, data in rows
        ],
    )
    conn.execute("DROP TABLE scores")
    conn.execute("ALTER TABLE scores_v10 RENAME TO scores")
    conn.execute("CREATE INDEX scores_trace ON scores (trace_id, timestamp_ns)")
    conn.execute("CREATE INDEX scores_session ON scores (session_id, timestamp_ns) WHERE session_id IS NOT NULL")


def new_dataset_id() -> str:
    """A dataset's or a dataset item's id, when the client gives none (Langfuse's are opaque strings)."""
    return os.urandom(12).hex()


PROMPT_DEFAULT_LABEL = "production"  # the version get_prompt gives when asked for neither a version nor a label
PROMPT_LATEST = "latest"  # the label that follows a prompt's newest version


@migration(11)
def m011_prompts(conn: sqlite3.Connection) -> None:
    """Prompts (``Langfuse.create_prompt``/``get_prompt`` without Langfuse keys, and ``lftrace serve``'s prompts
    API): one row a version; ``prompt``, ``config``, ``labels`` and ``tags`` are JSON. A label is on one version
    of a name at most; the tags are the same on every version."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS prompts (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            prompt TEXT NOT NULL,
            config TEXT NOT NULL,
            labels TEXT NOT NULL,
            tags TEXT NOT NULL,
            commit_message TEXT,
            created_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            PRIMARY KEY (name, version)
        )"""
    )


@migration(12)
def m012_datasets(conn: sqlite3.Connection) -> None:
    """Datasets and their items (``lftrace serve``'s datasets API, for the SDKs' ``create_dataset``,
    ``create_dataset_item`` and ``get_dataset``); JSON columns as the API gives them."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT,
            metadata TEXT NOT NULL,
            input_schema TEXT NOT NULL,
            expected_output_schema TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS dataset_items (
            id TEXT PRIMARY KEY,
            dataset_id TEXT NOT NULL,
            input TEXT NOT NULL,
            expected_output TEXT NOT NULL,
            metadata TEXT NOT NULL,
            source_trace_id TEXT,
            source_observation_id TEXT,
            status TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS dataset_items_dataset ON dataset_items (dataset_id, created_ns)")


@migration(13)
def m013_media(conn: sqlite3.Connection) -> None:
    """Media taken out of traces' data (media.py): the bytes once per content (Langfuse's id: a hash of them),
    and where each appears (a trace's observation and field, or a dataset item's field)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS media (
            id TEXT PRIMARY KEY,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            content BLOB,
            created_ns INTEGER NOT NULL,
            uploaded_ns INTEGER
        ) WITHOUT ROWID"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS media_links (
            trace_id TEXT NOT NULL DEFAULT '',
            observation_id TEXT NOT NULL DEFAULT '',
            dataset_item_id TEXT NOT NULL DEFAULT '',
            field TEXT NOT NULL,
            media_id TEXT NOT NULL,
            PRIMARY KEY (trace_id, dataset_item_id, observation_id, field, media_id)
        ) WITHOUT ROWID"""
    )


@migration(14)
def m014_media_links_by_media(conn: sqlite3.Connection) -> None:
    """Where a media record appears, by its id (``lftrace media``; traces to send again once its bytes arrive)."""
    conn.execute("CREATE INDEX IF NOT EXISTS media_links_media ON media_links (media_id)")


@migration(15)
def m015_observations_by_write_position(conn: sqlite3.Connection) -> None:
    """A trace's observations by write position (``seq``): what a long run's part adds to the stored trace
    (``next_seq``: its ``max(seq)``), and what the export helper streams of it (``trace_pages(written=...)``,
    ``last_written``). Without it each of those read every row of the trace so far, for every part: at 4,000
    steps the helper's reads of the parts took 2.5 s of CPU, 1.2 s with it."""
    conn.execute("CREATE INDEX IF NOT EXISTS observations_written ON observations (trace_num, seq)")


@migration(16)
def m016_running_in(conn: sqlite3.Connection) -> None:
    """The process whose run a trace is a running part of (``host:pid:start``, as outbox leases name it): a long
    run's parts are stored while it goes on, and a trace whose process is gone without ending it (killed, a
    crash, a lost machine) is ``incomplete``, not ``running`` forever; its export is held until then. Set by a
    part's write (``write_traces(running=True)``), NULL again once the whole trace is written."""
    if not any(row[1] == "running_in" for row in conn.execute("PRAGMA table_info(traces)")):
        conn.execute("ALTER TABLE traces ADD COLUMN running_in TEXT")


def _ensure_index(conn: sqlite3.Connection, name: str, sql: str) -> None:
    """The index ``name`` exactly as ``sql`` makes it: made when missing, made again when it differs."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
    if row is not None and row[0] == sql:
        return
    conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute(sql)


LATEST_VERSION = max(v for v, _, _ in MIGRATIONS)
_NUM_OF = "(SELECT num FROM traces WHERE id = ?)"  # a trace's number, by id, in a query on its observations
SEARCH_CHARS = 200_000  # per trace: enough for any conversation; a 50 MB output is not indexed whole


# base64 payloads (an image, audio or a file sent to a model, as a data URI or bare): no one searches for them,
# and one image would be thousands of random words in the index (and most of a vision app's store)
_PAYLOAD = re.compile(r"(?:data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[^;,]*)*;base64,)?[A-Za-z0-9+/_-]{200,}={0,2}")
PAYLOAD_MIN = 200  # characters: shorter strings are always indexed


def _strings(value: Any, out: list[str], budget: list[int]) -> None:
    """Every string leaf of a JSON value (keys left out, base64 payloads too), until the budget of characters is
    spent."""
    stack = [value]
    while stack and budget[0] > 0:
        item = stack.pop()
        kind = type(item)  # the exact types first (values parsed from JSON), then their subclasses
        if kind is str or (kind is not dict and kind is not list and isinstance(item, str)):
            if item and (len(item) < PAYLOAD_MIN or _PAYLOAD.fullmatch(item) is None):
                out.append(item[: budget[0]])
                budget[0] -= len(item)
        elif kind is dict or isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif kind is list or isinstance(item, list):
            stack.extend(reversed(item))
        elif kind is int or kind is float or (isinstance(item, int | float) and not isinstance(item, bool)):
            out.append(str(item))


def _index_search(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> None:
    """(Re)index these traces as they are stored now: trace input and output, error and warning messages."""
    if not trace_ids:
        return
    marks = _marks(len(trace_ids))
    bodies: dict[int, list[str]] = {}
    budgets: dict[int, list[int]] = {}
    rows = conn.execute(f"SELECT num, data FROM traces WHERE id IN ({marks})", list(trace_ids)).fetchall()
    for num, blob in rows:
        data = orjson.loads(blob)
        values = _unpacked(conn, [data.get("input"), data.get("output")])
        bodies[num], budgets[num] = _search_parts(values)
    if not bodies:
        return
    nums = list(bodies)
    for num, message in conn.execute(
        "SELECT trace_num, json_extract(data, '$.status_message') FROM observations "
        f"WHERE trace_num IN ({_marks(len(nums))}) AND level IN ('ERROR', 'WARNING')",
        nums,
    ):
        if isinstance(message, str):
            _strings(message, bodies[num], budgets[num])
    conn.execute(f"DELETE FROM trace_search WHERE rowid IN ({_marks(len(nums))})", nums)
    insert_rows(conn, "INSERT INTO trace_search (rowid, body)", [(num, "\n".join(bodies[num])) for num in nums])


def _search_parts(values: Any) -> tuple[list[str], list[int]]:
    """The strings of a trace's input and output to index, and what is left of its budget of characters."""
    parts: list[str] = []
    budget = [SEARCH_CHARS]
    _strings(values, parts, budget)
    return parts, budget


_PROBLEM_LEVELS = ("ERROR", "WARNING")


def _index_new_traces(conn: sqlite3.Connection, traces: Sequence[Trace], nums: dict[str, int]) -> None:
    """Index traces just written whole under new numbers from memory, as ``_index_search`` would read them back
    (a value that only the store's fallback serialiser writes is read back instead)."""
    rows: list[tuple[int, str]] = []
    read_back: list[str] = []
    for trace in traces:
        try:
            values = [_as_stored(trace.input), _as_stored(trace.output)]
        except (TypeError, ValueError):
            read_back.append(trace.id)
            continue
        parts, budget = _search_parts(values)
        if any(obs.level in _PROBLEM_LEVELS for obs in trace.observations):
            latest: dict[str, Observation] = {}  # a repeated id is one row: where it first was, as written last
            for obs in trace.observations:
                latest[obs.id] = obs
            for obs in latest.values():
                if obs.level in _PROBLEM_LEVELS and isinstance(obs.status_message, str):
                    _strings(obs.status_message, parts, budget)
        rows.append((nums[trace.id], "\n".join(parts)))
    # OR REPLACE: a document left behind by a trace removed by hand must not fail the write
    insert_rows(conn, "INSERT OR REPLACE INTO trace_search (rowid, body)", rows)
    for chunk in _chunks(read_back):
        _index_search(conn, chunk)


def _as_stored(value: Any) -> Any:
    """A prepared input/output as it reads back from its row (JSON text parsed; anything else through orjson as
    ``dumps`` writes it; TypeError when orjson refuses it)."""
    if value is None or type(value) is str:
        return value
    if is_json_text(value):
        return json_text(value)
    return orjson.loads(orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS))


def dumps(value: Any) -> str:
    """JSON text for a column; an odd value (huge int, cycle, odd key) never breaks a write."""
    try:
        return orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        try:
            return json.dumps(big_ints_as_text(value), default=text_default, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return orjson.dumps(repr(value)).decode()


def _utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_unwritable(exc: sqlite3.Error) -> bool:
    """Opening or preparing failed because the file, directory or file system cannot be written."""
    code = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    return code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in text or "unable to open" in text


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


PAGE_TRACES = 200  # traces read at once by iter_traces ...
PAGE_OBSERVATIONS = 20_000  # ... unless their observations are more: long agent runs are read a few at a time


def _pages_of_traces(rows: Sequence[tuple[str, int | None]]) -> Iterator[list[str]]:
    """Trace ids in pages of at most PAGE_TRACES traces and about PAGE_OBSERVATIONS observations (a longer
    trace is a page of its own)."""
    page: list[str] = []
    observations = 0
    for trace_id, count in rows:
        count = int(count or 0)
        if page and (len(page) >= PAGE_TRACES or observations + count > PAGE_OBSERVATIONS):
            yield page
            page, observations = [], 0
        page.append(trace_id)
        observations += count
    if page:
        yield page


def _clamp_int64(value: int) -> int:
    """SQLite integers are 64-bit: a far-future ``since`` must filter everything out, not overflow."""
    return max(-(2**63), min(int(value), 2**63 - 1))


def _marks(count: int) -> str:
    return ",".join("?" * count)


ROWS_PER_INSERT = 256  # rows bound into one multi-row INSERT by insert_rows
_INSERT_SQL: dict[tuple[str, int, int, str], str] = {}


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head VALUES (?, ...), (?, ...) tail`` for every row, in order, as executemany would write them.

    The rows go in statements of 256, 128, ... 1 rows (a handful of statement texts, kept in the connection's
    cache). SQLite runs each in one step, and the sqlite3 module gives up the GIL for every step: executemany
    does so once per row, and on a writer thread each time the GIL must be won back from a busy user's thread,
    which lets it go only every switch interval (5 ms). Here a batch of a thousand rows waits a few times, not a
    thousand (bench/overhead.py, bench/long_run.py). Each row still conflicts with the rows before it in the same
    statement as with stored ones (``INSERT OR REPLACE``, ``ON CONFLICT``).
    """
    if not rows:
        return
    width = len(rows[0])
    most = ROWS_PER_INSERT
    while most > 1 and most * width > conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
        most //= 2
    start = 0
    while start < len(rows):
        count = most
        while count > len(rows) - start:
            count //= 2
        key = (head, width, count, tail)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            group = f"({_marks(width)})"
            sql = _INSERT_SQL[key] = f"{head} VALUES {','.join([group] * count)} {tail}".rstrip()
        conn.execute(sql, list(itertools.chain.from_iterable(rows[start : start + count])))
        start += count


def _process_state(pid: int) -> tuple[str, str]:
    """(state, start time) of a process (Linux: /proc/PID/stat fields 3 and 22; ("", "") elsewhere): a reused pid
    is not taken for the owner (another start time), nor a zombie (killed, not reaped yet: state Z) for a live one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), fields[19].decode()
    except (OSError, IndexError):
        return "", ""


def _process_start(pid: int) -> str:
    return _process_state(pid)[1]


def lease_owner() -> str:
    """``host:pid:start:random`` naming this process in the outbox's claims."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}:{os.urandom(4).hex()}"


_THIS_PROCESS: tuple[int, str] = (0, "")


def this_process() -> str:
    """``lease_owner()`` of this process, made once per process (a forked child gets its own)."""
    global _THIS_PROCESS
    pid, owner = _THIS_PROCESS
    if pid != os.getpid():
        _THIS_PROCESS = pid, owner = os.getpid(), lease_owner()
    return owner


def owner_alive(owner: str) -> bool:
    """False only when the owner is a process of this host that is gone (other hosts: trust the lease)."""
    parts = owner.split(":")
    if len(parts) < 3 or parts[0] != socket.gethostname():
        return True
    try:
        pid = int(parts[1])
    except ValueError:
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        pass
    state, started = _process_state(pid)
    if state in ("Z", "X"):  # exited (a zombie until its parent reaps it) or dead
        return False
    start = parts[2] if len(parts) >= 4 else ""
    return not start or started in ("", start)


def _alive(owner: Any) -> int:
    """``owner_alive`` for SQL (``lftrace_alive(running_in)``): 1 for a process still there or not known."""
    try:
        return 1 if not isinstance(owner, str) or owner_alive(owner) else 0
    except Exception:  # never fail a query over it
        return 1


def _abandoned(end_ns: int | None, running_in: str | None) -> bool:
    """A stored trace without an end whose run's process is gone: it never will end (``incomplete``)."""
    return end_ns is None and running_in is not None and not _alive(running_in)


def _owner_label(owner: str) -> str:
    parts = owner.split(":")
    return f"pid {parts[1]} on {parts[0]}" if len(parts) >= 2 else owner


def no_deliveries() -> dict[str, Any]:
    """A destination's ``delivery_counts`` entry before anything was queued for it."""
    return {
        "pending": 0,
        "delivered": 0,
        "failed": 0,
        "running": 0,  # queued by a running trace's parts, held until its run ends (or its process is gone)
        "last_error": None,
        "scores": {"pending": 0, "delivered": 0, "failed": 0},
    }


class TraceStore:
    """SQLite trace store + delivery outbox. Thread-safe (one connection guarded by a lock); use as a context manager."""

    def __init__(self, path: Path | str, *, create: bool = True, verify: bool | None = None) -> None:
        """Open (``create``: create if missing) the store at ``path``.

        ``verify`` (default: ``create``, i.e. for writers) runs SQLite's ``PRAGMA quick_check`` first on stores up
        to ``VERIFY_MAX_BYTES`` (~1.3 ms per MB), so a corrupted file is reported before anything is written
        into it; larger stores get the cheap header check only. A store that cannot be written (read-only file,
        directory or file system) opened with ``create=False`` is opened read-only: reads work, writes raise a
        StoreError that says why.
        """
        self.path = Path(path).expanduser()
        self.read_only = False
        self._header = b""
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._packer = Packer(dumps)  # guarded by _lock (writes only)
        # the last shared lists built as text for the export (hash -> items), guarded by _lock: see _TextLists
        self._text_lists = _TextLists()
        self._check_file(create)
        conn = self._connect(create)
        self._conn = conn
        try:
            with self._errors():
                try:
                    self._prepare()
                except sqlite3.OperationalError as exc:
                    if create or not _is_unwritable(exc):
                        raise
                    self._reopen_read_only()
                if verify if verify is not None else create:
                    self.verify()
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------------------

    def _check_file(self, create: bool) -> None:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not an lftrace trace store; {_FIX}")
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no trace store at {self.path} yet: run `lftrace run ...` first, "
                    "or point LFTRACE_STORE/--store at an existing store"
                )
            self._create_private()
            return
        try:
            with self.path.open("rb") as fh:
                header = fh.read(100)
        except OSError as exc:
            raise StoreError(
                f"cannot read the trace store {self.path} ({exc.strerror}); check its permissions"
            ) from None
        if header and header[: len(SQLITE_HEADER)] != SQLITE_HEADER:
            raise StoreError(f"{self.path} is not an lftrace trace store (file is not a database); {_FIX}")
        self._header = header

    def _create_private(self) -> None:
        """Directories lftrace creates are 0700 and the store file 0600, whatever the umask (traces hold prompts,
        outputs and user data). SQLite gives its -wal and -shm files the mode of the database file."""
        missing: list[Path] = []
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        try:
            for directory in reversed(missing):
                try:
                    directory.mkdir(mode=0o700)
                except FileExistsError:  # another process made it meanwhile
                    continue
                os.chmod(directory, 0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create the trace store directory {self.path.parent} ({exc.strerror}); "
                "set LFTRACE_STORE (or --store) to a writable path"
            ) from None
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process created it meanwhile: theirs
            return
        except OSError as exc:
            raise StoreError(
                f"cannot create the trace store {self.path} ({exc.strerror}); "
                "check the directory's permissions or set LFTRACE_STORE (or --store) to a writable path"
            ) from None
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _connect(self, create: bool, mode: str = "rw") -> sqlite3.Connection:
        try:
            if create:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            else:  # mode=rw: a read path never creates the file, even if it vanished since the check
                conn = sqlite3.connect(
                    self.path.resolve().as_uri() + f"?mode={mode}",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # filters.py's `running` and `incomplete`: whether the process writing a trace is still there
            conn.create_function("lftrace_alive", 1, _alive, deterministic=False)
        except sqlite3.Error as exc:
            if not create and mode == "rw" and _is_unwritable(exc):
                return self._connect(False, "ro")
            raise StoreError(f"cannot open the trace store {self.path} ({exc}); {_FIX}") from None
        return conn

    def _reopen_read_only(self) -> None:
        """The file, its directory or the file system is read-only: read it as it is."""
        self.close()
        wal = self.path.with_name(self.path.name + "-wal")
        # Without write access SQLite cannot make the -shm file a WAL store needs; immutable=1 reads the database
        # file alone, which holds every trace once the last writer closed (its WAL was checkpointed then).
        mode = "ro&immutable=1" if not (wal.exists() and wal.stat().st_size) else "ro"
        self._conn = self._connect(False, mode)
        self.read_only = True
        self._prepare(read_only=True)

    def check_writable(self) -> None:
        """Raise StoreError (why, and the fix) unless a write transaction can start: before running a graph."""
        if self.read_only:
            raise StoreError(
                f"cannot write to the trace store {self.path}: it is read-only (the file, its directory or the file "
                "system is not writable); set LFTRACE_STORE (or --store) to a writable path"
            )
        with self._errors():  # a real (tiny) write: only that proves the file takes writes
            self._write(lambda c: c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write_check', '')"))

    def verify(self, *, full: bool = False) -> None:
        """Raise StoreError if the file is corrupted: ``PRAGMA quick_check`` up to VERIFY_MAX_BYTES (any size with
        ``full``, for ``lftrace doctor``), else the header."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if not full and size > VERIFY_MAX_BYTES and self._header_consistent(size):
            return
        with self._errors():
            rows = self._read(lambda c: c.execute("PRAGMA quick_check(3)").fetchall())
        problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
        if problems:
            raise StoreError(f"the trace store {self.path} is corrupted ({'; '.join(problems)[:300]}); {_FIX}")

    def _header_consistent(self, size: int) -> bool:
        """The database header's page size and page count agree with the file (a cheap check for big stores)."""
        header = getattr(self, "_header", b"")
        if len(header) < 100:
            return False
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        valid_for = int.from_bytes(header[92:96], "big")
        change_counter = int.from_bytes(header[24:28], "big")
        if page_size < 512 or page_size & (page_size - 1) or valid_for != change_counter:
            return False
        return pages * page_size == size

    def _prepare(self, read_only: bool = False) -> None:
        """Recognise the file (ours, fresh, foreign, newer), switch to WAL and apply missing migrations."""
        conn = self._connection()

        def identify(c: sqlite3.Connection) -> tuple[int, int, int]:
            # One snapshot: another process may be committing the first migration right now.
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            return app_id, version, c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]

        app_id, version, table_count = self._read(identify)
        if app_id == 0:
            if table_count:
                raise StoreError(f"{self.path} is not an lftrace trace store (it is another SQLite database); {_FIX}")
        elif app_id != APPLICATION_ID:
            raise StoreError(
                f"{self.path} is not an lftrace trace store (application id {app_id:#x} belongs to another program); "
                f"{_FIX}"
            )
        if version > LATEST_VERSION:
            raise StoreError(
                f"the trace store {self.path} was created by a newer lftrace (schema {version}, this one knows "
                f"{LATEST_VERSION}); upgrade lftrace or set LFTRACE_STORE to another path"
            )
        if version:
            self._check_history()
        if read_only:
            if version < LATEST_VERSION:
                raise StoreError(
                    f"the trace store {self.path} is read-only and was made by an older lftrace (schema {version}, "
                    f"this one needs {LATEST_VERSION}); open it once where it is writable, or copy it"
                )
            return
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash may lose the last commit, never corrupts
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        if version < LATEST_VERSION:
            if table_count:
                self.verify()  # a migration writes: never into a damaged file (a reader's open included)
            self._migrate()

    def _check_history(self) -> None:
        """The migrations recorded in the store are this lftrace's, by name: a store made by another build (the
        same numbers, another schema) is refused here, naming the difference, not later by a missing table."""

        def recorded(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            try:
                return conn.execute("SELECT version, name FROM _migrations ORDER BY version").fetchall()
            except sqlite3.OperationalError:  # no _migrations table: nothing recorded to compare
                return []

        known = {version: name for version, name, _ in MIGRATIONS}
        for version, name in self._read(recorded):
            if version in known and name != known[version]:
                raise StoreError(
                    f"the trace store {self.path} was made by another lftrace build (its migration {version} is "
                    f"{name!r}, this lftrace's is {known[version]!r}); {_FIX}"
                )

    def _migrate(self) -> None:
        for version, name, fn in MIGRATIONS:

            def apply(conn: sqlite3.Connection, version: int = version, name: str = name, fn: Migration = fn) -> None:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS _migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                # Re-checked inside the write transaction: another process may have migrated meanwhile.
                if conn.execute("SELECT 1 FROM _migrations WHERE version = ?", (version,)).fetchone():
                    return
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, _utc_now_iso()),
                )
                conn.execute(f"PRAGMA user_version = {int(version)}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

            self._write(apply)

    def migrations(self) -> list[tuple[int, str, str]]:
        """Applied migrations as (version, name, applied_at), oldest first."""
        with self._errors():
            rows = self._read(
                lambda c: c.execute("SELECT version, name, applied_at FROM _migrations ORDER BY version").fetchall()
            )
        return [(int(v), str(n), str(a)) for v, n, a in rows]

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the trace store {self.path} is closed; open a new TraceStore")
        return self._conn

    def _errors(self) -> _ErrorMapper:
        return _ErrorMapper(self.path)

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying with a small jittered backoff while another process holds the lock."""
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay = 0.002
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction (retried whole if the store is busy)."""
        with self._lock:
            conn = self._connection()

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

            return self._retry(attempt)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one read transaction, so multi-query reads see one snapshot."""
        with self._lock:
            conn = self._connection()

            def attempt() -> T:
                conn.execute("BEGIN")
                try:
                    return work(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

            return self._retry(attempt)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({str(self.path)!r})"

    # -- writing traces ------------------------------------------------------------------------------------------

    def write_traces(
        self, traces: Sequence[Trace], destinations: Sequence[str] = (), merge: bool = False, *, running: bool = False
    ) -> set[str]:
        """Write traces in one transaction and add a 'pending' delivery per destination.

        ``merge=False``: a trace id written again replaces the trace, its observations and tags (``lftrace import``).
        ``merge=True``: a trace id already stored (or repeated in the batch) is combined with what is there, in
        write order, so several runs (threads, processes) sharing one trace id add up to one trace: observations
        are upserted by id (others kept); trace fields: an incoming non-empty value wins, metadata keys are
        merged, start = min, end = max, tags = union, level/status = worst of; totals are recomputed from every
        stored observation.

        An already delivered trace that changes goes back to 'pending' so the update is delivered too; a merge does
        that for every destination the trace has rows for. ``running`` (with ``merge``): parts of runs still going
        in this process (``running_in``): their export is held while it lives; a write without it ends the hold.
        Returns the ids written as new traces: only for those is the caller's in-memory ``Trace`` exactly what is
        stored (delivery exports them from memory).
        """
        if not traces:
            return set()
        with self._lock:  # the packer remembers what this store holds: one writer at a time
            self._packer.begin()
            try:
                fresh = self._write_traces(traces, destinations, merge, running)
            except BaseException:
                self._packer.rollback()
                raise
            self._packer.commit()
            return fresh

    def _write_traces(
        self, traces: Sequence[Trace], destinations: Sequence[str], merge: bool, running: bool
    ) -> set[str]:
        blobs: dict[str, tuple[str | None, str]] = {}  # list nodes made by this write (kept across retries)

        def pack(value: Any) -> Any:
            return self._packer.pack(value, blobs)

        def save_blobs(conn: sqlite3.Connection) -> None:
            if blobs:
                insert_rows(
                    conn, "INSERT OR IGNORE INTO blobs (hash, prev, data)", [(h, *node) for h, node in blobs.items()]
                )

        now = time.time_ns()
        destinations = tuple(dict.fromkeys(destinations))
        # an observation id twice in one trace (a span sent again within one OTLP request): its last version, as
        # the upsert keeps it; such a trace is not returned as fresh (it is not what the caller holds)
        twice = {t.id for t in traces if _holds_an_id_twice(t)}
        if twice:
            traces = [_last_versions(t) if t.id in twice else t for t in traces]
        if not merge:
            latest = {t.id: t for t in traces}  # the same id twice in one batch: the last one wins

            def replace(conn: sqlite3.Connection) -> set[str]:
                existing = _existing_nums(conn, list(latest))
                nums = {**_new_nums(conn, [tid for tid in latest if tid not in existing]), **existing}
                _insert_traces(conn, list(latest.values()), nums, destinations, now, replace=True, pack=pack)
                _write_media(conn, traces, now)
                save_blobs(conn)  # before indexing: the index reads the lists back
                _index_new_traces(conn, [t for t in latest.values() if t.id not in existing], nums)
                for chunk in _chunks(list(existing)):
                    _index_search(conn, chunk)
                return set(latest) - set(existing) - twice

            with self._errors():
                return self._write(replace)

        def combine(conn: sqlite3.Connection) -> set[str]:
            counts: dict[str, int] = {}
            for trace in traces:
                counts[trace.id] = counts.get(trace.id, 0) + 1
            existing = _existing_nums(conn, list(counts))
            nums = _new_nums(conn, [tid for tid in counts if tid not in existing])
            # The common case stays batched: ids not stored yet and not repeated in this batch.
            fresh = [t for t in traces if t.id not in existing and counts[t.id] == 1]
            writer = this_process() if running else None  # parts: the run goes on in this process
            _insert_traces(conn, fresh, nums, destinations, now, pack=pack, running_in=writer)
            for trace in traces:
                if trace.id in existing:
                    _merge_trace(conn, trace, existing[trace.id], destinations, now, pack=pack, running_in=writer)
                elif counts[trace.id] > 1:  # the first of several fragments in this batch creates the trace
                    _insert_traces(conn, [trace], nums, destinations, now, pack=pack, running_in=writer)
                    existing[trace.id] = nums[trace.id]
            _write_media(conn, traces, now)
            save_blobs(conn)  # before indexing: the index reads the lists back
            _index_new_traces(conn, fresh, nums)  # from memory
            for chunk in _chunks([tid for tid in counts if tid in existing]):  # merged: as they are stored now
                _index_search(conn, chunk)
            return {t.id for t in fresh} - twice

        with self._errors():
            return self._write(combine)

    # -- reading traces --------------------------------------------------------------------------------------

    def get_trace(self, id_or_prefix: str, *, inputs: bool = True) -> Trace:
        """The trace with this id, or the only trace whose id starts with it (``inputs=False``: without the
        observations' inputs, which are most of a long agent run)."""
        wanted = id_or_prefix.strip()
        if not wanted:
            # a blank id written by an older lftrace or another tool is still readable (`show last`)
            with self._errors():
                exact = self._read(lambda c: _load_traces(c, [id_or_prefix], inputs=inputs))
            if exact:
                return exact[0]
            raise InputError("no trace id given: pass a trace id, a unique prefix of one, or `last`")
        with self._errors():
            trace_id = self._resolve_id(wanted)
            traces = self._read(lambda c: _load_traces(c, [trace_id], inputs=inputs))
        if not traces:  # deleted between resolving and loading
            raise TraceNotFound(f"no trace '{wanted}' in {self.path} (see `lftrace list`)")
        return traces[0]

    def observation_counts(self, trace_ids: Sequence[str]) -> dict[str, int]:
        """{trace id: observations stored} for exact ids (unknown ids left out)."""
        ids = list(dict.fromkeys(trace_ids))

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for chunk in _chunks(ids):
                sql = f"SELECT id, observation_count FROM traces WHERE id IN ({_marks(len(chunk))})"
                counts.update((str(tid), int(n or 0)) for tid, n in conn.execute(sql, list(chunk)))
            return counts

        with self._errors():
            return self._read(work)

    def trace_pages(
        self,
        trace_id: str,
        size: int = 200,
        *,
        as_text: bool = False,
        written: tuple[int, int] | None = None,
        ids: bool = True,
        open_before: bool = False,
    ) -> Iterator[TracePage]:
        """A long trace in pages of ``size`` observations (start order), each read on its own: bounded memory.

        Every page carries the trace's fields and the ids of all its observations (``ids=False``: none, for a
        reader that knows which are roots: a running trace's parts have none); the first page is read in full
        before the next one is (the lock is not held between pages). Nothing for an unknown id.
        ``written=(after, upto)``: only the observations written (or rewritten) in that range of ``last_written``
        positions, in the order they were written; ``open_before``: first those written before that range and
        still open (no end: a running trace's parts send none of them; the root of a long run killed midway).
        """
        headers = self.trace_heads([trace_id])
        if not headers:
            return
        with self._errors():
            known = self._observation_ids(trace_id) if ids else frozenset()
        header = headers[0]
        fields = {f.name: getattr(header, f.name) for f in dataclasses.fields(Trace) if f.name != "observations"}
        if written is not None and open_before:
            for observations in self._observation_pages(
                trace_id, size, as_text=as_text, written=(-1, written[0]), open_only=True
            ):
                yield TracePage(**fields, observations=observations, ids=known)
        for observations in self._observation_pages(trace_id, size, as_text=as_text, written=written):
            yield TracePage(**fields, observations=observations, ids=known)

    def forget_text_lists(self) -> None:
        """Let go of the lists kept for reading parts as text (``_TextLists``: a long conversation's text, ~40 MB
        at 10,007 steps), once the trace they were kept for is exported."""
        with self._lock:
            self._text_lists = _TextLists()

    def last_written(self, trace_id: str, *, running: bool = False) -> int | None:
        """Where a trace's writes are up to: each write (a part of a running trace, a merge) gives the observations
        it writes higher positions (``seq``) than any before; -1 for a trace with none. ``running``: None unless
        the trace is stored and still running (no end yet)."""
        ended = "" if not running else "WHERE EXISTS (SELECT 1 FROM traces WHERE id = ? AND end_ns IS NULL)"

        def work(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                f"SELECT (SELECT coalesce(max(seq), -1) FROM observations WHERE trace_num = {_NUM_OF}) {ended}",
                (trace_id, trace_id) if running else (trace_id,),
            ).fetchone()
            return None if row is None else int(row[0])

        with self._errors():
            return self._read(work)

    def trace_outline(self, trace_id: str) -> Trace | None:
        """A trace's fields and scores, and every observation without its values (no input, output, metadata):
        ids, parents, types, names, times, levels and total costs, in ``get_trace``'s order. What the trace's
        derived fields (status, latency, total cost, handled errors) need, at the cost of its index columns.
        None for an unknown id (an exact id: resolve a prefix first)."""

        def work(conn: sqlite3.Connection) -> Trace | None:
            traces = _load_traces(conn, [trace_id], with_observations=False)
            if not traces:
                return None
            trace = traces[0]
            trace.scores = _load_scores(conn, [trace_id]).get(trace_id, [])
            rows = conn.execute(
                "SELECT id, parent_id, type, name, start_ns, end_ns, level, model, "
                "json_type(data, '$.cost_details.total'), json_extract(data, '$.cost_details.total') "
                f"FROM observations WHERE trace_num = {_NUM_OF} ORDER BY start_ns, seq",
                (trace_id,),
            ).fetchall()
            observations = []
            for obs_id, parent_id, type_, name, start_ns, end_ns, level, model, cost_type, cost in rows:
                # a cost of another JSON type (true, "1") is not a cost, as _numbers has it on a full read
                numeric = cost_type in ("integer", "real") and math.isfinite(cost)
                observations.append(
                    Observation(
                        id=obs_id,
                        trace_id=trace_id,
                        parent_id=parent_id,
                        type=type_,
                        name=name or "",
                        start_time=start_ns,
                        end_time=end_ns,
                        model=model,
                        level=level,
                        cost_details={"total": cost} if numeric else None,
                    )
                )
            trace.observations = _parents_first(observations)
            return trace

        with self._errors():
            return self._read(work)

    def load_inputs(self, observations: Sequence[Observation]) -> None:
        """Fill in the inputs of observations read with ``inputs=False``, in place: ``show`` reads a long trace
        without them and asks here for the few it prints (each shared list is built once, only for these)."""
        by_key = {(o.trace_id, o.id): o for o in observations}
        keys = list(by_key)

        def work(conn: sqlite3.Connection) -> list[Any]:
            stored: list[tuple[tuple[str, str], Any]] = []
            for trace_id in dict.fromkeys(tid for tid, _ in keys):
                ids = [oid for tid, oid in keys if tid == trace_id]
                for chunk in _chunks(ids):
                    rows = conn.execute(
                        f"SELECT id, data FROM observations WHERE trace_num = {_NUM_OF} "
                        f"AND id IN ({_marks(len(chunk))})",
                        [trace_id, *chunk],
                    ).fetchall()
                    stored += [((trace_id, oid), orjson.loads(blob).get("input")) for oid, blob in rows]
            with _collector_paused():
                values = _unpacked(conn, [value for _, value in stored])
            return [(key, value) for (key, _), value in zip(stored, values, strict=True)]

        with self._errors():
            for key, value in self._read(work):
                by_key[key].input = value

    def get_observation(self, trace_id: str | None, observation_id: str) -> Observation | None:
        """One observation (exact ids) with its full values, read alone: the web view's panel asks for the one
        clicked instead of holding every input of a long run. None when the trace has no such observation.
        ``trace_id`` None: the first observation with that id in any trace (a scan of the ids)."""

        def work(conn: sqlite3.Connection) -> Observation | None:
            if trace_id is None:
                row = conn.execute(
                    f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE id = ? LIMIT 1", (observation_id,)
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE trace_num = {_NUM_OF} AND id = ?",
                    (trace_id, observation_id),
                ).fetchone()
            if row is None:
                return None
            with _collector_paused():
                obs = _observation_from_row(row)
                _unpack_shared(conn, [Trace(id=obs.trace_id, name=None, timestamp=0, observations=[obs])])
            return obs

        with self._errors():
            return self._read(work)

    def iter_observations(self, trace_id: str, size: int = 200) -> Iterator[Observation]:
        """Every observation of a trace with its full values, in ``get_trace``'s order (start time, parents
        first), read ``size`` at a time: a 20,000-observation trace streams in bounded memory (``show --json``,
        ``export``). Nothing for an unknown id."""
        with self._errors():
            present = self._observation_ids(trace_id)
        yield from _parents_first_iter(self._observation_pages(trace_id, size), present)

    def _observation_ids(self, trace_id: str) -> frozenset[str]:
        return frozenset(
            self._read(
                lambda c: [
                    r[0] for r in c.execute(f"SELECT id FROM observations WHERE trace_num = {_NUM_OF}", (trace_id,))
                ]
            )
        )

    def _observation_pages(
        self,
        trace_id: str,
        size: int,
        *,
        as_text: bool = False,
        written: tuple[int, int] | None = None,
        open_only: bool = False,
    ) -> Iterator[list[Observation]]:
        """Observations in start order, ``size`` per read (keyset paging: each page is an index range).
        ``as_text``: the items of shared lists as JSON text (``sharing.materialize``), for the export.
        ``written``: only those with ``after < seq <= upto``, in seq order (``trace_pages``); ``open_only``: of
        those, the ones without an end."""
        still_open = "AND end_ns IS NULL " if open_only else ""
        after: tuple[int, int] = (-(2**63), -1)  # keyset position: (start_ns, seq) of the last row read
        if written is not None:
            after = (written[0], 0)
        while True:

            def page(
                conn: sqlite3.Connection, after: tuple[int, int] = after
            ) -> tuple[list[Observation], tuple[int, int]]:
                if written is None:
                    rows = conn.execute(
                        f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE trace_num = {_NUM_OF} "
                        "AND (start_ns, seq) > (?, ?) ORDER BY start_ns, seq LIMIT ?",
                        (trace_id, after[0], after[1], size),
                    ).fetchall()
                    position = (rows[-1][6], rows[-1][2]) if rows else after
                else:
                    rows = conn.execute(
                        f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE trace_num = {_NUM_OF} "
                        f"AND seq > ? AND seq <= ? {still_open}"
                        "ORDER BY seq LIMIT ?",
                        (trace_id, after[0], written[1], size),
                    ).fetchall()
                    position = (rows[-1][2], 0) if rows else after
                with _collector_paused():
                    observations = [_observation_from_row(row) for row in rows]
                    page_trace = Trace(id=trace_id, name=None, timestamp=0, observations=observations)
                    _unpack_shared(conn, [page_trace], as_text=as_text, known=self._text_lists if as_text else None)
                return observations, position

            with self._errors():
                observations, after = self._read(page)
            if not observations:
                return
            yield observations

    def get_traces(self, trace_ids: Sequence[str], *, inputs: bool = True, outputs: bool = True) -> list[Trace]:
        """Full traces for exact ids in one read (for delivery batches); unknown ids are skipped, order is kept.
        ``inputs``/``outputs=False``: their observations without them (as ``iter_traces``)."""
        ids = list(dict.fromkeys(trace_ids))
        with self._errors():
            return self._read(lambda c: _load_traces(c, ids, inputs=inputs, outputs=outputs))

    def experiment_trace_ids(self, since_ns: int, until_ns: int | None = None) -> list[str]:
        """The traces of experiment items (``run_experiment``'s, ours or an SDK's sent to ``lftrace serve``) that
        started in [since_ns, until_ns), newest first: those whose metadata names an experiment."""
        sql = (
            "SELECT id FROM traces WHERE timestamp_ns >= ? AND timestamp_ns < ?"
            " AND json_extract(data, '$.metadata.\"langfuse.experiment\".id') IS NOT NULL"
            " ORDER BY timestamp_ns DESC, id"
        )
        until = until_ns if until_ns is not None else 2**63 - 1
        with self._errors():
            return self._read(lambda c: [row[0] for row in c.execute(sql, (since_ns, until))])

    def trace_heads(self, trace_ids: Sequence[str]) -> list[Trace]:
        """Traces for exact ids without their observations (their own fields: name, metadata, tags, ...), in one
        read whatever the traces' length; unknown ids are skipped, order is kept."""
        ids = list(dict.fromkeys(trace_ids))
        with self._errors():
            return self._read(lambda c: _load_traces(c, ids, with_observations=False))

    def scores(self) -> list[Score]:
        """Every stored score, the newest first (``lftrace serve``'s scores API filters them)."""
        with self._errors():
            return self._read(lambda c: _score_rows(c, "ORDER BY timestamp_ns DESC, id", ()))

    def write_scores(self, scores: Sequence[Score], destinations: Sequence[str] = ()) -> None:
        """Store scores of sessions and dataset runs (``Score.standalone``), each queued for ``destinations``
        on its own (its outbox key is ``score_key(id)``). Trace scores are written with their trace instead."""
        if any(not score.standalone for score in scores):
            raise ValueError("write_scores takes scores without a trace; a trace's scores are written with it")
        now = time.time_ns()
        outbox = [(score_key(score.id), dest, now, now) for score in scores for dest in dict.fromkeys(destinations)]

        def work(conn: sqlite3.Connection) -> None:
            _write_scores(conn, scores)
            insert_rows(conn, _DELIVERY_INSERT, outbox, _DELIVERY_UPSERT)

        with self._errors():
            self._write(work)

    def standalone_scores(self, score_ids: Sequence[str]) -> list[Score]:
        """The scores without a trace among these ids."""
        if not score_ids:
            return []
        clause = f"WHERE trace_id IS NULL AND id IN ({_marks(len(score_ids))})"
        with self._errors():
            return self._read(lambda c: _score_rows(c, clause, list(score_ids)))

    def session_scores(self, session_id: str) -> list[Score]:
        """The scores given to a session itself (not to one of its traces), oldest first."""
        clause = "WHERE session_id = ? AND trace_id IS NULL ORDER BY timestamp_ns, id"
        with self._errors():
            return self._read(lambda c: _score_rows(c, clause, (session_id,)))

    def resolve_id(self, id_or_prefix: str) -> str:
        """The full id of the trace with this id, or of the only trace whose id starts with it (TraceNotFound,
        InputError when several match)."""
        with self._errors():
            return self._resolve_id(id_or_prefix.strip())

    def _resolve_id(self, wanted: str) -> str:
        def lookup(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            if conn.execute("SELECT 1 FROM traces WHERE id = ?", (wanted,)).fetchone():
                return 1, [wanted]
            for prefix in dict.fromkeys((wanted, wanted.lower())):
                bounds = (prefix, prefix + "\U0010ffff")
                where = "FROM traces WHERE id >= ? AND id < ?"
                count = conn.execute(f"SELECT count(*) {where}", bounds).fetchone()[0]
                if count:
                    examples = conn.execute(f"SELECT id {where} ORDER BY id LIMIT 3", bounds).fetchall()
                    return count, [row[0] for row in examples]
            return 0, []

        count, ids = self._read(lookup)
        if count == 0:
            raise TraceNotFound(f"no trace '{wanted}' in {self.path} (see `lftrace list`)")
        if count > 1:
            shown = ", ".join(f"{tid[: len(wanted) + 4]}…" for tid in ids) + (", …" if count > len(ids) else "")
            raise InputError(f"trace id prefix '{wanted}' matches {count} traces: {shown}; give more characters")
        return ids[0]

    def last_trace_id(self) -> str | None:
        """The id of the newest trace (by start time), None for an empty store."""
        with self._errors():
            row = self._read(
                lambda c: c.execute("SELECT id FROM traces ORDER BY timestamp_ns DESC, rowid DESC LIMIT 1").fetchone()
            )
        return None if row is None else str(row[0])

    def list_traces(
        self,
        limit: int | None = 50,
        name: str | None = None,
        level: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        tag: str | None = None,
        since_ns: int | None = None,
        status: str | None = None,
        *,
        where: TraceFilter | None = None,
    ) -> list[TraceSummary]:
        """Trace summaries, newest first; filters combine with AND. Observation blobs are never read.

        ``where`` is the whole filter (``lftrace list``); the keyword filters are shorthands combined with it.
        ``level`` takes a level (DEBUG, DEFAULT, WARNING, ERROR) or a status (ok, error, interrupted, cancelled).
        ``limit=None`` lists everything.
        """
        clause, params = _combine(where, name, level, session_id, user_id, tag, since_ns, status).where()
        sql = (
            "SELECT id, name, timestamp_ns, end_ns, latency, level, status, total_tokens, total_cost, "
            f"observation_count, session_id, user_id, handled_errors, running_in FROM traces t {clause} "
            "ORDER BY timestamp_ns DESC, rowid DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(_clamp_int64(max(int(limit), 0)))

        def work(conn: sqlite3.Connection) -> list[TraceSummary]:
            rows = conn.execute(sql, params).fetchall()
            tags = _load_tags(conn, [row[0] for row in rows])
            return [_summary(row, tags.get(row[0], [])) for row in rows]

        with self._errors():
            return self._read(work)

    def iter_traces(
        self,
        name: str | None = None,
        since_ns: int | None = None,
        *,
        where: TraceFilter | None = None,
        inputs: bool = True,
        outputs: bool = True,
    ) -> Iterator[Trace]:
        """Every matching full trace, oldest first, loaded in pages (the lock is not held between pages).

        ``inputs=False``: observations without their inputs (a long agent run's inputs are most of it);
        ``outputs=False``: without their outputs either (stats reads neither).
        """
        clause, params = _combine(where, name, None, None, None, None, since_ns, None).where()
        with self._errors():
            rows = self._read(
                lambda c: c.execute(
                    f"SELECT id, observation_count FROM traces t {clause} ORDER BY timestamp_ns, rowid", params
                ).fetchall()
            )
        for page in _pages_of_traces(rows):

            def load(conn: sqlite3.Connection, page: Sequence[str] = page) -> list[Trace]:
                return _load_traces(conn, page, inputs=inputs, outputs=outputs)

            with self._errors():
                traces = self._read(load)
            traces.reverse()
            while traces:  # handed over one by one: a trace the caller is done with is not held here
                yield traces.pop()

    def latest_position(self) -> int:
        """Where the store is now, for ``changes_since`` (the newest row's rowid; 0 for an empty store)."""
        with self._errors():
            return int(self._read(lambda c: c.execute("SELECT coalesce(max(rowid), 0) FROM traces").fetchone()[0]))

    def changes_since(self, position: int, trace_ids: Sequence[str] = ()) -> tuple[list[TraceSummary], int]:
        """Summaries of traces written after ``position`` (oldest first) and of ``trace_ids``; the new position.

        A trace rewritten whole gets a new position (it shows up again); one merged in place does not, so a
        caller waiting for a running trace to finish asks for it by id (``lftrace tail``).
        """
        columns = (
            "id, name, timestamp_ns, end_ns, latency, level, status, total_tokens, total_cost, "
            "observation_count, session_id, user_id, handled_errors, running_in"
        )

        def work(conn: sqlite3.Connection) -> tuple[list[TraceSummary], int]:
            rows = conn.execute(
                f"SELECT rowid, {columns} FROM traces WHERE rowid > ? ORDER BY rowid LIMIT 1000", (position,)
            ).fetchall()
            newest = max([position, *(row[0] for row in rows)])
            found = [row[1:] for row in rows]
            listed = {row[0] for row in found}
            wanted = [tid for tid in dict.fromkeys(trace_ids) if tid not in listed]
            for chunk in _chunks(wanted):
                found += conn.execute(
                    f"SELECT {columns} FROM traces WHERE id IN ({_marks(len(chunk))})", list(chunk)
                ).fetchall()
            tags = _load_tags(conn, [row[0] for row in found])
            return [_summary(row, tags.get(row[0], [])) for row in found], newest

        with self._errors():
            return self._read(work)

    def list_sessions(self, limit: int | None = 50, *, where: TraceFilter | None = None) -> list[SessionSummary]:
        """Sessions (threads) with their traces' totals, the most recently active first.

        ``where`` chooses the traces that count (e.g. ``since``); traces without a session are left out.
        """
        clause, params = (where or TraceFilter()).where()
        if not clause and limit is not None:
            # the newest sessions first, from the covering (session_id, timestamp_ns) index alone; then the
            # totals of those only: ~30 ms on 100,000 traces instead of ~300 ms for totals of every session
            def newest(conn: sqlite3.Connection) -> list[str]:
                rows = conn.execute(
                    "SELECT session_id FROM traces WHERE session_id IS NOT NULL GROUP BY session_id "
                    "ORDER BY max(timestamp_ns) DESC, session_id LIMIT ?",
                    (_clamp_int64(max(int(limit), 0)),),
                ).fetchall()
                return [row[0] for row in rows]

            with self._errors():
                chosen = self._read(newest)
            if not chosen:
                return []
            clause, params = f"WHERE t.session_id IN ({_marks(len(chosen))})", list(chosen)
        clause = f"{clause} AND t.session_id IS NOT NULL" if clause else "WHERE t.session_id IS NOT NULL"
        sql = (
            "SELECT t.session_id, count(*), min(t.timestamp_ns), max(coalesce(t.end_ns, t.timestamp_ns)), "
            "sum(t.total_tokens), sum(t.total_cost), count(t.total_cost), "
            "sum(t.status = 'error'), sum(t.status = 'interrupted'), sum(t.status = 'ok' AND t.level = 'ERROR'), "
            "group_concat(DISTINCT t.user_id) "
            f"FROM traces t {clause} GROUP BY t.session_id ORDER BY max(t.timestamp_ns) DESC, t.session_id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(_clamp_int64(max(int(limit), 0)))
        with self._errors():
            rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [
            SessionSummary(
                id=sid,
                traces=n,
                first=first,
                last=last,
                total_tokens=int(tokens or 0),
                total_cost=float(cost) if costs else None,
                errors=int(errors or 0),
                interrupted=int(interrupted or 0),
                handled_errors=int(handled or 0),
                user_ids=sorted(users.split(",")) if users else [],
            )
            for sid, n, first, last, tokens, cost, costs, errors, interrupted, handled, users in rows
        ]

    def count_traces(self) -> int:
        with self._errors():
            return int(self._read(lambda c: c.execute("SELECT count(*) FROM traces").fetchone()[0]))

    # -- outbox ----------------------------------------------------------------------------------------------

    def claim_pending(
        self,
        destination: str,
        owner: str,
        limit: int,
        lease_seconds: float = 60,
        include_failed: bool = False,
    ) -> list[str]:
        """Atomically claim up to ``limit`` due deliveries for ``destination``; returns trace ids, oldest first.

        A claimed row is invisible to other claimers until it is marked, released, or its lease expires.
        """
        return [tid for tid, _ in self.claim_revisions(destination, owner, limit, lease_seconds, include_failed)]

    def claim_revisions(
        self,
        destination: str,
        owner: str,
        limit: int,
        lease_seconds: float = 60,
        include_failed: bool = False,
    ) -> list[tuple[str, int]]:
        """``claim_pending`` with each row's revision: 0 means the trace was written once and never changed since.

        With nothing due, a read says so and no write transaction is begun: the export helper looks for due rows
        each time a part of a running trace is written, and its write lock made the program's writer wait for it
        (SQLite's busy handler sleeps 1 to 100 ms at a time) while the program waited for that writer.
        """
        if limit <= 0:
            return []
        statuses = ("pending", "failed") if include_failed else ("pending",)
        due = (
            "SELECT 1 FROM deliveries d WHERE destination = ? "
            f"AND status IN ({_marks(len(statuses))}) AND next_attempt_ns <= ? AND NOT {_HELD} LIMIT 1"
        )
        with self._errors():
            if not self._read(lambda c: c.execute(due, (destination, *statuses, time.time_ns())).fetchone()):
                return []

        def work(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            now = time.time_ns()
            # A lease dies with its process: rows claimed by a process of this host that no longer runs (a
            # killed `run` or `push`) are claimable at once, not after their lease runs out.
            holders = conn.execute(
                "SELECT DISTINCT claimed_by FROM deliveries WHERE destination = ? AND claimed_until_ns > ?",
                (destination, now),
            ).fetchall()
            dead = [h for (h,) in holders if h and h != owner and not owner_alive(h)]
            # a trace's row, or a standalone score's (score_key: no trace row, ordered by when it was queued)
            rows = conn.execute(
                "SELECT d.trace_id, d.revision FROM deliveries d LEFT JOIN traces t ON t.id = d.trace_id "
                f"WHERE d.destination = ? AND d.status IN ({_marks(len(statuses))}) AND d.next_attempt_ns <= ? "
                "AND (d.claimed_until_ns IS NULL OR d.claimed_until_ns <= ? "
                f"OR d.claimed_by IN ({_marks(len(dead))})) "
                f"AND (t.id IS NOT NULL OR d.trace_id LIKE '{SCORE_KEY}%') "
                f"AND NOT {_HELD} "
                "ORDER BY coalesce(t.timestamp_ns, d.enqueued_ns), d.trace_id LIMIT ?",
                (destination, *statuses, now, now, *dead, limit),
            ).fetchall()
            until = now + int(lease_seconds * 1e9)
            for chunk in _chunks([tid for tid, _ in rows]):  # one statement per chunk (see insert_rows)
                conn.execute(
                    "UPDATE deliveries SET claimed_by = ?, claimed_until_ns = ?, claimed_revision = revision "
                    f"WHERE destination = ? AND trace_id IN ({_marks(len(chunk))})",
                    (owner, until, destination, *chunk),
                )
            return [(str(tid), int(rev)) for tid, rev in rows]

        with self._errors():
            return self._write(work)

    def undeliverable_reasons(self, destination: str) -> list[str]:
        """Why rows for ``destination`` that are not delivered cannot be claimed now (for `push`'s message)."""

        def work(conn: sqlite3.Connection) -> list[str]:
            now = time.time_ns()
            reasons: list[str] = []
            leased = conn.execute(
                "SELECT claimed_by, count(*), max(claimed_until_ns) FROM deliveries WHERE destination = ? "
                "AND status <> 'delivered' AND claimed_until_ns > ? GROUP BY claimed_by",
                (destination, now),
            ).fetchall()
            for holder, count, until in leased:
                if holder and owner_alive(holder):
                    left = max((until - now) / 1e9, 0)
                    reasons.append(
                        f"{count} being delivered by another process ({_owner_label(holder)}; its claim ends in "
                        f"{left:.0f}s at the latest)"
                    )
            waiting = conn.execute(
                "SELECT count(*), min(next_attempt_ns) FROM deliveries WHERE destination = ? AND status = 'pending' "
                "AND next_attempt_ns > ?",
                (destination, now),
            ).fetchone()
            if waiting and waiting[0]:
                left = max((waiting[1] - now) / 1e9, 0)
                reasons.append(f"{waiting[0]} waiting for the server's Retry-After (the first in {left:.0f}s)")
            failed = conn.execute(
                "SELECT count(*) FROM deliveries WHERE destination = ? AND status = 'failed'", (destination,)
            ).fetchone()
            if failed and failed[0]:
                reasons.append(f"{failed[0]} rejected by the server earlier (retried by `lftrace push --retry-failed`)")
            return reasons

        with self._errors():
            return self._read(work)

    def _update_deliveries(self, sql: str, destination: str, trace_ids: Iterable[str], *values: Any) -> None:
        ids = list(dict.fromkeys(trace_ids))
        if not ids:
            return
        now = time.time_ns()

        def work(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):  # one statement per chunk (see insert_rows)
                where = f"WHERE destination = ? AND trace_id IN ({_marks(len(chunk))})"
                conn.execute(f"{sql}, updated_ns = ? {where}", (*values, now, destination, *chunk))

        with self._errors():
            self._write(work)

    def mark_delivered(self, destination: str, trace_ids: Iterable[str]) -> None:
        """Delivered, unless the trace was rewritten after it was claimed: then it stays pending for the new version."""
        now = time.time_ns()
        self._update_deliveries(
            "UPDATE deliveries SET "
            "status = CASE WHEN claimed_revision IS NOT NULL AND claimed_revision <> revision "
            "THEN 'pending' ELSE 'delivered' END, "
            "delivered_ns = ?, last_error = NULL, next_attempt_ns = 0, "
            "claimed_by = NULL, claimed_until_ns = NULL, claimed_revision = NULL",
            destination,
            trace_ids,
            now,
        )

    def mark_retry(self, destination: str, trace_ids: Iterable[str], error: str, next_attempt_ns: int) -> None:
        """A transient failure: stays pending, retried from ``next_attempt_ns``."""
        self._update_deliveries(
            "UPDATE deliveries SET status = 'pending', attempts = attempts + 1, last_error = ?, next_attempt_ns = ?, "
            "claimed_by = NULL, claimed_until_ns = NULL, claimed_revision = NULL",
            destination,
            trace_ids,
            error,
            int(next_attempt_ns),
        )

    def failed_to_reach_since(self, destination: str, since_ns: int) -> bool:
        """Whether a delivery to ``destination`` ended unavailable (``mark_retry``) at or after ``since_ns`` and is
        still pending: no process has got through since (one that does marks every due trace delivered)."""
        with self._errors():
            row = self._read(
                lambda conn: conn.execute(
                    "SELECT 1 FROM deliveries WHERE destination = ? AND status = 'pending' AND next_attempt_ns >= ? "
                    "AND attempts > 0 LIMIT 1",
                    (destination, int(since_ns)),
                ).fetchone()
            )
        return row is not None

    def mark_failed(self, destination: str, trace_ids: Iterable[str], error: str) -> None:
        """A permanent failure (e.g. 4xx): kept, not retried until ``claim_pending(..., include_failed=True)``."""
        self._update_deliveries(
            "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?, "
            "claimed_by = NULL, claimed_until_ns = NULL, claimed_revision = NULL",
            destination,
            trace_ids,
            error,
        )

    def release(self, destination: str, trace_ids: Iterable[str]) -> None:
        """Give claimed rows back untouched (e.g. on shutdown before export)."""
        self._update_deliveries(
            "UPDATE deliveries SET claimed_by = NULL, claimed_until_ns = NULL, claimed_revision = NULL",
            destination,
            trace_ids,
        )

    def enqueue(self, destination: str, trace_ids: Iterable[str] | None = None) -> int:
        """Add 'pending' rows for the given traces (default: every trace) lacking one for ``destination``.

        Returns how many rows were added. Unknown trace ids are ignored.
        """
        now = time.time_ns()
        insert = (
            "INSERT OR IGNORE INTO deliveries (trace_id, destination, enqueued_ns, updated_ns) "
            "SELECT id, ?, ?, ? FROM traces"
        )

        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            if trace_ids is None:
                conn.execute(insert, (destination, now, now))
            else:
                rows = [(destination, now, now, tid) for tid in dict.fromkeys(trace_ids)]
                conn.executemany(f"{insert} WHERE id = ?", rows)
            return conn.total_changes - before

        with self._errors():
            return self._write(work)

    def delivery_counts(self) -> dict[str, dict[str, Any]]:
        """{destination: {"pending": n, "delivered": n, "failed": n, "last_error": str | None, "scores": {...}}}:
        traces, and apart under "scores" the standalone scores (of a session or a dataset run) with the same counts."""

        def work(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            counts: dict[str, dict[str, Any]] = {}
            # a running trace's row (queued by its parts, held until the run ends) is counted as "running"
            rows = conn.execute(
                f"SELECT destination, CASE WHEN status = 'pending' AND {_HELD} THEN 'running' ELSE status END, "
                f"count(*), total(trace_id LIKE '{SCORE_KEY}%') FROM deliveries d GROUP BY 1, 2 ORDER BY destination"
            ).fetchall()
            for dest, status, n, scores in rows:
                entry = counts.setdefault(dest, no_deliveries())
                entry[status] = entry.get(status, 0) + n - int(scores)
                entry["scores"][status] = entry["scores"].get(status, 0) + int(scores)
            errors = conn.execute(
                "SELECT destination, last_error FROM deliveries d WHERE last_error IS NOT NULL "
                "AND status <> 'delivered' AND updated_ns = (SELECT max(updated_ns) FROM deliveries "
                "WHERE destination = d.destination AND last_error IS NOT NULL AND status <> 'delivered')"
            ).fetchall()
            for dest, error in errors:
                counts[dest]["last_error"] = error
            return counts

        with self._errors():
            return self._read(work)

    def waiting_counts(self, destinations: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``delivery_counts`` of these destinations without the delivered ones (what a flush reports): reads only
        the rows still waiting, an index range each, not every trace ever delivered (13 ms a flush at 100,000)."""

        def work(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            counts: dict[str, dict[str, Any]] = {}
            for dest in destinations:
                entry: dict[str, Any] = {"pending": 0, "failed": 0, "scores": 0, "last_error": None}
                waiting = f"destination = ? AND status IN ('pending', 'failed') AND NOT {_HELD}"
                for status, n, scores in conn.execute(
                    f"SELECT status, count(*), total(trace_id LIKE '{SCORE_KEY}%') FROM deliveries d "
                    f"WHERE {waiting} GROUP BY status",
                    (dest,),
                ):
                    entry[status] = n
                    entry["scores"] += int(scores)  # standalone scores' rows among them
                last = conn.execute(
                    f"SELECT last_error FROM deliveries d WHERE {waiting} AND last_error IS NOT NULL "
                    "ORDER BY updated_ns DESC LIMIT 1",
                    (dest,),
                ).fetchone()
                entry["last_error"] = last[0] if last else None
                counts[dest] = entry
            return counts

        with self._errors():
            return self._read(work)

    def delivery_state(self, trace_id: str) -> dict[str, str]:
        """{destination: status} for one trace (full id)."""
        with self._errors():
            rows = self._read(
                lambda c: c.execute(
                    "SELECT destination, status FROM deliveries WHERE trace_id = ? ORDER BY destination", (trace_id,)
                ).fetchall()
            )
        return {str(dest): str(status) for dest, status in rows}

    # -- meta ------------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._errors():
            row = self._read(lambda c: c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
        return None if row is None else row[0]

    def get_meta_prefixed(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) of every meta entry whose key starts with ``prefix``."""
        bounds = (prefix, prefix + "\U0010ffff")
        with self._errors():
            rows = self._read(
                lambda c: c.execute(
                    "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key", bounds
                ).fetchall()
            )
        return [(str(k), str(v)) for k, v in rows]

    # -- prompts ---------------------------------------------------------------------------------------------
    def create_prompt(
        self,
        name: str,
        type: str,
        prompt: Any,
        *,
        config: Any = None,
        labels: Sequence[str] = (),
        tags: Sequence[str] | None = None,
        commit_message: str | None = None,
    ) -> dict[str, Any]:
        """A new version of prompt ``name`` (version 1 for a new name), as Langfuse's ``Prompt`` JSON.

        The new version takes ``labels`` from the versions that had them, and "latest"; ``tags`` (when given)
        become every version's. A name keeps its type: a chat version of a text prompt is an InputError."""
        now = time.time_ns()
        wanted = [label for label in dict.fromkeys(labels) if label != PROMPT_LATEST]

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            last = conn.execute(
                "SELECT version, type, tags FROM prompts WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            if last is not None and last[1] != type:
                raise InputError(f"prompt {name!r} is a {last[1]} prompt: a new version must be one too")
            version = 1 if last is None else last[0] + 1
            kept_tags = list(tags) if tags is not None else (orjson.loads(last[2]) if last is not None else [])
            self._move_prompt_labels(conn, name, [*wanted, PROMPT_LATEST], now)
            conn.execute(
                "INSERT INTO prompts (name, version, type, prompt, config, labels, tags, commit_message, created_ns,"
                " updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    version,
                    type,
                    orjson.dumps(prompt).decode(),
                    orjson.dumps(config if config is not None else {}).decode(),
                    orjson.dumps([*wanted, PROMPT_LATEST]).decode(),
                    orjson.dumps(kept_tags).decode(),
                    commit_message,
                    now,
                    now,
                ),
            )
            if tags is not None:
                conn.execute("UPDATE prompts SET tags = ? WHERE name = ?", (orjson.dumps(kept_tags).decode(), name))
            created = self._prompt_row(conn, name, version)
            assert created is not None  # inserted above, in this transaction
            return created

        with self._errors():
            return self._write(work)

    def label_prompt(self, name: str, version: int, new_labels: Sequence[str]) -> dict[str, Any] | None:
        """Add ``new_labels`` to a version (taken from the others); None when there is no such version."""
        now = time.time_ns()
        wanted = [label for label in dict.fromkeys(new_labels) if label != PROMPT_LATEST]

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT labels FROM prompts WHERE name = ? AND version = ?", (name, version)).fetchone()
            if row is None:
                return None
            self._move_prompt_labels(conn, name, wanted, now)
            labels = [*orjson.loads(row[0]), *(label for label in wanted if label not in orjson.loads(row[0]))]
            conn.execute(
                "UPDATE prompts SET labels = ?, updated_ns = ? WHERE name = ? AND version = ?",
                (orjson.dumps(labels).decode(), now, name, version),
            )
            return self._prompt_row(conn, name, version)

        with self._errors():
            return self._write(work)

    @staticmethod
    def _move_prompt_labels(conn: sqlite3.Connection, name: str, labels: Sequence[str], now: int) -> None:
        """Take ``labels`` off every version of ``name`` that has one of them (a label is on one version)."""
        for version, had in conn.execute("SELECT version, labels FROM prompts WHERE name = ?", (name,)).fetchall():
            kept = [label for label in orjson.loads(had) if label not in labels]
            if len(kept) != len(orjson.loads(had)):
                conn.execute(
                    "UPDATE prompts SET labels = ?, updated_ns = ? WHERE name = ? AND version = ?",
                    (orjson.dumps(kept).decode(), now, name, version),
                )

    def get_prompt(self, name: str, *, version: int | None = None, label: str | None = None) -> dict[str, Any] | None:
        """A version of prompt ``name`` as Langfuse's ``Prompt`` JSON: by ``version``, else by ``label`` (default
        "production"); None when there is none."""

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            if version is not None:
                return self._prompt_row(conn, name, version)
            wanted = label or PROMPT_DEFAULT_LABEL
            for found, labels in conn.execute(
                "SELECT version, labels FROM prompts WHERE name = ? ORDER BY version DESC", (name,)
            ).fetchall():
                if wanted in orjson.loads(labels):
                    return self._prompt_row(conn, name, found)
            return None

        with self._errors():
            return self._read(work)

    def list_prompts(self) -> list[dict[str, Any]]:
        """One entry a prompt name, as Langfuse's ``PromptMeta``: its versions, labels, tags, type, last config."""

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            rows = conn.execute(
                "SELECT name, version, type, config, labels, tags, updated_ns FROM prompts ORDER BY name, version"
            ).fetchall()
            for name, version, kind, config, labels, tags, updated in rows:
                entry = out.setdefault(name, {"name": name, "type": kind, "versions": [], "labels": []})
                entry["versions"].append(version)
                entry["labels"] += [label for label in orjson.loads(labels) if label not in entry["labels"]]
                entry.update(tags=orjson.loads(tags), lastConfig=orjson.loads(config))
                entry["lastUpdatedAt"] = max(entry.get("lastUpdatedAt") or "", iso_from_ns(updated) or "")
            return list(out.values())

        with self._errors():
            return self._read(work)

    # -- datasets -------------------------------------------------------------------------------------------
    def create_dataset(self, name: str, **fields: Any) -> dict[str, Any]:
        """A dataset as Langfuse's ``Dataset`` JSON; an existing name keeps its id and takes the fields given
        (``description``, ``metadata``, ``input_schema``, ``expected_output_schema``)."""
        now = time.time_ns()
        columns = ("description", "metadata", "input_schema", "expected_output_schema")
        given = {c: fields[c] for c in columns if fields.get(c) is not None}

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute("SELECT id FROM datasets WHERE name = ?", (name,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO datasets (id, name, description, metadata, input_schema, expected_output_schema,"
                    " created_ns, updated_ns) VALUES (?, ?, ?, 'null', 'null', 'null', ?, ?)",
                    (new_dataset_id(), name, None, now, now),
                )
            for column, value in given.items():
                stored = value if column == "description" else orjson.dumps(value).decode()
                conn.execute(f"UPDATE datasets SET {column} = ?, updated_ns = ? WHERE name = ?", (stored, now, name))
            made = self._dataset_row(conn, name)
            assert made is not None  # made above, in this transaction
            return made

        with self._errors():
            return self._write(work)

    # -- media (media.py) ---------------------------------------------------------------------------------------

    def media(self, media_id: str) -> tuple[bytes, str] | None:
        """(content, content type) of stored media; None when unknown or its bytes never arrived."""

        def work(conn: sqlite3.Connection) -> tuple[bytes, str] | None:
            row = conn.execute("SELECT content, content_type FROM media WHERE id = ?", (media_id,)).fetchone()
            return None if row is None or row[0] is None else (bytes(row[0]), str(row[1]))

        with self._errors():
            return self._read(work)

    def media_record(self, media_id: str) -> dict[str, Any] | None:
        """A media record's fields (``content``: whether its bytes are stored), None when unknown."""

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT id, content_type, size, sha256, content IS NOT NULL, created_ns, uploaded_ns FROM media "
                "WHERE id = ?",
                (media_id,),
            ).fetchone()
            keys = ("id", "content_type", "size", "sha256", "content", "created_ns", "uploaded_ns")
            return None if row is None else dict(zip(keys, row, strict=True))

        with self._errors():
            return self._read(work)

    def media_places(self, media_id: str) -> list[dict[str, str | None]]:
        """Where a media record appears: ``{"trace_id", "observation_id", "dataset_item_id", "field"}`` each."""

        def work(conn: sqlite3.Connection) -> list[dict[str, str | None]]:
            rows = conn.execute(
                "SELECT trace_id, observation_id, dataset_item_id, field FROM media_links WHERE media_id = ? "
                "ORDER BY trace_id, observation_id",
                (media_id,),
            ).fetchall()
            return [
                {"trace_id": tid or None, "observation_id": oid or None, "dataset_item_id": iid or None, "field": f}
                for tid, oid, iid, f in rows
            ]

        with self._errors():
            return self._read(work)

    def trace_media(self, trace_ids: Sequence[str]) -> dict[str, list[Any]]:
        """{trace id: its media (``media.MediaLink``, with the bytes)} for the traces among ``trace_ids`` that
        have any (what the export uploads before their spans)."""
        from .media import MediaLink

        ids = list(dict.fromkeys(trace_ids))

        def work(conn: sqlite3.Connection) -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {}
            for chunk in _chunks(ids):
                for tid, obs, field, mid, kind, content in conn.execute(
                    "SELECT l.trace_id, l.observation_id, l.field, l.media_id, m.content_type, m.content "
                    "FROM media_links l JOIN media m ON m.id = l.media_id "
                    f"WHERE l.trace_id IN ({_marks(len(chunk))}) AND m.content IS NOT NULL "
                    "ORDER BY l.trace_id",
                    list(chunk),
                ):
                    out.setdefault(tid, []).append(MediaLink(mid, kind, bytes(content), field, obs or None))
            return out

        with self._errors():
            return self._read(work)

    def announce_media(
        self,
        media_id: str,
        content_type: str,
        size: int,
        sha256: str,
        *,
        field: str,
        trace_id: str | None = None,
        observation_id: str | None = None,
        dataset_item_id: str | None = None,
    ) -> bool:
        """Record media a client is about to upload (Langfuse's ``POST /api/public/media``) and where it appears;
        True when its bytes are already stored (nothing to upload)."""
        now = time.time_ns()

        def work(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT OR IGNORE INTO media (id, content_type, size, sha256, created_ns) VALUES (?, ?, ?, ?, ?)",
                (media_id, content_type, size, sha256, now),
            )
            conn.execute(
                f"{_MEDIA_LINK_INSERT} VALUES (?, ?, ?, ?, ?)",
                (trace_id or "", observation_id or "", dataset_item_id or "", field, media_id),
            )
            row = conn.execute("SELECT content IS NOT NULL FROM media WHERE id = ?", (media_id,)).fetchone()
            return bool(row[0])

        with self._errors():
            return self._write(work)

    def store_media_content(self, media_id: str, content: bytes) -> None:
        """The bytes of announced media, uploaded (``lftrace serve``'s upload URL). The traces that show it go
        back to pending where they were delivered without it (``serve --forward``: SDKs upload media after the
        spans)."""
        now = time.time_ns()

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE media SET content = ?, size = ?, uploaded_ns = ? WHERE id = ?",
                (content, len(content), now, media_id),
            )
            linked = "SELECT trace_id FROM media_links WHERE media_id = ? AND trace_id <> ''"
            conn.execute(f"{_REQUEUE} WHERE trace_id IN ({linked})", (now, media_id))

        with self._errors():
            self._write(work)

    def get_dataset(self, name: str) -> dict[str, Any] | None:
        with self._errors():
            return self._read(lambda conn: self._dataset_row(conn, name))

    def list_datasets(self) -> list[dict[str, Any]]:
        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            names = [row[0] for row in conn.execute("SELECT name FROM datasets ORDER BY created_ns DESC")]
            return [found for name in names if (found := self._dataset_row(conn, name)) is not None]

        with self._errors():
            return self._read(work)

    def upsert_dataset_item(self, dataset_name: str, item_id: str | None, **fields: Any) -> dict[str, Any] | None:
        """A dataset item as Langfuse's ``DatasetItem`` JSON, made or updated on its id (fields: ``input``,
        ``expected_output``, ``metadata``, ``source_trace_id``, ``source_observation_id``, ``status``); None when
        there is no such dataset. An id of another dataset's item is an InputError (ids are project-wide)."""
        now = time.time_ns()
        json_columns = ("input", "expected_output", "metadata")
        text_columns = ("source_trace_id", "source_observation_id", "status")

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            dataset = conn.execute("SELECT id FROM datasets WHERE name = ?", (dataset_name,)).fetchone()
            if dataset is None:
                return None
            chosen = item_id or new_dataset_id()
            row = conn.execute("SELECT dataset_id FROM dataset_items WHERE id = ?", (chosen,)).fetchone()
            if row is not None and row[0] != dataset[0]:
                raise InputError(f"dataset item {chosen[:255]!r} belongs to another dataset: item ids are project-wide")
            if row is None:
                conn.execute(
                    "INSERT INTO dataset_items (id, dataset_id, input, expected_output, metadata, status, created_ns,"
                    " updated_ns) VALUES (?, ?, 'null', 'null', 'null', 'ACTIVE', ?, ?)",
                    (chosen, dataset[0], now, now),
                )
            for column in (*json_columns, *text_columns):
                if fields.get(column) is not None:
                    value = fields[column]
                    stored = orjson.dumps(value).decode() if column in json_columns else str(value)
                    conn.execute(
                        f"UPDATE dataset_items SET {column} = ?, updated_ns = ? WHERE id = ?", (stored, now, chosen)
                    )
            return self._dataset_item_row(conn, chosen)

        with self._errors():
            return self._write(work)

    def dataset_items(
        self, dataset_name: str, *, offset: int = 0, limit: int = 50, as_of_ns: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """(a page of the dataset's items, newest first; how many it has). ``as_of_ns``: the items as they were then
        (Langfuse's ``version``): those created since are left out; the store keeps no history of an item, so
        ``DatasetHistoryMissing`` when one of the others changed since (its content then is not known)."""
        as_of = _clamp_int64(as_of_ns) if as_of_ns is not None else 2**63 - 1

        def work(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
            dataset = conn.execute("SELECT id FROM datasets WHERE name = ?", (dataset_name,)).fetchone()
            if dataset is None:
                return [], 0
            if as_of_ns is not None:
                changed = conn.execute(
                    "SELECT id FROM dataset_items WHERE dataset_id = ? AND created_ns <= ? AND updated_ns > ? LIMIT 1",
                    (dataset[0], as_of, as_of),
                ).fetchone()
                if changed is not None:
                    raise DatasetHistoryMissing(
                        f"dataset item {changed[0][:64]!r} of {dataset_name[:200]!r} changed after "
                        f"{iso_from_ns(as_of)}; lftrace keeps only the current version of an item, so its "
                        "version at that time is not known (leave out version= for the current items)"
                    )
            (total,) = conn.execute(
                "SELECT count(*) FROM dataset_items WHERE dataset_id = ? AND created_ns <= ?", (dataset[0], as_of)
            ).fetchone()
            ids = conn.execute(
                "SELECT id FROM dataset_items WHERE dataset_id = ? AND created_ns <= ? "
                "ORDER BY created_ns DESC, id LIMIT ? OFFSET ?",
                (dataset[0], as_of, limit, offset),
            ).fetchall()
            return [item for (found,) in ids if (item := self._dataset_item_row(conn, found)) is not None], total

        with self._errors():
            return self._read(work)

    def get_dataset_item(self, item_id: str) -> dict[str, Any] | None:
        with self._errors():
            return self._read(lambda conn: self._dataset_item_row(conn, item_id))

    @staticmethod
    def _dataset_row(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT id, description, metadata, input_schema, expected_output_schema, created_ns, updated_ns "
            "FROM datasets WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        dataset_id, description, metadata, input_schema, output_schema, created, updated = row
        return {
            "id": dataset_id,
            "name": name,
            "description": description,
            "metadata": orjson.loads(metadata),
            "inputSchema": orjson.loads(input_schema),
            "expectedOutputSchema": orjson.loads(output_schema),
            "createdAt": iso_from_ns(created),
            "updatedAt": iso_from_ns(updated),
        }

    @staticmethod
    def _dataset_item_row(conn: sqlite3.Connection, item_id: str) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT i.dataset_id, d.name, i.input, i.expected_output, i.metadata, i.source_trace_id,"
            " i.source_observation_id, i.status, i.created_ns, i.updated_ns FROM dataset_items i"
            " JOIN datasets d ON d.id = i.dataset_id WHERE i.id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            return None
        dataset_id, dataset_name, data_in, expected, metadata, trace_id, observation_id, status, created, updated = row
        return {
            "id": item_id,
            "status": status,
            "input": orjson.loads(data_in),
            "expectedOutput": orjson.loads(expected),
            "metadata": orjson.loads(metadata),
            "sourceTraceId": trace_id,
            "sourceObservationId": observation_id,
            "datasetId": dataset_id,
            "datasetName": dataset_name,
            "mediaReferences": [],  # lftrace keeps no media: values are stored as given
            "createdAt": iso_from_ns(created),
            "updatedAt": iso_from_ns(updated),
            "version": iso_from_ns(updated),  # when this version became current: the store keeps only the last
        }

    @staticmethod
    def _prompt_row(conn: sqlite3.Connection, name: str, version: int) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT type, prompt, config, labels, tags, commit_message, created_ns, updated_ns FROM prompts "
            "WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is None:
            return None
        kind, prompt, config, labels, tags, commit_message, created, updated = row
        return {
            "name": name,
            "version": version,
            "type": kind,
            "prompt": orjson.loads(prompt),
            "config": orjson.loads(config),
            "labels": orjson.loads(labels),
            "tags": orjson.loads(tags),
            "commitMessage": commit_message,
            "createdAt": iso_from_ns(created),
            "updatedAt": iso_from_ns(updated),
            "resolutionGraph": None,
        }

    def set_meta(self, key: str, value: str) -> None:
        with self._errors():
            self._write(
                lambda c: c.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
            )


class _ErrorMapper:
    """Turns sqlite3 errors into one-line StoreErrors that name the file and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or not isinstance(exc, sqlite3.Error):
            return
        text = str(exc)
        lowered = text.lower()
        code = str(getattr(exc, "sqlite_errorname", "") or "")
        data_problem = False
        if "file is not a database" in lowered:
            message = f"{self.path} is not an lftrace trace store (file is not a database); {_FIX}"
        elif "malformed" in lowered or "corrupt" in lowered:
            message = f"the trace store {self.path} is corrupted ({text}); {_FIX}"
        elif _is_busy(exc):
            message = (
                f"the trace store {self.path} stayed locked by another process for {RETRY_DEADLINE_S:.0f}s ({text}); "
                "retry, or set LFTRACE_STORE to another path"
            )
        elif code == "SQLITE_FULL" or "disk is full" in lowered:
            message = (
                f"cannot write to the trace store {self.path}: the disk is full ({text}); free some space or {_FIX}"
            )
        elif code.startswith("SQLITE_IOERR") or "disk i/o error" in lowered:
            message = (
                f"cannot write to the trace store {self.path}: disk I/O error (disk full, file size limit or a failing "
                f"disk: {text}); free some space or {_FIX}"
            )
        elif code.startswith("SQLITE_READONLY") or "readonly" in lowered or "read-only" in lowered:
            message = f"cannot write to the trace store {self.path}: it is read-only ({text}); check its permissions or {_FIX}"
        elif code in ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH") or "unable to open" in lowered:
            message = f"cannot open the trace store {self.path} ({text}); check the permissions of the file and its directory or {_FIX}"
        else:
            data_problem = isinstance(exc, sqlite3.IntegrityError | sqlite3.InterfaceError | sqlite3.DataError)
            message = f"trace store {self.path} failed: {text}; {_FIX}"
        error = StoreError(message)
        error.data_problem = data_problem
        raise error from None


# -- rows <-> model ------------------------------------------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _trace_row(
    trace: Trace, num: int, pack: Callable[[Any], Any] = _same, running_in: str | None = None
) -> tuple[Any, ...]:
    data = {key: getattr(trace, key) for key in _TRACE_DATA_FIELDS}
    data["input"], data["output"], data["tags"] = pack(trace.input), pack(trace.output), list(trace.tags)
    sums = data[_TOTALS_KEY] = _totals_of(trace.observations)
    count, level, tokens, cost = _totals_result(sums)  # Trace.level/total_tokens/total_cost, one pass
    return (
        trace.id,
        trace.name,
        trace.timestamp,
        trace.end_time,
        trace.latency,
        level,
        trace.status,
        trace.session_id,
        trace.user_id,
        trace.environment,
        trace.release,
        tokens,
        cost,
        count,
        dumps(data),
        trace.handled_errors,
        num,
        running_in,
    )


# Observation fields with a column of their own; every other field of the dataclass goes into the JSON ``data``
# column, so a field added to model.Observation is stored and read back without a change here.
_OBS_COLUMN_FIELDS = ("id", "trace_id", "parent_id", "type", "name", "start_time", "end_time", "level", "model")
_OBS_DATA_FIELDS = tuple(f.name for f in dataclasses.fields(Observation) if f.name not in _OBS_COLUMN_FIELDS)
# The same for traces (observations and scores have tables of their own; the rest are columns)
_TRACE_COLUMN_FIELDS = ("id", "name", "timestamp", "end_time", "session_id", "user_id", "environment", "release")
_TRACE_DATA_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Trace)
    if f.name not in (*_TRACE_COLUMN_FIELDS, "observations", "scores") and not f.metadata.get("transient")
)


_PACKABLE = (list, dict, Extended)


def _observation_row(
    num: int, trace_id: str, seq: int, obs: Observation, pack: Callable[[Any], Any] = _same
) -> tuple[Any, ...]:
    data = {key: value for key in _OBS_DATA_FIELDS if (value := getattr(obs, key)) is not None}
    # only a list, a dict or a part's Extended list can be packed (a long list shared); JSON text, strings and
    # numbers are kept as they are
    if type(obs.input) in _PACKABLE:
        data["input"] = pack(obs.input)
    if type(obs.output) in _PACKABLE:
        data["output"] = pack(obs.output)
    return (
        num,
        trace_id,
        obs.id,
        seq,
        obs.parent_id,
        obs.type,
        obs.name,
        obs.start_time,
        obs.end_time,
        obs.level,
        obs.model,
        dumps(data),
    )


_TAG_INSERT = "INSERT INTO trace_tags (trace_id, tag, position)"
_TRACE_COLUMNS = (
    "id, name, timestamp_ns, end_ns, latency, level, status, session_id, user_id, environment, release, "
    "total_tokens, total_cost, observation_count, data, handled_errors, num, running_in"
)
_OBSERVATION_INSERT = f"INSERT INTO observations (trace_num, {_OBSERVATION_COLUMNS})"  # and insert_rows
_OBSERVATION_UPSERT = (
    # an observation id written again (a duplicate in one trace, or a merge): the incoming version wins
    "ON CONFLICT (trace_num, id) DO UPDATE SET seq = excluded.seq, parent_id = excluded.parent_id, "
    "type = excluded.type, name = excluded.name, start_ns = excluded.start_ns, end_ns = excluded.end_ns, "
    "level = excluded.level, model = excluded.model, data = excluded.data"
)
_DELIVERY_INSERT = "INSERT INTO deliveries (trace_id, destination, enqueued_ns, updated_ns)"
# An outbox row ``d`` held back: its trace is a part of a run still going in a live process (``running_in``: a long
# run's parts queue it; it goes out whole when the run ends, or as far as it got once that process is gone)
_HELD = (
    "EXISTS (SELECT 1 FROM traces h WHERE h.id = d.trace_id AND h.running_in IS NOT NULL "
    "AND lftrace_alive(h.running_in))"
)
_DELIVERY_UPSERT = (
    "ON CONFLICT (trace_id, destination) DO UPDATE SET "
    "revision = revision + 1, updated_ns = excluded.updated_ns, "
    "status = CASE WHEN status = 'delivered' THEN 'pending' ELSE status END, "
    "next_attempt_ns = CASE WHEN status = 'delivered' THEN 0 ELSE next_attempt_ns END, "
    "delivered_ns = CASE WHEN status = 'delivered' THEN NULL ELSE delivered_ns END"
)


def _existing_nums(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """{id: number} of the stored traces among ``ids``."""
    found: dict[str, int] = {}
    for chunk in _chunks(ids):
        found.update(conn.execute(f"SELECT id, num FROM traces WHERE id IN ({_marks(len(chunk))})", list(chunk)))
    return found


def _new_nums(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """Numbers for new traces, after every number given (inside the write transaction)."""
    if not ids:
        return {}
    last = int(conn.execute("SELECT coalesce(max(num), 0) FROM traces").fetchone()[0])
    return {tid: last + i for i, tid in enumerate(ids, 1)}


def _tag_rows(trace_id: str, tags: Iterable[Any]) -> list[tuple[str, str, int]]:
    rows: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for tag in tags:
        if isinstance(tag, str) and tag not in seen:
            seen.add(tag)
            rows.append((trace_id, tag, len(seen)))
    return rows


# a trace's delivery rows back to pending (a delivered trace is sent again: it changed, or its media arrived)
_REQUEUE = (
    "UPDATE deliveries SET revision = revision + 1, updated_ns = ?, "
    "status = CASE WHEN status = 'delivered' THEN 'pending' ELSE status END, "
    "next_attempt_ns = CASE WHEN status = 'delivered' THEN 0 ELSE next_attempt_ns END, "
    "delivered_ns = CASE WHEN status = 'delivered' THEN NULL ELSE delivered_ns END"
)
_MEDIA_INSERT = "INSERT OR IGNORE INTO media (id, content_type, size, sha256, content, created_ns)"
_MEDIA_LINK_INSERT = "INSERT OR IGNORE INTO media_links (trace_id, observation_id, dataset_item_id, field, media_id)"


def _write_media(conn: sqlite3.Connection, traces: Sequence[Trace], now: int) -> None:
    """The media the writer took out of these traces, each content once, and where it appeared."""
    links = [(t.id, link) for t in traces for link in t.media]
    if not links:
        return
    contents = {link.media_id: link for _, link in links}
    insert_rows(
        conn,
        _MEDIA_INSERT,
        [(m.media_id, m.content_type, len(m.content), m.sha256, m.content, now) for m in contents.values()],
    )
    # a row stored without its bytes (announced through serve's media API, never uploaded) gets them now
    for m in contents.values():
        conn.execute("UPDATE media SET content = ? WHERE id = ? AND content IS NULL", (m.content, m.media_id))
    insert_rows(
        conn,
        _MEDIA_LINK_INSERT,
        [(tid, link.observation_id or "", "", link.field, link.media_id) for tid, link in links],
    )


def _insert_traces(
    conn: sqlite3.Connection,
    traces: Sequence[Trace],
    nums: dict[str, int],
    destinations: Sequence[str],
    now: int,
    *,
    replace: bool = False,
    pack: Callable[[Any], Any] = _same,
    running_in: str | None = None,
) -> None:
    """Write whole traces under their numbers (``replace``: dropping what was stored under their ids first);
    ``running_in``: the process whose running runs they are parts of (``m016_running_in``), else None."""
    if not traces:
        return
    trace_rows: list[tuple[Any, ...]] = []
    obs_rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[str, str, int]] = []
    for trace in traces:
        num = nums[trace.id]
        trace_rows.append(_trace_row(trace, num, pack, running_in))
        obs_rows.extend(_observation_row(num, trace.id, seq, obs, pack) for seq, obs in enumerate(trace.observations))
        tag_rows.extend(_tag_rows(trace.id, trace.tags))
    if replace:
        ids = [(t.id,) for t in traces]
        conn.executemany("DELETE FROM observations WHERE trace_num = ?", [(nums[t.id],) for t in traces])
        conn.executemany("DELETE FROM trace_tags WHERE trace_id = ?", ids)
        conn.executemany("DELETE FROM scores WHERE trace_id = ?", ids)
    _write_scores(conn, [score for t in traces for score in t.scores])
    insert_rows(conn, f"INSERT OR REPLACE INTO traces ({_TRACE_COLUMNS})", trace_rows)
    insert_rows(conn, _OBSERVATION_INSERT, obs_rows, _OBSERVATION_UPSERT)
    insert_rows(conn, _TAG_INSERT, tag_rows)
    delivery_rows = [(t.id, dest, now, now) for dest in destinations for t in traces]
    if delivery_rows:
        insert_rows(conn, _DELIVERY_INSERT, delivery_rows, _DELIVERY_UPSERT)


def _merge_trace(
    conn: sqlite3.Connection,
    incoming: Trace,
    num: int,
    destinations: Sequence[str],
    now: int,
    pack: Callable[[Any], Any] = _same,
    running_in: str | None = None,
) -> None:
    """Combine ``incoming`` with the stored trace of the same id (inside the caller's write transaction);
    ``running_in``: the process whose running run this is a part of (None: the hold ends)."""
    tid = incoming.id
    row = conn.execute(
        "SELECT name, timestamp_ns, end_ns, status, session_id, user_id, environment, release, data "
        "FROM traces WHERE id = ?",
        (tid,),
    ).fetchone()
    name, start_ns, end_ns, _status, session_id, user_id, environment, release, blob = row
    data = orjson.loads(blob)
    tags = [r[0] for r in conn.execute("SELECT tag FROM trace_tags WHERE trace_id = ? ORDER BY position", (tid,))]

    def pick(new: Any, old: Any) -> Any:
        return new if new not in (None, "", [], {}) else old

    ends = [e for e in (end_ns, incoming.end_time) if e is not None]
    metadata = {**(data.get("metadata") or {}), **(incoming.metadata or {})} or None
    merged_tags = list(dict.fromkeys([*tags, *(t for t in incoming.tags if isinstance(t, str))]))
    new_env = incoming.environment if incoming.environment not in (None, "", "default") else None
    merged_data = {
        "input": pick(pack(incoming.input), data.get("input")),
        "output": pick(pack(incoming.output), data.get("output")),
        "metadata": metadata,
        "tags": merged_tags,
        "version": pick(incoming.version, data.get("version")),
        "public": bool(incoming.public or data.get("public")),
    }
    # totals: a part adds its sums to the stored ones, less those of the stored versions of observations it writes
    # again (a long run's root, written open with its first part and whole at its end); recounted over the whole
    # trace in SQL when that cannot be known (a trace stored before the sums were kept, a rewrite of its worst level)
    sums = data.get(_TOTALS_KEY)
    if not _valid_totals(sums):
        sums = None
    else:
        incoming_ids = [o.id for o in incoming.observations]
        if _stored_ids(conn, num, incoming_ids):
            sums = _without(sums, _observation_totals(conn, num, incoming_ids))
    next_seq = conn.execute("SELECT coalesce(max(seq), -1) + 1 FROM observations WHERE trace_num = ?", (num,))
    first_seq = next_seq.fetchone()[0]
    insert_rows(
        conn,
        _OBSERVATION_INSERT,
        [_observation_row(num, tid, first_seq + i, obs, pack) for i, obs in enumerate(incoming.observations)],
        _OBSERVATION_UPSERT,
    )
    _write_scores(conn, incoming.scores)
    conn.execute("DELETE FROM trace_tags WHERE trace_id = ?", (tid,))
    insert_rows(conn, _TAG_INSERT, _tag_rows(tid, merged_tags))
    if sums is not None:
        sums = _combined_totals(sums, _totals_of(incoming.observations))
    else:
        sums = _observation_totals(conn, num)
    merged_data[_TOTALS_KEY] = sums
    count, level, tokens, cost = _totals_result(sums)
    merged_status, handled = _merged_status(conn, tid, num, level, metadata)
    starts = [t for t in (start_ns, incoming.timestamp) if t]  # 0: a fragment that has no start (scores only)
    start = min(starts) if starts else 0
    end = max(ends) if ends else None
    conn.execute(
        "UPDATE traces SET name = ?, timestamp_ns = ?, end_ns = ?, latency = ?, level = ?, status = ?, "
        "session_id = ?, user_id = ?, environment = ?, release = ?, total_tokens = ?, total_cost = ?, "
        "observation_count = ?, data = ?, handled_errors = ?, running_in = ? WHERE id = ?",
        (
            pick(incoming.name, name),
            start,
            end,
            None if end is None else (end - start) / 1e9,
            level,
            merged_status,
            pick(incoming.session_id, session_id),
            pick(incoming.user_id, user_id),
            new_env or environment,
            pick(incoming.release, release),
            tokens,
            cost,
            count,
            dumps(merged_data),
            handled,
            running_in,
            tid,
        ),
    )
    # Every destination that has (or had) this trace gets the merged version: rows go back to pending.
    conn.execute(f"{_REQUEUE} WHERE trace_id = ?", (now, tid))
    insert_rows(conn, f"INSERT OR IGNORE {_DELIVERY_INSERT[7:]}", [(tid, dest, now, now) for dest in destinations])


def _merged_status(conn: sqlite3.Connection, trace_id: str, num: int, level: str, metadata: Any) -> tuple[str, int]:
    """(status, handled errors) of a merged trace, by ``Trace.status``'s rules, counted in SQL."""
    probe = Trace(id=trace_id, name=None, timestamp=0, metadata=metadata if isinstance(metadata, dict) else None)
    if probe.status == "cancelled":
        return "cancelled", 0
    if level == "ERROR":
        roots, failed_roots, errors = conn.execute(
            "SELECT count(*) FILTER (WHERE parent_id IS NULL), "
            "count(*) FILTER (WHERE parent_id IS NULL AND level = 'ERROR'), count(*) FILTER (WHERE level = 'ERROR') "
            "FROM observations WHERE trace_num = ?",
            (num,),
        ).fetchone()
        if failed_roots or not roots:
            return "error", 0
        return probe.status, int(errors)
    return probe.status, 0


_SCORE_FIELDS = (
    "value",
    "string_value",
    "data_type",
    "session_id",
    "dataset_run_id",
    "comment",
    "metadata",
    "config_id",
    "environment",
    "source",
)


def _write_scores(conn: sqlite3.Connection, scores: Sequence[Score]) -> None:
    """Upsert by score id: the same score written again (a retry, an update) replaces the stored one."""
    if not scores:
        return
    rows = [
        (
            sc.id,
            sc.trace_id or None,
            sc.observation_id,
            sc.session_id,
            sc.dataset_run_id,
            sc.name,
            sc.timestamp,
            dumps({key: getattr(sc, key) for key in _SCORE_FIELDS}),
        )
        for sc in scores
    ]
    insert_rows(
        conn,
        "INSERT OR REPLACE INTO scores (id, trace_id, observation_id, session_id, dataset_run_id, name, timestamp_ns, "
        "data)",
        rows,
    )


def _load_scores(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[Score]]:
    out: dict[str, list[Score]] = {}
    for score in _score_rows(conn, f"WHERE trace_id IN ({_marks(len(ids))}) ORDER BY timestamp_ns, id", list(ids)):
        out.setdefault(score.trace_id or "", []).append(score)
    return out


def _score_rows(conn: sqlite3.Connection, clause: str, params: Sequence[Any]) -> list[Score]:
    try:
        rows = conn.execute(
            f"SELECT id, trace_id, observation_id, name, timestamp_ns, data FROM scores {clause}", params
        ).fetchall()
    except sqlite3.OperationalError as exc:  # a store opened read-only before migration 5 (no scores yet) or 10
        if "no such table" not in str(exc) and "no such column" not in str(exc):  # (no scores without a trace)
            raise
        return []
    out = []
    for sid, tid, obs_id, name, ts, blob in rows:
        data = orjson.loads(blob)
        fields = {key: data[key] for key in _SCORE_FIELDS if key in data}
        out.append(Score(id=sid, trace_id=tid, observation_id=obs_id, name=name, timestamp=ts, **fields))
    return out


_TOTALS_KEY = "_totals"  # in a trace's stored data: the sums below, so a merged part adds to them


def _holds_an_id_twice(trace: Trace) -> bool:
    observations = trace.observations
    return len({o.id for o in observations}) != len(observations)


def _last_versions(trace: Trace) -> Trace:
    """``trace`` (a copy) with only the last version of each observation id, where its first one was: what the
    store keeps of it, so the totals written with it count each observation once."""
    last = {o.id: o for o in trace.observations}
    return dataclasses.replace(trace, observations=list(last.values()))


def _totals_of(observations: Iterable[Observation]) -> list[Any]:
    """[count, worst level rank, observations with an integer usage total, their sum, every integer usage value
    summed, observations with a numeric cost total, their sum]: what ``Trace`` derives its totals from."""
    count, rank, n_total, total, ints, n_cost, cost = 0, LEVEL_RANK["DEFAULT"], 0, 0, 0, 0, 0.0
    for obs in observations:
        count += 1
        level_rank = LEVEL_RANK.get(obs.level, 1)
        if level_rank > rank:
            rank = level_rank
        usage = obs.usage_details
        if isinstance(usage, dict):  # the type rules of Trace.usage / total_cost
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    ints += value
                    if key == "total":
                        n_total += 1
                        total += value
        details = obs.cost_details
        if isinstance(details, dict):
            price = details.get("total")
            if isinstance(price, int | float) and not isinstance(price, bool):
                n_cost += 1
                cost += price
    return [count, rank, n_total, total, ints, n_cost, cost]


def _combined_totals(a: list[Any], b: list[Any]) -> list[Any]:
    return [a[0] + b[0], max(a[1], b[1]), *(x + y for x, y in zip(a[2:], b[2:], strict=True))]


def _without(sums: list[Any], removed: list[Any]) -> list[Any] | None:
    """``sums`` less ``removed`` (sums of some of the same observations); None when the worst level of the rest is
    not known (the removed ones held the worst level, above DEFAULT: another one may or may not have it too)."""
    rank, removed_rank = sums[1], removed[1]
    if removed[0] and removed_rank >= rank and removed_rank > LEVEL_RANK["DEFAULT"]:
        return None
    count, _, n_total, total, ints, n_cost, cost = (x - y for x, y in zip(sums, removed, strict=True))
    return [count, rank, n_total, total, ints, n_cost, cost if n_cost else 0.0]


def _valid_totals(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 7
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _totals_result(sums: list[Any]) -> tuple[int, str, int, float | None]:
    """(count, worst level, total tokens, total cost) as ``Trace`` computes them."""
    count, rank, n_total, total, ints, n_cost, cost = sums
    level = LEVELS[max(min(int(rank), len(LEVELS) - 1), LEVEL_RANK["DEFAULT"])] if count else "DEFAULT"
    return int(count), level, int(total if n_total else ints), (float(cost) if n_cost else None)


def _observation_totals(conn: sqlite3.Connection, num: int, ids: Sequence[str] | None = None) -> list[Any]:
    """The ``_totals_of`` sums over every stored observation of a trace (or of those of ``ids`` stored), aggregated
    in SQL (no Python parse)."""
    if ids is not None:
        sums = [0, LEVEL_RANK["DEFAULT"], 0, 0, 0, 0, 0.0]
        for chunk in _chunks(ids):
            sums = _combined_totals(
                sums, _observation_totals_where(conn, num, f"AND o.id IN ({_marks(len(chunk))})", chunk)
            )
        return sums
    return _observation_totals_where(conn, num, "", ())


def _observation_totals_where(conn: sqlite3.Connection, num: int, clause: str, params: Sequence[str]) -> list[Any]:
    ranks = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in LEVEL_RANK.items())
    count, rank, n_total, total, n_cost, cost = conn.execute(
        f"SELECT count(*), max(CASE level {ranks} ELSE 1 END), "
        "count(CASE WHEN json_type(data, '$.usage_details.total') = 'integer' THEN 1 END), "
        "sum(CASE WHEN json_type(data, '$.usage_details.total') = 'integer' "
        "THEN json_extract(data, '$.usage_details.total') END), "
        "count(CASE WHEN json_type(data, '$.cost_details.total') IN ('integer', 'real') THEN 1 END), "
        "sum(CASE WHEN json_type(data, '$.cost_details.total') IN ('integer', 'real') "
        "THEN json_extract(data, '$.cost_details.total') END) "
        f"FROM observations o WHERE o.trace_num = ? {clause}",
        (num, *params),
    ).fetchone()
    ints = conn.execute(
        "SELECT sum(u.value) FROM observations o, json_each(o.data, '$.usage_details') u "
        f"WHERE o.trace_num = ? {clause} AND u.type = 'integer'",
        (num, *params),
    ).fetchone()[0]
    return [
        int(count),
        max(int(rank if rank is not None else 1), LEVEL_RANK["DEFAULT"]),
        int(n_total or 0),
        int(total or 0),
        int(ints or 0),
        int(n_cost or 0),
        float(cost or 0.0),
    ]


def _stored_ids(conn: sqlite3.Connection, num: int, ids: Sequence[str]) -> bool:
    """Whether any of these observation ids is stored under the trace already (a rewrite, not a new part)."""
    for chunk in _chunks(ids):
        found = conn.execute(
            f"SELECT 1 FROM observations WHERE trace_num = ? AND id IN ({_marks(len(chunk))}) LIMIT 1",
            [num, *chunk],
        ).fetchone()
        if found:
            return True
    return False


def _observation_from_row(row: Sequence[Any]) -> Observation:
    trace_id, obs_id, _seq, parent_id, type_, name, start_ns, end_ns, level, model, blob = row
    data = orjson.loads(blob)
    values = {key: data[key] for key in _OBS_DATA_FIELDS if key in data}
    values["usage_details"] = _numbers(data.get("usage_details"), whole=True)
    values["cost_details"] = _numbers(data.get("cost_details"), whole=False)
    values["environment"] = data.get("environment") or "default"
    return Observation(
        id=obs_id,
        trace_id=trace_id,
        parent_id=parent_id,
        type=type_,
        name=name or "",
        start_time=start_ns,
        end_time=end_ns,
        model=model,
        level=level,
        **values,
    )


def _numbers(value: Any, *, whole: bool) -> Any:
    """Usage (whole numbers) or cost (finite numbers) as every reader expects them: entries of another type,
    written by another tool or an older lftrace, are left out rather than crash ``show`` or ``stats``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return None
    if all(type(v) is int or (not whole and type(v) is float and math.isfinite(v)) for v in value.values()):
        return value  # the common case: nothing to drop
    kinds = (int,) if whole else (int, float)
    return {
        k: v
        for k, v in value.items()
        if isinstance(v, kinds) and not isinstance(v, bool) and (whole or math.isfinite(v))
    } or None


def _parents_first(observations: list[Observation]) -> list[Observation]:
    """Start-time order (already sorted), except that a child never comes before its parent."""
    return list(_parents_first_iter([observations], {o.id for o in observations}))


def _parents_first_iter(pages: Iterable[list[Observation]], present: Iterable[str]) -> Iterator[Observation]:
    """``_parents_first`` over pages read one after the other: only children waiting for a later parent are
    held (none in a trace written by lftrace, whose children start after their parents)."""
    present = present if isinstance(present, set | frozenset) else set(present)
    done: set[str] = set()
    waiting: dict[str, list[Observation]] = {}
    for observations in pages:
        for obs in observations:
            parent = obs.parent_id
            if parent is not None and parent in present and parent not in done and parent != obs.id:
                waiting.setdefault(parent, []).append(obs)
                continue
            stack = [obs]
            while stack:
                current = stack.pop()
                done.add(current.id)
                yield current
                stack.extend(reversed(waiting.pop(current.id, [])))
    for children in waiting.values():  # cycles in broken data: keep them rather than drop them
        yield from [c for c in children if c.id not in done]


def _load_tags(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for chunk in _chunks(ids):
        rows = conn.execute(
            f"SELECT trace_id, tag FROM trace_tags WHERE trace_id IN ({_marks(len(chunk))}) ORDER BY trace_id, position",
            list(chunk),
        ).fetchall()
        for trace_id, tag in rows:
            tags.setdefault(trace_id, []).append(tag)
    return tags


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a read builds many objects that hold no cycles (rows, dicts,
    observations): its passes over everything already built made reading a 20,000-observation trace ~30% slower
    and grow faster than the trace. Left as it was found (a program that turned it off keeps it off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _load_traces(
    conn: sqlite3.Connection,
    ids: Sequence[str],
    *,
    with_observations: bool = True,
    inputs: bool = True,
    outputs: bool = True,
) -> list[Trace]:
    """Full traces for ``ids`` in the given order (missing ids are skipped); ``with_observations=False``: without
    them; ``inputs=False``/``outputs=False``: without the observations' inputs/outputs (None)."""
    with _collector_paused():
        return _read_traces(conn, ids, with_observations=with_observations, inputs=inputs, outputs=outputs)


def _read_traces(
    conn: sqlite3.Connection, ids: Sequence[str], *, with_observations: bool, inputs: bool, outputs: bool
) -> list[Trace]:
    by_id: dict[str, Trace] = {}
    for chunk in _chunks(ids):
        marks = _marks(len(chunk))
        rows = conn.execute(
            "SELECT id, name, timestamp_ns, end_ns, session_id, user_id, environment, release, data, num, "
            f"running_in FROM traces WHERE id IN ({marks})",
            list(chunk),
        ).fetchall()
        nums = [row[-2] for row in rows]
        for tid, name, ts, end_ns, session_id, user_id, environment, release, blob, num, writer in rows:
            data = orjson.loads(blob)
            values = {key: data[key] for key in _TRACE_DATA_FIELDS if key in data}
            values["tags"] = list(data.get("tags") or [])
            values["public"] = bool(data.get("public", False))
            by_id[tid] = Trace(
                id=tid,
                name=name,
                timestamp=ts,
                session_id=session_id,
                user_id=user_id,
                release=release,
                environment=environment or "default",
                end_time=end_ns,
                abandoned=_abandoned(end_ns, writer),
                **values,
            )
            if by_id[tid].abandoned:  # rare: a run killed midway
                by_id[tid].last_seen = conn.execute(
                    "SELECT max(end_ns) FROM observations WHERE trace_num = ?", (num,)
                ).fetchone()[0]
        if not with_observations:
            continue
        obs_rows = conn.execute(
            f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE trace_num IN ({_marks(len(nums))}) "
            "ORDER BY trace_num, start_ns, seq",
            nums,
        ).fetchall()
        grouped: dict[str, list[Observation]] = {}
        for row in obs_rows:
            grouped.setdefault(row[0], []).append(_observation_from_row(row))
        for tid, observations in grouped.items():
            if tid in by_id:
                by_id[tid].observations = _parents_first(observations)
        for tid, scores in _load_scores(conn, chunk).items():
            if tid in by_id:
                by_id[tid].scores = scores
    _unpack_shared(conn, list(by_id.values()), inputs=inputs, outputs=outputs)
    return [by_id[tid] for tid in ids if tid in by_id]


_CHAIN_SQL = (
    "WITH RECURSIVE chain(hash) AS (SELECT value FROM json_each(?) "
    "UNION SELECT b.prev FROM blobs b JOIN chain c ON b.hash = c.hash WHERE b.prev IS NOT NULL) "
    "SELECT b.hash, b.prev, b.data FROM blobs b JOIN chain c ON b.hash = c.hash"
)


# ... and only the nodes after lists already built (?2): the chains stop where they reach one
_CHAIN_AFTER_SQL = (
    "WITH RECURSIVE known(hash) AS (SELECT value FROM json_each(?2)), "
    "chain(hash) AS (SELECT value FROM json_each(?1) WHERE value NOT IN (SELECT hash FROM known) "
    "UNION SELECT b.prev FROM blobs b JOIN chain c ON b.hash = c.hash "
    "WHERE b.prev IS NOT NULL AND b.prev NOT IN (SELECT hash FROM known)) "
    "SELECT b.hash, b.prev, b.data FROM blobs b JOIN chain c ON b.hash = c.hash"
)
TEXT_LISTS_KEPT = 8


class _TextLists:
    """The last ``TEXT_LISTS_KEPT`` shared lists built as text (``as_text``) by one store, by node hash.

    A running trace's parts are exported as they are written, each read on its own: every read walked its lists'
    chains back to the run's first step (a 4,000-step trace read in parts of ~90 observations: 1.41 s of CPU, 0.23 s
    with these; in parts of 800: 0.80 and 0.20 s). Nodes are content-addressed, so a list built once is the same
    list for as long as the store lives, and a later part's lists, which extend it, need only the nodes after it.
    Items are their JSON texts (bytes), shared by the lists that hold them: readers must not mutate a list they get.
    ``blocks`` makes a read's lists ready for orjson, sharing their runs of items between reads as the lists do.
    """

    def __init__(self) -> None:
        self._lists: dict[str, list[Any]] = {}
        self.blocks = TextBlocks()

    def lists(self) -> Mapping[str, list[Any]]:
        """The lists kept, by hash (read only: ``materialize`` copies what it is given)."""
        return self._lists

    def keep(self, lists: Mapping[str, list[Any]]) -> None:
        """The longest of ``lists`` (a long run's newest), dropping the oldest kept beyond the limit."""
        for head in sorted(lists, key=lambda h: len(lists[h]))[-TEXT_LISTS_KEPT:]:
            self._lists.pop(head, None)
            self._lists[head] = lists[head]
        while len(self._lists) > TEXT_LISTS_KEPT:
            del self._lists[next(iter(self._lists))]


def _shared_lists(
    conn: sqlite3.Connection, wanted: set[str], as_text: bool = False, known: _TextLists | None = None
) -> dict[str, list[Any]]:
    # one recursive query for every chain (a JSON array parameter has no variable limit; chains share nodes)
    heads = orjson.dumps(sorted(wanted)).decode()
    if known is None:
        rows = conn.execute(_CHAIN_SQL, (heads,)).fetchall()
        return materialize({node: (prev, data) for node, prev, data in rows}, wanted, as_text=as_text)
    kept = known.lists()
    rows = conn.execute(_CHAIN_AFTER_SQL, (heads, orjson.dumps(list(kept)).decode())).fetchall()
    nodes = {node: (prev, data) for node, prev, data in rows}
    built = materialize(nodes, wanted, as_text=as_text, built=kept)
    known.keep({head: built[head] for head in wanted if head in built})
    return built


def _unpacked(conn: sqlite3.Connection, values: list[Any]) -> list[Any]:
    """Stored values with their list node references replaced by the full lists."""
    wanted: set[str] = set()
    marked = False
    for value in values:
        marked = references(value, wanted) or marked
    if not marked:
        return values
    lists = _shared_lists(conn, wanted) if wanted else {}
    return [unpack(value, lists) for value in values]


def _unpack_shared(
    conn: sqlite3.Connection,
    traces: Sequence[Trace],
    *,
    inputs: bool = True,
    outputs: bool = True,
    as_text: bool = False,
    known: _TextLists | None = None,
) -> None:
    """Replace list node references in inputs/outputs by the full lists (each distinct list built once).

    ``inputs=False``: observations' inputs are left out (None): what stats and diff read of a long trace;
    ``outputs=False``: their outputs too (stats). ``known``: lists built as text before (with ``as_text``).
    """
    wanted: set[str] = set()
    marked = False  # a reference or an escaped user's dict somewhere: unpack needed
    for trace in traces:
        marked = references(trace.input, wanted) | references(trace.output, wanted) | marked
        for obs in trace.observations:
            if inputs:
                marked = references(obs.input, wanted) or marked
            else:
                obs.input = None
            if outputs:
                marked = references(obs.output, wanted) or marked
            else:
                obs.output = None
    if not marked:
        return
    lists = _shared_lists(conn, wanted, as_text, known) if wanted else {}
    if as_text:  # items as JSON bytes: made into fragments for orjson
        blocks = known.blocks if known is not None else TextBlocks()
        lists = {head: blocks.ready(lists[head]) for head in wanted if head in lists}
    for trace in traces:
        trace.input = unpack(trace.input, lists)
        trace.output = unpack(trace.output, lists)
        for obs in trace.observations:
            obs.input = unpack(obs.input, lists)
            obs.output = unpack(obs.output, lists)


def _combine(
    where: TraceFilter | None,
    name: str | None,
    level: str | None,
    session_id: str | None,
    user_id: str | None,
    tag: str | None,
    since_ns: int | None,
    status: str | None,
) -> TraceFilter:
    """The keyword shorthands of ``list_traces``/``iter_traces`` folded into one ``TraceFilter``."""
    base = where or TraceFilter()
    only_level, level_status = legacy_level(level)
    changes: dict[str, Any] = {}
    for key, value in (("name", name), ("level", only_level), ("status", status or level_status),
                       ("session_id", session_id), ("user_id", user_id), ("since_ns", since_ns)):  # fmt: skip
        if value is not None:
            changes[key] = value
    if tag is not None:
        changes["tags"] = (*base.tags, tag)
    return replace(base, **changes) if changes else base


def _summary(row: Sequence[Any], tags: list[str]) -> TraceSummary:
    (tid, name, ts, end_ns, latency, level, status, tokens, cost, count, session_id, user_id, handled, writer) = row
    if end_ns is None and status == "ok":  # a partial trace written while the run was still going
        status = "incomplete" if _abandoned(end_ns, writer) else "running"
    return TraceSummary(
        id=tid,
        name=name,
        timestamp=ts,
        latency=latency,
        level=level,
        total_tokens=tokens or 0,
        total_cost=cost,
        observation_count=count or 0,
        session_id=session_id,
        user_id=user_id,
        tags=tags,
        status=status,
        handled_errors=handled or 0,
    )
