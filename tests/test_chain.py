"""The verifier chain: runs in order, stops at the first definite answer, records each step."""

from __future__ import annotations

import numpy as np
import pytest

from mlrobust.compile import compile_problem
from mlrobust.spec.check import check_spec
from mlrobust.spec.ir import VerifierStep
from mlrobust.verify.chain import run_chain
from mlrobust.verify.options import VERIFIERS
from mlrobust.verify.verdict import Status

from .helpers import REPO


def step(name: str, **options) -> VerifierStep:
    return VerifierStep(name, tuple((o.name, options.get(o.name, o.default)) for o in VERIFIERS[name].options))


@pytest.fixture(scope="module")
def problems():
    found = {}
    for model in ("none", "pgd"):
        result = check_spec(REPO / "specs" / f"double_mnist_{model}.mlr")
        found[model] = compile_problem(result.spec, result.instances[0])
    return found


def test_attack_then_bounds_proves_a_small_box(problems) -> None:
    problem = problems["pgd"]
    result = run_chain(problem, np.full(problem.num_layers, 0.01), (step("attack"), step("bounds"), step("milp")))
    assert result.status is Status.ROBUST and result.verdict.verifier == "bounds"
    assert [v.verifier for v in result.steps] == ["attack", "bounds"]  # milp never ran
    assert result.steps[0].status is Status.UNKNOWN and result.steps[0].best_margin < 0


def test_a_counterexample_ends_the_chain_at_once(problems) -> None:
    problem = problems["none"]
    result = run_chain(problem, np.full(problem.num_layers, 0.1), (step("attack"), step("bounds"), step("milp")))
    assert result.status is Status.NOT_ROBUST and [v.verifier for v in result.steps] == ["attack"]


def test_unknown_keeps_the_tightest_bound_and_the_strongest_point(problems) -> None:
    problem = problems["pgd"]
    eps = np.full(problem.num_layers, 0.12)
    result = run_chain(
        problem,
        eps,
        (step("attack", restarts=2, steps=10), step("bounds", method="ibp"), step("bounds", method="crown")),
    )
    assert result.status is Status.UNKNOWN and len(result.steps) == 3
    bounds = [v.margin_bound for v in result.steps if v.margin_bound is not None]
    assert result.verdict.margin_bound == min(bounds)
    assert result.verdict.best_margin <= result.verdict.margin_bound  # the attack never beats a sound bound
    assert result.verdict.counterexample is None
