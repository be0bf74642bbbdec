"""`mlrobust check`: the JSON contract, saved counterexamples, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlrobust.nn.network import onnxruntime_logits

from .helpers import REPO, run_cli


def _check(*args: str) -> dict:
    result = run_cli("check", *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_json_holds_the_documented_fields() -> None:
    payload = _check(str(REPO / "specs" / "double_mnist_pgd.mlr"), "--eps", "0.01")
    assert payload["schema"] == "mlrobust.check/1"
    assert payload["verdict"] == "ROBUST" and payload["verifier"] in ("bounds", "milp")
    assert payload["margin_bound"] < 0
    problem = payload["problem"]
    assert Path(problem["model"]).is_absolute() and Path(problem["model"]).name == "double_mnist_pgd.onnx"
    assert Path(problem["image"]).is_file() and Path(problem["mask"]).is_file()
    assert (problem["target"], problem["k"], problem["range"]) == (3, 2, [0.0, 1.0])
    assert len(payload["eps"]) == problem["layers"] == 38
    assert payload["counterexample"] is None
    assert [s["verifier"] for s in payload["steps"]][-1] == payload["verifier"]


def test_not_robust_saves_a_counterexample_that_onnxruntime_confirms(tmp_path: Path) -> None:
    payload = _check(str(REPO / "specs" / "double_mnist_none.mlr"), "--eps", "0.1", "--out", str(tmp_path))
    assert payload["verdict"] == "NOT_ROBUST"
    point = np.load(payload["counterexample"])
    assert point.shape == (1, 1, 64, 64) and point.dtype == np.float32
    from mlrobust.data.index import read_gray_png

    image = read_gray_png(Path(payload["problem"]["image"]))
    assert np.all(np.abs(point[0, 0].astype(np.float64) - image) <= 0.1 + 1e-7)
    assert point.min() >= 0 and point.max() <= 1
    logits = onnxruntime_logits(Path(payload["problem"]["model"]), point)[0]
    target = payload["problem"]["target"]
    assert (np.delete(logits, target) >= logits[target]).sum() >= 2  # target out of the top 2


def test_per_layer_eps_must_match_the_layers() -> None:
    bad = run_cli("check", str(REPO / "specs" / "double_mnist_pgd.mlr"), "--eps", "0.1,0.05")
    assert bad.code == 1 and "38 layers" in bad.stderr
    negative = run_cli("check", str(REPO / "specs" / "double_mnist_pgd.mlr"), "--eps", "-0.1")
    assert negative.code == 1
    per_layer = ",".join(["0.002"] * 38)
    assert _check(str(REPO / "specs" / "double_mnist_pgd.mlr"), "--eps", per_layer)["verdict"] == "ROBUST"


def test_sweep_needs_an_instance() -> None:
    result = run_cli("check", str(REPO / "specs" / "sweep_models.mlr"), "--eps", "0.01")
    assert result.code == 1 and "--instance" in result.stderr
    payload = _check(str(REPO / "specs" / "sweep_models.mlr"), "--eps", "0.001", "--instance", "4")
    assert payload["problem"]["canvas"] == "test/0004"


def test_a_bad_spec_exits_1_with_diagnostics(tmp_path: Path) -> None:
    spec = tmp_path / "bad.mlr"
    spec.write_text('model = "missing.onnx"\n')
    result = run_cli("check", str(spec), "--eps", "0.1")
    assert result.code == 1 and "file-not-found" in result.stderr and "Traceback" not in result.stderr


def test_device_flag_moves_bab_and_refuses_a_missing_gpu() -> None:
    """`--device cpu` runs the spec's bab on the CPU (its stats say so); `--device cuda` without
    a CUDA device is a user error naming the verifier and the fix, not a traceback."""
    import torch

    spec = str(REPO / "specs" / "double_mnist_pgd_bab.mlr")
    payload = _check(spec, "--eps", "0.1", "--device", "cpu")  # just past CROWN's edge: bab decides
    ran = {s["verifier"]: s for s in payload["steps"]}
    assert ran["bab"]["stats"]["device"] == "cpu" and ran["bab"]["stats"]["domains_bounded"] >= 1
    if not torch.cuda.is_available():
        result = run_cli("check", spec, "--eps", "0.05", "--device", "cuda")
        assert result.code == 1
        assert "bab" in result.stderr and "cuda" in result.stderr.lower() and "--device cpu" in result.stderr


def test_the_device_is_not_part_of_the_question() -> None:
    """A journal answered on one device replays on the other: the hashes leave the device out,
    and keep every other option in."""
    import dataclasses

    from mlrobust.compile import question_hashes
    from mlrobust.contract.methods import METHOD_TABLE
    from mlrobust.contract.verifiers import on_device, step
    from mlrobust.spec.check import load_checked

    checked = load_checked(REPO / "specs" / "double_mnist_pgd_bab.mlr")
    spec, instance = checked.spec, checked.instances[0]
    method = METHOD_TABLE["search"]
    moved = dataclasses.replace(spec, chain=on_device(spec.chain, "cuda"))
    assert [s.option("device") for s in moved.chain if s.name == "bab"] == ["cuda"]
    assert question_hashes(spec, instance, method) == question_hashes(moved, instance, method)
    longer = dataclasses.replace(spec, chain=(*spec.chain[:-1], step("bab", time_limit=9.0)))
    assert question_hashes(spec, instance, method)[1] != question_hashes(longer, instance, method)[1]


def test_json_on_a_bad_spec_prints_the_diagnostics_as_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mlr"
    bad.write_text('model = "missing.onnx"\ntarget = 3\n')
    for command in (("check", str(bad), "--eps", "0.01"), ("run", str(bad))):
        result = run_cli(*command, "--json")
        assert result.code == 1
        payload = json.loads(result.stdout)  # stdout is JSON, not empty
        assert payload["schema"] == "mlrobust.error/1" and payload["exit_code"] == 1
        codes = {d["code"] for d in payload["diagnostics"]}
        assert {"missing-field", "file-not-found"} <= codes
        assert all(d["file"] == str(bad) and d["line"] >= 1 for d in payload["diagnostics"])
        assert "file-not-found" in result.stderr  # the human report is still on stderr


def test_per_object_eps_is_given_object_by_object_and_checked_against_each_objects_distances() -> None:
    """Under `layers = per_object` a user writes each object's part of ε apart (`a,b/c`): the
    query's box holds exactly those values in the flat, object-by-object order; a part of the
    wrong length, a missing object or `/` on a union spec are user errors that name the counts."""
    from mlrobust.query import check
    from mlrobust.spec.check import load_checked

    spec = REPO / "tests" / "specs" / "run" / "per_object.mlr"
    checked = load_checked(spec)
    assert checked.spec is not None
    counts = checked.instances[0].pixel_layers().counts
    assert len(counts) == 2 and counts[1] >= 2
    digit = ",".join(f"{0.001 * (d + 1):g}" for d in range(counts[0]))
    answer = check(spec, f"{digit}/0.003")
    expected = [0.001 * (d + 1) for d in range(counts[0])] + [0.003] * counts[1]
    np.testing.assert_allclose(answer.eps, expected)
    patch = ",".join(["0.002"] * counts[1])
    np.testing.assert_allclose(check(spec, f"0/{patch}").eps, [0.0] * counts[0] + [0.002] * counts[1])

    wrong_length = run_cli("check", str(spec), "--eps", "0.1,0.2/0.01")
    assert wrong_length.code == 1 and "object 0" in wrong_length.stderr and str(counts[0]) in wrong_length.stderr
    one_part = run_cli("check", str(spec), "--eps", "0.1/0.1/0.1")
    assert one_part.code == 1 and "2 objects" in one_part.stderr
    flat_wrong = run_cli("check", str(spec), "--eps", "0.1,0.2")
    assert flat_wrong.code == 1 and "separated by /" in flat_wrong.stderr
    union = run_cli("check", str(REPO / "specs" / "double_mnist_pgd.mlr"), "--eps", "0.1/0.1")
    assert union.code == 1 and "not per object" in union.stderr and "Traceback" not in union.stderr
