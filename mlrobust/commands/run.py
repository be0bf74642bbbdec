"""`mlrobust run SPEC`: the search, with a live progress line and a summary."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mlrobust.errors import ExitCode

if TYPE_CHECKING:  # the run pulls in torch: imported only when `run` runs
    from mlrobust.report.result import Result
    from mlrobust.run import ProgressEvent

EVIDENCE = {
    "proved_maximal": "proved maximal: a counterexample one δ out",
    "not_expandable": "not expandable by this chain (UNKNOWN one δ out)",
    "at_range_limit": "at the range limit: the box covers [lo, hi]",
    "zero_weight": "weight 0: not searched",
    "not_checked": "not checked (stopped early or a baseline)",
}


class ProgressLine:
    """One line that redraws on every answer; a plain line is kept when the stage changes, so
    logs (no terminal) still show how the search went."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = Live(Text(""), console=console, transient=True, refresh_per_second=8)
        self.stage = ""
        self.last: ProgressEvent | None = None

    def __enter__(self) -> ProgressLine:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)
        if self.last is not None:
            self._stage_done(self.last)

    def _stage_done(self, event: ProgressEvent) -> None:
        self.console.print(
            f"[dim]{event.elapsed:7.1f}s[/] {self.stage} done: best w·ε {event.best_size:.4g}",
            highlight=False,
            soft_wrap=True,
        )

    def __call__(self, event: ProgressEvent) -> None:
        query = event.query
        stage = query.purpose.split(" ")[0] or "query"
        if stage != self.stage:
            if self.last is not None:
                self._stage_done(self.last)
            self.stage = stage
        self.last = event
        counts = " ".join(f"{name} {n}" for name, n in sorted(event.queries.items()))
        line = (
            f"{event.elapsed:6.1f}s  query {sum(event.queries.values()):>4}  {stage:<10}  "
            f"best w·ε {event.best_size:.4g}  last {query.status.value} by {query.verifier}  [{counts}]"
        )
        self.live.update(Text(line, style="cyan"))


def run(args: argparse.Namespace) -> ExitCode:
    from mlrobust.run import run as run_search

    console = Console(stderr=args.json)
    console.print(f"[bold]mlrobust run[/] {args.spec}")

    def header(info: dict[str, Any]) -> None:
        where = f"{info['canvas']} ({Path(info['image']).name})" if info["canvas"] else info["image"]
        console.print(
            f"model [bold]{Path(info['model']).name}[/], image {where}, {escape(info['property'])}, "
            f"{info['layers']} layers{_per_object(info.get('objects'))}, chain {info['chain']}, method {info['method']}"
            + (f"; {info['journal_answers']} answers in the journal" if info["journal_answers"] else ""),
            highlight=False,
            soft_wrap=True,
        )
        for warning in info.get("warnings", ()):
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)

    with ProgressLine(console) as progress:
        result = run_search(
            args.spec,
            Path(args.out) if args.out else None,
            progress,
            args.instance or 0,
            args.method,
            header,
            Path(args.export_queries) if args.export_queries else None,
            args.device,
            args.force,
            Path(args.start_from) if args.start_from else None,
        )
    interrupted = result.interrupted
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        summary(console, result)
    if args.export_queries:
        console.print(f"exported every asked query to {args.export_queries} (index.json, instances.csv)")
    return ExitCode.INTERRUPTED if interrupted else ExitCode.OK


def _per_object(objects: int | None) -> str:
    """What the console adds to `N layers` for per-object layers."""
    return "" if objects is None else f" (per object: {objects} object{'s' if objects != 1 else ''})"


def summary(console: Console, result: Result) -> None:
    setup = result.setup
    asked = setup.asked
    console.print(
        f"\n[bold]{Path(asked.model).name}[/] on {asked.canvas or Path(asked.image).name}: "
        f"{escape(asked.words)}, {asked.layers} layers{_per_object(len(asked.objects) if asked.objects else None)}, "
        f"chain {' -> '.join(step.name for step in setup.chain)}",
        soft_wrap=True,
    )
    if asked.objects is not None:
        named = ", ".join(f"{o} = {escape(name)}" for o, (name, _) in enumerate(asked.objects))
        console.print(f"objects: {named}; a layer is (object, distance to it)", highlight=False, soft_wrap=True)
    table = Table(title=f"ε* per layer (resolution δ = {setup.resolution:g})")
    for column in ("layer" if asked.objects is None else "layer (object, distance)", "weight", "ε*",
                   "counterexample at", "maximality"):  # fmt: skip
        table.add_column(column)
    for layer, (eps, weight, info) in enumerate(zip(result.eps, setup.weights, result.maximality, strict=True)):
        evidence = EVIDENCE.get(info.status, info.status)
        if info.status in ("not_expandable", "not_checked") and info.reason:
            evidence = f"open: {info.reason}"
        if info.grown > 0:
            evidence += f" (grew {info.grown:.4f} past the fast chain)"
        refuted = "-" if info.refuted is None else f"{info.refuted:.4f}"
        table.add_row(asked.layer_label(layer), f"{weight:.3g}", f"{eps:.4f}", refuted, evidence)
    console.print(table)
    decided = sum(w for w, m in zip(setup.weights, result.maximality, strict=True) if m.status == "proved_maximal")
    console.print(
        f"layers proved maximal: {sum(m.status == 'proved_maximal' for m in result.maximality)} of "
        f"{len(result.maximality)} ({decided / max(float(sum(setup.weights)), 1e-300):.0%} of the weight); "
        f"grown past the fast chain: {sum(m.grown > 0 for m in result.maximality)}",
        highlight=False,
    )

    per_verifier: dict[str, list[float]] = defaultdict(list)
    for query in result.queries:
        per_verifier["cache" if query.cached else query.verifier].append(query.seconds)
    work = Table(title="queries per verifier")
    for column in ("verifier", "queries", "seconds"):
        work.add_column(column)
    for name, seconds in sorted(per_verifier.items()):
        work.add_row(name, str(len(seconds)), "-" if name == "cache" else f"{sum(seconds):.1f}")
    guide = result.guide
    work.add_row(
        f"[dim]guide: {guide.step.name}[/]",
        f"[dim]{guide.calls} bounds ({guide.computed} computed)[/]",
        f"[dim]{guide.seconds:.1f}[/]",
    )
    console.print(work)
    bab = result.work.get("bab")
    if bab is not None and bab.totals:
        t = bab.totals
        console.print(
            f"[dim]bab: {int(t.get('domains_bounded', 0))} domains bounded, {int(t.get('closed', 0))} closed, "
            f"{int(t.get('window_splits', 0))} split on a max-pool window; "
            f"deepest split {int(t.get('max_depth', 0))}, largest queue {int(t.get('max_queue', 0))}; "
            f"{t.get('bound_seconds', 0.0):.1f} s bounding, {t.get('branch_seconds', 0.0):.1f} s branching; "
            f"{int(t.get('warm_started', 0))} of {bab.runs} queries started from the last tuned root[/]",
            highlight=False,
        )

    if len(result.starts) > 1:
        best = max(result.starts, key=lambda start: start.size)
        sizes = ", ".join(f"{start.name} {start.size:.4g}" for start in result.starts)
        console.print(f"starts (w·ε): {sizes}; best: {best.name}", highlight=False, soft_wrap=True)
    status = "complete" if result.complete else f"[yellow]incomplete[/] ({result.stop_reason})"
    reproof = result.certificate.reproof
    if reproof.verdict == "ROBUST":
        how = f": its {reproof.proof}" if reproof.proof else ""
        proof = f"proved by {result.verifier} (re-proved by {reproof.verifier}{how})"
    else:
        proof = f"proved by {result.verifier} (re-proof by {reproof.verifier}: {reproof.verdict})"
    baseline = (
        f"uniform baseline {result.uniform_size:.4g} at ε = {result.uniform_eps:.4g}; " if result.uniform_eps else ""
    )
    budget = f" of a budget of {result.query_budget}" if result.query_budget is not None else ""
    if result.repeated_answers:
        budget += f"; {result.repeated_answers} repeated from the cache"
    console.print(
        f"w·ε* = [bold]{result.size:.4g}[/] ({result.method}); {proof}; {baseline}"
        f"{len(result.queries)} answers ({result.new_queries} new queries{budget}); {result.seconds:.1f} s; {status}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"wrote {result.folder}/result.json, heatmap.png, trace.png", highlight=False, soft_wrap=True)
