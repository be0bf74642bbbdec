"""The verification problem: a network, an image, layers, a target, k and the valid range.

Definitions (docs/architecture.md, after the design):
- the neighborhood N(ε) is the box |x'_p - x_p| <= ε_layer(p) on every pixel (all channels),
  intersected with [lo, hi];
- the margin m(x') is the k-th largest of F_j(x') - F_t(x') over j != t; N(ε) is robust iff
  max m < 0 over N(ε). Ties count against robustness: t is out of the top k iff at least k
  classes j != t have F_j >= F_t, which is exactly m >= 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from mlrobust.nn.network import Network

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
    network: Network
    image: np.ndarray  # float64 (C, H, W), inside value_range
    layer_map: np.ndarray  # int (H, W): each pixel's layer
    target: int
    k: int
    value_range: tuple[float, float]
    memo: Memo = field(default_factory=Memo, repr=False)

    @property
    def num_layers(self) -> int:
        return int(self.layer_map.max()) + 1

    def pixel_eps(self, eps: np.ndarray) -> np.ndarray:
        eps = np.asarray(eps, dtype=np.float64)
        if eps.shape != (self.num_layers,) or np.any(eps < 0) or not np.all(np.isfinite(eps)):
            raise ValueError(f"ε must be {self.num_layers} finite non-negative numbers, got {eps!r}")
        return eps[self.layer_map][None]  # (1, H, W): the same for every channel

    def box(self, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (lower, upper) of N(ε), float64 (C, H, W)."""
        radius = self.pixel_eps(eps)
        lo, hi = self.value_range
        return np.clip(self.image - radius, lo, hi), np.clip(self.image + radius, lo, hi)

    def box_tensor(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same box as a differentiable function of an ε tensor (float64)."""
        index = torch.as_tensor(self.layer_map)
        radius = eps[index].unsqueeze(0)
        image = torch.as_tensor(self.image, dtype=eps.dtype)
        lo, hi = self.value_range
        return (image - radius).clamp(lo, hi), (image + radius).clamp(lo, hi)

    def spec_matrix(self) -> np.ndarray:
        """(n-1, n): one row e_j - e_t per class j != t."""
        n = self.network.num_classes
        rows = np.zeros((n - 1, n))
        others = [j for j in range(n) if j != self.target]
        rows[np.arange(n - 1), others] = 1.0
        rows[:, self.target] = -1.0
        return rows

    def margin(self, logits: np.ndarray) -> np.ndarray:
        """m for each row of (N, n) logits: the k-th largest of F_j - F_t over j != t."""
        logits = np.atleast_2d(logits)
        differences = np.delete(logits, self.target, axis=1) - logits[:, self.target : self.target + 1]
        return -np.sort(-differences, axis=1)[:, self.k - 1]

    def margin_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        others = [j for j in range(self.network.num_classes) if j != self.target]
        differences = logits[:, others] - logits[:, self.target : self.target + 1]
        return differences.topk(self.k, dim=1).values[:, -1]

    def violated(self, logits: np.ndarray) -> np.ndarray:
        """t out of the top k: at least k classes j != t score >= F_t (ties count against robustness)."""
        logits = np.atleast_2d(logits)
        others = np.delete(logits, self.target, axis=1)
        return (others >= logits[:, self.target : self.target + 1]).sum(axis=1) >= self.k
