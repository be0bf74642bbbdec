"""`mlrobust sweep SPEC`: every instance of a spec, a line as each finishes, a table per model."""

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


def sweep(args: argparse.Namespace) -> ExitCode:
    from mlrobust.sweep import summarise
    from mlrobust.sweep import sweep as run_sweep

    console = Console(stderr=args.json, highlight=False)
    console.print(f"[bold]mlrobust sweep[/] {args.spec}")

    def on_plan(rows: list[Row], workers: int) -> None:
        reused = sum(row.reused for row in rows)
        models = len({row.model for row in rows})
        if args.scheduler:
            where = f"the Dask cluster at {args.scheduler}"
        else:
            pool = "a local Dask cluster" if args.executor == "dask" else "a local process pool"
            where = f"{pool} of {workers} worker(s)"
        console.print(
            f"{len(rows)} instance(s) over {models} model(s); {reused} answered before (reused), "
            f"{len(rows) - reused} to run on {where}",
            soft_wrap=True,
        )

    def listener(row: Row, progress: SweepProgress) -> None:
        where = f"{Path(row.model).stem} {row.canvas or Path(row.image).name}"
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
    view = Table(title="per model (medians over the instances done)")
    for column in ("model", "done", "w·ε*", "×unif", "s", "p90", "maximal"):
        view.add_column(column, no_wrap=True)
    for line in summary:
        view.add_row(
            Path(line["model"]).stem,
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
        names = ", ".join(f"{Path(row.model).stem} {row.canvas or Path(row.image).name}" for row in skipped)
        console.print(
            f"skipped {len(skipped)}: the model misses the target on the image itself ({names})", soft_wrap=True
        )
    failed = [row for row in result.rows if row.status == "failed"]
    for row in failed:
        console.print(
            f"[red]failed[/] {Path(row.model).stem} {row.canvas or Path(row.image).name}: {escape(row.error or '')}",
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
