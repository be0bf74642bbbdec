"""What the verifiers support in an ONNX file, checked before anything runs (`lint`, `check`).

Derived, never copied: an op is supported when the importer's registry has a converter for it
(`onnx_import.REGISTRY`), and every IR op a converter produces has a rule in every domain of
the engine (tests/test_rule_tables.py holds that). A model whose ops are all supported is then
loaded exactly as `run` loads it (`network.load_network`: the import into the IR and the
cross-check against onnxruntime), so what the checker passes is what `run` accepts.
An unsupported operator is an error that names the op, the node and the opset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlrobust.nn.onnx_file import read_onnx


@dataclass(frozen=True)
class UnsupportedOp:
    op_type: str
    node_name: str
    opset: int
    domain: str = ""  # "" for ONNX's own ops


@dataclass(frozen=True)
class Refusal:
    """Why `run` would refuse a model whose op types are all known."""

    message: str
    hint: str | None
    op_type: str | None  # the op to blame (an unsupported variant of it), or None: the model as a whole


@dataclass(frozen=True)
class OnnxSummary:
    """What the spec checker needs to know about a model."""

    input_shape: tuple[int | str, ...]  # e.g. ("batch", 1, 64, 64)
    num_classes: int | None  # what the network computes (not what the file declares)
    opset: int
    unsupported: tuple[UnsupportedOp, ...]  # ops no converter handles
    refused: Refusal | None  # why loading the model fails, when every op is supported
    head: str | None = None  # the trailing Sigmoid / Softmax the import drops (None: it ends in logits)


def supported_op_types() -> tuple[str, ...]:
    from mlrobust.nn.onnx_import import supported_ops

    return tuple(sorted(supported_ops()))


def summarize_onnx(path: Path) -> OnnxSummary:
    """Raises OnnxFileError when the file does not load as a one-input, one-output model."""
    from mlrobust.errors import UserError
    from mlrobust.nn.network import NetworkMismatch, load_network
    from mlrobust.nn.onnx_import import supported_ops

    file = read_onnx(path)
    known = supported_ops()
    unsupported = tuple(
        UnsupportedOp(node.op_type, node.name or f"#{position}", file.opset, node.domain)
        for position, node in enumerate(file.graph.node)
        if node.op_type not in known or node.domain not in ("", "ai.onnx")
    )
    output = file.output_dims
    num_classes = output[-1] if output and isinstance(output[-1], int) else None
    refused = None
    head = None
    if not unsupported:
        try:
            network, _ = load_network(path)  # the very check `check` and `run` make on load
            num_classes = network.num_classes
            head = network.head
        except UserError as error:
            refused = Refusal(error.message, error.hint, getattr(error, "op_type", None))
        except NetworkMismatch as error:  # a bug in mlrobust, but lint's answer is still "not runnable"
            refused = Refusal(error.message, "this is a bug in mlrobust: please report it with the model", None)
    return OnnxSummary(file.input_dims, num_classes, file.opset, unsupported, refused, head)
