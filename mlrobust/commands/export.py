"""`mlrobust export SPEC --eps … --out DIR`: one query as ONNX + VNN-LIB, for other verifiers."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mlrobust.errors import ExitCode, UserError


def export(args: argparse.Namespace) -> ExitCode:
    from mlrobust.compile import compile_problem
    from mlrobust.query import parse_eps
    from mlrobust.spec.check import load_checked
    from mlrobust.vnnlib.export import FORMS, Exporter, export_query

    checked = load_checked(args.spec)
    spec = checked.spec
    assert spec is not None
    instances = checked.instances
    index = args.instance or 0
    if not 0 <= index < len(instances):
        raise UserError(f"--instance {index} is out of range: the spec has {len(instances)} instances")
    instance = instances[index]
    problem = compile_problem(spec, instance)
    eps = parse_eps(args.eps, problem.num_layers, instance.object_distances())
    forms = FORMS if args.form == "both" else (args.form,)
    folder = Path(args.out)
    info = {
        "spec": str(spec.file),
        "instance": index,
        "target": instance.target,
        "k": spec.k,
        "property": problem.output.describe(),
    }
    pairs = export_query(Exporter(folder), problem, eps, info, forms)
    console = Console()
    for pair in pairs:
        console.print(f"{pair.form}: {folder / pair.onnx}  {folder / pair.vnnlib}", highlight=False, soft_wrap=True)
    console.print(f"index: {folder / 'index.json'}, {folder / 'instances.csv'}", highlight=False)
    return ExitCode.OK
