"""The verification problem: a network, an image, layers, the valid range and an output property.

Definitions (docs/architecture.md, after the design):
- the neighborhood N(ε) is the box |x'_p - x_p| <= ε_layer(p) on every pixel (all channels),
  intersected with [lo, hi]; a frozen pixel (the spec's `freeze`) has ε = 0 whatever its layer;
- the margin m(x') is the k-th largest of F_j(x') - F_t(x') over j != t; N(ε) is robust iff
  max m < 0 over N(ε). Ties count against robustness: t is out of the top k iff at least k
  classes j != t have F_j >= F_t, which is exactly m >= 0. Any other property (the spec's
  `threshold` and `keep_predicted`, a VNN-LIB file's) has a margin of the same kind:
  problem/property.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from mlrobust.nn.network import Network
from mlrobust.problem.property import Disjunction, OutputProperty, TopK

T = TypeVar("T")


class Memo:
    """What the verifiers remember about one problem (bounds of boxes already asked, the patch
    path's last answers): pure functions of the problem and a box, so safe to reuse.

    Owned by the problem, never a module-level table: two problems never share or clobber
    each other's answers, and dropping the problem drops them. Each user names its own slot.
    """

    def __init__(self) -> None:
        self._slots: dict[str, object] = {}

    def slot(self, name: str, make: Callable[[], T]) -> T:
        if name not in self._slots:
            self._slots[name] = make()
        return self._slots[name]  # type: ignore[return-value]

    def clear(self) -> None:
        """Forget everything (benchmarks that time one method after another start each cold)."""
        self._slots.clear()


@dataclass(frozen=True, eq=False)
class Problem:
    """The layered question by default (`target` in the top `k`); any output property when
    `output_property` is given (the spec's `threshold` or `keep_predicted`, compile.py builds
    it) or `disjunction` (a VNN-LIB file's); `target` and `k` are then only recorded (None
    where the question has none).

    The box of a layer's ε is image ± ε on each of its elements, clipped to `value_range`,
    whose ends are numbers or arrays of the image's shape (a VNN-LIB box: the image is its
    centre, one layer, and the ends are the box's own bounds). `layer_map` gives the layer of
    each spatial position (H, W), shared by every channel, or of each element (the input's
    own shape, e.g. a flat MLP input).

    `frozen` (the layer map's shape, bool) marks pixels that keep their value: their radius is
    0 in every box. The box is the one place every verifier reads (attack, bounds, bab, MILP,
    the re-check), so they all honour it without knowing it exists.
    """

    network: Network
    image: np.ndarray  # float64, the network's input shape (C, H, W) or flat, inside value_range
    layer_map: np.ndarray  # int: each pixel's (H, W) or each element's layer
    target: int | None
    k: int | None
    value_range: tuple[float | np.ndarray, float | np.ndarray]
    memo: Memo = field(default_factory=Memo, repr=False)
    disjunction: Disjunction | None = None
    frozen: np.ndarray | None = None
    output_property: OutputProperty | None = None

    @functools.cached_property
    def output(self) -> OutputProperty:
        """The unsafe region over the outputs (problem/property.py)."""
        if self.output_property is not None:
            return self.output_property
        if self.disjunction is not None:
            return self.disjunction
        assert self.target is not None and self.k is not None, "a top-k problem needs a target and k"
        return TopK(self.target, self.k, self.network.num_classes)

    @property
    def num_layers(self) -> int:
        return int(self.layer_map.max()) + 1

    @property
    def per_element_layers(self) -> bool:
        return self.layer_map.shape == self.image.shape

    def pixel_eps(self, eps: np.ndarray) -> np.ndarray:
        eps = np.asarray(eps, dtype=np.float64)
        if eps.shape != (self.num_layers,) or np.any(eps < 0) or not np.all(np.isfinite(eps)):
            raise ValueError(f"ε must be {self.num_layers} finite non-negative numbers, got {eps!r}")
        radius = eps[self.layer_map]
        if self.frozen is not None:
            radius = np.where(self.frozen, 0.0, radius)
        return radius if self.per_element_layers else radius[None]  # (1, H, W): the same for every channel

    def box(self, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-element (lower, upper) of N(ε), float64, the image's shape."""
        radius = self.pixel_eps(eps)
        lo, hi = self.value_range
        return np.clip(self.image - radius, lo, hi), np.clip(self.image + radius, lo, hi)

    def box_tensor(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same box as a differentiable function of an ε tensor (float64)."""
        radius = eps[torch.as_tensor(self.layer_map)]
        if self.frozen is not None:  # multiplied, not assigned: ε's gradient stays defined (0 there)
            radius = radius * torch.as_tensor(~self.frozen, dtype=radius.dtype)
        if not self.per_element_layers:
            radius = radius.unsqueeze(0)
        image = torch.as_tensor(self.image, dtype=eps.dtype)
        lo, hi = (end if np.isscalar(end) else torch.as_tensor(end, dtype=eps.dtype) for end in self.value_range)
        # clamp: the gradient passes where the box edge lies inside [lo, hi], ends included
        return (image - radius).clamp(lo, hi), (image + radius).clamp(lo, hi)

    def free_layers(self) -> np.ndarray:
        """Per layer, whether any of its pixels may move: a layer frozen whole has the same box
        at every ε, so its ε says nothing and must not count in w·ε."""
        if self.frozen is None:
            return np.ones(self.num_layers, dtype=bool)
        free = np.bincount(self.layer_map[~self.frozen].ravel(), minlength=self.num_layers)
        return free > 0

    def layer_reach(self) -> np.ndarray:
        """Per layer, the ε beyond which its box stops growing (it covers the whole range)."""
        lo, hi = self.value_range
        reach = np.maximum(self.image - lo, hi - self.image)
        if not self.per_element_layers:
            reach = reach.max(axis=0)
        if self.frozen is not None:  # a frozen pixel's box never grows; a layer frozen whole stays at 0
            reach = np.where(self.frozen, 0.0, reach)
        return np.array([reach[self.layer_map == d].max() for d in range(self.num_layers)])

    def per_layer_mean(self, values: np.ndarray) -> np.ndarray:
        """The mean of per-element values over each layer's elements (channels summed first)."""
        per_position = values if self.per_element_layers else values.sum(axis=0)
        counts = np.bincount(self.layer_map.ravel(), minlength=self.num_layers)
        sums = np.bincount(self.layer_map.ravel(), weights=per_position.ravel(), minlength=self.num_layers)
        return sums / np.maximum(counts, 1)

    def margin(self, logits: np.ndarray) -> np.ndarray:
        """m for each row of (N, n) outputs (top-k: the k-th largest of F_j - F_t over j != t)."""
        return self.output.margin(logits)

    def margin_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        return self.output.output_margin_tensor(logits)

    def attack_objective_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        """What gradient attacks climb: the margin, or a smooth version of it for properties whose
        margin is a maximum over rows (problem/property.py, `attack_objective`)."""
        return self.output.attack_objective(self.output.row_values_tensor(logits))

    def violated(self, logits: np.ndarray) -> np.ndarray:
        """Unsafe outputs: the margin is >= 0 (ties count against robustness)."""
        return self.output.violated(logits)
