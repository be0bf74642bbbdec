"""The plan: everything a search needs, decided before it starts (what `compile` returns).

Arrays, not spec IR: the search never sees how the user wrote the weights or the cutting, only
the numbers. Frozen; the mutable things a search uses (the oracle's cache and journal, the
problem's memo of bounds) are objects owned by the plan's problem and the run, never globals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlrobust.contract.methods import Method
from mlrobust.contract.verifiers import VerifierStep
from mlrobust.problem.problem import Problem


@dataclass(frozen=True)
class SearchBudget:
    """What the whole search may spend (each query's own limit is the verifier's option)."""

    queries: int
    seconds: float


@dataclass(frozen=True, eq=False)
class Plan:
    problem: Problem
    method: Method
    weights: np.ndarray  # w, one per layer
    cutting: np.ndarray  # cutting weights cw, one per layer, for CEGIS
    chain: tuple[VerifierStep, ...]  # the verifier chain this method asks (the thesis's oracle for thesis-style)
    resolution: float  # δ
    budget: SearchBudget
    seed: int
    # sha256 prefixes; both computed by `compile.question_hashes`, for `run` and `sweep` alike:
    question: str  # everything that decides the answer: a finished result with it can be reused
    queries_key: str  # everything that decides each query's verdict: journal answers with it replay

    @property
    def num_layers(self) -> int:
        return self.problem.num_layers

    def size(self, eps: np.ndarray | tuple[float, ...]) -> float:
        return float(np.dot(self.weights, eps))
