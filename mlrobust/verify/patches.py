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
    columns = F.unfold(padded, kernel, stride=stride)[0]  # (C*kh*kw, positions)
    return columns[:, positions].T.reshape(positions.numel(), maps.shape[0], *kernel)


def refine_upper(ops: tuple[o.Op, ...], neurons: torch.Tensor, signs: torch.Tensor, relu_bounds, box) -> torch.Tensor:
    """Upper bounds of sign * (Conv_b pre-activation at `neurons`), like backsubstitute would give."""
    from mlrobust.verify.bounds import _relu_slopes

    conv_a, conv_b = ops[0], ops[2]
    assert isinstance(conv_a, o.Conv) and isinstance(conv_b, o.Conv)
    _, height_b, width_b = conv_b.out_shape
    kernel_b = (conv_b.weight.shape[2], conv_b.weight.shape[3])
    channel = neurons // (height_b * width_b)
    position = neurons % (height_b * width_b)
    dtype = box.lower.dtype
    weight_b = torch.as_tensor(conv_b.weight, dtype=dtype)[channel] * signs.view(-1, 1, 1, 1)
    constant = torch.as_tensor(conv_b.bias, dtype=dtype)[channel] * signs
    up_slope, up_offset, low_slope = _relu_slopes(relu_bounds, None)
    gather = lambda maps: _patches(maps, kernel_b, conv_b.stride, conv_b.padding, position)  # noqa: E731
    positive, negative = weight_b.clamp(min=0), weight_b.clamp(max=0)
    constant = constant + (positive * gather(up_offset)).flatten(1).sum(1)
    relu_rows = positive * gather(up_slope) + negative * gather(low_slope)  # (S, C_a, kb, kb)
    # through Conv_a: its bias on every ReLU of the patch (padding positions carry 0), then Wᵀ
    constant = constant + (relu_rows.sum(dim=(2, 3)) * torch.as_tensor(conv_a.bias, dtype=dtype)).sum(1)
    weight_a = torch.as_tensor(conv_a.weight, dtype=dtype)
    input_rows = F.conv_transpose2d(relu_rows, weight_a, stride=conv_a.stride)  # (S, C_in, P, P)
    # the input patch of output position (y, x) starts at (y s_b - pad_b) s_a - pad_a
    size = (input_rows.shape[2], input_rows.shape[3])
    step = (conv_b.stride[0] * conv_a.stride[0], conv_b.stride[1] * conv_a.stride[1])
    top = conv_b.padding[0] * conv_a.stride[0] + conv_a.padding[0]
    left = conv_b.padding[1] * conv_a.stride[1] + conv_a.padding[1]
    _, height, width = conv_a.in_shape
    bottom = max(0, (height_b - 1) * step[0] - top + size[0] - height)
    right = max(0, (width_b - 1) * step[1] - left + size[1] - width)
    pad = (top, left, bottom, right)
    lower = _patches(box.lower[0], size, step, pad, position)
    upper = _patches(box.upper[0], size, step, pad, position)
    flat = input_rows.flatten(1)
    return constant + (flat.clamp(min=0) * upper.flatten(1)).sum(1) + (flat.clamp(max=0) * lower.flatten(1)).sum(1)
