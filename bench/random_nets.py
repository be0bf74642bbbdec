"""Small random ONNX networks and queries on them, for the benches that pit bab against the MILP.

Each network is exported by torch.onnx and loaded back as a user's file is, so counterexamples
go through the onnxruntime re-check for real. The query: a random image, three layers of
pixels (random, each layer present), the image's own top class as the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlrobust.nn.network import Network, load_network
from mlrobust.problem.problem import Problem


def exported(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> Network:
    torch.onnx.export(
        model.eval(), (torch.zeros(shape),), path, dynamo=False, opset_version=17,
        input_names=["x"], dynamic_axes={"x": {0: "n"}},
    )  # fmt: skip
    network, _ = load_network(path)
    return network


def problem_for(network: Network, seed: int, k: int = 1) -> Problem:
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, network.input_shape).astype(np.float32).astype(np.float64)
    layers = rng.integers(0, 3, size=network.input_shape[1:])
    layers.flat[:3] = np.arange(3)
    target = int(np.argmax(network.logits(image[None])[0]))
    return Problem(network, image, layers, target, k, (0.0, 1.0))
