"""ONNX -> the network IR, through a registry of converters keyed by (op type, since version).

`onnx.defs.get_schema(op, opset)` resolves which version of an op a model uses; a converter
is registered for exactly the versions whose meaning it implements. An op (or version) that
is not registered is an error naming the op, the node and the opset, and listing what is
supported; nothing is approximated silently. The graph may branch: a node reads any earlier
computed value (weights and constants may feed any node), and Add, Sub and Concat join two
or more computed values (a residual block, parallel branches); the IR keeps the nodes'
topological order and each op's sources (`ops.inputs_of`). A last Sigmoid or Softmax (over
the classes) is the model's head: it is left out of the IR, which computes the logits before
it, and recorded (`ImportedGraph.head`) so that the check against onnxruntime compares
logits with logits (nn/network.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mlrobust.errors import UserError
from mlrobust.nn import ops as o
from mlrobust.nn.onnx_file import read_onnx


class UnsupportedModel(UserError):
    """The model uses something the network IR cannot represent exactly.

    `op_type` is set when one node is to blame (an op, or a variant of it, that no converter
    implements), so `lint` can tell "unsupported op" from "this model is broken".
    """

    def __init__(self, message: str, hint: str | None = None, op_type: str | None = None) -> None:
        super().__init__(message, hint)
        self.op_type = op_type


@dataclass(frozen=True)
class NodeContext:
    node: object  # onnx.NodeProto
    name: str
    opset: int
    in_shape: o.Shape
    data_input: str  # the name of the node's computed input
    constants: dict[str, np.ndarray]
    attributes: dict[str, object]

    def constant(self, index: int) -> np.ndarray | None:
        names = list(self.node.input)  # type: ignore[attr-defined]
        if index >= len(names) or not names[index]:
            return None
        return self.constants.get(names[index])

    def fail(self, why: str, supported: str | None = None) -> UnsupportedModel:
        """The refusal of this node: the op, the node, why, and (as the hint) what is supported."""
        op_type = self.node.op_type  # type: ignore[attr-defined]
        return UnsupportedModel(
            f"{op_type} node {self.name!r} (opset {self.opset}): {why}",
            hint=f"supported: {supported}" if supported else None,
            op_type=op_type,
        )


Converter = Callable[[NodeContext], list[o.Op]]
REGISTRY: dict[tuple[str, int], Converter] = {}
PASS_THROUGH = {"Identity", "Dropout"}  # no op at inference


def register(op_type: str, *since_versions: int) -> Callable[[Converter], Converter]:
    def add(function: Converter) -> Converter:
        for version in since_versions:
            if (op_type, version) in REGISTRY:
                raise ValueError(f"two converters for {op_type} v{version}")
            REGISTRY[(op_type, version)] = function
        return function

    return add


def supported_ops() -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    for op_type, version in sorted(REGISTRY):
        table.setdefault(op_type, []).append(version)
    return table


def _pairs(values, default):  # type: ignore[no-untyped-def]
    return tuple(int(v) for v in values) if values is not None else default


def _spatial_padding(ctx: NodeContext, kernel: tuple[int, int], stride, dilation) -> tuple[int, int, int, int]:
    auto_pad = ctx.attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("NOTSET", ""):
        pads = _pairs(ctx.attributes.get("pads"), (0, 0, 0, 0))
        return (pads[0], pads[1], pads[2], pads[3])
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        padding = []
        for axis in (0, 1):
            size = ctx.in_shape[1 + axis]
            out = -(-size // stride[axis])
            total = max(0, (out - 1) * stride[axis] + (kernel[axis] - 1) * dilation[axis] + 1 - size)
            small, large = total // 2, total - total // 2
            padding.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
        return (padding[0][0], padding[1][0], padding[0][1], padding[1][1])
    raise ctx.fail(f"auto_pad {auto_pad!r} is not supported")


@register("Conv", 1, 11, 22)
def _conv(ctx: NodeContext) -> list[o.Op]:
    weight = ctx.constant(1)
    if weight is None or weight.ndim != 4:
        raise ctx.fail("only 2-D convolutions with constant weights are supported")
    group = int(ctx.attributes.get("group", 1))
    if len(ctx.in_shape) != 3 or ctx.in_shape[0] != weight.shape[1] * group or weight.shape[0] % group:
        raise ctx.fail(f"input shape {ctx.in_shape} does not match the weight {weight.shape} (group = {group})")
    if group != 1:
        weight = _ungrouped(weight, group)
    bias = ctx.constant(2)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride = _pairs(ctx.attributes.get("strides"), (1, 1))
    dilation = _pairs(ctx.attributes.get("dilations"), (1, 1))
    padding = _spatial_padding(ctx, kernel, stride, dilation)
    _, height, width = ctx.in_shape
    out_h = (height + padding[0] + padding[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + padding[1] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return [
        o.Conv(
            weight.astype(np.float64),
            (bias if bias is not None else np.zeros(weight.shape[0])).astype(np.float64),
            (stride[0], stride[1]),
            padding,
            (dilation[0], dilation[1]),
            ctx.in_shape,
            (int(weight.shape[0]), out_h, out_w),
        )
    ]


def _ungrouped(weight: np.ndarray, group: int) -> np.ndarray:
    """A grouped convolution's weight as the dense one it equals: block-diagonal over channels.

    Exact (each output channel gets zeros for the inputs outside its group), so every verifier
    handles it as a plain Conv; it costs `group` times the weight's memory.
    """
    out_per_group, in_per_group = weight.shape[0] // group, weight.shape[1]
    dense = np.zeros((weight.shape[0], in_per_group * group, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(group):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * in_per_group : (g + 1) * in_per_group] = weight[rows]
    return dense


@register("Gemm", 1, 6, 7, 9, 11, 13)
def _gemm(ctx: NodeContext) -> list[o.Op]:
    inputs = list(ctx.node.input)  # type: ignore[attr-defined]
    if inputs[0] != ctx.data_input or int(ctx.attributes.get("transA", 0)):
        raise ctx.fail("only x @ W with the data as the first, untransposed input is supported")
    b = ctx.constant(1)
    if b is None or len(ctx.in_shape) != 1:
        raise ctx.fail("the weight must be a constant and the input flat")
    weight = b.T if int(ctx.attributes.get("transB", 0)) else b  # (in, out) -> used as x @ weight
    weight = float(ctx.attributes.get("alpha", 1.0)) * weight.astype(np.float64)
    c = ctx.constant(2)
    bias = np.zeros(weight.shape[1]) if c is None else float(ctx.attributes.get("beta", 1.0)) * c.astype(np.float64)
    bias = np.broadcast_to(bias, (weight.shape[1],)).astype(np.float64)
    if weight.shape[0] != ctx.in_shape[0]:
        raise ctx.fail(f"input of size {ctx.in_shape[0]} does not match the weight {b.shape}")
    return [o.Linear(np.ascontiguousarray(weight.T), bias.copy(), ctx.in_shape, (int(weight.shape[1]),))]


@register("MatMul", 1, 9, 13)
def _matmul(ctx: NodeContext) -> list[o.Op]:
    inputs = list(ctx.node.input)  # type: ignore[attr-defined]
    weight = ctx.constant(1)
    if inputs[0] != ctx.data_input or weight is None or weight.ndim != 2 or len(ctx.in_shape) != 1:
        raise ctx.fail("only flat x @ W with a constant 2-D W is supported")
    return [
        o.Linear(
            np.ascontiguousarray(weight.T.astype(np.float64)),
            np.zeros(weight.shape[1]),
            ctx.in_shape,
            (int(weight.shape[1]),),
        )
    ]


def _elementwise(ctx: NodeContext, kind: str) -> list[o.Op]:
    inputs = list(ctx.node.input)  # type: ignore[attr-defined]
    other_index = 1 if inputs[0] == ctx.data_input else 0
    constant = ctx.constant(other_index)
    if constant is None:
        raise ctx.fail("both inputs are computed; only operations with a constant are supported")
    full = (1, *ctx.in_shape)
    try:
        if np.broadcast_shapes(constant.shape, full) != full:
            raise ValueError
        value = np.broadcast_to(constant.astype(np.float64), full)[0].copy()
    except ValueError:
        raise ctx.fail(f"the constant of shape {constant.shape} changes the shape {ctx.in_shape}") from None
    ones, zeros = np.ones_like(value), np.zeros_like(value)
    if kind == "Add":
        scale, shift = ones, value
    elif kind == "Sub":
        scale, shift = (ones, -value) if other_index == 1 else (-ones, value)
    elif kind == "Mul":
        scale, shift = value, zeros
    else:  # Div
        if other_index == 0:
            raise ctx.fail("constant / x is not affine")
        if np.any(value == 0):
            raise ctx.fail("division by a constant containing zero", "Div by a constant with no zero entry")
        scale, shift = 1.0 / value, zeros
    return [o.Affine(scale, shift, ctx.in_shape, ctx.in_shape)]


for _kind in ("Add", "Sub", "Mul", "Div"):
    register(_kind, 7, 13, 14)(lambda ctx, kind=_kind: _elementwise(ctx, kind))


@register("BatchNormalization", 7, 9, 14, 15)
def _batch_norm(ctx: NodeContext) -> list[o.Op]:
    if int(ctx.attributes.get("training_mode", 0)):
        raise ctx.fail("training_mode = 1 is not inference")
    parts = [ctx.constant(i) for i in range(1, 5)]
    if any(p is None for p in parts):
        raise ctx.fail("scale, bias, mean and variance must be constants")
    scale, bias, mean, var = (p.astype(np.float64) for p in parts)  # type: ignore[union-attr]
    factor = scale / np.sqrt(var + float(ctx.attributes.get("epsilon", 1e-5)))
    shape = (-1,) + (1,) * (len(ctx.in_shape) - 1)
    full = np.ones(ctx.in_shape)
    return [
        o.Affine(full * factor.reshape(shape), full * (bias - mean * factor).reshape(shape), ctx.in_shape, ctx.in_shape)
    ]


@register("Relu", 1, 6, 13, 14)
def _relu(ctx: NodeContext) -> list[o.Op]:
    return [o.Relu(ctx.in_shape, ctx.in_shape)]


@register("LeakyRelu", 1, 6, 16)
def _leaky_relu(ctx: NodeContext) -> list[o.Op]:
    slope = float(ctx.attributes.get("alpha", 0.01))  # type: ignore[arg-type]
    if not 0.0 <= slope <= 1.0:
        raise ctx.fail(f"alpha = {slope} makes it non-convex", "LeakyRelu with 0 <= alpha <= 1")
    return [o.LeakyRelu(slope, ctx.in_shape, ctx.in_shape)]


@register("MaxPool", 1, 8, 10, 11, 12, 22)
def _maxpool(ctx: NodeContext) -> list[o.Op]:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:  # type: ignore[attr-defined]
        raise ctx.fail("the Indices output is not supported")
    kernel = _pairs(ctx.attributes.get("kernel_shape"), None)
    if kernel is None or len(kernel) != 2 or len(ctx.in_shape) != 3:
        raise ctx.fail("only 2-D max-pools are supported")
    stride = _pairs(ctx.attributes.get("strides"), (1, 1))
    dilation = _pairs(ctx.attributes.get("dilations"), (1, 1))
    padding = _spatial_padding(ctx, kernel, stride, dilation)
    if int(ctx.attributes.get("ceil_mode", 0)):
        padding = _ceil_mode_padding(ctx.in_shape, kernel, stride, padding, dilation)
    windows, out_shape = o.maxpool_windows(ctx.in_shape, kernel, stride, padding, dilation)
    return [
        o.MaxPool(
            (kernel[0], kernel[1]),
            (stride[0], stride[1]),
            padding,
            (dilation[0], dilation[1]),
            ctx.in_shape,
            out_shape,
            windows,
        )
    ]


def _ceil_mode_padding(
    in_shape: o.Shape,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, ...],
) -> tuple[int, int, int, int]:
    """ceil_mode = 1 as extra bottom/right padding (max-pool padding is -inf, so it adds no value).

    Rounding the output size up adds a last, partial window, except one that would start in the
    bottom/right padding (the rule of onnxruntime and PyTorch); the load-time check against
    onnxruntime confirms the shape and the values.
    """
    extra = []
    for axis in (0, 1):
        size, before, after = in_shape[1 + axis], padding[axis], padding[2 + axis]
        span = size + before + after - dilation[axis] * (kernel[axis] - 1) - 1
        out = -(-span // stride[axis]) + 1
        if (out - 1) * stride[axis] >= size + before:
            out -= 1
        extra.append(max(0, (out - 1) * stride[axis] - span))
    return (padding[0], padding[1], padding[2] + extra[0], padding[3] + extra[1])


@register("AveragePool", 1, 7, 10, 11, 19, 22)
def _average_pool(ctx: NodeContext) -> list[o.Op]:
    """Average pooling as the linear op it is: a Conv summing each channel's window (an identity
    over channels, exact) times 1 / the window's count. With `count_include_pad = 0` (ONNX's
    default) and padding, the border windows count fewer pixels: a per-position scale after the
    Conv (an Affine the fold leaves alone), so every verifier handles it with its existing rules."""
    kernel = _pairs(ctx.attributes.get("kernel_shape"), None)
    if kernel is None or len(kernel) != 2 or len(ctx.in_shape) != 3:
        raise ctx.fail("only 2-D average pools are supported")
    if int(ctx.attributes.get("ceil_mode", 0)):
        raise ctx.fail("ceil_mode = 1 is not supported for AveragePool", "export it with ceil_mode = 0 (the default)")
    stride = _pairs(ctx.attributes.get("strides"), (1, 1))
    dilation = _pairs(ctx.attributes.get("dilations"), (1, 1))
    padding = _spatial_padding(ctx, kernel, stride, dilation)
    include_pad = bool(int(ctx.attributes.get("count_include_pad", 0)))
    return _window_sum(ctx.in_shape, kernel, stride, padding, dilation, include_pad)


@register("GlobalAveragePool", 1, 22)
def _global_average_pool(ctx: NodeContext) -> list[o.Op]:
    if len(ctx.in_shape) != 3:
        raise ctx.fail("only 2-D global average pools (batch, channels, height, width) are supported")
    _, height, width = ctx.in_shape
    return _window_sum(ctx.in_shape, (height, width), (1, 1), (0, 0, 0, 0), (1, 1), True)


def _window_sum(
    in_shape: o.Shape,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, ...],
    include_pad: bool,
) -> list[o.Op]:
    channels, height, width = in_shape
    out_h = (height + padding[0] + padding[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + padding[1] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    out_shape = (channels, out_h, out_w)
    weight = np.zeros((channels, channels, kernel[0], kernel[1]))
    weight[np.arange(channels), np.arange(channels)] = 1.0
    conv = o.Conv(
        weight, np.zeros(channels), (stride[0], stride[1]), padding, (dilation[0], dilation[1]), in_shape, out_shape
    )
    if include_pad or not any(padding):
        return [replace(conv, weight=weight / (kernel[0] * kernel[1]))]
    # the pixels of each window inside the image: the same window sum over an image of ones
    one_channel = (1, height, width)
    ones = o.Conv(weight[:1, :1], np.zeros(1), conv.stride, padding, conv.dilation, one_channel, (1, out_h, out_w))
    counts = ones.forward(torch.ones((1, 1, height, width), dtype=torch.float64))[0].numpy()
    if counts.min() < 1:  # a window wholly in the padding (pads >= the kernel): ONNX divides by 0 there
        raise UnsupportedModel("an AveragePool window lies wholly in its padding", op_type="AveragePool")
    scale = np.broadcast_to(1.0 / counts, out_shape).copy()
    return [conv, o.Affine(scale, np.zeros(out_shape), out_shape, out_shape)]


@register("Flatten", 1, 9, 11, 13, 21, 23, 24, 25)
def _flatten(ctx: NodeContext) -> list[o.Op]:
    if int(ctx.attributes.get("axis", 1)) != 1:
        raise ctx.fail("only axis = 1 (keep the batch) is supported")
    return [o.Reshape(ctx.in_shape, (int(np.prod(ctx.in_shape)),))]


@register("Reshape", 5, 13, 14, 19, 21, 23, 24, 25)
def _reshape(ctx: NodeContext) -> list[o.Op]:
    target = ctx.constant(1)
    if target is None:
        raise ctx.fail("the target shape must be a constant")
    target = [int(v) for v in target]
    if not int(ctx.attributes.get("allowzero", 0)):
        full = (1, *ctx.in_shape)
        target = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(target)]
    try:
        out = np.empty((1, *ctx.in_shape)).reshape(target).shape
    except ValueError:
        raise ctx.fail(f"cannot reshape {ctx.in_shape} to {target}") from None
    if out[0] != 1:
        raise ctx.fail("reshapes that move the batch dimension are not supported")
    return [o.Reshape(ctx.in_shape, tuple(int(d) for d in out[1:]))]


for _kind in PASS_THROUGH:
    versions = {"Identity": (1, 13, 14, 16, 19, 21, 23, 24, 25), "Dropout": (1, 6, 7, 10, 12, 13, 22)}[_kind]
    register(_kind, *versions)(lambda ctx: [])
register("Softmax", 1, 11, 13)(lambda ctx: [])  # only ever reached as the last node (checked by the walker)
register("Sigmoid", 1, 6, 13)(lambda ctx: [])
register("Constant", 1, 9, 11, 12, 13, 19, 21, 23, 24, 25)(lambda ctx: [])
register("Concat", 1, 4, 11, 13)(lambda ctx: [])  # joins computed values: built by `_merge`, never alone
HEADS = ("Sigmoid", "Softmax")  # dropped as the model's last node: the IR computes the logits before them
MERGES = ("Add", "Sub", "Concat")  # the ops that may read two or more computed values


def _require_class_axis(ctx: NodeContext) -> None:
    """A Softmax head must normalise over the classes of each image, never across the batch:
    only then is it order-preserving per image, so that dropping it keeps the top-k sets."""
    default = -1 if ctx.opset >= 13 else 1
    axis = int(ctx.attributes.get("axis", default))  # type: ignore[call-overload]
    if len(ctx.in_shape) != 1 or axis not in (1, -1):
        raise ctx.fail(
            f"axis {axis} on logits of shape (batch, {', '.join(map(str, ctx.in_shape))}) is not the class axis",
            "Softmax over the classes of a (batch, classes) tensor: axis = 1 or -1",
        )


def _folded(previous: o.Op, op: o.Op) -> o.Op | None:
    """`op` (an elementwise affine) merged into the Conv/Linear/Affine before it, or None."""
    if not isinstance(op, o.Affine):
        return None
    if isinstance(previous, o.Conv):
        scale, shift = op.scale, op.shift
        if not (np.all(scale == scale[:, :1, :1]) and np.all(shift == shift[:, :1, :1])):
            return None
        s, t = scale[:, 0, 0], shift[:, 0, 0]
        return replace(previous, weight=previous.weight * s[:, None, None, None], bias=previous.bias * s + t, _cache={})
    if isinstance(previous, o.Linear):
        return replace(
            previous, weight=previous.weight * op.scale[:, None], bias=previous.bias * op.scale + op.shift, _cache={}
        )
    if isinstance(previous, o.Affine):
        return replace(
            previous,
            scale=previous.scale * op.scale,
            shift=previous.shift * op.scale + op.shift,
            out_shape=op.out_shape,
            _cache={},
        )
    return None


def _fold(ops: list[o.Op]) -> list[o.Op]:
    """Fold an elementwise affine into the Conv/Linear/Affine before it (BatchNorm after a conv,
    Add as a bias) when it is that op's only reader; sources are renumbered past each fold."""
    ops = list(ops)
    index = 1
    while index < len(ops):
        merged = _folded(ops[index - 1], ops[index])
        if merged is None or o.inputs_of(ops, index) != (index,) or len(o.consumers(ops, index)) != 1:
            index += 1
            continue
        # op index goes; its output (value index + 1) is now the merged op's (value index)
        ops[index - 1] = merged
        del ops[index]
        ops = [replace(op, sources=_renumbered(op.sources, index)) if op.sources else op for op in ops]
    return _canonical(ops)


def _renumbered(sources: tuple[int, ...], removed: int) -> tuple[int, ...]:
    """Value indices after the op whose output was value `removed + 1` is folded away."""
    return tuple(value - 1 if value > removed else value for value in sources)


def _canonical(ops: list[o.Op]) -> list[o.Op]:
    """Sources that name the previous op's output dropped: a chain's ops name none."""
    return [
        replace(op, sources=()) if op.sources == (index,) and not isinstance(op, o.MERGE_OPS) else op
        for index, op in enumerate(ops)
    ]


def _merge(ctx: NodeContext, op_type: str, sources: list[int], shapes: list[o.Shape]) -> o.Op:
    """The IR op of an Add / Sub / Concat of computed values (`sources`, of `shapes`)."""
    if op_type in ("Add", "Sub"):
        if len(shapes) != 2 or shapes[0] != shapes[1]:
            raise ctx.fail(
                f"the computed inputs have shapes {shapes}",
                "Add / Sub of two computed values of the same shape (no broadcasting between them)",
            )
        signs = (1.0, 1.0) if op_type == "Add" else (1.0, -1.0)
        return o.Add(shapes[0], shapes[0], tuple(sources), signs)
    rank = len(shapes[0])
    axis = int(ctx.attributes.get("axis", 1))  # type: ignore[call-overload]
    axis = axis + rank + 1 if axis < 0 else axis
    if not 1 <= axis <= rank:
        raise ctx.fail(f"axis {ctx.attributes.get('axis')} is the batch axis", "Concat along a non-batch axis")
    rest = [shape[: axis - 1] + shape[axis:] for shape in shapes]
    if any(len(shape) != rank for shape in shapes) or any(other != rest[0] for other in rest):
        raise ctx.fail(f"the inputs' shapes {shapes} differ outside axis {axis}")
    out = list(shapes[0])
    out[axis - 1] = sum(shape[axis - 1] for shape in shapes)
    return o.Concat(axis - 1, tuple(shapes), shapes[0], tuple(out), tuple(sources))


def _attributes(node) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


@dataclass(frozen=True)
class ImportedGraph:
    ops: tuple[o.Op, ...]
    input_shape: o.Shape
    output_shape: o.Shape  # of the logits: the tensor before `head`
    opset: int
    # A trailing Sigmoid or Softmax, left out of `ops`: both keep the order of the classes, so the
    # top-k property holds on the logits exactly when it holds on the probabilities (ties aside),
    # and every verifier reasons on logits. None when the model ends in its logits.
    head: str | None = None


# Constant attributes that hold a number or a list of numbers, read as numpy arrays of their type.
_CONSTANT_LISTS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}


def _constant_value(name: str, attributes: dict[str, object]) -> np.ndarray:
    """A Constant node's value: a tensor, or the scalar/list forms (opset 12+), read exactly."""
    from onnx import numpy_helper

    if "value" in attributes:
        return numpy_helper.to_array(attributes["value"])  # type: ignore[arg-type]
    for key, dtype in _CONSTANT_LISTS.items():
        if key in attributes:
            return np.asarray(attributes[key], dtype=dtype)
    given = ", ".join(attributes) or "none"
    raise UnsupportedModel(
        f"Constant node {name!r}: the attribute {given} is not supported",
        hint="supported: value, " + ", ".join(_CONSTANT_LISTS),
        op_type="Constant",
    )


def _require_finite(path: Path, what: str, value: np.ndarray) -> None:
    """NaN or inf in a weight makes every output NaN or inf: nothing to verify, so say where it is."""
    if value.dtype.kind != "f" or np.all(np.isfinite(value)):
        return
    bad = int(np.count_nonzero(~np.isfinite(value)))
    raise UnsupportedModel(
        f"{path.name}: {what} holds {bad} NaN or infinite value(s) of {value.size}",
        hint="the model is broken (a diverged training run, or an overflow on export); re-export a good checkpoint",
    )


def import_onnx(path: Path) -> ImportedGraph:
    """Read an ONNX file into IR ops; raises UnsupportedModel (a user error) with the reason."""
    import onnx
    from onnx import numpy_helper

    file = read_onnx(path)
    opset = file.opset
    graph = file.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for name, value in constants.items():
        _require_finite(path, f"the initializer {name!r}", value)
    batch, *dims = file.input_dims or ("?",)
    if isinstance(batch, int) and batch != 1:
        raise UnsupportedModel(
            f"{path.name}: the input's batch dimension is fixed to {batch}",
            hint="export the model with a batch of 1 or a dynamic batch dimension",
        )
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise UnsupportedModel(
            f"{path.name}: the input shape {file.input_dims} must be fixed except the batch",
            hint="export the model with fixed channels, height and width (dynamic_axes only for the batch)",
        )
    input_shape: o.Shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    value_of = {file.input.name: 0}  # type: ignore[attr-defined]  # computed tensor name -> value index
    shapes: list[o.Shape] = [input_shape]  # value index -> shape
    ops: list[o.Op] = []
    head: str | None = None
    nodes = list(graph.node)
    output_name = graph.output[0].name
    for position, node in enumerate(nodes):
        name = node.name or f"#{position}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModel(
                f"{node.op_type} node {name!r} is in domain {node.domain!r}; only ONNX ops are supported",
                hint="supported ops (domain ai.onnx): " + ", ".join(sorted(supported_ops())),
                op_type=node.op_type,
            )
        try:
            since = onnx.defs.get_schema(node.op_type, opset, node.domain).since_version
        except Exception:
            since = -1
        converter = REGISTRY.get((node.op_type, since))
        if converter is None:
            known = supported_ops()
            versions = f" (supported versions: {known[node.op_type]})" if node.op_type in known else ""
            raise UnsupportedModel(
                f"{node.op_type} node {name!r} (opset {opset}, op version {since}) is not supported{versions}; "
                f"supported ops: {', '.join(sorted(known))}",
                op_type=node.op_type,
            )
        attributes = _attributes(node)
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_value(name, attributes)
            _require_finite(path, f"the Constant node {name!r}", constants[node.output[0]])
            continue
        computed = [x for x in node.input if x and x not in constants]
        unknown = [x for x in computed if x not in value_of]
        if unknown or not computed:
            why = f"reads {unknown[0]!r}, which no earlier node computes" if unknown else "reads only constants"
            raise UnsupportedModel(
                f"{node.op_type} node {name!r}: it {why}",
                hint="the nodes must be in topological order and every node must depend on the input "
                "(onnx.checker.check_model and onnxsim help)",
                op_type=node.op_type,
            )
        sources = [value_of[x] for x in computed]
        ctx = NodeContext(node, name, opset, shapes[sources[0]], computed[0], constants, attributes)
        if node.op_type in HEADS and len(computed) == 1:
            if position != len(nodes) - 1 or node.output[0] != output_name:
                raise UnsupportedModel(
                    f"{node.op_type} node {name!r} is only supported as the last op", op_type=node.op_type
                )
            if node.op_type == "Softmax":
                _require_class_axis(ctx)
            head = node.op_type
            value_of[node.output[0]] = sources[0]
            break
        if len(computed) > 1 or node.op_type == "Concat":
            if node.op_type not in MERGES:
                raise ctx.fail(
                    f"it reads {len(computed)} computed values ({', '.join(map(repr, computed))})",
                    "only Add, Sub and Concat may join computed values (a product of two is not piecewise linear)",
                )
            if node.op_type == "Concat" and len(computed) != len(node.input):
                raise ctx.fail("a constant input is not supported", "Concat of computed values only")
            if len(computed) == 1:  # a Concat of one value is that value
                value_of[node.output[0]] = sources[0]
                continue
            ops.append(_merge(ctx, node.op_type, sources, [shapes[v] for v in sources]))
            shapes.append(ops[-1].out_shape)
            value_of[node.output[0]] = len(ops)
            continue
        value = sources[0]
        for op in converter(ctx):  # a converter's ops are a chain from the node's input
            ops.append(replace(op, sources=(value,)))
            shapes.append(op.out_shape)
            value = len(ops)
        value_of[node.output[0]] = value
    if output_name not in value_of:
        raise UnsupportedModel(f"{path.name}: no node computes the graph output {output_name!r}")
    if not ops or value_of[output_name] != len(ops):
        raise UnsupportedModel(
            f"{path.name}: the graph output {output_name!r} is not computed by its last node"
            + ("" if ops else " (the graph computes nothing from its input)"),
            hint="export only the nodes on the way to the output",
        )
    shape = shapes[-1]
    declared = file.output_dims[1:]
    if declared and all(isinstance(d, int) for d in declared) and tuple(declared) != shape:
        raise UnsupportedModel(
            f"{path.name} declares its output {graph.output[0].name!r} as {'×'.join(map(str, declared))} values "
            f"but its graph computes {'×'.join(map(str, shape))}",
            hint="fix the output's declared shape (re-export the model, or run onnx.shape_inference on it)",
        )
    return ImportedGraph(tuple(_fold(ops)), input_shape, shape, opset, head)
