"""Accuracy of an exported model, measured where users run it: onnxruntime.

Clean accuracy is the exact top-k set accuracy, k the digits per canvas (2 for Double-MNIST,
3 for Triple-MNIST). Robust accuracy at eps is the share of canvases whose top-k set is exact
both on the clean canvas and on the L-inf PGD point (found with torch gradients on the same
weights, then re-run through onnxruntime).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlrobust.data.canvas import CanvasBatch
from mlrobust.models.export import onnx_logits, top_k_sets
from mlrobust.models.pgd import pgd_linf, top2_set_violation

PGD_EVAL_EPS = (0.02, 0.05, 0.1)
PGD_EVAL_STEPS = 20
PGD_EVAL_RESTARTS = 2


@dataclass(frozen=True)
class RobustAccuracy:
    eps: float
    steps: int
    step_size: float
    restarts: int
    accuracy: float


@dataclass(frozen=True)
class Evaluation:
    canvases: int
    exact_accuracy: float  # exact top-k set accuracy
    per_label_accuracy: float  # share of true labels that are in the predicted top k
    pgd: tuple[RobustAccuracy, ...]
    k: int = 2  # digits per canvas

    def as_dict(self) -> dict[str, Any]:
        """The card's `evaluation`. The accuracy is keyed `exact_top<k>_accuracy`; k = 2 gives
        the Double-MNIST cards' keys as they always were, any other k is also stated as `k`."""
        card: dict[str, Any] = {"canvases": self.canvases}
        if self.k != 2:
            card["k"] = self.k
        card[f"exact_top{self.k}_accuracy"] = self.exact_accuracy
        card["per_label_accuracy"] = self.per_label_accuracy
        card["pgd"] = [asdict(robust) for robust in self.pgd]
        return card


def exact_top_k_correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per canvas: are the k = labels.shape[1] highest logits exactly the labels?"""
    return np.all(top_k_sets(logits, labels.shape[1]) == np.sort(labels, axis=1), axis=1)


def exact_top2_correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`exact_top_k_correct`; k follows the labels (two on Double-MNIST canvases)."""
    return exact_top_k_correct(logits, labels)


def evaluate_onnx(path: Path, canvases: CanvasBatch) -> tuple[float, float]:
    """(exact top-k set accuracy, per-label accuracy) of the ONNX file on these canvases."""
    logits = onnx_logits(path, canvases.images[:, None])
    predicted = top_k_sets(logits, canvases.labels.shape[1])
    per_label = np.mean([np.isin(canvases.labels[i], predicted[i]).mean() for i in range(len(canvases))])
    return float(exact_top_k_correct(logits, canvases.labels).mean()), float(per_label)


def robust_accuracy(
    model: nn.Module, path: Path, canvases: CanvasBatch, eps: float, seed: int, batch_size: int = 500
) -> RobustAccuracy:
    """Share of canvases that stay exactly right under every PGD restart (checked in onnxruntime)."""
    step_size = eps / 4
    generator = torch.Generator().manual_seed(seed)
    images = canvases.images[:, None]
    survived = exact_top_k_correct(onnx_logits(path, images), canvases.labels)
    labels = torch.from_numpy(canvases.labels)
    for _ in range(PGD_EVAL_RESTARTS):
        for start in range(0, len(canvases), batch_size):
            part = slice(start, start + batch_size)
            attacked = pgd_linf(
                model,
                torch.from_numpy(images[part]),
                labels[part],
                top2_set_violation,
                eps,
                PGD_EVAL_STEPS,
                step_size,
                generator,
            ).numpy()
            survived[part] &= exact_top_k_correct(onnx_logits(path, attacked), canvases.labels[part])
    return RobustAccuracy(eps, PGD_EVAL_STEPS, step_size, PGD_EVAL_RESTARTS, float(survived.mean()))


def evaluate(model: nn.Module, path: Path, canvases: CanvasBatch, seed: int) -> Evaluation:
    exact, per_label = evaluate_onnx(path, canvases)
    robust = tuple(robust_accuracy(model, path, canvases, eps, seed) for eps in PGD_EVAL_EPS)
    return Evaluation(len(canvases), exact, per_label, robust, int(canvases.labels.shape[1]))
