"""`mlrobust verify MODEL PROP`: a VNN-LIB property answered by the verifier chain.

The property is the *unsafe* region. Each of its cases (an input box with a disjunction of
output constraints) becomes a Problem whose box is exactly that input box (one layer; the
image is the box's centre, the range its bounds) and whose output property is the
disjunction. The chain answers each case: a counterexample in any case is `sat` (re-checked
by onnxruntime on the user's file, as every NOT_ROBUST is), every case proved empty is
`unsat`, the deadline passing first is `timeout`, anything else `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust.compile import Networks
from mlrobust.contract.verifiers import VerifierStep
from mlrobust.errors import UserError
from mlrobust.nn.network import Network, onnxruntime_outputs
from mlrobust.problem.problem import Problem
from mlrobust.problem.property import Disjunction
from mlrobust.verify.chain import ChainResult, run_chain
from mlrobust.verify.verdict import QueryBudget, Status
from mlrobust.vnnlib.parse import Case, VnnlibProperty

SCHEMA = "mlrobust.verify/1"


@dataclass(frozen=True)
class CaseAnswer:
    index: int
    status: str  # ROBUST / NOT_ROBUST / UNKNOWN, or "skipped" (the deadline passed before it)
    verifier: str | None
    margin_bound: float | None
    best_margin: float | None
    seconds: float
    steps: tuple[dict[str, Any], ...]
    free_inputs: int
    disjuncts: int


@dataclass(frozen=True)
class VerifyOutcome:
    answer: str  # sat / unsat / timeout / unknown
    cases: tuple[CaseAnswer, ...]
    seconds: float
    inputs: np.ndarray | None = None  # the witness, for sat (flattened, as onnxruntime ran it)
    outputs: np.ndarray | None = None
    onnxruntime_difference: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        counts = {s: sum(c.status == s for c in self.cases) for s in ("ROBUST", "NOT_ROBUST", "UNKNOWN", "skipped")}
        decided = next((c.verifier for c in self.cases if c.status == "NOT_ROBUST"), None)
        how = {
            "sat": f"a counterexample found by {decided} and confirmed by onnxruntime",
            "unsat": "every case proved empty"
            + (f" ({', '.join(sorted({c.verifier or '' for c in self.cases}))})" if self.cases else " (none holds)"),
            "timeout": f"the time limit passed ({counts['ROBUST']} of {len(self.cases)} cases proved)",
            "unknown": f"{counts['UNKNOWN']} case(s) left open by the chain",
        }[self.answer]
        return f"{self.answer}: {how}; {self.seconds:.2f} s"


def case_problem(network: Network, case: Case) -> tuple[Problem, np.ndarray]:
    """The case as a Problem, and the ε whose box is exactly the case's input box."""
    shape = network.input_shape
    lower, upper = case.lower.reshape(shape), case.upper.reshape(shape)
    centre = np.clip((lower + upper) / 2, lower, upper)
    # one layer, per element; image ± ε clipped to [lower, upper] is the box once ε covers it
    layers = np.zeros(shape, dtype=np.int64)
    reach = float(np.max(upper - lower)) if lower.size else 0.0
    property_ = Disjunction(case.rows, case.offsets, case.terms)
    problem = Problem(network, centre, layers, None, None, (lower, upper), disjunction=property_)
    return problem, np.array([reach])


def refuse_head(model: Path, network: Network) -> None:
    """A VNN-LIB property constrains what the file outputs, while the network IR stops before a
    trailing Sigmoid / Softmax: its bounds would be on logits, a different function, so a
    property about probabilities (Y_0 >= 0.5) would be answered about something else."""
    if network.head is None:
        return
    raise UserError(
        f"{model.name} ends in a {network.head}: a VNN-LIB property constrains the model's outputs Y_j "
        f"(after the {network.head}), but mlrobust verifies networks up to their logits",
        hint=f"export the model without its final {network.head} and write the property on the logits",
    )


def check_shapes(model: Path, network: Network, prop: VnnlibProperty) -> None:
    size = int(np.prod(network.input_shape))
    if prop.inputs != size:
        shape = "×".join(map(str, network.input_shape))
        raise UserError(
            f"{prop.file.name} declares {prop.inputs} inputs X_i, but {model.name} takes {shape} = {size} numbers",
            hint="X_i are the model's input flattened in C order: declare X_0 … X_" + str(size - 1),
        )
    if prop.outputs != network.num_classes:
        raise UserError(
            f"{prop.file.name} declares {prop.outputs} outputs Y_j, but {model.name} has {network.num_classes}",
            hint=f"Y_j are the model's outputs flattened: declare Y_0 … Y_{network.num_classes - 1}",
        )


def _steps(result: ChainResult) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "verifier": v.verifier,
            "verdict": v.status.value,
            "seconds": round(v.seconds, 4),
            "margin_bound": v.margin_bound,
            "best_margin": v.best_margin,
            # what the verifier did (bab: domains bounded and closed, depth, queue, seconds per
            # phase): an open case says how far the search got, not only that it ran out of time
            "statistics": dict(v.tallies),
        }
        for v in result.steps
    )


def verify_property(
    model: Path,
    prop: VnnlibProperty,
    chain: Sequence[VerifierStep],
    deadline: float | None = None,
    networks: Networks | None = None,
) -> VerifyOutcome:
    """Answer the property; `deadline` (perf_counter) caps every query (a case the deadline
    leaves unasked is `skipped`, and the answer `timeout` unless a counterexample was found)."""
    started = time.perf_counter()
    network, difference = (networks or Networks()).load(model)
    refuse_head(model, network)
    check_shapes(model, network, prop)
    answers: list[CaseAnswer] = []
    witness: tuple[np.ndarray, np.ndarray] | None = None
    timed_out = False
    for index, case in enumerate(prop.cases):
        left = None if deadline is None else deadline - time.perf_counter()
        problem, eps = case_problem(network, case)
        free = int(np.sum(case.lower < case.upper))
        if left is not None and left <= 0:
            timed_out = True
            answers.append(CaseAnswer(index, "skipped", None, None, None, 0.0, (), free, len(case.terms)))
            continue
        case_started = time.perf_counter()
        result = run_chain(problem, eps, tuple(chain), QueryBudget(left))
        verdict = result.verdict
        answers.append(
            CaseAnswer(
                index,
                verdict.status.value,
                verdict.verifier if verdict.definite else None,
                verdict.margin_bound,
                verdict.best_margin,
                round(time.perf_counter() - case_started, 4),
                _steps(result),
                free,
                len(case.terms),
            )
        )
        if verdict.status is Status.NOT_ROBUST:
            assert verdict.counterexample is not None
            point = np.asarray(verdict.counterexample, dtype=np.float32)
            outputs = onnxruntime_outputs(model, point[None])[0]  # the file's own outputs (no head: its logits)
            witness = (point.ravel().astype(np.float64), outputs.ravel())
            break
        if verdict.status is Status.UNKNOWN and deadline is not None and time.perf_counter() >= deadline:
            timed_out = True
    statuses = [a.status for a in answers]
    if witness is not None:
        answer = "sat"
    elif all(s == "ROBUST" for s in statuses):
        answer = "unsat"  # also when no case holds anywhere (an empty unsafe region)
    elif timed_out:
        answer = "timeout"
    else:
        answer = "unknown"
    return VerifyOutcome(
        answer,
        tuple(answers),
        time.perf_counter() - started,
        witness[0] if witness else None,
        witness[1] if witness else None,
        difference,
    )


def outcome_json(outcome: VerifyOutcome, model: Path, prop: Path, timeout: float | None) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    for case in outcome.cases:
        for step in case.steps:
            seconds[step["verifier"]] = seconds.get(step["verifier"], 0.0) + step["seconds"]
    return {
        "schema": SCHEMA,
        "result": outcome.answer,
        "summary": outcome.summary(),
        "model": str(model.resolve()),
        "property": str(prop.resolve()),
        "timeout": timeout,
        "seconds": round(outcome.seconds, 4),
        "seconds_per_verifier": {name: round(value, 4) for name, value in seconds.items()},
        "onnxruntime_max_difference": outcome.onnxruntime_difference,
        "cases": [
            {
                "index": c.index,
                "verdict": c.status,
                "verifier": c.verifier,
                "margin_bound": c.margin_bound,
                "best_margin": c.best_margin,
                "seconds": c.seconds,
                "free_inputs": c.free_inputs,
                "disjuncts": c.disjuncts,
                "steps": list(c.steps),
            }
            for c in outcome.cases
        ],
        "witness": None
        if outcome.inputs is None
        else {"X": [float(v) for v in outcome.inputs], "Y": [float(v) for v in outcome.outputs]},  # type: ignore[union-attr]
    }
