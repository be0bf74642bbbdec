"""Small random networks built directly in the IR, for property tests of the verifiers."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import torch

from mlrobust.nn import ops as o
from mlrobust.nn.network import Network
from mlrobust.problem.problem import Problem
from mlrobust.verify import bab
from mlrobust.verify import bounds as B


def activation(shape: tuple[int, ...], leak: float) -> o.Op:
    """ReLU, or LeakyReLU max(x, leak x) when leak > 0."""
    return o.LeakyRelu(leak, shape, shape) if leak > 0 else o.Relu(shape, shape)


def dense_net(seed: int, sizes: tuple[int, ...] = (2, 4, 4, 4), scale: float = 1.0, leak: float = 0.0) -> Network:
    rng = np.random.default_rng(seed)
    layers: list[o.Op] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(o.Linear(rng.normal(0, scale, (b, a)), rng.normal(0, 0.5, b), (a,), (b,)))
        if i < len(sizes) - 2:
            layers.append(activation((b,), leak))
    return Network(tuple(layers), (sizes[0],), sizes[-1], Path("<in-memory>"), 17)


def conv_net(
    seed: int, channels: int = 2, size: int = 6, classes: int = 5, stride: int = 1, leak: float = 0.0
) -> Network:
    """Conv -> ReLU -> Conv -> ReLU -> MaxPool 2x2 -> Flatten -> Linear (the bundled models'
    shape); LeakyReLUs of slope `leak` in place of the ReLUs when leak > 0."""
    rng = np.random.default_rng(seed)
    c1, c2 = 3, 4
    conv1 = o.Conv(
        rng.normal(0, 0.6, (c1, channels, 3, 3)),
        rng.normal(0, 0.3, c1),
        (stride, stride),
        (1, 1, 1, 1),
        (1, 1),
        (channels, size, size),
        (c1, (size - 1) // stride + 1, (size - 1) // stride + 1),
    )
    s1 = conv1.out_shape[1]
    conv2 = o.Conv(
        rng.normal(0, 0.5, (c2, c1, 3, 3)),
        rng.normal(0, 0.3, c2),
        (1, 1),
        (1, 1, 1, 1),
        (1, 1),
        conv1.out_shape,
        (c2, s1, s1),
    )
    windows, pooled = o.maxpool_windows(conv2.out_shape, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    pool = o.MaxPool((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), conv2.out_shape, pooled, windows)
    flat = int(np.prod(pooled))
    layers: tuple[o.Op, ...] = (
        conv1,
        activation(conv1.out_shape, leak),
        conv2,
        activation(conv2.out_shape, leak),
        pool,
        o.Reshape(pooled, (flat,)),
        o.Linear(rng.normal(0, 0.5, (classes, flat)), rng.normal(0, 0.3, classes), (flat,), (classes,)),
    )
    return Network(layers, (channels, size, size), classes, Path("<in-memory>"), 17)


def problem_for(network: Network, seed: int, k: int = 2, layers: int = 3) -> Problem:
    """A random image in [0, 1] and a random layer map; the target is the image's top class."""
    rng = np.random.default_rng(seed + 1)
    image = rng.uniform(0, 1, network.input_shape).astype(np.float32).astype(np.float64)
    spatial = network.input_shape[1:] if len(network.input_shape) == 3 else (1, network.input_shape[0])
    layer_map = rng.integers(0, layers, size=spatial)
    layer_map.flat[:layers] = np.arange(layers)  # every layer has a pixel
    if len(network.input_shape) == 1:
        layer_map = layer_map.reshape(network.input_shape)
    target = int(np.argmax(network.logits(image[None])[0]))
    return Problem(network, image, layer_map, target, k, (0.0, 1.0))


def sample_box(problem: Problem, eps: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Uniform points and random corners of N(ε)."""
    rng = np.random.default_rng(seed)
    lower, upper = problem.box(eps)
    uniform = rng.uniform(size=(count, *lower.shape))
    corners = rng.integers(0, 2, size=(count, *lower.shape)).astype(np.float64)
    weights = np.concatenate([uniform, corners])
    return lower + weights * (upper - lower)


def onnx_dense_net(seed: int, folder: Path, sizes: tuple[int, ...] = (4, 6, 6, 4), scale: float = 1.0) -> Network:
    """`dense_net(seed, sizes, scale)` written to an ONNX file (float32 Gemm / Relu, a dynamic
    batch) and loaded back, so onnxruntime can re-check its counterexamples for real. Its weights
    are those of `dense_net` rounded to float32, as the file stores them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mlrobust.nn.network import load_network

    source = dense_net(seed, sizes, scale)
    nodes, weights, current = [], [], "x"
    for index, op in enumerate(source.ops):
        output = f"h{index}"
        if isinstance(op, o.Linear):
            weights += [
                numpy_helper.from_array(op.weight.astype(np.float32), f"W{index}"),
                numpy_helper.from_array(op.bias.astype(np.float32), f"b{index}"),
            ]
            nodes.append(helper.make_node("Gemm", [current, f"W{index}", f"b{index}"], [output], transB=1))
        else:
            nodes.append(helper.make_node("Relu", [current], [output]))
        current = output
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", sizes[0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", sizes[-1]])],
        weights,
    )
    path = folder / f"dense-{seed}-{'-'.join(map(str, sizes))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    network, _ = load_network(path)
    return network


def value_before(problem: Problem, points: np.ndarray, index: int) -> np.ndarray:
    """(N, size) the flat value op `index` reads (chains and graphs alike)."""
    with torch.no_grad():
        values = o.forward_values(problem.network.ops, torch.as_tensor(points))
    return values[o.input_of(problem.network.ops, index)].flatten(1).numpy()


def is_window_max(
    pool_input: np.ndarray, op: o.MaxPool, window: int, member: int, without: tuple[int, ...] = ()
) -> np.ndarray:
    """(N,) bool: is the window's member the largest of its members (ties count), leaving
    out the positions `without` (the members an earlier split said are not the maximum)?"""
    positions = [int(m) for i, m in enumerate(op.windows[window]) if m >= 0 and i not in without]
    own = pool_input[:, op.windows[window][member]]
    return np.all(own[:, None] >= pool_input[:, positions], axis=1)


def rows_of(problem: Problem, points: np.ndarray) -> np.ndarray:
    return problem.network.logits(points) @ problem.output.rows.T + problem.output.offsets


def pool_probe(problem: Problem, index: int, window: int) -> Problem:
    """The problem's network cut after the max-pool at `index`, its outputs the pool's outputs,
    and the property "output `window` is not the largest": its row for `window` reads that
    window's output with coefficient +1, so a bound of it is a bound of the window's maximum
    with no head layer's slack on top, and an error in one window's rule shows."""
    ops = problem.network.ops[: index + 1]
    pool = ops[index]
    assert isinstance(pool, o.MaxPool)
    size = int(np.prod(pool.out_shape))
    head = (o.Reshape(pool.out_shape, (size,)), o.Linear(np.eye(size), np.zeros(size), (size,), (size,)))
    network = Network(ops + head, problem.network.input_shape, size, Path("<in-memory>"), 17)
    target = (window + 1) % size
    return Problem(network, problem.image, problem.layer_map, target, 1, problem.value_range)


def window_pieces_hold(problem: Problem, eps: np.ndarray, seed: int, device: str = "cpu", windows: int = 3) -> None:
    """On the first max-pool's first undecided windows: split on the top member j1, then the
    "not j1" half on the runner-up j2. Each of the four pieces (j1 the maximum; j1 not; j2 the
    maximum of the rest; neither) must bound its sampled points, with and without tuning (β on
    "x_j >= x_i" included), on the network cut after the pool (`pool_probe`). A rule that
    treated one half as the other, flipped β's sign, or left a member out of the plane fails."""
    first_root = bab.prepare(problem, eps, torch.device(device))
    if not first_root.pools:
        return
    index = first_root.pools[0]
    op = problem.network.ops[index]
    assert isinstance(op, o.MaxPool)
    width = op.windows.shape[1]
    box = first_root.bounds[index]
    assert box is not None
    undecided = torch.nonzero(first_root.unstable[index].any(dim=1)).flatten().tolist()
    points = sample_box(problem, eps, 4000, seed)
    before = value_before(problem, points, index)
    for window in undecided[:windows]:
        probe = pool_probe(problem, index, window)
        root = bab.prepare(probe, eps, torch.device(device))
        rows = rows_of(probe, points)
        parent = bab.bound_domains(root, [bab.Domain(0.0, 0, {})], 0, B.SAFETY_MARGIN, time.perf_counter() + 60)
        upper = box.upper.flatten().cpu()[torch.as_tensor(op.windows[window])].numpy()
        j1, j2 = (int(j) for j in np.argsort(-upper)[:2])
        top = bab.Domain(0.0, 0, {}, values=parent.rows[0])
        first, rest = bab._children(root, top, (index, window * width + j1), 1)
        inner = bab._children(root, rest, (index, window * width + j2), 3)
        one = is_window_max(before, op, window, j1)
        two = ~one & is_window_max(before, op, window, j2, without=(j1,))
        for steps in (0, 10):
            outer = bab.bound_domains(root, [first, rest], steps, B.SAFETY_MARGIN, time.perf_counter() + 60)
            deeper = bab.bound_domains(root, inner, steps, B.SAFETY_MARGIN, time.perf_counter() + 60)
            for bounded, regions in ((outer, (one, ~one)), (deeper, (two, ~one & ~two))):
                for half, inside in enumerate(regions):
                    if inside.any():
                        assert np.all(rows[inside] <= bounded.rows[half].cpu().numpy()[None] + 1e-7)
