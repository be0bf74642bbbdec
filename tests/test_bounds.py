"""Soundness of the bound engine, by properties over random networks and random boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B
from mlrobust.verify import patches

from .netfactory import conv_net, dense_net, problem_for, sample_box

seeds = st.integers(0, 10_000)
radii = st.floats(0.0, 0.4)


def _activations(network, points: np.ndarray) -> list[np.ndarray]:
    values = [points]
    x = torch.as_tensor(points)
    with torch.no_grad():
        for op in network.ops:
            x = op.forward(x)
            values.append(x.numpy())
    return values


def _check_sound(problem, eps, seed: int) -> None:
    points = sample_box(problem, eps, 64, seed)
    margins = problem.margin(problem.network.logits(points))
    results = {m: B.margin_bound(problem, eps, m, alpha_steps=5) for m in ("ibp", "crown", "alpha_crown")}
    for method, result in results.items():
        assert margins.max() <= result.bound + 1e-9, method
    assert results["crown"].bound <= results["ibp"].bound + 1e-12
    assert results["alpha_crown"].bound <= results["ibp"].bound + 1e-12


@settings(max_examples=40, deadline=None)
@given(seeds, radii, st.integers(1, 3))
def test_dense_bounds_contain_every_sampled_margin(seed: int, radius: float, k: int) -> None:
    network = dense_net(seed, (3, 6, 5, 5))
    problem = problem_for(network, seed, k=k)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    _check_sound(problem, eps, seed)


@settings(max_examples=30, deadline=None)
@given(seeds, radii, st.sampled_from([1, 2]))
def test_conv_maxpool_bounds_contain_every_sampled_margin(seed: int, radius: float, stride: int) -> None:
    network = conv_net(seed, stride=stride, size=6 if stride == 1 else 8)
    problem = problem_for(network, seed)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    _check_sound(problem, eps, seed)


@settings(max_examples=30, deadline=None)
@given(seeds, radii, st.floats(0.01, 0.9), st.booleans())
def test_leaky_relu_bounds_contain_every_sampled_margin(seed: int, radius: float, leak: float, conv: bool) -> None:
    """LeakyReLU's relaxation (chord above, a line through 0 of slope in [leak, 1] below,
    tuned by α-CROWN) holds on dense and conv nets."""
    network = conv_net(seed, leak=leak) if conv else dense_net(seed, (3, 6, 5, 5), leak=leak)
    problem = problem_for(network, seed)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    _check_sound(problem, eps, seed)


def test_alpha_crown_tunes_leaky_relu_slopes() -> None:
    """On LeakyReLU nets whose bound CROWN leaves loose, α-CROWN's tuned lower slopes lower
    the rows' bounds (CROWN's adaptive slopes, 1 or a, are its starting point)."""
    tightened = 0
    for seed in range(8):
        problem = problem_for(dense_net(seed, (3, 8, 8, 5), leak=0.2), seed, k=1)
        eps = np.full(problem.num_layers, 0.3)
        crown = B.margin_bound(problem, eps, "crown")
        alpha = B.margin_bound(problem, eps, "alpha_crown", alpha_steps=30)
        assert alpha.per_class.sum() <= crown.per_class.sum() + 1e-9
        tightened += int(alpha.per_class.sum() < crown.per_class.sum() - 1e-6)
    assert tightened >= 4


@settings(max_examples=30, deadline=None)
@given(seeds, radii)
def test_intermediate_bounds_contain_sampled_activations(seed: int, radius: float) -> None:
    network = conv_net(seed)
    problem = problem_for(network, seed)
    eps = np.full(problem.num_layers, radius)
    lower, upper = problem.box(eps)
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    bounds = B.crown_intermediate(network.ops, box)
    activations = _activations(network, sample_box(problem, eps, 64, seed))
    for index, interval in enumerate(bounds):
        if interval is None:
            continue
        values = activations[index]
        assert np.all(values >= interval.lower.numpy() - 1e-9) and np.all(values <= interval.upper.numpy() + 1e-9)


@settings(max_examples=25, deadline=None)
@given(seeds, radii, st.sampled_from([1, 2]), st.sampled_from([7, 256]))
def test_patch_path_equals_generic_back_substitution(seed: int, radius: float, stride: int, chunk: int) -> None:
    network = conv_net(seed, stride=stride, size=6 if stride == 1 else 8)
    assert patches.applies(network.ops, 3)
    problem = problem_for(network, seed)
    lower, upper = problem.box(np.full(problem.num_layers, radius))
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    relu_bounds = B.ibp(network.ops, box)[1]
    size = int(np.prod(network.ops[2].out_shape))
    # any subset, in any order, in chunks that split positions: the per-position tables must
    # follow each neuron
    neurons = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: max(1, size * 2 // 3)]
    count = neurons.numel()
    above, below = patches.refine(network.ops, neurons, relu_bounds, box, chunk=chunk, precision="float64")
    fast = torch.cat([above, -below])
    rows = torch.zeros(2 * count, size, dtype=torch.float64)
    rows[torch.arange(count), neurons] = 1
    rows[torch.arange(count, 2 * count), neurons] = -1
    bounds: list = [None] * len(network.ops)
    bounds[1] = relu_bounds
    generic = B.backsubstitute(network.ops, 3, rows.reshape(2 * count, *network.ops[2].out_shape), bounds, box)
    np.testing.assert_allclose(fast.numpy(), generic.numpy(), atol=1e-10)
    # the float32 product with its error bound added: never tighter than the exact numbers
    # (so still sound), and looser only by rounding
    above32, below32 = patches.refine(network.ops, neurons, relu_bounds, box, chunk=chunk)
    assert torch.all(above32 >= above) and torch.all(below32 <= below)
    np.testing.assert_allclose(above32.numpy(), above.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(below32.numpy(), below.numpy(), rtol=1e-4, atol=1e-4)


def test_zero_eps_bound_is_the_margin_itself() -> None:
    network = conv_net(7)
    problem = problem_for(network, 7)
    eps = np.zeros(problem.num_layers)
    exact = problem.margin(network.logits(problem.image[None]))[0]
    for method in ("ibp", "crown"):
        assert abs(B.margin_bound(problem, eps, method).bound - exact) < 1e-9


def test_bound_gradient_matches_finite_differences_with_relaxations_fixed() -> None:
    """∂bound/∂ε from autograd against a finite difference of the IBP bound (piecewise linear)."""
    network = dense_net(3, (3, 6, 5, 5))
    problem = problem_for(network, 3)
    eps = np.array([0.05, 0.03, 0.02])
    result = B.margin_bound(problem, eps, "ibp", with_gradient=True)
    assert result.gradient is not None and result.gradient.shape == eps.shape
    for d in range(len(eps)):
        step = np.zeros_like(eps)
        step[d] = 1e-7
        numeric = (B.margin_bound(problem, eps + step, "ibp").bound - result.bound) / 1e-7
        assert abs(numeric - result.gradient[d]) < 1e-4 * max(1.0, abs(numeric))
    crown = B.margin_bound(problem, eps, "crown", with_gradient=True)
    assert crown.gradient is not None and np.all(crown.gradient >= -1e-12)  # a bigger box never lowers the bound


@settings(max_examples=25, deadline=None)
@given(seeds, radii, st.sampled_from([1, 2]))
def test_skipping_outclassed_pool_inputs_changes_no_bound(seed: int, radius: float, stride: int) -> None:
    """CROWN rows are spent only on max-pool inputs that can matter; refining all of them
    gives the same bounds (the skipped ones are never a window's maximum nor its i*)."""
    network = conv_net(seed, stride=stride, size=6 if stride == 1 else 8)
    problem = problem_for(network, seed)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    lower, upper = problem.box(eps)
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    spec = torch.as_tensor(problem.output.rows)
    skipped = B.crown_intermediate(network.ops, box)
    original = B._outclassed
    try:
        B._outclassed = lambda op, bounds: torch.zeros(bounds.upper.numel(), dtype=torch.bool)
        full = B.crown_intermediate(network.ops, box)
    finally:
        B._outclassed = original
    with_skip = B.backsubstitute(network.ops, len(network.ops), spec, skipped, box)
    without = B.backsubstitute(network.ops, len(network.ops), spec, full, box)
    np.testing.assert_allclose(with_skip.numpy(), without.numpy(), atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(seeds, radii, st.sampled_from([1, 2]))
def test_refine_reuses_unchanged_patches_exactly(seed: int, radius: float, stride: int) -> None:
    """Steps that change one layer reuse the bounds of the patches they leave alone: every
    answer equals a fresh computation, whatever the history."""
    network = conv_net(seed, stride=stride, size=12)
    random = problem_for(network, seed)
    # layers in bands of columns, like distance rings: a step in one layer leaves far patches alone
    bands = np.repeat(np.arange(4), 3)[None, :].repeat(12, axis=0)
    problem = Problem(network, random.image, bands, random.target, 2, (0.0, 1.0))
    rng = np.random.default_rng(seed)
    eps = rng.uniform(0, radius, problem.num_layers)
    size = int(np.prod(network.ops[2].out_shape))
    remembered = patches.history()
    computed: list[int] = []  # neurons computed afresh, per refine
    fresh = patches._refine_fresh

    def counted(ops, asked, *args, **options):  # type: ignore[no-untyped-def]
        computed.append(asked.numel())
        return fresh(ops, asked, *args, **options)

    partial = 0
    patches._refine_fresh = counted
    try:
        for _ in range(6):
            lower, upper = problem.box(eps)
            box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
            relu_bounds = B.ibp(network.ops, box)[1]
            order = torch.randperm(size, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
            neurons = order[: size // 2]
            expected = fresh(network.ops, neurons, relu_bounds, box, precision="float64")
            computed.clear()
            answer = patches.refine(network.ops, neurons, relu_bounds, box, remembered, precision="float64")
            partial += sum(computed) < neurons.numel()
            for got, want in zip(answer, expected, strict=True):
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)
            layer = int(rng.integers(problem.num_layers))  # the next box: one layer moved
            eps = eps.copy()
            eps[layer] = rng.uniform(0, radius)
    finally:
        patches._refine_fresh = fresh
    assert partial >= 3  # most steps computed only part of the neurons afresh


def test_intersect_takes_the_hull_where_sound_bounds_cross_by_rounding() -> None:
    value = torch.tensor([0.8486390566284402, 1.0, -2.0], dtype=torch.float64)
    ulp = torch.nextafter(value, torch.full_like(value, np.inf)) - value
    # IBP says [v, v], CROWN [v + 1 ulp, v + 1 ulp] for the first; the others do not cross
    lower, upper = B.intersect(value, value, value + torch.tensor([1.0, 0, 0]) * ulp, value + 1.0)
    assert torch.all(lower <= upper)
    assert lower[0] == value[0] and upper[0] == value[0] + ulp[0]
    assert torch.equal(lower[1:], value[1:]) and torch.equal(upper[1:], value[1:])
    with pytest.raises(RuntimeError, match="unsound bounds"):
        B.intersect(value, value, value + 1e-3, value + 1.0)


@settings(max_examples=40, deadline=None)
@given(seeds, radii, st.sampled_from([1, 2]))
def test_intermediate_bounds_never_cross_when_layers_are_fixed(seed: int, radius: float, stride: int) -> None:
    """With some layers at ε = 0, neurons the box fixes exactly sit in undecided max-pool
    windows; IBP and CROWN reach their value by different arithmetic, and lower <= upper must
    still hold (a MILP's max-pool encoding needs it)."""
    network = conv_net(seed, stride=stride, size=6 if stride == 1 else 8)
    problem = problem_for(network, seed, layers=4)
    eps = np.random.default_rng(seed).uniform(0, radius, problem.num_layers)
    eps[np.random.default_rng(seed + 1).random(problem.num_layers) < 0.5] = 0.0
    lower, upper = problem.box(eps)
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    for interval in B.crown_intermediate(network.ops, box):
        if interval is not None:
            assert torch.all(interval.lower <= interval.upper)


@settings(max_examples=60, deadline=None)
@given(seeds, st.sampled_from([(0, 0, 0, 0), (1, 1, 0, 0), (0, 0, 1, 1)]), st.floats(0.0, 1.0))
def test_maxpool_plane_holds_at_every_vertex_and_touches_one(seed: int, padding, dominance: float) -> None:
    """Per window: x_i* <= max x <= c·x + d on every vertex of the box (the extremes of both
    linear gaps), c on the simplex with no weight on padding, and d no larger than needed
    (some vertex meets the plane), whether or not an input dominates its window."""
    from mlrobust.nn import ops as o

    in_shape = (2, 5, 5)
    windows, out_shape = o.maxpool_windows(in_shape, (2, 2), (2, 2), padding, (1, 1))
    op = o.MaxPool((2, 2), (2, 2), padding, (1, 1), in_shape, out_shape, windows)
    rng = np.random.default_rng(seed)
    lower = rng.normal(size=int(np.prod(in_shape)))
    lower[rng.random(lower.size) < dominance / 2] += 3.0  # some inputs dominate their window
    upper = lower + rng.exponential(size=lower.size) * (rng.random(lower.size) < 0.8)
    bounds = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    relaxation = B.relax_maxpool(op, bounds)
    weights, offset = relaxation.weights.numpy(), relaxation.offset.numpy()
    for out, window in enumerate(windows):
        valid = window >= 0
        members = window[valid]
        c = weights[out][valid]
        assert np.all(weights[out][~valid] == 0) and np.all(c >= 0) and abs(c.sum() - 1) < 1e-12
        corners = np.array(np.meshgrid(*[(lower[m], upper[m]) for m in members], indexing="ij"))
        corners = corners.reshape(len(members), -1).T  # every vertex of the window's box
        peak = corners.max(axis=1)
        floor = corners[:, list(members).index(int(relaxation.argmax_lower[out]))]
        gap = peak - corners @ c
        assert np.all(floor <= peak + 1e-12)
        assert np.all(gap <= offset[out] + 1e-9)
        assert gap.max() >= offset[out] - 1e-9
        if bool(relaxation.decided[out]):
            assert offset[out] == 0.0


@settings(max_examples=30, deadline=None)
@given(
    seeds,
    st.sampled_from([(8, 4), (8, 2), (6, 4), (5, 3), (3, 1), (3, 2), (2, 3)]),
    st.sampled_from([(8, 8), (6, 6), (3, 2)]),
    st.integers(1, 3),
)
def test_phase_split_transpose_is_the_dense_transpose(seed: int, geometry, patch, inputs: int) -> None:  # type: ignore[no-untyped-def]
    """The float32 |rows·M| product goes through Conv_a's transpose split by output phase
    (`patches._Phases`); it must be the dense transpose's product, entry for entry, for any
    kernel and stride (a kernel that is not a multiple of the stride, or smaller than it, too)."""
    from mlrobust.nn import ops as o

    kernel, stride = geometry
    rng = np.random.default_rng(seed)
    channels = 3
    size = 40
    out = (size - kernel) // stride + 1
    conv = o.Conv(
        rng.normal(0, 0.5, (channels, inputs, kernel, kernel)),
        rng.normal(0, 0.3, channels),
        (stride, stride),
        (0, 0, 0, 0),
        (1, 1),
        (inputs, size, size),
        (channels, out, out),
    )
    matrix, _ = patches._transposed_conv_matrix(conv, patch, torch.float64)  # (C_a·kb·kb, C_in·P·P)
    phases = patches._Phases.of(conv, patch)
    rows = torch.as_tensor(rng.normal(0, 1, (5, matrix.shape[0])))
    spread = torch.as_tensor(rng.uniform(0, 1, (4, matrix.shape[1])))
    dense = rows @ matrix
    split = phases.product(rows.float()).double()
    # the same numbers in phase order: contract each with the radii arranged the same way
    for u in range(spread.shape[0]):
        expected = dense.abs() @ spread[u]
        got = (split.abs() * phases.arrange(spread[u : u + 1].float()).double()).flatten(1).sum(1)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4)
    # and each image pixel exactly once: the arranged radii hold every pixel and zeros elsewhere
    arranged = phases.arrange(torch.arange(1, matrix.shape[1] + 1, dtype=torch.float32)[None])
    values = arranged[arranged > 0]
    assert sorted(values.tolist()) == list(range(1, matrix.shape[1] + 1))
