"""The one contract every verifier keeps: a Verdict per query."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Status(StrEnum):
    ROBUST = "ROBUST"  # proved by a sound method
    NOT_ROBUST = "NOT_ROBUST"  # a counterexample re-checked by onnxruntime on the user's file
    UNKNOWN = "UNKNOWN"  # everything else


@dataclass(frozen=True, eq=False)
class Verdict:
    status: Status
    verifier: str
    margin_bound: float | None  # a sound upper bound on max m over N(ε) (None: this verifier has none)
    best_margin: float | None  # the largest m found at a concrete point (a lower bound on max m)
    counterexample: np.ndarray | None = None  # (C, H, W), re-checked, only with NOT_ROBUST
    weakest_points: tuple[np.ndarray, ...] = ()  # points of largest m found (inside the box)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    # the stats that add up over queries (counts and seconds; `max_…` ones keep a maximum), which
    # a run sums per verifier; settings and bounds in `stats` do not add up, so they are not here
    tallies: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is Status.NOT_ROBUST and self.counterexample is None:
            raise ValueError("NOT_ROBUST needs a re-checked counterexample")

    @property
    def definite(self) -> bool:
        return self.status is not Status.UNKNOWN


@dataclass(frozen=True)
class QueryBudget:
    """What one query may spend; `seconds` None means the verifier's own limit. (The search's
    budget, over all its queries, is the plan's `SearchBudget`.)"""

    seconds: float | None = None


UNLIMITED = QueryBudget()
