"""Training a classifier with one recipe on fresh Double-MNIST (or Triple-MNIST) canvases."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from mlrobust.data.canvas import compose
from mlrobust.data.source import DigitPool
from mlrobust.models.architecture import Architecture, build_classifier
from mlrobust.models.pgd import bce_loss, pgd_linf, sigmoid_kl
from mlrobust.models.recipes import FineTune, L0Defence, PgdDefence, Recipe

# Fresh canvases reuse each training digit up to this many times per epoch (20,000 canvases
# from 4,000 digits need 10; three digits a canvas need 15, see `_train_max_uses`).
_TRAIN_MAX_USES = 10


def _train_max_uses(pool_size: int, canvases: int, digits: int) -> int:
    return max(_TRAIN_MAX_USES, -(-digits * canvases // pool_size))


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Sequential
    seconds: float
    final_loss: float


def paste_black_rectangles(images: np.ndarray, defence: L0Defence, rng: np.random.Generator) -> np.ndarray:
    """A copy of (N, S, S) images (S: 64, or 84), each with one random black rectangle."""
    count, size = images.shape[0], images.shape[-1]
    heights = rng.integers(defence.min_side, defence.max_side + 1, size=count)
    widths = rng.integers(defence.min_side, defence.max_side + 1, size=count)
    tops = rng.integers(0, size - heights + 1)
    lefts = rng.integers(0, size - widths + 1)
    rows = np.arange(size)[None, :, None]
    cols = np.arange(size)[None, None, :]
    inside = (
        (rows >= tops[:, None, None])
        & (rows < (tops + heights)[:, None, None])
        & (cols >= lefts[:, None, None])
        & (cols < (lefts + widths)[:, None, None])
    )
    return np.where(inside, np.float32(0), images)


def pgd_training_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    defence: PgdDefence,
    eps: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One batch's loss under adversarial training at radius eps (the ramped value).

    Madry (`trades_beta` None): BCE on the PGD points, the attack maximising BCE; with a
    `clean_weight` w the loss is (1 - w) BCE(PGD points) + w BCE(clean batch). TRADES: BCE on
    the clean canvases plus beta times the sigmoid KL between the clean and
    the perturbed outputs, the attack maximising that KL. The step size scales with eps so
    the attack keeps its shape while eps ramps up.
    """
    step = defence.step_size * eps / defence.eps
    model.eval()
    if defence.trades_beta is None:
        adversarial = pgd_linf(model, x, y, bce_loss, eps, defence.steps, step, generator)
        model.train()
        loss = bce_loss(model(adversarial), y).mean()
        if defence.clean_weight == 0:
            return loss
        return (1 - defence.clean_weight) * loss + defence.clean_weight * bce_loss(model(x), y).mean()
    with torch.no_grad():
        reference = model(x)

    def divergence(logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
        return sigmoid_kl(clean_logits, logits)

    adversarial = pgd_linf(model, x, reference, divergence, eps, defence.steps, step, generator)
    model.train()
    clean = model(x)
    return bce_loss(clean, y).mean() + defence.trades_beta * sigmoid_kl(clean, model(adversarial)).mean()


def train_classifier(
    recipe: Recipe,
    arch: Architecture,
    pool: DigitPool,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
    digits: int = 2,
) -> TrainedModel:
    """Train from scratch on canvases of `digits` digits; `progress(epoch, loss)` is called
    after every epoch (numbered on through a second stage). `arch` must take that canvas
    size (`ARCHITECTURES[digits]`)."""
    torch.manual_seed(seed)
    model = build_classifier(arch)
    started = time.perf_counter()
    loss = _train_epochs(model, recipe, _Stage(recipe.epochs, recipe.max_lr, recipe.pgd, seed), pool, digits, progress)
    if recipe.finetune is not None:
        stage_two = finetune(model, recipe, pool, seed, digits, progress, first_epoch=recipe.epochs)
        loss = stage_two.final_loss
    return TrainedModel(model.eval(), time.perf_counter() - started, loss)


def finetune(
    model: nn.Sequential,
    recipe: Recipe,
    pool: DigitPool,
    seed: int,
    digits: int = 2,
    progress: Callable[[int, float], None] | None = None,
    first_epoch: int = 0,
) -> TrainedModel:
    """The recipe's second stage (`recipe.finetune`), in place on `model`: stage one's weights.

    Its canvases, batch order and attack starts are drawn from seed + 1 alone (no global torch
    state), so running it later from saved stage-one weights draws exactly what running it
    right after stage one would.
    """
    stage: FineTune | None = recipe.finetune
    if stage is None or recipe.pgd is None:
        raise ValueError(f"recipe {recipe.name} has no PGD fine-tuning stage")
    defence = replace(recipe.pgd, clean_weight=stage.clean_weight, ramp_epochs=0)
    started = time.perf_counter()
    second = _Stage(stage.epochs, stage.max_lr, defence, seed + 1, first_epoch)
    loss = _train_epochs(model, recipe, second, pool, digits, progress)
    return TrainedModel(model.eval(), time.perf_counter() - started, loss)


@dataclass(frozen=True)
class _Stage:
    """One training stage: its own schedule, defence and draws (a second stage draws from
    seed + 1 alone, so it can run later from saved weights and draw the same)."""

    epochs: int
    max_lr: float
    defence: PgdDefence | None
    seed: int
    first_epoch: int = 0  # the stage's epochs are numbered on from here in `progress`


def _train_epochs(
    model: nn.Sequential,
    recipe: Recipe,
    stage: _Stage,
    pool: DigitPool,
    digits: int,
    progress: Callable[[int, float], None] | None,
) -> float:
    """The stage's epochs of fresh canvases under one one-cycle schedule; the last batch's loss.

    eps ramps linearly over `defence.ramp_epochs` (0: the full eps from the start).
    """
    epochs, max_lr, defence, seed = stage.epochs, stage.max_lr, stage.defence, stage.seed
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    batches_per_epoch = recipe.canvases_per_epoch // recipe.batch_size
    optimiser = torch.optim.Adam(model.parameters(), lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=max_lr, total_steps=epochs * batches_per_epoch)
    max_uses = _train_max_uses(len(pool), recipe.canvases_per_epoch, digits)
    loss_value = float("nan")
    for epoch in range(epochs):
        canvases = compose(pool, recipe.canvases_per_epoch, rng, max_uses=max_uses, digits=digits)
        images = canvases.images
        if recipe.l0 is not None:
            images = paste_black_rectangles(images, recipe.l0, rng)
        inputs = torch.from_numpy(images[:, None])
        targets = torch.from_numpy(canvases.multi_hot())
        order = torch.randperm(len(inputs), generator=generator)
        eps = 0.0
        if defence is not None:
            eps = defence.eps * min(1.0, (epoch + 1) / max(defence.ramp_epochs, 1))
        model.train()
        for start in range(0, batches_per_epoch * recipe.batch_size, recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            x, y = inputs[batch], targets[batch]
            if defence is None:
                loss = bce_loss(model(x), y).mean()
            else:
                loss = pgd_training_loss(model, x, y, defence, eps, generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_value = float(loss.item())
        if progress is not None:
            progress(stage.first_epoch + epoch, loss_value)
    return loss_value
