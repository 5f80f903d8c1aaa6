"""Scores of sessions and dataset runs (no trace), as the official SDK makes them with
``create_score(session_id=...)`` / ``create_score(dataset_run_id=...)``: stored on their own, shown with their
session, queued in the outbox and delivered to Langfuse's scores API, kept when Langfuse is down.

Real SDK code through the client, a real SQLite file, real ``lftrace`` subprocesses and a real receiver on
127.0.0.1 (the fake Langfuse of ``support.otlp_receiver``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from lftrace import Langfuse
from lftrace.client import reset_clients
from lftrace.langchain import CallbackHandler
from lftrace.model import Score, score_key
from lftrace.store import LATEST_VERSION, TraceStore
from support.otlp_receiver import Reply
from support.traces import BASE_NS, make_trace, new_id

LFTRACE = str(Path(sys.executable).parent / "lftrace")
PK, SK = "pk-lf-scores-0001", "sk-lf-scores-0002"


def _lftrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LFTRACE, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ))


def _scores_posted(receiver) -> list[dict]:
    return [
        s for r in receiver.requests if r.path == "/api/public/scores" and r.status == 202 for s in json.loads(r.body)
    ]


def test_session_and_dataset_run_scores_are_stored_and_shown_with_their_session(isolated_env: Path) -> None:
    langfuse = Langfuse()
    chat = RunnableLambda(lambda q: f"echo {q}")
    chat.invoke("hi", config={"callbacks": [CallbackHandler()], "metadata": {"langfuse_session_id": "chat-7"}})
    # the official SDK's calls, unchanged: a session's score and an experiment's (dataset run) score
    langfuse.create_score(name="csat", value=4, session_id="chat-7", comment="quick answer")
    langfuse.create_score(name="resolved", value=True, data_type="BOOLEAN", session_id="chat-7")
    langfuse.create_score(name="accuracy", value=0.75, dataset_run_id="run-2026-11")
    langfuse.create_score(name="orphan", value=1)  # belongs to nothing: not recorded (a warning says so)
    assert langfuse.flush() is True
    reset_clients()

    shown = _lftrace("show", "--session", "chat-7")
    assert shown.returncode == 0, shown.stderr
    assert "scores csat 4, resolved True" in shown.stdout
    assert "user: hi" in shown.stdout  # the session's trace is still there, turn by turn

    listed = json.loads(_lftrace("sessions", "--json").stdout)
    (session,) = listed
    assert session["sessionId"] == "chat-7" and session["traces"] == 1
    assert [(s["name"], s["value"], s["comment"], s["sessionId"], s["traceId"]) for s in session["scores"]] == [
        ("csat", 4.0, "quick answer", "chat-7", None),
        ("resolved", 1.0, None, "chat-7", None),
    ]
    with TraceStore(isolated_env, create=False) as store:
        by_name = {s.name: s for s in store.scores()}
        assert set(by_name) == {"csat", "resolved", "accuracy"}
        assert (by_name["accuracy"].dataset_run_id, by_name["accuracy"].trace_id) == ("run-2026-11", None)
        (trace,) = store.list_traces()
        assert store.get_trace(trace.id).scores == []  # a session's score is not its trace's


@pytest.mark.parametrize("helper", ["true", "false"])  # delivered by the export helper, or by a thread of the program
def test_standalone_scores_go_to_langfuse_s_scores_api_and_wait_while_it_is_down(
    receiver, isolated_env, monkeypatch, helper
) -> None:
    monkeypatch.setenv("LFTRACE_EXPORT_PROCESS", helper)
    receiver.scores_reply = Reply(503, "busy")
    langfuse = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    langfuse.create_score(name="csat", value=5, session_id="s-1")
    langfuse.create_score(name="f1", value=0.5, dataset_run_id="run-1", metadata={"split": "test"})
    assert langfuse.flush() is True  # on disk, though Langfuse answered 503: queued for a later push
    # the error names the scores API that answered, not the OTLP endpoint it never called
    assert (
        langfuse.last_delivery.summary()
        == f"queued: 2 scores pending (HTTP 503 from {receiver.url}/api/public/scores: busy)"
    )
    destination = f"langfuse:{receiver.url}"
    counts = langfuse.store.delivery_counts()[destination]
    assert (counts["pending"], counts["scores"]["pending"], counts["scores"]["delivered"]) == (0, 2, 0)
    assert _scores_posted(receiver) == []
    if helper == "true":  # once is enough: `lftrace status` counts them apart from traces
        status = _lftrace("status").stdout.strip().splitlines()
        assert status == [
            f"{destination} (not configured now): delivered 0, pending 0, failed 0 (traces); scores of sessions"
            " and dataset runs: delivered 0, pending 2, failed 0",
            f"  last error: HTTP 503 from {receiver.url}/api/public/scores: busy",
        ]

    receiver.scores_reply = None  # back up: the next flush delivers them, once each
    assert langfuse.flush() is True
    assert langfuse.last_delivery.summary() == "delivered 2 scores"
    posted = {s["name"]: s for s in _scores_posted(receiver)}
    assert posted["csat"] == {
        "id": posted["csat"]["id"],
        "sessionId": "s-1",
        "name": "csat",
        "value": 5.0,
        "dataType": "NUMERIC",
        "environment": "default",
        "timestamp": posted["csat"]["timestamp"],
    }
    assert "traceId" not in posted["f1"] and posted["f1"]["datasetRunId"] == "run-1"
    assert posted["f1"]["metadata"] == {"split": "test"}
    assert langfuse.store.delivery_counts()[destination]["scores"]["delivered"] == 2
    assert not receiver.otlp_requests()  # no spans for a score
    langfuse.flush()
    assert len(_scores_posted(receiver)) == 2  # delivered once
    RunnableLambda(lambda q: q).invoke("hi", config={"callbacks": [CallbackHandler()]})
    langfuse.create_score(name="csat", value=3, session_id="s-1")
    assert langfuse.flush() is True
    counts = langfuse.store.delivery_counts()[destination]
    assert (counts["delivered"], counts["scores"]["delivered"]) == (1, 3)
    if helper == "false":  # the helper may have sent either by itself before the flush: its line names the rest
        assert langfuse.last_delivery.summary() == "delivered 1 trace and 1 score"


def test_a_langfuse_without_the_scores_api_gets_score_create_events_for_them(receiver, isolated_env) -> None:
    receiver.scores_api = False
    langfuse = Langfuse(public_key=PK, secret_key=SK, base_url=receiver.url)
    langfuse.create_score(name="csat", value="great", session_id="s-2")
    assert langfuse.flush() is True
    (post,) = [r for r in receiver.requests if r.path == "/api/public/ingestion"]
    (event,) = json.loads(post.body)["batch"]
    assert event["type"] == "score-create" and event["body"]["sessionId"] == "s-2"
    assert "traceId" not in event["body"] and event["body"]["value"] == "great"


def _downgrade_scores_to_schema_9(path: Path) -> None:
    """The scores table as migrations 5-9 made it: a NOT NULL trace id, the session only in the data."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE scores_v9 (id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, observation_id TEXT,
            name TEXT NOT NULL, timestamp_ns INTEGER NOT NULL, data TEXT NOT NULL);
        INSERT INTO scores_v9 SELECT id, trace_id, observation_id, name, timestamp_ns, data FROM scores;
        DROP TABLE scores;
        ALTER TABLE scores_v9 RENAME TO scores;
        CREATE INDEX scores_trace ON scores (trace_id, timestamp_ns);
        DELETE FROM _migrations WHERE version >= 10;
        PRAGMA user_version = 9;
        """
    )
    conn.close()


def test_a_store_of_schema_9_keeps_its_scores_through_migration_10(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    trace = make_trace(session_id="s1")
    trace.scores = [
        Score(id=new_id(8), trace_id=trace.id, name="quality", value=0.5, timestamp=BASE_NS, session_id="s1"),
        Score(
            id=new_id(8),
            trace_id=trace.id,
            name="label",
            string_value="ok",
            data_type="CATEGORICAL",
            timestamp=BASE_NS + 1,
        ),
    ]
    with TraceStore(path) as store:
        store.write_traces([trace])
        before = store.get_trace(trace.id).scores
    _downgrade_scores_to_schema_9(path)
    with TraceStore(path) as store:
        assert store.migrations()[-1][0] == LATEST_VERSION == 16
        assert store.get_trace(trace.id).scores == before
        session_score = Score.create(
            id="s-score", trace_id=None, name="csat", value=3, data_type=None, timestamp=BASE_NS, session_id="s1"
        )
        store.write_scores([session_score], ["otlp:x"])
        assert store.session_scores("s1") == [session_score]  # the trace's own score is not the session's
        assert store.claim_pending("otlp:x", "me", 10) == [score_key("s-score")]
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, trace_id, session_id FROM scores ORDER BY name").fetchall()
    assert rows == [("csat", None, "s1"), ("label", trace.id, None), ("quality", trace.id, "s1")]


_FULL_DISK_SCRIPT = """
import os, resource, sys, time
from lftrace import Langfuse
client = Langfuse(store=sys.argv[1])
client.create_score(name="warm-up", value=1, session_id="s")
assert client.flush() is True
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
used = max(os.path.getsize(p) for p in (sys.argv[1], sys.argv[1] + "-wal") if os.path.exists(p))
resource.setrlimit(resource.RLIMIT_FSIZE, (used + 4096, hard))
client.create_score(name="csat", value=5, session_id="s", comment="x" * 300_000)
print("flush while full:", client.flush(), flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
time.sleep(1.2)  # the writer retries by itself
print("flush after:", client.flush(), flush=True)
print("stored:", sorted((s.name, len(s.comment or "")) for s in client.store.session_scores("s")), flush=True)
"""


def test_a_full_disk_keeps_standalone_scores_in_memory_until_they_can_be_written(tmp_path) -> None:
    """A real file size limit (RLIMIT_FSIZE) stands in for a full disk; then space comes back."""
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_", "LFTRACE_"))},
    )
    assert proc.returncode == 0, proc.stderr
    assert "flush while full: False" in proc.stdout
    assert "flush after: True" in proc.stdout
    assert "stored: [('csat', 300000), ('warm-up', 0)]" in proc.stdout
    assert "lost" not in proc.stderr
