"""The search with an exact MILP in the chain, on a model small enough for the MILP to finish
every query: each layer must end proved maximal by a counterexample onnxruntime confirms one
δ out, or at the range limit — nothing is left UNKNOWN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from mlrobust.compile import compile_problem
from mlrobust.run import run
from mlrobust.spec.check import check_spec
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .test_run import check_maximality_evidence


def tiny_model(path: Path, seed: int) -> None:
    """1x8x8 -> Flatten -> Gemm 64x12 -> Relu -> Gemm 12x5: a dozen ReLUs."""
    rng = np.random.default_rng(seed)
    tensors = [
        numpy_helper.from_array(rng.normal(0, 0.3, (12, 64)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.normal(0, 0.2, 12).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.6, (5, 12)).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.normal(0, 0.2, 5).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "W1", "b1"], ["hidden"], name="fc1", transB=1),
        helper.make_node("Relu", ["hidden"], ["active"], name="relu1"),
        helper.make_node("Gemm", ["active", "W2", "b2"], ["logits"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        tensors,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_every_layer_is_proved_maximal_when_the_milp_is_exact(tmp_path: Path) -> None:
    tiny_model(tmp_path / "tiny.onnx", seed=4)
    image = np.random.default_rng(5).uniform(0.2, 0.8, (1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    logits = onnxruntime.InferenceSession(str(tmp_path / "tiny.onnx")).run(None, {"image": image[None]})[0][0]
    target = int(np.argmax(logits))
    (tmp_path / "tiny.mlr").write_text(
        f'model = "tiny.onnx"\nimage = "image.npy"\ntarget = {target}\n'
        "mask = rect(top = 0, left = 0, height = 3, width = 3)\n"
        "weights = linear(start = 1, end = 0.2)\n"
        "chain = attack(steps = 30, restarts = 3) -> bounds(method = crown) -> milp(time_limit = 20s)\n"
        "search {\n  resolution = 0.01\n  queries = 400\n  time_limit = 2min\n}\n"
    )
    result = run(tmp_path / "tiny.mlr", out=tmp_path / "out")
    checked = check_spec(tmp_path / "tiny.mlr")
    problem = compile_problem(checked.spec, checked.instances[0])
    assert result.complete and result.verifier == "milp"
    statuses = {m.status for m in result.maximality}
    assert statuses <= {"proved_maximal", "at_range_limit"}, result.maximality
    assert check_maximality_evidence(result, tmp_path / "out", problem) >= 1
    exact = VERIFIERS["milp"].check(problem, np.array(result.eps), time_limit=60.0)
    assert exact.status is Status.ROBUST
    # and the MILP itself cannot grow any layer one δ out (each probe has a counterexample)
    eps = np.array(result.eps)
    for info in result.maximality:
        if info.status == "at_range_limit":
            continue
        probe = eps.copy()
        probe[info.layer] += result.setup.resolution
        assert VERIFIERS["milp"].check(problem, probe, time_limit=60.0).status is Status.NOT_ROBUST, info.layer


def test_a_layer_the_complete_verifier_grew_keeps_that_credit_over_every_round(tmp_path: Path) -> None:
    """With IBP as the fast chain the MILP grows layers past IBP's edge, round after round. A
    layer is reported grown only when a complete verifier proved a maximality probe that grows
    it: one of its own, or (in the first round) a joint one over the layers the fast chain left
    open; whichever round that was in (the last round alone used to reset earlier growth to 0)."""
    tiny_model(tmp_path / "tiny.onnx", seed=4)
    image = np.random.default_rng(5).uniform(0.2, 0.8, (1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    logits = onnxruntime.InferenceSession(str(tmp_path / "tiny.onnx")).run(None, {"image": image[None]})[0][0]
    (tmp_path / "tiny.mlr").write_text(
        f'model = "tiny.onnx"\nimage = "image.npy"\ntarget = {int(np.argmax(logits))}\n'
        "mask = rect(top = 0, left = 0, height = 3, width = 3)\n"
        "weights = linear(start = 1, end = 0.2)\n"
        "chain = attack(steps = 30, restarts = 3) -> bounds(method = ibp) -> milp(time_limit = 20s)\n"
        "search {\n  resolution = 0.01\n  queries = 600\n  time_limit = 3min\n}\n"
    )
    result = run(tmp_path / "tiny.mlr", out=tmp_path / "out")
    assert result.rounds >= 2  # growth in one round forced another
    milp_proved = [q for q in result.queries if q.verifier == "milp" and q.status is Status.ROBUST]
    alone = {int(q.purpose.split()[-1]) for q in milp_proved if q.purpose.startswith("maximality layer")}
    joint = [q for q in milp_proved if q.purpose == "maximality (complete verifiers, layers together)"]
    grown = {m.layer: m.grown for m in result.maximality if m.grown > 0}
    eps = np.array(result.eps)
    assert grown and alone <= grown.keys()
    for layer, amount in grown.items():
        # some complete proof reached past where the fast chain had left the layer
        start = eps[layer] - amount
        own = [q for q in milp_proved if q in joint or q.purpose == f"maximality layer {layer}"]
        assert any(q.eps[layer] > start + 1e-12 for q in own), layer
    if not joint:
        assert grown.keys() == alone
    start = {m.layer: np.array(result.eps)[m.layer] - m.grown for m in result.maximality}
    assert all(start[d] >= -1e-12 for d in start)
