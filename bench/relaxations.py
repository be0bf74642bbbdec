"""What the max-pool plane and the live-subset MILP buy, against the forms they replaced.

Usage: python bench/relaxations.py [--model pgd] [--canvases 10] [--milp-time-limit 2]

Per test canvas (target: its first digit; perturbed: the other digit and its layers):
- CROWN with the max-pool plane y <= Σ c_i x_i + d (`bounds.relax_maxpool`, in use) against
  the constant y <= max u it replaced (rebuilt here as the plane c = 0, d = max u): the
  largest uniform ε and the largest ε on the perturbed object alone (layer 0) that each
  proves, by bisection to 1e-4, and the seconds per bound;
- the MILP on boxes past CROWN's edge (layer 0 alone at 1.05, 1.1 and 1.2 times the plane's
  edge, and the uniform box at 1.05 times): `milp.check` (one model per live k-subset, each
  stopped early) against the one-model top-k form it replaced (`encode` with no selection),
  both with the same time limit: how many each proves, and their seconds.
Ratios are of figures measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from canvases import bundled_model, problems

from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds, milp
from mlrobust.verify.milp_encoding import encode, start_values
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

PLANE = bounds.relax_maxpool


def constant_relaxation(op, interval):  # type: ignore[no-untyped-def]
    """The relaxation before the plane: y <= max u on every window no input dominates."""
    plane = PLANE(op, interval)
    upper = interval.upper.flatten()[plane.members]
    upper = torch.where(torch.as_tensor(op.windows) >= 0, upper, torch.full_like(upper, -torch.inf))
    undecided = ~plane.decided
    weights = torch.where(undecided[:, None], torch.zeros_like(plane.weights), plane.weights)
    offset = torch.where(undecided, upper.max(dim=1).values, plane.offset)
    return replace(plane, weights=weights, offset=offset)


def largest_proved(problem: Problem, direction: np.ndarray) -> tuple[float, float]:
    """(largest t with t·direction proved by CROWN, to 1e-4; median seconds per bound)."""
    low, high, seconds = 0.0, 1.0, []
    while high - low > 1e-4:
        middle = (low + high) / 2
        started = time.perf_counter()
        proved = bounds.margin_bound(problem, middle * direction).bound < -bounds.SAFETY_MARGIN
        seconds.append(time.perf_counter() - started)
        low, high = (middle, high) if proved else (low, middle)
    return low, statistics.median(seconds)


def one_model(problem: Problem, eps: np.ndarray, time_limit: float) -> tuple[bool, float]:
    """The replaced MILP: the top-k one-model form, started at the image; proved or not."""
    started = time.perf_counter()
    encoding = encode(problem, eps)
    start = start_values(problem, encoding, problem.image)
    solution = milp.solve_highs(encoding, max(time_limit - (time.perf_counter() - started), 0.01), start=start)
    return solution.dual_bound < -milp.MILP_MARGIN, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=10)
    parser.add_argument("--milp-time-limit", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    network = bundled_model(args.model)
    crown: dict[str, list[float]] = {key: [] for key in ("uniform", "layer 0", "seconds")}
    before: dict[str, list[float]] = {key: [] for key in ("uniform", "layer 0", "seconds")}
    proofs = {"subsets": [0, 0.0], "one model": [0, 0.0]}
    asked = 0
    for canvas, problem in problems(network, args.canvases):
        if problem is None:
            continue
        uniform, corner = np.ones(problem.num_layers), np.eye(problem.num_layers)[0]
        line = [canvas]
        for name, figures in (("plane", crown), ("constant", before)):
            bounds.forget(problem)
            bounds.relax_maxpool = PLANE if name == "plane" else constant_relaxation
            try:
                figures["uniform"].append(largest_proved(problem, uniform)[0])
                edge, seconds = largest_proved(problem, corner)
                figures["layer 0"].append(edge)
                figures["seconds"].append(seconds)
            finally:
                bounds.relax_maxpool = PLANE
            line.append(f"{name}: uniform {figures['uniform'][-1]:.4f}, layer 0 {edge:.4f}")
        bounds.forget(problem)
        boxes = [scale * crown["layer 0"][-1] * corner for scale in (1.05, 1.1, 1.2)]
        boxes.append(1.05 * crown["uniform"][-1] * uniform)
        for eps in boxes:
            asked += 1
            started = time.perf_counter()
            verdict = VERIFIERS["milp"].check(problem, eps, time_limit=args.milp_time_limit)
            proofs["subsets"][0] += verdict.status is Status.ROBUST
            proofs["subsets"][1] += time.perf_counter() - started
            proved, seconds = one_model(problem, eps, args.milp_time_limit)
            proofs["one model"][0] += proved
            proofs["one model"][1] += seconds
        print("  ".join(line), flush=True)

    median = statistics.median
    print(f"\nmodel double_mnist_{args.model}, {len(crown['uniform'])} canvases")
    for key in ("uniform", "layer 0"):
        ratios = [a / b for a, b in zip(crown[key], before[key], strict=True) if b > 0]
        print(
            f"CROWN, largest proved ε ({key}): plane {median(crown[key]):.4f}, constant {median(before[key]):.4f} "
            f"(medians); plane / constant median {median(ratios):.3f}x, min {min(ratios):.3f}x"
        )
    print(
        f"CROWN seconds per bound (median): plane {median(crown['seconds']):.4f}, "
        f"constant {median(before['seconds']):.4f}"
    )
    for name, (count, seconds) in proofs.items():
        print(
            f"MILP {name} ({args.milp_time_limit:g} s limit) past CROWN's edge: {count}/{asked} proved, "
            f"{seconds / asked:.2f} s per query"
        )


if __name__ == "__main__":
    main()
