"""CROWN bounds of a second convolution's pre-activations, computed on patches.

For the prefix Conv_a -> ReLU -> Conv_b at the start of a network, a one-hot row at output
neuron (c, y, x) of Conv_b back-substitutes to Conv_b's kernel W_b[c] on a k_b × k_b patch of
ReLU outputs, and then to a ((k_b - 1) s_a + k_a)-wide patch of input pixels. Doing the
arithmetic on those patches instead of on full feature maps gives exactly the numbers of the
generic back-substitution (a test holds the two equal), for a fraction of the work: here 676
input pixels per row instead of 4,096, and 432 ReLUs instead of 3,072.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlrobust.nn import ops as o


def applies(ops: tuple[o.Op, ...], index: int) -> bool:
    """True when ops[index]'s input is Conv_b(ReLU(Conv_a(input))) with undilated convolutions."""
    if index != 3 or not isinstance(ops[0], o.Conv) or not isinstance(ops[1], o.Relu):
        return False
    conv_b = ops[2]
    return isinstance(conv_b, o.Conv) and ops[0].dilation == (1, 1) and conv_b.dilation == (1, 1)


def _patches(
    maps: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int, int, int],
    positions: torch.Tensor,
) -> torch.Tensor:
    """(C, H, W) maps -> (S, C, kh, kw): the patch under each requested output position."""
    top, left, bottom, right = pad
    padded = F.pad(maps.unsqueeze(0), (left, right, top, bottom))
    columns = F.unfold(padded, kernel, stride=stride)[0].T  # (positions, C*kh*kw): few rows
    return columns.index_select(0, positions).view(positions.numel(), maps.shape[0], *kernel)


def _transposed_conv_matrix(conv: o.Conv, patch: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Conv_a's transpose on a (C_a, kb, kb) patch as a dense (C_a·kb·kb, C_in·P·P) matrix.

    One matrix product with it is the same linear map as conv_transpose2d on every row, and
    faster: PyTorch's CPU conv_transpose2d loops over the batch in float64.
    """
    key = ("patch_transpose", patch, dtype)
    if key not in conv._cache:
        channels = conv.weight.shape[0]
        size = channels * patch[0] * patch[1]
        basis = torch.eye(size, dtype=dtype).view(size, channels, *patch)
        image = F.conv_transpose2d(basis, torch.as_tensor(conv.weight, dtype=dtype), stride=conv.stride)
        conv._cache[key] = (image.flatten(1), tuple(image.shape[1:]))
    return conv._cache[key]


def refine(ops: tuple[o.Op, ...], neurons: torch.Tensor, relu_bounds, box) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper, lower) bounds of Conv_b's pre-activations at `neurons`, as backsubstitute gives them.

    The rows bounding z from above and from below share every gathered patch (ReLU slopes and
    offsets, the input box), so they are gathered once per neuron; only the rows themselves
    (W⁺·up + W⁻·low for the upper bound, -(W⁻·up + W⁺·low) for the lower) are doubled.
    """
    from mlrobust.verify.bounds import _relu_slopes

    conv_a, conv_b = ops[0], ops[2]
    assert isinstance(conv_a, o.Conv) and isinstance(conv_b, o.Conv)
    _, height_b, width_b = conv_b.out_shape
    kernel_b = (conv_b.weight.shape[2], conv_b.weight.shape[3])
    channel = neurons // (height_b * width_b)
    position = neurons % (height_b * width_b)
    count = neurons.numel()
    dtype = box.lower.dtype
    weight_b = torch.as_tensor(conv_b.weight, dtype=dtype)[channel]  # (N, C_a, kb, kb)
    bias_b = torch.as_tensor(conv_b.bias, dtype=dtype)[channel]
    up_slope, up_offset, low_slope = _relu_slopes(relu_bounds, None)
    maps = torch.cat([up_slope, up_offset, low_slope])  # one unfold for the three maps
    gathered = _patches(maps, kernel_b, conv_b.stride, conv_b.padding, position)
    up, offset, low = gathered.split(up_slope.shape[0], dim=1)
    positive, negative = weight_b.clamp(min=0), weight_b.clamp(max=0)
    constant = torch.cat(
        [bias_b + (positive * offset).flatten(1).sum(1), -bias_b - (negative * offset).flatten(1).sum(1)]
    )
    relu_rows = torch.cat([positive * up + negative * low, -(negative * up + positive * low)])  # (2N, C_a, kb, kb)
    # through Conv_a: its bias on every ReLU of the patch (padding positions carry 0), then Wᵀ
    constant = constant + (relu_rows.sum(dim=(2, 3)) * torch.as_tensor(conv_a.bias, dtype=dtype)).sum(1)
    matrix, (_, *patch_size) = _transposed_conv_matrix(conv_a, kernel_b, dtype)
    flat = (relu_rows.flatten(1) @ matrix).view(2, count, -1)  # rows on the (C_in, P, P) input patch
    # the input patch of output position (y, x) starts at (y s_b - pad_b) s_a - pad_a
    size = (patch_size[0], patch_size[1])
    step = (conv_b.stride[0] * conv_a.stride[0], conv_b.stride[1] * conv_a.stride[1])
    top = conv_b.padding[0] * conv_a.stride[0] + conv_a.padding[0]
    left = conv_b.padding[1] * conv_a.stride[1] + conv_a.padding[1]
    _, height, width = conv_a.in_shape
    bottom = max(0, (height_b - 1) * step[0] - top + size[0] - height)
    right = max(0, (width_b - 1) * step[1] - left + size[1] - width)
    pad = (top, left, bottom, right)
    # the box as centre ± radius: max of row·x over it is row·centre + |row|·radius
    centre = (box.upper[0] + box.lower[0]) / 2
    radius = (box.upper[0] - box.lower[0]) / 2
    corners = _patches(torch.cat([centre, radius]), size, step, pad, position).flatten(1)
    middle, spread = (part.contiguous() for part in corners.chunk(2, dim=1))  # (N, C_in·P·P) each
    best = (flat * middle).sum(2) + (flat.abs() * spread).sum(2)
    bounds = constant + best.flatten()
    return bounds[:count], -bounds[count:]
