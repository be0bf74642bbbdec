"""The search's building blocks: edge searches, CROWN line searches, batched oracle questions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.compile import compile_problem
from mlrobust.contract.verifiers import step
from mlrobust.plan import SearchBudget
from mlrobust.search import loop
from mlrobust.search.oracle import Oracle
from mlrobust.spec.check import check_spec
from mlrobust.verify.bounds import SAFETY_MARGIN, margin_bound
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .helpers import REPO


@pytest.fixture(scope="module")
def problem():
    result = check_spec(REPO / "specs" / "double_mnist_pgd.mlr")
    return compile_problem(result.spec, result.instances[0])


def threshold_bound(edge: float):
    """A bound that proves exactly the t below `edge`, counting its calls."""
    calls = []

    def bound_at(t: float) -> float:
        calls.append(t)
        return -1.0 if t < edge else 1.0

    return bound_at, calls


@settings(max_examples=60, deadline=None)
@given(st.floats(0.001, 0.999), st.floats(1e-4, 0.05))
def test_edge_brackets_the_threshold_to_the_tolerance(edge: float, tolerance: float) -> None:
    bound_at, calls = threshold_bound(edge)
    found, failed = loop._edge(bound_at, 0.0, 1.0, tolerance)
    assert found < edge <= failed  # a proved t, and a failed one beyond the threshold
    assert failed - found <= tolerance or len(calls) == loop.MAX_EDGE_STEPS
    assert failed == 1.0 or failed in calls  # the failed t was asked, not guessed
    assert all(0.0 < t < 1.0 for t in calls)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0005, 2.0), st.floats(0.001, 0.1))
def test_grow_returns_a_proved_point_and_a_failed_one_beyond_it(edge: float, first: float) -> None:
    bound_at, calls = threshold_bound(edge)
    low, high = loop._grow(bound_at, 0.0, first, 1.0, 4.0)
    assert low == 0.0 or low < edge  # proved (or the start)
    if high is None:
        assert low == 1.0 and edge > 1.0  # the whole room is proved
    else:
        assert high >= edge and high <= max(4 * low, first, 1e-12) + 1e-12  # at most one factor beyond
        assert len(calls) <= 1 + np.ceil(np.log(max(1.0 / first, 1.0)) / np.log(4.0)) + 1


def test_line_search_and_gallop_return_boxes_crown_proves(problem, tmp_path: Path) -> None:
    oracle = Oracle(problem, (step("bounds"),), tmp_path, "steps")
    limit = loop.range_limit(oracle)
    start = np.full(problem.num_layers, 0.02)
    weights = 0.8 ** np.arange(problem.num_layers)
    direction, bound, gradient = loop._direction(oracle, start, weights, limit)
    direction = direction / direction.max()
    far = loop._line_search(oracle, start, bound, float(gradient @ direction), direction, limit)
    assert margin_bound(problem, far).bound < -SAFETY_MARGIN
    assert np.all(far >= start) and np.all(far <= limit) and float(weights @ far) > float(weights @ start)
    # the edge: twice the step along the ray is no longer proved
    assert margin_bound(problem, start + 2 * (far - start)).bound >= -SAFETY_MARGIN
    grown, beyond = loop._gallop(oracle, far, 0, 0.002, limit)
    assert margin_bound(problem, grown).bound < -SAFETY_MARGIN
    assert np.array_equal(np.delete(grown, 0), np.delete(far, 0)) and grown[0] >= far[0]
    # the box beyond the edge: CROWN did not prove it, and it lies within δ of the edge along e_0,
    # so inside grown + δ e_0 (the maximality probe's claim)
    assert beyond is not None and margin_bound(problem, beyond).bound >= -SAFETY_MARGIN
    assert np.array_equal(np.delete(beyond, 0), np.delete(grown, 0)) and 0 < beyond[0] - grown[0] <= 0.002 + 1e-12


def test_ask_many_answers_and_journals_each_box_as_ask_would(problem, tmp_path: Path) -> None:
    chain = (step("attack", restarts=2, steps=10), step("bounds"))
    oracle = Oracle(problem, chain, tmp_path, "batch")
    small = np.full(problem.num_layers, 0.01)
    assert oracle.ask(small).status is Status.ROBUST
    boxes = [small / 2, np.full(problem.num_layers, 0.02), np.full(problem.num_layers, 0.3)]
    answers = oracle.ask_many(boxes, ["inside", "new", "big"])
    assert [a.purpose for a in answers] == ["inside", "new", "big"]
    assert answers[0].cached and answers[0].verifier == "cache"  # inside a proved box: no query
    assert not answers[1].cached and answers[1].status is Status.ROBUST
    assert answers[2].status is not Status.ROBUST
    assert oracle.new_queries == 3
    lines = [json.loads(line) for line in oracle.journal_path.read_text().splitlines()]
    assert len(lines) == 3 and [line["status"] for line in lines[1:]] == [a.status.value for a in answers[1:]]
    # a second oracle on the same folder answers the batch from the journal alone
    again = Oracle(problem, chain, tmp_path, "batch")
    again.load_journal()
    replayed = again.ask_many(boxes, ["inside", "new", "big"])
    assert again.new_queries == 0 and all(a.cached for a in replayed)
    assert [a.status for a in replayed] == [a.status for a in answers]


def test_the_corner_is_the_heaviest_layer_alone_at_crowns_edge(problem, tmp_path: Path) -> None:
    oracle = Oracle(problem, (step("attack", restarts=2, steps=10), step("bounds")), tmp_path, "corner")
    limit = loop.range_limit(oracle)
    weights = 0.8 ** np.arange(problem.num_layers)
    weights[[0, 3]] = weights[[3, 0]]  # the heaviest layer is 3
    oracle.start(SearchBudget(1000, 600.0))
    box = loop.corner(oracle, weights, 0.002, limit)
    assert box[3] > 0 and np.all(np.delete(box, 3) == 0)
    assert margin_bound(problem, box).bound < -SAFETY_MARGIN
    assert any(q.status is Status.ROBUST and np.array_equal(q.eps, box) for q in oracle.history)  # the chain agreed
    beyond = box.copy()
    beyond[3] += 0.002
    assert margin_bound(problem, beyond).bound >= -SAFETY_MARGIN or beyond[3] > limit[3]


def test_expand_stops_when_the_chain_cannot_prove_the_guides_steps(problem, tmp_path: Path) -> None:
    """A chain whose sound verifier (IBP) is weaker than the bound the search steers by (CROWN)
    leaves the guide's proposals UNKNOWN; the same proposal comes back after the cuts, and the
    expansion must stop there instead of re-asking it from the cache until the time budget
    (once 57,545 repeated cache answers and a 94 MB result.json)."""
    from mlrobust.search.cutting import fixed_weights
    from mlrobust.search.oracle import GuideStats

    oracle = Oracle(problem, (step("attack", restarts=1, steps=5), step("bounds", method="ibp")), tmp_path, "spin")
    oracle.guide_stats = GuideStats(step("bounds"))  # steer by CROWN, prove with IBP
    layers = problem.num_layers
    weights = 0.8 ** np.arange(layers)
    oracle.start(SearchBudget(10_000, 60.0))
    assert oracle.ask(np.zeros(layers)).status is Status.ROBUST
    box, reason = loop.expand(oracle, np.zeros(layers), weights, fixed_weights(layers), 0.002)
    assert reason != "time budget reached" and oracle.exhausted() is None, reason
    assert oracle.new_queries < 40  # a handful of proposals and cuts, not a spin
    keys = [(q.eps, q.status) for q in oracle.history]
    assert len(keys) == len(set(keys))  # no repeated answer recorded twice
    assert all(q.status is Status.ROBUST for q in oracle.history if np.array_equal(q.eps, box))


def test_a_box_asked_again_from_the_cache_is_recorded_once(problem, tmp_path: Path) -> None:
    oracle = Oracle(problem, (step("bounds"),), tmp_path, "repeats")
    big = np.full(problem.num_layers, 0.3)
    first = oracle.ask(big, "first")
    for _ in range(5):
        again = oracle.ask(big, "again")
        assert again.cached and again.status is first.status
    assert len(oracle.history) == 1 and oracle.repeats == 5  # the verifier's answer alone
    assert oracle.new_queries == 1


def test_the_query_budget_is_a_hard_cap_and_a_batch_is_cut_to_fit(problem, tmp_path: Path) -> None:
    oracle = Oracle(problem, (step("bounds"),), tmp_path, "cap")
    oracle.start(SearchBudget(3, 600.0))
    layers = problem.num_layers
    boxes = [np.full(layers, 0.001 * (i + 1)) for i in range(5)]
    answers = oracle.ask_many(boxes, [f"box {i}" for i in range(5)])
    assert oracle.new_queries == 3 and oracle.exhausted() is not None
    assert [a.verifier for a in answers[3:]] == ["budget", "budget"]
    assert all(a.status is Status.UNKNOWN for a in answers[3:])
    assert len(oracle.history) == 3  # what the budget left unasked is no answer
    journaled = oracle.journal_path.read_text().splitlines()
    assert len(journaled) == 3
    assert oracle.ask(np.full(layers, 0.5)).verifier == "budget" and oracle.new_queries == 3


def test_journal_answers_count_against_the_query_budget_of_a_resumed_run(problem, tmp_path: Path) -> None:
    """A killed run resumed from its journal stops where an unbroken one would: its earlier
    answers are part of the budget, not a fresh budget on top of them."""
    layers = problem.num_layers
    boxes = [np.full(layers, 0.001 * (i + 1)) for i in range(5)]
    first = Oracle(problem, (step("bounds"),), tmp_path, "resume")
    first.start(SearchBudget(4, 600.0))
    first.ask_many(boxes[:2], ["a", "b"])  # killed here: two answers journaled
    resumed = Oracle(problem, (step("bounds"),), tmp_path, "resume")
    resumed.load_journal()
    resumed.start(SearchBudget(4, 600.0))
    answers = resumed.ask_many(boxes, [str(i) for i in range(5)])
    assert (resumed.replayed, resumed.new_queries, resumed.spent) == (2, 2, 4)
    assert [a.verifier for a in answers][4:] == ["budget"] and resumed.exhausted() is not None


def test_the_joint_gallop_grows_the_open_layers_along_w_squared_to_a_box_bab_proves(problem, tmp_path: Path) -> None:
    """From CROWN's uniform edge the full chain (bab) grows all open layers in one direction:
    the box it returns is one bab proved (and a fresh bab proves again), every probe lies on
    the ray ε + t·δ·w²/max w², its failures are capped and counted by the patience, and a later
    gallop never asks a box holding one the full chain already left UNKNOWN."""
    chain = (step("attack", restarts=2, steps=10), step("bounds"), step("bab", time_limit=1.0))
    oracle = Oracle(problem, chain, tmp_path, "joint")
    limit = loop.range_limit(oracle)
    weights = 0.8 ** np.arange(problem.num_layers)
    start = np.full(problem.num_layers, loop.uniform_bisection(oracle, 0.002, float(limit.max())))
    layers = list(range(problem.num_layers))
    patience = loop.Patience()
    grown = loop._joint_complete_gallop(oracle, start, weights, layers, 0.002, limit, patience)
    joint = [q for q in oracle.history if q.purpose == "maximality (complete verifiers, layers together)"]
    assert joint and np.all(grown >= start)
    direction = weights**2 / (weights**2).max() * 0.002
    for query in joint:  # on the ray, t steps of δ·w²/max w² (clipped at the range limit)
        t = (np.array(query.eps)[0] - start[0]) / direction[0]
        assert t > 0 and np.allclose(query.eps, np.minimum(start + t * direction, limit), atol=1e-12)
    failed = [q for q in joint if q.status is not Status.ROBUST]
    assert len(failed) <= loop.JOINT_FAILURES
    expected = loop.Patience()
    for query in joint:
        expected.record(query.status)
    assert patience.unknowns == expected.unknowns and patience.unknowns <= len(failed)
    if np.any(grown > start):
        assert any(q.status is Status.ROBUST and np.array_equal(q.eps, grown) for q in joint)
        again = VERIFIERS["bab"].check(problem, grown, time_limit=30.0)
        assert again.status is Status.ROBUST
        assert float(weights @ grown) > float(weights @ start)
    # asked again from where it ended: nothing that holds a box left UNKNOWN goes to bab again
    unknown = [np.array(q.eps) for q in failed if q.status is Status.UNKNOWN]
    before = len(oracle.history)
    loop._joint_complete_gallop(oracle, grown, weights, layers, 0.002, limit, patience)
    for query in oracle.history[before:]:
        assert not any(np.all(box <= np.array(query.eps)) for box in unknown), query


def test_the_patience_counts_timeouts_until_a_probe_is_settled() -> None:
    """A proof between two timeouts does not start the count over (bab proves near CROWN's edge
    and times out a step further, layer after layer); a settled probe (NOT_ROBUST) does."""
    patience = loop.Patience()
    answers = [Status.UNKNOWN, Status.ROBUST] * (loop.COMPLETE_PROBE_PATIENCE - 1) + [Status.UNKNOWN]
    for answer in answers[:-1]:
        patience.record(answer)
        assert not patience.spent
    patience.record(answers[-1])
    assert patience.spent and patience.unknowns == loop.COMPLETE_PROBE_PATIENCE
    patience.record(Status.NOT_ROBUST)
    assert patience.unknowns == 0 and not patience.spent
