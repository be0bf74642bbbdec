"""Differential tests of the network IR: one-node ONNX models run in onnxruntime and in the IR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mlrobust.nn.network import onnxruntime_logits, onnxruntime_outputs
from mlrobust.nn.onnx_import import UnsupportedModel, import_onnx

RNG = np.random.default_rng(1234)


def _typed(value) -> np.ndarray:
    array = np.asarray(value)
    return array.astype(np.int64) if array.dtype.kind in "iu" else array.astype(np.float32)


def make_model(tmp_path: Path, nodes, in_shape, out_shape, initializers=(), name="m", opset=17) -> Path:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape] if out_shape else None)],
        [numpy_helper.from_array(_typed(v), k) for k, v in dict(initializers).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)
    path = tmp_path / f"{name}-{RNG.integers(1 << 30)}.onnx"
    onnx.save(model, path)
    return path


def compare(path: Path, in_shape, samples: int = 4, atol: float = 1e-5) -> None:
    graph = import_onnx(path)
    x = RNG.uniform(-1, 1, size=(samples, *in_shape)).astype(np.float32)
    expected = onnxruntime_logits(path, x)
    with torch.no_grad():
        got = torch.as_tensor(x, dtype=torch.float64)
        for op in graph.ops:
            got = op.forward(got)
    np.testing.assert_allclose(got.numpy(), expected, atol=atol, rtol=1e-5)


CONV_CASES = [
    dict(kernel=3, stride=1, pads=[0, 0, 0, 0], dilation=1, bias=True),
    dict(kernel=3, stride=2, pads=[1, 1, 1, 1], dilation=1, bias=False),
    dict(kernel=4, stride=4, pads=[0, 0, 0, 0], dilation=1, bias=True),
    dict(kernel=3, stride=1, pads=[0, 1, 2, 0], dilation=1, bias=True),  # asymmetric
    dict(kernel=3, stride=1, pads=[2, 2, 2, 2], dilation=2, bias=True),
    dict(kernel=5, stride=2, auto_pad="SAME_UPPER", dilation=1, bias=True),
    dict(kernel=2, stride=3, auto_pad="VALID", dilation=1, bias=True),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("opset", [11, 17])
def test_conv(tmp_path: Path, case, opset) -> None:
    cin, cout = 2, 3
    weight = RNG.normal(size=(cout, cin, case["kernel"], case["kernel"]))
    inputs = ["x", "W"] + (["B"] if case["bias"] else [])
    attributes = dict(strides=[case["stride"]] * 2, dilations=[case["dilation"]] * 2)
    if "auto_pad" in case:
        attributes["auto_pad"] = case["auto_pad"]
    else:
        attributes["pads"] = case["pads"]
    node = helper.make_node("Conv", inputs, ["y"], **attributes)
    inits = {"W": weight, **({"B": RNG.normal(size=cout)} if case["bias"] else {})}
    compare(make_model(tmp_path, [node], (cin, 9, 10), None, inits, opset=opset), (cin, 9, 10))


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(("alpha", "beta", "with_c"), [(1.0, 1.0, True), (0.5, 2.0, True), (1.0, 1.0, False)])
def test_gemm(tmp_path: Path, trans_b, alpha, beta, with_c) -> None:
    weight = RNG.normal(size=(5, 7)) if trans_b else RNG.normal(size=(7, 5))
    inputs = ["x", "W"] + (["C"] if with_c else [])
    node = helper.make_node("Gemm", inputs, ["y"], transB=trans_b, alpha=alpha, beta=beta)
    inits = {"W": weight, **({"C": RNG.normal(size=5)} if with_c else {})}
    compare(make_model(tmp_path, [node], (7,), (5,), inits), (7,))


def test_matmul_then_add_folds_into_one_linear(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    path = make_model(tmp_path, nodes, (6,), (4,), {"W": RNG.normal(size=(6, 4)), "b": RNG.normal(size=4)})
    compare(path, (6,))
    assert [type(op).__name__ for op in import_onnx(path).ops] == ["Linear"]


@pytest.mark.parametrize(
    ("kernel", "stride", "pads", "dilation"),
    [(2, 2, [0, 0, 0, 0], 1), (3, 1, [1, 1, 1, 1], 1), (3, 2, [0, 1, 1, 0], 1), (2, 1, [0, 0, 0, 0], 2)],
)
def test_maxpool(tmp_path: Path, kernel, stride, pads, dilation) -> None:
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=pads, dilations=[dilation] * 2
    )
    compare(make_model(tmp_path, [node], (2, 8, 7), None), (2, 8, 7))


def test_relu_flatten_reshape_identity_dropout(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Identity", ["a"], ["b"]),
        helper.make_node("Dropout", ["b"], ["c"]),
        helper.make_node("Reshape", ["c", "shape"], ["d"]),
        helper.make_node("Flatten", ["d"], ["y"], axis=1),
    ]
    path = make_model(tmp_path, nodes, (2, 3, 4), (24,), {"shape": np.array([0, 6, 4])})
    compare(path, (2, 3, 4))


@pytest.mark.parametrize(
    ("op", "constant_first"),
    [(op, first) for op in ("Add", "Sub", "Mul", "Div") for first in (False, True) if (op, first) != ("Div", True)],
)
def test_elementwise_with_constants(tmp_path: Path, op, constant_first) -> None:
    constant = RNG.uniform(0.5, 2.0, size=(3, 1, 1))
    inputs = ["c", "x"] if constant_first else ["x", "c"]
    node = helper.make_node(op, inputs, ["y"])
    compare(make_model(tmp_path, [node], (3, 4, 4), None, {"c": constant}), (3, 4, 4))


def test_batchnorm_after_conv_is_folded_and_exact(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h", "s", "bb", "m", "v"], ["y"], epsilon=1e-3),
    ]
    inits = {
        "W": RNG.normal(size=(4, 2, 3, 3)),
        "B": RNG.normal(size=4),
        "s": RNG.uniform(0.5, 2, 4),
        "bb": RNG.normal(size=4),
        "m": RNG.normal(size=4),
        "v": RNG.uniform(0.5, 2, 4),
    }
    path = make_model(tmp_path, nodes, (2, 6, 6), None, inits)
    compare(path, (2, 6, 6))
    assert [type(op).__name__ for op in import_onnx(path).ops] == ["Conv"]


def test_standalone_batchnorm_is_an_affine(tmp_path: Path) -> None:
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"])
    inits = {"s": RNG.uniform(0.5, 2, 3), "bb": RNG.normal(size=3), "m": RNG.normal(size=3), "v": RNG.uniform(1, 2, 3)}
    compare(make_model(tmp_path, [node], (3, 4, 4), None, inits), (3, 4, 4))


def test_trailing_softmax_is_dropped_and_keeps_the_order(tmp_path: Path) -> None:
    """The IR stops at the logits; onnxruntime gives both: the file's probabilities
    (`onnxruntime_outputs`) and the logits entering the head (`onnxruntime_logits`)."""
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=1)]
    path = make_model(tmp_path, nodes, (5,), (4,), {"W": RNG.normal(size=(5, 4))})
    graph = import_onnx(path)
    assert graph.head == "Softmax"
    x = RNG.uniform(-1, 1, size=(6, 5)).astype(np.float32)
    with torch.no_grad():
        logits = graph.ops[0].forward(torch.as_tensor(x, dtype=torch.float64)).numpy()
    probabilities = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probabilities, atol=1e-5)
    np.testing.assert_allclose(onnxruntime_logits(path, x), logits, atol=1e-5)


def test_unsupported_cases_name_the_op_and_node(tmp_path: Path) -> None:
    tanh = make_model(tmp_path, [helper.make_node("Tanh", ["x"], ["y"], name="squash")], (4,), (4,))
    with pytest.raises(UnsupportedModel, match=r"Tanh node 'squash' \(opset 17.*supported ops: .*Conv"):
        import_onnx(tanh)
    divide = make_model(
        tmp_path, [helper.make_node("Div", ["c", "x"], ["y"], name="inv")], (4,), (4,), {"c": np.ones(4)}
    )
    with pytest.raises(UnsupportedModel, match=r"inv.*not affine"):
        import_onnx(divide)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Mul", ["a", "x"], ["y"], name="gate")]
    with pytest.raises(UnsupportedModel, match=r"Mul node 'gate'.*reads 2 computed values") as raised:
        import_onnx(make_model(tmp_path, nodes, (4,), (4,)))
    assert raised.value.hint is not None and "only Add, Sub and Concat" in raised.value.hint
    indices = make_model(
        tmp_path,
        [helper.make_node("MaxPool", ["x"], ["y", "where"], kernel_shape=[2, 2], name="pool")],
        (2, 4, 4),
        None,
    )
    with pytest.raises(UnsupportedModel, match=r"pool.*Indices"):
        import_onnx(indices)


def test_bundled_models_match_onnxruntime_closely() -> None:
    from mlrobust.nn.network import load_network

    from .helpers import MODELS

    for name in ("double_mnist_none", "double_mnist_l0", "double_mnist_pgd"):
        network, difference = load_network(MODELS / f"{name}.onnx")
        assert difference < 1e-4
        assert network.relu_count() == 5120 and network.num_classes == 10


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 5),
    st.tuples(st.integers(1, 8), st.integers(1, 8)),
    st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda s: s != (1, 1)),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.tuples(st.integers(1, 20), st.integers(1, 20)),
    st.integers(0, 2**16),
)
def test_a_strided_convolutions_float32_transpose_by_phases_is_its_transpose(  # type: ignore[no-untyped-def]
    inputs: int, outputs: int, kernel, stride, padding, size, seed: int
) -> None:
    """A strided conv of few input channels transposes by output phase in float32 (what bab's
    tuning passes use): for any kernel, stride, padding and size (the stride's remainder rows
    included) it is the float64 transpose to float32 rounding, and that one is the adjoint of
    the conv: <λ, A x> = <Aᵀλ, x>."""
    from mlrobust.nn import ops as o

    rng = np.random.default_rng(seed)
    top, left, bottom, right = padding
    height, width = size
    out_h = (height + top + bottom - kernel[0]) // stride[0] + 1
    out_w = (width + left + right - kernel[1]) // stride[1] + 1
    assume(out_h >= 1 and out_w >= 1)
    conv = o.Conv(
        rng.normal(size=(outputs, inputs, *kernel)), rng.normal(size=outputs), stride, padding, (1, 1),
        (inputs, height, width), (outputs, out_h, out_w),
    )  # fmt: skip
    assert conv._by_phases()
    rows = torch.as_tensor(rng.normal(size=(3, outputs, out_h, out_w)))
    exact = conv.transpose(rows)
    by_phases = conv.transpose(rows.float())
    assert by_phases.shape == exact.shape
    scale = float(rows.abs().sum()) * float(np.abs(conv.weight).max())
    assert torch.allclose(by_phases.double(), exact, rtol=0, atol=1e-6 * scale)
    x = torch.as_tensor(rng.normal(size=(3, inputs, height, width)))
    assert torch.allclose((rows * conv.linear(x)).sum(dim=(1, 2, 3)), (exact * x).sum(dim=(1, 2, 3)))
