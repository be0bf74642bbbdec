"""How much tighter bab's root gets with α tuned for every intermediate layer, not only the last.

Usage: python bench/root_bounds.py [--dir bench/out/mnistfc] [--steps 20] NET:PROP …
       e.g. python bench/root_bounds.py 256x4:prop_0_0.05 256x6:prop_0_0.05
(the instances of `python bench/mnistfc.py --eps 0.05 --digits 5`).

bab starts every query from CROWN's intermediate bounds (each ReLU's input bounded by
back-substitution with the default lower slopes) and tunes α only for the property's rows.
α-CROWN proper also tunes, for every ReLU layer, one α set per bound of that layer's unstable
neurons (rows [I; −I]), layer by layer, each layer's result feeding the next. Per instance
this prints the root's margin bound (CROWN, and α-CROWN with 50 steps on the last rows) from
both kinds of intermediate bounds, the unstable neuron count and the seconds the layer-wise
tuning takes: whether tighter roots would close the instances bab leaves open, before anyone
builds them in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mlrobust.compile import Networks
from mlrobust.nn import ops as o
from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B
from mlrobust.verify.adam import Adam
from mlrobust.vnnlib.parse import load_vnnlib
from mlrobust.vnnlib.verify import case_problem

REPO = Path(__file__).resolve().parents[1]


def root_margin(problem: Problem, box: B.Interval, intermediate: list, alpha_steps: int) -> float:
    ops = problem.network.ops
    rows = torch.as_tensor(problem.output.rows, dtype=torch.float64)
    alphas = B.optimise_alphas(ops, rows, intermediate, box, alpha_steps)
    values = B.backsubstitute(ops, len(ops), rows, intermediate, box, alphas)
    values = values + torch.as_tensor(problem.output.offsets, dtype=torch.float64)
    return float(problem.output.margin_tensor(values[None])[0])


def tuned_intermediate(ops: tuple, box: B.Interval, start: list, steps: int, lr: float = 0.1) -> list:
    """Every ReLU layer's unstable neurons re-bounded with their own α for every earlier ReLU,
    best over `steps` Adam steps, intersected with CROWN's (every α in [0, 1] is sound)."""
    bounds = list(start)
    for index, op in enumerate(ops):
        if not isinstance(op, o.Relu) or bounds[index] is None:
            continue
        lower, upper = bounds[index].lower.flatten().clone(), bounds[index].upper.flatten().clone()
        neurons = torch.nonzero((lower < 0) & (upper > 0)).flatten()
        earlier = [j for j in range(index) if isinstance(ops[j], o.Relu) and bounds[j] is not None]
        if not neurons.numel() or not earlier:
            continue
        count, shape = neurons.numel(), op.in_shape
        rows = lower.new_zeros((2 * count, int(np.prod(shape))))
        rows[torch.arange(count), neurons] = 1.0
        rows[torch.arange(count, 2 * count), neurons] = -1.0
        rows = rows.reshape(2 * count, *shape)
        alphas = {}
        for j in earlier:
            slope = (bounds[j].upper[0] > -bounds[j].lower[0]).to(torch.float64)
            alphas[j] = slope.expand(2 * count, *slope.shape).clone().requires_grad_(True)
        optimiser = Adam(list(alphas.values()), lr=lr)
        end = o.input_of(ops, index)
        best = B.backsubstitute(ops, end, rows, bounds, box, alphas).detach()
        for _ in range(steps):
            optimiser.zero_grad()
            B.backsubstitute(ops, end, rows, bounds, box, alphas).sum().backward()
            optimiser.step()
            with torch.no_grad():
                for alpha in alphas.values():
                    alpha.clamp_(0, 1)
                best = torch.minimum(best, B.backsubstitute(ops, end, rows, bounds, box, alphas))
        lower[neurons], upper[neurons] = B.intersect(lower[neurons], upper[neurons], -best[count:], best[:count])
        bounds[index] = B.Interval(lower.reshape(1, *shape), upper.reshape(1, *shape))
    return bounds


def unstable(bounds: list) -> int:
    return sum(int(((b.lower < 0) & (b.upper > 0)).sum()) for b in bounds if b is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instances", nargs="+", help="NET:PROP, e.g. 256x4:prop_0_0.05")
    parser.add_argument("--dir", type=Path, default=REPO / "bench/out/mnistfc")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps per ReLU layer")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    networks = Networks()
    for instance in args.instances:
        net, prop = instance.split(":")
        network, _ = networks.load(args.dir / "onnx" / f"mnist-net_{net}.onnx")
        problem, eps = case_problem(network, load_vnnlib(args.dir / "vnnlib" / f"{prop}.vnnlib").cases[0])
        lower, upper = problem.box(eps)
        box = B.Interval(torch.as_tensor(lower)[None].double(), torch.as_tensor(upper)[None].double())
        with torch.no_grad():
            crown = B.crown_intermediate(network.ops, box)
        started = time.perf_counter()
        tuned = tuned_intermediate(network.ops, box, crown, args.steps)
        seconds = time.perf_counter() - started
        for name, bounds in (("CROWN intermediates", crown), (f"α intermediates ({args.steps} steps)", tuned)):
            print(
                f"{instance}  {name:<28} unstable {unstable(bounds):5d}  root bound: CROWN "
                f"{root_margin(problem, box, bounds, 0):8.3f}, α-CROWN {root_margin(problem, box, bounds, 50):8.3f}"
            )
        print(f"{instance}  layer-wise tuning took {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
