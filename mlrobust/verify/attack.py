"""`attack`: PGD on the property's margin inside the layered box. Finds counterexamples; never proves.

All restarts run as one batch in float32: restart 0 starts at the image, the others at
uniform points of the box. Each step moves every pixel by `step_size` times its box width in
the direction of the gradient sign of the property's attack objective (the margin; for a
property whose margin is a maximum of rows, threshold and keep_predicted, a smooth maximum, so
a row that cannot move does not stall the others), then projects back onto the box. The best point
of every restart is kept; those with m >= 0 go to onnxruntime, and only a confirmed one makes
the verdict NOT_ROBUST.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mlrobust.problem.problem import Problem
from mlrobust.verify.recheck import recheck, snap_into_box
from mlrobust.verify.verdict import QueryBudget, Status, Verdict


def pgd_points(
    problem: Problem, eps: np.ndarray, steps: int, restarts: int, step_size: float, seed: int, deadline: float
) -> tuple[np.ndarray, np.ndarray]:
    """(restarts, C, H, W) best points found and their float32 margins."""
    points, margins = pgd_points_many(problem, [eps], steps, restarts, step_size, seed, deadline)
    return points[0], margins[0]


def pgd_points_many(
    problem: Problem,
    boxes: list[np.ndarray],
    steps: int,
    restarts: int,
    step_size: float,
    seed: int,
    deadline: float,
) -> tuple[np.ndarray, np.ndarray]:
    """PGD in several boxes at once: (boxes, restarts, C, H, W) best points, (boxes, restarts) margins.

    Each box gets the restarts it would get alone (the same seeded noise, scaled to its box):
    the points are independent, so one batch of boxes × restarts is the same search as one
    attack per box, at the cost of a few larger forward passes instead of many small ones.
    """
    shape = problem.image.shape
    bounds = [problem.box(eps) for eps in boxes]
    lower = torch.as_tensor(np.stack([b[0] for b in bounds]), dtype=torch.float32).repeat_interleave(restarts, 0)
    upper = torch.as_tensor(np.stack([b[1] for b in bounds]), dtype=torch.float32).repeat_interleave(restarts, 0)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((restarts, *shape), generator=generator).repeat(len(boxes), *([1] * len(shape)))
    x = lower + noise * (upper - lower)
    image = torch.as_tensor(problem.image, dtype=torch.float32)
    first = torch.arange(0, len(boxes) * restarts, restarts)  # restart 0 of every box starts at the image
    x[first] = torch.minimum(torch.maximum(image.expand(len(boxes), *shape), lower[first]), upper[first])
    step = step_size * (upper - lower)
    best = x.clone()
    best_margin = torch.full((x.shape[0],), -torch.inf)
    output = problem.output
    for _ in range(steps + 1):
        x.requires_grad_(True)
        rows = output.row_values_tensor(problem.network.forward(x))
        margin = output.margin_tensor(rows)
        improved = margin.detach() > best_margin
        best[improved] = x.detach()[improved]
        best_margin = torch.where(improved, margin.detach(), best_margin)
        if time.perf_counter() > deadline:
            break
        # the property's objective (the margin, or its smooth maximum over rows); points are
        # kept by the margin itself
        (grad,) = torch.autograd.grad(output.attack_objective(rows).sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * grad.sign(), lower), upper)
    points = best.numpy().astype(np.float64).reshape(len(boxes), restarts, *shape)
    return points, best_margin.numpy().astype(np.float64).reshape(len(boxes), restarts)


def check(
    problem: Problem, eps: np.ndarray, budget: QueryBudget, *, steps: int, restarts: int, step_size: float, seed: int
) -> Verdict:
    """The options (and their defaults) are declared in contract/verifiers.py; call it through
    the registry (`verify.registry.VERIFIERS["attack"]`), which fills them in."""
    return check_many(problem, [eps], budget, steps=steps, restarts=restarts, step_size=step_size, seed=seed)[0]


def check_many(
    problem: Problem,
    boxes: list[np.ndarray],
    budget: QueryBudget,
    *,
    steps: int,
    restarts: int,
    step_size: float,
    seed: int,
) -> list[Verdict]:
    """One verdict per box, from one batched PGD; each box's share of the time is its seconds."""
    started = time.perf_counter()
    deadline = started + (budget.seconds if budget.seconds is not None else float("inf"))
    points, margins = pgd_points_many(problem, boxes, steps, restarts, step_size, seed, deadline)
    share = (time.perf_counter() - started) / max(len(boxes), 1)
    return [_verdict(problem, eps, points[i], margins[i], share, restarts, steps) for i, eps in enumerate(boxes)]


def _verdict(
    problem: Problem,
    eps: np.ndarray,
    points: np.ndarray,
    margins: np.ndarray,
    seconds: float,
    restarts: int,
    steps: int,
) -> Verdict:
    """NOT_ROBUST only for a point onnxruntime confirms; else UNKNOWN with the weakest points."""
    started = time.perf_counter()
    order = np.argsort(-margins)
    weakest = tuple(snap_into_box(problem, eps, points[i]) for i in order[:3])
    rejected = []
    for i in order:
        if margins[i] < 0:
            break
        candidate = snap_into_box(problem, eps, points[i])
        checked = recheck(problem, eps, candidate)
        if checked.confirmed:
            return Verdict(
                Status.NOT_ROBUST,
                "attack",
                None,
                checked.margin,
                candidate,
                weakest,
                seconds + time.perf_counter() - started,
                {"restarts": restarts, "steps": steps},
            )
        rejected.append(checked.reason)
    stats = {"restarts": restarts, "steps": steps, "rejected_candidates": rejected}
    return Verdict(
        Status.UNKNOWN,
        "attack",
        None,
        float(margins[order[0]]),
        None,
        weakest,
        seconds + time.perf_counter() - started,
        stats,
    )
