"""Shared test helpers: repository paths and a real-subprocess CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "double_mnist"
MODELS = REPO / "models"
MODEL_NAMES = ("double_mnist_none", "double_mnist_l0", "double_mnist_pgd")


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path = REPO) -> CliResult:
    """Run `python -m mlrobust ARGS` in a real subprocess, so exit codes are the real ones."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mlrobust", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def classifier_file_shapes(path: Path, opset: int) -> tuple[Any, dict[str, list]]:
    """A bundled classifier's ONNX file, checked (full check, the opset, the thesis's op order:
    conv, ReLU, conv, ReLU, max-pool, flatten, linear) and shape-inferred: (the inferred graph,
    each value's shape)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == opset
    assert [node.op_type for node in model.graph.node] == ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten", "Gemm"]
    inferred = shape_inference.infer_shapes(model, strict_mode=True).graph
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.value_info, *inferred.input, *inferred.output]
    }
    return inferred, shapes
