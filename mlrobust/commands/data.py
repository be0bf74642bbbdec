"""`mlrobust data build|show`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rich.console import Console

from mlrobust.errors import ExitCode


def build(args: argparse.Namespace) -> ExitCode:
    from mlrobust.data.build import build_dataset

    out = Path(args.out or ("data/double_mnist" if args.digits == 2 else "data/triple_mnist"))
    index = build_dataset(
        out, seed=args.seed, train=args.train, test=args.test, max_uses=args.max_uses, digits=args.digits
    )
    counts = index["counts"]
    Console().print(
        f"[green]wrote[/] {counts['train']} train and {counts['test']} test canvases to {out} (seed {args.seed})"
    )
    return ExitCode.OK


def show(args: argparse.Namespace) -> ExitCode:
    from mlrobust.data.index import load_index

    index = load_index(Path(args.folder))
    splits = Counter(entry.split for entry in index.canvases)
    digits = Counter(label for entry in index.canvases for label in entry.labels)
    console = Console()
    console.print(f"[bold]{args.folder}[/]: {len(index.canvases)} canvases (seed {index.seed}), {dict(splits)}")
    console.print(f"mask threshold: intensity > {index.mask_threshold}")
    console.print("digit counts: " + ", ".join(f"{d}: {digits[d]}" for d in range(10)))
    return ExitCode.OK
