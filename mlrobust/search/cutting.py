"""Cutting weights for CEGIS: ε' = ε_failed ⊙ cw + ε_robust ⊙ (1 - cw).

A cutting weight near 1 keeps most of the failed expansion in that layer (it shrinks little);
near 0 returns the layer to its last robust value.

- fixed (thesis §3): near layers shrink less: cw_0 = cw_1 = r/(r+1), cw_d = (r+1-d)/(r+1);
  with per-object layers, per object, d and r being the distance to that object and its last ring.
- sensitivity: the vanilla gradient |∂m/∂x_p| at the image, averaged over each layer's pixels
  (for a property whose margin is a maximum of rows, of its smooth maximum: the attack's
  objective, so a row that does not move at the image does not hide the others).
  The thesis's sentence ("shrink more in layers that are less sensitive") and its formula
  (cw_i < cw_j when layer i is more sensitive) disagree. We follow the formula: the more
  sensitive a layer, the more it shrinks, because a violation most likely comes through the
  sensitive layers and pulling them back lowers the margin most per unit of size given up.
  cw_d = 0.9 (1 - s_d / max s): the most sensitive layer returns to its robust value, and no
  layer keeps more than 90% of a failed step (so repeated cuts always converge).
"""

from __future__ import annotations

import numpy as np
import torch

from mlrobust.problem.problem import Problem


def fixed_weights(layers: int) -> np.ndarray:
    r = layers - 1
    d = np.arange(layers)
    return (r + 1 - np.maximum(d, 1)) / (r + 1)


def fixed_cutting(counts: tuple[int, ...]) -> np.ndarray:
    """Fixed weights for layers grouped by object (`counts`: each object's number of distances,
    one entry under `union`): each object's rings get the thesis's weights by their distance to
    that object, with its own r, since "near" means near the object the ring surrounds."""
    return np.concatenate([fixed_weights(count) for count in counts])


def layer_sensitivity(problem: Problem, point: np.ndarray | None = None) -> np.ndarray:
    """Mean |∂m/∂x_p| over each layer's pixels (all channels), at `point` (default: the image)."""
    x = torch.as_tensor((problem.image if point is None else point)[None], dtype=torch.float64).requires_grad_(True)
    margin = problem.attack_objective_tensor(problem.network.forward(x))  # the margin (smoothed over rows)
    (gradient,) = torch.autograd.grad(margin.sum(), x)
    return problem.per_layer_mean(gradient[0].abs().numpy())


def sensitivity_weights(problem: Problem) -> np.ndarray:
    sensitivity = layer_sensitivity(problem)
    top = sensitivity.max()
    return 0.9 * (1 - sensitivity / top) if top > 0 else np.full(problem.num_layers, 0.5)


def cut(failed: np.ndarray, robust: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return failed * weights + robust * (1 - weights)
