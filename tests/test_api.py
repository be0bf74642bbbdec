"""The Python API: `mlrobust.run` and `mlrobust.check` take what a notebook has at hand (a path
as str or Path, a loaded Spec; a folder as str or Path), and `check` answers with a typed result."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

import mlrobust
from mlrobust.nn.network import onnxruntime_logits
from mlrobust.verify.verdict import Status

from .exported import LAYERS, QUICK_CHAIN, image, write_problem

BUDGET = "search {\n  queries = 15\n  resolution = 0.01\n}\n"


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return write_problem(tmp_path_factory.mktemp("api"), extra=QUICK_CHAIN + BUDGET)


def test_run_takes_a_loaded_spec_or_a_path_and_a_str_or_path_folder(spec: Path, tmp_path: Path) -> None:
    importlib.import_module("mlrobust.run")  # the submodule bound as `mlrobust.run`: still callable
    loaded = mlrobust.run(mlrobust.load_spec(spec), out=str(tmp_path / "loaded"))
    by_path = mlrobust.run(str(spec), out=tmp_path / "by_path")
    assert isinstance(loaded, mlrobust.Result) and isinstance(by_path, mlrobust.Result)
    assert loaded.folder == (tmp_path / "loaded").resolve() and by_path.folder == (tmp_path / "by_path").resolve()
    for folder in ("loaded", "by_path"):
        assert json.loads((tmp_path / folder / "result.json").read_text())["schema"] == "mlrobust.run/1"
    assert loaded.eps == by_path.eps and loaded.size > 0 and loaded.new_queries <= 15


def test_check_returns_a_typed_verdict(spec: Path) -> None:
    robust = mlrobust.check(spec, 0.1)
    assert isinstance(robust, mlrobust.QueryResult)
    assert robust.verdict is Status.ROBUST and robust.robust and robust.verifier == "bounds"
    assert robust.margin_bound is not None and robust.margin_bound < 0 and robust.counterexample is None
    assert robust.eps == (0.1,) * LAYERS and robust.asked.layers == LAYERS
    assert [step.verifier for step in robust.steps] == ["attack", "bounds"]

    refuted = mlrobust.check(mlrobust.load_spec(spec), [0.3] * LAYERS)
    assert refuted.verdict is Status.NOT_ROBUST and refuted.verifier == "attack" and not refuted.robust
    point = refuted.counterexample
    assert point is not None and point.shape == (1, *image().shape)
    assert np.all(np.abs(point[0] - image()) <= 0.3 + 1e-7)
    logits = onnxruntime_logits(Path(refuted.asked.model), point[None])[0]
    assert max(logits[1:]) >= logits[0]  # target 0 out of the top 1, by onnxruntime
    assert refuted.counterexample_file is None  # nothing written unless asked

    payload = refuted.to_json()
    assert payload["schema"] == "mlrobust.check/1" and payload["verdict"] == "NOT_ROBUST"
    assert payload["eps"] == [0.3] * LAYERS and payload["problem"]["layers"] == LAYERS


def test_check_saves_a_counterexample_when_asked(spec: Path, tmp_path: Path) -> None:
    refuted = mlrobust.check(spec, 0.3, save_counterexample_to=str(tmp_path))
    assert refuted.counterexample_file is not None and refuted.counterexample_file.parent == tmp_path.resolve()
    saved = np.load(refuted.counterexample_file)
    assert saved.shape == (1, 1, *image().shape) and np.array_equal(saved[0], refuted.counterexample)


@pytest.mark.parametrize("eps", ["0.1,0.2", [0.1, 0.2], -0.1, float("nan"), [], "x"])
def test_check_refuses_a_bad_eps_as_a_user_error(spec: Path, eps) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(mlrobust.UserError):
        mlrobust.check(spec, eps)


def test_a_bad_spec_raises_spec_error_with_its_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mlr"
    bad.write_text('model = "missing.onnx"\n')
    for call in (lambda: mlrobust.check(bad, 0.1), lambda: mlrobust.run(bad, out=tmp_path / "out")):
        with pytest.raises(mlrobust.SpecError) as raised:
            call()
        assert {d.code for d in raised.value.diagnostics} >= {"file-not-found", "missing-field"}
    assert not (tmp_path / "out").exists()
