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


# one colour per perturbed object (per-object layers), by name so a title can say which is which
OBJECT_COLOURS = ("red", "orange", "magenta", "cyan", "lime", "yellow")


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
    labels: tuple[tuple[int, int], ...] | None = None,
) -> None:
    """The image, ε of each pixel as a colour map with the perturbed object outlined (0 on
    frozen pixels, outlined too), and per layer the bracket of its edge: ε* proved (bars) and
    the smallest ε_d where a confirmed counterexample was found (marks), where one was.

    `labels`, for per-object layers: (object, distance) of each flat layer. Each object is then
    outlined in its own colour, the borders between the objects' territories are drawn over ε*,
    and the bars are coloured by object, so a reader sees which object each ring surrounds."""
    panels = 3 if refuted is not None else 2
    # Constrained layout makes room for the colour bar's and the bracket's tick labels, which
    # otherwise overlap (they did on every 3-panel heatmap, worst on a wide image).
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), layout="constrained")
    left, right = axes[0], axes[1]
    picture, style = displayed(image, value_range)
    left.imshow(picture, **style)
    owners = np.array([o for o, _ in labels]) if labels is not None else None
    if owners is None:
        left.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
        left.set_title("image (perturbed object in red)")
    else:
        for o in range(int(owners.max()) + 1):
            own = layer_map == labels.index((o, 0))  # type: ignore[union-attr]  # ring 0: the object's own pixels
            left.contour(own, levels=[0.5], colors=[OBJECT_COLOURS[o % len(OBJECT_COLOURS)]], linewidths=0.8)
        names = ", ".join(f"{o} {OBJECT_COLOURS[o % len(OBJECT_COLOURS)]}" for o in range(int(owners.max()) + 1))
        left.set_title(f"image (objects: {names})", fontsize=8)
    per_pixel = eps[layer_map]
    if frozen is not None:
        per_pixel = np.where(frozen, 0.0, per_pixel)
    shown = right.imshow(per_pixel, cmap="viridis")
    right.contour(mask, levels=[0.5], colors="white", linewidths=0.8)
    if owners is not None and owners.max() > 0:  # where one object's territory meets another's
        territory = owners[layer_map]
        for o in range(int(owners.max()) + 1):
            right.contour(territory == o, levels=[0.5], colors="white", linewidths=0.5, linestyles="dotted")
    if frozen is not None and frozen.any():
        right.contour(frozen, levels=[0.5], colors="orange", linewidths=0.8, linestyles="dashed")
    right.set_title("ε* per pixel" + (" (frozen, ε = 0: dashed)" if frozen is not None and frozen.any() else ""))
    figure.colorbar(shown, ax=right)
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    if refuted is not None:
        bracket = axes[2]
        layers = np.arange(len(eps))
        if owners is None:
            bracket.bar(layers, eps, color="tab:green", label="ε* (proved)")
            bracket.set_xlabel("layer")
        else:
            for o in range(int(owners.max()) + 1):
                chosen = owners == o
                colour = OBJECT_COLOURS[o % len(OBJECT_COLOURS)]
                bracket.bar(layers[chosen], np.asarray(eps)[chosen], color=colour, label=f"ε* object {o} (proved)")
            starts = [d for d, (_, distance) in enumerate(labels) if distance == 0]  # type: ignore[arg-type]
            bracket.set_xticks(starts, [f"({labels[d][0]}, 0)" for d in starts])  # type: ignore[index]
            bracket.set_xlabel("layer (object, distance), object by object")
        found = [(d, value) for d, value in enumerate(refuted) if value is not None]
        if found:
            xs, ys = zip(*found, strict=True)
            mark = "tab:red" if owners is None else "black"  # red is object 0's colour per object
            bracket.scatter(xs, ys, marker="v", color=mark, s=18, label="counterexample at ε_d")
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
