"""`layers = per_object` (issue 19): several perturbed objects, each ringed on its own.

A layer is then an (object, distance) pair: each pixel belongs to its nearest object (ties to
the object listed first) and lies at its Chebyshev distance to that object. The Problem sees
one flat index per pixel; results, the console and the heatmap show the pairs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.compile import compile, compile_problem, question_hashes
from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.data.index import load_index, read_mask_png
from mlrobust.nn.network import onnxruntime_logits
from mlrobust.problem.layers import HiddenObject, layer_map, per_object_layering, union_layering
from mlrobust.search.cutting import fixed_weights
from mlrobust.spec import ir
from mlrobust.spec import syntax as s
from mlrobust.spec.check import check_spec
from mlrobust.spec.format import format_spec
from mlrobust.spec.parser import parse_text

from .helpers import DATA, REPO, run_cli

SPECS = REPO / "tests" / "specs"
RUN_SPEC = SPECS / "run" / "per_object.mlr"
TRIPLE = REPO / "data" / "triple_mnist"
DOUBLE_MODEL = REPO / "models" / "double_mnist_none.onnx"
TRIPLE_MODEL = REPO / "models" / "triple_mnist_none.onnx"


def chebyshev_to(mask: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's Chebyshev distance to the nearest pixel of `mask`."""
    rows, cols = np.indices(mask.shape)
    points = np.argwhere(mask)
    distance = np.maximum(
        np.abs(rows[..., None] - points[:, 0]), np.abs(cols[..., None] - points[:, 1])
    )  # (H, W, points)
    return distance.min(axis=-1)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the layer map ---------------------------------------------------------------------


@st.composite
def objects(draw: st.DrawFn) -> list[np.ndarray]:
    """1–4 random objects on a small grid, each non-empty and not wholly covered by the ones before."""
    height, width = draw(st.integers(3, 14)), draw(st.integers(3, 14))
    found: list[np.ndarray] = []
    for _ in range(draw(st.integers(1, 4))):
        bits = draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
        mask = np.array(bits, dtype=bool).reshape(height, width)
        covered = np.logical_or.reduce(found) if found else np.zeros_like(mask)
        if (mask & ~covered).any():
            found.append(mask)
    if not found:
        mask = np.zeros((height, width), dtype=bool)
        mask[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = True
        found.append(mask)
    return found


@settings(max_examples=60, deadline=None)
@given(objects())
def test_every_pixel_has_one_object_and_its_distance_to_that_object(masks: list[np.ndarray]) -> None:
    layering = per_object_layering(masks)
    labels = layering.labels
    assert layering.per_object and len(labels) == layering.layers == sum(layering.counts)
    assert layering.map.min() == 0 and layering.map.max() == layering.layers - 1
    assert np.array_equal(np.unique(layering.map), np.arange(layering.layers))  # no empty layer
    distances = np.stack([chebyshev_to(mask) for mask in masks])
    owner = np.array([o for o, _ in labels])[layering.map]
    distance = np.array([d for _, d in labels])[layering.map]
    # d is the Chebyshev distance to the pixel's own object ...
    assert np.array_equal(distance, np.take_along_axis(distances, owner[None], 0)[0])
    # ... which is its nearest: the distance to the union, the union's layer
    assert np.array_equal(distance, distances.min(axis=0))
    assert np.array_equal(distance, layer_map(np.logical_or.reduce(masks)))
    # a tie goes to the object listed first
    assert np.array_equal(owner, np.argmax(distances == distances.min(axis=0), axis=0))
    # object 0's ring 0 is exactly its mask; every object's ring 0 is its mask less the earlier ones
    assert np.array_equal(layering.map == 0, masks[0])
    for o, mask in enumerate(masks):
        earlier = np.logical_or.reduce(masks[:o]) if o else np.zeros_like(mask)
        assert np.array_equal(layering.map == labels.index((o, 0)), mask & ~earlier)
    # labels: object by object, distance by distance
    assert labels == tuple((o, d) for o, count in enumerate(layering.counts) for d in range(count))


def test_one_object_per_object_is_the_union_layering_with_labels() -> None:
    mask = np.zeros((9, 11), dtype=bool)
    mask[3:5, 2:6] = True
    single, union = per_object_layering([mask]), union_layering(mask)
    assert np.array_equal(single.map, union.map) and single.counts == union.counts
    assert single.label(2) == "(0, 2)" and union.label(2) == "2"


def test_an_object_inside_the_earlier_ones_owns_no_pixel() -> None:
    big = np.zeros((8, 8), dtype=bool)
    big[1:6, 1:6] = True
    small = np.zeros_like(big)
    small[2:4, 2:4] = True
    with pytest.raises(HiddenObject) as raised:
        per_object_layering([big, small])
    assert raised.value.index == 1
    assert per_object_layering([small, big]).counts[0] >= 1  # listed first, it owns its pixels


# --- the spec: grammar, IR, fmt, lint ---------------------------------------------------


def test_layers_is_union_by_default_and_per_object_when_asked() -> None:
    union = check_spec(SPECS / "valid" / "mask_union.mlr")
    per_object = check_spec(SPECS / "valid" / "per_object.mlr")
    assert union.spec is not None and union.spec.layers == "union"
    assert per_object.ok and per_object.spec is not None and per_object.spec.layers == "per_object"
    weights = per_object.spec.weights
    assert isinstance(weights, ir.PerObjectWeights)
    assert weights.parts == (ir.ExponentialWeights(0.8), ir.ExplicitWeights((1.0, 0.5), 0.0))
    (instance,) = per_object.instances
    layering = instance.pixel_layers()
    assert instance.object_names == ("digit 5", "rect(top = 0, left = 40, height = 8, width = 8)")
    assert layering.per_object and len(layering.counts) == 2 and instance.layers == layering.layers
    digit = read_mask_png(load_index(DATA).by_id("test/0000").other_object(3).mask)
    assert np.array_equal(layering.map == 0, digit)  # object 0's ring 0 is the digit
    assert np.array_equal(instance.mask, union.instances[0].mask)  # the same pixels, grouped otherwise


def test_fmt_round_trips_per_object_layers_and_nested_weights() -> None:
    messy = (
        "layers=per_object\n"
        "weights = [ [1,0.5 ,0.25], exponential( base=0.5 ),padded([1], fill = 0), ]\n"
        "cutting=[[1, 0.9],[ 0.5 ]]  # per object\n"
    )
    canonical = format_spec(messy)
    assert canonical == (
        "layers = per_object\n"
        "weights = [[1, 0.5, 0.25], exponential(base = 0.5), padded([1], fill = 0)]\n"
        "cutting = [[1, 0.9], [0.5]]  # per object\n"
    )
    assert format_spec(canonical) == canonical
    assert parse_text(canonical).statements == parse_text(messy).statements
    weights = parse_text(canonical).statements[1]
    assert isinstance(weights, s.Field) and isinstance(weights.value, s.ListValue)


def test_nested_cutting_is_held_flat_with_each_objects_length() -> None:
    cutting = ir.ExplicitCutting((1.0, 0.9, 0.5), per_object=(2, 1))
    assert cutting.parts == ((1.0, 0.9), (0.5,))
    assert cutting.label != ir.ExplicitCutting((1.0, 0.9, 0.5)).label  # another question, another folder
    assert cutting.label != ir.ExplicitCutting((1.0, 0.9, 0.5), per_object=(1, 2)).label


def lint(tmp_path: Path, body: str, model: Path = DOUBLE_MODEL, data: Path = DATA, target: str = "3") -> list:  # type: ignore[type-arg]
    head = f'model = "{model}"\ndataset = "{data}"\ncanvas = "test/0000"\ntarget = {target}\n'
    path = write(tmp_path / "spec.mlr", head + body)
    return sorted((d.code, Path(d.span.file).name, d.span.line, d.span.column) for d in check_spec(path).diagnostics)


MASKS = "mask = [other_digit, rect(top = 0, left = 40, height = 8, width = 8)]\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a flat list under per_object is refused, never guessed at
        ("layers = per_object\nweights = [1, 0.5]\n", [("weights-length", 7, 11)]),
        ("layers = per_object\ncutting = [1, 0.5]\n", [("weights-length", 7, 11)]),
        # lists of lists under union
        ("weights = [[1], [1]]\ncutting = [[1], [1]]\n", [("weights-length", 6, 11), ("weights-length", 7, 11)]),
        # one form per object: two objects here
        ("layers = per_object\nweights = [uniform]\n", [("weights-length", 7, 11)]),
        ("layers = per_object\ncutting = [[1], [1], [1]]\n", [("weights-length", 7, 11)]),
        # an object's list has the wrong number of distances: blamed at that object's list
        ("layers = per_object\nweights = [uniform, [1, 0.5]]\n", [("weights-length", 7, 21)]),
        ("layers = per_object\nweights = [uniform, padded([1, 0.5], fill = 0)]\n", []),
        ("layers = per_object\nweights = [[1, 0.5], 2]\n", [("wrong-type", 7, 22)]),
        ("layers = per_object\ncutting = [[1, 0.5], [2]]\n", [("bad-value", 7, 23)]),
        ("layers = each\n", [("bad-value", 6, 10)]),
        ('layers = "per_object"\n', [("wrong-type", 6, 10)]),
    ],
)
def test_lint_checks_the_shapes_with_file_line_and_column(tmp_path: Path, body: str, expected: list) -> None:  # type: ignore[type-arg]
    found = lint(tmp_path, MASKS + body)
    assert found == sorted((code, "spec.mlr", line, column) for code, line, column in expected)


def test_lint_names_an_object_hidden_inside_the_earlier_ones(tmp_path: Path) -> None:
    body = "mask = [rect(top = 0, left = 0, height = 10, width = 10), rect(top = 2, left = 2, height = 3, width = 3)]\n"
    assert lint(tmp_path, body) == []  # by distance to the union, a part inside another is harmless
    found = check_spec(write(tmp_path / "spec.mlr", (tmp_path / "spec.mlr").read_text() + "layers = per_object\n"))
    (diagnostic,) = found.diagnostics
    assert (diagnostic.code, diagnostic.span.line, diagnostic.span.column) == ("empty-mask", 5, 59)
    assert "object 1" in diagnostic.message and "rect(top = 2" in diagnostic.message


def test_other_digit_is_one_object_per_digit_on_a_triple_canvas(tmp_path: Path) -> None:
    body = "k = 3\nmask = other_digit\nlayers = per_object\nweights = [exponential(base = 0.8), object_only]\n"
    assert lint(tmp_path, body, TRIPLE_MODEL, TRIPLE, "first_digit") == []
    checked = check_spec(tmp_path / "spec.mlr")
    (instance,) = checked.instances
    entry = load_index(TRIPLE).by_id("test/0000")
    others = entry.other_objects(entry.labels[0])
    assert instance.object_names == tuple(f"digit {o.label}" for o in others)
    layering = instance.pixel_layers()
    assert len(layering.counts) == 2
    for o, other in enumerate(others):
        assert np.array_equal(layering.map == layering.labels.index((o, 0)), read_mask_png(other.mask))
    # the same spec by distance to the union: one ring per distance, the two digits together
    union = check_spec(write(tmp_path / "spec.mlr", (tmp_path / "spec.mlr").read_text().replace(
        "layers = per_object\nweights = [exponential(base = 0.8), object_only]\n", ""
    )))  # fmt: skip
    assert union.ok and not union.instances[0].pixel_layers().per_object
    assert np.array_equal(union.instances[0].mask, instance.mask)


# --- compile: weights, cutting, the question --------------------------------------------


def test_weights_and_fixed_cutting_follow_each_object() -> None:
    checked = check_spec(SPECS / "valid" / "per_object.mlr")
    assert checked.spec is not None
    (instance,) = checked.instances
    counts = instance.pixel_layers().counts
    plan = compile(checked.spec, instance, "search")
    first, second = counts
    assert plan.num_layers == first + second
    np.testing.assert_allclose(plan.weights[:first], 0.8 ** np.arange(first))
    np.testing.assert_allclose(plan.weights[first:], [1.0, 0.5] + [0.0] * (second - 2))
    # fixed cutting by distance to the ring's own object, with that object's own r
    np.testing.assert_allclose(plan.cutting, np.concatenate([fixed_weights(first), fixed_weights(second)]))


def test_the_layering_is_part_of_the_question_and_union_hashes_stay() -> None:
    per_object = check_spec(SPECS / "valid" / "per_object.mlr")
    union = check_spec(SPECS / "valid" / "mask_union.mlr")
    assert per_object.spec is not None and union.spec is not None
    method = METHOD_TABLE["search"]
    _, per_object_key = question_hashes(per_object.spec, per_object.instances[0], method)
    _, union_key = question_hashes(union.spec, union.instances[0], method)
    assert per_object_key != union_key  # same model, image, mask and chain: other layers, other boxes
    # writing `layers = union` is the default: the hashes of union specs are what they were
    explicit = dataclasses.replace(union.spec, layers="union")
    assert question_hashes(explicit, union.instances[0], method) == question_hashes(
        union.spec, union.instances[0], method
    )


# --- one real run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:  # type: ignore[type-arg]
    folder = tmp_path_factory.mktemp("per_object_run")
    done = run_cli("run", str(RUN_SPEC), "--out", str(folder))
    assert done.code == 0, done.stderr + done.stdout
    return json.loads((folder / "result.json").read_text()), done.stdout, folder


def test_the_result_labels_every_layer_with_its_object_and_distance(finished) -> None:  # type: ignore[no-untyped-def]
    result, stdout, folder = finished
    problem = result["problem"]
    checked = check_spec(RUN_SPEC)
    layering = checked.instances[0].pixel_layers()
    assert problem["layering"] == "per_object" and problem["layers"] == layering.layers == len(result["eps"])
    assert [o["name"] for o in problem["objects"]] == ["digit 5", "rect(top = 0, left = 40, height = 8, width = 8)"]
    assert [o["distances"] for o in problem["objects"]] == list(layering.counts)
    assert [tuple(label) for label in problem["layer_labels"]] == list(layering.labels)
    for entry in result["maximality"]:
        assert (entry["object"], entry["distance"]) == layering.labels[entry["layer"]]
    # the console names the objects and labels the rows (object, distance)
    assert "objects: 0 = digit 5, 1 = rect(top = 0, left = 40, height = 8, width = 8)" in stdout
    assert "(per object: 2 objects)" in stdout
    assert "(1, 0)" in stdout and "layer (object, distance)" in stdout
    assert (folder / "heatmap.png").stat().st_size > 0 and (folder / "trace.png").stat().st_size > 0


def test_the_proved_box_holds_per_object_eps_and_the_property(finished) -> None:  # type: ignore[no-untyped-def]
    result, _, _ = finished
    checked = check_spec(RUN_SPEC)
    assert checked.spec is not None
    instance = checked.instances[0]
    problem = compile_problem(checked.spec, instance)
    eps = np.array(result["eps"])
    assert result["size"] > 0 and result["verifier"] == "bounds"
    # each pixel's radius is ε of its (object, distance), computed here from the masks themselves
    objects = [read_mask_png(load_index(DATA).by_id("test/0000").other_object(3).mask)]
    objects.append(ir.RectMask(0, 40, 8, 8).array((64, 64)))
    distances = np.stack([chebyshev_to(mask) for mask in objects])
    owner, distance = distances.argmin(axis=0), distances.min(axis=0)
    labels = [tuple(label) for label in result["problem"]["layer_labels"]]
    radius = np.vectorize(lambda o, d: eps[labels.index((o, d))])(owner, distance)
    lower, upper = problem.box(eps)
    image = problem.image
    np.testing.assert_allclose(upper[0], np.minimum(image[0] + radius, 1.0))
    np.testing.assert_allclose(lower[0], np.maximum(image[0] - radius, 0.0))
    # random points of the proved box (corners included) keep the target in the top k, by onnxruntime
    rng = np.random.default_rng(0)
    points = rng.uniform(lower, upper, size=(48, *image.shape))
    corners = np.where(rng.random((16, *image.shape)) < 0.5, lower, upper)
    logits = onnxruntime_logits(instance.model, np.concatenate([points, corners]).astype(np.float32))
    assert not problem.violated(logits).any()


def test_start_from_refuses_a_result_of_the_other_layering(finished) -> None:  # type: ignore[no-untyped-def]
    from mlrobust.errors import UserError
    from mlrobust.run import read_start

    result, _, folder = finished
    labels = result["problem"]["layer_labels"]
    _, eps = read_start(folder / "result.json", len(result["eps"]), labels)
    assert list(eps) == result["eps"]
    with pytest.raises(UserError, match="union"):  # the same length, by distance to the union: other rings
        read_start(folder / "result.json", len(result["eps"]), None)
