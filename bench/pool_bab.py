"""Branch and bound with and without max-pool window splits, against the MILP, on max-pool
networks and boxes past CROWN's edge.

Usage: python bench/pool_bab.py [--seeds 3] [--factors 1.1 1.3] [--limit 10]

Three shapes of random ONNX net, each with max-pools doing much of the work: `branchy` (a
conv stem, a residual conv → LeakyReLU branch added to it and a conv → ReLU side branch,
concatenated, max-pooled 2×2, linear; the shape of tests/test_graph_networks.py, whose slow
test found the query bab could not close without window splits), `conv` (conv, ReLU, conv,
ReLU, max-pool, linear) and `two-pool` (conv, ReLU, max-pool, conv, ReLU, max-pool, linear).
Per net, a query (top-1 on odd seeds, top-2 on even ones) at `factor` × CROWN's uniform edge:
verdicts and seconds of bab, of bab with `SPLIT_WINDOWS` off (ReLU splits only, what it was
before), and of the MILP (HiGHS), each with the same time limit, in the same run. A ROBUST
against a NOT_ROBUST would be a soundness bug: it is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from random_nets import exported, problem_for

from mlrobust.nn.network import Network
from mlrobust.verify import bab
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status


class Branchy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.residual = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.side = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.head = torch.nn.Linear(5 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.stem(x))
        joined = torch.cat([torch.nn.functional.leaky_relu(self.residual(a), 0.1) + a, torch.relu(self.side(a))], 1)
        return self.head(torch.flatten(torch.nn.functional.max_pool2d(joined, 2), 1))


def pool_net(shape: str, seed: int, folder: Path) -> Network:
    torch.manual_seed(seed)
    nn = torch.nn
    if shape == "branchy":
        return exported(Branchy(), (1, 1, 6, 6), folder / f"branchy-{seed}.onnx")
    if shape == "conv":
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5),
        )  # fmt: skip
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 6),
        )  # fmt: skip
    return exported(model, (1, 1, 8, 8), folder / f"{shape}-{seed}.onnx")


COLUMNS = ("bab", "bab, ReLU splits only", "milp")


def ask(column: str, problem, eps: np.ndarray, limit: float) -> tuple[Status, float, dict]:  # type: ignore[no-untyped-def]
    B.forget(problem)  # cold: nothing remembered from the other columns
    bab.SPLIT_WINDOWS = column != "bab, ReLU splits only"
    started = time.perf_counter()
    try:
        verdict = VERIFIERS["milp" if column == "milp" else "bab"].check(problem, eps, time_limit=limit)
    finally:
        bab.SPLIT_WINDOWS = True
    return verdict.status, time.perf_counter() - started, verdict.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="nets per shape")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.1, 1.3])
    parser.add_argument("--limit", type=float, default=10.0, help="seconds per query, each column")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-pools-"))
    answers: dict[str, list[tuple[Status, float]]] = {column: [] for column in COLUMNS}
    disagreements = 0
    for shape in ("branchy", "conv", "two-pool"):
        for seed in range(args.seeds):
            k = 1 + (seed + 1) % 2
            problem = problem_for(pool_net(shape, seed, folder), seed, k)
            edge, _ = B.crown_edge(problem, steps=20)
            for factor in args.factors:
                eps = np.full(problem.num_layers, edge * factor)
                line = []
                for column in COLUMNS:
                    status, seconds, stats = ask(column, problem, eps, args.limit)
                    answers[column].append((status, seconds))
                    extra = ""
                    if column == "bab":
                        windows = stats.get("window_splits", 0)
                        extra = f" ({stats.get('domains_bounded', 0)} domains, {windows} window splits)"
                    line.append(f"{column} {status.value} {seconds:.2f} s{extra}")
                verdicts = {answers[column][-1][0] for column in COLUMNS}
                if {Status.ROBUST, Status.NOT_ROBUST} <= verdicts:
                    disagreements += 1
                    print(f"DISAGREEMENT on {shape} {seed}, factor {factor}")
                head = f"{shape} {seed} top-{k} (CROWN edge {edge:.4f}) × {factor:g}: "
                print(head + "; ".join(line), flush=True)
    queries = len(answers["bab"])
    print(f"\n{queries} queries ({args.seeds} nets per shape, factors {args.factors}), {args.limit:g} s each, "
          f"{disagreements} disagreements")  # fmt: skip
    for column, rows in answers.items():
        decided = [seconds for status, seconds in rows if status is not Status.UNKNOWN]
        median = statistics.median(decided) if decided else float("nan")
        total = sum(seconds for _, seconds in rows)
        tally = f"decided {len(decided):>2} of {queries}, median {median:.2f} s when decided"
        print(f"{column:<22} {tally}, {total:.1f} s in all")
    for column in COLUMNS[1:]:
        ratio = sum(s for _, s in answers["bab"]) / max(sum(s for _, s in answers[column]), 1e-9)
        print(f"bab's time / {column}'s: {ratio:.3f}")


if __name__ == "__main__":
    main()
