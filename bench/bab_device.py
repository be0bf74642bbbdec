"""bab on the CPU against bab on a CUDA device, on the same boxes of the PGD model.

Usage: python bench/bab_device.py [--devices cpu cuda] [--canvases 8] [--factors 1.05 1.3]
                                  [--limit 10] [--batch 64 256] [--threads 2]

Per canvas (bench/canvases.py's questions): CROWN's uniform edge by bisection, then uniform
boxes `factor` × that edge (1.05: the cliff boxes of bench/bab.py; larger: boxes where bab
needs many domains, where a GPU's throughput should show). On each box, bab with the time
limit on every device and batch size, each cold (no bound or tuning remembered from the run
before). Prints per box the verdicts, seconds and domains bounded; then per (device, batch)
how many it decides, its median seconds and domains per second, and the ratio of each row's
total time to the first row's on the boxes both decide. The same code runs on both devices,
so a ROBUST on one against a NOT_ROBUST on the other is a soundness bug: it is printed first,
and the script exits 1.

The first query on a device is a warm-up and is not counted (CUDA's start, its kernels'
first compilation). Nothing here needs a GPU: `--devices cpu` runs it on the CPU alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from canvases import bundled_model, problems

from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status


def run_bab(problem: Problem, eps: np.ndarray, limit: float, device: str, batch: int) -> tuple[Status, float, int]:
    """One cold bab query: (verdict, seconds, domains bounded)."""
    B.forget(problem)  # nothing remembered: neither bounds nor the warm start of another device
    started = time.perf_counter()
    verdict = VERIFIERS["bab"].check(problem, eps, time_limit=limit, device=device, batch=batch)
    if device == "cuda":
        torch.cuda.synchronize()
    assert verdict.stats["device"] == device, verdict.stats
    return verdict.status, time.perf_counter() - started, int(verdict.stats.get("domains_bounded", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument("--canvases", type=int, default=8)
    parser.add_argument("--factors", type=float, nargs="+", default=[1.05, 1.3])
    parser.add_argument("--limit", type=float, default=10.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[64], help="domains per pass (bab's `batch`)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    if "cuda" in args.devices and not torch.cuda.is_available():
        print(f"error: --devices cuda, but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        print("hint: run with --devices cpu, or on a machine with a GPU (scripts/device_check.sh)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    if "cuda" in args.devices:
        print(f"cuda: {torch.cuda.get_device_name()} (torch {torch.__version__})", flush=True)
    network = bundled_model(args.model)
    setups = [(device, batch) for device in args.devices for batch in args.batch]
    boxes = []
    for canvas, problem in problems(network, args.canvases):
        if problem is not None:
            edge, _ = B.crown_edge(problem)
            for factor in args.factors:
                boxes.append((f"{canvas}×{factor:g}", problem, np.full(problem.num_layers, edge * factor)))
    if not boxes:
        print("error: no canvas has its target in the top 2 at ε = 0", file=sys.stderr)
        return 1
    for device, batch in setups:  # warm-up, not counted
        run_bab(boxes[0][1], boxes[0][2], min(args.limit, 5.0), device, batch)
    answers: dict[tuple[str, int], list[tuple[Status, float, int]]] = {setup: [] for setup in setups}
    conflicts = []
    for name, problem, eps in boxes:
        line = []
        for setup in setups:
            status, seconds, domains = run_bab(problem, eps, args.limit, *setup)
            answers[setup].append((status, seconds, domains))
            line.append(f"{setup[0]}/{setup[1]} {status.value} {seconds:.1f} s {domains} domains")
        seen = {answers[setup][-1][0] for setup in setups}
        if {Status.ROBUST, Status.NOT_ROBUST} <= seen:
            conflicts.append(name)
        print(f"{name} (ε {eps[0]:.4f}): " + "; ".join(line), flush=True)

    for name in conflicts:
        print(f"CONFLICT on {name}: one device proved ROBUST, another found a counterexample (a soundness bug)")
    print(f"\nmodel {args.model}, {len(boxes)} boxes, limit {args.limit:g} s, {args.threads} CPU thread(s)")
    first = setups[0]
    for setup in setups:
        rows = answers[setup]
        decided = [r for r in rows if r[0] is not Status.UNKNOWN]
        rate = sum(r[2] for r in rows) / max(sum(r[1] for r in rows), 1e-9)
        both = [
            (mine[1], base[1])
            for mine, base in zip(rows, answers[first], strict=True)
            if mine[0] is not Status.UNKNOWN and base[0] is not Status.UNKNOWN
        ]
        ratio = sum(m for m, _ in both) / max(sum(b for _, b in both), 1e-9) if both else float("nan")
        print(
            f"{setup[0]}/batch {setup[1]}: decides {len(decided)} of {len(rows)}, median "
            f"{statistics.median(r[1] for r in rows):.2f} s, {rate:.0f} domains/s; time on the {len(both)} boxes "
            f"it and {first[0]}/batch {first[1]} both decide: {ratio:.2f}× that row's"
        )
    return 1 if conflicts else 0


if __name__ == "__main__":
    sys.exit(main())
