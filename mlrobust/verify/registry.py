"""Every verifier, one record each: what it declares (contract/verifiers.py) and what it runs.

The chain, the oracle, the run and the CLI ask a record's attributes (sound, tier, whether it
batches, whether it remembers proofs, whether its bound can guide the search), never its name.
A verifier's options are declared once, in the catalogue; `check` fills in the defaults from
there and refuses undeclared ones, so the functions behind it declare no defaults of their own.

To add a verifier: declare it in `contract.verifiers.CATALOGUE`, write its check function
(problem, eps, budget, keyword options) -> Verdict, and add its record here. Nothing else
branches on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlrobust.contract.verifiers import CATALOGUE, OptionValue, Tier, Unavailable, VerifierInfo, VerifierStep
from mlrobust.problem.problem import Problem
from mlrobust.verify import attack, bab, bounds, external, milp
from mlrobust.verify.verdict import UNLIMITED, QueryBudget, Verdict

Check = Callable[..., Verdict]  # (problem, eps, budget, **options)
CheckMany = Callable[..., list[Verdict]]  # (problem, boxes, budget, **options)
Remembers = Callable[..., bool]  # (problem, eps, **options): a memoised answer already proves the box
Guide = Callable[..., "bounds.MarginBound"]  # (problem, eps, with_gradient, **options)


@dataclass(frozen=True)
class Verifier:
    info: VerifierInfo
    run: Check
    run_many: CheckMany | None = None  # checks many boxes in one batch (cheaper than one by one)
    remembers: Remembers | None = None
    guide: Guide | None = None  # a differentiable upper bound on the margin, for the search's steps

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sound(self) -> bool:
        return self.info.sound

    @property
    def tier(self) -> Tier:
        return self.info.tier

    @property
    def batched(self) -> bool:
        return self.run_many is not None

    def available(self, options: Mapping[str, OptionValue]) -> Unavailable | None:
        return self.info.available(self.info.resolve(options))

    def check(
        self, problem: Problem, eps: np.ndarray, budget: QueryBudget = UNLIMITED, **options: OptionValue
    ) -> Verdict:
        return self.run(problem, eps, budget, **self.info.resolve(options))

    def check_many(
        self, problem: Problem, boxes: Sequence[np.ndarray], budget: QueryBudget = UNLIMITED, **options: OptionValue
    ) -> list[Verdict]:
        """One verdict per box, each the one `check` gives it alone; batched where the verifier can."""
        resolved = self.info.resolve(options)
        if self.run_many is not None:
            return self.run_many(problem, list(boxes), budget, **resolved)
        return [self.run(problem, eps, budget, **resolved) for eps in boxes]

    def already_proves(self, problem: Problem, eps: np.ndarray, options: Mapping[str, OptionValue]) -> bool:
        """Whether this verifier, with these options, has already proved this very box (no work)."""
        return self.remembers is not None and self.remembers(problem, eps, **self.info.resolve(options))


def _bound_guide(problem: Problem, eps: np.ndarray, with_gradient: bool, *, method: str, alpha_steps: int):  # type: ignore[no-untyped-def]
    return bounds.margin_bound(problem, eps, method, alpha_steps, with_gradient=with_gradient)


VERIFIERS: dict[str, Verifier] = {
    verifier.name: verifier
    for verifier in (
        Verifier(CATALOGUE["attack"], attack.check, run_many=attack.check_many),
        Verifier(CATALOGUE["bounds"], bounds.check, remembers=bounds.proved_before, guide=_bound_guide),
        Verifier(CATALOGUE["bab"], bab.check),
        Verifier(CATALOGUE["milp"], milp.check),
        Verifier(CATALOGUE["external"], external.check),
        Verifier(CATALOGUE["milp_pairwise"], milp.check_pairwise),
    )
}
assert VERIFIERS.keys() == CATALOGUE.keys(), "every declared verifier has exactly one record"


def verifier_of(step: VerifierStep) -> Verifier:
    return VERIFIERS[step.name]


def guide_step(chain: Sequence[VerifierStep]) -> VerifierStep:
    """The step whose bound guides the search: the chain's first verifier with a guide (its
    options as the spec wrote them), or that verifier at its defaults when the chain has none
    (the search still needs a bound to steer by; it proves nothing with it)."""
    for step in chain:
        if VERIFIERS[step.name].guide is not None:
            return step
    default = next(v for v in VERIFIERS.values() if v.guide is not None)
    return default.info.step()


def strongest_sound_step(chain: Sequence[VerifierStep]) -> VerifierStep:
    """The chain's strongest sound verifier (its last complete one, else its last sound one),
    for the final re-proof; the last step if none is sound."""
    sound = [step for step in chain if step.info.is_sound(dict(step.options))]
    complete = [step for step in sound if VERIFIERS[step.name].tier == "complete"]
    return (complete or sound or list(chain))[-1]


def fast_steps(chain: Sequence[VerifierStep]) -> tuple[VerifierStep, ...]:
    """The chain without its complete-tier verifiers (what the search explores with), or the
    whole chain when every step is complete."""
    fast = tuple(step for step in chain if VERIFIERS[step.name].tier == "fast")
    return fast or tuple(chain)
