"""Several perturbed objects: `mask = [other_digit, rect(…), "m.png"]` is the union of its
parts, the layers are distances to that union, and a query runs on it."""

from __future__ import annotations

import numpy as np

import mlrobust
from mlrobust.data.index import load_index, read_mask_png
from mlrobust.problem.layers import layer_map
from mlrobust.spec import ir
from mlrobust.spec.check import check_spec

from .helpers import DATA, REPO

UNION = REPO / "tests" / "specs" / "valid" / "mask_union.mlr"


def test_the_mask_is_the_union_of_its_parts_and_layers_measure_distance_to_it() -> None:
    checked = check_spec(UNION)
    assert checked.spec is not None and not checked.diagnostics
    assert isinstance(checked.spec.mask, ir.MaskUnion) and len(checked.spec.mask.parts) == 2
    (instance,) = checked.instances
    digit = read_mask_png(load_index(DATA).by_id("test/0000").other_object(3).mask)
    corner = np.zeros((64, 64), dtype=bool)
    corner[0:8, 40:48] = True
    assert np.array_equal(instance.mask, digit | corner)
    assert not (digit & corner).all() and (corner & ~digit).any()  # the rect adds pixels the digit lacks
    distances = layer_map(instance.mask)
    assert instance.layers == int(distances.max()) + 1
    assert (distances < layer_map(digit)).any()  # the second object brings pixels nearer: other layers


def test_a_query_runs_on_a_union_mask_and_its_box_follows_the_union() -> None:
    result = mlrobust.check(UNION, 0.002)
    assert result.verdict in ("ROBUST", "NOT_ROBUST", "UNKNOWN")
    checked = check_spec(UNION)
    assert checked.spec is not None
    from mlrobust.compile import compile_problem

    problem = compile_problem(checked.spec, checked.instances[0])
    eps = np.zeros(problem.num_layers)
    eps[0] = 0.05
    lower, upper = problem.box(eps)
    moved = (upper - lower)[0] > 0
    assert np.array_equal(moved, checked.instances[0].mask)  # layer 0 is exactly the union
