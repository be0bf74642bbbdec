"""Every op of the IR has a rule in every domain, a missing rule is an error that names the op
and the domain, and what `lint` calls supported is what `run` accepts."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from mlrobust.nn import ops as o
from mlrobust.nn.onnx_import import REGISTRY, UnsupportedModel, import_onnx, supported_ops
from mlrobust.nn.support import summarize_onnx, supported_op_types
from mlrobust.spec.check import check_spec
from mlrobust.verify import bab, bounds, milp_encoding, patches

ALL_OPS = {
    "interval bounds (IBP)": bounds.IBP_RULES,
    "back-substitution (CROWN)": bounds.BACKWARD_RULES,
    "relaxation table": bounds.RELAXED_NEURONS,
    "MILP encoding": milp_encoding.MILP_RULES,
    "patch path": patches.PATCH_ROLES,
    "reach table": bab.REACH_RULES,
}
AFFINE_ONLY = {"sparse matrices (MILP)": milp_encoding.SPARSE_MATRICES}


def test_the_op_kinds_list_every_op_class_once() -> None:
    classes = {
        value
        for value in vars(o).values()
        if inspect.isclass(value) and dataclasses.is_dataclass(value) and "in_shape" in value.__dataclass_fields__
    }
    assert classes == set(o.OP_TYPES)
    assert len(o.OP_TYPES) == len(set(o.OP_TYPES))
    assert set(o.AFFINE_OPS).isdisjoint(o.NONLINEAR_OPS)
    assert set(o.RELABELLING_OPS) <= set(o.AFFINE_OPS)


@pytest.mark.parametrize("domain", [*ALL_OPS, *AFFINE_ONLY])
def test_every_op_has_an_entry_in_every_table(domain: str) -> None:
    table = {**ALL_OPS, **AFFINE_ONLY}[domain]
    expected = set(o.AFFINE_OPS) if domain in AFFINE_ONLY else set(o.OP_TYPES)
    assert set(table) == expected, f"{domain}: missing {expected - set(table)}, extra {set(table) - expected}"


def test_affine_ops_need_no_relaxation_and_nonlinear_ones_do() -> None:
    for op_type in o.OP_TYPES:
        needs = bounds.RELAXED_NEURONS[op_type] is not None
        assert needs == (op_type in o.NONLINEAR_OPS), op_type.__name__


@dataclasses.dataclass(frozen=True, eq=False)
class Unknown:
    """An op no table knows (as a converter might produce by mistake)."""

    in_shape: o.Shape = (2,)
    out_shape: o.Shape = (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_missing_rule_names_the_op_and_the_domain() -> None:
    box = bounds.Interval(torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64))
    with pytest.raises(o.MissingRule, match=r"interval bound.*Unknown"):
        bounds.ibp((Unknown(),), box)
    rows = torch.eye(2, dtype=torch.float64)
    with pytest.raises(o.MissingRule, match=r"back-substitution.*Unknown"):
        bounds.backsubstitute((Unknown(),), 1, rows, [None], box)
    with pytest.raises(o.MissingRule, match=r"relaxation.*Unknown"):
        bounds.crown_intermediate((Unknown(),), box, ibp_bounds=[box, box])
    with pytest.raises(o.MissingRule, match=r"patch path.*Unknown"):
        patches.applies((Unknown(), Unknown(), Unknown()), 3)
    with pytest.raises(o.MissingRule, match=r"reach table.*Unknown"):
        bab._touched((Unknown(),), 1, {}, 1, "cpu")


def test_lint_lists_exactly_the_registry() -> None:
    assert supported_op_types() == tuple(sorted(supported_ops()))
    assert {op for op, _ in REGISTRY} == set(supported_op_types())


def _refused_variant_model(path: Path) -> None:
    """A model whose every op type is registered, but with a variant the importer refuses
    (a Div by a constant holding a zero; grouped convolutions, once the example, are now supported)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w")
    divisor = numpy_helper.from_array(np.array([2.0, 0.0, 1.0, 4.0], dtype=np.float32).reshape(4, 1, 1), "z")
    dense = numpy_helper.from_array(rng.normal(size=(4 * 6 * 6, 3)).astype(np.float32), "d")
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], name="conv"),
        helper.make_node("Div", ["c", "z"], ["h"], name="halve"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "d"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "refused",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weight, divisor, dense],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_lint_refuses_what_run_refuses(tmp_path: Path) -> None:
    """Every op type of this model is supported, but not this Div: lint used to pass such a
    model (it compared op names with a hand-made list) and `run` refused it."""
    _refused_variant_model(tmp_path / "refused.onnx")
    with pytest.raises(UnsupportedModel, match=r"halve.*zero"):
        import_onnx(tmp_path / "refused.onnx")
    summary = summarize_onnx(tmp_path / "refused.onnx")
    assert summary.unsupported == () and summary.refused is not None and "zero" in summary.refused.message
    np.save(tmp_path / "image.npy", np.zeros((2, 8, 8), dtype=np.float32))
    (tmp_path / "s.mlr").write_text(
        'model = "refused.onnx"\nimage = "image.npy"\ntarget = 0\n'
        "mask = rect(top = 0, left = 0, height = 2, width = 2)\n"
    )
    result = check_spec(tmp_path / "s.mlr")
    assert [d.code for d in result.errors] == ["unsupported-op"]
    assert "halve" in result.errors[0].message and "zero" in result.errors[0].message
