"""JUnit XML for ``lftrace test --junit``: the dialect GitHub Actions, GitLab and Jenkins all read.

``<testsuites>`` > ``<testsuite>`` > one ``<testcase>`` per case with ``time`` in seconds. A failed
assertion is a ``<failure>`` (message: the failed assertions; text: each with expected and actual values
and the trace id); a case whose graph raised is an ``<error>``; a case skipped by ``--fail-fast`` is
``<skipped>``. The trace id is also a testcase property and in ``<system-out>``.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .dataset import CaseResult

# characters XML 1.0 forbids even escaped (a model reply may contain them)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def junit_tree(
    results: Sequence[CaseResult], *, suite: str, duration: float, timestamp: datetime | None = None
) -> ET.ElementTree:
    failures = sum(1 for r in results if r.status == "fail")
    errors = sum(1 for r in results if r.status == "error")
    skipped = sum(1 for r in results if r.status == "skipped")
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": "lftrace", **counts, "time": f"{duration:.3f}"})
    stamp = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    testsuite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": suite,
            **counts,
            "skipped": str(skipped),
            "time": f"{duration:.3f}",
            "timestamp": stamp,
            "hostname": socket.gethostname(),
        },
    )
    for result in results:
        _testcase(testsuite, result, suite)
    ET.indent(root)
    return ET.ElementTree(root)


def _testcase(parent: ET.Element, result: CaseResult, suite: str) -> None:
    case = ET.SubElement(
        parent, "testcase", {"classname": suite, "name": result.case.name, "time": f"{result.latency or 0.0:.3f}"}
    )
    trace = result.trace_id or "(no trace)"
    if result.trace_id:
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", {"name": "trace_id", "value": result.trace_id})
        if result.turns > 1 or result.failed_turn is not None:
            ET.SubElement(props, "property", {"name": "turns", "value": str(result.turns)})
            ET.SubElement(props, "property", {"name": "trace_ids", "value": " ".join(result.trace_ids)})
        if result.failed_turn is not None:
            ET.SubElement(props, "property", {"name": "failed_turn", "value": str(result.failed_turn)})
    if result.status == "skipped":
        reason = result.skip_reason or "not run: --fail-fast stopped the run after a failure"
        ET.SubElement(case, "skipped", {"message": reason})
    elif result.status == "error":
        error = ET.SubElement(
            case, "error", {"message": _clean(f"{result.error} (trace {trace})"), "type": "TargetError"}
        )
        error.text = _clean(f"{result.error}\ntrace: {trace}")
    elif result.status == "fail":
        at = f"turn {result.failed_turn} failed: " if result.failed_turn is not None else ""
        names = ", ".join(f.name for f in result.failures)
        failure = ET.SubElement(
            case,
            "failure",
            {
                "message": f"{at}{len(result.failures)} assertion(s) failed: {names} (trace {trace})",
                "type": "AssertionFailed",
            },
        )
        lines = [f"- {f.name}: {f.message}; expected {f.expected}, got {f.actual}" for f in result.failures]
        failure.text = _clean("\n".join([*lines, f"trace: {trace}"]))
    out = ET.SubElement(case, "system-out")
    out.text = _clean(f"trace: {trace}\noutput: {result.output}")


def write_junit(path: Path | str, results: Sequence[CaseResult], *, suite: str, duration: float) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(results, suite=suite, duration=duration).write(path, encoding="utf-8", xml_declaration=True)
