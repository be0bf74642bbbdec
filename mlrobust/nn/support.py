"""What the verifiers support in an ONNX file, checked before anything runs.

An unsupported operator is an error that names the op, the node and the opset, never a
silent approximation. The op set here is the one the network IR's registry implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUPPORTED_OPS = frozenset(
    {
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "MaxPool",
        "Flatten",
        "Reshape",
        "BatchNormalization",
        "Identity",
        "Dropout",
        "Constant",
        "Softmax",  # only as the last op: dropped, it keeps the order of scores
        "Sigmoid",  # likewise
    }
)


@dataclass(frozen=True)
class UnsupportedOp:
    op_type: str
    node_name: str
    opset: int


@dataclass(frozen=True)
class OnnxSummary:
    """What the spec checker needs to know about a model without running it."""

    input_shape: tuple[int | str, ...]  # e.g. ("batch", 1, 64, 64)
    num_classes: int | None
    opset: int
    unsupported: tuple[UnsupportedOp, ...]


class OnnxLoadError(Exception):
    """The file is not a loadable, valid ONNX model."""


def _dims(value_info) -> tuple[int | str, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value_info.type.tensor_type.shape.dim
    )


def summarize_onnx(path: Path) -> OnnxSummary:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises many types (DecodeError, ValidationError, OSError)
        raise OnnxLoadError(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxLoadError(f"expected one input and one output, found {len(inputs)} and {len(graph.output)}")
    unsupported = []
    for position, node in enumerate(graph.node):
        trailing_activation = node.op_type in ("Softmax", "Sigmoid") and position == len(graph.node) - 1
        if node.op_type not in SUPPORTED_OPS or (node.op_type in ("Softmax", "Sigmoid") and not trailing_activation):
            unsupported.append(UnsupportedOp(node.op_type, node.name or f"#{position}", opset))
    output_dims = _dims(graph.output[0])
    num_classes = output_dims[-1] if output_dims and isinstance(output_dims[-1], int) else None
    return OnnxSummary(_dims(inputs[0]), num_classes, opset, tuple(unsupported))
