"""The store under damage, read-only media and loose umasks: detected before writing, readable, private."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lftrace.errors import StoreError
from lftrace.store import TraceStore
from support.traces import make_trace


def _store_with_traces(path: Path, count: int = 200) -> bytes:
    with TraceStore(path) as store:
        store.write_traces([make_trace(answer="a" * 500) for _ in range(count)])
        assert store._conn is not None
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for extra in path.parent.glob(path.name + "-*"):
        extra.unlink()
    return path.read_bytes()


def test_garbage_in_the_middle_is_detected_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    data = _store_with_traces(path)
    middle = len(data) // 2
    damaged = data[:middle] + os.urandom(20_000) + data[middle + 20_000 :]
    path.write_bytes(damaged)
    with pytest.raises(StoreError, match="corrupted") as err:
        TraceStore(path)  # a writer's open
    assert str(path) in str(err.value) and "LFTRACE_STORE" in str(err.value)
    assert path.read_bytes() == damaged  # nothing written into it


def test_a_run_stops_at_a_corrupted_store_before_the_graph_runs(tmp_path: Path) -> None:
    from langchain_core.runnables import RunnableLambda

    from lftrace.runner import execute

    path = tmp_path / "traces.db"
    data = _store_with_traces(path)
    path.write_bytes(data[:8192] + os.urandom(20_000) + data[28_192:])
    ran: list[str] = []
    with pytest.raises(StoreError, match="corrupted"):
        execute(RunnableLambda(lambda x: ran.append(x) or x), "hello")
    assert ran == []


def test_store_file_and_directories_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "deeper" / "traces.db"
        with TraceStore(path) as store:
            store.write_traces([make_trace()])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("traces.db*")}
    finally:
        os.umask(old)
    assert modes["traces.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes  # -wal and -shm follow the database file
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@contextlib.contextmanager
def _read_only_dir(path: Path) -> Iterator[None]:
    """A directory that cannot be written: a read-only tmpfs when root (root ignores file modes), else chmod."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(path)], check=True)
    else:
        for p in path.iterdir():
            p.chmod(0o400)
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(0o700)


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "media"
    target.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)]).returncode == 0
        assert mounted, "root but cannot mount a tmpfs"
    try:
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=True)


def test_read_only_store_can_still_be_read_and_writes_say_why(media: Path) -> None:
    path = media / "traces.db"
    trace = make_trace()
    with TraceStore(path) as store:
        store.write_traces([trace])
    with _read_only_dir(media):
        with TraceStore(path, create=False) as store:
            assert store.read_only
            assert store.get_trace(trace.id).name == trace.name
            with pytest.raises(StoreError, match="read-only"):
                store.check_writable()
        with pytest.raises(StoreError) as err:
            TraceStore(path)  # a writer
        assert str(path) in str(err.value)


def test_doctor_checks_the_whole_store(tmp_path: Path) -> None:
    import sys

    path = tmp_path / "traces.db"
    data = _store_with_traces(path)
    path.write_bytes(data[:8192] + os.urandom(20_000) + data[28_192:])
    lftrace = str(Path(sys.executable).parent / "lftrace")
    doctor = subprocess.run(
        [lftrace, "doctor"], capture_output=True, text=True, env={**os.environ, "LFTRACE_STORE": str(path)}
    )
    assert f"FAIL  the trace store {path} is corrupted" in doctor.stdout, doctor.stdout
