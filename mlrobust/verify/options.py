"""Every verifier's options, declared once: the spec checker, `fmt` and the CLI help read this.

A verifier is *sound* when its ROBUST is a proof (bounds, MILP). `attack` only ever finds
counterexamples, so a chain without a sound verifier can never say ROBUST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OptionKind = Literal["int", "float", "duration", "choice", "bool"]


@dataclass(frozen=True)
class Option:
    name: str
    kind: OptionKind
    default: int | float | str | bool
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive lower bound for numbers and durations

    def describe(self) -> str:
        allowed = f" one of {', '.join(self.choices)};" if self.choices else ""
        unit = "s" if self.kind == "duration" else ""
        return f"{self.name} ({self.kind};{allowed} default {self.default}{unit}): {self.help}"


@dataclass(frozen=True)
class VerifierInfo:
    name: str
    sound: bool
    summary: str
    options: tuple[Option, ...]

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


VERIFIERS: dict[str, VerifierInfo] = {
    info.name: info
    for info in (
        VerifierInfo(
            "attack",
            sound=False,
            summary="PGD on the top-k margin inside the layered box; finds counterexamples, never proves",
            options=(
                Option("steps", "int", 50, "gradient steps per restart", minimum=1),
                Option("restarts", "int", 5, "random starts inside the box", minimum=1),
                Option("step_size", "float", 0.1, "step as a fraction of each pixel's box width", minimum=0),
                Option("seed", "int", 0, "random seed of the starts", minimum=0),
            ),
        ),
        VerifierInfo(
            "bounds",
            sound=True,
            summary="bound propagation in float64 (IBP or CROWN back-substitution); proves ROBUST",
            options=(
                Option("method", "choice", "crown", "relaxation", choices=("ibp", "crown", "alpha_crown")),
                Option("alpha_steps", "int", 20, "lower-slope optimisation steps (alpha_crown)", minimum=0),
            ),
        ),
        VerifierInfo(
            "milp",
            sound=True,
            summary="exact big-M MILP with the top-k margin as one model; proves or refutes",
            options=(
                Option("solver", "choice", "highs", "MILP solver", choices=("highs", "gurobi")),
                Option("time_limit", "duration", 30.0, "solver time limit per query", minimum=0),
                Option("refine", "choice", "none", "tighten pre-activation bounds by LP", choices=("none", "lp")),
                Option("threads", "int", 1, "solver threads", minimum=1),
            ),
        ),
    )
}

DEFAULT_CHAIN = ("attack", "bounds", "milp")
