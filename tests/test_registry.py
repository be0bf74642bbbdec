"""The verifier registry: one record per declared verifier, options declared once, and every
consumer asks attributes (sound, tier, batched, guide), never names. One behaviour suite runs
against every verifier."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from mlrobust.contract import verifiers as contract
from mlrobust.contract.verifiers import CATALOGUE, LANGUAGE, Option, VerifierInfo, step
from mlrobust.verify import registry
from mlrobust.verify.chain import run_chain
from mlrobust.verify.recheck import recheck
from mlrobust.verify.registry import VERIFIERS, Verifier, fast_steps, guide_step, strongest_sound_step
from mlrobust.verify.verdict import Status, Verdict

from .test_milp import _tiny_problem

QUICK = {
    "attack": {"steps": 10, "restarts": 2},
    "milp": {"time_limit": 20.0},
    "milp_pairwise": {"time_limit": 20.0},
    "external": {"command": f"{sys.executable} {Path(__file__).parent / 'tools' / 'fake_verifier.py'} falsify"},
}


def test_every_declared_verifier_has_one_record_and_the_language_only_in_language_ones() -> None:
    assert VERIFIERS.keys() == CATALOGUE.keys()
    assert all(VERIFIERS[name].info is CATALOGUE[name] for name in CATALOGUE)
    assert set(LANGUAGE) == {name for name, info in CATALOGUE.items() if info.in_language}
    assert "milp_pairwise" not in LANGUAGE  # the thesis-style method's oracle, not written in specs


def test_options_come_from_the_declaration_and_undeclared_ones_are_refused(tmp_path: Path) -> None:
    problem = _tiny_problem(tmp_path)
    eps = np.full(problem.num_layers, 0.01)
    bounds = VERIFIERS["bounds"]
    defaults = {o.name: o.default for o in bounds.info.options}
    assert bounds.check(problem, eps).margin_bound == bounds.check(problem, eps, **defaults).margin_bound
    with pytest.raises(TypeError, match="bounds has no option refine"):
        bounds.check(problem, eps, refine="lp")
    with pytest.raises(TypeError, match="milp has no option refine"):
        step("milp", refine="lp")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_verifier_keeps_the_verdict_contract(name: str, tmp_path: Path) -> None:
    """At ε = 0 no verifier refutes (the image keeps its target); over the whole range some
    point changes the class: only sound verifiers ever say ROBUST, NOT_ROBUST always comes with
    a point onnxruntime confirms, and a batch gets the verdicts of one-by-one checks."""
    problem = _tiny_problem(tmp_path)
    verifier = VERIFIERS[name]
    small, whole = np.zeros(problem.num_layers), np.full(problem.num_layers, 1.0)
    options = QUICK.get(name, {})
    verdicts = verifier.check_many(problem, [small, whole], **options)
    assert [v.verifier for v in verdicts] == [name, name]
    for eps, verdict in zip((small, whole), verdicts, strict=True):
        assert isinstance(verdict, Verdict)
        if verdict.status is Status.ROBUST:
            assert verifier.info.is_sound(options)
        if verdict.status is Status.NOT_ROBUST:
            assert recheck(problem, eps, verdict.counterexample).confirmed
    assert verdicts[0].status is not Status.NOT_ROBUST
    assert verdicts[1].status is not Status.ROBUST
    if verifier.info.is_sound(options):
        assert verdicts[0].status is Status.ROBUST
    alone = [verifier.check(problem, eps, **options).status for eps in (small, whole)]
    assert [v.status for v in verdicts] == alone


def _with_verifier(monkeypatch: pytest.MonkeyPatch, info: VerifierInfo, record: Verifier) -> None:
    monkeypatch.setitem(contract.CATALOGUE, info.name, info)
    monkeypatch.setitem(registry.VERIFIERS, info.name, record)


def test_a_new_complete_verifier_stays_out_of_the_fast_chain_and_becomes_the_strongest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing branches on names: a verifier declared `complete` is asked only by the full
    chain and re-proves ε*, whatever it is called."""
    asked: list[str] = []

    def exhaustive(problem, eps, budget, *, patience):  # type: ignore[no-untyped-def]
        asked.append("exhaustive")
        return VERIFIERS["milp"].check(problem, eps, budget)

    info = VerifierInfo(
        "exhaustive",
        sound=True,
        tier="complete",
        summary="a test's complete verifier",
        options=(Option("patience", "int", 3, "how patient"),),
    )
    _with_verifier(monkeypatch, info, Verifier(info, exhaustive))
    chain = (step("attack", steps=5, restarts=1), step("bounds"), step("exhaustive"))
    assert [s.name for s in fast_steps(chain)] == ["attack", "bounds"]
    assert strongest_sound_step(chain).name == "exhaustive"
    assert guide_step(chain).name == "bounds"
    problem = _tiny_problem(tmp_path)
    result = run_chain(problem, np.full(problem.num_layers, 1e-3), chain[2:])
    assert result.status is Status.ROBUST and asked == ["exhaustive"]


def test_the_guide_is_the_chains_own_bounds_step_or_crown_by_default() -> None:
    assert guide_step((step("attack"), step("bounds", method="ibp"))) == step("bounds", method="ibp")
    assert guide_step((step("attack"), step("milp"))) == step("bounds")
    assert dataclasses.asdict(guide_step((step("milp"),)))["options"] == dataclasses.asdict(step("bounds"))["options"]
