"""Search benchmark: the oracle-guided search against its baselines, on test canvases.

Usage: python bench/search.py [--model pgd] [--canvases 20 | --full] [--time-cap 120] [--fast]

Per canvas (target: its first digit; perturbed: the other digit; weights exponential(0.8),
resolution 0.002, each method with a fresh oracle and no shared cache):
- ours (fixed cutting) and ours (sensitivity cutting): the search of `mlrobust run`;
- uniform: the largest uniform ε by bisection;
- per-layer: the thesis's naive algorithm (layers by weight, one bisection each);
- thesis-style: the same loop with a MILP-only oracle of pairwise top-2 queries (C(9, 2) =
  36 MILPs per query) and fixed cutting, stopped at --time-cap per canvas.
Prints median / p90 time, median queries and median w·ε* per method, with ratios against
the baselines measured in the same run. --fast drops the MILP from our chain.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mlrobust.data.index import load_index, read_gray_png, read_mask_png
from mlrobust.nn.network import load_network
from mlrobust.problem.layers import layer_map
from mlrobust.problem.problem import Problem
from mlrobust.search.cutting import fixed_weights, sensitivity_weights
from mlrobust.search.loop import Budget, per_layer_bisection, range_limit, search, uniform_bisection
from mlrobust.search.oracle import Oracle
from mlrobust.spec.ir import VerifierStep
from mlrobust.verify.options import VERIFIERS

REPO = Path(__file__).resolve().parents[1]
RESOLUTION = 0.002


def step(name: str, **options) -> VerifierStep:  # type: ignore[no-untyped-def]
    table = VERIFIERS.get(name)
    defaults = {o.name: o.default for o in table.options} if table else {}
    return VerifierStep(name, tuple({**defaults, **options}.items()))


def run_method(name: str, problem: Problem, weights: np.ndarray, chain, seconds: float):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as folder:
        oracle = Oracle(problem, chain, Path(folder), name)
        budget = Budget(100_000, seconds, oracle)
        started = time.perf_counter()
        if name == "uniform":
            eps = np.full(
                problem.num_layers, uniform_bisection(oracle, RESOLUTION, budget, float(range_limit(oracle).max()))
            )
        elif name == "per-layer":
            eps = per_layer_bisection(oracle, weights, RESOLUTION, budget)
        else:
            cutting = sensitivity_weights(problem) if "sensitivity" in name else fixed_weights(problem.num_layers)
            eps = search(oracle, weights, cutting, RESOLUTION, budget).eps
        elapsed = time.perf_counter() - started
        capped = budget.exhausted() is not None
        per_verifier = Counter(q.verifier for q in oracle.history if not q.cached)
        return float(np.dot(weights, eps)), elapsed, oracle.new_queries, capped, per_verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="100 canvases")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per canvas for thesis-style")
    parser.add_argument("--fast", action="store_true", help="our chain without the MILP")
    parser.add_argument("--methods", nargs="+", default=None, help="run only these methods (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    count = 100 if args.full else args.canvases
    network, _ = load_network(REPO / "models" / f"double_mnist_{args.model}.onnx")
    ours_chain = (step("attack", steps=20, restarts=2), step("bounds"))
    if not args.fast:
        ours_chain = (*ours_chain, step("milp", time_limit=2.0))
    methods = {
        "ours (fixed)": ours_chain,
        "ours (sensitivity)": ours_chain,
        "uniform": ours_chain,
        "per-layer": ours_chain,
        "thesis-style": (step("milp_pairwise", time_limit=2.0),),  # the MILP limit of specs/base.mlr
    }
    if args.methods:
        methods = {name: chain for name, chain in methods.items() if name in args.methods}
    rows: dict[str, list[tuple[float, float, int, bool, Counter[str]]]] = {name: [] for name in methods}
    for entry in load_index(REPO / "data" / "double_mnist").canvases[:count]:
        target = entry.labels[0]
        image = read_gray_png(entry.image)[None].astype(np.float64)
        mask = read_mask_png(entry.other_object(target).mask)
        problem = Problem(network, image, layer_map(mask), target, 2, (0.0, 1.0))
        weights = 0.8 ** np.arange(problem.num_layers)
        for name, chain in methods.items():
            seconds = args.time_cap if name == "thesis-style" else 600.0
            rows[name].append(run_method(name, problem, weights, chain, seconds))
        print(f"done {entry.id}: " + ", ".join(f"{n} {r[-1][0]:.3f}" for n, r in rows.items()), flush=True)

    print(
        f"\nmodel double_mnist_{args.model}, {count} canvases, resolution {RESOLUTION}, weights 0.8^d; "
        f"our chain: {' -> '.join(s.name for s in ours_chain)}; thesis-style cap {args.time_cap:g} s"
    )
    print(
        f"{'method':<20}{'median s':>10}{'p90 s':>9}{'queries':>9}{'median w·ε*':>13}{'capped':>8}"
        "  median queries per verifier"
    )
    for name, results in rows.items():
        sizes, times, queries, capped, verifiers = zip(*results, strict=True)
        p90 = sorted(times)[min(len(times) - 1, int(0.9 * len(times)))]
        names = sorted(set().union(*verifiers))
        per_verifier = ", ".join(f"{v} {statistics.median(c[v] for c in verifiers):g}" for v in names)
        print(
            f"{name:<20}{statistics.median(times):>10.2f}{p90:>9.2f}{statistics.median(queries):>9.0f}"
            f"{statistics.median(sizes):>13.4f}{sum(capped):>8}  {per_verifier}"
        )
    ours = rows.get("ours (fixed)", [])
    for baseline in ("uniform", "per-layer", "thesis-style"):
        if not ours or baseline not in rows:
            continue
        size_ratio = statistics.median(o[0] / max(b[0], 1e-12) for o, b in zip(ours, rows[baseline], strict=True))
        time_ratio = statistics.median(b[1] / max(o[1], 1e-9) for o, b in zip(ours, rows[baseline], strict=True))
        print(
            f"ours (fixed) vs {baseline}: median size ratio {size_ratio:.3f}x, time({baseline}) / time(ours) "
            f"{time_ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
