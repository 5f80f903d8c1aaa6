"""Folding long traces: repeated sequences of sibling observations shown once, with the totals of the rest.

An agent that loops ``think -> critic`` 5,000 times has 10,000 siblings under its graph. ``fold_siblings``
turns such a list into what ``show`` prints: the first repetition, one line ``× 4,998  think -> critic`` with
the totals of the folded part (observations, time, tokens, cost, errors), then the last repetition (levels of
more than ``FOLD_AFTER`` siblings; shorter ones are shown as they are). Errors
are never folded away (an ERROR observation breaks the pattern). What is left longer than ``SCREEN`` items
per level is cut in the middle (``… 1,200 more``). ``select_steps`` keeps LangGraph steps A..B of a trace.

Pure and stdlib-only: no rich, no store. ``render.build_tree`` calls ``fold_siblings`` at one place.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError
from .model import Observation, Trace

MAX_PERIOD = 8  # longest repeated sequence looked for (nodes per loop iteration)
MIN_REPEATS = 4  # fewer repetitions are shown as they are
FOLD_AFTER = 20  # a level with at most this many siblings is shown as it is
SCREEN = 40  # items per level without --expand (about a screenful with their in/out lines cut)
HEAD, TAIL = 25, 10  # what is kept of a level longer than SCREEN after folding


@dataclass
class Fold:
    """A folded stretch of siblings: ``repeats`` times the sequence ``names`` (``repeats`` 0: not a pattern)."""

    names: list[str]
    repeats: int
    observations: list[Observation]  # the folded siblings (their descendants are counted in the totals)
    total_observations: int = 0
    duration: float | None = None  # seconds from the first folded start to the last folded end
    tokens: int = 0
    cost: float | None = None
    errors: int = 0
    steps: tuple[int, int] | None = None  # LangGraph steps of the folded siblings (for --steps A..B)

    def label(self) -> str:
        """``× 1,250  think -> critic`` or ``… 1,200 more``."""
        if self.repeats:
            return f"× {self.repeats:,}  {' -> '.join(self.names)}"
        return f"… {len(self.observations):,} more"

    def totals(self) -> str:
        """``2,500 observations  12.3s  40,210 tok  $0.0123  2 errors  steps 3..2498`` (``step 1``: one step)."""
        parts = [f"{self.total_observations:,} observations"]
        if self.duration is not None:
            parts.append(_duration(self.duration))
        if self.tokens:
            parts.append(f"{self.tokens:,} tok")
        if self.cost:
            parts.append(f"${self.cost:.4f}")
        if self.errors:
            parts.append(f"{self.errors:,} error{'s' * (self.errors != 1)}")
        if self.steps:  # parallel branches (Send) all run in one step
            first, last = self.steps
            parts.append(f"step {first}" if first == last else f"steps {first}..{last}")
        return "  ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60}m"


def _signature(obs: Observation) -> tuple[str, str, bool]:
    return (obs.type, obs.name, obs.level == "ERROR")


def _best_pattern(signatures: Sequence[tuple[str, str, bool]], start: int) -> tuple[int, int]:
    """(period, repeats) of the repetition covering most siblings from ``start``; (0, 0) when none is long enough."""
    best_period, best_repeats, best_cover = 0, 0, 0
    n = len(signatures)
    for period in range(1, MAX_PERIOD + 1):
        if start + period * MIN_REPEATS > n:
            break
        unit = signatures[start : start + period]
        if any(s[2] for s in unit):  # an error is always shown
            continue
        end = start + period
        while end + period <= n and signatures[end : end + period] == unit:
            end += period
        repeats = (end - start) // period
        if repeats >= MIN_REPEATS and repeats * period > best_cover:
            best_period, best_repeats, best_cover = period, repeats, repeats * period
    return best_period, best_repeats


def fold_siblings(
    siblings: Sequence[Observation], kids: dict[str | None, list[Observation]]
) -> list[Observation | Fold]:
    """What to show of one level: repetitions folded (first and last kept), then at most ~``SCREEN`` items."""
    if len(siblings) <= FOLD_AFTER:
        return list(siblings)
    signatures = [_signature(o) for o in siblings]
    out: list[Observation | Fold] = []
    index = 0
    while index < len(siblings):
        period, repeats = _best_pattern(signatures, index)
        if not period:
            out.append(siblings[index])
            index += 1
            continue
        end = index + period * repeats
        out.extend(siblings[index : index + period])  # the first repetition, as it is
        folded = list(siblings[index + period : end - period])
        out.append(_fold([s[1] for s in signatures[index : index + period]], repeats - 2, folded, kids))
        out.extend(siblings[end - period : end])  # and the last one: how the loop ended
        index = end
    if len(out) > SCREEN:
        middle = out[HEAD : len(out) - TAIL]
        hidden: list[Observation] = []
        for item in middle:
            hidden.extend(item.observations if isinstance(item, Fold) else [item])
        out = [*out[:HEAD], _fold([], 0, hidden, kids), *out[len(out) - TAIL :]]
    return out


def _fold(names: list[str], repeats: int, folded: list[Observation], kids: dict[str | None, list[Observation]]) -> Fold:
    fold = Fold(names, repeats, folded)
    steps = [s for o in folded if (s := _step(o)) is not None]
    if steps:
        fold.steps = (min(steps), max(steps))
    starts = [o.start_time for o in folded]
    ends = [o.end_time for o in folded if o.end_time is not None]
    if starts and ends:
        fold.duration = max((max(ends) - min(starts)) / 1e9, 0.0)
    todo = list(folded)
    costs: list[float] = []
    while todo:
        obs = todo.pop()
        fold.total_observations += 1
        if obs.level == "ERROR":
            fold.errors += 1
        usage = obs.usage_details or {}
        total = usage.get("total")
        fold.tokens += total if isinstance(total, int) else sum(v for v in usage.values() if isinstance(v, int))
        if obs.cost_details and isinstance(obs.cost_details.get("total"), int | float):
            costs.append(float(obs.cost_details["total"]))
        todo.extend(kids.get(obs.id, ()))
    fold.cost = sum(costs) if costs else None
    return fold


# ---------------------------------------------------------------- --steps A..B

_RANGE = re.compile(r"^\s*(\d*)\s*(?:(\.\.|-)\s*(\d*))?\s*$")


def parse_steps(text: str) -> tuple[int | None, int | None]:
    """``3..7``, ``3..``, ``..7``, ``5`` (and ``3-7``) -> inclusive bounds; InputError otherwise."""
    match = _RANGE.match(text)
    if not match or (not match.group(1) and not match.group(3)):
        raise InputError(f"--steps '{text}' is not a step range: use A..B, A.., ..B or a single step (e.g. 10..20)")
    low = int(match.group(1)) if match.group(1) else None
    high = int(match.group(3)) if match.group(3) else (low if not match.group(2) else None)
    if low is not None and high is not None and low > high:
        raise InputError(f"--steps '{text}' is empty: the first step is after the last (e.g. 10..20)")
    return low, high


def _step(obs: Observation) -> int | None:
    step = (obs.metadata or {}).get("langgraph_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def select_steps(trace: Trace, low: int | None, high: int | None) -> Trace:
    """A copy of ``trace`` with the observations of LangGraph steps ``low..high`` and their ancestors.

    InputError when the trace has no LangGraph steps at all.
    """
    steps = [s for o in trace.observations if (s := _step(o)) is not None]
    if not steps:
        raise InputError(f"trace {trace.id[:8]} has no LangGraph steps: --steps works on LangGraph runs only")
    by_id = {o.id: o for o in trace.observations}
    keep: set[str] = set()
    for obs in trace.observations:
        step = _step(obs)
        if step is None or (low is not None and step < low) or (high is not None and step > high):
            continue
        current: Observation | None = obs
        while current is not None and current.id not in keep:
            keep.add(current.id)
            current = by_id.get(current.parent_id) if current.parent_id else None
    return dataclasses.replace(trace, observations=[o for o in trace.observations if o.id in keep])
