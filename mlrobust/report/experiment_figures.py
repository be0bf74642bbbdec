"""The figures of `mlrobust report`: PNG files beside the Markdown, the same bytes on a rerun.

matplotlib's Agg output is deterministic given the same inputs once the PNG's Software tag is
dropped (`plots._save`), and every scatter jitter here is seeded, so a rerun is byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlrobust.problem.layers import layer_map
from mlrobust.report.experiment_data import Outcome, SweepData
from mlrobust.report.experiment_stats import DIGITS, Cell, LayerEps, LayerGap
from mlrobust.report.plots import _save, displayed


def sizes_box(path: Path, data: SweepData, method: str) -> None:
    """Per model and cutting: the box of w·ε* and, beside it, the uniform baseline's box."""
    models, cuttings = data.models(), data.cuttings()
    figure, axes = plt.subplots(
        1, len(cuttings), figsize=(max(5.0, 2.2 * len(models) + 1.5) * len(cuttings), 4.2), squeeze=False
    )
    rng = np.random.default_rng(0)
    for axis, cutting in zip(axes[0], cuttings, strict=True):
        ticks, labels = [], []
        for i, model in enumerate(models):
            done = data.done(model, method, cutting)
            proved = [o.size for o in done if o.size is not None]
            uniform = [o.uniform_size for o in done if o.uniform_size is not None]
            for offset, values, colour in ((-0.18, proved, "tab:blue"), (0.18, uniform, "tab:gray")):
                if not values:
                    continue
                position = i + 1 + offset
                axis.boxplot(
                    [values], positions=[position], widths=0.3, showfliers=False, medianprops={"color": colour}
                )
                axis.scatter(position + rng.uniform(-0.06, 0.06, len(values)), values, s=8, alpha=0.5, color=colour)
            ticks.append(i + 1)
            labels.append(model)
        axis.set_xticks(ticks, labels, fontsize=8)
        axis.set_ylabel("w·ε*")
        axis.set_title(f"{method}, {cutting} cutting: proved (blue) vs uniform baseline (grey)", fontsize=9)
    _save(figure, path)


def layer_lines(path: Path, per_group: dict[tuple[str, str], list[LayerEps]]) -> None:
    """Mean (solid) and median (dashed) ε per layer, one colour per model, one panel per cutting."""
    cuttings = list(dict.fromkeys(cutting for _, cutting in per_group))
    models = list(dict.fromkeys(model for model, _ in per_group))
    figure, axes = plt.subplots(1, len(cuttings), figsize=(6.0 * len(cuttings), 4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, cutting in zip(axes[0], cuttings, strict=True):
        for i, model in enumerate(models):
            rows = per_group.get((model, cutting), [])
            if not rows:
                continue
            objects = list(dict.fromkeys(r.object for r in rows))
            for obj in objects:  # one line per object under per_object layers (union: one, object None)
                mine = [r for r in rows if r.object == obj]
                name = model if obj is None else f"{model} object {obj}"
                layers = [r.layer for r in mine]
                alpha = 1.0 - 0.5 * objects.index(obj) / max(len(objects), 1)
                axis.plot(layers, [r.mean for r in mine], color=colours(i), alpha=alpha, label=f"{name} mean")
                axis.plot(
                    layers, [r.median for r in mine], color=colours(i), alpha=alpha, linestyle="--",
                    label=f"{name} median",
                )  # fmt: skip
        axis.set_xlabel("layer (distance to the perturbed digit)")
        axis.set_ylabel("ε*")
        axis.set_title(f"ε* per layer, {cutting} cutting", fontsize=9)
        axis.legend(fontsize=7)
    _save(figure, path)


def heatmap_grid(path: Path, rows: list[str], columns: list[tuple[str, str]], found: dict) -> None:  # type: ignore[type-arg]
    """ε* per pixel for the same canvases (rows) under every model and cutting (columns), the
    perturbed digit outlined: the thesis's Figures 3–4 side by side. One colour scale for all."""
    top = max((max(o.eps) for o in found.values() if o.eps), default=0.0) or 1.0
    figure, axes = plt.subplots(
        len(rows), len(columns) + 1, figsize=(2.3 * (len(columns) + 1), 2.4 * len(rows)), squeeze=False
    )
    shown = None
    for r, where in enumerate(rows):
        first = next(o for key, o in found.items() if key[0] == where)
        pictured = _picture(first)
        if pictured is None:  # the canvas moved or changed since the sweep: nothing is drawn on it
            axes[r][0].set_title(f"{where}: image not found", fontsize=7)
            for c, (model, cutting) in enumerate(columns, start=1):
                axes[r][c].set_title(f"{model}\n{cutting}: image not found", fontsize=7)
            continue
        image, mask = pictured
        picture, style = displayed(image, first.value_range)
        axes[r][0].imshow(picture, **style)
        axes[r][0].contour(mask, levels=[0.5], colors="red", linewidths=0.7)
        axes[r][0].set_title(f"{where}: target {first.target}", fontsize=7)
        for c, (model, cutting) in enumerate(columns, start=1):
            axis = axes[r][c]
            outcome = found.get((where, model, cutting))
            if outcome is not None:
                per_pixel = np.asarray(outcome.eps)[layer_map(mask)]
                shown = axis.imshow(per_pixel, cmap="viridis", vmin=0.0, vmax=top)
                axis.contour(mask, levels=[0.5], colors="white", linewidths=0.6)
                axis.set_title(f"{model}\n{cutting}: w·ε* {outcome.size:.3g}", fontsize=7)
            else:
                axis.set_title(f"{model}\n{cutting}: not done", fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if shown is not None:
        figure.colorbar(shown, ax=axes, fraction=0.02, pad=0.01, label="ε*")
    _save(figure, path)


def _picture(outcome: Outcome) -> tuple[np.ndarray, np.ndarray] | None:
    """The canvas and its mask (None when the report could not find the files the run read)."""
    from mlrobust.spec.instances import read_image, read_mask

    image, mask = outcome.picture_files
    if image is None or mask is None:
        return None
    return read_image(Path(image)), read_mask(Path(mask))


def explanation_maps(path: Path, per_model: dict[str, list[Cell]]) -> None:
    """Per model a 10×10 map: row the perturbed digit, column the target digit, colour the
    median w·ε* (dark = fragile), the count of canvases written in each cell."""
    models = list(per_model)
    top = max((c.size for cells in per_model.values() for c in cells), default=0.0) or 1.0
    figure, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.4), squeeze=False)
    shown = None
    for axis, model in zip(axes[0], models, strict=True):
        grid = np.full((DIGITS, DIGITS), np.nan)
        for cell in per_model[model]:
            grid[cell.perturbed, cell.target] = cell.size
            axis.text(cell.target, cell.perturbed, str(cell.n), ha="center", va="center", fontsize=6, color="white")
        shown = axis.imshow(grid, cmap="magma", vmin=0.0, vmax=top)
        axis.set_xticks(range(DIGITS))
        axis.set_yticks(range(DIGITS))
        axis.set_xlabel("target digit")
        axis.set_ylabel("perturbed digit")
        axis.set_title(f"{model}: median w·ε* (count in cell)", fontsize=9)
    if shown is not None:
        figure.colorbar(shown, ax=axes, fraction=0.02, pad=0.01)
    _save(figure, path)


def gap_plot(path: Path, per_model: dict[str, list[LayerGap]]) -> None:
    """Per model: the median proved ε*_d (bars) and the median smallest refuted ε_d (marks)."""
    models = list(per_model)
    figure, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        rows = per_model[model]
        per_object = any(r.object is not None for r in rows)
        # union: at its distance; per_object: one slot per (object, distance), labelled object:distance
        xs_all = [float(i) for i in range(len(rows))] if per_object else [r.layer for r in rows]
        axis.bar(xs_all, [r.proved for r in rows], color="tab:green", label="median ε* (proved)")
        if per_object:
            axis.set_xticks(xs_all, [f"{r.object}:{r.layer}" for r in rows], rotation=90, fontsize=6)
        marked = [(x, r.refuted) for x, r in zip(xs_all, rows, strict=True) if r.refuted is not None]
        if marked:
            xs, ys = zip(*marked, strict=True)
            axis.scatter(xs, ys, marker="v", color="tab:red", s=18, label="median ε_d of a counterexample")
        axis.set_xlabel("object:distance" if per_object else "layer")
        axis.set_ylabel("ε")
        axis.set_title(f"{model}: proved vs refuted", fontsize=9)
        axis.legend(fontsize=7)
    _save(figure, path)
