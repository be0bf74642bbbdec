"""How far the proved box is from a maximality proof: bound and attack one δ out, and the attack's edge.

Usage: python bench/maximality_gap.py [--canvases 6] [--share 0.5] [--bab-seconds 10] [--threads 1]

Issue 17 asks that ≥ 50% of the layers (by weight) end with a definite maximality answer. A
layer is *proved maximal* by a confirmed counterexample in ε* + δ e_d: the true edge along e_d
must lie within δ of the proved ε*_d, and an attack must reach it. This bench measures, per
canvas of the PGD model, whether either half holds. It runs the search with the chain of
`bench/search.py`'s "ours + bab" (attack -> bounds -> bab(2 s), weights 0.8^d, δ = 0.002), then,
for the heaviest layers holding --share of the weight, on the probe box ε* + δ e_d:

- bab's verdict, its seconds and its margin bound after --bab-seconds (a sound upper bound on the largest top-k margin m
  over the box; ROBUST when < 0) and a strong attack's best margin (PGD, 200 steps × 20
  restarts; a concrete point, so a lower bound on the true largest m; NOT_ROBUST when > 0).
  The true largest margin lies between the two: a counterexample one δ out needs it > 0.
- the attack's edge along e_d (the others at ε*): the smallest ε_d where that attack finds a
  counterexample, galloping ×2 from δ and bisecting to 5%; the true edge lies between ε*_d and
  it, and its ratio to ε*_d says how much bigger a box a verifier would have to prove before a
  δ-probe could be settled by a counterexample.

Prints a row per layer, then the weight share of layers whose probe the attack refutes (the
most the search's counterexample half could settle with this attack), the median gap bound −
attack at the probe, and the median ratio attack's edge / ε*_d.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from canvases import bench_plan, bundled_model, problems

from mlrobust.contract.verifiers import step
from mlrobust.problem.problem import Problem
from mlrobust.search.cutting import fixed_weights
from mlrobust.search.loop import search
from mlrobust.search.oracle import Oracle
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

RESOLUTION = 0.002  # δ, as in bench/search.py
ATTACK = {"steps": 200, "restarts": 20}
EDGE_PRECISION = 0.05  # the attack's edge is bisected until its bracket is this fraction of its upper end


class Probe(NamedTuple):
    """One layer's δ-probe ε* + δ e_d and the attack's edge along e_d."""

    share: float  # the layer's share of the weight
    status: Status  # bab's verdict on the probe
    seconds: float  # bab's time on it
    bound: float  # bab's margin bound (nan where bab found a counterexample)
    attack: float  # the strong attack's best margin there
    edge: float | None  # the smallest ε_d where the attack refutes (None: none up to the range limit)
    ratio: float | None  # edge / ε*_d


def searched_box(problem: Problem, weights: np.ndarray, bab_seconds: float) -> tuple[np.ndarray, float]:
    """ε* of the search with bab as its complete verifier, and the seconds it took."""
    chain = (step("attack", steps=20, restarts=2), step("bounds"), step("bab", time_limit=bab_seconds))
    plan = bench_plan(problem, "search", weights, fixed_weights(problem.num_layers), chain, RESOLUTION, 600.0)
    B.forget(problem)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        outcome = search(plan, Oracle.for_plan(plan, Path(folder)))
        return outcome.eps, time.perf_counter() - started


def attack_margin(problem: Problem, eps: np.ndarray) -> tuple[Status, float]:
    verdict = VERIFIERS["attack"].check(problem, eps, **ATTACK)
    return verdict.status, float(verdict.best_margin if verdict.best_margin is not None else -np.inf)


def attack_edge(problem: Problem, eps: np.ndarray, layer: int, limit: float) -> float | None:
    """The smallest ε_d (the other layers at ε*) where the attack finds a counterexample, to
    EDGE_PRECISION; None when it finds none up to the layer's range limit."""
    low, step_size, high = float(eps[layer]), RESOLUTION, None
    while high is None and low < limit:
        box = eps.copy()
        box[layer] = min(low + step_size, limit)
        if attack_margin(problem, box)[0] is Status.NOT_ROBUST:
            high = float(box[layer])
        else:
            low, step_size = float(box[layer]), step_size * 2
    while high is not None and high - low > max(RESOLUTION, EDGE_PRECISION * high):
        box = eps.copy()
        box[layer] = (low + high) / 2
        if attack_margin(problem, box)[0] is Status.NOT_ROBUST:
            high = float(box[layer])
        else:
            low = float(box[layer])
    return high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=6)
    parser.add_argument("--share", type=float, default=0.5, help="measure the heaviest layers holding this share")
    parser.add_argument("--bab-seconds", type=float, default=10.0, help="bab's time limit on each probe box")
    parser.add_argument("--search-bab-seconds", type=float, default=2.0, help="bab's limit inside the search")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = bundled_model(args.model)
    rows: list[Probe] = []
    done = 0  # canvases measured (each one's weight shares add up to 1)
    print(
        f"{'canvas':<11}{'layer':>6}{'weight':>8}{'ε*_d':>9}{'bab':>11}{'bab s':>7}{'bab bound':>11}"
        f"{'attack':>9}{'edge':>9}{'edge/ε*':>9}"
    )
    for canvas, problem in problems(network, args.canvases):
        if problem is None:
            print(f"skip {canvas}: the target is not in the top 2 at ε = 0")
            continue
        weights = 0.8 ** np.arange(problem.num_layers)
        share = weights / weights.sum()
        done += 1
        eps, seconds = searched_box(problem, weights, args.search_bab_seconds)
        print(f"{canvas}: searched in {seconds:.1f} s, w·ε* {float(weights @ eps):.4f}", flush=True)
        limit = problem.layer_reach()
        order = [int(d) for d in np.argsort(-weights, kind="stable")]
        chosen = order[: int(np.searchsorted(np.cumsum(share[order]), args.share)) + 1]
        for layer in chosen:
            probe = eps.copy()
            probe[layer] = min(eps[layer] + RESOLUTION, limit[layer])
            B.forget(problem)
            started = time.perf_counter()
            bab = VERIFIERS["bab"].check(problem, probe, time_limit=args.bab_seconds)
            bab_seconds = time.perf_counter() - started
            bound = float(bab.margin_bound) if bab.margin_bound is not None else float("nan")
            if bab.status is Status.NOT_ROBUST:
                bound = float("nan")  # bab found the counterexample itself: no bound to report
            _, attacked = attack_margin(problem, probe)
            if bab.status is Status.NOT_ROBUST:
                attacked = max(attacked, float(bab.best_margin or 0.0))
            edge = attack_edge(problem, eps, layer, float(limit[layer]))
            ratio = edge / eps[layer] if edge is not None and eps[layer] > 0 else None
            rows.append(Probe(float(share[layer]), bab.status, bab_seconds, bound, attacked, edge, ratio))
            print(
                f"{canvas:<11}{layer:>6}{share[layer]:>8.3f}{eps[layer]:>9.4f}{bab.status.value:>11}{bab_seconds:>7.1f}{bound:>11.3f}{attacked:>9.3f}"
                f"{(f'{edge:.4f}' if edge is not None else 'none'):>9}{(f'{ratio:.1f}' if ratio else '-'):>9}",
                flush=True,
            )
    if not rows:
        return
    refuted_share = sum(row.share for row in rows if row.attack > 0) / done
    proved = [row for row in rows if row.status is Status.ROBUST]
    proved_share = sum(row.share for row in proved) / done
    proof_seconds = [row.seconds for row in proved]
    gaps = [row.bound - row.attack for row in rows if np.isfinite(row.bound)]
    ratios = [row.ratio for row in rows if row.ratio is not None]
    no_edge = sum(row.share for row in rows if row.edge is None) / done
    print(
        f"\n{done} canvases, {len(rows)} layers (the heaviest holding {args.share:.0%} of the weight), "
        f"δ = {RESOLUTION}, bab {args.bab_seconds:g} s per probe, attack {ATTACK['steps']} steps × "
        f"{ATTACK['restarts']} restarts"
    )
    print(
        f"weight share (of all) whose δ-probe the attack refutes: {refuted_share:.1%}; "
        f"that bab proves: {proved_share:.1%}"
    )
    if proof_seconds:
        print(
            f"bab's time on the probes it proves: median {statistics.median(proof_seconds):.1f} s "
            f"(max {max(proof_seconds):.1f} s, {len(proof_seconds)} probes)"
        )
    if gaps:
        print(f"bab bound − attack margin at the δ-probe: median {statistics.median(gaps):.2f} (min {min(gaps):.2f})")
    if ratios:
        print(
            f"attack's edge / ε*_d: median {statistics.median(ratios):.1f} (min {min(ratios):.1f}) on {len(ratios)} "
            f"layers; no counterexample up to the range limit on layers holding {no_edge:.1%} of all the weight"
        )


if __name__ == "__main__":
    main()
