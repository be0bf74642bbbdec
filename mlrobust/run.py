"""`mlrobust.run(spec)`: the stages of one run, in order.

check the spec -> compile (Plan) -> search (SearchOutcome) -> certify (Certificate) ->
report.write (result.json, heatmap.png, trace.png). Each stage receives what the one before
returned; this module only passes it along, and tells a listener about every answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust import report
from mlrobust.compile import Networks, compile
from mlrobust.contract.methods import METHODS
from mlrobust.errors import UserError
from mlrobust.plan import Plan
from mlrobust.report.provenance import Asked, spec_record, versions
from mlrobust.report.result import Result, SearchSetup
from mlrobust.search.certify import certify
from mlrobust.search.loop import LayerMaximality, search
from mlrobust.search.oracle import Oracle, Query
from mlrobust.spec.check import chain_on_device, load_checked
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Spec
from mlrobust.verify.verdict import Status


@dataclass(frozen=True)
class ProgressEvent:
    """One answered query, with what a progress line shows."""

    query: Query
    size: float  # w·ε of the query
    best_size: float  # the largest w·ε proved so far
    queries: dict[str, int]  # answered by each verifier so far ("cache" for free answers)
    elapsed: float


Progress = Callable[[ProgressEvent], None]


def run(
    spec_path: Path | str,
    out: Path | None = None,
    progress: Progress | None = None,
    instance: int = 0,
    method: str | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    export_queries: Path | None = None,
    device: str | None = None,
) -> Result:
    """Check the spec, search (or run a baseline), re-prove ε* and write the results.

    `method` overrides the spec's `search { method = … }` (default: the search itself).
    `device` (the CLI's --device) moves the chain's bound engines (bab's) to cpu or cuda.
    Ctrl-C stops the search: the best ε proved so far is written, marked incomplete.
    `export_queries`: a folder that receives every query the search asked, as ONNX + VNN-LIB.
    """
    spec, instances, chosen = checked_spec(spec_path, method)
    spec = dataclasses.replace(spec, chain=chain_on_device(spec.chain, device))
    if not 0 <= instance < len(instances):
        raise UserError(f"the spec has {len(instances)} instance(s); --instance {instance} is out of range")
    return run_instance(
        spec, instances[instance], out or spec.output, progress, chosen, on_start, export_queries=export_queries
    )


def checked_spec(spec_path: Path | str, method: str | None) -> tuple[Spec, list[Instance], str]:
    """(spec, its instances, the method to run): a bad spec raises with every diagnostic, as
    `lint` prints them, before any work; `method` (from the CLI) overrides the spec's."""
    if method is not None and method not in METHODS:
        raise UserError(f"unknown method {method!r}", hint=f"choose one of: {', '.join(METHODS)}")
    checked = load_checked(spec_path)
    assert checked.spec is not None
    return checked.spec, list(checked.instances), method or checked.spec.search.method


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


def run_instance(
    spec: Spec,
    instance: Instance,
    folder: Path,
    progress: Progress | None = None,
    method: str = "search",
    on_start: Callable[[dict[str, Any]], None] | None = None,
    networks: Networks | None = None,
    export_queries: Path | None = None,
) -> Result:
    """`on_start` gets what the run is about (model, image, target, k, layers, chain) once the
    problem is compiled, before the first query."""
    started = time.perf_counter()
    plan = compile(spec, instance, method, networks)
    oracle = Oracle.for_plan(plan, folder)
    replayed = oracle.load_journal()
    if on_start is not None:
        on_start(
            {
                "model": str(instance.model),
                "image": str(instance.image_path),
                "canvas": instance.canvas,
                "target": instance.target,
                "k": spec.k,
                "layers": plan.num_layers,
                "chain": " -> ".join(step.name for step in plan.chain),
                "method": method,
                "journal_answers": replayed,
            }
        )
    if progress is not None:
        _listen(oracle, plan.weights, progress)
    outcome = search(plan, oracle)
    maximality = outcome.maximality or tuple(LayerMaximality(d, "not_checked") for d in range(plan.num_layers))
    certificate = certify(plan, outcome, oracle)
    complete, stop_reason = outcome.complete, outcome.stop_reason
    if certificate.interrupted:
        complete, stop_reason = False, "interrupted (Ctrl-C)"
    setup = SearchSetup(
        asked=Asked.of(spec, instance, plan.num_layers),
        **spec_record(spec),
        weights=plan.weights,
        cutting=plan.cutting,
        resolution=plan.resolution,
        seed=plan.seed,
        chain=plan.chain,
        versions=versions(),
        journal_answers_replayed=replayed,
        question=plan.question,
    )
    assert oracle.guide_stats is not None
    result = Result(
        eps=tuple(float(v) for v in outcome.eps),
        size=plan.size(outcome.eps),
        certificate=certificate,
        maximality=maximality,
        setup=setup,
        queries=tuple(oracle.history),
        complete=complete,
        stop_reason=stop_reason,
        uniform_eps=outcome.uniform_eps,
        seconds=round(time.perf_counter() - started, 3),
        new_queries=oracle.new_queries,
        folder=folder.resolve(),
        method=method,
        guide=oracle.guide_stats,
        work=dict(oracle.work),
    )
    report.write(result, plan.problem, instance.mask)
    if export_queries is not None:
        export_asked(export_queries, plan, result, spec)
    return result


def export_asked(folder: Path, plan: Plan, result: Result, spec: Spec) -> int:
    """Every box the search asked a verifier about (not the cache), as ONNX + VNN-LIB pairs in
    both forms; returns how many queries."""
    from mlrobust.vnnlib.export import Exporter, export_query

    exporter = Exporter(folder)
    asked = list(dict.fromkeys(q.eps for q in result.queries if not q.cached))
    for eps in asked:
        info = {"spec": str(spec.file), "question": plan.question, "target": plan.problem.target, "k": plan.problem.k}
        export_query(exporter, plan.problem, np.array(eps), info)
    return len(asked)
