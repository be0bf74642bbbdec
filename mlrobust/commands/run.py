"""`mlrobust run SPEC`: the search, with a live progress line and a summary."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mlrobust.errors import ExitCode


def run(args: argparse.Namespace) -> ExitCode:
    from mlrobust.search.run import run as run_search

    console = Console(stderr=args.json)
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    best = [0.0]

    def progress(stage, eps, query) -> None:  # type: ignore[no-untyped-def]
        if query is None:
            return
        counts[query.verifier] += 1
        if query.status.value == "ROBUST":
            best[0] = max(best[0], float(np.sum(eps)))
        console.print(
            f"[dim]{time.perf_counter() - started:7.1f}s[/] {stage:<11} query {sum(counts.values()):>4}: "
            f"{query.status.value:<10} by {query.verifier:<6} "
            + " ".join(f"{name}={n}" for name, n in sorted(counts.items())),
            highlight=False,
        )

    console.print(f"[bold]mlrobust run[/] {args.spec}")
    result = run_search(args.spec, Path(args.out) if args.out else None, progress, args.instance or 0)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return ExitCode.OK
    problem = result.problem
    console.print(
        f"\n[bold]{Path(problem['model']).name}[/] on {problem['canvas'] or Path(problem['image']).name}: target "
        f"{problem['target']}, top-{problem['k']}, {problem['layers']} layers"
    )
    table = Table(title="ε* per layer")
    for column in ("layer", "weight", "ε*", "maximality"):
        table.add_column(column)
    for layer, (eps, weight, info) in enumerate(zip(result.eps, problem["weights"], result.maximality, strict=False)):
        table.add_row(str(layer), f"{weight:.3g}", f"{eps:.4f}", info["status"])
    console.print(table)
    status = "complete" if result.complete else f"incomplete ({result.stop_reason})"
    console.print(
        f"w·ε* = [bold]{result.size:.4g}[/] "
        f"(uniform baseline {result.uniform_size:.4g}, ε = {result.uniform_eps:.4g}); "
        f"re-proved by {result.verifier}; {len(result.queries)} queries ({result.new_queries} new); "
        f"{result.seconds:.1f} s; {status}"
    )
    console.print(f"wrote {result.folder}/result.json, heatmap.png, trace.png")
    return ExitCode.OK
