"""`mlrobust.run(spec)`: the stages of one run, in order.

check the spec -> compile (Plan) -> search (SearchOutcome) -> certify (Certificate) ->
report.write (result.json, heatmap.png, trace.png). Each stage receives what the one before
returned; this module only passes it along, and tells a listener about every answer.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust import report
from mlrobust.compile import Networks, as_asked, compile
from mlrobust.contract.methods import METHOD_TABLE, METHODS
from mlrobust.errors import UserError
from mlrobust.output_folder import check_folder, locked, refuse_spec_folder, refuse_symlinks
from mlrobust.plan import Plan
from mlrobust.report.provenance import Asked, spec_record, versions
from mlrobust.report.result import SCHEMA, Result, SearchSetup
from mlrobust.search.certify import certify
from mlrobust.search.loop import LayerMaximality, search
from mlrobust.search.oracle import Oracle, Query, box_key
from mlrobust.spec.check import chain_on_device, load_checked
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Spec
from mlrobust.userfiles import require_regular_file
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
    spec_path: Path | str | Spec,
    out: Path | str | None = None,
    progress: Progress | None = None,
    instance: int = 0,
    method: str | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    export_queries: Path | None = None,
    device: str | None = None,
    force: bool = False,
    start_from: Path | None = None,
) -> Result:
    """Check the spec, search (or run a baseline), re-prove ε* and write the results.

    `spec_path` is a spec file (str or Path) or a Spec from `load_spec`, whose files are read
    and checked again (they may have changed since). `out` (str or Path) overrides the spec's
    `output` folder.
    `method` overrides the spec's `search { method = … }` (default: the search itself); with a
    sweep's `methods` axis it is refused (each instance runs its own method of the axis).
    `force` (the CLI's --force) writes into a non-empty folder that holds no mlrobust run.
    `device` (the CLI's --device) moves the chain's bound engines (bab's) to cpu or cuda.
    Ctrl-C stops the search: the best ε proved so far is written, marked incomplete.
    `export_queries`: a folder that receives every query the search asked, as ONNX + VNN-LIB.
    `start_from` (the CLI's --start-from): a previous run's result.json whose ε* the search
    also starts from (e.g. the answer to a stronger property), once this chain proves it.
    """
    spec, instances, chosen = checked_spec(spec_path, method)
    spec = dataclasses.replace(spec, chain=chain_on_device(spec.chain, device))
    if not 0 <= instance < len(instances):
        raise UserError(f"the spec has {len(instances)} instance(s); --instance {instance} is out of range")
    if out is None:
        refuse_spec_output_folder(spec)
    return run_instance(
        spec,
        instances[instance],
        Path(out) if out is not None else spec.output,
        progress,
        chosen,
        on_start,
        export_queries=export_queries,
        force=force,
        start_from=start_from,
    )


def read_start(path: Path, layers: int, labels: list[list[int]] | None = None) -> tuple[str, np.ndarray]:
    """(name, ε) of a previous run's result.json, to start the search from; a file that is not
    one, an ε of another length (another mask's layers), or of other layer labels (`labels`:
    [object, distance] per layer with `layers = per_object`, None with `union`: an ε of the same
    length would index other rings), is the user's to mend."""
    require_regular_file(path, "--start-from result")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        eps = np.asarray(payload["eps"], dtype=np.float64)
        schema = payload.get("schema")
        theirs = payload.get("problem", {}).get("layer_labels")  # absent before `layers`: union
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise UserError(
            f"--start-from {path}: not a result.json of `mlrobust run` ({error})",
            hint="give the result.json of a finished or interrupted run",
        ) from None
    if schema != SCHEMA or eps.shape != (layers,) or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise UserError(
            f"--start-from {path}: its ε is not a {layers}-layer epsilon vector of an {SCHEMA} result "
            f"(schema {schema!r}, {eps.size} values)",
            hint="start from a run of the same model, image and mask (the same layers)",
        )
    if theirs != labels:
        mine, other = ("per_object" if x is not None else "union" for x in (labels, theirs))
        raise UserError(
            f"--start-from {path}: its {layers} layers are not this spec's (its layers: {other}, "
            f"this spec's: {mine}{', other objects' if mine == other else ''})",
            hint="start from a run with the same mask and `layers`: its ε is indexed by other rings",
        )
    return f"given ({path.name})", eps


def refuse_spec_output_folder(spec: Spec) -> None:
    """`output = ""` names the folder of the spec that wrote it (the spec's own, or a base's it
    extends): refused for `run` and `sweep` alike, with a hint."""
    refuse_spec_folder(spec.output, spec.file)
    refuse_spec_folder(spec.output, Path(spec.span_of("output").file))


def checked_spec(spec_path: Path | str | Spec, method: str | None) -> tuple[Spec, list[Instance], str]:
    """(spec, its instances, the method to run): a bad spec raises with every diagnostic, as
    `lint` prints them, before any work; `method` (from the CLI) overrides the spec's
    `search { method }`, but not a sweep's `methods` axis: both at once is a user error (each
    instance runs its axis's method; the flag would make the axis's instances ask one question)."""
    if method is not None and method not in METHODS:
        raise UserError(f"unknown method {method!r}", hint=f"choose one of: {', '.join(METHODS)}")
    checked = load_checked(spec_path)
    spec = checked.spec
    assert spec is not None
    if method is not None and spec.sweep is not None and spec.sweep.methods:
        axis = ", ".join(METHOD_TABLE[m].spec_name for m in spec.sweep.methods)
        raise UserError(
            f"--method {method} and the spec's sweep {{ methods = [{axis}] }} both choose the method",
            hint="leave out --method (each instance runs its own method of the axis), "
            "or remove `methods` from the sweep block",
        )
    return spec, list(checked.instances), method or spec.search.method


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
    force: bool = False,
    start_from: Path | None = None,
) -> Result:
    """`on_start` gets what the run is about (model, image, target, k, layers, chain) once the
    problem is compiled, before the first query.

    The folder is checked before any work (refused if it is not ours and not empty, unless
    `force`) and locked once the problem is compiled, so a misclassified image leaves no folder
    behind and a second run into the same folder stops before its first query."""
    started = time.perf_counter()
    check_folder(folder, force)
    spec, method = as_asked(spec, instance, method)  # a sweep instance's method and cutting
    plan = compile(spec, instance, method, networks)
    with locked(folder):
        refuse_symlinks(folder)
        layering = instance.pixel_layers()
        labels = [list(label) for label in layering.labels] if layering.per_object else None
        given = (read_start(start_from, plan.num_layers, labels),) if start_from is not None else ()
        return _search_and_write(
            spec, instance, folder, plan, started, progress, method, on_start, export_queries, given
        )


def _search_and_write(
    spec: Spec,
    instance: Instance,
    folder: Path,
    plan: Plan,
    started: float,
    progress: Progress | None,
    method: str,
    on_start: Callable[[dict[str, Any]], None] | None,
    export_queries: Path | None,
    given_starts: tuple[tuple[str, np.ndarray], ...] = (),
) -> Result:
    oracle = Oracle.for_plan(plan, folder)
    replayed = oracle.load_journal()
    asked = Asked.of(spec, instance, plan.num_layers, plan.problem.output)
    if on_start is not None:
        on_start(
            {
                "model": str(instance.model),
                "image": str(instance.image_path),
                "canvas": instance.canvas,
                "target": instance.target,
                "k": spec.k,
                # how the header names the question: `target 3, top-2` as always, else in words
                "property": asked.words,
                "layers": plan.num_layers,
                # None under `union`; per object, how many objects (the layers are (object, distance))
                "objects": len(asked.objects) if asked.objects is not None else None,
                "chain": " -> ".join(step.name for step in plan.chain),
                "method": method,
                "journal_answers": replayed,
                "warnings": list(oracle.journal_warnings),
            }
        )
    if progress is not None:
        _listen(oracle, plan.weights, progress)
    outcome = search(plan, oracle, given_starts)
    # a layer frozen whole has the same box at every ε: report it at 0 (the box, and so every
    # proof and counterexample about it, is unchanged; its re-proof is a cache hit)
    outcome = dataclasses.replace(outcome, eps=np.where(plan.problem.free_layers(), outcome.eps, 0.0))
    maximality = outcome.maximality or tuple(LayerMaximality(d, "not_checked") for d in range(plan.num_layers))
    certificate = certify(plan, outcome, oracle)
    complete, stop_reason = outcome.complete, outcome.stop_reason
    if certificate.interrupted:
        complete, stop_reason = False, "interrupted (Ctrl-C)"
    setup = SearchSetup(
        asked=asked,
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
        eps=box_key(outcome.eps),
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
        query_budget=oracle.query_cap,
        repeated_answers=oracle.repeats,
        starts=outcome.starts,
        rounds=outcome.rounds,
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
        info = {
            "spec": str(spec.file),
            "question": plan.question,
            "target": plan.problem.target,
            "k": plan.problem.k,
            "property": plan.problem.output.describe(),
        }
        export_query(exporter, plan.problem, np.array(eps), info)
    return len(asked)


class _CallableModule(types.ModuleType):
    """`mlrobust.run` is both this module and the function `run`: importing a submodule binds it
    as the package's attribute of the same name (the CLI, a sweep worker and the tests all import
    this module), which would hide the function of the public API. Calling the module calls
    the function, so `mlrobust.run(...)` works whatever was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
