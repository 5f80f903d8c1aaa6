"""Real `lftrace` processes under hostile data and faults: a pseudo-terminal records what reaches it."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support.otlp_receiver import Reply, running_receiver

LFTRACE = str(Path(sys.executable).parent / "lftrace")
EVIL = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \u202etxt.exe\x07"
# what must never reach the terminal raw (rich's own colour codes are fine: they are not these)
FORBIDDEN = [b"\x1b[2J", b"\x1b[H", b"\x1b]0;", b"\x1b]8;", b"\x07", "\u202e".encode()]

GRAPH = textwrap.dedent(
    f"""
    from langchain_core.runnables import RunnableLambda

    EVIL = {EVIL!r}

    def answer(x):
        return {{"reply": EVIL + " done", "note": "line1\\nline2"}}

    def fail(x):
        raise ValueError("bad thing " + EVIL)

    def slow(x):
        import time
        print("started", flush=True)
        time.sleep(30)
        return x

    chain = RunnableLambda(answer).with_config(run_name="evil" + EVIL)
    failing = RunnableLambda(fail)
    sleeper = RunnableLambda(lambda x: x + "!") | RunnableLambda(slow)
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "evil_app.py").write_text(GRAPH, encoding="utf-8")
    return tmp_path


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """Run ``lftrace ARGS`` with stdout and stderr on a pseudo-terminal; every byte that reached it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [LFTRACE, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env or dict(os.environ)
    )
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            continue
    os.close(master)
    return proc.wait(10), bytes(seen)


def assert_clean(seen: bytes) -> None:
    for sequence in FORBIDDEN:
        assert sequence not in seen, (sequence, seen[:2000])


def test_run_tree_output_and_errors_reach_a_terminal_escaped(app_dir: Path) -> None:
    code, seen = run_in_pty(["run", "evil_app.py:chain", "--input", "hi"], app_dir)
    assert code == 0, seen.decode(errors="replace")
    assert_clean(seen)
    assert b"\\x1b[2J" in seen and b"\\u202e" in seen  # shown, escaped
    code, seen = run_in_pty(["run", "evil_app.py:failing", "--input", "hi"], app_dir)
    assert code == 1
    assert_clean(seen)
    assert b"bad thing \\x1b[2J" in seen
    for args in (["show", "last"], ["list"], ["show", "last", "--full"]):
        code, seen = run_in_pty(args, app_dir)
        assert code == 0, (args, seen.decode(errors="replace"))
        assert_clean(seen)


def test_stream_output_reaches_a_terminal_escaped(app_dir: Path) -> None:
    code, seen = run_in_pty(["run", "evil_app.py:chain", "--input", "hi", "--stream"], app_dir)
    assert code == 0, seen.decode(errors="replace")
    assert_clean(seen)


def test_json_output_stays_exact(app_dir: Path) -> None:
    ran = subprocess.run(
        [LFTRACE, "run", "evil_app.py:chain", "--input", "hi", "--json"], capture_output=True, text=True, cwd=app_dir
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["output"]["reply"] == EVIL + " done"
    shown = subprocess.run([LFTRACE, "show", "last", "--json"], capture_output=True, text=True, cwd=app_dir)
    assert json.loads(shown.stdout)["output"]["reply"] == EVIL + " done"


def test_test_command_case_names_and_backend_error_bodies_are_escaped(app_dir: Path) -> None:
    cases = app_dir / "cases.jsonl"
    cases.write_text(json.dumps({"name": "case" + EVIL, "input": "x", "expect": {"output": "nope\x07\u202e"}}) + "\n")
    code, seen = run_in_pty(["test", "evil_app.py:chain", str(cases), "--concurrency", "1"], app_dir)
    assert code == 5, seen.decode(errors="replace")
    assert_clean(seen)
    with running_receiver() as receiver:
        receiver.script(*[Reply(500, "oops " + EVIL) for _ in range(20)])
        env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces", "LANGFUSE_TIMEOUT": "1"}
        code, seen = run_in_pty(["run", "evil_app.py:chain", "--input", "hi"], app_dir, env)
        assert code == 0, seen.decode(errors="replace")
        assert_clean(seen)
        assert b"queued" in seen
        for args in (["status"], ["push"]):
            code, seen = run_in_pty(args, app_dir, env)
            assert_clean(seen)
            assert b"oops" in seen, (args, seen)


def test_sigterm_of_a_real_run_saves_the_partial_trace_and_exits_143(app_dir: Path) -> None:
    proc = subprocess.Popen(
        [LFTRACE, "run", "evil_app.py:sleeper", "--input", "hello"],
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); partial trace saved" in err
    shown = json.loads(
        subprocess.run([LFTRACE, "show", "last", "--json"], capture_output=True, text=True, cwd=app_dir).stdout
    )
    assert shown["input"] == "hello"
    assert any(o["statusMessage"] == "terminated (SIGTERM)" for o in shown["observations"])


def _full_disk(tmp_path: Path) -> tuple[Path, object]:
    """A store on a 512 KB tmpfs when root (a real full disk: room for an empty store, not for a 600 KB trace);
    else a file size limit on the child."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)]).returncode == 0
    ):
        return mount / "traces.db", None

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))

    return mount / "traces.db", limit


def test_a_store_that_cannot_take_the_trace_is_exit_7_with_the_cause(app_dir: Path, tmp_path: Path) -> None:
    (app_dir / "big_app.py").write_text(
        "from langchain_core.runnables import RunnableLambda\nchain = RunnableLambda(lambda x: 'y' * 600_000)\n"
    )
    store, limit = _full_disk(tmp_path)
    env = {**os.environ, "LFTRACE_STORE": str(store)}
    try:
        ran = subprocess.run(
            [LFTRACE, "run", "big_app.py:chain", "--input", "hi"],
            capture_output=True,
            text=True,
            cwd=app_dir,
            env=env,
            preexec_fn=limit,
            timeout=60,  # type: ignore[arg-type]
        )
        assert ran.returncode == 7, (ran.returncode, ran.stderr)
        assert "error: the trace was not saved: cannot write to the trace store" in ran.stderr
        assert "disk" in ran.stderr
        cases = app_dir / "cases.jsonl"
        cases.write_text("".join(json.dumps({"name": f"c{i}", "input": "x"}) + "\n" for i in range(3)))
        tested = subprocess.run(
            [LFTRACE, "test", "big_app.py:chain", str(cases)],
            capture_output=True,
            text=True,
            cwd=app_dir,
            env=env,
            preexec_fn=limit,
            timeout=60,  # type: ignore[arg-type]
        )
        assert tested.returncode == 7, (tested.returncode, tested.stderr)
        assert "cannot write to the trace store" in tested.stderr
    finally:
        if limit is None:
            subprocess.run(["umount", str(store.parent)], check=True)


@pytest.mark.parametrize("helper", ["false", "true"])
def test_hung_backend_costs_test_one_timeout_and_run_one_delivery(app_dir: Path, helper: str) -> None:
    """A backend that never answers costs `lftrace test` one delivery timeout in all, and `lftrace run` one.
    From a thread of the program that is one request; the export helper also sends each write at once to a
    backend on this machine, in the background (off the program's time): the time bounds hold all the same."""
    cases = app_dir / "cases.jsonl"
    cases.write_text("".join(json.dumps({"name": f"c{i}", "input": "x"}) + "\n" for i in range(8)))
    with running_receiver() as receiver:
        receiver.script(*[Reply(200, "{}", delay=10) for _ in range(20)])
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces",
            "LANGFUSE_TIMEOUT": "2",
            "LFTRACE_EXPORT_PROCESS": helper,
        }
        started = time.monotonic()
        tested = subprocess.run(
            [LFTRACE, "test", "evil_app.py:chain", str(cases), "-c", "1"],
            capture_output=True,
            text=True,
            cwd=app_dir,
            env=env,
            timeout=60,
        )
        took = time.monotonic() - started
        assert tested.returncode == 0, tested.stderr
        if helper == "false":
            assert len(receiver.otlp_requests(ok_only=False)) == 1  # one delivery for all the cases (was one per case)
        assert took < 20, took  # was 2 s per case (16 s) plus 2 at exit; now start-up plus one 2 s delivery
        assert "queued" in tested.stderr
        before = len(receiver.otlp_requests(ok_only=False))
        started = time.monotonic()
        ran = subprocess.run(
            [LFTRACE, "run", "evil_app.py:chain", "--input", "hi"],
            capture_output=True,
            text=True,
            cwd=app_dir,
            env=env,
            timeout=60,
        )
        took = time.monotonic() - started
        assert ran.returncode == 0, ran.stderr
        if helper == "false":
            assert len(receiver.otlp_requests(ok_only=False)) - before == 1  # one delivery per run, not again at exit
        assert took < 15, took  # start-up on a loaded machine plus one 2 s delivery (was two: 4 s)


def test_hostile_import_files_and_inputs_are_exit_2(app_dir: Path) -> None:
    bad = app_dir / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "id": "t1",
                "observations": [{"id": "a", "parentObservationId": "b"}, {"id": "b", "parentObservationId": "a"}],
            }
        )
    )
    ran = subprocess.run([LFTRACE, "import", str(bad)], capture_output=True, text=True, cwd=app_dir)
    assert ran.returncode == 2 and f"error: {bad}: observation parents form a cycle" in ran.stderr, ran.stderr
    latin = app_dir / "latin.jsonl"
    latin.write_bytes(b'{"id": "caf\xe9"}\n')
    ran = subprocess.run([LFTRACE, "import", str(latin)], capture_output=True, text=True, cwd=app_dir)
    assert ran.returncode == 2 and "not UTF-8" in ran.stderr and "Traceback" not in ran.stderr
    deep = app_dir / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    ran = subprocess.run(
        [LFTRACE, "run", "evil_app.py:chain", "--input-file", str(deep)], capture_output=True, text=True, cwd=app_dir
    )
    assert ran.returncode == 2 and "nested too deep" in ran.stderr, ran.stderr


def test_exports_are_private_and_doctor_names_the_dotenv(app_dir: Path) -> None:
    subprocess.run([LFTRACE, "run", "evil_app.py:chain", "--input", "hi"], capture_output=True, cwd=app_dir, check=True)
    old = os.umask(0)
    try:
        subprocess.run(
            [LFTRACE, "export", "last", "-o", str(app_dir / "out" / "t.json")],
            cwd=app_dir,
            check=True,
            capture_output=True,
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((app_dir / "out" / "t.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((app_dir / "out").stat().st_mode) == 0o700
    (app_dir / ".env").write_text("LANGFUSE_TRACING_ENVIRONMENT=staging\n")
    doctor = subprocess.run([LFTRACE, "doctor"], capture_output=True, text=True, cwd=app_dir)
    assert f"Settings from: the environment and {app_dir / '.env'} (it set: environment)" in doctor.stdout, (
        doctor.stdout
    )
    off = subprocess.run(
        [LFTRACE, "doctor"], capture_output=True, text=True, cwd=app_dir, env={**os.environ, "LFTRACE_DOTENV": "0"}
    )
    assert "no .env read" in off.stdout


def test_a_dotenv_redirecting_traces_is_said_on_stderr_and_under_debug(app_dir: Path) -> None:
    (app_dir / ".env").write_text("LANGFUSE_BASE_URL=https://elsewhere.example\n")
    env = {
        **os.environ,
        "LANGFUSE_PUBLIC_KEY": "pk-lf-1234567890abcd",
        "LANGFUSE_SECRET_KEY": "sk-lf-topsecret99887766",
    }
    status = subprocess.run([LFTRACE, "status"], capture_output=True, text=True, cwd=app_dir, env=env)
    assert (
        f"https://elsewhere.example comes from .env ({app_dir / '.env'}) but the keys from the environment"
        in status.stderr
    )
    debug = subprocess.run([LFTRACE, "--debug", "list"], capture_output=True, text=True, cwd=app_dir)
    assert f"settings from {app_dir / '.env'}" in debug.stderr, debug.stderr
    (app_dir / ".env").write_text("LANGFUSE_BASE_URL=http://elsewhere.example\n")
    refused = subprocess.run([LFTRACE, "status"], capture_output=True, text=True, cwd=app_dir, env=env)
    assert refused.returncode == 2 and "plain http to another machine" in refused.stderr
    assert "sk-lf-topsecret99887766" not in refused.stderr


def test_lone_surrogates_in_a_file_never_crash_output_and_are_stored_escaped(app_dir: Path) -> None:
    from support.traces import sample_trace

    data = sample_trace().to_dict()
    data["output"] = "caf\udce9"
    path = app_dir / "t.json"
    path.write_text(json.dumps(data))  # ensure_ascii: the file holds the escape \\udce9, valid UTF-8
    diffed = subprocess.run(
        [LFTRACE, "diff", str(path), str(path), "--json"], capture_output=True, text=True, cwd=app_dir
    )
    assert diffed.returncode == 0, diffed.stderr
    json.loads(diffed.stdout)
    imported = subprocess.run([LFTRACE, "import", str(path)], capture_output=True, text=True, cwd=app_dir)
    assert imported.returncode == 0, imported.stderr
    shown = subprocess.run([LFTRACE, "show", data["id"], "--json"], capture_output=True, text=True, cwd=app_dir)
    assert json.loads(shown.stdout)["output"] == "caf\\udce9"
