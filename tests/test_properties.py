"""The spec's properties — `top_k`, `threshold(t = …)`, `keep_predicted`,
`keep_predicted(threshold = …)` — each compile to an OutputProperty (rows, a monotone margin,
disjuncts) that the whole chain handles: the attack's objective, the bounds, the MILP, bab, the
onnxruntime re-check and the VNN-LIB export.

Soundness is checked against an independent definition of each property, written here in plain
numpy on onnxruntime's logits (sigmoid scores for the thresholds, counts of rivals for the
ranks), never through the OutputProperty under test.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlrobust
from mlrobust.compile import Networks, compile_problem, output_property, question_hashes
from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.errors import UserError
from mlrobust.nn.network import Network, onnxruntime_logits, onnxruntime_outputs
from mlrobust.problem.problem import Problem
from mlrobust.problem.property import (
    AboveThreshold,
    KeepTopK,
    TopK,
    clean_top_k,
    logit,
    predicted_above,
)
from mlrobust.spec import ir
from mlrobust.spec.check import check_spec, load_checked
from mlrobust.verify import bounds as B
from mlrobust.verify.recheck import recheck
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .exported import LEFT, QUICK_CHAIN, write_problem
from .netfactory import conv_net, dense_net, onnx_dense_net, problem_for, sample_box

KINDS = ("top_k", "threshold", "keep_top_k", "keep_threshold")


# --- the independent definitions ---------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """What a property asks, as plain data (the labels it is about, k, the threshold)."""

    kind: str
    target: int
    k: int
    labels: tuple[int, ...]
    t: float | None


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def unsafe(asked: Asked, logits: np.ndarray) -> np.ndarray:
    """Whether each row of (N, n) logits violates the property, from its plain definition."""
    F = np.atleast_2d(np.asarray(logits, dtype=np.float64))

    def out_of_top(label: int, k: int) -> np.ndarray:  # at least k others at or above it (ties count)
        return (np.delete(F, label, axis=1) >= F[:, [label]]).sum(axis=1) >= k

    if asked.kind == "top_k":
        return out_of_top(asked.target, asked.k)
    if asked.kind == "keep_top_k":
        return np.any([out_of_top(s, len(asked.labels)) for s in asked.labels], axis=0)
    assert asked.t is not None
    return (sigmoid(F[:, list(asked.labels)]) <= asked.t).any(axis=1)  # a score at t is not above t


def with_property(
    base: Problem, kind: str, k: int, logits: np.ndarray, rng: np.random.Generator
) -> tuple[Problem, Asked]:
    """`base`'s network, image and layers asked `kind`, the property built as compile builds it
    from the clean logits (keep_predicted) or the target. Thresholds sit a random distance under
    the clean logits, so the clean image is safe and the edge is somewhere in the boxes asked."""
    n = base.network.num_classes
    target = int(np.argmax(logits))
    if kind == "top_k":
        prop, asked = TopK(target, k, n), Asked(kind, target, k, (target,), None)
    elif kind == "threshold":
        t = float(sigmoid(logits[target] - rng.uniform(0.05, 1.0)))
        prop, asked = AboveThreshold((target,), t, n), Asked(kind, target, k, (target,), t)
    elif kind == "keep_top_k":
        labels = clean_top_k(logits, k)
        prop, asked = KeepTopK(labels, n), Asked(kind, target, k, labels, None)
    else:
        ranked = np.sort(logits)[::-1]
        m = int(rng.integers(1, n))  # the top m labels are predicted
        t = float(sigmoid((ranked[m - 1] + ranked[m]) / 2))
        labels = predicted_above(logits, t)
        assert labels
        prop, asked = AboveThreshold(labels, t, n, predicted=True), Asked(kind, target, k, labels, t)
    problem = Problem(base.network, base.image, base.layer_map, target, k, base.value_range, output_property=prop)
    return problem, asked


# --- the properties themselves -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1 - 1e-9), st.integers(1, 6), st.data())
def test_threshold_margin_is_zero_exactly_at_the_logit_and_a_tie_is_unsafe(t: float, n: int, data) -> None:  # type: ignore[no-untyped-def]
    target = data.draw(st.integers(0, n - 1))
    cut = logit(t)
    assert math.isclose(float(sigmoid(cut)), t, rel_tol=1e-12, abs_tol=1e-300)
    prop = AboveThreshold((target,), t, n)
    logits = np.array(data.draw(st.lists(st.floats(-20, 20), min_size=n, max_size=n)))
    logits[target] = cut
    assert prop.margin(logits)[0] == 0.0 and prop.violated(logits)[0]  # σ(F) = t is not above t
    assert prop.bound(prop.row_values(logits)[0]) == 0.0  # so no bound at the edge proves it
    logits[target] = np.nextafter(cut, np.inf)
    assert prop.margin(logits)[0] < 0 and not prop.violated(logits)[0]
    logits[target] = np.nextafter(cut, -np.inf)
    assert prop.margin(logits)[0] > 0 and prop.violated(logits)[0]


@pytest.mark.parametrize("t", [0.0, 1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_a_threshold_outside_zero_one_is_refused(t: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        logit(t)
    with pytest.raises(ValueError):
        AboveThreshold((0,), t, 3)


small_logits = st.integers(2, 6).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(-3, 3), min_size=n, max_size=n))
)


@settings(max_examples=300, deadline=None)
@given(small_logits, st.data())
def test_keep_top_k_is_the_conjunction_of_top_k_for_each_of_its_labels(found, data) -> None:  # type: ignore[no-untyped-def]
    """On logits with many ties: the set stays the top k iff each of its labels stays in the top k."""
    n, values = found
    k = data.draw(st.integers(1, n - 1))
    labels = tuple(sorted(data.draw(st.permutations(range(n)))[:k]))
    logits = np.array([values], dtype=np.float64)
    keep = KeepTopK(labels, n)
    conjunction = any(TopK(s, k, n).violated(logits)[0] for s in labels)
    assert keep.violated(logits)[0] == conjunction == unsafe(Asked("keep_top_k", 0, k, labels, None), logits)[0]
    assert (keep.margin(logits)[0] >= 0) == conjunction


@settings(max_examples=200, deadline=None)
@given(small_logits, st.data())
def test_k1_is_the_argmax_and_keep_predicted_at_k1_is_the_same_margin(found, data) -> None:  # type: ignore[no-untyped-def]
    """top_k with k = 1: the target stays the argmax (a tie for first is a loss); keep_predicted
    with k = 1 keeps the clean argmax, with exactly the same margin as top_k about it."""
    n, values = found
    target = data.draw(st.integers(0, n - 1))
    logits = np.array([values], dtype=np.float64)
    top1 = TopK(target, 1, n)
    others = np.delete(logits[0], target)
    assert top1.violated(logits)[0] == (others.max() >= logits[0, target])
    np.testing.assert_array_equal(top1.margin(logits), KeepTopK((target,), n).margin(logits))
    np.testing.assert_array_equal(top1.margin(logits), others.max() - logits[0, target])


def test_rows_and_disjuncts_of_each_property() -> None:
    keep = KeepTopK((1, 3), 4)
    assert keep.pairs == [(1, 0), (1, 2), (3, 0), (3, 2)]
    np.testing.assert_array_equal(keep.rows[0], [1, -1, 0, 0])  # F_0 - F_1
    assert list(keep.disjuncts()) == [(0,), (1,), (2,), (3,)] and keep.disjunct_count() == 4
    above = AboveThreshold((0, 2), 0.5, 3, predicted=True)
    np.testing.assert_array_equal(above.rows, [[-1, 0, 0], [0, 0, -1]])
    np.testing.assert_array_equal(above.offsets, [0.0, 0.0])  # logit(0.5) = 0
    assert above.live_disjuncts(np.array([-1.0, 0.5]), -1e-4) == [(1,)]
    assert "every label of {0, 2}" in above.describe_safe(-0.3)
    assert keep.record()["labels"] == [1, 3] and keep.record()["k"] == 2


# --- the verifiers on random small nets --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.4), st.integers(1, 3), st.booleans())
def test_bounds_contain_every_sampled_margin(kind: str, seed: int, radius: float, k: int, conv: bool) -> None:
    network = conv_net(seed) if conv else dense_net(seed, (3, 6, 5, 5))
    base = problem_for(network, seed, k=k)
    rng = np.random.default_rng(seed)
    problem, asked = with_property(base, kind, k, network.logits(base.image[None])[0], rng)
    eps = rng.uniform(0, radius, problem.num_layers)
    logits = network.logits(sample_box(problem, eps, 64, seed))
    margins = problem.margin(logits)
    np.testing.assert_array_equal(margins >= 0, unsafe(asked, logits))  # the margin's sign is the property
    rows = problem.output.row_values(logits)
    for method in ("ibp", "crown", "alpha_crown"):
        result = B.margin_bound(problem, eps, method, alpha_steps=5)
        assert margins.max() <= result.bound + 1e-9, method
        assert np.all(rows <= result.per_class + 1e-9), method


@pytest.fixture(scope="module")
def onnx_nets() -> dict[int, Network]:
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-properties-"))
    return {seed: onnx_dense_net(seed, folder, (4, 6, 6, 4), scale=1.5) for seed in range(6)}


def _onnx_problem(network: Network, seed: int, kind: str, k: int) -> tuple[Problem, Asked]:
    base = problem_for(network, seed, k=k, layers=2)
    clean = onnxruntime_logits(network.path, base.image[None])[0]  # what compile asks
    return with_property(base, kind, k, clean, np.random.default_rng(seed))


def _assert_confirmed(problem: Problem, asked: Asked, eps: np.ndarray, point: np.ndarray) -> None:
    lower, upper = problem.box(eps)
    assert np.all(point >= lower) and np.all(point <= upper)
    assert recheck(problem, eps, point).confirmed
    assert unsafe(asked, onnxruntime_logits(problem.network.path, point[None]))[0]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=8, deadline=None)
@given(st.integers(0, 5), st.floats(0.01, 0.5), st.integers(1, 2))
def test_chain_verdicts_are_sound_and_the_milp_agrees_with_bab(
    onnx_nets: dict[int, Network], kind: str, seed: int, radius: float, k: int
) -> None:
    """ROBUST (bounds, MILP, bab) ⇒ no sampled or attacked point violates the property on
    onnxruntime's logits; NOT_ROBUST ⇒ onnxruntime confirms the counterexample; where the MILP
    and bab both decide, they decide alike."""
    problem, asked = _onnx_problem(onnx_nets[seed], seed, kind, k)
    eps = np.full(problem.num_layers, radius)
    verdicts = {
        "bounds": VERIFIERS["bounds"].check(problem, eps),
        "milp": VERIFIERS["milp"].check(problem, eps, time_limit=20.0),
        "bab": VERIFIERS["bab"].check(problem, eps, time_limit=10.0, batch=16),
        "attack": VERIFIERS["attack"].check(problem, eps, steps=40, restarts=10, seed=seed),
    }
    points = [
        sample_box(problem, eps, 300, seed),
        *(np.array(v.weakest_points) for v in verdicts.values() if v.weakest_points),
    ]
    seen = unsafe(asked, onnxruntime_logits(problem.network.path, np.concatenate(points)))
    for name, verdict in verdicts.items():
        if verdict.status is Status.ROBUST:
            assert not seen.any(), name
            assert verdicts["attack"].status is not Status.NOT_ROBUST, name
        if verdict.status is Status.NOT_ROBUST:
            _assert_confirmed(problem, asked, eps, verdict.counterexample)
    if verdicts["milp"].definite and verdicts["bab"].definite:
        assert verdicts["milp"].status is verdicts["bab"].status


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 5), st.floats(0.02, 0.8), st.integers(1, 3))
def test_keep_top_k_and_the_top_k_of_each_clean_label_get_the_same_verdicts(
    onnx_nets: dict[int, Network], seed: int, radius: float, k: int
) -> None:
    """The exact MILP on keep_predicted (top-k) against one MILP per label of the clean top-k set
    (TopK of it): where all decide, the set is robust iff each of its labels is."""
    problem, asked = _onnx_problem(onnx_nets[seed], seed, "keep_top_k", k)
    eps = np.full(problem.num_layers, radius)
    keep = VERIFIERS["milp"].check(problem, eps, time_limit=20.0)
    each = [
        VERIFIERS["milp"].check(
            Problem(problem.network, problem.image, problem.layer_map, s, k, problem.value_range), eps, time_limit=20.0
        )
        for s in asked.labels
    ]
    if keep.status is Status.ROBUST:
        assert all(v.status is not Status.NOT_ROBUST for v in each)
    if keep.status is Status.NOT_ROBUST:
        assert not all(v.status is Status.ROBUST for v in each)
    if keep.definite and all(v.definite for v in each):
        assert (keep.status is Status.ROBUST) == all(v.status is Status.ROBUST for v in each)


# --- from a spec: the exported toy model (docs in tests/exported.py) ---------------------------
#
# Logits on the toy's image, for a uniform ε: F_0 = 0.502 − ε (the left half falls), F_1 = ε
# (the right half rises), F_2 = 0.25 (a constant); a Sigmoid head on top.


def _toy(folder: Path, body: str, head: str = "Sigmoid") -> Path:
    return write_problem(folder, head, True, QUICK_CHAIN + body)


def _no_k(spec: Path) -> Path:
    """The toy's spec without its `k = 1` line (a threshold property does not use k)."""
    spec.write_text("".join(line for line in spec.read_text().splitlines(True) if line.strip() != "k = 1"))
    return spec


def test_threshold_from_a_spec_is_decided_at_its_exact_edge(tmp_path: Path) -> None:
    """threshold(t = 0.6): F_0 > logit(0.6) ≈ 0.405, i.e. ε < 0.0965. The counterexample's
    logit is at or below logit(t), and so the file's own Sigmoid score is at or below t."""
    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.6)\n"))
    assert check_spec(spec).diagnostics == ()
    robust = mlrobust.check(spec, 0.09)
    assert robust.verdict == "ROBUST" and robust.margin_bound is not None
    assert robust.margin_bound == pytest.approx(logit(0.6) - (LEFT - 0.09), abs=1e-5)  # CROWN is exact here
    refuted = mlrobust.check(spec, 0.1)
    assert refuted.verdict == "NOT_ROBUST" and refuted.counterexample is not None
    point = refuted.counterexample[None]
    assert onnxruntime_logits(spec.parent / "model.onnx", point)[0, 0] <= logit(0.6)
    assert onnxruntime_outputs(spec.parent / "model.onnx", point)[0, 0] <= 0.6 + 1e-7
    record = refuted.to_json()["problem"]["property"]
    assert record["kind"] == "threshold" and record["threshold"] == 0.6 and record["labels"] == [0]
    assert record["text"] == "threshold(t = 0.6)" and "above 0.6" in record["words"]


def test_keep_predicted_threshold_keeps_every_predicted_label_and_a_tie_is_a_loss(tmp_path: Path) -> None:
    """keep_predicted(threshold = 0.5) predicts {0, 2} (logits 0.502 and 0.25 > 0; label 1's 0 is
    not above 0). Label 2 never moves; label 0 falls to exactly 0 once ε reaches the left half's
    value (the box clips at 0): a tie with logit(0.5) = 0, which is a loss."""
    spec = _no_k(_toy(tmp_path, "property = keep_predicted(threshold = 0.5)\n"))
    text = spec.read_text().replace("target = 0\n", "")  # keep_predicted needs no target
    spec.write_text(text)
    assert check_spec(spec).diagnostics == ()
    assert mlrobust.check(spec, 0.45).verdict == "ROBUST"
    tie = mlrobust.check(spec, 0.6)  # past LEFT: the left half's box is [0, 1]
    assert tie.verdict == "NOT_ROBUST"
    logits = onnxruntime_logits(spec.parent / "model.onnx", tie.counterexample[None])[0]
    assert logits[0] == 0.0 and logits[2] > 0  # exactly at the threshold: σ = 0.5 is not above 0.5
    record = tie.to_json()["problem"]
    assert record["target"] is None and record["property"]["labels"] == [0, 2]


def test_keep_predicted_top_k_keeps_the_clean_top_2_set(tmp_path: Path) -> None:
    """k = 2: the clean top-2 set is {0, 2}; it stays the top 2 while F_1 = ε < min(0.502 − ε, 0.25)."""
    spec = _toy(tmp_path, "property = keep_predicted\n")
    spec.write_text(spec.read_text().replace("k = 1", "k = 2"))
    assert mlrobust.check(spec, 0.24).verdict == "ROBUST"
    refuted = mlrobust.check(spec, 0.26)
    assert refuted.verdict == "NOT_ROBUST"
    logits = onnxruntime_logits(spec.parent / "model.onnx", refuted.counterexample[None])[0]
    assert logits[1] >= min(logits[0], logits[2])
    checked = load_checked(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    assert isinstance(problem.output, KeepTopK) and problem.output.labels == (0, 2)
    why = recheck(problem, np.full(problem.num_layers, 0.26), problem.image).reason
    assert "keeps the top-2 set {0, 2}" in why


def test_k1_from_a_spec_is_the_argmax(tmp_path: Path) -> None:
    """top_k with k = 1 (written out): the target stays the argmax while 0.502 − ε > max(ε, 0.25)."""
    spec = _toy(tmp_path, "property = top_k\n")
    assert mlrobust.check(spec, 0.24).verdict == "ROBUST"
    refuted = mlrobust.check(spec, 0.27)
    assert refuted.verdict == "NOT_ROBUST"
    logits = onnxruntime_logits(spec.parent / "model.onnx", refuted.counterexample[None])[0]
    assert max(logits[1], logits[2]) >= logits[0]
    assert refuted.to_json()["problem"]["property"]["words"] == "label 0 stays the top label (k = 1)"


def test_a_binary_classifier_with_one_sigmoid_output_takes_a_threshold(tmp_path: Path) -> None:
    """One logit, one Sigmoid: k has nothing to rank (top_k is a k-out-of-range error there),
    and threshold is the natural question; the toy's label 0 alone, so the edge is ε ≈ 0.0965."""
    import torch

    from .exported import export, toy_model

    toy = toy_model()
    single = torch.nn.Linear(toy[3].in_features, 1)
    with torch.no_grad():
        single.weight.copy_(toy[3].weight[:1])
        single.bias.copy_(toy[3].bias[:1])
    model = export(torch.nn.Sequential(toy[0], toy[1], toy[2], single, torch.nn.Sigmoid()).eval(), tmp_path / "m.onnx")
    spec = _no_k(write_problem(tmp_path, model=model, extra=QUICK_CHAIN + "property = threshold(t = 0.6)\n"))
    assert check_spec(spec).diagnostics == ()
    assert mlrobust.check(spec, 0.09).verdict == "ROBUST"
    assert mlrobust.check(spec, 0.1).verdict == "NOT_ROBUST"
    top = write_problem(tmp_path / "top", model=model)
    assert [d.code for d in check_spec(top).diagnostics] == ["k-out-of-range"]


def test_run_refuses_an_image_whose_target_is_not_above_the_threshold(tmp_path: Path) -> None:
    """t = 0.7: logit 0.847 is above the clean F_0 = 0.502, so even ε = 0 fails: nothing to prove."""
    from mlrobust.compile import compile
    from mlrobust.errors import TargetNotInTopK

    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.7)\n"))
    checked = load_checked(spec)
    with pytest.raises(TargetNotInTopK, match=r"not above logit\(0.7\)"):
        compile(checked.spec, checked.instances[0], "search")


def test_the_recheck_says_why_a_point_is_no_counterexample(tmp_path: Path) -> None:
    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.6)\n"))
    checked = load_checked(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    eps = np.full(problem.num_layers, 0.2)
    rejected = recheck(problem, eps, problem.image)
    assert not rejected.confirmed and rejected.margin is not None and rejected.margin < 0
    assert "keeps label 0 above the threshold 0.6" in rejected.reason


def test_a_threshold_on_a_softmax_head_is_refused_by_lint_and_by_compile(tmp_path: Path) -> None:
    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.5)\n", head="Softmax"))
    codes = [d.code for d in check_spec(spec).diagnostics]
    assert codes == ["property-unsupported"]
    with pytest.raises(UserError, match="Softmax"):
        mlrobust.check(spec, 0.01)
    top = _toy(tmp_path / "top", "", head="Softmax")  # the same model, asked top-k: fine
    checked = load_checked(top)
    instance = checked.instances[0]
    network, _ = Networks().load(instance.model)
    with pytest.raises(UserError, match="a softmax score depends on every logit"):
        output_property(ir.ThresholdProperty(0.5), 1, instance, network, np.zeros((1, 12, 12)))


@pytest.mark.parametrize(
    ("written", "code", "column", "says"),
    [
        ("property = top_k(k = 2)", "bad-value", 18, "top_k() has no argument `k`"),
        ("property = threshold(t = 1)", "bad-value", 26, "strictly between 0 and 1, got 1"),
        ("property = threshold(t = 0.99999999999999999)", "bad-value", 26, "strictly between 0 and 1"),
        ("property = threshold(t = -0.5)", "bad-value", 26, "strictly between 0 and 1"),
        ('property = threshold(t = "high")', "wrong-type", 26, "must be a number"),
        ("property = keep_predicted(t = 0.5)", "bad-value", 27, "has no argument `t`"),
        ("property = keep_predicted(threshold = 1e-400)", "bad-value", 39, "strictly between 0 and 1"),
        ("property = predicted", "unknown-generator", 12, "unknown property `predicted`"),
        ("property = [top_k]", "wrong-type", 12, "not a list"),
    ],
)
def test_lint_points_at_a_bad_property_with_a_hint(
    tmp_path: Path, written: str, code: str, column: int, says: str
) -> None:
    spec = _no_k(_toy(tmp_path, written + "\n"))
    line = spec.read_text().splitlines().index(written) + 1
    errors = [d for d in check_spec(spec).diagnostics if d.is_error]
    assert [(d.code, d.span.line, d.span.column) for d in errors] == [(code, line, column)]
    assert says in errors[0].message and errors[0].hint


def test_the_check_command_names_the_property_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlrobust.cli import main

    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.6)\n"))
    assert main(["check", str(spec), "--eps", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "label 0 keeps a sigmoid score above 0.6 (logit > 0.4055)" in out
    assert main(["check", str(spec), "--eps", "0.05", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["problem"]["property"]["logit"] == pytest.approx(math.log(0.6 / 0.4))


# --- the question hash -------------------------------------------------------------------------


def test_the_property_is_part_of_the_question_and_top_k_keeps_the_old_hash(tmp_path: Path) -> None:
    """A spec that says nothing and one that says `property = top_k` ask the same question (the
    hash computed before properties existed: nothing is appended for top-k); every other property
    asks another, in both hashes (the journal's queries key too)."""
    model = write_problem(tmp_path / "model").parent / "model.onnx"

    def hashes(name: str, body: str) -> tuple[str, str]:
        folder = tmp_path / name
        spec = write_problem(folder, None, True, body, model=model)
        checked = load_checked(spec)
        return question_hashes(checked.spec, checked.instances[0], METHOD_TABLE["search"])

    plain = hashes("plain", "")
    assert hashes("top_k", "property = top_k\n") == plain
    asked = {
        "threshold": hashes("threshold", "property = threshold(t = 0.5)\n"),
        "threshold_again": hashes("threshold_again", "property = threshold(t = .5)\n"),
        "threshold_other": hashes("threshold_other", "property = threshold(t = 0.6)\n"),
        "keep": hashes("keep", "property = keep_predicted\n"),
        "keep_threshold": hashes("keep_threshold", "property = keep_predicted(threshold = 0.5)\n"),
    }
    assert asked.pop("threshold_again") == asked["threshold"]  # the same number, written another way
    every = [plain, *asked.values()]
    assert len({question for question, _ in every}) == len(every)
    assert len({queries for _, queries in every}) == len(every)


# --- the VNN-LIB export ------------------------------------------------------------------------


def test_a_threshold_exports_on_the_logits_of_a_sigmoid_model(tmp_path: Path) -> None:
    """The file's outputs are probabilities, the property is on logits: the export drops the
    Sigmoid (both forms), and the exported pair means what the chain verifies."""
    import onnxruntime

    from mlrobust.problem.property import Disjunction
    from mlrobust.vnnlib.export import Exporter, export_query
    from mlrobust.vnnlib.parse import load_vnnlib

    spec = _no_k(_toy(tmp_path / "toy", "property = threshold(t = 0.6)\n"))
    checked = load_checked(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    eps = np.full(problem.num_layers, 0.3)
    out = tmp_path / "export"
    dnf, head = export_query(Exporter(out), problem, eps, {}, ("dnf", "head"))
    assert "-logits-" in dnf.onnx
    rng = np.random.default_rng(0)
    lower, upper = problem.box(eps)
    shares = rng.uniform(size=(64, *lower.shape)) ** np.linspace(0.5, 4, 64)[:, None, None, None]
    points = (lower + shares * (upper - lower)).astype(np.float32)  # some near the box's low corner
    logits = onnxruntime_logits(problem.network.path, points)
    session = onnxruntime.InferenceSession(str(out / dnf.onnx))
    exported = session.run(None, {session.get_inputs()[0].name: points})[0]
    np.testing.assert_allclose(exported, logits, atol=1e-6)  # the stripped model outputs the logits
    (case,) = load_vnnlib(out / dnf.vnnlib).cases
    read_back = Disjunction(case.rows, case.offsets, case.terms)
    np.testing.assert_array_equal(read_back.violated(logits), problem.violated(logits))
    assert problem.violated(logits).any() and not problem.violated(logits).all()
    session = onnxruntime.InferenceSession(str(out / head.onnx))
    margins = session.run(None, {session.get_inputs()[0].name: points})[0][:, 0]
    np.testing.assert_allclose(margins, problem.margin(logits), atol=1e-5)


def test_a_rank_property_exports_the_users_own_file(tmp_path: Path) -> None:
    """keep_predicted (top-k) compares outputs pairwise: the same of probabilities as of logits,
    so the model is exported as it is, Sigmoid included."""
    from mlrobust.vnnlib.export import Exporter, export_query, head_invariant

    spec = _toy(tmp_path / "toy", "property = keep_predicted\n")
    checked = load_checked(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    assert head_invariant(problem.output)
    (dnf,) = export_query(Exporter(tmp_path / "export"), problem, np.full(problem.num_layers, 0.1), {}, ("dnf",))
    assert "-logits-" not in dnf.onnx
    assert (tmp_path / "export" / dnf.onnx).read_bytes() == (spec.parent / "model.onnx").read_bytes()


# --- a whole run -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_records_the_property_and_proves_only_what_holds(tmp_path: Path) -> None:
    """threshold(t = 0.6) on the toy: the left half's layers (1 … 6) may each fall by less than
    0.502 − logit(0.6) ≈ 0.0965; layer 0 (the right half) never moves F_0. result.json records
    the property; the summary names it in words."""
    from mlrobust.cli import main

    spec = _no_k(_toy(tmp_path, "property = threshold(t = 0.6)\nsearch {\n  resolution = 0.01\n  queries = 40\n}\n"))
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    record = result["problem"]["property"]
    assert record["kind"] == "threshold" and record["labels"] == [0] and record["k"] is None
    edge = LEFT - logit(0.6)
    assert all(eps < edge for eps in result["eps"][1:])
    assert max(result["eps"][1:]) > edge - 0.02
