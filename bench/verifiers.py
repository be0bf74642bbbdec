"""Verifier benchmark on the PGD model: time, definite answers, and cross-checked soundness.

Usage: python bench/verifiers.py [--canvases 20] [--eps 0.005 0.03 0.3] [--milp-time-limit 10]
                                 [--pairwise-canvases 3] [--pairwise-eps 0.005 0.01] [--model pgd]

For each test canvas (target: its first digit; perturbed: the other digit and its layers,
uniform ε over every layer) and each ε, every verifier answers the same query alone:
attack, IBP, CROWN, MILP with HiGHS, and MILP with Gurobi when it is usable. Every ROBUST is
cross-checked by 100 attack restarts (none may find m >= 0) and every NOT_ROBUST by
onnxruntime. Then the top-k MILP as one model is timed against the C(n-1, k) pairwise MILPs,
and CROWN against one forward pass. Ratios are of figures measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from mlrobust.contract.solvers import gurobi_problem
from mlrobust.data.index import load_index, read_gray_png, read_mask_png
from mlrobust.nn.network import load_network, onnxruntime_logits
from mlrobust.problem.layers import layer_map
from mlrobust.problem.problem import Problem
from mlrobust.verify import milp
from mlrobust.verify.milp_encoding import encode, selections, start_values
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

REPO = Path(__file__).resolve().parents[1]


def problems(model: str, count: int) -> list[tuple[str, Problem]]:
    network, _ = load_network(REPO / "models" / f"double_mnist_{model}.onnx")
    found = []
    for entry in load_index(REPO / "data" / "double_mnist").canvases[:count]:
        target = entry.labels[0]
        image = read_gray_png(entry.image)[None].astype(np.float64)
        mask = read_mask_png(entry.other_object(target).mask)
        found.append((entry.id, Problem(network, image, layer_map(mask), target, 2, (0.0, 1.0))))
    return found


def cross_check(problem: Problem, eps: np.ndarray, verdict) -> bool:  # type: ignore[no-untyped-def]
    """True when the verdict survives an independent check."""
    if verdict.status is Status.ROBUST:
        strong = VERIFIERS["attack"].check(problem, eps, steps=50, restarts=100, seed=12345)
        return strong.status is not Status.NOT_ROBUST and strong.best_margin < 0
    if verdict.status is Status.NOT_ROBUST:
        logits = onnxruntime_logits(problem.network.path, verdict.counterexample[None])
        lower, upper = problem.box(eps)
        inside = np.all(verdict.counterexample >= lower) and np.all(verdict.counterexample <= upper)
        return bool(inside and problem.violated(logits)[0])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=20)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.005, 0.03, 0.3])
    parser.add_argument("--milp-time-limit", type=float, default=10.0)
    parser.add_argument("--pairwise-canvases", type=int, default=3)
    parser.add_argument("--pairwise-eps", type=float, nargs="+", default=[0.005, 0.01])
    args = parser.parse_args()
    torch.set_num_threads(2)
    cases = problems(args.model, args.canvases)
    gurobi_note = gurobi_problem()
    if gurobi_note is None:  # usable here, but the pip licence refuses large models: probe once
        probe = VERIFIERS["milp"].check(
            cases[0][1],
            np.full(cases[0][1].num_layers, args.eps[0]),
            solver="gurobi",
            time_limit=args.milp_time_limit,
        )
        gurobi_note = probe.stats.get("fallback")
    gurobi = gurobi_note is None
    verifiers = {
        "attack": lambda p, e: VERIFIERS["attack"].check(p, e),
        "ibp": lambda p, e: VERIFIERS["bounds"].check(p, e, method="ibp"),
        "crown": lambda p, e: VERIFIERS["bounds"].check(p, e, method="crown"),
        "milp(highs)": lambda p, e: VERIFIERS["milp"].check(p, e, solver="highs", time_limit=args.milp_time_limit),
    }
    if gurobi:
        verifiers["milp(gurobi)"] = lambda p, e: VERIFIERS["milp"].check(
            p, e, solver="gurobi", time_limit=args.milp_time_limit
        )
    times: dict[tuple[str, float], list[float]] = defaultdict(list)
    definite: dict[tuple[str, float], int] = defaultdict(int)
    wrong: list[str] = []
    forward_times, crown_times = [], []
    for canvas, problem in cases:
        image = torch.as_tensor(problem.image[None])
        with torch.no_grad():
            problem.network.forward(image)
            started = time.perf_counter()
            for _ in range(20):
                problem.network.forward(image)
            forward_times.append((time.perf_counter() - started) / 20)
        for eps_value in args.eps:
            eps = np.full(problem.num_layers, eps_value)
            for name, run in verifiers.items():
                verdict = run(problem, eps)
                times[(name, eps_value)].append(verdict.seconds)
                definite[(name, eps_value)] += verdict.definite
                if name == "crown":
                    crown_times.append(verdict.seconds)
                if not cross_check(problem, eps, verdict):
                    wrong.append(f"{name} said {verdict.status.value} on {canvas} at ε={eps_value}")
        print(f"done {canvas}", flush=True)

    print(
        f"\nmodel double_mnist_{args.model}, {len(cases)} canvases, uniform ε over all layers; "
        f"MILP time limit {args.milp_time_limit:g} s; Gurobi: {'yes' if gurobi else gurobi_note}"
    )
    print(f"{'verifier':<14}" + "".join(f"{'ε=' + format(e, 'g'):>26}" for e in args.eps))
    print(f"{'':<14}" + "".join(f"{'median s / p90 s / definite':>26}" for _ in args.eps))
    for name in verifiers:
        cells = []
        for e in args.eps:
            values = sorted(times[(name, e)])
            p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
            cells.append(f"{statistics.median(values):>8.3f} / {p90:>6.3f} / {definite[(name, e)]:>2}/{len(cases)}")
        print(f"{name:<14}" + "".join(f"{c:>26}" for c in cells))
    forward = statistics.median(forward_times)
    crown = statistics.median(crown_times)
    print(
        f"\nCROWN median {crown * 1e3:.1f} ms vs one float64 forward pass {forward * 1e3:.2f} ms: "
        f"ratio {crown / forward:.0f}x (target: CROWN <= 50 ms per query)"
    )

    print(f"\ntop-2 MILP as one model vs C(9, 2) = 36 pairwise MILPs ({args.pairwise_canvases} canvases):")
    ratios = []
    for canvas, problem in cases[: args.pairwise_canvases]:
        for eps_value in args.pairwise_eps:
            eps = np.full(problem.num_layers, eps_value)
            started = time.perf_counter()
            encoding = encode(problem, eps)
            one = milp.solve_highs(encoding, 600, start=start_values(problem, encoding, problem.image))
            one_seconds = time.perf_counter() - started
            started = time.perf_counter()
            best = -np.inf
            statuses = set()
            for subset in selections(problem):
                pair = encode(problem, eps, subset)
                solved = milp.solve_highs(pair, 600, start=start_values(problem, pair, problem.image))
                statuses.add(solved.status)
                best = max(best, solved.incumbent if solved.incumbent is not None else -np.inf)
            pair_seconds = time.perf_counter() - started
            ratios.append(pair_seconds / one_seconds)
            agree = abs(best - one.incumbent) <= 1e-3 * max(1.0, abs(best))
            print(
                f"  {canvas} ε={eps_value:g}: one model {one_seconds:.2f} s "
                f"({one.status}, max m = {one.incumbent:.4f}); pairwise {pair_seconds:.2f} s "
                f"({', '.join(sorted(statuses))}, max m = {best:.4f}); "
                f"ratio {pair_seconds / one_seconds:.1f}x; optima agree: {agree}"
            )
    if ratios:
        print(f"  median ratio pairwise / one model: {statistics.median(ratios):.1f}x (target >= 5x)")
    print(f"\nwrong verdicts (cross-checked): {len(wrong)}")
    for line in wrong:
        print("  " + line)


if __name__ == "__main__":
    main()
