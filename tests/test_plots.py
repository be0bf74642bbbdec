"""The heatmap draws the image as a person sees it: a colour image in colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlrobust.report import plots
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


@pytest.mark.parametrize("shape", [(3, 28, 56), (1, 64, 64)])
def test_no_panel_of_the_heatmap_overlaps_another(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    """The ε map's colour bar and the bracket's ε axis used to draw their tick labels over each
    other (every 3-panel heatmap; the RGB example's wide canvas made it plain): each panel's
    drawn extent, labels included, is clear of every other's, for a wide and a square image."""
    figures: list = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure))
    height, width = shape[1:]
    layer_map = np.minimum(np.arange(width)[None, :] // 4, 9).repeat(height, axis=0)
    eps = np.linspace(0.0105, 0.002, 10)
    refuted = [None] * 9 + [0.01]
    heatmap(Path("unused.png"), np.zeros(shape), layer_map, eps, layer_map == 0, "t", refuted)
    (figure,) = figures
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [axis.get_tightbbox(renderer) for axis in figure.axes]
    assert len(boxes) == 4  # image, ε map, its colour bar, the bracket
    for i, first in enumerate(boxes):
        for second in boxes[i + 1 :]:
            assert not first.overlaps(second), (first, second)
    plots.plt.close(figure)
