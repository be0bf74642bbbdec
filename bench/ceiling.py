"""How much room a strong attack leaves above the uniform baseline, and what the sound verifiers say there.

Usage: python bench/ceiling.py [--model pgd] [--canvases 4] [--milp-seconds 30]

Issue 6 asks the search for 2x the uniform baseline's w·ε on the PGD model. This measures,
per test canvas (target: its first digit; perturbed: the other digit and its layers), whether
that target is in reach of the verifiers we have, and if not, by how much it is out of reach:
- S_u: the largest uniform ε that CROWN proves, as a size w·ε (the uniform baseline);
- S_a: the largest uniform ε that a strong PGD attack (CHECK_ATTACK) cannot break
  (optimistic: not a proof);
- S_g: a greedy per-layer bisection driven by a cheaper attack (SEARCH_ATTACK), the
  GREEDY_LAYERS heaviest layers in weight order, then scaled down until the strong attack
  fails in it too; optimistic as well, and only one of many boxes the attack leaves alone;
- two boxes, each with the margin m's bracket [attack's best m, sound bound on max m]: the
  cliff box (uniform, CLIFF x CROWN's edge) and the target box (the greedy box scaled down to
  size 2 S_u, when S_g allows it). The sound bounds are CROWN's, alpha-CROWN's and the MILP's
  (`milp.check`, with --milp-seconds; its dual bound is an upper bound on max m even when it
  times out). A box is provable only if some sound bound gets below zero.
It also prints, per channel of the first convolution, the ε at which the channel wakes on
a black window (x in [0, ε], so its pre-activation reaches b + ε Σ W⁺ > 0): below it those
ReLUs are dead for any perturbation, and CROWN is exact there.
Nothing here is a verdict: attack figures are lower bounds on max m, the rest upper bounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from canvases import bundled_model, problems

from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds
from mlrobust.verify.attack import pgd_points_many
from mlrobust.verify.registry import VERIFIERS

WEIGHT_BASE = 0.8  # the bundled specs' weights: exponential(base = 0.8)
GREEDY_LAYERS = 12  # the heaviest layers hold 93% of the weight at base 0.8
SEARCH_ATTACK = (60, 8)  # PGD steps, restarts per box for the ceilings
CHECK_ATTACK = (200, 16)  # a stronger attack for the two boxes' lower bounds
CLIFF = 1.05
BISECTIONS = 9  # per-layer bisections of the greedy pass: to 1/512 of the layer's range
UNIFORM_BISECTIONS = 14  # the uniform edges: to 6e-5 (some canvases prove only ε ≈ 0.002)


def attack_margin(problem: Problem, eps: np.ndarray, effort: tuple[int, int]) -> float:
    """The largest margin m the attack finds in the box (m >= 0 breaks top-k)."""
    steps, restarts = effort
    _, margins = pgd_points_many(problem, [eps], steps, restarts, 0.1, 0, float("inf"))
    return float(margins.max())


def bisect(holds, high: float, steps: int = BISECTIONS) -> float:  # type: ignore[no-untyped-def]
    """The largest t in [0, high] (to high / 2^steps) for which holds(t), assumed monotone."""
    if holds(high):
        return high
    low = 0.0
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if holds(middle) else (low, middle)
    return low


def crown_proves(problem: Problem, eps: np.ndarray) -> bool:
    return bounds.margin_bound(problem, eps).bound < -bounds.SAFETY_MARGIN


def greedy_box(problem: Problem, weights: np.ndarray, limit: np.ndarray) -> np.ndarray:
    eps = np.zeros(problem.num_layers)
    for layer in np.argsort(-weights, kind="stable")[:GREEDY_LAYERS]:

        def unbroken(t: float, layer: int = int(layer)) -> bool:
            trial = eps.copy()
            trial[layer] = t
            return attack_margin(problem, trial, SEARCH_ATTACK) < 0

        eps[layer] = bisect(unbroken, float(limit[layer]))
    return eps


def bracket(problem: Problem, eps: np.ndarray, milp_seconds: float) -> dict[str, float | str]:
    """The attack's best m and the sound upper bounds on max m over the box."""
    started = time.perf_counter()
    verdict = VERIFIERS["milp"].check(problem, eps, time_limit=milp_seconds)
    return {
        "attack": attack_margin(problem, eps, CHECK_ATTACK),
        "crown": bounds.margin_bound(problem, eps).bound,
        "alpha": bounds.margin_bound(problem, eps, "alpha_crown").bound,
        "milp": float(verdict.margin_bound) if verdict.margin_bound is not None else float("inf"),
        "milp_status": verdict.status.value,
        "milp_seconds": time.perf_counter() - started,
    }


def show(name: str, result: dict[str, float | str]) -> str:
    return (
        f"{name}: attack m {result['attack']:+.2f}, bounds CROWN {result['crown']:+.2f}, "
        f"alpha {result['alpha']:+.2f}, MILP {result['milp']:+.2f} "
        f"({result['milp_status']}, {result['milp_seconds']:.0f} s)"
    )


def uniform_edge(problem: Problem, holds, limit: float) -> float:  # type: ignore[no-untyped-def]
    """The largest uniform ε (all layers alike) for which holds(box)."""
    return bisect(lambda t: holds(problem, np.full(problem.num_layers, t)), limit, UNIFORM_BISECTIONS)


def measure(name: str, problem: Problem, milp_seconds: float) -> tuple[float, float, float, str | None]:
    """Print one canvas's figures; (S_u, S_a, S_g, the target box's fate: "proved" by a sound
    bound, "broken" by the strong attack, or "open"; None when S_g < 2 S_u: no target box)."""
    started = time.perf_counter()
    layers = problem.num_layers
    weights = WEIGHT_BASE ** np.arange(layers)
    limit = problem.layer_reach()
    crown_edge = uniform_edge(problem, crown_proves, float(limit.max()))
    attack_edge = uniform_edge(problem, lambda p, box: attack_margin(p, box, CHECK_ATTACK) < 0, float(limit.max()))
    greedy = greedy_box(problem, weights, limit)
    # the greedy pass's attack is the cheaper one: shrink its box until the strong one fails too
    greedy = greedy * bisect(lambda t: attack_margin(problem, t * greedy, CHECK_ATTACK) < 0, 1.0)
    s_u, s_a, s_g = (
        float(weights @ box) for box in (np.full(layers, crown_edge), np.full(layers, attack_edge), greedy)
    )
    print(
        f"{name}: S_u {s_u:.3f} (ε {crown_edge:.4f}), S_a {s_a:.3f} ({s_a / max(s_u, 1e-12):.2f}x), "
        f"S_g {s_g:.3f} ({s_g / max(s_u, 1e-12):.2f}x); greedy ε on layers 0-5: {np.round(greedy[:6], 3).tolist()}",
        flush=True,
    )
    cliff = bracket(problem, np.full(layers, CLIFF * crown_edge), milp_seconds)
    print("   " + show(f"cliff box (uniform {CLIFF} x ε)", cliff), flush=True)
    fate = None
    if s_g >= 2 * s_u:
        result = bracket(problem, greedy * (2 * s_u / s_g), milp_seconds)
        proved = (
            result["milp_status"] == "ROBUST"
            or min(float(result["crown"]), float(result["alpha"])) < -bounds.SAFETY_MARGIN
        )
        # PGD is not monotone in the box: the strong attack can break the scaled-down box
        fate = "proved" if proved else "broken" if float(result["attack"]) >= 0 else "open"
        print("   " + show("target box (size 2 S_u)", result) + f": {fate}", flush=True)
    print(f"   {time.perf_counter() - started:.0f} s", flush=True)
    return s_u, s_a, s_g, fate


def wake_thresholds(network) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per first-conv channel: -b / Σ W⁺, the ε that wakes it on black pixels (< 0: always awake)."""
    first = network.ops[0]
    positive = np.clip(first.weight, 0, None).reshape(first.weight.shape[0], -1).sum(axis=1)
    return -first.bias / np.maximum(positive, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=4)
    parser.add_argument("--milp-seconds", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    network = bundled_model(args.model)
    wake = wake_thresholds(network)
    print(f"first conv: ε that wakes each channel on black pixels: {np.round(np.sort(wake[wake > 0]), 4).tolist()}")
    ratios: dict[str, list[float]] = {"S_a / S_u": [], "S_g / S_u": []}
    fates: list[str] = []
    for name, problem in problems(network, args.canvases):
        if problem is None:
            print(f"{name}: misclassified, skipped")
            continue
        s_u, s_a, s_g, fate = measure(name, problem, args.milp_seconds)
        if s_u <= 0:
            continue  # CROWN proves no uniform ε: no ratio
        ratios["S_a / S_u"].append(s_a / s_u)
        ratios["S_g / S_u"].append(s_g / s_u)
        if fate is not None:
            fates.append(fate)
    for name, values in ratios.items():
        if values:
            print(f"median {name}: {statistics.median(values):.2f}x (min {min(values):.2f}x, max {max(values):.2f}x)")
    counts = ", ".join(f"{fates.count(fate)} {fate}" for fate in ("proved", "broken", "open"))
    print(f"target boxes (size 2 S_u): {len(fates)} of {len(ratios['S_g / S_u'])} canvases: {counts}")


if __name__ == "__main__":
    main()
