"""The verifier chain: verifiers in order, the first definite answer ends the query."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mlrobust.contract.verifiers import VerifierStep
from mlrobust.problem.problem import Problem
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import UNLIMITED, QueryBudget, Status, Verdict


@dataclass(frozen=True, eq=False)
class ChainResult:
    verdict: Verdict  # the deciding verdict, or a merged UNKNOWN
    steps: tuple[Verdict, ...]  # every verifier that ran, in order

    @property
    def status(self) -> Status:
        return self.verdict.status


def _first_useful_step(problem: Problem, eps: np.ndarray, chain: tuple[VerifierStep, ...]) -> int:
    """Skip the verifiers before a step that has already proved this very box.

    The search line-searches on its guide bound (the chain's own `bounds` step) and then asks
    the chain about the point it found; an attack first would be wasted, since no point of a
    proved box can break it (the safety margin covers onnxruntime's float32 tolerance), and
    the verdict is the same ROBUST.
    """
    for index, step in enumerate(chain):
        if VERIFIERS[step.name].already_proves(problem, eps, dict(step.options)):
            return index
    return 0


def run_chain(
    problem: Problem, eps: np.ndarray, chain: tuple[VerifierStep, ...], budget: QueryBudget = UNLIMITED
) -> ChainResult:
    return run_chain_many(problem, [eps], chain, budget)[0]


def run_chain_many(
    problem: Problem, boxes: list[np.ndarray], chain: tuple[VerifierStep, ...], budget: QueryBudget = UNLIMITED
) -> list[ChainResult]:
    """The chain on several boxes: the same verdicts as run_chain box by box, but a batched
    verifier gets every box still open in one call (PGD on 40 boxes at once costs little more
    than on one). `budget` is per box; a batched step's time counts against every box in it."""
    steps: list[list[Verdict]] = [[] for _ in boxes]
    decided: dict[int, Verdict] = {}
    spent = [0.0] * len(boxes)

    def remaining(index: int) -> float | None:
        return None if budget.seconds is None else max(0.0, budget.seconds - spent[index])

    first = [_first_useful_step(problem, eps, chain) for eps in boxes]
    for position, step in enumerate(chain):
        open_boxes = [i for i in range(len(boxes)) if i not in decided and first[i] <= position]
        if not open_boxes:
            continue
        options = dict(step.options)
        verifier = VERIFIERS[step.name]
        if verifier.batched and len(open_boxes) > 1:
            started = time.perf_counter()
            limits = [remaining(i) for i in open_boxes]
            batch_budget = QueryBudget(None if any(v is None for v in limits) else min(limits))  # type: ignore[type-var]
            verdicts = verifier.check_many(problem, [boxes[i] for i in open_boxes], batch_budget, **options)
            elapsed = time.perf_counter() - started
            for i in open_boxes:
                spent[i] += elapsed
        else:
            verdicts = []
            for i in open_boxes:
                started = time.perf_counter()
                verdicts.append(verifier.check(problem, boxes[i], QueryBudget(remaining(i)), **options))
                spent[i] += time.perf_counter() - started
        for i, verdict in zip(open_boxes, verdicts, strict=True):
            steps[i].append(verdict)
            if verdict.definite:
                decided[i] = verdict
    return [
        ChainResult(decided[i], tuple(steps[i]))
        if i in decided
        else ChainResult(merge_unknown(steps[i], spent[i]), tuple(steps[i]))
        for i in range(len(boxes))
    ]


def merge_unknown(steps: list[Verdict], seconds: float) -> Verdict:
    """No definite answer: keep the tightest sound bound and the strongest attack point."""
    upper = [v.margin_bound for v in steps if v.margin_bound is not None]
    found = [v for v in steps if v.best_margin is not None]
    strongest = max(found, key=lambda v: v.best_margin) if found else None  # type: ignore[arg-type, return-value]
    return Verdict(
        Status.UNKNOWN,
        steps[-1].verifier if steps else "none",
        min(upper) if upper else None,
        strongest.best_margin if strongest else None,
        None,
        strongest.weakest_points if strongest else (),
        seconds,
        {"verifiers": [v.verifier for v in steps]},
    )
