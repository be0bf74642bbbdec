"""Certify the search's answer: which verifier proved ε*, and a fresh proof by the chain's
strongest sound verifier before it is reported.

ε* is always a box the oracle was told is ROBUST by a sound verifier (or inside one). The
re-proof asks the strongest sound verifier of the chain again, on ε* itself, from nothing
remembered: extra evidence, and a soundness alarm if it ever finds a confirmed counterexample
in a box another sound verifier proved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlrobust.plan import Plan
from mlrobust.search.loop import SearchOutcome
from mlrobust.search.oracle import Oracle
from mlrobust.verify.chain import run_chain
from mlrobust.verify.registry import strongest_sound_step
from mlrobust.verify.verdict import Status


class SoundnessFailure(RuntimeError):
    """Two sound verifiers disagree: one proved a box in which another found a confirmed
    counterexample. A bug; never reported as a result."""


@dataclass(frozen=True)
class Reproof:
    verifier: str
    verdict: str  # "ROBUST", "UNKNOWN" (its time limit) or "skipped (Ctrl-C)"
    seconds: float | None = None
    proof: str | None = None  # how a complete verifier proved it (e.g. the solver's dual bounds)


@dataclass(frozen=True)
class Certificate:
    verifier: str  # the verifier that proves ε*: the re-proof's, or the first proof when the re-proof is UNKNOWN
    reproof: Reproof
    interrupted: bool  # Ctrl-C came during the re-proof


def first_proof(oracle: Oracle, eps: np.ndarray) -> str:
    """The verifier of the first real ROBUST answer whose box contains ε."""
    if not np.any(eps > 0):
        return "start"
    for query in oracle.history:
        if query.status is Status.ROBUST and not query.cached and np.all(eps <= np.array(query.eps)):
            return query.verifier
    for entry in oracle.journal.values():  # answered by an earlier run of the same question
        if entry["status"] == Status.ROBUST and np.all(eps <= np.array(entry["eps"])):
            return str(entry["verifier"])
    return "cache"


def certify(plan: Plan, outcome: SearchOutcome, oracle: Oracle) -> Certificate:
    strongest = strongest_sound_step(plan.chain)
    first = first_proof(oracle, outcome.eps)
    try:
        answer = run_chain(plan.problem, outcome.eps, (strongest,))
    except KeyboardInterrupt:
        return Certificate(first, Reproof(strongest.name, "skipped (Ctrl-C)"), interrupted=True)
    if answer.status is Status.NOT_ROBUST:
        raise SoundnessFailure(
            f"soundness check failed: {first} proved ε* but {strongest.name} found a confirmed counterexample"
        )
    verdict = answer.verdict
    reproof = Reproof(strongest.name, verdict.status.value, verdict.seconds, verdict.stats.get("proof"))
    # ε* was proved by a sound verifier of the chain; the re-proof is extra evidence, and when
    # it is UNKNOWN (a time limit), the first proof stands and the result says so
    proved_by = verdict.verifier if answer.status is Status.ROBUST else first
    return Certificate(proved_by, reproof, interrupted=False)
