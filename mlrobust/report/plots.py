"""The two pictures of a run: ε per pixel over the image, and size against queries."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlrobust.storage import atomic_write_bytes


def _save(figure, path: Path) -> None:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def displayed(image: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, dict]:
    """The image as imshow draws it, with its keyword arguments: three channels in colour
    (H, W, 3, scaled from the range to [0, 1]: a colour picture drawn as its grey mean hides
    what a person sees), one channel in grey over the range."""
    lo, hi = value_range
    if image.ndim == 3 and image.shape[0] == 3:
        scaled = (np.moveaxis(image, 0, -1) - lo) / (hi - lo)
        return np.clip(scaled, 0.0, 1.0), {}
    grey = image.mean(axis=0) if image.ndim == 3 else image
    return grey, {"cmap": "gray", "vmin": lo, "vmax": hi}


def heatmap(
    path: Path,
    image: np.ndarray,
    layer_map: np.ndarray,
    eps: np.ndarray,
    mask: np.ndarray,
    title: str,
    refuted: list[float | None] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    frozen: np.ndarray | None = None,
) -> None:
    """The image, ε of each pixel as a colour map with the perturbed object outlined (0 on
    frozen pixels, outlined too), and per layer the bracket of its edge: ε* proved (bars) and
    the smallest ε_d where a confirmed counterexample was found (marks), where one was."""
    panels = 3 if refuted is not None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    left, right = axes[0], axes[1]
    picture, style = displayed(image, value_range)
    left.imshow(picture, **style)
    left.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    left.set_title("image (perturbed object in red)")
    per_pixel = eps[layer_map]
    if frozen is not None:
        per_pixel = np.where(frozen, 0.0, per_pixel)
    shown = right.imshow(per_pixel, cmap="viridis")
    right.contour(mask, levels=[0.5], colors="white", linewidths=0.8)
    if frozen is not None and frozen.any():
        right.contour(frozen, levels=[0.5], colors="orange", linewidths=0.8, linestyles="dashed")
    right.set_title("ε* per pixel" + (" (frozen, ε = 0: dashed)" if frozen is not None and frozen.any() else ""))
    figure.colorbar(shown, ax=right, fraction=0.046, pad=0.04)
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    if refuted is not None:
        bracket = axes[2]
        layers = np.arange(len(eps))
        bracket.bar(layers, eps, color="tab:green", label="ε* (proved)")
        found = [(d, value) for d, value in enumerate(refuted) if value is not None]
        if found:
            xs, ys = zip(*found, strict=True)
            bracket.scatter(xs, ys, marker="v", color="tab:red", s=18, label="counterexample at ε_d")
        bracket.set_xlabel("layer")
        bracket.set_ylabel("ε")
        bracket.set_title("each layer's edge: proved / refuted")
        bracket.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    _save(figure, path)


def trace(path: Path, sizes: list[float], statuses: list[str], title: str) -> None:
    """w·ε of every query in order; robust answers in green, the rest in red / grey."""
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    colours = {"ROBUST": "tab:green", "NOT_ROBUST": "tab:red", "UNKNOWN": "tab:gray"}
    xs = np.arange(1, len(sizes) + 1)
    for status, colour in colours.items():
        chosen = [i for i, s in enumerate(statuses) if s == status]
        axis.scatter(xs[chosen], np.array(sizes)[chosen], s=12, color=colour, label=status)
    best = np.maximum.accumulate([s if st == "ROBUST" else 0.0 for s, st in zip(sizes, statuses, strict=True)])
    axis.step(xs, best, where="post", color="black", linewidth=1, label="best proved")
    axis.set_xlabel("query")
    axis.set_ylabel("size w·ε")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    _save(figure, path)


def sweep_sizes(path: Path, sizes: dict[str, list[float]], title: str) -> None:
    """w·ε* of every instance a sweep finished, one box (and its points) per model."""
    names = list(sizes)
    figure, axis = plt.subplots(figsize=(max(4.0, 1.8 * len(names) + 1.5), 4))
    axis.boxplot([sizes[n] for n in names], showfliers=False)
    axis.set_xticks(range(1, len(names) + 1), names)
    jitter = np.random.default_rng(0)
    for position, name in enumerate(names, start=1):
        values = np.asarray(sizes[name])
        axis.scatter(position + jitter.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.6, color="tab:blue")
    axis.set_ylabel("w·ε* (proved)")
    axis.set_title(title, fontsize=10)
    _save(figure, path)
