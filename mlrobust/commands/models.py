"""`mlrobust models train|show|check`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlrobust.errors import ExitCode, UserError
from mlrobust.models.card import CARD_SUFFIX, exact_accuracy, read_card

RECIPE_ORDER = ("none", "l0", "pgd")
# digits per canvas -> the committed canvases `models check` measures such a model on
CHECK_DATA = {2: "data/double_mnist", 3: "data/triple_mnist"}


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
        console.print(
            f"[bold]training[/] recipe {name!r} on {args.digits}-digit canvases "
            f"(seed {args.seed}, {args.threads} threads)"
        )

        def progress(epoch: int, loss: float, name: str = name) -> None:
            console.print(f"  {name} epoch {epoch + 1}: loss {loss:.4f}  ({time.perf_counter() - started:.0f} s)")

        card = train_and_publish(name, out, args.seed, args.threads, progress, digits=args.digits)
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
    k, accuracy = exact_accuracy(evaluation)
    return f"exact top-{k} {accuracy:.4f}, under PGD {robust}"


def show(args: argparse.Namespace) -> ExitCode:
    table = Table(title=f"models in {args.folder}")
    for column in ("model", "recipe", "ReLUs", "exact top-k", "PGD accuracy", "train s", "sha256"):
        table.add_column(column)
    for path in _model_files(Path(args.folder)):
        card = read_card(path)
        ev = card["evaluation"]
        k, accuracy = exact_accuracy(ev)
        table.add_row(
            path.name,
            card["recipe"]["name"],
            str(card["architecture"]["relu_count"]),
            f"{accuracy:.4f} (k={k})",
            ", ".join(f"ε={r['eps']}: {r['accuracy']:.3f}" for r in ev["pgd"]),
            f"{card['training']['seconds']:.0f}",
            card["onnx"]["sha256"][:12],
        )
    Console().print(table)
    return ExitCode.OK


def check(args: argparse.Namespace) -> ExitCode:
    """Recompute what a user can recompute without training: hashes and accuracy.

    Each model is measured on committed canvases with as many digits as it was trained on:
    `--data` when given (a model whose digit count differs from that folder's is skipped, and
    said so), else `CHECK_DATA` (data/double_mnist, data/triple_mnist).
    """
    import numpy as np

    from mlrobust.data.index import load_index, read_gray_png
    from mlrobust.models.evaluate import exact_top_k_correct
    from mlrobust.models.export import onnx_logits, sha256_file
    from mlrobust.models.pipeline import card_digits

    datasets: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def canvases(folder: str) -> tuple[np.ndarray, np.ndarray]:
        if folder not in datasets:
            index = load_index(Path(folder))
            images = np.stack([read_gray_png(entry.image) for entry in index.canvases])[:, None]
            datasets[folder] = images, np.array([entry.labels for entry in index.canvases])
        return datasets[folder]

    table = Table(title=f"models in {args.folder}")
    for column in ("model", "sha256 matches card", "canvases", "exact top-k on them", "card (2,000)"):
        table.add_column(column)
    failed = False
    for path in _model_files(Path(args.folder)):
        card = read_card(path)
        hash_ok = sha256_file(path) == card["onnx"]["sha256"]
        failed |= not hash_ok
        k, card_accuracy = exact_accuracy(card["evaluation"])
        digits = card_digits(card)
        folder = args.data if args.data is not None else CHECK_DATA[digits]
        images, labels = canvases(folder)
        if labels.shape[1] != digits:
            measured, where = f"skipped ({digits}-digit model)", folder
        else:
            accuracy = float(exact_top_k_correct(onnx_logits(path, images), labels).mean())
            measured, where = f"{accuracy:.3f} (k={k})", f"{len(labels)} of {folder}"
        table.add_row(
            path.name,
            "[green]yes[/]" if hash_ok else "[red]NO[/]",
            where,
            measured,
            f"{card_accuracy:.3f}",
        )
    Console().print(table)
    if failed:
        raise UserError(f"a model file does not match the sha256 in its card ({CARD_SUFFIX})")
    return ExitCode.OK
