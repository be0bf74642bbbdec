"""`mlrobust check SPEC --eps …`: one query through the spec's verifier chain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlrobust.errors import ExitCode

COLOURS = {"ROBUST": "green", "NOT_ROBUST": "red", "UNKNOWN": "yellow"}


def check(args: argparse.Namespace) -> ExitCode:
    """The library's `check` (mlrobust/query.py), with the counterexample saved and the answer printed."""
    from mlrobust.query import check_loaded
    from mlrobust.spec.check import load_checked

    checked = load_checked(args.spec)
    assert checked.spec is not None
    folder = Path(args.out) if args.out else checked.spec.output / "counterexamples"
    answer = check_loaded(checked, args.eps, instance=args.instance, device=args.device, save_counterexample_to=folder)
    payload = answer.to_json()
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _print_human(payload)
    return ExitCode.OK


def _print_human(payload: dict[str, Any]) -> None:
    console = Console()
    problem = payload["problem"]
    asked = problem["property"]
    top_k = asked is None or asked["kind"] == "top_k"
    words = f"target {problem['target']}, top-{problem['k']}" if top_k else asked["words"]
    console.print(
        f"[bold]{Path(problem['model']).name}[/] on {problem['canvas'] or Path(problem['image']).name}: "
        f"{escape(words)}, {problem['layers']} layers",
        highlight=False,
        soft_wrap=True,
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
