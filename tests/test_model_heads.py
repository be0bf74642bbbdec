"""Models exported the ordinary way: a trailing Sigmoid or Softmax, a residual Add.

A new user exports a multi-label model with its Sigmoid head (or a classifier with its
Softmax). The IR drops the head and verifies logits; what must hold is that lint, check and
the onnxruntime re-check of a counterexample all compare logits with logits, and that a graph
the IR cannot represent (a residual Add) is refused by lint, naming the node, not only later
by check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import mlrobust
from mlrobust.compile import compile_problem
from mlrobust.nn import ops as o
from mlrobust.nn.network import apply_head, load_network, onnxruntime_logits, onnxruntime_outputs
from mlrobust.nn.onnx_import import UnsupportedModel, import_onnx
from mlrobust.spec.check import check_spec, load_checked
from mlrobust.verify.recheck import recheck

from .exported import HALF, LAYERS, QUICK_CHAIN, SIZE, export, image, toy_model, write_problem
from .helpers import run_cli

HEADS = [("Sigmoid", True), ("Softmax", False)]  # dynamic batch for one, torch's default fixed batch 1 for the other


@pytest.fixture(scope="module", params=HEADS, ids=[head for head, _ in HEADS])
def headed(request, tmp_path_factory) -> tuple[str, Path]:
    head, dynamic = request.param
    folder = tmp_path_factory.mktemp(head.lower())
    return head, write_problem(folder, head, dynamic, QUICK_CHAIN)


def test_the_exported_file_ends_in_its_head(headed) -> None:
    head, spec = headed
    model = onnx.load(str(spec.parent / "model.onnx"))
    assert model.graph.node[-1].op_type == head


def test_lint_passes_and_the_ir_matches_onnxruntime_like_with_like(headed) -> None:
    """The IR's logits equal onnxruntime's pre-head tensor, and the head applied to them equals
    the file's own output (which is probabilities, not logits: comparing those was the bug)."""
    head, spec = headed
    result = check_spec(spec)
    assert result.diagnostics == () and len(result.instances) == 1
    network, difference = load_network(spec.parent / "model.onnx")
    assert network.head == head and difference < 1e-5
    points = np.random.default_rng(0).uniform(0, 1, size=(5, 1, SIZE, SIZE))
    ours = network.logits(points)
    np.testing.assert_allclose(onnxruntime_logits(network.path, points), ours, atol=1e-5)
    probabilities = onnxruntime_outputs(network.path, points)
    np.testing.assert_allclose(probabilities, apply_head(head, ours), atol=1e-6)
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert np.max(np.abs(probabilities - ours)) > 0.1  # they are different things


def test_check_proves_and_refutes_on_logits(headed) -> None:
    """ε = 0.1 is robust (proved by CROWN on logits), ε = 0.3 is not: the counterexample is in
    the box, onnxruntime's logits put the target out of the top 1, and so do its probabilities."""
    _, spec = headed
    robust = mlrobust.check(spec, 0.1)
    assert robust.verdict == "ROBUST" and robust.verifier == "bounds"
    assert robust.margin_bound is not None and robust.margin_bound < 0
    refuted = mlrobust.check(spec, 0.3)
    assert refuted.verdict == "NOT_ROBUST" and refuted.counterexample is not None
    point = refuted.counterexample
    assert np.all(np.abs(point[0] - image()) <= 0.3 + 1e-7)
    model = spec.parent / "model.onnx"
    logits = onnxruntime_logits(model, point[None])[0]
    assert max(logits[1], logits[2]) >= logits[0]
    scores = onnxruntime_outputs(model, point[None])[0]
    assert max(scores[1], scores[2]) >= scores[0]
    problem_eps = np.full(LAYERS, 0.3)
    checked = load_checked(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    confirmed = recheck(problem, problem_eps, point)
    assert confirmed.confirmed and confirmed.margin is not None and confirmed.margin >= 0
    # a point that keeps the target first is not accepted, on logits as on probabilities
    assert not recheck(problem, problem_eps, image()[None]).confirmed


def test_lint_and_check_from_the_command_line(tmp_path: Path) -> None:
    spec = write_problem(tmp_path, "Sigmoid", True, QUICK_CHAIN)
    lint = run_cli("lint", str(spec))
    assert lint.code == 0, lint.stdout + lint.stderr
    result = run_cli("check", str(spec), "--eps", "0.3", "--json", "--out", str(tmp_path / "cx"))
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "NOT_ROBUST" and payload["problem"]["onnxruntime_max_difference"] < 1e-5
    point = np.load(payload["counterexample"])
    logits = onnxruntime_logits(spec.parent / "model.onnx", point)[0]
    assert max(logits[1:]) >= logits[0]


def test_a_softmax_across_the_batch_is_refused(tmp_path: Path) -> None:
    """axis = 0 normalises over the batch: not order-preserving per image, so not droppable."""
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=0, name="sm")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "W")],
    )
    path = tmp_path / "batch_softmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(UnsupportedModel, match=r"Softmax node 'sm'.*not the class axis"):
        import_onnx(path)


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.head = torch.nn.Linear(SIZE * SIZE, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(torch.relu(self.conv(x)) + x, 1))


def test_lint_and_load_accept_a_residual_add(tmp_path: Path) -> None:
    """A skip connection makes the graph a DAG: lint is clean, and the network it loads computes
    what onnxruntime computes (the same check `check` and `run` make)."""
    torch.manual_seed(0)
    model = export(_Residual().eval(), tmp_path / "residual.onnx")
    spec = write_problem(tmp_path, model=model)
    result = check_spec(spec)
    assert result.ok and not [d for d in result.diagnostics if d.code == "unsupported-op"]
    network, difference = load_network(model)
    assert difference < 1e-5
    assert any(isinstance(op, o.Add) for op in network.ops) and not o.is_chain(network.ops)


def test_verify_refuses_a_model_with_a_head(tmp_path: Path) -> None:
    """A VNN-LIB property is about the file's outputs (probabilities here), which the IR does not
    compute: refused with the reason, never answered about the logits."""
    model = export(toy_model("Sigmoid"), tmp_path / "model.onnx")
    inputs = SIZE * SIZE
    lines = [f"(declare-const X_{i} Real)" for i in range(inputs)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i in range(inputs):
        lines += [f"(assert (>= X_{i} 0))", f"(assert (<= X_{i} {1 if i % SIZE >= HALF else 0.5}))"]
    lines.append("(assert (>= Y_0 0.9))")
    prop = tmp_path / "prop.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    result = run_cli("verify", str(model), str(prop))
    assert result.code == 1 and "Sigmoid" in result.stderr and "Traceback" not in result.stderr
