"""The heatmap draws the image as a person sees it: a colour image in colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlrobust.report.plots import heatmap

SIZE = 24


def _draw(path: Path, image: np.ndarray) -> np.ndarray:
    layer_map = np.zeros((SIZE, SIZE), dtype=np.int64)
    layer_map[:, SIZE // 2 :] = 1
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[:4, :4] = True
    heatmap(path, image, layer_map, np.array([0.1, 0.05]), mask, "t", None)
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return picture[:, : picture.shape[1] * 2 // 5]  # the image's panel (the ε map is on the right)


def _pure_blue(panel: np.ndarray) -> int:
    red, green, blue = panel[..., 0], panel[..., 1], panel[..., 2]
    return int(np.sum((blue > 200) & (red < 60) & (green < 60)))


def test_an_rgb_heatmap_shows_the_colours(tmp_path: Path) -> None:
    """A blue half is drawn blue (its grey mean would be a dark grey), and a grey image has no
    blue: the panel's colours come from the image."""
    rgb = np.zeros((3, SIZE, SIZE))
    rgb[2, :, : SIZE // 2] = 1.0  # left half pure blue
    rgb[:, :, SIZE // 2 :] = 0.8  # right half light grey
    assert _pure_blue(_draw(tmp_path / "rgb.png", rgb)) > 100
    grey = np.full((1, SIZE, SIZE), 0.33)
    assert _pure_blue(_draw(tmp_path / "grey.png", grey)) == 0
