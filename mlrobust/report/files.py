"""A run's files: result.json, heatmap.png and trace.png, each written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlrobust.problem.problem import Problem
from mlrobust.report.plots import heatmap, trace
from mlrobust.report.result import Result
from mlrobust.storage import atomic_write_json


def _short(record: dict | None, target: int | None) -> str:  # type: ignore[type-arg]
    """The question in a plot title: `target 3`, `target 3 above 0.5`, `keep_predicted`."""
    if record is None or record["kind"] == "top_k":
        return f"target {target}"
    if record["kind"] == "threshold":
        return f"target {target} above {record['threshold']:g}"
    return str(record["text"])


def write(result: Result, problem: Problem, mask: np.ndarray) -> None:
    folder = result.folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "result.json", result.to_json())
    asked = result.setup.asked
    title = f"{Path(asked.model).name}, {_short(asked.output_property, asked.target)}: w·ε* = {result.size:.4g}"
    refuted = [m.refuted for m in result.maximality]
    lo, hi = problem.value_range
    heatmap(
        folder / "heatmap.png",
        problem.image,
        problem.layer_map,
        np.array(result.eps),
        mask,
        title,
        refuted,
        (float(lo), float(hi)),
        problem.frozen,
        asked.layer_labels,
    )
    sizes = [result.query_size(q) for q in result.queries]
    trace(folder / "trace.png", sizes, [q.status.value for q in result.queries], title)
