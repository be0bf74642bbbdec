"""`mlrobust run` beyond the search: the baselines, the progress events, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlrobust.compile import compile_problem
from mlrobust.report.result import chain_json
from mlrobust.run import ProgressEvent, run
from mlrobust.search.loop import COMPLETE_PROBE_PATIENCE
from mlrobust.spec.check import check_spec
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .helpers import REPO

FAST = REPO / "tests" / "specs" / "run" / "fast.mlr"
THESIS = REPO / "tests" / "specs" / "run" / "thesis.mlr"


def fresh_problem(spec: Path):  # type: ignore[no-untyped-def]
    result = check_spec(spec)
    return compile_problem(result.spec, result.instances[0])


def test_the_uniform_baseline_is_one_proved_epsilon_for_every_layer(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    result = run(FAST, out=tmp_path, progress=events.append, method="uniform")
    assert result.method == "uniform" and len(set(result.eps)) == 1
    assert result.size == pytest.approx(result.uniform_size)
    assert all(m.status == "not_checked" for m in result.maximality)
    assert VERIFIERS["bounds"].check(fresh_problem(FAST), np.array(result.eps)).status is Status.ROBUST
    # one event per answer, counted per verifier, with the best proved size never shrinking
    assert len(events) == len(result.queries)
    assert sum(events[-1].queries.values()) == len(result.queries)
    best = [e.best_size for e in events]
    assert best == sorted(best)
    robust_sizes = [result.query_size(q) for q in result.queries if q.status is Status.ROBUST]
    assert best[-1] == pytest.approx(max(robust_sizes)) and best[-1] >= result.size - 1e-12


def test_the_per_layer_baseline_reports_a_proved_box(tmp_path: Path) -> None:
    result = run(FAST, out=tmp_path, method="per-layer")
    eps = np.array(result.eps)
    weights = np.array(result.setup.weights)
    assert result.method == "per-layer" and result.size == pytest.approx(float(weights @ eps))
    assert eps[np.argmax(weights)] > 0  # the heaviest layer is searched first, from ε = 0
    assert VERIFIERS["bounds"].check(fresh_problem(FAST), eps).status is Status.ROBUST


def test_the_thesis_style_baseline_asks_only_pairwise_milps_within_its_budget(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = run(THESIS, out=tmp_path, method="thesis-style")
    elapsed = time.perf_counter() - started
    assert chain_json(result.setup.chain) == [["milp_pairwise", [["time_limit", 2.0]]]]
    assert {q.verifier for q in result.queries if not q.cached} == {"milp_pairwise"}
    # the time budget (15 s) caps every query, so the run ends near it (compile and re-proof aside)
    assert elapsed < 15 + 2 + 15
    problem = fresh_problem(THESIS)
    eps = np.array(result.eps)
    assert VERIFIERS["milp"].check(problem, eps, time_limit=30.0).status is not Status.NOT_ROBUST
    assert VERIFIERS["attack"].check(problem, eps, steps=50, restarts=50, seed=3).status is not Status.NOT_ROBUST


def test_ctrl_c_writes_the_best_proved_box_marked_incomplete(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mlrobust", "run", str(FAST), "--out", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 12):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    payload = json.loads((tmp_path / "result.json").read_text())
    assert payload["complete"] is False and "interrupted" in payload["stop_reason"]
    eps = np.array(payload["eps"])
    assert eps.max() > 0  # the uniform bisection had proved something before the interrupt
    assert VERIFIERS["bounds"].check(fresh_problem(FAST), eps).status is Status.ROBUST


def test_run_prints_each_stage_and_a_summary_per_verifier(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mlrobust", "run", str(FAST), "--out", str(tmp_path), "--method", "uniform"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "model double_mnist_pgd.onnx, image test/0000" in finished.stdout
    assert "target 3, top-2, 38 layers, chain attack -> bounds, method uniform" in finished.stdout
    assert "uniform done: best w·ε" in finished.stdout
    assert "queries per verifier" in finished.stdout and "bounds" in finished.stdout


def test_maximality_stops_asking_a_milp_that_keeps_timing_out(tmp_path: Path) -> None:
    spec = tmp_path / "short_milp.mlr"
    text = FAST.read_text().replace('"../../../', f'"{REPO}/')
    text = text.replace("-> bounds(method = crown)", "-> bounds(method = crown) -> milp(time_limit = 0.3s)")
    # the query cap, not the clock, ends this run: on a slow or loaded machine the 2 min budget
    # ran out before maximality asked the MILP anything
    spec.write_text(text.replace("time_limit = 2min", "time_limit = 10min"))
    result = run(spec, out=tmp_path / "out")
    assert "time" not in result.stop_reason, result.stop_reason
    probes = [m for m in result.maximality if m.status in ("proved_maximal", "not_expandable")]
    full = [m for m in probes if m.chain == "full"]
    milp_unknown = [q for q in result.queries if q.verifier == "milp" and q.status is Status.UNKNOWN and not q.cached]
    # on the 38-layer PGD problem a 0.3 s MILP cannot settle a probe: COMPLETE_PROBE_PATIENCE tries
    # (the first the open layers' joint step, then the heaviest layer alone), then the rest of the
    # layers are probed without it (and say so)
    joint = [q for q in milp_unknown if q.purpose == "maximality (complete verifiers, layers together)"]
    assert len(milp_unknown) == COMPLETE_PROBE_PATIENCE and len(joint) == 1
    assert len(full) == COMPLETE_PROBE_PATIENCE - 1
    assert all(m.chain == "fast" for m in probes if m not in full)
    order = np.argsort(-np.array(result.setup.weights), kind="stable")
    assert [m.layer for m in full] == sorted(int(d) for d in order[: COMPLETE_PROBE_PATIENCE - 1])


def test_the_cli_offers_exactly_the_methods_the_search_runs() -> None:
    from mlrobust.cli import build_parser
    from mlrobust.contract.methods import METHODS

    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    method = next(action for action in run_parser._actions if action.dest == "method")
    assert tuple(method.choices) == METHODS


def test_a_spec_chooses_its_method_and_the_cli_flag_overrides_it(tmp_path: Path) -> None:
    spec = tmp_path / "uniform.mlr"
    text = FAST.read_text().replace('"../../../', f'"{REPO}/')
    spec.write_text(text.replace("search {", "search {\n  method = uniform"))
    chosen = run(spec, out=tmp_path / "spec")
    assert chosen.method == "uniform" and len(set(chosen.eps)) == 1
    assert all(m.status == "not_checked" for m in chosen.maximality)
    overridden = run(spec, out=tmp_path / "flag", method="per-layer")
    assert overridden.method == "per-layer" and len(set(overridden.eps)) > 1


def test_an_unknown_method_in_a_spec_is_a_diagnostic_with_its_place(tmp_path: Path) -> None:
    spec = tmp_path / "typo.mlr"
    text = FAST.read_text().replace('"../../../', f'"{REPO}/')
    spec.write_text(text.replace("search {", "search {\n  method = unifrom"))
    finished = subprocess.run(
        [sys.executable, "-m", "mlrobust", "lint", str(spec)], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 1
    assert f"{spec}:11:12: error[bad-value] unknown search method `unifrom`" in finished.stdout
    assert "did you mean `uniform`?" in finished.stdout
