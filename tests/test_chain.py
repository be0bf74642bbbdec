"""The verifier chain: runs in order, stops at the first definite answer, records each step."""

from __future__ import annotations

import numpy as np
import pytest

from mlrobust.compile import compile_problem
from mlrobust.contract.verifiers import step
from mlrobust.spec.check import check_spec
from mlrobust.verify.attack import pgd_points_many
from mlrobust.verify.bounds import forget, margin_bound
from mlrobust.verify.chain import run_chain, run_chain_many
from mlrobust.verify.verdict import Status

from .helpers import REPO


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


def test_a_batched_chain_gives_each_box_the_verdict_it_gets_alone(problems) -> None:
    problem = problems["pgd"]
    chain = (step("attack", restarts=3, steps=15), step("bounds"))
    boxes = [np.full(problem.num_layers, radius) for radius in (0.005, 0.05, 0.3)]
    forget(problem)  # cold: a memoised CROWN proof would let a chain skip its attack
    batched = run_chain_many(problem, boxes, chain)
    alone = []
    for eps in boxes:
        forget(problem)
        alone.append(run_chain(problem, eps, chain))
    assert [r.status for r in batched] == [r.status for r in alone]
    assert [[v.verifier for v in r.steps] for r in batched] == [[v.verifier for v in r.steps] for r in alone]
    for together, single in zip(batched, alone, strict=True):
        # the same seeded restarts in the same box: the attacks agree up to float32 batching
        assert together.steps[0].best_margin == pytest.approx(single.steps[0].best_margin, abs=1e-3)
        if together.verdict.margin_bound is not None:
            assert together.verdict.margin_bound == pytest.approx(single.verdict.margin_bound, abs=1e-9)
    assert batched[0].status is Status.ROBUST  # a tiny box is proved; the others are not


def test_batched_pgd_points_stay_in_their_own_box_and_report_their_margin(problems) -> None:
    problem = problems["none"]
    boxes = [np.full(problem.num_layers, radius) for radius in (0.0, 0.02, 0.2)]
    points, margins = pgd_points_many(problem, boxes, 10, 4, 0.1, 0, float("inf"))
    assert points.shape == (3, 4, *problem.image.shape) and margins.shape == (3, 4)
    for eps, box_points, box_margins in zip(boxes, points, margins, strict=True):
        lower, upper = problem.box(eps)
        assert np.all(box_points >= lower - 1e-6) and np.all(box_points <= upper + 1e-6)
        exact = problem.margin(problem.network.logits(box_points))
        np.testing.assert_allclose(box_margins, exact, atol=1e-3)
    assert np.ptp(margins[0]) < 1e-5  # ε = 0: every restart is the image itself
    assert margins[2].max() > margins[0].max()  # a bigger box lets PGD raise the margin


def test_a_box_crown_already_proved_skips_the_attack_and_nothing_else(problems) -> None:
    problem = problems["pgd"]
    chain = (step("attack", restarts=2, steps=5), step("bounds"), step("milp"))
    proved, unproved = np.full(problem.num_layers, 0.004), np.full(problem.num_layers, 0.1)
    forget(problem)
    assert margin_bound(problem, proved).bound < 0 and margin_bound(problem, unproved).bound > 0
    # the search line-searched on CROWN, then asks the chain about the point: same verdict, no attack
    result = run_chain(problem, proved, chain)
    assert result.status is Status.ROBUST and [v.verifier for v in result.steps] == ["bounds"]
    # a memoised bound that does not prove the box skips nothing
    batched = run_chain_many(problem, [proved, unproved], (step("attack", restarts=2, steps=5), step("bounds")))
    assert [v.verifier for v in batched[0].steps] == ["bounds"]
    assert [v.verifier for v in batched[1].steps] == ["attack", "bounds"]
