"""RGB end to end (issue 19) on examples/rgb: a 3x28x56 canvas of two hued digits and a tiny
RGB classifier (scripts/make_rgb_example.py). Every channel of a pixel moves within the
pixel's layer's ε; `run` proves a box that onnxruntime cannot break by sampling it; the
heatmap shows the canvas in colour; `lint` and `check` accept the spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mlrobust.cli import main
from mlrobust.compile import compile_problem
from mlrobust.nn.network import onnxruntime_logits
from mlrobust.problem.problem import Problem
from mlrobust.spec.check import check_spec

from .helpers import REPO, run_cli

EXAMPLE = REPO / "examples" / "rgb"
SPEC = EXAMPLE / "rgb_mnist.mlr"
SAMPLES = 2000


@pytest.fixture(scope="module")
def problem() -> Problem:
    checked = check_spec(SPEC)
    assert checked.spec is not None and not checked.diagnostics, checked.diagnostics
    return compile_problem(checked.spec, checked.instances[0])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One real `mlrobust run` of the example (a subprocess: the exit code is the real one).

    One intra-op thread: the network is tiny, and on a busy machine a second thread only
    waits for a core (17 s instead of 8 s beside a running sweep on 2 cores)."""
    folder = tmp_path_factory.mktemp("rgb-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        done = run_cli("run", str(SPEC), "--out", str(folder))
    assert done.code == 0, done.stderr
    return json.loads((folder / "result.json").read_text()), folder


def test_the_example_is_a_colour_image_with_one_layer_map_for_its_pixels(problem: Problem) -> None:
    channels, height, width = problem.image.shape
    assert (channels, height, width) == (3, 28, 56)
    assert problem.layer_map.shape == (height, width) and not problem.per_element_layers
    assert np.ptp(problem.image, axis=0).max() > 0.5  # the channels differ: a real colour picture, not grey
    # a pixel's layer is its Chebyshev distance to the mask (brute force over the mask's pixels)
    mask = np.argwhere(np.asarray(Image.open(EXAMPLE / "mask.png")) > 0)
    rows, cols = np.indices((height, width))
    distance = np.abs(np.stack([rows, cols], axis=-1)[:, :, None, :] - mask[None, None]).max(axis=-1).min(axis=-1)
    np.testing.assert_array_equal(problem.layer_map, distance)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_channel_of_a_pixel_gets_its_layers_radius(problem: Problem, data: st.DataObject) -> None:
    """Box element (c, i, j) is image[c, i, j] ± ε[layer(i, j)], clipped to the range, for all
    three c; the differentiable box the bounds and the attack use is the same box."""
    eps = np.array(data.draw(st.lists(st.floats(0.0, 0.6), min_size=problem.num_layers, max_size=problem.num_layers)))
    lower, upper = problem.box(eps)
    radius = eps[problem.layer_map]  # (H, W)
    for channel in range(3):
        np.testing.assert_array_equal(lower[channel], np.clip(problem.image[channel] - radius, 0.0, 1.0))
        np.testing.assert_array_equal(upper[channel], np.clip(problem.image[channel] + radius, 0.0, 1.0))
    low_t, up_t = problem.box_tensor(torch.tensor(eps))
    np.testing.assert_allclose(low_t.numpy(), lower, rtol=0, atol=1e-15)
    np.testing.assert_allclose(up_t.numpy(), upper, rtol=0, atol=1e-15)


def _sample(problem: Problem, eps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points of N(ε): each channel of each pixel drawn on its own, half of them at a random
    corner of the box (where a ReLU net's extremes lie), half inside it."""
    lower, upper = problem.box(eps)
    inside = rng.uniform(lower, upper, size=(SAMPLES // 2, *lower.shape))
    corners = np.where(rng.random((SAMPLES // 2, *lower.shape)) < 0.5, lower, upper)
    return np.concatenate([inside, corners])


def test_run_proves_a_box_that_sampling_cannot_break(problem: Problem, finished: tuple[dict, Path]) -> None:
    result, _ = finished
    eps = np.array(result["eps"])
    assert result["problem"]["layers"] == problem.num_layers == len(eps)
    assert result["size"] > 0 and result["verifier"] == "bounds"
    points = _sample(problem, eps, np.random.default_rng(0))
    radius = eps[problem.layer_map]
    assert np.all(np.abs(points - problem.image) <= radius + 1e-12)  # every channel within its pixel's ε
    assert np.all((points >= 0) & (points <= 1))
    moved = np.abs(points - problem.image) > 1e-9
    assert np.any(moved[:, 0] != moved[:, 1])  # channels move independently, not as one
    logits = onnxruntime_logits(problem.network.path, points.astype(np.float32))
    assert not problem.violated(logits).any()


def test_the_sampler_breaks_a_box_far_past_the_proved_one(problem: Problem) -> None:
    """The check above has teeth: the same sampler on a large box finds a violation."""
    points = _sample(problem, np.full(problem.num_layers, 0.5), np.random.default_rng(1))
    assert problem.violated(onnxruntime_logits(problem.network.path, points.astype(np.float32))).any()


def _digit_colours(canvas: np.ndarray) -> list[np.ndarray]:
    """Each digit's colour (its brightest pixel), left half then right half of the canvas."""
    half = canvas.shape[1] // 2
    colours = []
    for part in (canvas[:, :half], canvas[:, half:]):
        flat = part.reshape(-1, 3).astype(int)
        colours.append(flat[flat.sum(axis=1).argmax()])
    return colours


def test_the_heatmap_shows_the_digits_in_their_colours(finished: tuple[dict, Path]) -> None:
    _, folder = finished
    canvas = np.asarray(Image.open(EXAMPLE / "canvas.png").convert("RGB"))
    picture = np.asarray(Image.open(folder / "heatmap.png").convert("RGB")).astype(int)
    panel = picture[:, : picture.shape[1] * 3 // 10]  # the image's panel, left of the ε map
    for colour in _digit_colours(canvas):
        assert np.ptp(colour) > 100  # a saturated hue, nothing like grey
        near = np.abs(panel - colour).max(axis=-1) <= 30
        assert near.sum() > 100, colour


def test_lint_and_check_accept_the_spec(
    finished: tuple[dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", "--strict", "--format", "json", str(SPEC)]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"] == []
    eps = ",".join(repr(e) for e in finished[0]["eps"])
    assert main(["check", str(SPEC), "--eps", eps, "--json", "--out", str(tmp_path)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["verdict"] == "ROBUST", answer


def test_lint_refuses_a_grey_image_for_the_colour_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The channel count is part of the shape lint holds the image to: a grey copy of the
    canvas is `shape-mismatch`, never silently broadcast over three channels."""
    Image.open(EXAMPLE / "canvas.png").convert("L").save(tmp_path / "grey.png")
    spec = tmp_path / "grey.mlr"
    spec.write_text(
        f'model = "{EXAMPLE / "rgb_mnist.onnx"}"\nimage = "grey.png"\ntarget = 9\nmask = "{EXAMPLE / "mask.png"}"\n'
    )
    assert main(["lint", "--format", "json", str(spec)]) == 1
    diagnostics = json.loads(capsys.readouterr().out)["diagnostics"]
    assert [d["code"] for d in diagnostics] == ["shape-mismatch"]
    assert "1×28×56" in diagnostics[0]["message"] and "3×28×56" in diagnostics[0]["message"]
