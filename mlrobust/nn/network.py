"""A network: the IR ops of one ONNX file, run in torch, checked against onnxruntime on load."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlrobust.errors import MlrobustError
from mlrobust.nn import ops as o
from mlrobust.nn.onnx_import import UnsupportedModel, import_onnx

ORT_TOLERANCE = 1e-4  # max |logit difference| accepted between the IR (float64) and onnxruntime (float32)


class NetworkMismatch(MlrobustError):
    """The IR computes something else than onnxruntime on the same file: a bug, never trusted."""


@dataclass(frozen=True, eq=False)
class Network:
    ops: tuple[o.Op, ...]
    input_shape: o.Shape
    num_classes: int
    path: Path
    opset: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch (N, *input_shape), in the tensor's dtype (float64 for bounds, float32 for attacks)."""
        for op in self.ops:
            x = op.forward(x)
        return x

    def logits(self, images: np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
        with torch.no_grad():
            return self.forward(torch.as_tensor(images, dtype=dtype)).numpy()

    def relu_count(self) -> int:
        return sum(int(np.prod(op.in_shape)) for op in self.ops if isinstance(op, o.Relu))


@functools.lru_cache(maxsize=8)
def _session(path: Path, mtime: float):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Logits computed by onnxruntime on the user's own file: the ground truth for NOT_ROBUST.

    (N, *input) in, (N, *output) out (logits: (N, classes)). A model exported with a fixed batch
    of 1 (the default of `torch.onnx.export`, and of most VNN-COMP benchmarks) is run one image
    at a time.
    """
    session = _session(path, path.stat().st_mtime)
    declared = session.get_inputs()[0]
    images = np.ascontiguousarray(images, dtype=np.float32)
    batch = declared.shape[0] if declared.shape else None
    if batch == 1 and images.shape[0] != 1:
        parts = [np.asarray(session.run(None, {declared.name: images[i : i + 1]})[0]) for i in range(len(images))]
        outputs = np.concatenate(parts)
    else:
        outputs = np.asarray(session.run(None, {declared.name: images})[0])
    return outputs.astype(np.float64)


def max_difference_to_onnxruntime(network: Network, images: np.ndarray) -> float:
    return float(np.max(np.abs(network.logits(images) - onnxruntime_logits(network.path, images))))


def load_network(path: Path, check_images: np.ndarray | None = None, seed: int = 0) -> tuple[Network, float]:
    """Import an ONNX file and check it against onnxruntime on `check_images` and random points.

    Returns the network and the largest logit difference seen; raises NetworkMismatch above
    ORT_TOLERANCE (the IR would be verifying a different function than the user's file).
    """
    graph = import_onnx(path)
    if len(graph.output_shape) != 1:
        raise UnsupportedModel(f"{path.name}: the output shape {graph.output_shape} is not a vector of class scores")
    network = Network(graph.ops, graph.input_shape, graph.output_shape[0], path.resolve(), graph.opset)
    rng = np.random.default_rng(seed)
    samples = rng.uniform(0.0, 1.0, size=(8, *graph.input_shape))
    if check_images is not None:
        samples = np.concatenate([check_images.reshape(-1, *graph.input_shape), samples])
    difference = max_difference_to_onnxruntime(network, samples)
    if not difference <= ORT_TOLERANCE:
        raise NetworkMismatch(
            f"the network read from {path.name} differs from onnxruntime by {difference:.2e} (> {ORT_TOLERANCE})"
        )
    return network, difference
