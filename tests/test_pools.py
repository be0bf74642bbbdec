"""AveragePool and GlobalAveragePool: imported as the linear ops they are (a channel-identity
Conv, times a per-position count where padding is not counted), exact against onnxruntime, and
every verifier sound on networks that use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mlrobust.nn import ops as o
from mlrobust.nn.network import load_network
from mlrobust.nn.onnx_import import UnsupportedModel, import_onnx
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .netfactory import problem_for, sample_box
from .test_nn_ops import compare, make_model


@pytest.mark.parametrize(
    ("kernel", "stride", "pads", "include_pad"),
    [
        (2, 2, [0, 0, 0, 0], 0),
        (3, 1, [1, 1, 1, 1], 0),  # border windows count fewer pixels
        (3, 1, [1, 1, 1, 1], 1),
        (3, 2, [0, 1, 1, 0], 0),  # asymmetric
        (2, 1, [1, 0, 0, 1], 1),
    ],
)
def test_average_pool_matches_onnxruntime(tmp_path: Path, kernel, stride, pads, include_pad) -> None:
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        kernel_shape=[kernel] * 2,
        strides=[stride] * 2,
        pads=pads,
        count_include_pad=include_pad,
    )
    path = make_model(tmp_path, [node], (3, 7, 8), None)
    compare(path, (3, 7, 8))
    kinds = [type(op).__name__ for op in import_onnx(path).ops]
    assert kinds == (["Conv", "Affine"] if any(pads) and not include_pad else ["Conv"])


def test_global_average_pool_matches_onnxruntime(tmp_path: Path) -> None:
    path = make_model(tmp_path, [helper.make_node("GlobalAveragePool", ["x"], ["y"])], (4, 5, 6), None)
    compare(path, (4, 5, 6))
    assert import_onnx(path).output_shape == (4, 1, 1)


def test_average_pool_variants_it_cannot_represent_are_refused_by_name(tmp_path: Path) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1, name="pool7")
    with pytest.raises(UnsupportedModel, match="ceil_mode") as raised:
        import_onnx(make_model(tmp_path, [node], (1, 5, 5), None))
    assert "pool7" in str(raised.value) and raised.value.op_type == "AveragePool"


def pooled_net(tmp_path: Path, seed: int, include_pad: int) -> Path:
    """Conv -> Relu -> AveragePool (padded) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node(
            "AveragePool",
            ["b"],
            ["c"],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=include_pad,
        ),
        helper.make_node("Conv", ["c", "W2", "B2"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("GlobalAveragePool", ["e"], ["f"]),
        helper.make_node("Flatten", ["f"], ["g"]),
        helper.make_node("Gemm", ["g", "W3", "B3"], ["y"], transB=1),
    ]
    weights = {
        "W1": rng.normal(0, 0.7, (3, 1, 3, 3)),
        "B1": rng.normal(0, 0.2, 3),
        "W2": rng.normal(0, 0.7, (4, 3, 3, 3)),
        "B2": rng.normal(0, 0.2, 4),
        "W3": rng.normal(0, 1.0, (5, 4)),
        "B3": rng.normal(0, 0.2, 5),
    }
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    path = tmp_path / f"pooled-{seed}-{include_pad}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.3), st.sampled_from([0, 1]))
def test_bounds_contain_every_sampled_margin_through_pools(tmp_path_factory, seed, radius, pad) -> None:  # type: ignore[no-untyped-def]
    network, _ = load_network(pooled_net(tmp_path_factory.mktemp("pool"), seed, pad))  # cross-checked with onnxruntime
    assert any(isinstance(op, o.Affine) for op in network.ops) == (pad == 0)
    problem = problem_for(network, seed)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    points = sample_box(problem, eps, 64, seed)
    margins = problem.margin(problem.network.logits(points))
    for method in ("ibp", "crown", "alpha_crown"):
        assert margins.max() <= B.margin_bound(problem, eps, method, alpha_steps=5).bound + 1e-9, method


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.02, 0.3))
def test_milp_and_bab_verdicts_through_pools_are_sound(tmp_path_factory, seed: int, radius: float) -> None:
    network, _ = load_network(pooled_net(tmp_path_factory.mktemp("pool"), seed, 0))
    problem = problem_for(network, seed)
    eps = np.full(problem.num_layers, radius)
    points = sample_box(problem, eps, 256, seed)
    violated = bool((problem.margin(problem.network.logits(points)) >= 0).any())
    for name in ("milp", "bab"):
        verdict = VERIFIERS[name].check(problem, eps, time_limit=20.0)
        if verdict.status is Status.ROBUST:
            assert not violated, name
        if verdict.status is Status.NOT_ROBUST:
            assert verdict.counterexample is not None
            point = verdict.counterexample.reshape(1, *problem.network.input_shape)
            assert problem.margin(problem.network.logits(point))[0] >= 0, name
