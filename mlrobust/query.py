"""`mlrobust.check(spec, eps)`: one query of a spec through its verifier chain, as a library call.

`mlrobust check SPEC --eps …` is this function plus printing and the counterexample file, so a
notebook and the command give the same verdict for the same question. The library never
prints and writes a file only when asked (`save_counterexample_to`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust import __version__
from mlrobust.errors import UserError
from mlrobust.report.provenance import Asked
from mlrobust.spec.check import CheckResult
from mlrobust.spec.ir import Spec
from mlrobust.verify.verdict import Status, Verdict

SCHEMA = "mlrobust.check/1"

Eps = float | str | Sequence[float] | np.ndarray


def parse_eps(eps: Eps, layers: int, objects: Sequence[int] | None = None) -> np.ndarray:
    """ε as a user writes it: one number for every layer, or exactly one per layer; a string is
    the CLI's form (`0.05` or `0.1,0.05,…`). Anything else is a user error, never a crash deep
    in a verifier.

    `objects`: each perturbed object's number of distances under `layers = per_object` (flat
    layers are numbered object by object). A string may then give the objects' parts apart,
    separated by `/` (`0.1,0.05/0.02`): each part one number (all that object's distances) or
    exactly one per distance, so a user need not count where one object's layers end."""
    if isinstance(eps, str) and "/" in eps:
        return _per_object_eps(eps, layers, objects)
    if isinstance(eps, str):
        try:
            values = [float(part) for part in eps.split(",") if part.strip()]
        except ValueError:
            raise UserError(f"ε (--eps) takes numbers, got {eps!r}", hint="e.g. 0.05, or 0.1,0.05,0.02") from None
        shown = repr(eps)
    else:
        try:
            values = [float(v) for v in np.atleast_1d(np.asarray(eps, dtype=np.float64)).ravel()]
        except (TypeError, ValueError):
            raise UserError(f"ε must be a number or a list of numbers, got {eps!r}") from None
        shown = repr(values if len(values) > 1 else values[0]) if values else "[]"
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise UserError(f"ε (--eps) values must be finite and non-negative, got {shown}")
    if len(values) == 1:
        return np.full(layers, values[0])
    if len(values) != layers:
        per_object = ""
        if objects is not None and len(objects) > 1:
            per_object = f", or one part per object separated by / ({len(objects)} objects of {_counts(objects)})"
        raise UserError(
            f"ε (--eps) has {len(values)} values but the mask gives {layers} layers",
            hint=f"give one value (every layer) or exactly {layers}{per_object}",
        )
    return np.array(values)


def _counts(objects: Sequence[int]) -> str:
    return " / ".join(str(count) for count in objects) + " distances"


def _per_object_eps(eps: str, layers: int, objects: Sequence[int] | None) -> np.ndarray:
    """`a,b/c`: object 0's distances from `a,b`, object 1's from `c` (see `parse_eps`)."""
    if objects is None or len(objects) < 2:
        raise UserError(
            f"ε (--eps) {eps!r} gives parts per object (/), but this spec's layers are not per object",
            hint="per-object parts need `layers = per_object` and two or more perturbed objects; "
            "give one value or one per layer",
        )
    parts = eps.split("/")
    if len(parts) != len(objects):
        raise UserError(
            f"ε (--eps) {eps!r} has {len(parts)} per-object parts but the mask has {len(objects)} objects",
            hint=f"one part per object, separated by /, each one value or one per distance ({_counts(objects)})",
        )
    pieces = []
    for number, (part, count) in enumerate(zip(parts, objects, strict=True)):
        try:
            piece = parse_eps(part, count)
        except UserError as error:
            raise UserError(f"object {number}'s part of ε (--eps): {error.message}", hint=error.hint) from None
        pieces.append(piece)
    values = np.concatenate(pieces)
    assert values.size == layers, "per-object counts add up to the layers"
    return values


@dataclass(frozen=True, eq=False)
class QueryResult:
    """The answer to one query, typed; `to_json` is the `mlrobust.check/1` object of the CLI.

    `verdict` is ROBUST only from a sound verifier, NOT_ROBUST only with `counterexample`, a
    point onnxruntime confirmed on the model file; `margin_bound` is the tightest sound upper
    bound on the margin over the box (on logits), `best_margin` the largest margin found at a
    point (so the true maximum lies between them).
    """

    verdict: Status
    verifier: str | None  # the verifier that decided; None when UNKNOWN
    margin_bound: float | None
    best_margin: float | None
    eps: tuple[float, ...]
    seconds: float
    counterexample: np.ndarray | None  # (C, H, W) float64, float32-representable: the input as onnxruntime ran it
    counterexample_file: Path | None  # where it was saved (only with `save_counterexample_to`)
    steps: tuple[Verdict, ...]  # every verifier that ran, in order
    asked: Asked
    onnxruntime_max_difference: float

    @property
    def robust(self) -> bool:
        return self.verdict is Status.ROBUST

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mlrobust": __version__,
            "verdict": self.verdict.value,
            "verifier": self.verifier,
            "margin_bound": self.margin_bound,
            "best_margin": self.best_margin,
            "eps": list(self.eps),
            "seconds": round(self.seconds, 4),
            "problem": {**self.asked.to_json(), "onnxruntime_max_difference": self.onnxruntime_max_difference},
            "counterexample": str(self.counterexample_file) if self.counterexample_file else None,
            "steps": [_step_json(v) for v in self.steps],
        }


def _step_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "verifier": verdict.verifier,
        "verdict": verdict.status.value,
        "margin_bound": verdict.margin_bound,
        "best_margin": verdict.best_margin,
        "seconds": round(verdict.seconds, 4),
        "stats": json.loads(json.dumps(verdict.stats, default=str)),
    }


def check(
    spec: Spec | Path | str,
    eps: Eps,
    *,
    instance: int | None = None,
    device: str | None = None,
    save_counterexample_to: Path | str | None = None,
) -> QueryResult:
    """Ask the spec's chain about the box N(ε): ε is one number (every layer), one per layer, or
    (a string, under `layers = per_object`) one part per object separated by `/` (`parse_eps`).

    `spec` is a path or a Spec from `load_spec` (its files are checked again). A sweep spec has
    several instances: pick one with `instance`. `device` moves the chain's bound engines (bab's)
    to cpu or cuda. A counterexample is returned in memory, and also saved as a (1, C, H, W)
    float32 .npy in `save_counterexample_to` when given. Raises SpecError (every diagnostic)
    for a bad spec and UserError for a bad ε or instance, before any verifier runs.
    """
    from mlrobust.spec.check import load_checked

    return check_loaded(
        load_checked(spec), eps, instance=instance, device=device, save_counterexample_to=save_counterexample_to
    )


def check_loaded(
    checked: CheckResult,
    eps: Eps,
    *,
    instance: int | None = None,
    device: str | None = None,
    save_counterexample_to: Path | str | None = None,
) -> QueryResult:
    """`check` on a spec already through `load_checked` (the CLI's path: it needs the spec's
    output folder first, and checking a spec loads and cross-checks its model, so once is enough)."""
    from mlrobust.compile import Networks, compile_problem
    from mlrobust.spec.check import chain_on_device
    from mlrobust.storage import save_counterexample
    from mlrobust.verify.chain import run_chain

    loaded = checked.spec
    assert loaded is not None
    instances = checked.instances
    if instance is None and len(instances) != 1:
        raise UserError(
            f"the spec has {len(instances)} instances (a sweep); pick one with --instance 0…{len(instances) - 1}"
        )
    index = instance or 0
    if not 0 <= index < len(instances):
        raise UserError(f"--instance {index} is out of range: the spec has {len(instances)} instances")
    chosen = instances[index]
    chain = chain_on_device(loaded.chain, device)
    networks = Networks()
    problem = compile_problem(loaded, chosen, networks)
    box = parse_eps(eps, problem.num_layers, chosen.object_distances())
    started = time.perf_counter()
    outcome = run_chain(problem, box, chain)
    seconds = time.perf_counter() - started
    verdict = outcome.verdict
    saved = None
    if verdict.counterexample is not None and save_counterexample_to is not None:
        saved = save_counterexample(Path(save_counterexample_to), verdict.counterexample).resolve()
    bounds = [v.margin_bound for v in outcome.steps if v.margin_bound is not None]
    return QueryResult(
        verdict=verdict.status,
        verifier=verdict.verifier if verdict.definite else None,
        margin_bound=min(bounds) if bounds else None,
        best_margin=verdict.best_margin,
        eps=tuple(float(v) for v in box),
        seconds=seconds,
        counterexample=None if verdict.counterexample is None else np.asarray(verdict.counterexample),
        counterexample_file=saved,
        steps=tuple(outcome.steps),
        asked=Asked.of(loaded, chosen, problem.num_layers, problem.output),
        onnxruntime_max_difference=networks.load(chosen.model)[1],
    )
