"""ONNX export with an onnxruntime cross-check, and sha256 of the file.

The exported file is what users verify, so on export we demand that onnxruntime and torch
agree: float32 logits reach ~20, hence atol 1e-4 / rtol 1e-5, and identical top-k sets (k: the
digits per canvas, 2 for Double-MNIST, 3 for Triple-MNIST).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlrobust.errors import MlrobustError
from mlrobust.models.architecture import INPUT_SHAPE, Architecture, build_classifier
from mlrobust.storage import atomic_write_bytes

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
ATOL = 1e-4
RTOL = 1e-5


@dataclass(frozen=True)
class ExportCheck:
    max_abs_diff: float
    within_tolerance: bool  # allclose(onnxruntime, torch, atol=ATOL, rtol=RTOL)
    top2_agree: bool  # the top-k sets agree (k = 2, or 3 for a Triple-MNIST model)
    samples: int

    @property
    def passed(self) -> bool:
        return self.within_tolerance and self.top2_agree


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> bytes:
    """The model as ONNX (TorchScript exporter, fixed opset, dynamic batch); `input_shape` is
    one image's (C, H, W)."""
    buffer = io.BytesIO()
    dummy = torch.zeros((1, *input_shape))
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (the dynamo one needs onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, dummy, buffer)
    return buffer.getvalue()


def _export(model: nn.Module, dummy: torch.Tensor, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        model,
        (dummy,),
        buffer,
        dynamo=False,  # the dynamo exporter needs onnxscript; this path needs only torch
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )


def classifier_from_onnx(path: Path, arch: Architecture) -> nn.Sequential:
    """The torch classifier with the weights stored in an exported ONNX file.

    The exporter keeps the parameters in graph order (Conv, Conv, Gemm: weight then bias), so
    they are copied back in that order; shapes must match the architecture exactly.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    stored = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values = [stored[name] for node in graph.node if node.op_type in ("Conv", "Gemm") for name in node.input[1:]]
    model = build_classifier(arch)
    params = list(model.parameters())
    if [v.shape for v in values] != [tuple(p.shape) for p in params]:
        raise MlrobustError(f"{path} does not hold a {arch.describe()} network")
    with torch.no_grad():
        for param, value in zip(params, values, strict=True):
            param.copy_(torch.from_numpy(value.copy()))
    return model.eval()


def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Logits from onnxruntime for (N, 1, S, S) float32 images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: images.astype(np.float32)})[0])


def top_k_sets(logits: np.ndarray, k: int) -> np.ndarray:
    """(N, k) sorted indices of the k highest logits."""
    return np.sort(np.argsort(-logits, axis=1, kind="stable")[:, :k], axis=1)


def top2_sets(logits: np.ndarray) -> np.ndarray:
    """(N, 2) sorted indices of the two highest logits."""
    return top_k_sets(logits, 2)


def check_against_torch(model: nn.Module, path: Path, images: np.ndarray, k: int = 2) -> ExportCheck:
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = onnx_logits(path, images)
    return ExportCheck(
        max_abs_diff=float(np.max(np.abs(got - expected))),
        within_tolerance=bool(np.allclose(got, expected, atol=ATOL, rtol=RTOL)),
        top2_agree=bool(np.array_equal(top_k_sets(got, k), top_k_sets(expected, k))),
        samples=int(images.shape[0]),
    )


def export_onnx(model: nn.Module, path: Path, check_images: np.ndarray, k: int = 2) -> ExportCheck:
    """Write the ONNX file atomically, then insist onnxruntime reproduces torch on it.

    The input shape is the check images' (N, C, H, W) without N; k is the top-k set compared."""
    model.eval()
    atomic_write_bytes(path, onnx_bytes(model, tuple(check_images.shape[1:])))
    check = check_against_torch(model, path, check_images, k)
    if not check.passed:
        raise MlrobustError(
            f"onnxruntime disagrees with torch on {path}: max |diff| {check.max_abs_diff:.2e}, "
            f"top-{k} sets identical: {check.top2_agree}"
        )
    return check
