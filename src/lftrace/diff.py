"""Compare two traces: structure, outputs, latency, tokens and cost; and baseline checks.

Trees are aligned by path: each observation's path is the chain of its ancestors' names, each with its
position among same-named siblings (``agent``, ``agent#2``, ...), so the second call of a node in run A
is compared with the second call in run B even when their ids differ.

Outputs are compared after dropping what changes on every run without meaning anything (ids, response
and usage metadata); token and cost changes are reported separately.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .assertions import AssertionFailure, node_names, output_text, tool_names, unpriced_models
from .model import Observation, Trace

# keys whose values differ between two identical runs
_VOLATILE_KEYS = frozenset({"id", "run_id", "tool_call_id", "response_metadata", "usage_metadata", "created"})
LATENCY_GRACE = 0.2  # seconds a baseline latency may be exceeded on top of the tolerance (a loaded CI runner)


@dataclass
class ObservationChange:
    path: str
    status: str  # added | removed | changed | same
    type: str
    latency_delta: float | None = None
    tokens_delta: int = 0
    cost_delta: float | None = None
    output_diff: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "type SPAN -> CHAIN", "model a -> b"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "type": self.type,
            "latencyDelta": self.latency_delta,
            "tokensDelta": self.tokens_delta,
            "costDelta": self.cost_delta,
            "outputDiff": "\n".join(self.output_diff) or None,
            "notes": list(self.notes),
        }


@dataclass
class TraceDiff:
    a_id: str
    b_id: str
    observations: list[ObservationChange]
    latency_delta: float | None
    tokens_delta: int
    cost_delta: float | None
    output_diff: list[str]
    reply_diff: list[str] = field(default_factory=list)  # the reply text (last message) of the two outputs

    @property
    def structure_changed(self) -> bool:
        return any(c.status in ("added", "removed") for c in self.observations)

    @property
    def outputs_changed(self) -> bool:
        return bool(self.output_diff) or any(c.output_diff for c in self.observations)

    @property
    def changed(self) -> bool:
        """What ``--fail-on-change`` fails on: structure or outputs (not timings or tokens)."""
        return self.structure_changed or self.outputs_changed

    def counts(self) -> dict[str, int]:
        out = {"added": 0, "removed": 0, "changed": 0, "same": 0}
        for change in self.observations:
            out[change.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a_id,
            "b": self.b_id,
            "changed": self.changed,
            "structureChanged": self.structure_changed,
            "outputsChanged": self.outputs_changed,
            "counts": self.counts(),
            "latencyDelta": self.latency_delta,
            "tokensDelta": self.tokens_delta,
            "costDelta": self.cost_delta,
            "outputDiff": "\n".join(self.output_diff) or None,
            "replyDiff": "\n".join(self.reply_diff) or None,
            "observations": [c.to_dict() for c in self.observations],
        }


def observation_paths(trace: Trace) -> dict[str, Observation]:
    """path -> observation, parents before children, siblings in start order."""
    kids = trace.children()
    known = {o.id for o in trace.observations}
    # orphans (parent missing from the trace) are treated as roots so nothing is lost
    roots = [o for o in sorted(trace.observations, key=lambda o: o.start_time) if o.parent_id not in known]
    paths: dict[str, Observation] = {}

    def walk(siblings: list[Observation], prefix: str) -> None:
        seen: dict[str, int] = {}
        for obs in siblings:
            seen[obs.name] = seen.get(obs.name, 0) + 1
            label = obs.name or "(unnamed)"
            if seen[obs.name] > 1:
                label += f"#{seen[obs.name]}"
            path = f"{prefix}/{label}" if prefix else label
            paths[path] = obs
            walk(kids.get(obs.id, []), path)

    walk(roots, "")
    return paths


def diff_traces(a: Trace, b: Trace, *, context: int = 2) -> TraceDiff:
    pa, pb = observation_paths(a), observation_paths(b)
    order = list(pa) + [p for p in pb if p not in pa]
    changes: list[ObservationChange] = []
    for path in order:
        oa, ob = pa.get(path), pb.get(path)
        if oa is None and ob is not None:
            changes.append(
                ObservationChange(path, "added", ob.type, ob.latency, ob.total_tokens, _cost(ob), notes=["only in B"])
            )
        elif ob is None and oa is not None:
            changes.append(
                ObservationChange(
                    path, "removed", oa.type, _neg(oa.latency), -oa.total_tokens, _neg(_cost(oa)), notes=["only in A"]
                )
            )
        elif oa is not None and ob is not None:
            changes.append(_compare(path, oa, ob, context))
    return TraceDiff(
        a_id=a.id,
        b_id=b.id,
        observations=changes,
        latency_delta=_sub(b.latency, a.latency),
        tokens_delta=b.total_tokens - a.total_tokens,
        cost_delta=_sub(b.total_cost, a.total_cost),
        output_diff=text_diff(a.output, b.output, "A: output", "B: output", context),
        reply_diff=text_diff(output_text(a.output), output_text(b.output), "A: reply", "B: reply", context),
    )


def _compare(path: str, oa: Observation, ob: Observation, context: int) -> ObservationChange:
    notes = []
    if oa.type != ob.type:
        notes.append(f"type {oa.type} -> {ob.type}")
    if oa.model != ob.model:
        notes.append(f"model {oa.model} -> {ob.model}")
    if oa.level != ob.level:
        notes.append(f"level {oa.level} -> {ob.level}")
    output_diff = text_diff(oa.output, ob.output, f"A: {path}", f"B: {path}", context)
    status = "changed" if notes or output_diff else "same"
    return ObservationChange(
        path,
        status,
        ob.type,
        _sub(ob.latency, oa.latency),
        ob.total_tokens - oa.total_tokens,
        _sub(_cost(ob), _cost(oa)),
        output_diff,
        notes,
    )


def normalise(value: Any) -> Any:
    """The value without the keys that change on every run."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def _as_lines(value: Any, *, normalised: bool = False) -> list[str]:
    value = value if normalised else normalise(value)
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines()
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def text_diff(a: Any, b: Any, label_a: str, label_b: str, context: int = 2) -> list[str]:
    """Unified diff lines of two outputs (empty when they are the same after ``normalise``)."""
    if a is b:
        return []
    na, nb = normalise(a), normalise(b)
    if na == nb:  # compared as values first: JSON text of a long agent run's state is costly to make
        return []
    la, lb = _as_lines(na, normalised=True), _as_lines(nb, normalised=True)
    if la == lb:
        return []
    return list(difflib.unified_diff(la, lb, label_a, label_b, n=context, lineterm=""))


def _cost(obs: Observation) -> float | None:
    return (obs.cost_details or {}).get("total")


def _sub(b: float | None, a: float | None) -> float | None:
    if a is None or b is None:
        return None
    return b - a


def _neg(value: float | None) -> float | None:
    return None if value is None else -value


# -- formatting -----------------------------------------------------------------------------


def signed_seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:+.3f}s" if abs(value) < 10 else f"{value:+.1f}s"


def signed_tokens(value: int) -> str:
    return f"{value:+d} tokens"


def signed_cost(value: float | None) -> str:
    if value is None:
        return "cost ?"
    sign = "-" if value < 0 else "+"
    return f"{sign}${abs(value):.6f}".rstrip("0").rstrip(".") if value else "+$0"


FOLD_RUN = 12  # consecutive added (or removed) observations listed one by one; a longer run is folded
RUN_HEAD, RUN_TAIL = 3, 2  # what is listed of a folded run around its one summary line


def diff_lines(diff: TraceDiff, *, show_same: bool = False, expand: bool = False) -> Iterator[str]:
    """Plain text report: totals, then one line per observation, then the output diffs.

    A run of more than ``FOLD_RUN`` consecutive added (or removed) observations, the steps one long run has and
    the other has not, is listed as its first and last few and one line with the count and totals of the rest,
    unless ``expand``."""
    counts = diff.counts()
    yield f"A {diff.a_id}  ->  B {diff.b_id}"
    yield (
        f"total: {signed_seconds(diff.latency_delta)}, {signed_tokens(diff.tokens_delta)}, "
        f"{signed_cost(diff.cost_delta)}; observations: {counts['added']} added, {counts['removed']} removed, "
        f"{counts['changed']} changed, {counts['same']} same"
    )
    listed = [
        change
        for change in diff.observations
        # latency alone always moves a little: not worth a line
        if change.status != "same" or show_same or change.tokens_delta or change.cost_delta
    ]
    for item in listed if expand else _fold_runs(listed):
        yield _folded_line(item) if isinstance(item, list) else _change_line(item)
    # a changed output shows up again in every ancestor's output: print only where a change starts
    changed = [c.path for c in diff.observations if c.output_diff]
    origins = [c.output_diff for c in diff.observations if c.output_diff and not _has_changed_child(c.path, changed)]
    shown: list[list[str]] = []
    # the trace's output is the whole final state: its reply says more (the state's changes are listed above)
    for lines in [*origins, diff.reply_diff or diff.output_diff]:
        if lines and lines[2:] not in shown:  # the trace output is usually the root's: show it once
            shown.append(lines[2:])
            yield ""
            yield from lines
    if not diff.changed:
        yield "no change in structure or outputs"


_MARKS = {"added": "+", "removed": "-", "changed": "~", "same": "="}


def _change_line(change: ObservationChange) -> str:
    deltas = f"{signed_seconds(change.latency_delta)}, {signed_tokens(change.tokens_delta)}"
    if change.cost_delta:
        deltas += f", {signed_cost(change.cost_delta)}"
    notes = f"  [{'; '.join(change.notes)}]" if change.notes else ""
    status = "" if change.status == "same" else f" {change.status}"
    return f"{_MARKS[change.status]} {change.path} ({change.type}){status}: {deltas}{notes}"


def _fold_runs(changes: list[ObservationChange]) -> list[ObservationChange | list[ObservationChange]]:
    """``changes`` with the middle of each long run of added (or removed) observations as one list."""
    out: list[ObservationChange | list[ObservationChange]] = []
    start = 0
    while start < len(changes):
        status = changes[start].status
        end = start + 1
        if status in ("added", "removed"):
            while end < len(changes) and changes[end].status == status:
                end += 1
        run = changes[start:end]
        if len(run) > FOLD_RUN:
            out += [*run[:RUN_HEAD], run[RUN_HEAD : len(run) - RUN_TAIL], *run[len(run) - RUN_TAIL :]]
        else:
            out += run
        start = end
    return out


def _folded_line(run: list[ObservationChange]) -> str:
    """``- … 2,495 more removed (LangGraph/think#1002 … LangGraph/critic#1500/route): -4.200s, -26304499 tokens``"""
    status = run[0].status
    paths = {c.path for c in run}
    # a parent's latency holds its children's: time is summed over the run's outermost observations only
    outer = [c for c in run if c.path.rpartition("/")[0] not in paths]
    latencies = [c.latency_delta for c in outer if c.latency_delta is not None]
    costs = [c.cost_delta for c in run if c.cost_delta is not None]
    seconds = signed_seconds(sum(latencies) if latencies else None)
    deltas = f"{seconds}, {signed_tokens(sum(c.tokens_delta for c in run))}"
    if any(costs):
        deltas += f", {signed_cost(sum(costs))}"
    where = "only in A" if status == "removed" else "only in B"
    return f"{_MARKS[status]} … {len(run):,} more {status} ({where}: {run[0].path} … {run[-1].path}): {deltas}"


def _has_changed_child(path: str, changed: list[str]) -> bool:
    return any(other.startswith(path + "/") for other in changed)


# -- baselines ------------------------------------------------------------------------------


def compare_with_baseline(trace: Trace, baseline: Trace, tolerance: float = 0.25) -> list[AssertionFailure]:
    """Failures when the run's nodes or tools differ from the baseline, or tokens/latency/cost drift.

    Tokens and cost fail outside ``baseline * (1 ± tolerance)``; latency fails only when slower than
    ``baseline * (1 + tolerance) + LATENCY_GRACE`` (a faster run is no regression). A cost is compared
    only when the baseline has one; the run's cost being unknown then fails.
    """
    failures: list[AssertionFailure] = []
    ref = f"baseline {baseline.id[:8]}"
    for what, now, then in (
        ("nodes", node_names(trace), node_names(baseline)),
        ("tools", tool_names(trace), tool_names(baseline)),
    ):
        added, removed = sorted(set(now) - set(then)), sorted(set(then) - set(now))
        if added or removed:
            parts = [f"new: {', '.join(added)}" if added else "", f"missing: {', '.join(removed)}" if removed else ""]
            failures.append(
                AssertionFailure(
                    f"baseline {what}",
                    ", ".join(sorted(then)) or "(none)",
                    ", ".join(sorted(now)) or "(none)",
                    f"{what} differ from {ref} ({'; '.join(p for p in parts if p)})",
                )
            )
    low, high = 1 - tolerance, 1 + tolerance
    tokens, base_tokens = trace.total_tokens, baseline.total_tokens
    if not base_tokens * low <= tokens <= base_tokens * high:
        failures.append(
            AssertionFailure(
                "baseline tokens",
                f"{base_tokens} ±{tolerance:.0%}",
                f"{tokens} ({signed_tokens(tokens - base_tokens)})",
                f"token use drifted from {ref}",
            )
        )
    if baseline.latency is not None:
        limit = baseline.latency * high + LATENCY_GRACE
        if trace.latency is None or trace.latency > limit:
            actual = "unknown" if trace.latency is None else f"{trace.latency:.3f}s"
            failures.append(
                AssertionFailure(
                    "baseline latency",
                    f"<= {baseline.latency:.3f}s +{tolerance:.0%}",
                    actual,
                    f"slower than {ref}",
                )
            )
    base_cost = baseline.total_cost
    if base_cost is not None:
        missing = unpriced_models(trace)
        cost = trace.total_cost
        if missing or cost is None:
            failures.append(
                AssertionFailure(
                    "baseline cost",
                    f"${base_cost:.6f} ±{tolerance:.0%}",
                    "unknown",
                    f"cost unknown for model {', '.join(missing) or '?'}",
                )
            )
        elif not base_cost * low - 1e-12 <= cost <= base_cost * high + 1e-12:
            failures.append(
                AssertionFailure(
                    "baseline cost",
                    f"${base_cost:.6f} ±{tolerance:.0%}",
                    f"${cost:.6f} ({signed_cost(cost - base_cost)})",
                    f"cost drifted from {ref}",
                )
            )
    return failures
