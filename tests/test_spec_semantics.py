"""What specs mean: extends, defaults, generators, layers, instances, and the API's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mlrobust
from mlrobust.contract.verifiers import CATALOGUE, DEFAULT_CHAIN
from mlrobust.problem.layers import layer_count, layer_map
from mlrobust.spec import ir
from mlrobust.spec.check import check_spec

from .helpers import DATA, REPO, run_cli

MODEL = REPO / "models" / "double_mnist_none.onnx"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def canvas_spec(extra: str = "", canvas: str = "test/0000", target: str = "3") -> str:
    return f'model = "{MODEL}"\ndataset = "{DATA}"\ncanvas = "{canvas}"\ntarget = {target}\nmask = other_digit\n{extra}'


def test_extends_overrides_fields_merges_blocks_and_resolves_paths_per_file(tmp_path: Path) -> None:
    write(
        tmp_path / "shared" / "base.mlr", 'dataset = "../data_link"\nk = 3\nsearch {\n  seed = 5\n  queries = 40\n}\n'
    )
    (tmp_path / "data_link").symlink_to(DATA)
    child = write(
        tmp_path / "specs" / "child.mlr",
        f'extends "../shared/base.mlr"\nmodel = "{MODEL}"\ncanvas = "test/0000"\ntarget = 3\nmask = other_digit\n'
        "k = 2\nsearch {\n  seed = 9\n}\n",
    )
    spec = mlrobust.load_spec(child)
    assert spec.k == 2  # the child wins
    assert (spec.search.seed, spec.search.queries) == (9, 40)  # blocks merge field by field
    assert spec.dataset is not None and spec.dataset.path == (tmp_path / "data_link").resolve()  # base-relative
    assert spec.extends == ((tmp_path / "shared" / "base.mlr").resolve(),)


def test_defaults_fill_every_optional_field(tmp_path: Path) -> None:
    spec = mlrobust.load_spec(write(tmp_path / "s.mlr", canvas_spec()))
    assert spec.k == 2 and spec.value_range == (0.0, 1.0)
    assert spec.weights == ir.UniformWeights(1.0) and spec.cutting == ir.FixedCutting()
    assert spec.search == ir.SearchOptions()
    assert tuple(step.name for step in spec.chain) == DEFAULT_CHAIN
    for step in spec.chain:
        assert dict(step.options) == {o.name: o.default for o in CATALOGUE[step.name].options}


def test_chain_options_override_only_what_is_written(tmp_path: Path) -> None:
    spec = mlrobust.load_spec(write(tmp_path / "s.mlr", canvas_spec("chain = milp(time_limit = 2min) -> attack\n")))
    milp, attack = spec.chain
    assert milp.option("time_limit") == 120.0 and milp.option("solver") == "highs"
    assert attack.name == "attack" and attack.option("steps") == 50


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (ir.UniformWeights(0.5), [0.5, 0.5, 0.5, 0.5]),
        (ir.LinearWeights(1.0, 0.25), [1.0, 0.75, 0.5, 0.25]),
        (ir.ExponentialWeights(0.5), [1.0, 0.5, 0.25, 0.125]),
        (ir.ObjectOnlyWeights(), [1.0, 0.0, 0.0, 0.0]),
        (ir.ExplicitWeights((1.0, 0.9), 0.1), [1.0, 0.9, 0.1, 0.1]),
        (ir.ExplicitWeights((4.0, 3.0, 2.0, 1.0)), [4.0, 3.0, 2.0, 1.0]),
    ],
)
def test_weight_generators_expand_to_one_weight_per_layer(weights, expected) -> None:
    np.testing.assert_allclose(weights.vector(4), expected)


def test_explicit_weights_are_never_padded_silently() -> None:
    with pytest.raises(ValueError):
        ir.ExplicitWeights((1.0, 0.5)).vector(4)
    with pytest.raises(ValueError):
        ir.ExplicitWeights((1.0, 0.5, 0.2), fill=0.0).vector(2)


def test_weights_of_the_right_length_pass_and_padded_fills(tmp_path: Path) -> None:
    layers = check_spec(write(tmp_path / "probe.mlr", canvas_spec())).instances[0].layers
    exact = ", ".join(["1"] * layers)
    assert check_spec(write(tmp_path / "a.mlr", canvas_spec(f"weights = [{exact}]\n"))).ok
    assert check_spec(write(tmp_path / "b.mlr", canvas_spec("weights = padded([1, 0.5], fill = 0)\n"))).ok
    too_long = ", ".join(["1"] * (layers + 1))
    codes = [
        d.code for d in check_spec(write(tmp_path / "c.mlr", canvas_spec(f"weights = [{too_long}]\n"))).diagnostics
    ]
    assert codes == ["weights-length"]


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))).filter(lambda m: m.any()))
def test_layers_are_chebyshev_distances_to_the_mask(mask: np.ndarray) -> None:
    layers = layer_map(mask)
    rows, cols = np.indices(mask.shape)
    points = np.argwhere(mask)
    brute = np.min(np.maximum(np.abs(rows[..., None] - points[:, 0]), np.abs(cols[..., None] - points[:, 1])), axis=-1)
    np.testing.assert_array_equal(layers, brute)
    assert np.array_equal(layers == 0, mask)  # layer 0 is exactly the object
    assert layer_count(mask) == brute.max() + 1
    assert set(np.unique(layers)) == set(range(layer_count(mask)))  # no empty ring between 0 and r


def test_empty_mask_has_no_layers() -> None:
    with pytest.raises(ValueError, match="empty"):
        layer_map(np.zeros((4, 4), dtype=bool))


def test_other_digit_is_the_mask_of_the_non_target_digit(tmp_path: Path) -> None:
    from mlrobust.data.index import load_index, read_mask_png

    entry = load_index(DATA).by_id("test/0000")
    (instance,) = check_spec(write(tmp_path / "s.mlr", canvas_spec())).instances
    other = next(o for o in entry.objects if o.label != 3)
    np.testing.assert_array_equal(instance.mask, read_mask_png(other.mask))
    assert instance.target == 3 and instance.image.shape == (1, 64, 64)


def test_a_sweep_expands_to_models_times_canvases(tmp_path: Path) -> None:
    from mlrobust.data.index import load_index

    text = (
        f'dataset = "{DATA}"\ntarget = second_digit\nmask = other_digit\n'
        f'sweep {{\n  models = ["{MODEL}", "{REPO / "models" / "double_mnist_l0.onnx"}"]\n'
        "  canvases = rows(2, 6)\n}\n"
    )
    result = check_spec(write(tmp_path / "sweep.mlr", text))
    assert result.ok
    assert len(result.instances) == 8
    entries = load_index(DATA).canvases[2:6]
    assert [i.target for i in result.instances[:4]] == [e.labels[1] for e in entries]
    assert {i.model.name for i in result.instances} == {"double_mnist_none.onnx", "double_mnist_l0.onnx"}


def test_a_glob_sweep_and_an_empty_glob(tmp_path: Path) -> None:
    images = DATA / "test" / "images"
    good = (
        f'model = "{MODEL}"\ntarget = 3\nmask = rect(0, 0, 8, 8)\nsweep {{\n  images = glob("{images}/000*.png")\n}}\n'
    )
    result = check_spec(write(tmp_path / "g.mlr", good))
    assert result.ok and len(result.instances) == 10
    empty = good.replace("000*.png", "nothing*.png")
    assert [d.code for d in check_spec(write(tmp_path / "e.mlr", empty)).diagnostics] == ["empty-sweep"]


def test_target_by_class_name_from_the_model_card(tmp_path: Path) -> None:
    (instance,) = check_spec(write(tmp_path / "n.mlr", canvas_spec(target='"3"'))).instances
    assert instance.target == 3
    unknown = check_spec(write(tmp_path / "u.mlr", canvas_spec(target='"three"'))).diagnostics
    assert [d.code for d in unknown] == ["unknown-label"] and "card lists" in (unknown[0].hint or "")


def test_unknown_block_is_reported_with_the_valid_ones(tmp_path: Path) -> None:
    (d,) = check_spec(write(tmp_path / "b.mlr", canvas_spec("serch {\n  seed = 1\n}\n"))).diagnostics
    assert d.code == "unknown-block" and "search" in (d.hint or "")


def test_load_spec_raises_spec_error_with_every_diagnostic(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.mlr", 'model = "nowhere.onnx"\nk = 0\n')
    with pytest.raises(mlrobust.SpecError) as caught:
        mlrobust.load_spec(path)
    codes = sorted(d.code for d in caught.value.diagnostics)
    assert codes == ["bad-value", "file-not-found", "missing-field", "missing-field", "missing-field"]
    assert caught.value.exit_code == 1


def test_load_spec_is_fine_from_any_working_directory(tmp_path: Path) -> None:
    result = run_cli("lint", str(REPO / "specs" / "double_mnist_none.mlr"), cwd=tmp_path)
    assert result.code == 0, result.stdout


def test_unusable_paths_are_diagnostics_not_crashes(tmp_path: Path) -> None:
    bad_extends = write(tmp_path / "e.mlr", 'extends "a\x00b"\n' + canvas_spec())
    assert [d.code for d in check_spec(bad_extends).diagnostics] == ["file-not-found"]
    bad_model = write(tmp_path / "m.mlr", canvas_spec().replace(f'model = "{MODEL}"', 'model = "bad\x00name.onnx"'))
    assert [d.code for d in check_spec(bad_model).diagnostics] == ["bad-value"]
    glob_spec = write(
        tmp_path / "g.mlr",
        f'model = "{MODEL}"\ntarget = 3\nmask = rect(0, 0, 2, 2)\nsweep {{\n  images = glob("x\x00*.png")\n}}\n',
    )
    # glob() either rejects the pattern or (Python 3.11) matches nothing: a diagnostic either way
    (diagnostic,) = check_spec(glob_spec).diagnostics
    assert diagnostic.code in ("bad-value", "empty-sweep")
