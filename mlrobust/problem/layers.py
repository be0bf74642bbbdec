"""Layers: pixels grouped by Chebyshev distance to the perturbed objects.

Layer d is every pixel whose Chebyshev (chessboard) distance to the nearest mask pixel is
exactly d; layer 0 is the mask itself. scipy's chessboard distance transform computes this
exactly in one vectorised pass.

A spec with several perturbed objects groups pixels one of two ways (`layers` in the spec):
`union` measures the distance to all objects together (one ring per distance, as above);
`per_object` gives each pixel to its nearest object (a tie goes to the object listed first) and
rings each object's share by the distance to that object, so a layer is an (object, distance)
pair. Either way the result is one flat integer per pixel (`Layering.map`): the Problem, the
verifiers and the search work from that map alone and never learn which layering made it; the
labels are for the people reading the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

UNION = "union"
PER_OBJECT = "per_object"
LAYERINGS = (UNION, PER_OBJECT)


def _checked(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is two-dimensional, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("the mask is empty: it selects no pixel")
    return mask


def layer_map(mask: np.ndarray) -> np.ndarray:
    """int (H, W): each pixel's layer. The mask must be a non-empty boolean (H, W) array."""
    return ndimage.distance_transform_cdt(~_checked(mask), metric="chessboard").astype(np.int64)


def layer_count(mask: np.ndarray) -> int:
    """r + 1: the number of layers (0..r)."""
    return int(layer_map(mask).max()) + 1


class HiddenObject(ValueError):
    """Under `per_object`, an object that owns no pixel: its mask lies wholly inside the objects
    listed before it (ties go to the first), so it would have no layer at all."""

    def __init__(self, index: int) -> None:
        super().__init__(f"object {index} lies wholly inside the objects listed before it: it owns no pixel")
        self.index = index


@dataclass(frozen=True, eq=False)
class Layering:
    """Each pixel's flat layer index and what each flat layer is.

    `counts[o]` is the number of distances (r_o + 1) of object o; flat layers are numbered
    object by object, distance by distance: object 0's distances 0 … r_0, then object 1's, …
    Under `union` there is one "object", the union of the perturbed objects, so the flat index
    is the distance itself, as it always was.
    """

    map: np.ndarray  # int (H, W)
    counts: tuple[int, ...]
    per_object: bool = False

    @property
    def layers(self) -> int:
        return sum(self.counts)

    @property
    def mode(self) -> str:
        return PER_OBJECT if self.per_object else UNION

    @property
    def labels(self) -> tuple[tuple[int, int], ...]:
        """(object, distance) of each flat layer, in index order ((0, d) under `union`)."""
        return tuple((o, d) for o, count in enumerate(self.counts) for d in range(count))

    def label(self, layer: int) -> str:
        """How people read a flat layer: `3` under `union`, `(1, 3)` (object 1, distance 3) per object."""
        if not self.per_object:
            return str(layer)
        o, d = self.labels[layer]
        return f"({o}, {d})"


def union_layering(mask: np.ndarray) -> Layering:
    """Layers by distance to the mask (the union of every perturbed object)."""
    distances = layer_map(mask)
    return Layering(distances, (int(distances.max()) + 1,), per_object=False)


def per_object_layering(objects: Sequence[np.ndarray]) -> Layering:
    """Layers by (object, distance): each pixel belongs to its nearest object (ties to the first
    listed) and its distance is the Chebyshev distance to that object, which is also its distance
    to the union. Raises HiddenObject for an object that owns no pixel.

    Each object's distances run 0 … r_o without a gap, so the flat numbering is dense: a pixel
    of object o at distance d > 0 has a neighbour one step nearer to o, at distance d − 1 from o;
    no other object is nearer to that neighbour (it would then be nearer than d to the pixel
    too), and an object that ties with o there also ties at the pixel, where o won the tie, so o
    comes first and wins it again.
    """
    if not objects:
        raise ValueError("per-object layers need at least one object")
    distances = np.stack([layer_map(mask) for mask in objects])  # (objects, H, W)
    owner = np.argmin(distances, axis=0)  # the first minimum: a tie goes to the object listed first
    distance = np.take_along_axis(distances, owner[None], axis=0)[0]
    counts = []
    for index in range(len(objects)):
        mine = distance[owner == index]
        if mine.size == 0:
            raise HiddenObject(index)
        counts.append(int(mine.max()) + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = offsets[owner] + distance
    assert np.unique(flat).size == sum(counts), "each object's distances are contiguous"
    return Layering(flat, tuple(counts), per_object=True)
