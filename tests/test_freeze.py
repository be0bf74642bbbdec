"""`freeze`: pixels that keep the image's value in every query, whatever their layer.

The box of ε is the one place it is applied, so every verifier follows: the tests sample the
box, run the attack, compare `check` with and without a freeze, and look at the counterexamples
a whole run saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mlrobust
from mlrobust.compile import compile_problem, question_hashes
from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.spec.check import check_spec, load_checked
from mlrobust.spec.instances import read_mask
from mlrobust.verify.attack import pgd_points_many

from .exported import HALF, LAYERS, QUICK_CHAIN, SIZE, image, write_problem
from .helpers import DATA, MODELS

LEFT_HALF = f"freeze = rect(top = 0, left = 0, height = {SIZE}, width = {HALF})\n"
FAR_COLUMNS = f"freeze = rect(top = 0, left = 0, height = {SIZE}, width = 3)\n"  # layers 4, 5, 6 whole
RANK = {"NOT_ROBUST": 0, "UNKNOWN": 1, "ROBUST": 2}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from .exported import export, toy_model

    return export(toy_model(), tmp_path_factory.mktemp("model") / "model.onnx")


def _problem(spec: Path):  # type: ignore[no-untyped-def]
    checked = load_checked(spec)
    return checked, compile_problem(checked.spec, checked.instances[0])


def test_sampled_points_of_the_box_never_move_frozen_pixels(tmp_path: Path, model: Path) -> None:
    """Whatever ε, the box is [image, image] on frozen pixels (the tensor box too, which bounds
    and bab read), and so is every point sampled in it and every point the attack reaches."""
    _, problem = _problem(write_problem(tmp_path, extra=FAR_COLUMNS + QUICK_CHAIN, model=model))
    frozen = problem.frozen
    assert frozen is not None and frozen.sum() == 3 * SIZE and frozen[:, :3].all()
    rng = np.random.default_rng(0)
    for eps in [np.full(LAYERS, 1.0), rng.uniform(0, 1, LAYERS), np.linspace(0.9, 0.1, LAYERS)]:
        lower, upper = problem.box(eps)
        assert np.array_equal(lower[0][frozen], problem.image[0][frozen])
        assert np.array_equal(upper[0][frozen], problem.image[0][frozen])
        assert np.all(upper[0][~frozen & (problem.layer_map <= 3)] > lower[0][~frozen & (problem.layer_map <= 3)])
        points = rng.uniform(lower, upper, size=(64, *lower.shape))
        assert np.array_equal(points[:, 0][:, frozen], np.broadcast_to(problem.image[0][frozen], (64, frozen.sum())))
        low_t, up_t = problem.box_tensor(torch.as_tensor(eps))
        np.testing.assert_array_equal(low_t.numpy(), lower)
        np.testing.assert_array_equal(up_t.numpy(), upper)
        attacked, _ = pgd_points_many(problem, [eps], 10, 3, 0.1, 0, float("inf"))
        assert np.array_equal(
            attacked[0][:, 0][:, frozen], np.broadcast_to(problem.image[0][frozen], (3, frozen.sum()))
        )
    assert problem.free_layers().tolist() == [True] * 4 + [False] * 3
    assert np.all(problem.layer_reach()[4:] == 0) and np.all(problem.layer_reach()[:4] > 0)


def test_check_with_a_freeze_is_never_worse_and_here_better(tmp_path: Path, model: Path) -> None:
    """A frozen box is a sub-box: its verdict is the same or better at every ε, its margin bound
    no larger; freezing the left half turns ε = 0.3 from NOT_ROBUST into ROBUST (exactly)."""
    plain = write_problem(tmp_path / "plain", extra=QUICK_CHAIN, model=model)
    frozen = write_problem(tmp_path / "frozen", extra=LEFT_HALF + QUICK_CHAIN, model=model)
    for eps in (0.1, 0.3, 0.45, 0.6):
        without, with_freeze = mlrobust.check(plain, eps), mlrobust.check(frozen, eps)
        assert RANK[with_freeze.verdict] >= RANK[without.verdict], eps
        if without.margin_bound is not None and with_freeze.margin_bound is not None:
            assert with_freeze.margin_bound <= without.margin_bound + 1e-9, eps
    assert mlrobust.check(plain, 0.3).verdict == "NOT_ROBUST"
    assert mlrobust.check(frozen, 0.3).verdict == "ROBUST"
    refuted = mlrobust.check(frozen, 0.6)  # ε = 0.6 on the left half too, but it is frozen
    assert refuted.verdict == "NOT_ROBUST"
    assert np.array_equal(refuted.counterexample[0][:, :HALF], image()[:, :HALF].astype(np.float32))
    assert refuted.asked.frozen_pixels == SIZE * HALF


def test_a_run_never_touches_frozen_pixels(tmp_path: Path, model: Path) -> None:
    """Every counterexample a run saved leaves the frozen pixels equal to the image; layers frozen
    whole get ε* = 0 and weight 0; result.json says how many pixels were frozen."""
    search = "search {\n  queries = 40\n  resolution = 0.01\n}\n"
    spec = write_problem(tmp_path, extra=FAR_COLUMNS + QUICK_CHAIN + search, model=model)
    result = mlrobust.run(spec, out=tmp_path / "run")
    saved = sorted((tmp_path / "run" / "counterexamples").glob("*.npy"))
    assert saved, "the search found no counterexample to look at"
    expected = image().astype(np.float32)
    for path in saved:
        point = np.load(path)[0, 0]
        assert np.array_equal(point[:, :3], expected[:, :3]), path.name
        assert not np.array_equal(point[:, 3:], expected[:, 3:])  # it did perturb the rest
    assert result.eps[4:] == (0.0, 0.0, 0.0) and max(result.eps[:4]) > 0
    payload = json.loads((tmp_path / "run" / "result.json").read_text())
    assert payload["problem"]["frozen_pixels"] == 3 * SIZE and payload["problem"]["freeze"] is None
    assert payload["problem"]["weights"][4:] == [0.0, 0.0, 0.0]


def test_the_freeze_is_part_of_the_question(tmp_path: Path, model: Path) -> None:
    method = METHOD_TABLE["search"]
    hashes = []
    for name, extra in (("none", ""), ("left", LEFT_HALF), ("far", FAR_COLUMNS)):
        checked = load_checked(write_problem(tmp_path / name, extra=extra + QUICK_CHAIN, model=model))
        hashes.append(question_hashes(checked.spec, checked.instances[0], method))
    assert len({h[0] for h in hashes}) == 3 and len({h[1] for h in hashes}) == 3


def _canvas_spec(folder: Path, freeze: str, mask: str = "other_digit") -> Path:
    spec = folder / f"canvas-{len(list(folder.glob('canvas-*.mlr')))}.mlr"
    spec.write_text(
        f'model = "{MODELS / "double_mnist_pgd.onnx"}"\ndataset = "{DATA}"\ncanvas = "test/0000"\n'
        f"target = 3\nmask = {mask}\nfreeze = {freeze}\n"
    )
    return spec


def test_target_digit_freezes_the_canvas_target(tmp_path: Path) -> None:
    """`freeze = target_digit` is the dataset's mask of the target (the 3 of test/0000)."""
    from mlrobust.data.index import load_index

    result = check_spec(_canvas_spec(tmp_path, "target_digit"))
    assert result.diagnostics == ()
    instance = result.instances[0]
    entry = load_index(DATA).by_id("test/0000")
    expected = read_mask(entry.object_for(3).mask)
    assert np.array_equal(instance.frozen, expected) and expected.any()
    assert not (instance.frozen & instance.mask).any()
    assert instance.freeze_path == entry.object_for(3).mask


def test_lint_checks_the_freeze(tmp_path: Path) -> None:
    """Shape, overlap with the perturbed object, a canvas for target_digit, unknown forms."""
    small = tmp_path / "small.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(small)
    cases = {
        f'"{small}"': "shape-mismatch",
        "rect(top = 40, left = 40, height = 30, width = 10)": "bad-value",
        "other_digit": "unknown-generator",
        "rect(top = 0, left = 0, height = 64, width = 64)": "bad-value",  # every pixel: nothing to perturb
    }
    for freeze, code in cases.items():
        result = check_spec(_canvas_spec(tmp_path, freeze))
        assert [d.code for d in result.diagnostics] == [code], freeze
        assert result.diagnostics[0].span.line == 6 and not result.ok
    # the perturbed object's own pixels: a warning (the freeze wins), on the freeze line
    everything = "rect(top = 0, left = 0, height = 64, width = 64)"  # one layer: the whole canvas
    overlap = check_spec(_canvas_spec(tmp_path, "target_digit", mask=everything))
    assert [(d.code, d.severity.value, d.span.line) for d in overlap.diagnostics] == [
        ("freeze-overlaps-mask", "warning", 6)
    ]
    assert overlap.ok and overlap.instances[0].frozen is not None
    no_canvas = tmp_path / "no_canvas.mlr"
    no_canvas.write_text(
        f'model = "{MODELS / "double_mnist_pgd.onnx"}"\nimage = "{DATA / "test" / "images" / "0000.png"}"\n'
        "target = 3\nmask = rect(top = 0, left = 0, height = 4, width = 4)\nfreeze = target_digit\n"
    )
    assert [d.code for d in check_spec(no_canvas).diagnostics] == ["needs-dataset"]
