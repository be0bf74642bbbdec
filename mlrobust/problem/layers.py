"""Layers: pixels grouped by Chebyshev distance to the perturbed object's mask.

Layer d is every pixel whose Chebyshev (chessboard) distance to the nearest mask pixel is
exactly d; layer 0 is the mask itself. scipy's chessboard distance transform computes this
exactly in one vectorised pass.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def layer_map(mask: np.ndarray) -> np.ndarray:
    """int (H, W): each pixel's layer. The mask must be a non-empty boolean (H, W) array."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is two-dimensional, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("the mask is empty: it selects no pixel")
    return ndimage.distance_transform_cdt(~mask, metric="chessboard").astype(np.int64)


def layer_count(mask: np.ndarray) -> int:
    """r + 1: the number of layers (0..r)."""
    return int(layer_map(mask).max()) + 1
