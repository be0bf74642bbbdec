"""`mlrobust.run(spec)`: compile, search, re-prove, and write result.json, heatmap.png, trace.png."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust import __version__
from mlrobust.compile import compile_problem
from mlrobust.errors import TargetNotInTopK, UserError
from mlrobust.nn.network import onnxruntime_logits
from mlrobust.report.plots import heatmap, trace
from mlrobust.search.cutting import cutting_weights, fixed_weights
from mlrobust.search.loop import Budget, LayerMaximality, run_method
from mlrobust.search.methods import METHODS
from mlrobust.search.oracle import Oracle, Query
from mlrobust.spec.check import check_spec
from mlrobust.spec.diagnostics import SpecError
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Spec, VerifierStep
from mlrobust.storage import atomic_write_json, file_sha256
from mlrobust.verify.chain import is_sound, run_chain
from mlrobust.verify.verdict import Status

SCHEMA = "mlrobust.run/1"
THESIS_MILP_SECONDS = 30.0  # per query when the spec's chain has no milp step to take it from


@dataclass(frozen=True)
class ProgressEvent:
    """One answered query, with what a progress line shows."""

    query: Query
    size: float  # w·ε of the query
    best_size: float  # the largest w·ε proved so far
    queries: dict[str, int]  # answered by each verifier so far ("cache" for free answers)
    elapsed: float


Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Result:
    eps: tuple[float, ...]
    size: float
    verifier: str  # the verifier that re-proved ε*
    maximality: tuple[dict[str, Any], ...]
    problem: dict[str, Any]
    queries: tuple[dict[str, Any], ...]
    complete: bool
    stop_reason: str
    uniform_eps: float
    uniform_size: float
    seconds: float
    new_queries: int
    folder: str
    method: str = "search"
    reproof: dict[str, Any] = field(default_factory=dict)  # the strongest verifier's answer on ε*

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    versions = {
        "mlrobust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:  # from the package metadata: constructing a Highs object prints its banner
        versions["highspy"] = importlib.metadata.version("highspy")
    except importlib.metadata.PackageNotFoundError:
        versions["highspy"] = "unknown"
    return versions


def run(
    spec_path: Path | str,
    out: Path | None = None,
    progress: Progress | None = None,
    instance: int = 0,
    method: str | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """Check the spec, search (or run a baseline), re-prove ε* and write the results.

    `method` overrides the spec's `search { method = … }` (default: the search itself).
    Ctrl-C stops the search: the best ε proved so far is written, marked incomplete.
    """
    spec, instances, chosen = checked_spec(spec_path, method)
    if not 0 <= instance < len(instances):
        raise UserError(f"the spec has {len(instances)} instance(s); --instance {instance} is out of range")
    return run_instance(spec, instances[instance], out or spec.output, progress, chosen, on_start)


def checked_spec(spec_path: Path | str, method: str | None) -> tuple[Spec, list[Instance], str]:
    """(spec, its instances, the method to run): a bad spec raises with every diagnostic, as
    `lint` prints them, before any work; `method` (from the CLI) overrides the spec's."""
    if method is not None and method not in METHODS:
        raise UserError(f"unknown method {method!r}", hint=f"choose one of: {', '.join(METHODS)}")
    result = check_spec(spec_path)
    if not result.ok:
        raise SpecError(list(result.diagnostics))
    assert result.spec is not None
    return result.spec, list(result.instances), method or result.spec.search.method


def _thesis_chain(spec: Spec) -> tuple[VerifierStep, ...]:
    """The thesis's oracle: MILP only, one model per pair of other classes, the spec's MILP time limit."""
    limits = [
        float(value)
        for step in spec.chain
        if step.name == "milp"
        for name, value in step.options
        if name == "time_limit"
    ]
    seconds = limits[0] if limits else THESIS_MILP_SECONDS
    return (VerifierStep("milp_pairwise", (("time_limit", seconds),)),)


def _listen(oracle: Oracle, weights: np.ndarray, progress: Progress) -> None:
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    best = [0.0]

    def listener(query: Query) -> None:
        size = float(np.dot(weights, query.eps))
        counts["cache" if query.cached else query.verifier] += 1
        if query.status is Status.ROBUST:
            best[0] = max(best[0], size)
        progress(ProgressEvent(query, size, best[0], dict(counts), time.perf_counter() - started))

    oracle.listener = listener


def _proved_by(oracle: Oracle, eps: np.ndarray) -> str:
    """The verifier of the first real ROBUST answer whose box contains ε."""
    for query in oracle.history:
        if query.status is Status.ROBUST and not query.cached and np.all(eps <= np.array(query.eps)):
            return query.verifier
    for entry in oracle.journal.values():  # answered by an earlier run of the same question
        if entry["status"] == Status.ROBUST and np.all(eps <= np.array(entry["eps"])):
            return str(entry["verifier"])
    return "cache"


def _require_target_in_top_k(problem, instance) -> None:  # type: ignore[no-untyped-def]
    """Refuse an image on which the model (onnxruntime, the user's file) already misses the
    target: even ε = 0 is not robust, so no ε* exists (the search would report an empty box
    that its own re-proof refutes)."""
    logits = onnxruntime_logits(instance.model, problem.image[None])
    if not problem.violated(logits)[0]:
        return
    top = [int(c) for c in np.argsort(-logits[0], kind="stable")[: problem.k]]
    where = instance.canvas or instance.image_path.name
    raise TargetNotInTopK(
        f"{instance.model.name} does not put target {problem.target} in its top {problem.k} on {where} itself "
        f"(its top {problem.k}: {', '.join(map(str, top))}): no neighborhood can be robust",
        hint="choose an image the model gets right, or another target",
    )


def run_instance(  # type: ignore[no-untyped-def]
    spec: Spec,
    instance,
    folder: Path,
    progress: Progress | None = None,
    method: str = "search",
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """`on_start` gets what the run is about (model, image, target, k, layers, chain) once the
    problem is compiled, before the first query."""
    started = time.perf_counter()
    problem = compile_problem(spec, instance)
    _require_target_in_top_k(problem, instance)
    weights = spec.weights.vector(problem.num_layers)
    chain = _thesis_chain(spec) if method == "thesis-style" else spec.chain
    cutting = fixed_weights(problem.num_layers) if method == "thesis-style" else cutting_weights(spec.cutting, problem)
    spec_text = spec.file.read_text()
    chain_text = [[step.name, list(map(list, step.options))] for step in chain]
    key_source = json.dumps(
        [
            str(instance.model),
            file_sha256(instance.model),
            str(instance.image_path),
            file_sha256(instance.image_path),
            instance.target,
            spec.k,
            list(spec.value_range),
            problem.layer_map.tolist(),
            chain_text,
        ],
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:24]
    oracle = Oracle(problem, chain, folder, key)
    replayed = oracle.load_journal()
    if on_start is not None:
        on_start(
            {
                "model": str(instance.model),
                "image": str(instance.image_path),
                "canvas": instance.canvas,
                "target": instance.target,
                "k": spec.k,
                "layers": problem.num_layers,
                "chain": " -> ".join(step.name for step in chain),
                "method": method,
                "journal_answers": replayed,
            }
        )
    if progress is not None:
        _listen(oracle, weights, progress)
    budget = Budget(spec.search.queries, spec.search.time_limit, oracle)
    outcome = run_method(method, oracle, weights, cutting, spec.search.resolution, budget)
    maximality = outcome.maximality or tuple(LayerMaximality(d, "not_checked") for d in range(problem.num_layers))
    strongest = _strongest(chain)
    first_proof = _proved_by(oracle, outcome.eps) if np.any(outcome.eps > 0) else "start"
    complete, stop_reason = outcome.complete, outcome.stop_reason
    try:
        reproof = run_chain(problem, outcome.eps, (strongest,))
        reproof_info = {"verifier": strongest.name, "verdict": reproof.status.value, "seconds": reproof.verdict.seconds}
        if "proof" in reproof.verdict.stats:
            reproof_info["proof"] = reproof.verdict.stats["proof"]
    except KeyboardInterrupt:
        reproof = None
        reproof_info = {"verifier": strongest.name, "verdict": "skipped (Ctrl-C)"}
        complete, stop_reason = False, "interrupted (Ctrl-C)"
    if reproof is not None and reproof.status is Status.NOT_ROBUST:
        # a sound verifier proved this box and another found a confirmed counterexample in it
        raise RuntimeError(
            f"soundness check failed: {first_proof} proved ε* but {strongest.name} found a confirmed counterexample"
        )
    # ε* was proved by a sound verifier of the chain; the re-proof is extra evidence, and when it
    # is UNKNOWN (a time limit), the first proof stands and the result says so
    proved_by = reproof.verdict.verifier if reproof is not None and reproof.status is Status.ROBUST else first_proof
    queries = tuple(
        {
            "eps": list(q.eps),
            "size": float(np.dot(weights, q.eps)),
            "verdict": q.status.value,
            "verifier": q.verifier,
            "margin_bound": q.margin_bound,
            "best_margin": q.best_margin,
            "seconds": round(q.seconds, 4),
            "cached": q.cached,
            "counterexample": q.counterexample,
            "purpose": q.purpose,
        }
        for q in oracle.history
    )
    result = Result(
        eps=tuple(float(v) for v in outcome.eps),
        size=float(np.dot(weights, outcome.eps)),
        verifier=proved_by,
        maximality=tuple(
            {
                "layer": m.layer,
                "status": m.status,
                "counterexample": m.counterexample,
                "probe": list(m.probe) if m.probe else None,
                "chain": m.chain,
            }
            for m in maximality
        ),
        problem={
            "spec": str(spec.file),
            "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
            "spec_text": spec_text,
            "model": str(instance.model),
            "model_sha256": file_sha256(instance.model),
            "image": str(instance.image_path.resolve()),
            "image_sha256": file_sha256(instance.image_path),
            "mask": str(instance.mask_path.resolve()) if instance.mask_path else None,
            "mask_sha256": file_sha256(instance.mask_path),
            "canvas": instance.canvas,
            "target": instance.target,
            "k": spec.k,
            "range": list(spec.value_range),
            "layers": problem.num_layers,
            "weights": weights.tolist(),
            "cutting": cutting.tolist(),
            "resolution": spec.search.resolution,
            "seed": spec.search.seed,
            "chain": chain_text,
            "versions": _versions(),
            "journal_answers_replayed": replayed,
        },
        queries=queries,
        complete=complete,
        stop_reason=stop_reason,
        uniform_eps=outcome.uniform_eps,
        uniform_size=float(np.dot(weights, np.full(problem.num_layers, outcome.uniform_eps))),
        seconds=round(time.perf_counter() - started, 3),
        new_queries=oracle.new_queries,
        folder=str(folder.resolve()),
        method=method,
        reproof=reproof_info,
    )
    write_outputs(result, problem, instance.mask, folder)
    return result


def _strongest(chain: tuple[VerifierStep, ...]) -> VerifierStep:
    sound = [step for step in chain if is_sound(step.name)]
    return next((s for s in sound if s.name == "milp"), sound[-1] if sound else chain[-1])


def write_outputs(result: Result, problem, mask: np.ndarray, folder: Path) -> None:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "result.json", result.as_json())
    title = f"{Path(result.problem['model']).name}, target {result.problem['target']}: w·ε* = {result.size:.4g}"
    heatmap(folder / "heatmap.png", problem.image, problem.layer_map, np.array(result.eps), mask, title)
    sizes = [q["size"] for q in result.queries]
    trace(folder / "trace.png", sizes, [q["verdict"] for q in result.queries], title)
