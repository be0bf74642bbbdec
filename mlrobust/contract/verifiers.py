"""What every verifier declares, once: the spec checker, `fmt`, the docs, the chain and the
verifier functions themselves all read it here.

A verifier is *sound* when its ROBUST is a proof (bounds, MILP). `attack` only ever finds
counterexamples, so a chain without a sound verifier can never say ROBUST. Its *tier* says
what a query costs: `fast` verifiers (an attack, bound propagation) answer in milliseconds
and the search explores with them; `complete` ones (an exact MILP) can take their whole
time limit and are asked only where the fast ones leave a question open.

Torch-free and free of the other stages: Spec, Verify and Search all import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from mlrobust.contract.span import UNKNOWN_SPAN, Span

OptionKind = Literal["int", "float", "duration", "choice", "bool", "string"]
OptionValue = int | float | str | bool
Tier = Literal["fast", "complete"]


@dataclass(frozen=True)
class Option:
    name: str
    kind: OptionKind
    default: OptionValue
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive lower bound for numbers and durations

    def describe(self) -> str:
        allowed = f" one of {', '.join(self.choices)};" if self.choices else ""
        unit = "s" if self.kind == "duration" else ""
        return f"{self.name} ({self.kind};{allowed} default {self.default}{unit}): {self.help}"

    def shown_default(self) -> str:
        """The default as a spec writes it (a duration with its unit)."""
        if self.kind == "duration":
            return f"{self.default:g}s"
        if self.kind == "string":
            return f'"{self.default}"' if self.default else "required"
        return str(self.default).lower() if isinstance(self.default, bool) else f"{self.default}"


@dataclass(frozen=True)
class Unavailable:
    """Why a verifier cannot run as configured here, which option is to blame, and the fix."""

    reason: str
    option: str | None
    fix: str


@dataclass(frozen=True)
class VerifierStep:
    """One verifier of the chain with every option resolved (defaults included)."""

    name: str
    options: tuple[tuple[str, OptionValue], ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def option(self, name: str) -> OptionValue:
        return dict(self.options)[name]

    @property
    def info(self) -> VerifierInfo:
        return CATALOGUE[self.name]


@dataclass(frozen=True)
class VerifierInfo:
    name: str
    sound: bool
    tier: Tier
    summary: str
    options: tuple[Option, ...]
    in_language: bool = True  # False: used by a search method internally, not written in specs
    availability: Callable[[Mapping[str, OptionValue]], Unavailable | None] | None = None
    sound_when: str | None = None  # a bool option that makes an unsound verifier's ROBUST a proof (trust)
    required: tuple[str, ...] = ()  # options a spec must write (no useful default)

    def is_sound(self, options: Mapping[str, OptionValue]) -> bool:
        """Whether ROBUST from this verifier, with these options, is a proof."""
        return self.sound or (self.sound_when is not None and bool(options.get(self.sound_when)))

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve(self, given: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
        """Every declared option, from `given` or its default; an undeclared name is an error
        (a typo must not silently fall back to a default)."""
        unknown = sorted(set(given) - {o.name for o in self.options})
        if unknown:
            raise TypeError(f"{self.name} has no option {', '.join(unknown)}")
        return {o.name: given.get(o.name, o.default) for o in self.options}

    def step(self, **options: OptionValue) -> VerifierStep:
        return VerifierStep(self.name, tuple(self.resolve(options).items()))

    def available(self, options: Mapping[str, OptionValue]) -> Unavailable | None:
        """None when this verifier can run here with these options; else why not."""
        return self.availability(options) if self.availability is not None else None


DEVICES = ("cpu", "cuda")  # where a bound engine can run: the spec option and the CLI's --device


def _bab_availability(options: Mapping[str, OptionValue]) -> Unavailable | None:
    if options.get("device") != "cuda":
        return None
    from mlrobust.contract.solvers import cuda_problem

    problem = cuda_problem()
    return Unavailable(f"device = cuda chosen, but {problem}", "device", "use device = cpu") if problem else None


def _milp_availability(options: Mapping[str, OptionValue]) -> Unavailable | None:
    if options.get("solver") != "gurobi":
        return None
    from mlrobust.contract.solvers import GUROBI_FIX, gurobi_problem

    problem = gurobi_problem()
    return Unavailable(f"solver = gurobi chosen, but {problem}", "solver", GUROBI_FIX) if problem else None


CATALOGUE: dict[str, VerifierInfo] = {
    info.name: info
    for info in (
        VerifierInfo(
            "attack",
            sound=False,
            tier="fast",
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
            tier="fast",
            summary="bound propagation in float64 (IBP or CROWN back-substitution); proves ROBUST",
            options=(
                Option("method", "choice", "crown", "relaxation", choices=("ibp", "crown", "alpha_crown")),
                Option("alpha_steps", "int", 20, "lower-slope optimisation steps (alpha_crown)", minimum=0),
            ),
        ),
        VerifierInfo(
            "milp",
            sound=True,
            tier="complete",
            summary="exact big-M MILP, one model per class subset that can still win; proves or refutes",
            options=(
                Option("solver", "choice", "highs", "MILP solver", choices=("highs", "gurobi")),
                Option("time_limit", "duration", 30.0, "solver time limit per query", minimum=0),
                Option("threads", "int", 1, "solver threads", minimum=1),
            ),
            availability=_milp_availability,
        ),
        VerifierInfo(
            "bab",
            sound=True,
            tier="complete",
            summary="branch and bound on ReLU splits over the bound engine (β-CROWN style); proves or refutes "
            "given time",
            options=(
                Option("time_limit", "duration", 10.0, "time limit per query", minimum=0),
                Option("batch", "int", 64, "domains bounded together in one pass of the engine", minimum=2),
                Option("steps", "int", 8, "α/β optimisation steps per batch of domains", minimum=0),
                Option("device", "choice", "cpu", "where the bound engine runs", choices=DEVICES),
            ),
            availability=_bab_availability,
        ),
        VerifierInfo(
            "external",
            sound=False,
            tier="complete",
            summary="any VNN-COMP-style tool on the query exported as ONNX + VNN-LIB; its sat is re-checked, "
            "its unsat counts only when trusted",
            options=(
                Option(
                    "command",
                    "string",
                    "",
                    "the tool's command; {onnx} {vnnlib} {result} {timeout} are filled in, else the VNN-COMP "
                    "arguments `v1 mlrobust ONNX VNNLIB RESULT TIMEOUT` are appended",
                ),
                Option(
                    "timeout", "duration", 60.0, "wall-clock limit per query (the tool is killed after it)", minimum=0
                ),
                Option("trusted", "bool", False, "count the tool's unsat as a proof (its name goes into the result)"),
                Option(
                    "form",
                    "choice",
                    "dnf",
                    "the export: the property's DNF, or one halfspace on a margin head",
                    choices=("dnf", "head"),
                ),
            ),
            sound_when="trusted",
            required=("command",),
        ),
        VerifierInfo(
            "milp_pairwise",
            sound=True,
            tier="complete",
            summary="the thesis's oracle: one HiGHS MILP per k-subset of the other classes",
            options=(Option("time_limit", "duration", 30.0, "time limit per query (all subsets)", minimum=0),),
            in_language=False,
        ),
    )
}

LANGUAGE = tuple(name for name, info in CATALOGUE.items() if info.in_language)
"""The verifiers a spec may name, in the order the docs list them."""

DEFAULT_CHAIN = ("attack", "bounds", "milp")


def default_chain() -> tuple[VerifierStep, ...]:
    return tuple(CATALOGUE[name].step() for name in DEFAULT_CHAIN)


def on_device(chain: tuple[VerifierStep, ...], device: str) -> tuple[VerifierStep, ...]:
    """The chain with `device` on every step that declares a `device` option (the CLI's
    `--device`): where those verifiers' bound engines run. A device changes no verdict's meaning,
    so the question hashes leave it out (a journal answered on the GPU replays on the CPU)."""
    return tuple(replace(s, options=tuple((n, device if n == "device" else v) for n, v in s.options)) for s in chain)


def unavailable_steps(chain: tuple[VerifierStep, ...]) -> list[tuple[VerifierStep, Unavailable]]:
    """The steps that cannot run here as configured, with why (a spec's are caught by lint;
    this is for options that come from the command line)."""
    found = []
    for s in chain:
        why = s.info.available(dict(s.options))
        if why is not None:
            found.append((s, why))
    return found


def step(name: str, **options: OptionValue) -> VerifierStep:
    """A chain step with the given options and every other one at its default."""
    return CATALOGUE[name].step(**options)


def options_table() -> str:
    """The language reference's table of verifiers and options (docs/spec-language.md holds
    exactly this text; a test keeps the two equal)."""
    lines = ["| verifier | sound | tier | options (default) |", "| --- | --- | --- | --- |"]
    for name in LANGUAGE:
        info = CATALOGUE[name]
        options = "; ".join(
            f"`{o.name}`"
            + (f": {', '.join(f'`{c}`' for c in o.choices)}" if o.choices else "")
            + f" ({o.shown_default()}): {o.help}"
            for o in info.options
        )
        if info.sound:
            sound = "yes"
        elif info.sound_when:
            sound = f"only with `{info.sound_when} = true` (its proofs are then trusted, not checked)"
        else:
            sound = "no: finds counterexamples, never proves"
        lines.append(f"| `{name}` | {sound} | {info.tier} | {options} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate docs/spec-language.md's table
    print(options_table(), end="")
