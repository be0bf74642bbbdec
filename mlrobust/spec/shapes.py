"""Weights and cutting weights against an instance's layers: the `weights-length` checks.

Under `layers = union` a vector is one entry per layer (distance). Under `per_object` it is one
entry per (object, distance): a spec writes one list per object, or one form (a generator,
`padded`) that every object takes over its own distances. A flat list of numbers under
`per_object` is refused, never guessed at: it could mean one weight per distance shared by
every object, or one weight per object, or the flat vector itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrobust.contract.span import Span
from mlrobust.problem.layers import Layering
from mlrobust.spec import ir

PER_OBJECT_FORMS = (
    "write one list per object, [[w0, w1, …], [w0, …]] (one weight per distance of that object), "
    "or padded([…], fill = 0) or a generator for the same weights on every object"
)


@dataclass(frozen=True)
class Mismatch:
    """One shape mistake: what is wrong, where, and a key that reports it once per shape."""

    message: str
    span: Span
    hint: str | None
    key: str


def _distances(count: int) -> str:
    """`5 distances (0 … 4)`."""
    return f"{count} distance{'s' if count != 1 else ''} (0 … {count - 1})"


def _objects(layering: Layering) -> str:
    count = len(layering.counts)
    return f"{count} object{'s' if count != 1 else ''}"


def check_weights(weights: ir.Weights, layering: Layering, where: str) -> list[Mismatch]:
    """The spec's weights against this instance's layering."""
    if not layering.per_object:
        if isinstance(weights, ir.PerObjectWeights):
            return [
                Mismatch(
                    "a list of lists gives each object its own weights, which needs layers = per_object",
                    weights.span,
                    "add layers = per_object, or give one list of numbers, one per layer of the union",
                    "per-object-weights",
                )
            ]
        return _one_object(weights, layering.layers, where, "weights", "layers", "")
    if isinstance(weights, ir.ExplicitWeights) and weights.fill is None:
        return [
            Mismatch(
                f"with layers = per_object, weights is one list per object, not a list of numbers "
                f"(the mask gives {_objects(layering)} for {where})",
                weights.span,
                PER_OBJECT_FORMS,
                "flat-weights",
            )
        ]
    if isinstance(weights, ir.PerObjectWeights):
        if len(weights.parts) != len(layering.counts):
            return [
                Mismatch(
                    f"weights lists {len(weights.parts)} object(s) but the mask gives {_objects(layering)} for {where}",
                    weights.span,
                    "list one weights form per object, in the order the mask lists them "
                    "(other_digit is one object per digit that is not the target)",
                    f"objects {len(weights.parts)}/{len(layering.counts)}",
                )
            ]
        found = []
        for index, (part, count) in enumerate(zip(weights.parts, layering.counts, strict=True)):
            found += _one_object(part, count, where, f"object {index}'s weights", "distances", f"o{index}")
        return found
    found = []
    for index, count in enumerate(layering.counts):  # padded(…) taken by every object
        found += _one_object(weights, count, where, f"weights (for object {index})", "distances", f"o{index}")
    return found


def _one_object(weights: ir.Weights, count: int, where: str, what: str, unit: str, key: str) -> list[Mismatch]:
    """An explicit list (or `padded`) against `count` layers (`unit`) of the union, or distances of one object."""
    if not isinstance(weights, ir.ExplicitWeights):
        return []
    n = len(weights.values)
    if (weights.fill is None and n == count) or (weights.fill is not None and n <= count):
        return []
    one = "layer" if unit == "layers" else "distance"
    message = f"{what} has {n} entries but the mask gives {count} {unit} (0 … {count - 1}) for {where}"
    hint = f"list one weight per {one}, or write padded([…], fill = 0) to fill the rest"
    return [Mismatch(message, weights.span, hint, f"{key}{n}/{count}")]


def check_cutting(cutting: ir.Cutting, layering: Layering, where: str, what: str) -> list[Mismatch]:
    """One cutting (the spec's, or one of a sweep's `cuttings`) against this instance's layering."""
    if not isinstance(cutting, ir.ExplicitCutting):
        return []  # fixed and sensitivity fit any layering
    if not layering.per_object:
        if cutting.per_object is not None:
            return [
                Mismatch(
                    f"{what} is one list per object, which needs layers = per_object",
                    cutting.span,
                    "add layers = per_object, or give one list of cutting weights, one per layer of the union",
                    "c-per-object",
                )
            ]
        if len(cutting.values) == layering.layers:
            return []
        return [
            Mismatch(
                f"{what} has {len(cutting.values)} entries but the mask gives {layering.layers} layers for {where}",
                cutting.span,
                None,
                f"c{len(cutting.values)}/{layering.layers}",
            )
        ]
    if cutting.per_object is None:
        return [
            Mismatch(
                f"with layers = per_object, {what} is one list per object, not a list of numbers "
                f"(the mask gives {_objects(layering)} for {where})",
                cutting.span,
                "write [[cw0, cw1, …], [cw0, …]] (one cutting weight per distance of each object), "
                "or fixed / sensitivity",
                "c-flat",
            )
        ]
    if len(cutting.per_object) != len(layering.counts):
        return [
            Mismatch(
                f"{what} lists {len(cutting.per_object)} object(s) but the mask gives {_objects(layering)} for {where}",
                cutting.span,
                "list one list of cutting weights per object, in the order the mask lists them",
                f"c-objects {len(cutting.per_object)}/{len(layering.counts)}",
            )
        ]
    return [
        Mismatch(
            f"{what} has {n} entries for object {index}, but it has {_distances(count)} for {where}",
            cutting.span,
            "list one cutting weight per distance of that object",
            f"c-o{index}{n}/{count}",
        )
        for index, (n, count) in enumerate(zip(cutting.per_object, layering.counts, strict=True))
        if n != count
    ]
