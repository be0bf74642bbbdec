"""The unsafe region over a network's outputs, as every verifier needs it.

A property is a set of linear *rows* over the outputs F, v_r(F) = rows[r]·F + offsets[r], and
a *margin* g(v) that is nondecreasing in every v_r: the output is unsafe (a counterexample)
iff g(v(F)) >= 0. Because g is monotone, upper bounds U_r on the rows give the upper bound
g(U) on the margin (bounds), and the unsafe region is the union of *disjuncts*, each the set
where all of its rows are >= 0 (the MILP asks one model per disjunct that can still hold).

- TopK (the tool's own question): rows F_j - F_t for j != t, g = the k-th largest row. Its
  disjuncts are the k-subsets of rivals, C(n-1, k) of them, never enumerated up front.
- AboveThreshold (`property = threshold(t = …)`, and `keep_predicted(threshold = …)`): the
  labels P keep a sigmoid score above t, i.e. F_j > logit(t) for every j in P (σ is strictly
  increasing, so the map is exact: no probability is ever computed). Rows logit(t) - F_j for
  j in P, g = the largest row; one disjunct per row.
- KeepTopK (`property = keep_predicted` with top-k): the clean image's top-k set S stays the
  top-k set. Rows F_j - F_s for s in S and j not in S, g = the largest row; one disjunct per
  row. This is exactly the conjunction of TopK(s, k) for every s in S: if some j outside S
  has F_j >= F_s, the lowest-scoring s* of S has the k - 1 others of S and j at or above it,
  so s* is out of the top k; and if every j outside S is below every s, each s has at most
  the k - 1 others of S at or above it.
- Disjunction (a VNN-LIB property): g = max over disjuncts of min over their rows, each row
  d - c·F written so that c·F <= d holds iff the row is >= 0.

Ties count as unsafe in all of them: t is out of the top k iff at least k classes j != t have
F_j >= F_t, which is exactly k-th largest (F_j - F_t) >= 0; a label whose logit equals logit(t)
has fallen to the threshold (margin exactly 0); a VNN-LIB `<=` holds at equality.
"""

from __future__ import annotations

import functools
import math
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

    def attack_objective(self, row_values: torch.Tensor) -> torch.Tensor:
        """What a gradient attack climbs, for each line of (N, R) row values: the margin itself
        unless a property says otherwise (its points are ranked by the margin either way)."""
        return self.margin_tensor(row_values)

    def described_disjunct(self, disjunct: tuple[int, ...]) -> list[object]:
        """A disjunct as a person reads it (the MILP's stats name the one it refuted with): its
        row indices, unless a property has better words (classes, label pairs)."""
        return list(disjunct)

    def disjunct_count(self) -> int:
        raise NotImplementedError

    def disjuncts(self) -> Iterator[tuple[int, ...]]:
        """Every disjunct, as the row indices that must all be >= 0."""
        raise NotImplementedError

    def describe_safe(self, margin: float) -> str:
        """Why a point with this margin (< 0) is no counterexample, for the re-check's message."""
        raise NotImplementedError

    def describe(self) -> str:
        """The question in words (the console summary, `check`'s output)."""
        raise NotImplementedError

    def record(self) -> dict[str, object]:
        """The property as result.json's `problem.property` records it: `kind`, `k` and
        `threshold` (each null where the property has none), `logit` (logit(threshold)),
        `labels` (the labels it is about) and `words`."""
        raise NotImplementedError

    def _record(
        self, kind: str, labels: tuple[int, ...] | None, k: int | None = None, threshold: float | None = None
    ) -> dict[str, object]:
        return {
            "kind": kind,
            "k": k,
            "threshold": threshold,
            "logit": None if threshold is None else logit(threshold),
            "labels": None if labels is None else list(labels),
            "words": self.describe(),
        }

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

    def describe(self) -> str:
        if self.k == 1:
            return f"label {self.target} stays the top label (k = 1)"
        return f"label {self.target} stays in the top {self.k}"

    def record(self) -> dict[str, object]:
        return self._record("top_k", (self.target,), k=self.k)

    def rival(self, row: int) -> int:
        """The class a row compares with the target."""
        return int(self.others[row])

    def described_disjunct(self, disjunct: tuple[int, ...]) -> list[object]:
        return [self.rival(r) for r in disjunct]  # the rival classes of a k-subset


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

    def describe(self) -> str:
        return f"the outputs avoid the unsafe region ({len(self.terms)} disjunct(s) of linear constraints)"

    def record(self) -> dict[str, object]:
        return self._record("vnnlib", None)


# --- properties whose unsafe region is "some row >= 0" ----------------------------------------


def logit(t: float) -> float:
    """ln(t / (1 - t)) in float64, for 0 < t < 1: σ(F) > t exactly when F > logit(t)."""
    if not 0.0 < t < 1.0:
        raise ValueError(f"a sigmoid threshold lies strictly between 0 and 1, got {t!r}")
    return math.log(t) - math.log1p(-t)


def labels_text(labels: tuple[int, ...]) -> str:
    return "{" + ", ".join(str(label) for label in labels) + "}"


SMOOTHING = 0.5  # τ of the attack's smooth maximum over rows, in logits


class AnyRow(OutputProperty):
    """Unsafe iff some row is >= 0: g = the largest row, one disjunct per row."""

    def margin_tensor(self, row_values: torch.Tensor) -> torch.Tensor:
        return row_values.max(dim=1).values

    def attack_objective(self, row_values: torch.Tensor) -> torch.Tensor:
        """τ·logsumexp(v / τ), a smooth maximum: the largest row's gradient alone would leave the
        attack stuck where that row cannot move (a label the box never changes), and the other
        rows would never be tried; here every row has a share, the largest the most."""
        return SMOOTHING * torch.logsumexp(row_values / SMOOTHING, dim=1)

    def margin(self, outputs: np.ndarray) -> np.ndarray:
        return np.max(self.row_values(np.asarray(outputs, dtype=np.float64)), axis=1)

    def disjunct_count(self) -> int:
        return len(self.offsets)

    def disjuncts(self) -> Iterator[tuple[int, ...]]:
        return ((r,) for r in range(len(self.offsets)))

    def live_candidates(self, upper: np.ndarray, threshold: float) -> Iterator[tuple[int, ...]]:
        return ((r,) for r in range(len(self.offsets)) if upper[r] >= threshold)


@dataclass(frozen=True, eq=False)
class AboveThreshold(AnyRow):
    """Every label of `labels` keeps its sigmoid score above `threshold`: F_j > logit(t).

    Row r is logit(t) - F_{labels[r]}, so it is >= 0 exactly when that label's logit has fallen
    to logit(t) or below (a tie is unsafe: σ(F) = t is not above t). `predicted` says whether
    the labels are the ones the model predicts on the clean image (`keep_predicted`) or the
    spec's target (`threshold`): it changes only the words.
    """

    labels: tuple[int, ...]
    threshold: float
    classes: int
    predicted: bool = False

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a threshold property needs at least one label")
        if any(not 0 <= j < self.classes for j in self.labels):
            raise ValueError(f"labels {self.labels} out of range for {self.classes} classes")
        logit(self.threshold)  # refuses t outside (0, 1)

    @functools.cached_property
    def cut(self) -> float:
        """logit(t): the logit a label must stay strictly above."""
        return logit(self.threshold)

    @functools.cached_property
    def rows(self) -> np.ndarray:  # type: ignore[override]
        rows = np.zeros((len(self.labels), self.classes))
        rows[np.arange(len(self.labels)), list(self.labels)] = -1.0
        return rows

    @functools.cached_property
    def offsets(self) -> np.ndarray:  # type: ignore[override]
        return np.full(len(self.labels), self.cut)

    def describe_safe(self, margin: float) -> str:
        which = f"every label of {labels_text(self.labels)}" if self.predicted else f"label {self.labels[0]}"
        return (
            f"onnxruntime keeps {which} above the threshold {self.threshold:g} "
            f"(logit > {self.cut:.4g}; the lowest is {-margin:.4g} above it)"
        )

    def describe(self) -> str:
        if self.predicted:
            return (
                f"the labels predicted on the clean image at threshold {self.threshold:g}, "
                f"{labels_text(self.labels)}, keep a sigmoid score above {self.threshold:g} (logit > {self.cut:.4g})"
            )
        return f"label {self.labels[0]} keeps a sigmoid score above {self.threshold:g} (logit > {self.cut:.4g})"

    def record(self) -> dict[str, object]:
        return self._record("keep_predicted" if self.predicted else "threshold", self.labels, threshold=self.threshold)

    def described_disjunct(self, disjunct: tuple[int, ...]) -> list[object]:
        return [self.labels[r] for r in disjunct]  # the label that falls to the threshold


@dataclass(frozen=True, eq=False)
class KeepTopK(AnyRow):
    """The clean image's top-k set `labels` stays the top-k set: every label j outside it
    stays strictly below every label s inside it. Rows F_j - F_s, s in `labels` (outer),
    j not in it (inner, in class order)."""

    labels: tuple[int, ...]
    classes: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.labels) < self.classes or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"a top-k set of 1 … {self.classes - 1} distinct labels, got {self.labels}")

    @property
    def k(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def outside(self) -> np.ndarray:
        return np.array([j for j in range(self.classes) if j not in self.labels])

    @functools.cached_property
    def pairs(self) -> list[tuple[int, int]]:
        """(s, j) of each row: s of the set, j outside it."""
        return [(s, int(j)) for s in self.labels for j in self.outside]

    @functools.cached_property
    def rows(self) -> np.ndarray:  # type: ignore[override]
        rows = np.zeros((len(self.pairs), self.classes))
        for r, (s, j) in enumerate(self.pairs):
            rows[r, j] += 1.0
            rows[r, s] -= 1.0
        return rows

    @functools.cached_property
    def offsets(self) -> np.ndarray:  # type: ignore[override]
        return np.zeros(len(self.pairs))

    def describe_safe(self, margin: float) -> str:
        return (
            f"onnxruntime keeps the top-{self.k} set {labels_text(self.labels)} (every other label "
            f"{-margin:.4g} or more below each of them)"
        )

    def describe(self) -> str:
        return f"the clean image's top-{self.k} set {labels_text(self.labels)} stays the top {self.k}"

    def record(self) -> dict[str, object]:
        return self._record("keep_predicted", self.labels, k=self.k)

    def described_disjunct(self, disjunct: tuple[int, ...]) -> list[object]:
        return [list(self.pairs[r]) for r in disjunct]  # [s, j]: label j reaches label s of the set


def clean_top_k(logits: np.ndarray, k: int) -> tuple[int, ...]:
    """The top-k labels of one logit vector (ties broken by class order; a tie at the k-th place
    leaves the set undefined, which KeepTopK then finds violated on the clean image itself)."""
    order = np.argsort(-np.asarray(logits, dtype=np.float64).ravel(), kind="stable")
    return tuple(sorted(int(j) for j in order[:k]))


def predicted_above(logits: np.ndarray, threshold: float) -> tuple[int, ...]:
    """The labels whose sigmoid score is above `threshold`: F_j > logit(t)."""
    cut = logit(threshold)
    return tuple(int(j) for j in np.flatnonzero(np.asarray(logits, dtype=np.float64).ravel() > cut))
