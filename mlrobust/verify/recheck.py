"""The gate every NOT_ROBUST passes: the point is in N(ε) exactly, and onnxruntime on the
user's own file puts its output in the unsafe region of the problem's own property (top-k: the
target out of the top k; threshold: the target's logit at or below logit(t); keep_predicted:
a label of the clean prediction no longer predicted). Anything else is not a counterexample,
and the reason says why (`OutputProperty.describe_safe`: what onnxruntime's output keeps).

The property is on logits: for a model that ends in a Sigmoid or Softmax, onnxruntime's
logits are the tensor entering that head, computed by the same session run
(`onnxruntime_logits`). Both heads keep the order of the classes, so a point that puts the
target out of the top k of the logits does so for the probabilities as well; the converse can
fail only where float32 probabilities saturate into ties, and such a point is not accepted.
A Sigmoid is strictly increasing, so a logit at or below logit(t) is a score at or below t
(up to the head's float rounding); a threshold is never asked of a Softmax head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mlrobust.nn.network import onnxruntime_logits
from mlrobust.problem.problem import Problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recheck:
    confirmed: bool
    reason: str
    margin: float | None  # m computed by onnxruntime (None when the point was rejected before running)


def recheck(problem: Problem, eps: np.ndarray, point: np.ndarray) -> Recheck:
    lower, upper = problem.box(eps)
    point = np.asarray(point, dtype=np.float64).reshape(problem.image.shape)
    if not np.all(np.isfinite(point)):
        return Recheck(False, "the point has non-finite pixels", None)
    # float32 is what onnxruntime reads: the point it runs must itself lie in the box
    as_run = point.astype(np.float32).astype(np.float64)
    if np.any(as_run < lower) or np.any(as_run > upper):
        worst = float(max(np.max(lower - as_run), np.max(as_run - upper)))
        return Recheck(False, f"the point leaves the box by {worst:.3g}", None)
    logits = onnxruntime_logits(problem.network.path, as_run[None])
    margin = float(problem.margin(logits)[0])
    if not problem.violated(logits)[0]:
        return Recheck(False, problem.output.describe_safe(margin), margin)
    return Recheck(True, "confirmed by onnxruntime", margin)


def snap_into_box(problem: Problem, eps: np.ndarray, point: np.ndarray) -> np.ndarray:
    """A float32-representable point inside the box, as close to `point` as the box allows.

    Rounding to float32 (what onnxruntime reads) can step just outside a box edge; such a
    pixel moves one float32 step inward, or, where none fits, to the image's own value (the
    image is float32-representable and always inside the box).
    """
    lower, upper = problem.box(eps)
    snapped = np.clip(point, lower, upper).astype(np.float32)
    as64 = snapped.astype(np.float64)
    up = np.nextafter(snapped, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(snapped, np.float32(-np.inf)).astype(np.float64)
    as64 = np.where((as64 < lower) & (up <= upper), up, as64)
    as64 = np.where((as64 > upper) & (down >= lower), down, as64)
    return np.where((as64 < lower) | (as64 > upper), problem.image, as64)
