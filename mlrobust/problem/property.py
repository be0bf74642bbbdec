"""The unsafe region over a network's outputs, as every verifier needs it.

A property is a set of linear *rows* over the outputs F, v_r(F) = rows[r]·F + offsets[r], and
a *margin* g(v) that is nondecreasing in every v_r: the output is unsafe (a counterexample)
iff g(v(F)) >= 0. Because g is monotone, upper bounds U_r on the rows give the upper bound
g(U) on the margin (bounds), and the unsafe region is the union of *disjuncts*, each the set
where all of its rows are >= 0 (the MILP asks one model per disjunct that can still hold).

- TopK (the tool's own question): rows F_j - F_t for j != t, g = the k-th largest row. Its
  disjuncts are the k-subsets of rivals, C(n-1, k) of them, never enumerated up front.
- Disjunction (a VNN-LIB property): g = max over disjuncts of min over their rows, each row
  d - c·F written so that c·F <= d holds iff the row is >= 0.

Ties count as unsafe in both: t is out of the top k iff at least k classes j != t have
F_j >= F_t, which is exactly k-th largest (F_j - F_t) >= 0; a VNN-LIB `<=` holds at equality.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
import torch


class OutputProperty:
    """What the verifiers ask of a property; TopK and Disjunction implement it."""

    rows: np.ndarray  # (R, n)
    offsets: np.ndarray  # (R,)

    def margin_tensor(self, row_values: torch.Tensor) -> torch.Tensor:
        """g for each line of (N, R) row values."""
        raise NotImplementedError

    def disjunct_count(self) -> int:
        raise NotImplementedError

    def disjuncts(self) -> Iterator[tuple[int, ...]]:
        """Every disjunct, as the row indices that must all be >= 0."""
        raise NotImplementedError

    def describe_safe(self, margin: float) -> str:
        """Why a point with this margin (< 0) is no counterexample, for the re-check's message."""
        raise NotImplementedError

    # --- derived, the same for every property ----------------------------------------------

    def row_values(self, outputs: np.ndarray) -> np.ndarray:
        return np.atleast_2d(outputs) @ self.rows.T + self.offsets

    def row_values_tensor(self, outputs: torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(self.rows, dtype=outputs.dtype, device=outputs.device)
        offsets = torch.as_tensor(self.offsets, dtype=outputs.dtype, device=outputs.device)
        return outputs @ rows.T + offsets

    def margin(self, outputs: np.ndarray) -> np.ndarray:
        """g(v(F)) for each row of (N, n) outputs, in float64."""
        values = torch.as_tensor(self.row_values(np.asarray(outputs, dtype=np.float64)))
        return self.margin_tensor(values).numpy()

    def output_margin_tensor(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.margin_tensor(self.row_values_tensor(outputs))

    def violated(self, outputs: np.ndarray) -> np.ndarray:
        """Unsafe: the margin is >= 0 (ties count against robustness)."""
        return self.margin(outputs) >= 0

    def bound(self, upper: np.ndarray) -> float:
        """An upper bound on the margin from upper bounds on every row (g is monotone)."""
        return float(self.margin_tensor(torch.as_tensor(np.asarray(upper, dtype=np.float64))[None])[0])

    def live_disjuncts(self, upper: np.ndarray, threshold: float) -> list[tuple[int, ...]]:
        """The disjuncts whose rows can all reach `threshold` (a disjunct with a row bounded
        below it holds nowhere), the most dangerous first (largest smallest row bound)."""
        live = [d for d in self.live_candidates(upper, threshold) if all(upper[r] >= threshold for r in d)]
        return sorted(live, key=lambda d: -min(upper[r] for r in d))

    def live_candidates(self, upper: np.ndarray, threshold: float) -> Iterator[tuple[int, ...]]:
        return self.disjuncts()


@dataclass(frozen=True, eq=False)
class TopK(OutputProperty):
    target: int
    k: int
    classes: int

    @functools.cached_property
    def others(self) -> np.ndarray:
        return np.array([j for j in range(self.classes) if j != self.target])

    @functools.cached_property
    def rows(self) -> np.ndarray:  # type: ignore[override]
        rows = np.zeros((self.classes - 1, self.classes))
        rows[np.arange(self.classes - 1), self.others] = 1.0
        rows[:, self.target] = -1.0
        return rows

    @functools.cached_property
    def offsets(self) -> np.ndarray:  # type: ignore[override]
        return np.zeros(self.classes - 1)

    def margin_tensor(self, row_values: torch.Tensor) -> torch.Tensor:
        return row_values.topk(self.k, dim=1).values[:, -1]

    def margin(self, outputs: np.ndarray) -> np.ndarray:
        outputs = np.atleast_2d(outputs)
        differences = np.delete(outputs, self.target, axis=1) - outputs[:, self.target : self.target + 1]
        return -np.sort(-differences, axis=1)[:, self.k - 1]

    def violated(self, outputs: np.ndarray) -> np.ndarray:
        """At least k classes j != t score >= F_t."""
        outputs = np.atleast_2d(outputs)
        others = np.delete(outputs, self.target, axis=1)
        return (others >= outputs[:, self.target : self.target + 1]).sum(axis=1) >= self.k

    def disjunct_count(self) -> int:
        return comb(self.classes - 1, self.k)

    def disjuncts(self) -> Iterator[tuple[int, ...]]:
        return combinations(range(self.classes - 1), self.k)

    def live_candidates(self, upper: np.ndarray, threshold: float) -> Iterator[tuple[int, ...]]:
        # only rivals whose own bound reaches the threshold can be in a live subset
        return combinations([r for r in range(self.classes - 1) if upper[r] >= threshold], self.k)

    def describe_safe(self, margin: float) -> str:
        return f"onnxruntime keeps the target in the top {self.k} (m = {margin:.4g})"

    def rival(self, row: int) -> int:
        """The class a row compares with the target."""
        return int(self.others[row])


@dataclass(frozen=True, eq=False)
class Disjunction(OutputProperty):
    """Unsafe iff for some term, every row r of it has rows[r]·F + offsets[r] >= 0."""

    rows: np.ndarray  # type: ignore[misc]
    offsets: np.ndarray  # type: ignore[misc]
    terms: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if not self.terms or any(not term for term in self.terms):
            raise ValueError("a disjunction needs at least one term, and every term at least one row")

    @functools.cached_property
    def _members(self) -> torch.Tensor:
        """(terms, R) bool: which rows each term holds."""
        members = torch.zeros((len(self.terms), len(self.offsets)), dtype=torch.bool)
        for index, term in enumerate(self.terms):
            members[index, list(term)] = True
        return members

    def margin_tensor(self, row_values: torch.Tensor) -> torch.Tensor:
        members = self._members.to(row_values.device)
        # min over each term's rows (others masked to +inf), then max over terms
        masked = torch.where(members[None], row_values[:, None, :], torch.full_like(row_values[:, None, :], torch.inf))
        return masked.min(dim=2).values.max(dim=1).values

    def disjunct_count(self) -> int:
        return len(self.terms)

    def disjuncts(self) -> Iterator[tuple[int, ...]]:
        return iter(self.terms)

    def describe_safe(self, margin: float) -> str:
        return f"onnxruntime's output satisfies no disjunct of the property (m = {margin:.4g})"
