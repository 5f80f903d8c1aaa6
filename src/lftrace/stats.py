"""Aggregates over stored traces: per graph node, per tool and per model.

A node execution is the observation LangGraph opens for the node (its ``langgraph_node`` metadata equals
its own name); its tokens and cost are those of the generations inside it. A subgraph used as a node shows up as
two runs of the same name, one inside the other: it is counted once (the outer one). A model row is one per
generation. Latency percentiles interpolate linearly between ranks (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import Observation, Trace
from .sanitize import clean_line


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class StatRow:
    kind: str  # node | tool | model
    key: str
    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0  # generations without a known price (cost is then a lower bound)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.latencies, 95)

    def add(self, obs: Observation, tokens: int, cost: float | None, priced: bool) -> None:
        self.count += 1
        self.errors += obs.level == "ERROR"
        if obs.latency is not None:
            self.latencies.append(obs.latency)
        self.tokens += tokens
        self.cost += cost or 0.0
        self.unpriced += not priced

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.key,
            "count": self.count,
            "errors": self.errors,
            "errorRate": self.error_rate,
            "p50Latency": self.p50,
            "p95Latency": self.p95,
            "tokens": self.tokens,
            "cost": self.cost if self.cost or not self.unpriced else None,
            "unpricedCalls": self.unpriced,
        }


@dataclass
class StatsReport:
    traces: int = 0
    rows: dict[tuple[str, str], StatRow] = field(default_factory=dict)

    def row(self, kind: str, key: str) -> StatRow:
        found = self.rows.get((kind, key))
        if found is None:
            found = self.rows[(kind, key)] = StatRow(kind, key)
        return found

    def by_kind(self, kind: str) -> list[StatRow]:
        return sorted((r for r in self.rows.values() if r.kind == kind), key=lambda r: (-r.count, r.key))

    def tsv(self) -> str:
        """Tab-separated, a header first, one line per node, tool and model (``lftrace stats`` when stdout is not a
        terminal, like ``list``): latencies in seconds and costs in dollars, empty when not known; names cleaned of
        control characters."""
        lines = ["kind\tname\tcount\terrors\terror_rate\tp50_s\tp95_s\ttokens\tcost_usd\tunpriced_calls"]
        for kind in ("node", "tool", "model"):
            for r in self.by_kind(kind):
                cost = r.to_dict()["cost"]
                cells = (
                    kind, clean_line(r.key), str(r.count), str(r.errors), f"{r.error_rate:.4f}", _seconds(r.p50), _seconds(r.p95),
                    str(r.tokens), "" if cost is None else f"{cost:.8f}", str(r.unpriced),
                )  # fmt: skip
                lines.append("\t".join(cells))
        return "".join(line + "\n" for line in lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "traces": self.traces,
            "nodes": [r.to_dict() for r in self.by_kind("node")],
            "tools": [r.to_dict() for r in self.by_kind("tool")],
            "models": [r.to_dict() for r in self.by_kind("model")],
        }


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _is_node(obs: Observation) -> bool:
    return (obs.metadata or {}).get("langgraph_node") == obs.name and bool(obs.name)


def _own_usage(obs: Observation) -> tuple[int, float | None, bool]:
    tokens = obs.total_tokens
    cost = (obs.cost_details if isinstance(obs.cost_details, dict) else {}).get("total")
    if not isinstance(cost, int | float) or isinstance(cost, bool) or not math.isfinite(cost):
        cost = None
    return tokens, cost, cost is not None


def _inside(obs: Observation, kids: dict[str | None, list[Observation]]) -> tuple[int, float | None, bool]:
    """Tokens, cost and whether every generation under ``obs`` (itself included) was priced."""
    tokens, cost, priced = 0, 0.0, True
    stack = [obs]
    visited: set[int] = set()  # a parent cycle in stored data must not loop forever
    while stack:
        current = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if current.type == "GENERATION":
            t, c, p = _own_usage(current)
            tokens, cost, priced = tokens + t, cost + (c or 0.0), priced and p
        stack.extend(kids.get(current.id, []))
    return tokens, cost, priced


def _nested_repeat(obs: Observation, by_id: dict[str, Observation]) -> bool:
    """A run inside a run of the same name and kind: a subgraph used as a node (the node ``math_agent`` runs the
    compiled graph ``math_agent``, and both carry ``langgraph_node == 'math_agent'``) or a tool wrapping itself.
    Counted once, as the outer run, whose tokens and cost already include everything inside."""
    parent = by_id.get(obs.parent_id) if obs.parent_id else None
    if parent is None or parent.name != obs.name:
        return False
    return (_is_node(parent) and _is_node(obs)) or parent.type == obs.type == "TOOL"


def compute_stats(traces: Iterable[Trace]) -> StatsReport:
    report = StatsReport()
    for trace in traces:
        report.traces += 1
        kids = trace.children()
        by_id = {o.id: o for o in trace.observations}
        for obs in trace.observations:
            if _is_node(obs) and not _nested_repeat(obs, by_id):
                report.row("node", obs.name).add(obs, *_inside(obs, kids))
            if obs.type == "TOOL" and not _nested_repeat(obs, by_id):
                report.row("tool", obs.name).add(obs, *_inside(obs, kids))
            if obs.type == "GENERATION":
                report.row("model", obs.model or "(unknown)").add(obs, *_own_usage(obs))
    return report
