"""Reproduces the issue-18 table in docs/models.md: PGD-trained candidates, and the diagnosis.

Usage:
  python scripts/pgd_candidates.py train NAME [--epochs 90] [--ramp 25] [--kernel1 8 --padding1 2]
                                              [--kernel2 8 --padding2 3] [--eps 0.1] [--threads 1]
  python scripts/pgd_candidates.py finetune NAME [--from models/double_mnist_pgd.onnx] [--epochs 30]
                                                 [--lr 1e-3] [--clean-weight 0.6] [--threads 1]
  python scripts/pgd_candidates.py publish NAME      # NAME must have trained with the pgd recipe
  python scripts/pgd_candidates.py diagnose          # committed models on train- vs test-digit canvases

`train` runs `train_classifier` with the pgd recipe's defence (Madry PGD, 5 steps of 0.3 ε) and
the given length and kernels, saves the weights in scratch/pgd_candidates/NAME.pt, and prints the
exact top-2 accuracy and PGD accuracy at ε 0.1 (20 steps of ε/4, 2 restarts) on the cards' 2,000
test canvases, in torch. A candidate took about an hour at 1 thread here. `finetune` runs the
pgd recipe's second stage (`train.finetune`: Madry loss mixed with clean BCE, full eps, a fresh
one-cycle schedule) from a model's ONNX weights, by default the stage-one model that was
committed before it (about 30 min at 1 thread), and saves and measures it the same way. `publish` writes
models/double_mnist_pgd.onnx and its card from a saved candidate through the same export, checks
and evaluation as `mlrobust models train` (pipeline.publish). Needs the `data` extra.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from mlrobust.cli import print_error
from mlrobust.data.canvas import compose
from mlrobust.data.source import load_pools
from mlrobust.errors import UserError
from mlrobust.models.architecture import Architecture, architecture_for, build_classifier
from mlrobust.models.card import read_card
from mlrobust.models.evaluate import exact_top_k_correct
from mlrobust.models.export import classifier_from_onnx
from mlrobust.models.pgd import pgd_linf, top2_set_violation
from mlrobust.models.pipeline import EVAL_CANVASES, EVAL_SEED, publish
from mlrobust.models.recipes import RECIPES, FineTune, Recipe
from mlrobust.models.train import TrainedModel, finetune, train_classifier

SCRATCH = Path("scratch/pgd_candidates")


def robust_accuracy(model: torch.nn.Module, eps: float) -> tuple[float, float]:
    """(exact top-2, PGD accuracy at eps) on the cards' test canvases, in torch."""
    canvases = compose(load_pools()["test"], EVAL_CANVASES, np.random.default_rng(EVAL_SEED))
    x, y = torch.from_numpy(canvases.images[:, None]), torch.from_numpy(canvases.labels)
    with torch.no_grad():
        kept = exact_top_k_correct(model(x).numpy(), canvases.labels)
    clean = float(kept.mean())
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        for start in range(0, len(x), 500):
            part = slice(start, start + 500)
            attacked = pgd_linf(model, x[part], y[part], top2_set_violation, eps, 20, eps / 4, generator)
            with torch.no_grad():
                kept[part] &= exact_top_k_correct(model(attacked).numpy(), canvases.labels[part])
    return clean, float(kept.mean())


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    arch = Architecture(
        conv1_kernel=args.kernel1, conv1_padding=args.padding1, conv2_kernel=args.kernel2, conv2_padding=args.padding2
    )
    base = RECIPES["pgd"]
    assert base.pgd is not None
    recipe = replace(base, epochs=args.epochs, pgd=replace(base.pgd, eps=args.eps, ramp_epochs=args.ramp))
    print(arch.describe(), f"({arch.relu_count()} ReLUs)", recipe, flush=True)
    started = time.perf_counter()

    def progress(epoch: int, loss: float) -> None:
        print(f"epoch {epoch + 1}: loss {loss:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)

    trained = train_classifier(recipe, arch, load_pools()["train"], seed=0, progress=progress)
    save_candidate(args.name, trained, arch, recipe)


def finetune_candidate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    arch = architecture_for("pgd")
    stage = FineTune(epochs=args.epochs, max_lr=args.lr, clean_weight=args.clean_weight)
    recipe = replace(RECIPES["pgd"], finetune=stage)
    # the first stage's card (its training seconds go into the candidate's facts), read before
    # the 30 epochs: a file without one is refused now, not after the training
    stage_one = read_card(Path(args.start))["training"]["seconds"]
    model = classifier_from_onnx(Path(args.start), arch)
    print(f"stage two from {args.start}:", stage, flush=True)
    started = time.perf_counter()

    def progress(epoch: int, loss: float) -> None:
        print(f"epoch {epoch + 1}: loss {loss:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)

    trained = finetune(model, recipe, load_pools()["train"], seed=0, progress=progress)
    save_candidate(args.name, trained, arch, recipe, stage_one=Path(args.start).name, stage_one_seconds=stage_one)


def save_candidate(name: str, trained: TrainedModel, arch: Architecture, recipe: Recipe, **extra: object) -> None:
    """The weights and their facts in scratch/pgd_candidates, with the torch-measured accuracies."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    torch.save(trained.model.state_dict(), SCRATCH / f"{name}.pt")
    clean, robust = robust_accuracy(trained.model, 0.1)
    facts = {
        "name": name,
        **extra,
        "architecture": arch.as_dict(),
        "recipe": recipe.as_dict(),
        "seconds": trained.seconds,
        "final_loss": trained.final_loss,
        "exact_top2": clean,
        "pgd_0.1": robust,
    }
    (SCRATCH / f"{name}.json").write_text(json.dumps(facts, indent=1))
    print(json.dumps(facts), flush=True)


def publish_candidate(args: argparse.Namespace) -> None:
    facts = json.loads((SCRATCH / f"{args.name}.json").read_text())
    arch = architecture_for("pgd")
    if facts["architecture"] != arch.as_dict() or facts["recipe"] != RECIPES["pgd"].as_dict():
        raise SystemExit(f"{args.name} was not trained with the pgd recipe and its architecture; change them first")
    torch.set_num_threads(args.threads)
    model = build_classifier(arch)
    model.load_state_dict(torch.load(SCRATCH / f"{args.name}.pt"))
    seconds = facts["seconds"] + facts.get("stage_one_seconds", 0.0)  # a fine-tuned candidate: both stages
    trained = TrainedModel(model.eval(), seconds, facts["final_loss"])
    card = publish(trained, "pgd", Path("models"), seed=0, threads=args.threads, reason=args.reason)
    print(json.dumps(card["evaluation"]))


def diagnose(args: argparse.Namespace) -> None:
    """Underfitting or overfitting: each committed model on canvases of train digits and of test digits."""
    from mlrobust.models.evaluate import evaluate_onnx

    pools = load_pools()
    for name in ("none", "l0", "pgd"):
        for split in ("train", "test"):
            canvases = compose(pools[split], EVAL_CANVASES, np.random.default_rng(EVAL_SEED), max_uses=10)
            exact, per_label = evaluate_onnx(Path(f"models/double_mnist_{name}.onnx"), canvases)
            print(f"{name:5} {split:5} exact top-2 {exact:.4f}  per label {per_label:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train")
    trainer.add_argument("name")
    trainer.add_argument("--epochs", type=int, default=90)
    trainer.add_argument("--ramp", type=int, default=25)
    trainer.add_argument("--eps", type=float, default=0.1)
    trainer.add_argument("--kernel1", type=int, default=8)
    trainer.add_argument("--padding1", type=int, default=2)
    trainer.add_argument("--kernel2", type=int, default=8)
    trainer.add_argument("--padding2", type=int, default=3)
    trainer.add_argument("--threads", type=int, default=1)
    tuner = commands.add_parser("finetune")
    tuner.add_argument("name")
    tuner.add_argument("--from", dest="start", default="models/double_mnist_pgd.onnx")
    tuner.add_argument("--epochs", type=int, default=30)
    tuner.add_argument("--lr", type=float, default=1e-3)
    tuner.add_argument("--clean-weight", type=float, default=0.6)
    tuner.add_argument("--threads", type=int, default=1)
    publisher = commands.add_parser("publish")
    publisher.add_argument("name")
    publisher.add_argument("--threads", type=int, default=2)
    publisher.add_argument("--reason", default="retrained: a better PGD candidate (scripts/pgd_candidates.py)")
    commands.add_parser("diagnose")
    args = parser.parse_args()
    commands_by_name = {
        "train": train,
        "finetune": finetune_candidate,
        "publish": publish_candidate,
        "diagnose": diagnose,
    }
    try:
        commands_by_name[args.command](args)
    except UserError as error:
        print_error(Console(stderr=True, highlight=False), error)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
