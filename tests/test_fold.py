"""Folding long traces (fold.py) as `show` prints them, and `show --expand` / `--steps A..B`."""

from __future__ import annotations

import io
import json
import operator
import sys
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from rich.console import Console
from typer.testing import CliRunner

from lftrace import client as client_module
from lftrace.cli import app
from lftrace.errors import InputError
from lftrace.fold import SCREEN, Fold, fold_siblings, parse_steps, select_steps
from lftrace.langchain import CallbackHandler
from lftrace.model import Observation, Trace
from lftrace.render import render_trace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sample_graphs.long_loop import build_graph, loop_input, run_config  # noqa: E402

runner = CliRunner()


def text_of(renderable: object, width: int = 120) -> str:
    out = io.StringIO()
    Console(width=width, color_system=None, file=out).print(renderable, crop=False)
    return out.getvalue()


@pytest.fixture
def loop_trace() -> Trace:
    """A real 60-step think -> critic run, read back from the store."""
    client_module.reset_clients()
    handler = CallbackHandler()
    build_graph().invoke(loop_input(60), run_config(60, [handler]))
    return client_module.get_client().get_trace(handler.last_trace_id)


def test_a_loop_is_folded_to_its_first_and_last_round_with_the_totals_between(loop_trace):
    text = text_of(render_trace(loop_trace))
    lines = text.splitlines()
    folds = [line for line in lines if "×" in line]
    assert len(folds) == 1
    fold = folds[0]
    # 30 rounds: the first and the last are shown, 28 folded (steps 3 to 58, 5 observations per round)
    assert "× 28  think -> critic  140 observations" in fold and fold.endswith("steps 3..58")
    assert " tok" in fold
    assert sum("CHAIN think" in line for line in lines) == 2
    assert "CHAIN think  step 1 " in text and "CHAIN critic  step 60 " in text
    assert len(lines) < 40  # instead of ~300
    expanded = text_of(render_trace(loop_trace, expand=True)).splitlines()
    assert sum("CHAIN think" in line for line in expanded) == 30 and not any("×" in line for line in expanded)


def obs(
    index: int, name: str, *, parent: str | None = "root", level: str = "DEFAULT", step: int | None = None
) -> Observation:
    return Observation(
        id=f"{index:016x}",
        trace_id="a" * 32,
        parent_id=parent,
        type="CHAIN",
        name=name,
        start_time=1_000_000_000 + index * 1_000_000,
        end_time=1_000_000_000 + index * 1_000_000 + 500_000,
        level=level,
        usage_details={"total": 10},
        metadata={"langgraph_step": step if step is not None else index},
    )


def test_an_error_inside_a_loop_is_never_folded_away():
    siblings = [obs(i, "think" if i % 2 == 0 else "act") for i in range(40)]
    siblings[21] = obs(21, "act", level="ERROR")
    items = fold_siblings(siblings, {})
    assert siblings[21] in items
    folds = [item for item in items if isinstance(item, Fold)]
    assert len(folds) == 2 and all(f.names == ["think", "act"] and f.errors == 0 for f in folds)
    shown = sum(1 for item in items if isinstance(item, Observation))
    assert shown + sum(len(f.observations) for f in folds) == 40  # nothing lost, only folded


def test_a_send_fan_out_folds_its_branches_as_one_step():
    """LangGraph's map-reduce how-to: ``Send`` to one node per item; every branch runs in the same step."""

    class State(TypedDict):
        items: list[int]
        out: Annotated[list[int], operator.add]

    def work(state: State) -> dict:
        return {"out": [state["items"][0] * 2]}

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, lambda s: [Send("work", {"items": [i], "out": []}) for i in s["items"]])
    builder.add_edge("work", END)
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke({"items": list(range(60)), "out": []}, {"callbacks": [handler]})
    trace = client_module.get_client().get_trace(handler.last_trace_id)
    (fold,) = [line for line in text_of(render_trace(trace)).splitlines() if "× 58" in line]
    assert "× 58  work  58 observations" in fold and fold.endswith("step 1"), fold


def test_a_level_longer_than_a_screen_is_cut_in_the_middle_with_its_totals():
    siblings = [obs(i, f"tool_{i}") for i in range(100)]  # nothing repeats
    items = fold_siblings(siblings, {})
    assert len(items) <= SCREEN + 1
    (more,) = [item for item in items if isinstance(item, Fold)]
    assert more.label() == f"… {100 - len(items) + 1:,} more"
    assert more.total_observations == len(more.observations) and more.tokens == 10 * len(more.observations)
    assert items[0] is siblings[0] and items[-1] is siblings[-1]


def test_steps_ranges_parse_and_select_with_their_ancestors():
    assert parse_steps("3..7") == (3, 7) and parse_steps("5") == (5, 5)
    assert parse_steps("..4") == (None, 4) and parse_steps("10..") == (10, None)
    for bad in ("x", "7..3", "..", ""):
        with pytest.raises(InputError):
            parse_steps(bad)
    root = Observation(id="root", trace_id="a" * 32, parent_id=None, type="CHAIN", name="LangGraph", start_time=1)
    trace = Trace(id="a" * 32, name="t", timestamp=1, observations=[root, *(obs(i, f"n{i}") for i in range(1, 10))])
    picked = select_steps(trace, 3, 5)
    assert [o.name for o in picked.observations] == ["LangGraph", "n3", "n4", "n5"]
    with pytest.raises(InputError):
        select_steps(Trace(id="b" * 32, name="t", timestamp=1, observations=[root]), 1, 2)


def test_show_expand_and_steps_on_the_command_line(loop_trace):
    folded = runner.invoke(app, ["show", loop_trace.id], env={"COLUMNS": "120"})
    assert folded.exit_code == 0 and "× 28  think -> critic" in folded.output
    expanded = runner.invoke(app, ["show", loop_trace.id, "--expand"], env={"COLUMNS": "120"})
    assert expanded.exit_code == 0 and expanded.output.count("CHAIN think") == 30
    steps = runner.invoke(app, ["show", loop_trace.id, "--steps", "10..12"], env={"COLUMNS": "120"})
    assert steps.exit_code == 0
    assert "step 10 " in steps.output and "step 12 " in steps.output and "step 13 " not in steps.output
    assert "step 9 " not in steps.output
    bad = runner.invoke(app, ["show", loop_trace.id, "--steps", "12..10"])
    assert bad.exit_code == 2 and "error: --steps '12..10'" in bad.output


def test_the_timeline_folds_a_loop_as_the_tree_does_and_expand_and_steps_show_every_row(loop_trace):
    folded = runner.invoke(app, ["show", loop_trace.id, "--timeline"], env={"COLUMNS": "120"})
    assert folded.exit_code == 0
    lines = folded.output.splitlines()
    [fold_row] = [line for line in lines if "× 28  think -> critic" in line]
    # the folded rounds' bar spans the middle of the run: from near the start to near the end of the axis
    bar = fold_row.rstrip().rsplit("  ", 1)[-1]
    assert set(bar.strip()) == {"█"} and len(bar.strip()) > len(bar) // 2, fold_row
    rows = [line for line in lines if "think ·" in line or "critic ·" in line]
    assert len(rows) == 4  # the first and the last round, as the tree shows them
    expanded = runner.invoke(app, ["show", loop_trace.id, "--timeline", "--expand"], env={"COLUMNS": "120"})
    assert expanded.exit_code == 0 and "×" not in expanded.output
    assert sum(1 for line in expanded.output.splitlines() if "think ·" in line) == 30
    steps = runner.invoke(app, ["show", loop_trace.id, "--timeline", "--steps", "10..12"], env={"COLUMNS": "120"})
    assert steps.exit_code == 0
    assert [line.split()[0] for line in steps.output.splitlines() if "·" in line] == ["critic", "think", "critic"]


def test_diff_of_two_loops_folds_the_steps_only_one_of_them_ran(loop_trace):
    handler = CallbackHandler()
    build_graph().invoke(loop_input(20), run_config(20, [handler]))
    shorter = handler.last_trace_id
    client_module.get_client().flush()
    folded = runner.invoke(app, ["diff", loop_trace.id, shorter], env={"COLUMNS": "200"})
    assert folded.exit_code == 0, folded.output
    removed = [line for line in folded.output.splitlines() if line.startswith("- ")]
    assert len(removed) == 6 and "more removed (only in A: " in removed[3], removed
    expanded = runner.invoke(app, ["diff", loop_trace.id, shorter, "--expand"], env={"COLUMNS": "200"})
    listed = [line for line in expanded.output.splitlines() if line.startswith("- ")]
    assert len(listed) > 90 and not any("more removed" in line for line in listed)  # 40 steps' observations
    as_json = runner.invoke(app, ["diff", loop_trace.id, shorter, "--json"])  # JSON lists every one
    data = json.loads(as_json.output)
    assert data["counts"]["removed"] == len(listed) == sum(o["status"] == "removed" for o in data["observations"])
