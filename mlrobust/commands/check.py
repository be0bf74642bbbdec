"""`mlrobust check SPEC --eps …`: one query through the spec's verifier chain."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from mlrobust import __version__
from mlrobust.errors import ExitCode, UserError
from mlrobust.storage import save_counterexample

SCHEMA = "mlrobust.check/1"
COLOURS = {"ROBUST": "green", "NOT_ROBUST": "red", "UNKNOWN": "yellow"}


def parse_eps(text: str, layers: int) -> np.ndarray:
    """`0.05` (every layer) or `0.1,0.05,…` (exactly one value per layer)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--eps takes numbers, got {text!r}", hint="e.g. --eps 0.05 or --eps 0.1,0.05,0.02") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise UserError(f"--eps values must be finite and non-negative, got {text!r}")
    if len(values) == 1:
        return np.full(layers, values[0])
    if len(values) != layers:
        raise UserError(
            f"--eps has {len(values)} values but the mask gives {layers} layers",
            hint=f"give one value (every layer) or exactly {layers}",
        )
    return np.array(values)


def _step_json(verdict) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "verifier": verdict.verifier,
        "verdict": verdict.status.value,
        "margin_bound": verdict.margin_bound,
        "best_margin": verdict.best_margin,
        "seconds": round(verdict.seconds, 4),
        "stats": json.loads(json.dumps(verdict.stats, default=str)),
    }


def check(args: argparse.Namespace) -> ExitCode:
    from mlrobust.compile import Networks, compile_problem
    from mlrobust.report.provenance import Asked
    from mlrobust.spec.check import chain_on_device, load_checked
    from mlrobust.verify.chain import run_chain

    checked = load_checked(args.spec)
    spec = checked.spec
    assert spec is not None
    instances = checked.instances
    if args.instance is None and len(instances) != 1:
        raise UserError(
            f"the spec has {len(instances)} instances (a sweep); pick one with --instance 0…{len(instances) - 1}"
        )
    index = args.instance or 0
    if not 0 <= index < len(instances):
        raise UserError(f"--instance {index} is out of range: the spec has {len(instances)} instances")
    instance = instances[index]
    networks = Networks()
    problem = compile_problem(spec, instance, networks)
    eps = parse_eps(args.eps, problem.num_layers)
    started = time.perf_counter()
    outcome = run_chain(problem, eps, chain_on_device(spec.chain, args.device))
    seconds = time.perf_counter() - started
    verdict = outcome.verdict
    counterexample = None
    if verdict.counterexample is not None:
        folder = Path(args.out) if args.out else spec.output / "counterexamples"
        counterexample = save_counterexample(folder, verdict.counterexample).resolve()
    bounds = [v.margin_bound for v in outcome.steps if v.margin_bound is not None]
    payload = {
        "schema": SCHEMA,
        "mlrobust": __version__,
        "verdict": verdict.status.value,
        "verifier": verdict.verifier if verdict.definite else None,
        "margin_bound": min(bounds) if bounds else None,
        "best_margin": verdict.best_margin,
        "eps": [float(v) for v in eps],
        "seconds": round(seconds, 4),
        "problem": {
            **Asked.of(spec, instance, problem.num_layers).to_json(),
            "onnxruntime_max_difference": networks.load(instance.model)[1],
        },
        "counterexample": str(counterexample) if counterexample else None,
        "steps": [_step_json(v) for v in outcome.steps],
    }
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _print_human(payload)
    return ExitCode.OK


def _print_human(payload: dict[str, Any]) -> None:
    console = Console()
    problem = payload["problem"]
    console.print(
        f"[bold]{Path(problem['model']).name}[/] on {problem['canvas'] or Path(problem['image']).name}: "
        f"target {problem['target']}, top-{problem['k']}, {problem['layers']} layers"
    )
    colour = COLOURS[payload["verdict"]]
    decided = f" by {payload['verifier']}" if payload["verifier"] else ""
    bound = payload["margin_bound"]
    console.print(
        f"[bold {colour}]{payload['verdict']}[/]{decided} in {payload['seconds']:.2f} s; margin bound "
        f"{'—' if bound is None else f'{bound:.4g}'}"
    )
    table = Table()
    for column in ("verifier", "verdict", "margin bound", "best margin found", "seconds"):
        table.add_column(column)
    for step in payload["steps"]:
        fmt = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
        table.add_row(
            step["verifier"],
            step["verdict"],
            fmt(step["margin_bound"]),
            fmt(step["best_margin"]),
            f"{step['seconds']:.3f}",
        )
    console.print(table)
    if payload["counterexample"]:
        console.print(f"counterexample (checked by onnxruntime): {payload['counterexample']}")
