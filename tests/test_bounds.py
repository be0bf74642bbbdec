"""Soundness of the bound engine, by properties over random networks and random boxes."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
@given(seeds, radii, st.sampled_from([1, 2]))
def test_patch_path_equals_generic_back_substitution(seed: int, radius: float, stride: int) -> None:
    network = conv_net(seed, stride=stride, size=6 if stride == 1 else 8)
    assert patches.applies(network.ops, 3)
    problem = problem_for(network, seed)
    lower, upper = problem.box(np.full(problem.num_layers, radius))
    box = B.Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    relu_bounds = B.ibp(network.ops, box)[1]
    size = int(np.prod(network.ops[2].out_shape))
    neurons = torch.arange(size)
    above, below = patches.refine(network.ops, neurons, relu_bounds, box)
    fast = torch.cat([above, -below])
    rows = torch.zeros(2 * size, size, dtype=torch.float64)
    rows[torch.arange(size), neurons] = 1
    rows[torch.arange(size, 2 * size), neurons] = -1
    bounds: list = [None] * len(network.ops)
    bounds[1] = relu_bounds
    generic = B.backsubstitute(network.ops, 3, rows.reshape(2 * size, *network.ops[2].out_shape), bounds, box)
    np.testing.assert_allclose(fast.numpy(), generic.numpy(), atol=1e-10)


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
