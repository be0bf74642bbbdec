"""Branch and bound against the MILP on the cliff boxes of bench/ceiling.py.

Usage: python bench/bab.py [--canvases 20] [--factor 1.05] [--limits 10 30] [--threads 2]

Per canvas of the PGD model (target: the first digit; perturbed: the other one): CROWN's
largest uniform ε by bisection, then the uniform box `factor` × that edge, which CROWN cannot
prove. On it, `bab` and the MILP (HiGHS, live-subset models) each with every time limit, in
the same run. Prints per canvas the verdicts and seconds; then, per limit, how many each
decides, and the two targets of issue 17: on the boxes the MILP decides, whether bab decides
them the same way and its time as a fraction of the MILP's; of the boxes the MILP leaves
UNKNOWN, how many bab decides. A ROBUST against a NOT_ROBUST would be a soundness bug in one
of the two: it is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from canvases import bundled_model, problems

from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status


def timed(name: str, problem: Problem, eps: np.ndarray, limit: float) -> tuple[Status, float, dict]:
    B.forget(problem)  # cold: no bound remembered from the other verifier
    started = time.perf_counter()
    verdict = VERIFIERS[name].check(problem, eps, time_limit=limit)
    return verdict.status, time.perf_counter() - started, verdict.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=20)
    parser.add_argument("--factor", type=float, default=1.05)
    parser.add_argument("--limits", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the MILP uses 1 either way)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = bundled_model(args.model)
    rows: list[tuple[str, dict[tuple[str, float], tuple[Status, float]]]] = []
    for canvas, problem in problems(network, args.canvases):
        if problem is None:
            print(f"skip {canvas}: the target is not in the top 2 at ε = 0", flush=True)
            continue
        edge, _ = B.crown_edge(problem)
        eps = np.full(problem.num_layers, edge * args.factor)
        answers: dict[tuple[str, float], tuple[Status, float]] = {}
        line = []
        for limit in args.limits:
            for name in ("bab", "milp"):
                status, seconds, stats = timed(name, problem, eps, limit)
                answers[(name, limit)] = (status, seconds)
                extra = f", {stats.get('domains_bounded')} domains" if name == "bab" else ""
                line.append(f"{name}@{limit:g}s {status.value} {seconds:.1f} s{extra}")
        rows.append((canvas, answers))
        print(f"{canvas} (CROWN edge {edge:.4f}, box {edge * args.factor:.4f}): " + "; ".join(line), flush=True)

    print(f"\nmodel {args.model}, {len(rows)} canvases, uniform boxes {args.factor:g} × CROWN's edge")
    for limit in args.limits:
        bab = [answers[("bab", limit)] for _, answers in rows]
        milp = [answers[("milp", limit)] for _, answers in rows]
        conflicts = [
            canvas
            for (canvas, _), b, m in zip(rows, bab, milp, strict=True)
            if {b[0], m[0]} == {Status.ROBUST, Status.NOT_ROBUST}
        ]
        for canvas in conflicts:
            print(f"  CONFLICT on {canvas} at {limit:g} s: bab and the MILP disagree (a soundness bug)")
        decided = lambda answers: sum(a[0] is not Status.UNKNOWN for a in answers)  # noqa: E731
        counts = lambda answers, s: sum(a[0] is s for a in answers)  # noqa: E731
        print(
            f"limit {limit:g} s: bab decides {decided(bab)} (ROBUST {counts(bab, Status.ROBUST)}, NOT_ROBUST "
            f"{counts(bab, Status.NOT_ROBUST)}), median {statistics.median(a[1] for a in bab):.1f} s; MILP decides "
            f"{decided(milp)} (ROBUST {counts(milp, Status.ROBUST)}, NOT_ROBUST {counts(milp, Status.NOT_ROBUST)}), "
            f"median {statistics.median(a[1] for a in milp):.1f} s"
        )
        both = [(b, m) for b, m in zip(bab, milp, strict=True) if m[0] is not Status.UNKNOWN]
        if both:
            same = sum(b[0] is m[0] for b, m in both)
            ratios = [b[1] / m[1] for b, m in both if b[0] is m[0]]
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "n/a"
            agreed = [(b, m) for b, m in both if b[0] is m[0]]
            total = sum(b[1] for b, _ in agreed) / max(sum(m[1] for _, m in agreed), 1e-9)
            print(
                f"  on the {len(both)} boxes the MILP decides: bab decides {same} the same way; "
                f"time(bab) / time(MILP) median {ratio}, max {max(ratios, default=float('nan')):.2f}, "
                f"total {total:.2f} (target: every one, at <= 0.2)"
            )
        left = [b for b, m in zip(bab, milp, strict=True) if m[0] is Status.UNKNOWN]
        if left:
            print(
                f"  of the {len(left)} boxes the MILP leaves UNKNOWN, bab decides "
                f"{sum(b[0] is not Status.UNKNOWN for b in left)} (target: at least half)"
            )


if __name__ == "__main__":
    main()
