"""The network IR's ops: explicit, frozen, with their weights as float64 arrays.

Affine ops (Conv, Linear, Affine, Flatten, Reshape) are maps y = A x + b; the bound engine
uses `forward` (A x + b on a batch), `transpose` (Aᵀ λ on a batch of rows λ) and `bias_dot`
(λ · b). Merge ops (Add, Concat) are linear maps of two or more computed values: `forward`
takes them all, `transpose` returns the rows of each. Relu, LeakyRelu and MaxPool are the
nonlinear ops. Shapes exclude the batch dimension.

A network is a tuple of ops in topological order over *values*: value 0 is the input, value
i + 1 the output of op i, and the last op's output is the network's. Each op reads the values
in its `sources`; an empty `sources` means the previous op's output (value i), so a
chain-shaped network is exactly the tuple it always was, and only a branching one (a residual
Add, a Concat of branches) names its sources. `inputs_of` reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Shape = tuple[int, ...]
# a strided convolution of at most this many input channels transposes by output phase in float32
PHASE_CHANNELS = 4
T = TypeVar("T")
R = TypeVar("R")


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(array, dtype=like.dtype, device=like.device)


def memo(op: AffineOp, key: Hashable, build: Callable[[], T]) -> T:
    """What `build` derives from the op's (immutable) weights, built once per op and key.

    The one way any module caches on an op (the weight as a tensor per dtype here, a patch
    matrix in `verify.patches`, a sparse matrix in `verify.milp_encoding`): the values depend
    on nothing but the op, so they live and die with it.
    """
    if key not in op._cache:
        op._cache[key] = build()
    return op._cache[key]


def _cached_weight(op: Conv | Linear, like: torch.Tensor) -> torch.Tensor:
    """The op's weight as a tensor of `like`'s dtype and device, converted once per both."""
    return memo(op, ("w", like.dtype, like.device), lambda: _tensor(op.weight, like))


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution, groups = 1. padding = (top, left, bottom, right)."""

    weight: np.ndarray  # (Cout, Cin, kh, kw)
    bias: np.ndarray  # (Cout,)
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    in_shape: Shape
    out_shape: Shape
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    sources: tuple[int, ...] = ()

    def _w(self, like: torch.Tensor) -> torch.Tensor:
        return _cached_weight(self, like)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        top, left, bottom, right = self.padding
        return F.pad(x, (left, right, top, bottom)) if any(self.padding) else x

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self._padded(x), self._w(x), None, self.stride, 0, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + _tensor(self.bias, x).view(1, -1, 1, 1)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self._padded(x), self._w(x).abs(), None, self.stride, 0, self.dilation)

    def transpose(self, rows: torch.Tensor) -> torch.Tensor:
        top, left, bottom, right = self.padding
        c, h, w = self.in_shape
        if rows.dtype == torch.float32 and self._by_phases():
            return self._transpose_by_phases(rows)[:, :, top : top + h, left : left + w]
        padded = (rows.shape[0], c, h + top + bottom, w + left + right)
        grad = torch.nn.grad.conv2d_input(padded, self._w(rows), rows, self.stride, 0, self.dilation)
        return grad[:, :, top : top + h, left : left + w]

    def _by_phases(self) -> bool:
        """Whether `transpose` goes by output phase: a strided, undilated convolution of few input
        channels (a first layer). PyTorch's float32 CPU kernel for its input gradient is slow
        there (the PGD model's first layer, 1 channel, 8×8 at stride 4: 8 ms for 48 rows, against
        1 ms by phases, and 20 against 4.5 ms with the backward pass); with many channels, or
        in float64, the two are even or the plain kernel wins."""
        return self.stride != (1, 1) and self.dilation == (1, 1) and self.weight.shape[1] <= PHASE_CHANNELS

    def _transpose_by_phases(self, rows: torch.Tensor) -> torch.Tensor:
        """Aᵀλ on the padded input, by output phase: the padded input's pixel (s q + r) only
        receives the kernel taps a ≡ r (mod s), so each phase r is a stride-1 convolution of the
        rows with the sub-kernel of those taps (flipped), and the phases interleave back. One
        conv2d computes every phase (s_h·s_w·C_in output channels), then a reshape interleaves."""
        s_h, s_w = self.stride
        kernel, (t_h, t_w) = self.phase_kernel(rows.dtype, rows.device)
        count, inputs = rows.shape[0], self.weight.shape[1]
        phases = F.conv2d(F.pad(rows, (t_w - 1, t_w - 1, t_h - 1, t_h - 1)), kernel)  # (N, C_in·s_h·s_w, Q_h, Q_w)
        q_h, q_w = phases.shape[2], phases.shape[3]
        image = phases.view(count, inputs, s_h, s_w, q_h, q_w).permute(0, 1, 4, 2, 5, 3)
        image = image.reshape(count, inputs, q_h * s_h, q_w * s_w)
        top, left = self.padding[:2]
        h, w = self.in_shape[1:]
        # the last rows of the padded input that no output reads (the stride's remainder) get 0
        missing = (max(0, top + h - image.shape[2]), max(0, left + w - image.shape[3]))
        return F.pad(image, (0, missing[1], 0, missing[0])) if any(missing) else image

    def phase_kernel(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> tuple[torch.Tensor, Shape]:
        """The transpose's sub-kernel per output phase, in that dtype and device (built once):
        (C_in·s_h·s_w, C_out, T_h, T_w), T = ceil(k / s) taps per axis, reversed; taps past the
        kernel are 0. Also the float32 patch path's GEMM factor (`verify.patches._Phases`)."""
        like = torch.empty(0, dtype=dtype, device=device)
        return memo(self, ("phase kernel", like.dtype, like.device), lambda: self._phase_kernel(like))

    def _phase_kernel(self, like: torch.Tensor) -> tuple[torch.Tensor, Shape]:
        weight = self._w(like)
        outputs, inputs, k_h, k_w = weight.shape
        s_h, s_w = self.stride
        t_h, t_w = -(-k_h // s_h), -(-k_w // s_w)
        padded = F.pad(weight, (0, t_w * s_w - k_w, 0, t_h * s_h - k_h))
        # padded[c, k, s_h·t_y + r_y, s_w·t_x + r_x] -> [k, r_y, r_x, c, t_y, t_x]
        taps = padded.view(outputs, inputs, t_h, s_h, t_w, s_w).permute(1, 3, 5, 0, 2, 4).flip(4, 5)
        return taps.reshape(inputs * s_h * s_w, outputs, t_h, t_w).contiguous(), (t_h, t_w)

    def bias_dot(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows.sum(dim=(2, 3)) * _tensor(self.bias, rows)).sum(dim=1)


@dataclass(frozen=True, eq=False)
class Linear:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)
    in_shape: Shape
    out_shape: Shape
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    sources: tuple[int, ...] = ()

    def _w(self, like: torch.Tensor) -> torch.Tensor:
        return _cached_weight(self, like)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._w(x).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + _tensor(self.bias, x)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._w(x).abs().T

    def transpose(self, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self._w(rows)

    def bias_dot(self, rows: torch.Tensor) -> torch.Tensor:
        return rows @ _tensor(self.bias, rows)


@dataclass(frozen=True, eq=False)
class Affine:
    """Elementwise y = scale * x + shift (input normalisation, a BatchNorm not after a conv)."""

    scale: np.ndarray  # broadcastable to in_shape
    shift: np.ndarray
    in_shape: Shape
    out_shape: Shape
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    sources: tuple[int, ...] = ()

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * _tensor(self.scale, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _tensor(self.scale, x) + _tensor(self.shift, x)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * _tensor(np.abs(self.scale), x)

    def transpose(self, rows: torch.Tensor) -> torch.Tensor:
        return rows * _tensor(self.scale, rows)

    def bias_dot(self, rows: torch.Tensor) -> torch.Tensor:
        shift = torch.broadcast_to(_tensor(self.shift, rows), rows.shape[1:])
        return (rows * shift).flatten(1).sum(dim=1)


@dataclass(frozen=True, eq=False)
class Reshape:
    """Flatten and Reshape: a relabelling of the same numbers."""

    in_shape: Shape
    out_shape: Shape
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    sources: tuple[int, ...] = ()

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    forward = linear
    abs_linear = linear

    def transpose(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.reshape(rows.shape[0], *self.in_shape)

    def bias_dot(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.new_zeros(rows.shape[0])


@dataclass(frozen=True, eq=False)
class Relu:
    in_shape: Shape
    out_shape: Shape
    sources: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


@dataclass(frozen=True, eq=False)
class MaxPool:
    """2-D max-pool (no ceil mode); `windows[o]` lists the flat input indices of output o."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    in_shape: Shape
    out_shape: Shape
    windows: np.ndarray = field(repr=False)  # (out_size, window) int64, -1 where the window hits padding
    sources: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        padded = torch.cat([flat, flat.new_full((flat.shape[0], 1), float("-inf"))], dim=1)
        index = torch.as_tensor(np.where(self.windows < 0, flat.shape[1], self.windows), device=x.device)
        return padded[:, index].max(dim=2).values.reshape(x.shape[0], *self.out_shape)


@dataclass(frozen=True, eq=False)
class LeakyRelu:
    """y = max(x, slope·x) with 0 <= slope <= 1 (ONNX's `alpha`): convex and monotone, like ReLU."""

    slope: float
    in_shape: Shape
    out_shape: Shape
    sources: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * self.slope)


@dataclass(frozen=True, eq=False)
class Add:
    """y = a + b or a - b of two computed values of one shape (a residual connection); `signs`
    are the two factors (+1, +1 for Add, +1, -1 for Sub)."""

    in_shape: Shape
    out_shape: Shape
    sources: tuple[int, ...]
    signs: tuple[float, float] = (1.0, 1.0)

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        return self.signs[0] * values[0] + self.signs[1] * values[1]

    def transpose(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(rows if sign == 1.0 else sign * rows for sign in self.signs)


@dataclass(frozen=True, eq=False)
class Concat:
    """The inputs joined along `axis` (of the unbatched shape: 0 is the channels of a (C, H, W)
    map, or the features of a vector); `in_shape` is the first input's, `in_shapes` all of them."""

    axis: int
    in_shapes: tuple[Shape, ...]
    in_shape: Shape
    out_shape: Shape
    sources: tuple[int, ...]

    @property
    def sizes(self) -> list[int]:
        return [shape[self.axis] for shape in self.in_shapes]

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        return torch.cat(values, dim=self.axis + 1)

    def transpose(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(rows, self.sizes, dim=self.axis + 1))


AffineOp = Conv | Linear | Affine | Reshape
MergeOp = Add | Concat
Op = AffineOp | MergeOp | Relu | LeakyRelu | MaxPool

# The op kinds, each listed once. Every rule table of the bound engine, the MILP encoding and
# the patch path has one entry per type in OP_TYPES (tests/test_rule_tables.py), and a lookup
# that finds none raises MissingRule: an op is never handled by another op's rule.
AFFINE_OPS: tuple[type, ...] = (Conv, Linear, Affine, Reshape)  # y = A x + b
RELABELLING_OPS: tuple[type, ...] = (Reshape,)  # A is the identity on the flattened numbers
MERGE_OPS: tuple[type, ...] = (Add, Concat)  # linear in two or more computed values
NONLINEAR_OPS: tuple[type, ...] = (Relu, LeakyRelu, MaxPool)  # relaxed from their input's bounds
OP_TYPES: tuple[type, ...] = AFFINE_OPS + MERGE_OPS + NONLINEAR_OPS


def inputs_of(ops: Sequence[Op], index: int) -> tuple[int, ...]:
    """The values op `index` reads (value 0: the network's input; value i + 1: op i's output)."""
    return getattr(ops[index], "sources", ()) or (index,)


def input_of(ops: Sequence[Op], index: int) -> int:
    """The one value a single-input op reads."""
    sources = inputs_of(ops, index)
    assert len(sources) == 1, f"{type(ops[index]).__name__} reads {len(sources)} values"
    return sources[0]


def is_chain(ops: Sequence[Op]) -> bool:
    """Every op reads the previous op's output: the shape the patch path and slices assume."""
    return all(inputs_of(ops, index) == (index,) for index in range(len(ops)))


def consumers(ops: Sequence[Op], value: int) -> list[int]:
    """The ops that read `value`."""
    return [index for index in range(len(ops)) if value in inputs_of(ops, index)]


def run_graph(ops: Sequence[Op], x: T, step: Callable[[Op, list[T]], T]) -> list[T]:
    """Every value of the network, from value 0 = `x`: op i's output is `step(op, its inputs)`.
    One walker for the forward pass, IBP and anything else that flows with the graph."""
    values = [x]
    for index, op in enumerate(ops):
        values.append(step(op, [values[source] for source in inputs_of(ops, index)]))
    return values


def forward_values(ops: Sequence[Op], x: torch.Tensor) -> list[torch.Tensor]:
    """Every value of the network on a batch: the input, then each op's output."""
    return run_graph(ops, x, lambda op, inputs: op.forward(*inputs))


class MissingRule(NotImplementedError):
    """An op reached a domain that has no rule for it: a bug (the importer admitted an op the
    engine cannot handle), never something to approximate."""

    def __init__(self, op: object, domain: str) -> None:
        super().__init__(f"the {domain} has no rule for {type(op).__name__} ops")


def rule(table: Mapping[type, R], op: object, domain: str) -> R:
    """The entry of `op`'s type in a rule table, or MissingRule naming the op and the domain."""
    try:
        return table[type(op)]
    except KeyError:
        raise MissingRule(op, domain) from None


def maxpool_windows(in_shape: Shape, kernel, stride, padding, dilation) -> tuple[np.ndarray, Shape]:
    """Flat input indices of every max-pool window (-1 for padding) and the output shape."""
    channels, height, width = in_shape
    top, left, bottom, right = padding
    out_h = (height + top + bottom - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + left + right - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    oy, ox, ky, kx = np.meshgrid(
        np.arange(out_h), np.arange(out_w), np.arange(kernel[0]), np.arange(kernel[1]), indexing="ij"
    )
    rows = oy * stride[0] - top + ky * dilation[0]
    cols = ox * stride[1] - left + kx * dilation[1]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    spatial = np.where(inside, rows * width + cols, -1).reshape(out_h * out_w, -1)
    per_channel = [np.where(spatial < 0, -1, spatial + c * height * width) for c in range(channels)]
    return np.concatenate(per_channel, axis=0).astype(np.int64), (channels, out_h, out_w)
