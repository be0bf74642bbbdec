"""Spec instance -> Problem: the network loaded (and checked against onnxruntime), the image
as onnxruntime reads it, the layers of the mask."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mlrobust.nn.network import Network, load_network
from mlrobust.problem.layers import layer_map
from mlrobust.problem.problem import Problem
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Spec


@functools.lru_cache(maxsize=8)
def _network(path: Path, mtime: float) -> tuple[Network, float]:
    return load_network(path)


def network_for(path: Path, image: np.ndarray | None = None) -> tuple[Network, float]:
    """The network of a file (cached), with its largest difference to onnxruntime.

    The check against onnxruntime runs on random points when first loaded, and again on
    `image` (the spec's own image) every time one is given.
    """
    from mlrobust.nn.network import ORT_TOLERANCE, NetworkMismatch, max_difference_to_onnxruntime

    network, difference = _network(path, path.stat().st_mtime)
    if image is not None:
        on_image = max_difference_to_onnxruntime(network, image[None])
        if not on_image <= ORT_TOLERANCE:
            raise NetworkMismatch(f"on this image the network differs from onnxruntime by {on_image:.2e}")
        difference = max(difference, on_image)
    return network, difference


def compile_problem(spec: Spec, instance: Instance) -> Problem:
    # the image exactly as onnxruntime receives it (float32), so one-point boxes hold real points
    image = np.asarray(instance.image, dtype=np.float32).astype(np.float64)
    network, _ = network_for(instance.model, image)
    return Problem(network, image, layer_map(instance.mask), instance.target, spec.k, spec.value_range)
