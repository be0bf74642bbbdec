"""Branching networks (a DAG of ops: residual Add / Sub, Concat of branches) and LeakyReLU.

Each new op matches onnxruntime alone and in small graphs; on random branching nets every
bound contains sampled values (IBP, CROWN, α-CROWN, the intermediate bounds), the MILP's
optimum lies between the attack and CROWN (and the encoding holds at every point of the box),
branch and bound agrees with the exact MILP, and a ResNet block exported the ordinary way with
a BatchNorm and a Sigmoid head verifies end to end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import mlrobust
from mlrobust.compile import compile_problem
from mlrobust.nn import ops as o
from mlrobust.nn.network import load_network, onnxruntime_logits
from mlrobust.nn.onnx_import import UnsupportedModel
from mlrobust.problem.problem import Problem
from mlrobust.spec.check import load_checked
from mlrobust.verify import attack, milp
from mlrobust.verify import bounds as B
from mlrobust.verify.milp_encoding import encode, start_values
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .exported import QUICK_CHAIN, SIZE, write_problem
from .netfactory import sample_box, window_pieces_hold


def one_node_model(folder: Path, nodes: list, inputs: dict[str, tuple], output: str, weights=None) -> Path:  # type: ignore[no-untyped-def]
    """A graph of `nodes` on input "x" (dynamic batch) with float32 initializers `weights`."""
    initializers = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in (weights or {}).items()]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *inputs["x"]])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", "classes"])],
        initializers,
    )
    path = folder / f"g{len(list(folder.glob('g*.onnx')))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _flat_head(shape: tuple[int, ...], classes: int, seed: int) -> tuple[list, dict]:
    """Flatten + Gemm to `classes` logits, so every graph ends in a vector of class scores."""
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Flatten", ["h"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    return nodes, {"W": rng.normal(0, 0.3, (classes, size)), "b": rng.normal(0, 0.1, classes)}


CASES = {
    "leaky relu": ([helper.make_node("LeakyRelu", ["x"], ["h"], alpha=0.2)], (2, 4, 4), (2, 4, 4)),
    "residual add": (
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["h"])],
        (2, 4, 4),
        (2, 4, 4),
    ),
    "sub of branches": (
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sub", ["x", "r"], ["h"])],
        (2, 4, 4),
        (2, 4, 4),
    ),
    "concat channels": (
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r", "x"], ["h"], axis=1)],
        (2, 4, 4),
        (6, 4, 4),
    ),
    "concat rows (negative axis)": (
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["r", "x"], ["h"], axis=-2)],
        (2, 4, 4),
        (2, 8, 4),
    ),
    "batchnorm after add": (
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Add", ["r", "x"], ["s"]),
            helper.make_node("BatchNormalization", ["s", "g", "beta", "mu", "var"], ["h"]),
        ],
        (2, 4, 4),
        (2, 4, 4),
    ),
    "x + x": ([helper.make_node("Add", ["x", "x"], ["h"])], (3,), (3,)),
}
BATCHNORM = {"g": [1.5, -0.5], "beta": [0.1, 0.2], "mu": [0.3, -0.1], "var": [0.5, 2.0]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_new_op_matches_onnxruntime(tmp_path: Path, case: str) -> None:
    """load_network compares the IR with onnxruntime on random points (and refuses a mismatch);
    the IR's own forward on fresh points agrees as well."""
    nodes, in_shape, out_shape = CASES[case]
    head, weights = _flat_head(out_shape, 3, seed=len(case))
    path = one_node_model(tmp_path, nodes + head, {"x": in_shape}, "y", {**weights, **BATCHNORM})
    network, difference = load_network(path)
    assert difference < 1e-5
    points = np.random.default_rng(1).uniform(-1, 2, (16, *in_shape))
    np.testing.assert_allclose(network.logits(points), onnxruntime_logits(path, points), atol=1e-5)


def test_a_product_of_branches_and_a_bad_concat_are_refused(tmp_path: Path) -> None:
    product = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "x"], ["h"], name="gate")]
    head, weights = _flat_head((4,), 2, 0)
    with pytest.raises(UnsupportedModel, match=r"Mul node 'gate'.*2 computed values"):
        load_network(one_node_model(tmp_path, product + head, {"x": (4,)}, "y", weights))
    batch = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["r", "x"], ["h"], axis=0, name="c")]
    with pytest.raises(UnsupportedModel, match=r"Concat node 'c'.*batch"):
        load_network(one_node_model(tmp_path, batch + head, {"x": (4,)}, "y", weights))
    steep = [helper.make_node("LeakyRelu", ["x"], ["h"], alpha=3.0, name="steep")]
    with pytest.raises(UnsupportedModel, match=r"LeakyRelu node 'steep'.*non-convex"):
        load_network(one_node_model(tmp_path, steep + head, {"x": (4,)}, "y", weights))


class Branchy(torch.nn.Module):
    """conv → ReLU, then a residual branch (conv → LeakyReLU, added to or subtracted from its
    input) concatenated with a second branch (conv → ReLU), max-pool, linear: every new op."""

    def __init__(self, subtract: bool) -> None:
        super().__init__()
        self.subtract = subtract
        self.stem = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.residual = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.side = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.head = torch.nn.Linear(5 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.stem(x))
        b = torch.nn.functional.leaky_relu(self.residual(a), 0.1)
        joined = torch.cat([a - b if self.subtract else b + a, torch.relu(self.side(a))], dim=1)
        return self.head(torch.flatten(torch.nn.functional.max_pool2d(joined, 2), 1))


def branchy_net(seed: int, folder: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = Branchy(subtract=seed % 2 == 1).eval()
    path = folder / f"branchy-{seed}.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 6, 6),), path, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    network, _ = load_network(path)
    return network


@pytest.fixture(scope="module")
def nets():  # type: ignore[no-untyped-def]
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-dag-"))
    return {seed: branchy_net(seed, folder) for seed in range(4)}


def problem_on(network, seed: int, k: int = 1) -> Problem:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, network.input_shape).astype(np.float32).astype(np.float64)
    layers = rng.integers(0, 3, size=network.input_shape[1:])
    layers.flat[:3] = np.arange(3)
    target = int(np.argmax(network.logits(image[None])[0]))
    return Problem(network, image, layers, target, k, (0.0, 1.0))


def test_the_imported_graph_branches(nets) -> None:  # type: ignore[no-untyped-def]
    for network in nets.values():
        kinds = {type(op) for op in network.ops}
        assert {o.Add, o.Concat, o.LeakyRelu, o.Relu, o.MaxPool} <= kinds
        assert not o.is_chain(network.ops)
        stem_output = 2  # value 2: the stem's ReLU output, read by both branches and the merge
        assert len(o.consumers(network.ops, stem_output)) == 3


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 3), st.floats(0.01, 0.4))
def test_bounds_contain_sampled_values(nets, seed: int, radius: float) -> None:  # type: ignore[no-untyped-def]
    problem = problem_on(nets[seed], seed, k=2)
    network = problem.network
    eps = np.full(problem.num_layers, radius)
    lower, upper = problem.box(eps)
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    points = sample_box(problem, eps, 300, seed)
    with torch.no_grad():
        values = o.forward_values(network.ops, torch.as_tensor(points))
    intervals = B.ibp(network.ops, box)
    tightened = B.crown_intermediate(network.ops, box, ibp_bounds=intervals)
    for index, value in enumerate(values):
        assert torch.all(value >= intervals[index].lower - 1e-9) and torch.all(value <= intervals[index].upper + 1e-9)
    for index, interval in enumerate(tightened):
        if interval is None:
            continue
        assert isinstance(network.ops[index], o.NONLINEAR_OPS)
        value = values[o.input_of(network.ops, index)]
        source = intervals[o.input_of(network.ops, index)]
        assert torch.all(value >= interval.lower - 1e-9) and torch.all(value <= interval.upper + 1e-9)
        assert torch.all(interval.lower >= source.lower - 1e-9) and torch.all(interval.upper <= source.upper + 1e-9)
    found = problem.margin(network.logits(points)).max()
    for method in ("ibp", "crown", "alpha_crown"):
        assert found <= B.margin_bound(problem, eps, method, alpha_steps=10).bound + 1e-9, method
    crown, ibp = B.margin_bound(problem, eps, "crown").bound, B.margin_bound(problem, eps, "ibp").bound
    assert crown <= ibp + 1e-9


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 3), st.floats(0.005, 0.15))
def test_the_milp_sits_between_the_attack_and_crown(nets, seed: int, radius: float) -> None:  # type: ignore[no-untyped-def]
    problem = problem_on(nets[seed], seed, k=1)
    eps = np.full(problem.num_layers, radius)
    encoding = encode(problem, eps, (0,))
    # the encoding holds at every point of the box: each point's own values satisfy every row
    matrix = encoding.builder.matrix()
    row_lower, row_upper = np.concatenate(encoding.builder.row_lower), np.concatenate(encoding.builder.row_upper)
    for point in sample_box(problem, eps, 20, seed):
        values = start_values(problem, encoding, point)
        rows = matrix @ values
        assert np.all(rows >= row_lower - 1e-7) and np.all(rows <= row_upper + 1e-7)
        assert np.all(values >= np.array(encoding.builder.lower) - 1e-9)
        assert np.all(values <= np.array(encoding.builder.upper) + 1e-9)
    full = encode(problem, eps)
    solution = milp.solve_highs(full, time_limit=30, start=start_values(problem, full, problem.image), gap=1e-9)
    points, _ = attack.pgd_points(problem, eps, steps=30, restarts=4, step_size=0.1, seed=seed, deadline=float("inf"))
    found = problem.margin(problem.network.logits(points)).max()
    crown = B.margin_bound(problem, eps, "crown").bound
    tolerance = 1e-6 * max(1.0, abs(solution.dual_bound))
    assert found <= solution.dual_bound + tolerance
    if solution.status == "Optimal":
        assert found <= solution.incumbent + tolerance <= crown + 2 * tolerance


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 3), st.floats(0.01, 0.4), st.integers(1, 2))
def test_bab_is_sound_and_agrees_with_the_milp(nets, device, seed: int, radius: float, k: int) -> None:  # type: ignore[no-untyped-def]
    bab_against_the_milp(nets, seed, radius, k, device)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 3), st.floats(0.02, 0.3))
def test_window_splits_after_a_concat_hold_on_their_regions(nets, device, seed: int, radius: float) -> None:  # type: ignore[no-untyped-def]
    """The branchy nets' max-pool reads a Concat (its bounds are the root's, not a ReLU's in
    the domain): window split pieces, one and two deep, still bound their sampled points."""
    problem = problem_on(nets[seed], seed, k=2)
    window_pieces_hold(problem, np.full(problem.num_layers, radius), seed, device)


def test_bab_closes_by_window_splits_what_the_pool_relaxation_holds_open(nets, device) -> None:  # type: ignore[no-untyped-def]
    """Branchy net 2 at ε = 0.078, top-2 (87 max-pool binaries in the MILP, whose optimum is
    -0.0014): the tuned pool planes leave bab's bound at +0.005 whatever ReLUs it splits (before
    window splits it stayed UNKNOWN after 180 s and 22,864 domains). Splitting on each
    undecided window's maximum closes it: ROBUST, with window splits among its splits, no
    sampled point violating, and the exact MILP agreeing."""
    problem = problem_on(nets[2], 2, k=2)
    eps = np.full(problem.num_layers, 0.078125)
    verdict = VERIFIERS["bab"].check(problem, eps, time_limit=30.0, batch=16, device=device)
    assert verdict.status is Status.ROBUST, verdict.stats
    assert verdict.stats["window_splits"] > 0
    points = sample_box(problem, eps, 2000, 2)
    assert not problem.violated(problem.network.logits(points)).any()
    assert VERIFIERS["milp"].check(problem, eps, time_limit=60.0).status is Status.ROBUST


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3), st.floats(0.01, 0.4), st.integers(1, 2))
def test_bab_is_sound_and_agrees_with_the_milp_on_many_queries(nets, device, seed: int, radius: float, k: int) -> None:  # type: ignore[no-untyped-def]
    bab_against_the_milp(nets, seed, radius, k, device)


def bab_against_the_milp(nets, seed: int, radius: float, k: int, device: str) -> None:  # type: ignore[no-untyped-def]
    problem = problem_on(nets[seed], seed, k)
    eps = np.full(problem.num_layers, radius)
    verdict = VERIFIERS["bab"].check(problem, eps, time_limit=20.0, batch=16, device=device)
    assert verdict.stats["device"] == device
    if verdict.status is Status.ROBUST:
        points = sample_box(problem, eps, 400, seed)
        assert not problem.violated(problem.network.logits(points)).any()
    if verdict.status is Status.NOT_ROBUST:
        from mlrobust.verify.recheck import recheck

        assert recheck(problem, eps, verdict.counterexample).confirmed
    exact = VERIFIERS["milp"].check(problem, eps, time_limit=30.0)
    if exact.definite:
        assert verdict.status is exact.status, (verdict.stats, exact.stats)


class ResNetBlock(torch.nn.Module):
    """A tiny ResNet: conv-BN-ReLU stem, one basic block (conv-BN-ReLU-conv-BN + skip, ReLU),
    global average pool, linear, Sigmoid: a multi-label model as users export it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.block = torch.nn.Sequential(
            torch.nn.Conv2d(4, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
        )
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        joined = torch.relu(self.block(stem) + stem)
        return torch.sigmoid(self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(joined, 1), 1)))


def test_a_resnet_block_with_a_sigmoid_head_verifies_end_to_end(tmp_path: Path) -> None:
    """Exported by torch.onnx.export (BatchNorm statistics trained a little, so they are not
    the identity), the model lints clean, loads, and a run proves a box: sampled points of the
    proved box keep the target in the top 1 under onnxruntime, on the user's own file."""
    torch.manual_seed(0)
    model = ResNetBlock()
    with torch.no_grad():  # running statistics that differ from 0 / 1, as after training
        model.train()
        for _ in range(5):
            model(torch.rand(16, 1, SIZE, SIZE))
    model.eval()
    path = tmp_path / "resnet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, SIZE, SIZE),), path, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["scores"])  # fmt: skip
    network, difference = load_network(path)
    assert network.head == "Sigmoid" and difference < 1e-5 and not o.is_chain(network.ops)
    logits = network.logits(np.zeros((1, 1, SIZE, SIZE)))[0]
    spec = write_problem(tmp_path, model=path, extra=QUICK_CHAIN + "search {\n  queries = 12\n}\n")
    text = spec.read_text().replace("target = 0", f"target = {int(np.argmax(logits))}")
    spec.write_text(text)
    lint = load_checked(spec)
    assert not [d for d in lint.diagnostics if d.severity.value == "error"]
    result = mlrobust.run(spec, out=tmp_path / "run")
    assert max(result.eps) > 0
    problem = compile_problem(lint.spec, lint.instances[0])
    points = sample_box(problem, np.asarray(result.eps), 300, 0)
    assert not problem.violated(onnxruntime_logits(path, points)).any()
