"""``lftrace experiments``: the runs of ``run_experiment`` in the store, and one run item by item.

Read from the store by ``experiment_runs`` (the same answers as ``lftrace serve``'s experiments API): a run is its
items' traces grouped by experiment id. Never imports LangChain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ..errors import ExitStatus, InputError, TraceNotFound
from ..model import Score
from .app import app, console, open_store, print_json, store_path
from .options import SinceFilter, UntilFilter, trace_filter
from .traces import print_table


@app.command("experiments")
def experiments_command(
    run: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN]",
            help="A run to show item by item: its experiment id (or the start of it), its run name, or 'last'.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many runs.")] = 20,
    since: SinceFilter = None,
    until: UntilFilter = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="BASE",
            help="Compare RUN with this earlier run item by item: the mean of each score, the items that changed.",
        ),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression", help="With --against: exit 5 when a mean score is lower or more items failed."
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the runs (or the run and its items) as JSON.")
    ] = False,
) -> None:
    """List experiment runs (Langfuse.run_experiment, dataset.run_experiment), the latest first: items, errors, average scores, cost; with RUN, that run item by item.

    An item is one trace: its input, output, expected output and scores; show it whole with [bold]lftrace show TRACE[/bold]. Runs sent to [bold]lftrace serve[/bold] by the official SDK are listed too.

    [bold]Example[/bold]

      lftrace experiments
      lftrace experiments last
      lftrace experiments "capitals - 2026-12-03T10:00:00Z" --json
      lftrace experiments capitals-v2 --against capitals-v1 --fail-on-regression
    """
    if (against or fail_on_regression) and run is None:
        raise InputError(
            "--against and --fail-on-regression compare a RUN: name it (lftrace experiments RUN --against BASE)"
        )
    if fail_on_regression and against is None:
        raise InputError("--fail-on-regression needs --against BASE: the run to compare with")
    from ..experiment_runs import experiment_items, experiments_of, run_scores

    where = trace_filter(since=since, until=until)
    items: list[dict[str, Any]] = []
    dataset_names: dict[str, str] = {}
    of_runs: dict[str, list[Score]] = {}
    if store_path().exists():
        store = open_store(read_only=True)
        try:
            # the list needs no inputs and outputs: an item's task may be a whole agent run
            items = experiment_items(store, where.since_ns or 0, where.until_ns, io=run is not None)
            dataset_names = {d["id"]: d["name"] for d in store.list_datasets()}
            of_runs = run_scores(store)
        finally:
            store.close()
    runs = experiments_of(items)
    for row in runs:
        mine = [i for i in items if i["experimentId"] == row["id"]]
        row["errors"] = sum(i["level"] == "ERROR" for i in mine)
        row["averages"] = averages([s for i in mine for s in i["scores"]])
        row["runScores"] = of_runs.get(row["id"], [])
        costs = [i["_cost"] for i in mine if i["_cost"] is not None]
        row["totalCost"] = sum(costs) if costs else None
        row["dataset"] = dataset_names.get(row["datasetId"] or "")
    if run is None:
        _list(runs[:limit], json_out)
        return
    chosen = _find(runs, run)
    mine = [i for i in items if i["experimentId"] == chosen["id"]]
    if against is None:
        _one(chosen, mine, json_out)
        return
    base = _find(runs, against)
    from ..experiment_runs import compare_runs

    comparison = compare_runs(mine, [i for i in items if i["experimentId"] == base["id"]])
    _compared(chosen, base, comparison, json_out)
    if fail_on_regression and comparison["regressed"]:
        from ..sanitize import clean_line

        lower = ", ".join(
            f"{name} {_number(comparison['scores'][name]['base'])} -> {_number(comparison['scores'][name]['run'])}"
            for name in comparison["lower"]
        )
        if comparison["errors"] > comparison["baseErrors"]:
            lower = ", ".join(
                filter(None, (lower, f"failed items {comparison['baseErrors']} -> {comparison['errors']}"))
            )
        typer.echo(clean_line(f"lftrace: {chosen['name']} regressed against {base['name']}: {lower}"), err=True)
        raise typer.Exit(ExitStatus.ASSERTION_FAILED)


def averages(scores: Sequence[Score]) -> dict[str, float | str]:
    """Per score name: the mean of numeric and boolean values (booleans as 0/1); else the most common value."""
    values: dict[str, list[Any]] = {}
    for score in scores:
        if score.data_type in ("NUMERIC", "BOOLEAN") and score.value is not None:
            values.setdefault(score.name, []).append(float(score.value))
        else:
            values.setdefault(score.name, []).append(score.display_value())
    out: dict[str, float | str] = {}
    for name, found in values.items():
        numbers = [v for v in found if isinstance(v, float)]
        if len(numbers) == len(found):
            out[name] = round(sum(numbers) / len(numbers), 4)
        else:
            out[name] = Counter(str(v) for v in found).most_common(1)[0][0]
    return out


def _find(runs: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    if wanted == "last" and runs:
        return runs[0]
    exact = [r for r in runs if wanted in (r["id"], r["name"])]
    found = exact or [r for r in runs if r["id"].startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TraceNotFound(f"no experiment run '{wanted}' in {store_path()} (list them with: lftrace experiments)")
    raise TraceNotFound(
        f"'{wanted}' names {len(found)} experiment runs: give more of the id (lftrace experiments lists them)"
    )


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.startswith("_") and k not in ("scores", "runScores")}
    out["scores"] = [s.to_dict() for s in row.get("runScores") or row.get("scores") or []]
    return out


def _list(runs: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        print_json([_public(r) for r in runs])
        return
    if not runs:
        console().print(
            "No experiment runs yet: Langfuse.run_experiment(...) or dataset.run_experiment(...) records one.",
            soft_wrap=True,
        )
        return
    from ..render import Table, format_cost, format_time

    headers = ("STARTED", "RUN", "DATASET", "ITEMS", "ERRORS", "SCORES (mean)", "COST", "ID")
    rows: list[tuple[str, ...]] = [
        (
            format_time(r["_start"]),
            r["name"],
            r["dataset"] or r["datasetId"] or "—",
            str(r["itemCount"]),
            str(r["errors"]),
            _averages_text(r["averages"], r["runScores"]) or "—",
            format_cost(r["totalCost"]) or "—",
            r["id"][:16],
        )
        for r in runs
    ]
    tsv: list[tuple[str, ...]] = [(r["id"], r["name"], r["datasetId"] or "", str(r["itemCount"]), str(r["errors"]),
            _averages_text(r["averages"], r["runScores"]), "" if r["totalCost"] is None else f"{r['totalCost']:.8f}",
            format_time(r["_start"])) for r in runs]  # fmt: skip
    print_table(
        Table(
            headers,
            rows,
            right=frozenset((3, 4, 6)),
            flex=1,
            optional=(7, 2, 6),
            times=(0,),
            tsv_headers=("id", "run", "dataset_id", "items", "errors", "scores", "cost_usd", "started"),
            tsv_rows=tsv,
        )
    )


def _averages_text(means: dict[str, float | str], run_scores: Sequence[Score]) -> str:
    parts = [f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}" for name, value in means.items()]
    parts += [f"{s.name} {s.display_value()} (run)" for s in run_scores]
    return ", ".join(parts)


def _one(run: dict[str, Any], items: list[dict[str, Any]], json_out: bool) -> None:
    items = sorted(items, key=lambda i: (i["_start"], i["id"]))
    if json_out:
        shown = _public(run)
        shown["items"] = [
            {k: v for k, v in i.items() if not k.startswith("_") and k != "scores"}
            | {"scores": [s.to_dict() for s in i["scores"]]}
            for i in items
        ]
        print_json(shown)
        return
    from rich.text import Text

    from ..render import Table, format_cost, format_local_time, preview
    from ..sanitize import clean_line

    out = console()
    head = Text(clean_line(run["name"]), style="bold")
    head.append(f"  {run['id']}", style="dim")
    out.print(head)
    facts = [
        f"started {format_local_time(run['_start'])}",
        f"{run['itemCount']} items",
        f"{run['errors']} error{'s' * (run['errors'] != 1)}",
    ]
    if run["dataset"] or run["datasetId"]:
        facts.append(f"dataset {run['dataset'] or run['datasetId']}")
    if run["totalCost"] is not None:
        facts.append(format_cost(run["totalCost"]))
    out.print(Text("  ".join(clean_line(f) for f in facts), style="dim"))
    for label, value in (
        ("description", run["description"]),
        ("metadata", run["metadata"]),
        ("scores", _averages_text(run["averages"], run["runScores"])),
    ):
        if value:
            out.print(Text(f"{label}: {clean_line(value if isinstance(value, str) else preview(value))}"))
    headers = ("ITEM", "INPUT", "OUTPUT", "EXPECTED", "SCORES", "STATUS", "TRACE")
    rows: list[tuple[str, ...]] = [
        (
            i["experimentItemId"][:16],
            preview(i["input"], 40),
            preview(i["output"]),
            preview(i["expectedOutput"]) if i["expectedOutput"] is not None else "—",
            ", ".join(f"{s.name} {s.display_value()}" for s in i["scores"]) or "—",
            "error" if i["level"] == "ERROR" else "ok",
            i["traceId"][:8],
        )
        for i in items
    ]
    # a table under the run's header whether stdout is a terminal or not (scripts read --json)
    # narrow: the input gives way first, then the expected output goes (the scores compare it), then the item id
    out.print(Table(headers, rows, flex=1, optional=(3, 0), status_column=5))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _item_status(change: dict[str, Any]) -> str:
    """improved / regressed / changed (only the output) for an item both runs have."""
    if change["failed"] != change["baseFailed"]:
        return "regressed" if change["failed"] else "improved"
    deltas = [
        value - was
        for name, value in change["scores"].items()
        if type(value) is float and type(was := change["baseScores"].get(name)) is float
    ]
    if any(d < 0 for d in deltas):
        return "regressed"
    return "improved" if any(d > 0 for d in deltas) else "changed"


def _compared(run: dict[str, Any], base: dict[str, Any], comparison: dict[str, Any], json_out: bool) -> None:
    changed = comparison["changed"]
    for change in changed:
        change["status"] = _item_status(change)
    if json_out:
        print_json({"run": _public(run), "base": _public(base), **comparison})
        return
    from rich.text import Text

    from ..render import Table, preview
    from ..sanitize import clean_line

    out = console()
    head = Text(clean_line(run["name"]), style="bold")
    head.append(f" vs {clean_line(base['name'])}", style="bold")
    head.append(f"  {comparison['matched']} items in both", style="dim")
    out.print(head)
    for name, means in comparison["scores"].items():
        delta = means["delta"]
        line = Text(f"{clean_line(name)}  {_number(means['base'])} -> {_number(means['run'])}")
        if delta is not None:
            line.append(f"  {delta:+.4g}", style="green" if delta > 0 else "red" if delta < 0 else "dim")
        out.print(line)
    if comparison["errors"] or comparison["baseErrors"]:
        out.print(Text(f"failed items  {comparison['baseErrors']} -> {comparison['errors']}"))
    for label, keys in (
        ("only in " + run["name"], comparison["onlyInRun"]),
        ("only in " + base["name"], comparison["onlyInBase"]),
    ):
        if keys:
            out.print(Text(clean_line(f"{label}: {', '.join(keys)}"), style="dim"))
    if not changed:
        out.print(Text("no item changed: the same scores, outputs and statuses", style="dim"))
        return

    def scores(found: dict[str, Any]) -> str:
        return ", ".join(f"{n} {v:g}" if type(v) is float else f"{n} {v}" for n, v in found.items()) or "—"

    rows: list[tuple[str, ...]] = [
        (
            change["item"][:16],
            f"{scores(change['baseScores'])} -> {scores(change['scores'])}",
            f"{preview(change['baseOutput'], 40)} -> {preview(change['output'], 40)}",
            change["status"],
            change["traceId"][:8],
        )
        for change in changed
    ]
    out.print(
        Table(("ITEM", "SCORES (base -> run)", "OUTPUT (base -> run)", "STATUS", "TRACE"), rows, flex=2, optional=(0,))
    )
