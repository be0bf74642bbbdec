"""`mlrobust models train|show|check`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlrobust.errors import ExitCode, UserError
from mlrobust.models.card import CARD_SUFFIX, read_card

RECIPE_ORDER = ("none", "l0", "pgd")


def _model_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise UserError(f"no .onnx models in {folder}")
    return files


def train(args: argparse.Namespace) -> ExitCode:
    from mlrobust.data.build import ensure_writable
    from mlrobust.models.pipeline import train_and_publish

    console = Console()
    out = Path(args.out)
    ensure_writable(out)
    recipes = RECIPE_ORDER if args.recipe == "all" else (args.recipe,)
    started = time.perf_counter()
    for name in recipes:
        console.print(f"[bold]training[/] recipe {name!r} (seed {args.seed}, {args.threads} threads)")

        def progress(epoch: int, loss: float, name: str = name) -> None:
            console.print(f"  {name} epoch {epoch + 1}: loss {loss:.4f}  ({time.perf_counter() - started:.0f} s)")

        card = train_and_publish(name, out, args.seed, args.threads, progress)
        console.print(
            f"[green]wrote[/] {out / card['onnx']['file']}: {_summary(card['evaluation'])}, "
            f"trained in {card['training']['seconds']:.0f} s"
        )
    console.print(f"all done in {time.perf_counter() - started:.0f} s")
    return ExitCode.OK


def evaluate(args: argparse.Namespace) -> ExitCode:
    from mlrobust.models.pipeline import reevaluate

    console = Console()
    for path in _model_files(Path(args.folder)):
        evaluation = reevaluate(path)["evaluation"]
        console.print(f"[green]re-evaluated[/] {path.name}: {_summary(evaluation)}")
    return ExitCode.OK


def _summary(evaluation: dict) -> str:
    robust = ", ".join(f"ε={r['eps']}: {r['accuracy']:.3f}" for r in evaluation["pgd"])
    return f"exact top-2 {evaluation['exact_top2_accuracy']:.4f}, under PGD {robust}"


def show(args: argparse.Namespace) -> ExitCode:
    table = Table(title=f"models in {args.folder}")
    for column in ("model", "recipe", "ReLUs", "exact top-2", "PGD accuracy", "train s", "sha256"):
        table.add_column(column)
    for path in _model_files(Path(args.folder)):
        card = read_card(path)
        ev = card["evaluation"]
        table.add_row(
            path.name,
            card["recipe"]["name"],
            str(card["architecture"]["relu_count"]),
            f"{ev['exact_top2_accuracy']:.4f}",
            ", ".join(f"ε={r['eps']}: {r['accuracy']:.3f}" for r in ev["pgd"]),
            f"{card['training']['seconds']:.0f}",
            card["onnx"]["sha256"][:12],
        )
    Console().print(table)
    return ExitCode.OK


def check(args: argparse.Namespace) -> ExitCode:
    """Recompute what a user can recompute without training: hashes and accuracy."""
    import numpy as np

    from mlrobust.data.index import load_index, read_gray_png
    from mlrobust.models.evaluate import exact_top2_correct
    from mlrobust.models.export import onnx_logits, sha256_file

    index = load_index(Path(args.data))
    images = np.stack([read_gray_png(entry.image) for entry in index.canvases])[:, None]
    labels = np.array([entry.labels for entry in index.canvases])
    table = Table(title=f"models in {args.folder} on {len(labels)} canvases of {args.data}")
    for column in ("model", "sha256 matches card", f"exact top-2 ({len(labels)} canvases)", "card (2,000)"):
        table.add_column(column)
    failed = False
    for path in _model_files(Path(args.folder)):
        card = read_card(path)
        hash_ok = sha256_file(path) == card["onnx"]["sha256"]
        accuracy = float(exact_top2_correct(onnx_logits(path, images), labels).mean())
        failed |= not hash_ok
        table.add_row(
            path.name,
            "[green]yes[/]" if hash_ok else "[red]NO[/]",
            f"{accuracy:.3f}",
            f"{card['evaluation']['exact_top2_accuracy']:.3f}",
        )
    Console().print(table)
    if failed:
        raise UserError(f"a model file does not match the sha256 in its card ({CARD_SUFFIX})")
    return ExitCode.OK
