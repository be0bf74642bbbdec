"""The benchmarks' questions: each committed test canvas, asked about its first digit.

Target: the canvas's first label; perturbed: the other digit's mask and the layers around
it; top-2; range [0, 1]. One definition, so that every bench measures the same problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.contract.verifiers import VerifierStep
from mlrobust.data.index import load_index, read_gray_png, read_mask_png
from mlrobust.nn.network import Network, load_network
from mlrobust.plan import Plan, SearchBudget
from mlrobust.problem.layers import layer_map
from mlrobust.problem.problem import Problem

REPO = Path(__file__).resolve().parents[1]


def bundled_model(name: str) -> Network:
    """models/double_mnist_{name}.onnx (name: none, l0 or pgd), or `mlp`: the benchmarks' small
    MLP (bench/small_mlp.py, trained on first use), where the exact MILP answers quickly."""
    if name == "mlp":
        from small_mlp import small_mlp_path

        network, _ = load_network(small_mlp_path())
        return network
    network, _ = load_network(REPO / "models" / f"double_mnist_{name}.onnx")
    return network


def problems(network: Network, count: int) -> Iterator[tuple[str, Problem | None]]:
    """(canvas id, its problem) for the first `count` test canvases; the problem is None where
    the model already misses the target at ε = 0 (nothing to search there)."""
    for entry in load_index(REPO / "data" / "double_mnist").canvases[:count]:
        target = entry.labels[0]
        image = read_gray_png(entry.image)[None].astype(np.float64)
        mask = read_mask_png(entry.other_object(target).mask)
        problem = Problem(network, image, layer_map(mask), target, 2, (0.0, 1.0))
        yield entry.id, None if problem.violated(network.logits(image[None]))[0] else problem


def bench_plan(
    problem: Problem,
    method: str,
    weights: np.ndarray,
    cutting: np.ndarray,
    chain: tuple[VerifierStep, ...],
    resolution: float,
    seconds: float,
    queries: int = 100_000,
) -> Plan:
    """A plan for a bench's own problem (no spec): the bench names the question itself."""
    return Plan(
        problem,
        METHOD_TABLE[method],
        weights,
        cutting,
        chain,
        resolution,
        SearchBudget(queries, seconds),
        seed=0,
        question=f"bench {method}",
        queries_key=f"bench {method}",
    )
