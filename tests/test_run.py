"""The search's result: proved, at least the uniform baseline, maximality backed by evidence,
written atomically, and resumable after a SIGKILL."""

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
from mlrobust.nn.network import onnxruntime_logits
from mlrobust.run import run
from mlrobust.spec.check import check_spec
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .helpers import REPO

SPEC = REPO / "tests" / "specs" / "run" / "fast.mlr"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    return run(SPEC, out=folder), folder


@pytest.fixture(scope="module")
def problem():
    result = check_spec(SPEC)
    return compile_problem(result.spec, result.instances[0])


def test_eps_star_is_robust_under_an_independent_recheck(finished, problem) -> None:
    result, _ = finished
    eps = np.array(result.eps)
    assert result.complete and result.verifier == "bounds"
    fresh = VERIFIERS["bounds"].check(problem, eps, method="crown")
    assert fresh.status is Status.ROBUST
    strong = VERIFIERS["attack"].check(problem, eps, steps=50, restarts=200, seed=99)
    assert strong.status is not Status.NOT_ROBUST and strong.best_margin < 0


def test_the_search_beats_or_matches_the_uniform_baseline(finished) -> None:
    result, _ = finished
    assert result.size >= result.uniform_size - 1e-12
    assert result.size == pytest.approx(float(np.dot(result.setup.weights, result.eps)))


def check_maximality_evidence(result, folder: Path, problem) -> int:  # type: ignore[no-untyped-def]
    """Every layer's maximality status is backed by the queries; returns how many are proved."""
    resolution = result.setup.resolution
    eps = np.array(result.eps)
    asked = {tuple(q.eps): q for q in result.queries}
    proved = 0
    for info in result.maximality:
        layer = info.layer
        assert info.status in ("proved_maximal", "not_expandable", "at_range_limit")
        if info.status == "at_range_limit":
            continue
        if info.probe is None:  # grown past its probe by the whole chain, not probed from there (and said so)
            assert info.status == "not_expandable" and info.chain == "full" and info.grown > 0, info
            assert info.reason is not None and ("grown together" in info.reason or "grown alone" in info.reason)
            continue
        one_step_out = eps.copy()
        one_step_out[layer] += resolution
        probe = np.array(info.probe)
        assert probe[layer] == pytest.approx(one_step_out[layer]) and np.all(probe <= one_step_out + 1e-12)
        answers = [q for key, q in asked.items() if np.array_equal(np.array(key), probe)]
        assert answers and all(a.status is not Status.ROBUST for a in answers)
        if info.status == "not_expandable":  # the reason names the verifier that answered the probe
            assert info.reason is not None and f"last {answers[-1].verifier}" in info.reason, info
            if "probes UNKNOWN without settling one" in info.reason:  # patience: that many complete UNKNOWNs were asked
                needed = int(info.reason.split("they left ")[1].split(" ")[0])
                full = [q for q in result.queries if not q.cached and q.status is Status.UNKNOWN
                        and q.purpose.startswith("maximality") and q.verifier in ("milp", "bab")]  # fmt: skip
                assert len(full) >= needed
        if info.status == "proved_maximal":
            point = np.load(folder / info.counterexample)
            lower, upper = problem.box(probe)
            assert np.all(point[0] >= lower) and np.all(point[0] <= upper)
            assert problem.violated(onnxruntime_logits(problem.network.path, point))[0]
            proved += 1
    return proved


def test_maximality_evidence_matches_the_queries(finished, problem) -> None:
    result, folder = finished
    check_maximality_evidence(result, folder, problem)


def test_outputs_are_written(finished) -> None:
    _, folder = finished
    payload = json.loads((folder / "result.json").read_text())
    assert payload["schema"] == "mlrobust.run/1"
    for key in ("eps", "size", "verifier", "maximality", "problem", "queries"):
        assert key in payload
    for key in ("model", "image", "mask", "target", "k", "range", "model_sha256", "spec_text"):
        assert key in payload["problem"]
    assert Path(payload["problem"]["model"]).is_absolute()
    for picture in ("heatmap.png", "trace.png"):
        assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_answers_everything_from_the_journal(finished) -> None:
    result, folder = finished
    again = run(SPEC, out=folder)
    assert again.new_queries == 0
    assert again.eps == result.eps


def test_a_killed_run_resumes_and_reaches_the_same_eps(finished, tmp_path: Path) -> None:
    result, _ = finished
    command = [sys.executable, "-m", "mlrobust", "run", str(SPEC), "--out", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 15):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    answered = len(journal.read_text().splitlines())
    assert 0 < answered < len(result.queries)
    resumed = run(SPEC, out=tmp_path)
    assert resumed.eps == result.eps
    assert resumed.new_queries <= result.new_queries - answered + 1


def test_every_result_field_is_documented(finished) -> None:
    """docs/result-schema.md is what scripts read: every top-level and problem field is in it."""
    _, folder = finished
    payload = json.loads((folder / "result.json").read_text())
    section = (REPO / "docs" / "result-schema.md").read_text().split("mlrobust.run/1", 1)[1]
    for key in payload:
        assert f"`{key}`" in section, key
    for key in payload["problem"]:
        assert f"`{key}`" in section, f"problem.{key}"


def test_verifier_work_accounts_for_every_new_query(finished) -> None:
    """Each query a verifier decided in this process is one of that verifier's runs, with its
    verdict counted; and nothing is counted for a rerun that only read the journal."""
    result, folder = finished
    payload = result.to_json()["verifiers"]  # (result.json itself is rewritten by the rerun tests)
    decided: dict[str, dict[str, int]] = {}
    for query in result.queries:
        if not query.cached:
            by = decided.setdefault(query.verifier, {})
            by[query.status.value] = by.get(query.status.value, 0) + 1
    assert decided, "the search asked no verifier"
    for name, verdicts in decided.items():
        for verdict, count in verdicts.items():
            if verdict != "UNKNOWN":  # an UNKNOWN query is the merged verdict of every step
                assert payload[name]["verdicts"].get(verdict, 0) >= count, (name, verdict)
        assert payload[name]["runs"] >= sum(verdicts.values())
        assert payload[name]["seconds"] >= 0
    again = run(SPEC, out=folder)
    assert again.new_queries == 0 and again.work == {}


def test_verifier_work_sums_tallies_and_nothing_else() -> None:
    """Counts and seconds add up over runs and `max_…` ones keep the maximum; settings and
    bounds in a verdict's stats (a batch size, a margin bound) are not summed into nonsense."""
    from mlrobust.search.oracle import VerifierWork
    from mlrobust.verify.verdict import Verdict

    work = VerifierWork()
    for domains, depth in ((10, 3), (4, 7)):
        stats = {"batch": 64, "crown_bound": 0.5, "domains_bounded": domains, "max_depth": depth}
        tallies = {"domains_bounded": domains, "max_depth": depth}
        work.add(Verdict(Status.UNKNOWN, "bab", 0.5, None, seconds=1.5, stats=stats, tallies=tallies))
    summary = work.to_json()
    assert summary["runs"] == 2 and summary["seconds"] == 3.0 and summary["verdicts"] == {"UNKNOWN": 2}
    assert summary["stats"] == {"domains_bounded": 14, "max_depth": 7}


def test_the_query_budget_caps_new_queries_and_open_layers_say_why(tmp_path: Path) -> None:
    queries = 40  # runs out inside the batch of 38 maximality probes (that batch is cut to fit)
    spec = tmp_path / "capped.mlr"
    spec.write_text(f'extends "{SPEC}"\nsearch {{\n  queries = {queries}\n}}\n')
    result = run(spec, out=tmp_path / "out")
    payload = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result.new_queries <= queries and payload["query_budget"] == queries
    assert sum(not q["cached"] for q in payload["queries"]) == result.new_queries
    assert not result.complete and "query budget" in result.stop_reason
    unchecked = [info for info in result.maximality if info.status == "not_checked"]
    assert unchecked and all("query budget" in (info.reason or "") for info in unchecked)
    for info in result.maximality:
        assert "budget" not in (info.reason or "") or info.status == "not_checked"  # never "UNKNOWN … budget"


def test_every_start_is_reported_and_eps_star_is_at_least_the_best(finished, problem) -> None:
    result, folder = finished
    payload = json.loads((folder / "result.json").read_text())
    names = [start["name"] for start in payload["starts"]]
    assert names[:2] == ["uniform", "expand from uniform/2"] and "heaviest layer alone" in names
    weights = np.array(result.setup.weights)
    for start in payload["starts"]:
        box = np.array(start["eps"])
        assert start["size"] == pytest.approx(float(weights @ box))
        if np.any(box > 0):  # each start is a proved box: inside one the chain answered ROBUST
            assert any(q.status is Status.ROBUST and np.all(box <= np.array(q.eps) + 1e-12) for q in result.queries), (
                start["name"]
            )
    assert result.size >= max(start["size"] for start in payload["starts"]) - 1e-12
    assert payload["maximality_rounds"] >= 1


def test_a_weaker_property_gets_at_least_the_stronger_ones_box(tmp_path: Path) -> None:
    """Top-1 (k = 1) is strictly stronger than top-2 on the same canvas: every box robust for it
    is robust for top-2, so the top-2 search, started also from the top-1 answer, must end at
    least as large (a local search alone need not: issue 20 saw one stop 19% short)."""
    for k in (1, 2):
        (tmp_path / f"k{k}.mlr").write_text(f'extends "{SPEC}"\nk = {k}\n')
    strong = run(tmp_path / "k1.mlr", out=tmp_path / "strong")
    weak = run(tmp_path / "k2.mlr", out=tmp_path / "weak", start_from=tmp_path / "strong" / "result.json")
    assert weak.size >= strong.size - 1e-12
    given = [start for start in weak.starts if start.name == "given (result.json)"]
    assert len(given) == 1 and given[0].size == pytest.approx(strong.size)  # the chain proved it for top-2
    assert any(q.purpose == "start (given (result.json))" and q.status is Status.ROBUST for q in weak.queries)


def test_start_from_refuses_a_result_of_other_layers(tmp_path: Path) -> None:
    from mlrobust.errors import UserError

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "mlrobust.run/1", "eps": [0.1, 0.2]}))
    with pytest.raises(UserError, match="38-layer epsilon vector"):
        run(SPEC, out=tmp_path / "out", start_from=other)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(UserError, match=r"not a result\.json"):
        run(SPEC, out=tmp_path / "out2", start_from=tmp_path / "junk.json")
