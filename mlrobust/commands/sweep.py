"""`mlrobust sweep SPEC`: every instance of a spec, a line as each finishes, a table per model (per
model, method and cutting when the sweep has several of those)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlrobust.errors import ExitCode

if TYPE_CHECKING:
    from mlrobust.sweep import Row, SweepProgress, SweepResult


def _fmt(value: float | None, digits: str = ".4g") -> str:
    return "-" if value is None else format(value, digits)


def _where(row: Row, names: dict) -> str:  # type: ignore[type-arg]
    """An instance as a line names it: the model's stem (with the method and the cutting when
    the sweep has several: `group_names`), then the canvas or image."""
    from mlrobust.sweep import group_key

    group = names.get(group_key(row), Path(row.model).stem).replace("\n", " / ")
    return f"{group} {row.canvas or Path(row.image).name}"


def sweep(args: argparse.Namespace) -> ExitCode:
    from mlrobust.sweep import group_names, summarise
    from mlrobust.sweep import sweep as run_sweep

    console = Console(stderr=args.json, highlight=False)
    console.print(f"[bold]mlrobust sweep[/] {args.spec}")
    names: dict = {}  # type: ignore[type-arg]

    def on_plan(rows: list[Row], workers: int) -> None:
        names.update(group_names(rows))
        reused = sum(row.reused for row in rows)
        models = len({row.model for row in rows})
        methods = len({row.method for row in rows})
        cuttings = len({(row.cutting, str(row.cutting_weights) if row.cutting == "custom" else "") for row in rows})
        axes = f" × {methods} method(s)" if methods > 1 else ""
        axes += f" × {cuttings} cutting(s)" if cuttings > 1 else ""
        if args.scheduler:
            where = f"the Dask cluster at {args.scheduler}"
        else:
            pool = "a local Dask cluster" if args.executor == "dask" else "a local process pool"
            where = f"{pool} of {workers} worker(s)"
        console.print(
            f"{len(rows)} instance(s) over {models} model(s){axes}; {reused} answered before (reused), "
            f"{len(rows) - reused} to run on {where}",
            soft_wrap=True,
        )

    def listener(row: Row, progress: SweepProgress) -> None:
        where = _where(row, names)
        head = f"[dim]{progress.elapsed:7.1f}s[/] [{progress.finished}/{progress.total}, {progress.running} running]"
        if row.status == "failed":
            console.print(f"{head} [red]failed[/] {where}: {escape(row.error or '')}", soft_wrap=True)
            return
        if row.status == "skipped":
            console.print(f"{head} [yellow]skipped[/] {where}: {escape(row.error or '')}", soft_wrap=True)
            return
        ratio = f", {row.size / row.uniform_size:.2f}× uniform" if row.size and row.uniform_size else ""
        if row.status == "done":
            state = "done" if row.complete else f"done ({escape(row.stop_reason or '')})"
        else:
            state = f"[yellow]incomplete[/] ({escape(row.error or row.stop_reason or '')})"
        console.print(
            f"{head} {state} {where}: w·ε* {_fmt(row.size)}{ratio}, by {row.verifier}, "
            f"{_fmt(row.seconds, '.1f')} s, {row.new_queries} queries",
            soft_wrap=True,
        )

    result = run_sweep(
        args.spec,
        Path(args.out) if args.out else None,
        "dask" if args.scheduler else args.executor,  # a scheduler address means Dask
        args.workers,
        args.scheduler,
        args.method,
        listener,
        on_plan,
        args.force,
    )
    if args.json:
        payload = json.loads((result.folder / "sweep.json").read_text())
        print(json.dumps(payload, indent=2))
    else:
        table(console, result, summarise(result.rows))
    if result.interrupted:
        return ExitCode.INTERRUPTED
    if any(row.status == "failed" and row.error_kind == "internal" for row in result.rows):
        return ExitCode.INTERNAL_ERROR
    if any(row.status == "failed" for row in result.rows):
        return ExitCode.USER_ERROR
    return ExitCode.OK


def table(console: Console, result: SweepResult, summary: list[dict]) -> None:  # type: ignore[type-arg]
    from mlrobust.spec.ir import ExplicitCutting
    from mlrobust.sweep import group_names

    names = group_names(result.rows)
    axes = any("\n" in name for name in names.values())
    title = "per model, method and cutting" if axes else "per model"
    view = Table(title=f"{title} (medians over the instances done)")
    heads = ("model", "method", "cutting") if axes else ("model",)
    for column in (*heads, "done", "w·ε*", "×unif", "s", "p90", "maximal"):
        view.add_column(column, no_wrap=True)
    for line in summary:
        custom = tuple(line["cutting_weights"]) if line["cutting_weights"] is not None else None
        cutting = ExplicitCutting(custom).label if custom is not None else line["cutting"]
        group = (Path(line["model"]).stem, line["method"], cutting)[: len(heads)]
        view.add_row(
            *group,
            f"{line['done']}/{line['instances']}",
            _fmt(line["median_size"]),
            _fmt(line["median_size_over_uniform"], ".3g"),
            _fmt(line["median_seconds"], ".1f"),
            _fmt(line["p90_seconds"], ".1f"),
            str(line["proved_maximal_layers"]),
        )
    console.print(view)
    console.print(
        "×unif: w·ε* over the uniform baseline's; s, p90: seconds per instance (of the run that answered it); "
        "maximal: layers proved maximal (a counterexample one δ out)",
        style="dim",
        soft_wrap=True,
    )
    skipped = [row for row in result.rows if row.status == "skipped"]
    if skipped:
        listed = ", ".join(_where(row, names) for row in skipped)
        console.print(
            f"skipped {len(skipped)}: the model misses the target on the image itself ({listed})", soft_wrap=True
        )
    failed = [row for row in result.rows if row.status == "failed"]
    for row in failed:
        console.print(
            f"[red]failed[/] {_where(row, names)}: {escape(row.error or '')}",
            soft_wrap=True,
        )
    pending = result.count("pending") + result.count("incomplete")
    state = (
        f"[yellow]interrupted[/]: {pending} not finished; rerun the same command to resume"
        if result.interrupted
        else (f"{pending} not finished: rerun to resume" if pending else "complete")
    )
    console.print(f"{result.seconds:.1f} s; {state}", soft_wrap=True)
    plot = ", sizes.png" if (result.folder / "sizes.png").exists() else ""
    console.print(f"wrote {result.folder}/sweep.json, results.csv{plot}", soft_wrap=True)
