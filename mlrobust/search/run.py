"""`mlrobust.run(spec)`: compile, search, re-prove, and write result.json, heatmap.png, trace.png."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust import __version__
from mlrobust.compile import compile_problem
from mlrobust.errors import UserError
from mlrobust.report.plots import heatmap, trace
from mlrobust.search.cutting import cutting_weights
from mlrobust.search.loop import Budget, Progress, search
from mlrobust.search.oracle import Oracle
from mlrobust.spec.check import check_spec
from mlrobust.spec.diagnostics import SpecError
from mlrobust.spec.ir import Spec
from mlrobust.storage import atomic_write_json
from mlrobust.verify.chain import run_chain
from mlrobust.verify.options import VERIFIERS
from mlrobust.verify.verdict import Status

SCHEMA = "mlrobust.run/1"


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

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}


def _sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.exists() else None


def _versions() -> dict[str, str]:
    import highspy
    import onnxruntime
    import torch

    versions = {
        "mlrobust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        versions["highs"] = f"{highspy.Highs().versionMajor()}.{highspy.Highs().versionMinor()}"
    except Exception:
        versions["highs"] = "unknown"
    return versions


def run(spec_path: Path | str, out: Path | None = None, progress: Progress | None = None, instance: int = 0) -> Result:
    result = check_spec(spec_path)
    if not result.ok:
        raise SpecError(list(result.diagnostics))
    spec = result.spec
    assert spec is not None
    if not 0 <= instance < len(result.instances):
        raise UserError(f"the spec has {len(result.instances)} instance(s); --instance {instance} is out of range")
    return run_instance(spec, result.instances[instance], out or spec.output, progress or (lambda *_: None))


def run_instance(spec: Spec, instance, folder: Path, progress: Progress) -> Result:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    problem = compile_problem(spec, instance)
    weights = spec.weights.vector(problem.num_layers)
    cutting = cutting_weights(spec.cutting, problem)
    spec_text = spec.file.read_text()
    chain_text = [[step.name, list(map(list, step.options))] for step in spec.chain]
    key_source = json.dumps(
        [
            str(instance.model),
            _sha256(instance.model),
            str(instance.image_path),
            _sha256(instance.image_path),
            instance.target,
            spec.k,
            list(spec.value_range),
            problem.layer_map.tolist(),
            chain_text,
        ],
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:24]
    oracle = Oracle(problem, spec.chain, folder, key)
    replayed = oracle.load_journal()
    budget = Budget(spec.search.queries, spec.search.time_limit, oracle)
    outcome = search(oracle, weights, cutting, spec.search.resolution, budget, progress)
    strongest = _strongest(spec)
    reproof = run_chain(problem, outcome.eps, (strongest,))
    if reproof.status is not Status.ROBUST:
        # never report an ε* the strongest verifier cannot confirm: fall back to the best proved box
        raise UserError(f"the strongest verifier ({strongest.name}) did not re-prove ε*: {reproof.status.value}")
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
        verifier=reproof.verdict.verifier,
        maximality=tuple(
            {
                "layer": m.layer,
                "status": m.status,
                "counterexample": m.counterexample,
                "probe": list(m.probe) if m.probe else None,
            }
            for m in outcome.maximality
        ),
        problem={
            "spec": str(spec.file),
            "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
            "spec_text": spec_text,
            "model": str(instance.model),
            "model_sha256": _sha256(instance.model),
            "image": str(instance.image_path.resolve()),
            "image_sha256": _sha256(instance.image_path),
            "mask": str(instance.mask_path.resolve()) if instance.mask_path else None,
            "mask_sha256": _sha256(instance.mask_path),
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
        complete=outcome.complete,
        stop_reason=outcome.stop_reason,
        uniform_eps=outcome.uniform_eps,
        uniform_size=float(np.dot(weights, np.full(problem.num_layers, outcome.uniform_eps))),
        seconds=round(time.perf_counter() - started, 3),
        new_queries=oracle.new_queries,
        folder=str(folder.resolve()),
    )
    write_outputs(result, problem, instance.mask, folder)
    return result


def _strongest(spec: Spec):  # type: ignore[no-untyped-def]
    sound = [step for step in spec.chain if VERIFIERS[step.name].sound]
    return next((s for s in sound if s.name == "milp"), sound[-1] if sound else spec.chain[-1])


def write_outputs(result: Result, problem, mask: np.ndarray, folder: Path) -> None:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "result.json", result.as_json())
    title = f"{Path(result.problem['model']).name}, target {result.problem['target']}: w·ε* = {result.size:.4g}"
    heatmap(folder / "heatmap.png", problem.image, problem.layer_map, np.array(result.eps), mask, title)
    sizes = [q["size"] for q in result.queries]
    trace(folder / "trace.png", sizes, [q["verdict"] for q in result.queries], title)
