"""Writes and delivery from a helper process: preparing, the store's commits and the outbox are off the program's CPU.

The traced program's writer hands each finished trace to a helper, a child process running ``main`` below, as
captured (``captured``: one orjson pass, its messages and models as ``serialize`` makes them), and the helper
prepares it (masks aside, as the program's writer would: media taken out, generations priced), commits it to the
store (the outbox) and then claims, encodes and sends it (``delivery.Deliverer``, as ``lftrace push`` does) on
another core. A trace the program prepares itself (a mask, media objects, long captured lists) goes prepared
(``shipped``). Cachegrind, bench/overhead.py's agent: the program's writer spends ~73k instructions per span
handing traces over as captured, ~180k preparing and shipping them, and preparing and committing them itself
~225k (committing ~106k of it).

The program keeps each batch it handed over until the helper says it is in the store, and writes it itself if
the helper dies or does not answer in time (``SHIP_WAIT_S``): a flush returns once every trace is on disk, as
without a helper. What the helper cannot take stays in the program: parts of a running trace and traces holding
long shared lists (their JSON would cost the program more than committing them), which it writes itself and
announces with ``written``, as in delivery-only mode.

Protocol, JSON lines. Program -> helper: the settings, then ``{"op": "write", "batch": B, "traces": [...]}``,
``{"op": "written", "n": N, "running": [ids]}``, ``{"op": "deliver", "id": I, "deadline": T, "include_failed":
F}`` (``T`` on ``time.monotonic()``'s clock, which is the machine's) and ``{"op": "exit"}``. Helper -> program:
``{"ready": pid}``, ``{"wrote": B, "error": E}`` (``E`` null when batch B and every one before it is in the store),
``{"log": [level, logger, text]}`` (re-logged in the program, so its logging configuration applies) and
``{"id": I, "report": {...}}``.

Whether there is a helper at all: ``wanted``. The program falls back to delivering on a thread of its own
(``Deliverer``, as with ``LFTRACE_EXPORT_PROCESS=false``) when the helper cannot start, dies or stops answering,
and in a process forked from it. The traces are in the
outbox all along: nothing is lost either way, and a dead helper's claims are free at once (``owner_alive``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from .config import Settings, is_loopback
from .model import Trace
from .shipping import captured, shipped, unshipped

if TYPE_CHECKING:
    from .delivery import Deliverer, DeliveryReport
    from .store import TraceStore
    from .writer import TraceWriter

log = logging.getLogger("lftrace.delivery")

MIN_CPUS = 2  # LFTRACE_EXPORT_PROCESS unset: a helper only when this process may run on at least this many CPUs
START_WAIT_S = 5.0  # a helper not ready yet (its imports on a busy machine) gets this long before a write's wait starts
REPLY_GRACE_S = 2.0  # a delivery's answer may come this long after its deadline before the helper is given up
STOP_WAIT_S = 0.2  # at shutdown, wait this long for the helper to exit (busy sending, it ends that on its own)
PARENT_EXIT_WAIT_S = 2.0  # the program's pipe closed without "exit": wait this long for it to be gone for good
_NOT_SENT = ("dotenv", "sources", "notices")  # Settings fields the helper does not need


def wanted(settings: Settings) -> bool:
    """Write and deliver from a helper process? LFTRACE_EXPORT_PROCESS decides; unset, only with ``MIN_CPUS`` CPUs
    or more (and from a long run's first part on: ``client._helper_for_long_runs``).

    The helper spends more CPU in all than the program would (2 cores: ~70-120 us per span for unpacking,
    committing, encoding and sending, against ~50 us the program's thread spends committing and encoding) but
    none of it on the program's GIL. Its wall time per span was lower in 20 of 28 interleaved rounds of
    bench/overhead.py's CPU-bound agent (median -15 us) until the writer stopped waking for every trace when it
    prepares them itself (ARCHITECTURE.md, round 26); since, the two are within the noise of each other there
    (paired ratios to the official handler 0.22-0.25 either way; async and with a 5 ms model wait each ahead in
    some runs), the thread using ~25% less CPU in all. Kept: the helper still writes and sends what it was handed
    if the program is killed, and a long run's export stays off the program's GIL. On one CPU it would only
    compete with the program.
    """
    if settings.export_process is not None:
        return settings.export_process
    return usable_cpus() >= MIN_CPUS


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), or the machine's where that is not known."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def mode_line(settings: Settings) -> str:
    """Where delivery runs and why, in words (``lftrace doctor``)."""
    helper = wanted(settings)
    where = "a helper process" if helper else "a thread of the traced program"
    if settings.export_process is not None:
        return f"from {where} (LFTRACE_EXPORT_PROCESS={str(helper).lower()})"
    later = "" if helper else "; a long run moves it to a helper process"
    return f"from {where} ({usable_cpus()} CPUs{later})"


def settings_line(settings: Settings) -> bytes:
    values = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in _NOT_SENT}
    values["store"] = str(settings.store)
    return json.dumps(values).encode() + b"\n"


def settings_from_line(line: bytes) -> Settings:
    values = json.loads(line)
    values["store"] = Path(values["store"])
    return Settings(**values)


def helper_command() -> list[str] | None:
    """The helper's command line: this Python, importing this very lftrace (its directory goes on sys.path).

    None where ``sys.executable`` is not a Python to run code with: a frozen application (PyInstaller: it would
    start the application again) or an embedding server (uWSGI's binary).
    """
    executable = sys.executable
    if not executable or getattr(sys, "frozen", False) or not Path(executable).name.lower().startswith("python"):
        return None
    code = (
        "import sys; p = sys.argv[1]; p in sys.path or sys.path.insert(0, p); "
        "from lftrace.export_process import main; sys.exit(main())"
    )
    return [executable, "-c", code, str(Path(__file__).resolve().parent.parent)]


class DeliveryProcess:
    """A client's delivery, done by a helper process; what the client calls of a ``Deliverer``."""

    def __init__(self, open_store: Callable[[], TraceStore], settings: Settings) -> None:
        self.settings = settings
        self._open_store = open_store
        self._state = threading.Condition()  # guards everything below
        self._pipe = threading.Lock()  # writes to the helper's pipe (apart: a full pipe must not block replies)
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._batches = 0  # batches of traces handed to the helper to write
        self._wrote = 0  # the last batch it wrote (or tried to)
        self._write_error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._alive = False
        self._ready = False  # it said it is ready (its store open)
        self._pid = os.getpid()
        self._thread_deliverer: Deliverer | None = None
        self._start()

    # -- what the client calls --------------------------------------------------------------
    def written(self, traces: Sequence[Trace], merged: Sequence[str], running: Sequence[str] = ()) -> None:
        fallback = self._fallback()
        if fallback is not None:
            fallback.written(traces, merged, running)
        elif not self._send({"op": "written", "n": len(traces) + len(merged), "running": list(running)}):
            self._use_thread("stopped").written(traces, merged, running)

    # -- what the writer calls (writer.Helper) ------------------------------------------------
    def accepting(self) -> bool:
        """Whether the helper takes traces to write (not once it is gone and delivery fell back to a thread)."""
        return self._alive and self._fallback() is None

    def shippable(self, trace: Trace) -> orjson.Fragment | None:
        return shipped(trace)

    def capturable(self, trace: Trace) -> orjson.Fragment | None:
        return captured(trace)

    def ship(self, traces: list[orjson.Fragment]) -> int | None:
        """Hand prepared traces (``shippable``) to the helper to write; the batch's number, None without a helper."""
        if self._fallback() is not None:
            return None
        with self._state:
            self._batches += 1
            batch = self._batches
        if not self._send({"op": "write", "batch": batch, "traces": traces}):
            return None
        return batch

    def written_through(self) -> int:
        return self._wrote

    def wait_written(self, batch: int, timeout: float) -> tuple[bool, str | None]:
        """(True, problem) once the helper wrote ``batch`` (problem: why some of it is not in the store, else
        None); (False, None) if it died or did not answer within ``timeout``, when it is stopped (it writes
        nothing more) and delivery moves to a thread of this process. A helper still starting gets
        ``START_WAIT_S`` first: on a busy machine its imports took over 2 s, and it was given up for good."""
        with self._state:
            if not self._ready:
                self._state.wait_for(lambda: self._ready or not self._alive, timeout=START_WAIT_S)
            self._state.wait_for(lambda: self._wrote >= batch or not self._alive, timeout=timeout)
            if self._wrote >= batch:
                return True, self._write_error
            alive = self._alive
        if alive:
            self._stop_helper(kill=True)
            self._use_thread("did not write in time")
        else:
            self._use_thread("stopped")
        return False, None

    def deliver(self, deadline: float, include_failed: bool = False) -> DeliveryReport:
        """What ``Deliverer.deliver`` does, done by the helper; on this process's thread if the helper is gone."""
        fallback = self._fallback()
        if fallback is not None:
            return fallback.deliver(deadline, include_failed)
        with self._state:
            self._next_id += 1
            request = self._next_id
        if self._send({"op": "deliver", "id": request, "deadline": deadline, "include_failed": include_failed}):
            with self._state:
                self._state.wait_for(
                    lambda: request in self._replies or not self._alive,
                    timeout=max(deadline - time.monotonic(), 0.0) + REPLY_GRACE_S,
                )
                reply = self._replies.pop(request, None)
                alive = self._alive
            if reply is not None:
                from .delivery import DeliveryReport

                return DeliveryReport.from_dict(reply)
            if alive:  # hung: its claims are freed when it is killed; what is left of the deadline is spent here
                self._stop_helper(kill=True)
                return self._use_thread("did not answer in time").deliver(deadline, include_failed)
        return self._use_thread("stopped").deliver(deadline, include_failed)

    def stop(self, timeout: float | None = None) -> None:
        if self._thread_deliverer is not None:
            self._thread_deliverer.stop(timeout)
        self._stop_helper(kill=False)

    # -- the helper ----------------------------------------------------------------------------
    def _start(self) -> None:
        command = helper_command()
        if command is None:
            self._use_thread("cannot start: sys.executable is not a Python interpreter (frozen or embedded)")
            return
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is the program's to handle, not the helper's
            )
            assert proc.stdin is not None
            proc.stdin.write(settings_line(self.settings))
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            self._use_thread(f"cannot start: {exc}")
            return
        self._proc, self._alive = proc, True
        threading.Thread(target=self._read, args=(proc,), name="lftrace-export-helper", daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """The helper's answers and log records, until it exits."""
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "log" in message:
                level, name, text = message["log"]
                logging.getLogger(str(name)).log(int(level), "%s", text)
            elif "ready" in message:
                with self._state:
                    self._ready = True
                    self._state.notify_all()
            elif "wrote" in message:
                with self._state:
                    self._wrote = max(self._wrote, int(message["wrote"]))
                    self._write_error = message.get("error")
                    self._state.notify_all()
            elif "report" in message:
                with self._state:
                    self._replies[int(message["id"])] = message["report"]
                    self._state.notify_all()
        try:  # reaped, so that its claims in the outbox are seen as a dead process's
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        with self._state:
            was_alive, self._alive = self._alive, False
            self._state.notify_all()
        if was_alive and code:
            log.warning("lftrace: the export helper process exited (status %s); delivering from this process", code)

    def _send(self, message: dict[str, Any]) -> bool:
        with self._pipe:
            if not self._alive or self._proc is None or self._proc.stdin is None:
                return False
            try:
                self._proc.stdin.write(orjson.dumps(message) + b"\n")
                self._proc.stdin.flush()
            except (OSError, ValueError):  # the helper is gone (broken pipe) or its pipe was closed
                with self._state:
                    self._alive = False
                    self._state.notify_all()
                return False
        return True

    def _stop_helper(self, *, kill: bool) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        if not kill:
            self._send({"op": "exit"})
        if kill:  # first: a helper stopped (SIGSTOP) with a full pipe would block the close below
            with contextlib.suppress(OSError):
                proc.kill()
        with self._state:
            self._alive = False
            self._state.notify_all()
        with self._pipe, contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # it ends its bounded delivery in flight, then exits
            proc.wait(STOP_WAIT_S)

    # -- delivery on a thread of this process ------------------------------------------------
    def _fallback(self) -> Deliverer | None:
        if self._thread_deliverer is None and os.getpid() != self._pid:
            return self._use_thread("belongs to the process this one was forked from")
        return self._thread_deliverer

    def _use_thread(self, why: str) -> Deliverer:
        with self._state:
            if self._thread_deliverer is None:
                from .delivery import Deliverer, destinations_for

                log.debug("lftrace: delivering on a thread of this process (the export helper %s)", why)
                deliverer = Deliverer(self._open_store(), destinations_for(self.settings), self.settings)
                deliverer.start_background(self.settings.flush_interval)
                self._thread_deliverer = deliverer
            return self._thread_deliverer


# -- the helper process ------------------------------------------------------------------------
def main() -> int:
    """The helper: deliver what the program writes, as it tells us, until it says exit (or goes away)."""
    commands, out = sys.stdin.buffer, sys.stdout.buffer
    out_lock = threading.Lock()
    parent = os.getppid()

    def emit(message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with out_lock:
            try:
                out.write(data)
                out.flush()
            except OSError:  # the program is gone (a broken pipe): what it wrote is still delivered
                pass

    first = commands.readline()
    if not first:
        return 0
    settings = settings_from_line(first)
    _forward_logs(emit, settings.debug)
    from .delivery import Deliverer, destinations_for
    from .store import TraceStore

    try:
        deliverer = Deliverer(TraceStore(settings.store), destinations_for(settings), settings)
    except Exception as exc:
        log.warning("lftrace: the export helper could not open %s: %s", settings.store, exc)
        return 1
    # sending to this machine (a collector, Phoenix, `lftrace serve`) costs nothing: each write is sent at once,
    # so that little is left to send at flush; a remote backend gets flush_at/flush_interval batches as usual
    urls = ([settings.base_url] if settings.langfuse_enabled else []) + [settings.otlp_endpoint or ""]
    deliverer.eager = all(is_loopback(u) for u in urls if u)
    deliverer.stream_running = True  # a long run's parts go out while it runs, off the program's CPU
    deliverer.start_background(settings.flush_interval)
    from .delivery import destination_names
    from .pricing import keep_rates_beside
    from .writer import TraceWriter

    names = destination_names(settings)
    # the program's traces come prepared (and masked): this writer only commits them; they are then delivered
    # from memory (Deliverer.written encodes them at once, no read back), after the program heard they are written
    committed: list[tuple[list[Trace], list[str], list[str]]] = []
    writer = TraceWriter(
        lambda: deliverer.store,
        lambda: names,
        media=settings.media_upload_enabled,
        on_written=lambda *args: committed.append(args),
        parsed_values=True,  # captured traces arrive as JSON: their values hold no captured lists
    )
    keep_rates_beside(settings.store)
    emit({"ready": os.getpid()})
    return _serve(commands, emit, deliverer, writer, committed, parent)


def _wait_until_gone(parent: int, timeout: float) -> None:
    """After the program's pipe closed: wait until it has exited (this process is then handed to another parent),
    at most ``timeout``. Its pipe closes as it begins to exit, a moment before it stops being a live process."""
    deadline = time.monotonic() + timeout
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.005)


def _serve(
    commands: IO[bytes],
    emit: Callable[[dict[str, Any]], None],
    deliverer: Deliverer,
    writer: TraceWriter,
    committed: list[tuple[list[Trace], list[str], list[str]]],
    parent: int,
) -> int:
    def deliver_committed() -> None:
        for traces, merged, running in committed:
            deliverer.written(traces, merged, running)
        committed.clear()

    try:
        for line in commands:
            message = orjson.loads(line)
            op = message.get("op")
            if op == "write":
                problem = writer.write_prepared(unshipped(message.get("traces") or (), writer.prepare))
                emit({"wrote": message["batch"], "error": problem})  # a flush in the program waits for this
                deliver_committed()
            elif op == "written":
                deliverer.running_written(message.get("running") or ())
                if message.get("n"):
                    deliverer.note_written(int(message["n"]))
            elif op == "deliver":
                writer.write_prepared([])  # traces the store refused before: tried again first
                deliver_committed()
                report = deliverer.deliver(float(message["deadline"]), bool(message.get("include_failed")))
                emit({"id": message["id"], "report": report.to_dict()})
            elif op == "exit":
                return 0
        # the program went away without saying so (killed, crashed): one last delivery of what it wrote, once it is
        # gone for good (its running traces' export is held while it is there: they go out as far as they got)
        _wait_until_gone(parent, PARENT_EXIT_WAIT_S)
        deliverer.deliver(time.monotonic() + deliverer.settings.timeout)
        return 0
    except Exception:
        log.warning("lftrace: the export helper failed", exc_info=True)
        return 1
    finally:
        deliverer.stop()
        deliverer.store.close()


class _Forward(logging.Handler):
    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._emit = emit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._emit({"log": [record.levelno, record.name, text]})
        except Exception:  # the program is gone: nobody to tell
            pass


def _forward_logs(emit: Callable[[dict[str, Any]], None], debug: bool) -> None:
    logger = logging.getLogger("lftrace")
    logger.addHandler(_Forward(emit))
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
