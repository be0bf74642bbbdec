"""Branch and bound: sound (ROBUST ⇒ no sampled or attacked point violates; NOT_ROBUST ⇒
onnxruntime confirms), in agreement with the exact MILP and complete on tiny nets, and its
split constraints only ever tighten a domain's bound."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.nn import ops as o
from mlrobust.nn.network import load_network
from mlrobust.problem.problem import Problem
from mlrobust.verify import bab
from mlrobust.verify import bounds as B
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .netfactory import is_window_max, rows_of, sample_box, value_before, window_pieces_hold


def onnx_net(seed: int, folder: Path, conv: bool, leak: float = 0.0):  # type: ignore[no-untyped-def]
    """A random ReLU net exported to ONNX (so counterexamples are re-checked for real): the
    bundled models' shape in small (conv, ReLU, conv, ReLU, max-pool, linear), or an MLP;
    LeakyReLUs of slope `leak` in place of the ReLUs when leak > 0."""
    torch.manual_seed(seed)

    def act() -> torch.nn.Module:
        return torch.nn.LeakyReLU(leak) if leak > 0 else torch.nn.ReLU()

    if conv:
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 3, 3, padding=1),
            act(),
            torch.nn.Conv2d(3, 4, 3, padding=1),
            act(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 5),
        )
        shape = (1, 1, 8, 8)
    else:
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(12, 10), act(), torch.nn.Linear(10, 8), act(),
            torch.nn.Linear(8, 4),
        )  # fmt: skip
        shape = (1, 1, 3, 4)
    path = folder / f"net-{seed}-{conv}-{leak}.onnx"
    torch.onnx.export(model, (torch.zeros(shape),), path, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    network, _ = load_network(path)
    return network


def problem_on(network, seed: int, k: int) -> Problem:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, network.input_shape).astype(np.float32).astype(np.float64)
    layers = rng.integers(0, 3, size=network.input_shape[1:])
    layers.flat[:3] = np.arange(3)
    target = int(np.argsort(-network.logits(image[None])[0])[0])
    return Problem(network, image, layers, target, k, (0.0, 1.0))


def violated_anywhere(problem: Problem, eps: np.ndarray, seed: int) -> bool:
    """Sampled points, corners and a strong attack: does any put the target out of the top k?"""
    points = sample_box(problem, eps, 400, seed)
    if problem.violated(problem.network.logits(points)).any():
        return True
    attack = VERIFIERS["attack"].check(problem, eps, steps=60, restarts=20, seed=seed)
    return attack.status is Status.NOT_ROBUST


@pytest.fixture(scope="module")
def nets():  # type: ignore[no-untyped-def]
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-bab-"))
    return {(seed, conv): onnx_net(seed, folder, conv) for seed in range(6) for conv in (True, False)}


@pytest.fixture(scope="module")
def leaky_nets():  # type: ignore[no-untyped-def]
    """The same shapes with LeakyReLU (slope 0.3): bab splits them as it splits ReLUs."""
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-bab-leaky-"))
    return {(seed, conv): onnx_net(seed, folder, conv, leak=0.3) for seed in range(6) for conv in (True, False)}


QUERIES = (st.integers(0, 5), st.booleans(), st.floats(0.01, 0.6), st.integers(1, 2))


@settings(max_examples=6, deadline=None)
@given(*QUERIES)
def test_bab_is_sound_and_agrees_with_the_exact_milp(nets, device, seed, conv, radius, k) -> None:  # type: ignore[no-untyped-def]
    sound_and_complete(nets, seed, conv, radius, k, device)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(*QUERIES)
def test_bab_is_sound_and_agrees_with_the_exact_milp_on_many_queries(nets, device, seed, conv, radius, k) -> None:  # type: ignore[no-untyped-def]
    sound_and_complete(nets, seed, conv, radius, k, device)


@settings(max_examples=4, deadline=None)
@given(*QUERIES)
def test_bab_on_leaky_relus_is_sound_and_agrees_with_the_exact_milp(leaky_nets, device, seed, conv, radius, k) -> None:  # type: ignore[no-untyped-def]
    sound_and_complete(leaky_nets, seed, conv, radius, k, device)


@pytest.mark.parametrize("leaky", [False, True])
def test_an_unsplit_untuned_domain_is_bounded_as_crown_bounds_the_box(nets, leaky_nets, device, leaky: bool) -> None:  # type: ignore[no-untyped-def]
    """bab's rules with no split, α at CROWN's adaptive choice and no β are CROWN's own rules
    (bounds.py, tested by sampling): the root domain's rows get CROWN's bounds, to rounding.
    A ReLU or LeakyReLU rule of bab's that relaxed any piece differently would show here.
    (The MLPs only: a max-pool's tuned plane starts from a softmax of CROWN's, equal only
    to within ~1e-5.)"""
    for (seed, conv), network in (leaky_nets if leaky else nets).items():
        if conv:
            continue
        problem = problem_on(network, seed, 2)
        eps = np.full(problem.num_layers, 0.15)
        root = bab.prepare(problem, eps, torch.device(device))
        domain = bab.bound_domains(root, [bab.Domain(0.0, 0, {})], 0, B.SAFETY_MARGIN, time.perf_counter() + 60)
        spec = torch.as_tensor(problem.output.rows, device=device)
        crown = B.backsubstitute(problem.network.ops, len(problem.network.ops), spec, root.bounds, root.box)
        expected = crown.cpu().numpy() + problem.output.offsets
        assert np.allclose(domain.rows[0].cpu().numpy(), expected, rtol=1e-9, atol=1e-9), (seed, conv)


def test_bab_splits_leaky_relus_and_closes_what_crown_leaves_open(leaky_nets, device) -> None:  # type: ignore[no-untyped-def]
    """The LeakyReLUs are split (not left to the leaves' MILP): on boxes CROWN cannot prove,
    bab closes domains by splitting, and decides what the exact MILP decides."""
    split_queries = 0
    for (seed, conv), network in leaky_nets.items():
        problem = problem_on(network, seed, 1)
        root = bab.prepare(problem, np.full(problem.num_layers, 0.1), torch.device(device))
        leaky = [i for i, op in enumerate(network.ops) if type(op).__name__ == "LeakyRelu"]
        assert set(root.relus) <= set(leaky) and root.relus, (seed, conv)
        _, high = B.crown_edge(problem, 0.6, 12)  # a box a little past CROWN's edge
        eps = np.full(problem.num_layers, high * 1.05)
        verdict = VERIFIERS["bab"].check(problem, eps, time_limit=20.0, batch=16, device=device)
        exact = VERIFIERS["milp"].check(problem, eps, time_limit=30.0)
        if exact.definite:
            assert verdict.status is exact.status, (seed, conv, verdict.stats)
        if verdict.status is Status.ROBUST and verdict.stats.get("domains_bounded", 0) > 1:
            split_queries += 1
            assert verdict.stats.get("leaves_by_lp", 0) < verdict.stats["domains_bounded"]
    assert split_queries >= 3


def sound_and_complete(nets, seed: int, conv: bool, radius: float, k: int, device: str) -> None:  # type: ignore[no-untyped-def]
    problem = problem_on(nets[(seed, conv)], seed, k)
    eps = np.full(problem.num_layers, radius)
    verdict = VERIFIERS["bab"].check(problem, eps, time_limit=20.0, batch=16, device=device)
    assert verdict.stats["device"] == device
    if verdict.status is Status.ROBUST:
        assert not violated_anywhere(problem, eps, seed)
        assert verdict.margin_bound is not None and verdict.margin_bound < 0
    if verdict.status is Status.NOT_ROBUST:
        from mlrobust.verify.recheck import recheck

        assert recheck(problem, eps, verdict.counterexample).confirmed
    exact = VERIFIERS["milp"].check(problem, eps, time_limit=30.0)
    if exact.definite:
        # complete on tiny nets: bab decides what the MILP decides, and the same way
        assert verdict.status is exact.status, (verdict.stats, exact.stats)


@settings(max_examples=16, deadline=None)
@given(st.integers(0, 5), st.booleans(), st.floats(0.05, 0.5), st.booleans())
def test_a_split_only_tightens_and_its_bound_holds_on_the_split_region(  # type: ignore[no-untyped-def]
    nets, leaky_nets, device, seed: int, conv: bool, radius: float, leaky: bool
) -> None:
    """Both halves of a split are bounded at most as high as their parent (what the search
    keeps: `inherit`), and sampled points of each half (points whose split neuron has the
    half's sign; for a max-pool window, points whose split member is the window's maximum or
    not) never exceed the half's own row bounds: the β terms and the split's exact pieces keep
    the bound sound on the half, tuned or not (a LeakyReLU's inactive half is its slope-a
    piece, not zero)."""
    problem = problem_on((leaky_nets if leaky else nets)[(seed, conv)], seed, 1)
    eps = np.full(problem.num_layers, radius)
    root = bab.prepare(problem, eps, torch.device(device))
    if not root.splittable:
        return
    parent = bab.bound_domains(root, [bab.Domain(0.0, 0, {})], 0, B.SAFETY_MARGIN, time.perf_counter() + 60)
    choice = parent.choices[0]
    assert choice is not None
    children = bab._children(root, bab.Domain(0.0, 0, {}, values=parent.rows[0]), choice, 1)
    points = sample_box(problem, eps, 3000, seed)
    index, neuron = choice
    before = value_before(problem, points, index)
    op = problem.network.ops[index]
    if isinstance(op, o.MaxPool):
        first = is_window_max(before, op, *divmod(neuron, op.windows.shape[1]))
        regions = [first, ~first]
    else:
        regions = [before[:, neuron] >= 0, before[:, neuron] <= 0]
    rows = rows_of(problem, points)
    for steps in (0, 10):
        halves = bab.bound_domains(root, children, steps, B.SAFETY_MARGIN, time.perf_counter() + 60)
        kept = bab.inherit(root, bab.Bounded(halves.rows.clone(), halves.margins, [], halves.corners), children)
        assert torch.all(kept.rows <= parent.rows) and torch.all(kept.margins <= parent.margins)
        for half, inside in enumerate(regions):
            if inside.any():
                assert np.all(rows[inside] <= halves.rows[half].cpu().numpy()[None] + 1e-7)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 5), st.floats(0.1, 0.6), st.booleans())
def test_window_splits_hold_on_their_regions_two_levels_deep(  # type: ignore[no-untyped-def]
    nets, leaky_nets, device, seed: int, radius: float, leaky: bool
) -> None:
    """A max-pool window split on its top member j1, and the "not j1" half split again on the
    runner-up j2: each of the four pieces bounds its sampled points, tuned or not (a pool after
    a ReLU or a LeakyReLU here; after a Concat in tests/test_graph_networks.py)."""
    problem = problem_on((leaky_nets if leaky else nets)[(seed, True)], seed, 1)
    window_pieces_hold(problem, np.full(problem.num_layers, radius), seed, device)


def test_bab_proves_a_box_past_crowns_edge_on_the_bundled_pgd_model(device: str) -> None:
    """On test/0001 the uniform box 2% past CROWN's edge is robust (the MILP proves it too):
    bab's tuned root alone (α, β, the max-pool planes, the disjunct's combined row) closes it."""
    from mlrobust.compile import compile_problem
    from mlrobust.spec.check import check_spec

    from .helpers import REPO

    checked = check_spec(REPO / "specs" / "double_mnist_pgd.mlr")
    spec = checked.spec
    problem = compile_problem(spec, checked.instances[0])
    low, _ = B.crown_edge(problem, 0.5, 16)
    eps = np.full(problem.num_layers, low * 1.02)
    assert VERIFIERS["bounds"].check(problem, eps).status is Status.UNKNOWN
    verdict = VERIFIERS["bab"].check(problem, eps, time_limit=60.0, device=device)
    assert verdict.status is Status.ROBUST, verdict.stats
    assert not violated_anywhere(problem, eps, 0)


def test_bab_started_from_other_boxes_tuning_stays_sound_and_complete(nets, device) -> None:  # type: ignore[no-untyped-def]
    """Each query's root starts from the previous query's tuned parameters (`WarmStart`): a
    search asks nearby boxes in a row. Such a start changes only where the tuning begins, so
    on a run of growing and shrinking boxes every verdict must still be sound and agree with
    the exact MILP wherever both decide, and warm-started queries must really have decided."""
    warm = 0
    for seed, conv in ((0, True), (1, False)):
        problem = problem_on(nets[(seed, conv)], seed, 2)
        for radius in (0.3, 0.1, 0.45, 0.2):
            eps = np.full(problem.num_layers, radius)
            verdict = VERIFIERS["bab"].check(problem, eps, time_limit=20.0, batch=16, device=device)
            warm += int(verdict.stats["warm_started"]) * int(verdict.definite)
            if verdict.status is Status.ROBUST:
                assert not violated_anywhere(problem, eps, seed)
            if verdict.status is Status.NOT_ROBUST:
                from mlrobust.verify.recheck import recheck

                assert recheck(problem, eps, verdict.counterexample).confirmed
            exact = VERIFIERS["milp"].check(problem, eps, time_limit=30.0)
            if exact.definite and verdict.definite:
                assert verdict.status is exact.status, (seed, conv, radius, verdict.stats, exact.stats)
    assert warm >= 2, "too few warm-started queries decided: the warm start is not exercised"


def test_remembered_tuning_goes_back_to_the_same_rows_and_disjuncts() -> None:
    """`remember` then `seed_params` on the same objective: every live row starts from the short
    pass's parameters, every combined row from the parameters tuned for its own disjunct (λ at
    its own member rows), even when the live rows are not the first ones."""
    rows, shape = 6, (2, 3)
    live = torch.tensor([1, 3, 4])
    members = torch.tensor([[True, True, False], [False, True, True], [True, False, True]])
    objective = bab.Objective(live, members, True, -1.0)
    generator = torch.Generator().manual_seed(0)
    short = bab.Params({5: torch.rand((1, rows, *shape), generator=generator)}, {}, None)
    tuned = bab.Params(
        {5: torch.rand((1, 3 + 3, *shape), generator=generator)},
        {},
        torch.where(members[None], torch.randn((1, 3, 3), generator=generator), torch.zeros(1, 3, 3)),
    )
    known = bab.remember(objective, short, tuned, "cpu")
    # the full-row memory: the long tuning's on the live rows, the short pass's elsewhere
    assert torch.equal(known.rows.alphas[5][:, live], tuned.alphas[5][:, :3])
    assert torch.equal(known.rows.alphas[5][:, [0, 2, 5]], short.alphas[5][:, [0, 2, 5]])
    # the next query's short pass returns other parameters; its combined rows come from memory
    again = bab.Params({5: torch.rand((1, rows, *shape), generator=generator)}, {}, None)
    values = torch.arange(rows, dtype=torch.float64)
    seeded = bab.seed_params(objective, again, values, known)
    assert torch.equal(seeded.alphas[5][:, :3], again.alphas[5][:, live])
    assert torch.equal(seeded.alphas[5][:, 3:], tuned.alphas[5][:, 3:])
    assert seeded.logits is not None and tuned.logits is not None
    assert torch.equal(seeded.logits[members[None]], tuned.logits[members[None]])
    # with nothing remembered a combined row starts from its member of largest bound
    fresh = bab.seed_params(objective, again, values, None)
    hardest = [3, 4, 4]  # rows {1, 3}, {3, 4}, {1, 4}: the larger value wins
    assert torch.equal(fresh.alphas[5][:, 3:], again.alphas[5][:, hardest])


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 5), st.booleans(), st.floats(0.05, 0.4), st.booleans(), st.integers(1, 3))
def test_refining_only_the_neurons_a_split_reaches_loses_nothing(  # type: ignore[no-untyped-def]
    nets, leaky_nets, device, seed: int, conv: bool, radius: float, leaky: bool, depth: int
) -> None:
    """A domain's intermediate bounds are recomputed only for the neurons its splits can reach
    (`_touched`): the others' CROWN bound is the root's own. Against recomputing every
    unstable neuron (the reference: `_touched` marking all), on random batches of domains
    with up to three first-layer splits: the same closed domains and the same rows' bounds to
    rounding (the root leaves a max-pool's outclassed members at IBP, which the
    reference tightens, to no effect on the rows), and sampled points that satisfy a domain's
    splits inside its intermediate bounds. On the conv nets a split must leave neurons out,
    or the test proves nothing."""
    problem = problem_on((leaky_nets if leaky else nets)[(seed, conv)], seed, 1)
    eps = np.full(problem.num_layers, radius)
    root = bab.prepare(problem, eps, torch.device(device))
    if len(root.relus) < 2:
        return
    first = root.relus[0]
    unstable = torch.nonzero(root.unstable[first].flatten()).flatten()
    rng = np.random.default_rng(seed)
    domains = []
    for serial in range(6):
        layer = torch.zeros(root.unstable[first].numel(), dtype=torch.int8)
        picked = rng.choice(unstable.numel(), size=min(depth, unstable.numel()), replace=False)
        layer[unstable[picked]] = torch.as_tensor(rng.choice([-1, 1], size=len(picked)), dtype=torch.int8)
        domains.append(bab.Domain(0.0, serial, {first: layer}))
    splits = bab._full_splits(root, domains)
    ops = problem.network.ops

    def refined_and_bounded() -> tuple[dict, torch.Tensor, torch.Tensor]:
        deadline = time.perf_counter() + 60
        refined, infeasible = bab.refine_domains(root, splits, len(domains), deadline)
        return refined, infeasible, bab.bound_domains(root, domains, 0, B.SAFETY_MARGIN, deadline).rows

    refined, infeasible, rows = refined_and_bounded()
    original = bab._touched
    try:
        bab._touched = lambda ops, end, marks, count, device: torch.ones(  # type: ignore[assignment]
            (count, *(ops[0].in_shape if end == 0 else ops[end - 1].out_shape)), dtype=torch.bool, device=device
        )
        everywhere, infeasible_everywhere, rows_everywhere = refined_and_bounded()
    finally:
        bab._touched = original
    assert torch.equal(infeasible, infeasible_everywhere)
    finite = torch.isfinite(rows_everywhere)
    assert torch.equal(finite, torch.isfinite(rows))
    # to the rounding slack of the root's float32 patch path (~1e-6), which the float64 reference
    # tightens on the neurons it re-bounds
    assert torch.allclose(rows[finite], rows_everywhere[finite], rtol=0, atol=1e-5)
    points = sample_box(problem, eps, 1000, seed)
    split_values = value_before(problem, points, first)
    for index in everywhere:
        root_bounds = root.bounds[index]
        assert root_bounds is not None
        before = value_before(problem, points, index)
        for bounds in (refined, everywhere):
            shape = (len(domains), *root_bounds.lower.shape[1:])
            low, up = bounds.get(index, (root_bounds.lower.expand(shape), root_bounds.upper.expand(shape)))
            for d, domain in enumerate(domains):
                signs = domain.splits[first].numpy()
                inside = np.all(split_values[:, signs > 0] >= 0, axis=1) & np.all(
                    split_values[:, signs < 0] <= 0, axis=1
                )
                assert np.all(before[inside] >= low[d].flatten().cpu().numpy() - 1e-7)
                assert np.all(before[inside] <= up[d].flatten().cpu().numpy() + 1e-7)
        if conv:
            reached = bab._touched(ops, o.input_of(ops, index), {first: splits[first] != 0}, len(domains), device)
            assert bool((~reached).any())
