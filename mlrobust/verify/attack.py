"""`attack`: PGD on the top-k margin inside the layered box. Finds counterexamples; never proves.

All restarts run as one batch in float32: restart 0 starts at the image, the others at
uniform points of the box. Each step moves every pixel by `step_size` times its box width in
the direction of the margin's gradient sign, then projects back onto the box. The best point
of every restart is kept; those with m >= 0 go to onnxruntime, and only a confirmed one makes
the verdict NOT_ROBUST.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mlrobust.problem.problem import Problem
from mlrobust.verify.recheck import recheck, snap_into_box
from mlrobust.verify.verdict import Budget, Status, Verdict


def pgd_points(
    problem: Problem, eps: np.ndarray, steps: int, restarts: int, step_size: float, seed: int, deadline: float
) -> tuple[np.ndarray, np.ndarray]:
    """(restarts, C, H, W) best points found and their float32 margins."""
    lower, upper = (torch.as_tensor(b, dtype=torch.float32)[None] for b in problem.box(eps))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((restarts, *problem.image.shape), generator=generator)
    x = lower + noise * (upper - lower)
    x[0] = torch.as_tensor(problem.image, dtype=torch.float32).clamp(lower[0], upper[0])
    step = step_size * (upper - lower)
    best = x.clone()
    best_margin = torch.full((restarts,), -torch.inf)
    for _ in range(steps + 1):
        x.requires_grad_(True)
        margin = problem.margin_tensor(problem.network.forward(x))
        improved = margin.detach() > best_margin
        best[improved] = x.detach()[improved]
        best_margin = torch.where(improved, margin.detach(), best_margin)
        if time.perf_counter() > deadline:
            break
        (grad,) = torch.autograd.grad(margin.sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * grad.sign(), lower), upper)
    return best.numpy().astype(np.float64), best_margin.numpy().astype(np.float64)


def check(
    problem: Problem,
    eps: np.ndarray,
    budget: Budget,
    steps: int = 50,
    restarts: int = 5,
    step_size: float = 0.1,
    seed: int = 0,
) -> Verdict:
    started = time.perf_counter()
    deadline = started + (budget.seconds if budget.seconds is not None else float("inf"))
    points, margins = pgd_points(problem, eps, steps, restarts, step_size, seed, deadline)
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
                time.perf_counter() - started,
                {"restarts": restarts, "steps": steps},
            )
        rejected.append(checked.reason)
    stats = {"restarts": restarts, "steps": steps, "rejected_candidates": rejected}
    return Verdict(
        Status.UNKNOWN, "attack", None, float(margins[order[0]]), None, weakest, time.perf_counter() - started, stats
    )
