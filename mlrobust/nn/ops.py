"""The network IR's ops: explicit, frozen, with their weights as float64 arrays.

Affine ops (Conv, Linear, Affine, Flatten, Reshape) are maps y = A x + b; the bound engine
uses `forward` (A x + b on a batch), `transpose` (Aᵀ λ on a batch of rows λ) and `bias_dot`
(λ · b). Relu and MaxPool are the only nonlinear ops. Shapes exclude the batch dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Shape = tuple[int, ...]
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
        padded = (rows.shape[0], c, h + top + bottom, w + left + right)
        grad = torch.nn.grad.conv2d_input(padded, self._w(rows), rows, self.stride, 0, self.dilation)
        return grad[:, :, top : top + h, left : left + w]

    def bias_dot(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows.sum(dim=(2, 3)) * _tensor(self.bias, rows)).sum(dim=1)


@dataclass(frozen=True, eq=False)
class Linear:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)
    in_shape: Shape
    out_shape: Shape
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        padded = torch.cat([flat, flat.new_full((flat.shape[0], 1), float("-inf"))], dim=1)
        index = torch.as_tensor(np.where(self.windows < 0, flat.shape[1], self.windows), device=x.device)
        return padded[:, index].max(dim=2).values.reshape(x.shape[0], *self.out_shape)


AffineOp = Conv | Linear | Affine | Reshape
Op = AffineOp | Relu | MaxPool

# The op kinds, each listed once. Every rule table of the bound engine, the MILP encoding and
# the patch path has one entry per type in OP_TYPES (tests/test_rule_tables.py), and a lookup
# that finds none raises MissingRule: an op is never handled by another op's rule.
AFFINE_OPS: tuple[type, ...] = (Conv, Linear, Affine, Reshape)  # y = A x + b
RELABELLING_OPS: tuple[type, ...] = (Reshape,)  # A is the identity on the flattened numbers
NONLINEAR_OPS: tuple[type, ...] = (Relu, MaxPool)  # relaxed from their input's bounds
OP_TYPES: tuple[type, ...] = AFFINE_OPS + NONLINEAR_OPS


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
