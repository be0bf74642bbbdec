"""Branch and bound on LeakyReLU networks against the MILP, on boxes past CROWN's edge.

Usage: python bench/leaky_bab.py [--nets 8] [--slope 0.1] [--factors 1.1 1.3] [--limit 30]

bab splits a LeakyReLU max(z, a z) as it splits a ReLU (its inactive piece is a z). Before it
did, a network of LeakyReLUs had nothing to split: bab went straight to its leaf solver, the
MILP of the whole box, so the MILP column is also what bab cost then. Per random MLP (an ONNX
file: 64 inputs in 3 layers, two hidden LeakyReLU layers of 40, 6 classes; top-1 of the image's
own class), CROWN's uniform edge by bisection, then boxes `factor` × that edge: verdicts and
seconds of `bab` and the MILP (HiGHS) with the same time limit. A ROBUST against a NOT_ROBUST
would be a soundness bug: it is printed first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from random_nets import exported, problem_for

from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status


def leaky_mlp(seed: int, slope: float, folder: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 40),
        torch.nn.LeakyReLU(slope),
        torch.nn.Linear(40, 40),
        torch.nn.LeakyReLU(slope),
        torch.nn.Linear(40, 6),
    )
    return exported(model, (1, 1, 8, 8), folder / f"leaky-{seed}.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=8)
    parser.add_argument("--slope", type=float, default=0.1)
    parser.add_argument("--factors", type=float, nargs="+", default=[1.1, 1.3])
    parser.add_argument("--limit", type=float, default=30.0, help="seconds per query, each verifier")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-leaky-"))
    answers: dict[str, list[tuple[Status, float]]] = {"bab": [], "milp": []}
    disagreements = 0
    for seed in range(args.nets):
        problem = problem_for(leaky_mlp(seed, args.slope, folder), seed)
        edge, _ = B.crown_edge(problem, steps=20)
        for factor in args.factors:
            eps = np.full(problem.num_layers, edge * factor)
            line = []
            for name in answers:
                B.forget(problem)
                started = time.perf_counter()
                verdict = VERIFIERS[name].check(problem, eps, time_limit=args.limit)
                answers[name].append((verdict.status, time.perf_counter() - started))
                line.append(f"{name} {verdict.status.value} {answers[name][-1][1]:.2f} s")
            pair = {answers["bab"][-1][0], answers["milp"][-1][0]}
            if pair == {Status.ROBUST, Status.NOT_ROBUST}:
                disagreements += 1
                print(f"DISAGREEMENT on net {seed}, factor {factor}")
            print(f"net {seed} (CROWN edge {edge:.4f}) × {factor:g}: " + "; ".join(line), flush=True)
    print(
        f"\n{args.nets} LeakyReLU MLPs (slope {args.slope:g}), factors {args.factors}, {args.limit:g} s per query, "
        f"{disagreements} disagreements"
    )
    for name, rows in answers.items():
        decided = [seconds for status, seconds in rows if status is not Status.UNKNOWN]
        total = sum(seconds for _, seconds in rows)
        print(f"{name:<6} decided {len(decided)} of {len(rows)}, {total:.1f} s in all")
    bab_total = sum(s for _, s in answers["bab"])
    milp_total = sum(s for _, s in answers["milp"])
    print(f"bab's time / the MILP's: {bab_total / max(milp_total, 1e-9):.3f}")


if __name__ == "__main__":
    main()
