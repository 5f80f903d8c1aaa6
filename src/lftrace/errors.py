"""One exception family; each error carries the exit code the CLI uses."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    TARGET_FAILED = 1  # the user's graph raised; the trace is saved
    USAGE = 2  # bad arguments or input
    LOAD_FAILED = 3  # the target could not be imported
    NOT_FOUND = 4  # trace not found
    ASSERTION_FAILED = 5  # a CI assertion or budget failed
    BACKEND = 6  # export backend unreachable / rejected (trace kept locally)
    STORE = 7  # store missing, corrupted or foreign
    INTERRUPTED = 130  # Ctrl-C (SIGINT): the partial trace is saved
    TERMINATED = 143  # SIGTERM (CI runners, `timeout`): the partial trace is saved


class LftraceError(Exception):
    """An error meant for the user: ``str(err)`` is one line naming the problem and the fix."""

    exit_code: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str, *, exit_code: ExitStatus | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(LftraceError):
    exit_code = ExitStatus.USAGE


class StoreError(LftraceError):
    """The store cannot be opened, read or written. ``data_problem``: the data being written was refused (not
    the store): writing other traces still works."""

    exit_code = ExitStatus.STORE
    data_problem = False


class TraceNotFound(LftraceError):
    exit_code = ExitStatus.NOT_FOUND


class LoadError(LftraceError):
    exit_code = ExitStatus.LOAD_FAILED


class InputError(LftraceError):
    exit_code = ExitStatus.USAGE


class DatasetHistoryMissing(InputError):
    """A dataset's items asked for as they were at a time (``version``) when one has changed since: the store keeps
    only the current version of an item."""


class BackendError(LftraceError):
    exit_code = ExitStatus.BACKEND


class CtrlC(KeyboardInterrupt):
    """Ctrl-C (SIGINT) arrived while lftrace ran a target (``lftrace run``): the partial trace is saved, exit 130.
    A KeyboardInterrupt like any other; the trace's stopped observations say ``cancelled (Ctrl-C)``."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a target ran (``lftrace run``): handled like Ctrl-C (partial trace saved), exit 143."""


CANCELLED = "cancelled (Ctrl-C)"  # what a run stopped by Ctrl-C says (its open observations, `test` verdicts)
TERMINATED = "terminated (SIGTERM)"  # the same for SIGTERM


def stop_reason(interrupt: KeyboardInterrupt) -> str:
    """CANCELLED for Ctrl-C, TERMINATED for SIGTERM (``Terminated``)."""
    return TERMINATED if isinstance(interrupt, Terminated) else CANCELLED


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ``error`` was raised while handling, if any (its ``__context__`` chain).

    A stop raised in the main thread lands between any two bytecodes, library code's too: inside
    ``threading``'s own lock handling (a thread pool starting a thread for a node) it surfaces as
    ``RuntimeError: release unlocked lock`` with the stop as its context. Such an error is the stop's doing.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
