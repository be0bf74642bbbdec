"""The numbers of `mlrobust report`, computed from the sweep's outcomes alone.

Every comparison between models or cutting strategies is *paired by canvas*: the same image
asked of both sides, so a difference is the model's (or the strategy's), not the canvas mix's.
Only instances done on both sides count in a pair; the report says how many pairs there are.
Medians and quartiles are numpy's (linear interpolation); the paired test is the two-sided
Wilcoxon signed-rank test (scipy, zero differences dropped as Wilcoxon's original test does).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from mlrobust.report.experiment_data import NEAR_LAYERS, Outcome, SweepData

SAME = 1e-12  # two sizes this close are the same answer (they are computed by the same code)
DIGITS = 10


@dataclass(frozen=True)
class Spread:
    n: int
    median: float | None
    q1: float | None
    q3: float | None


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread(0, None, None, None)
    q1, median, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return Spread(len(values), float(median), float(q1), float(q3))


def median(values: list[float]) -> float | None:
    return float(np.median(np.asarray(values, dtype=np.float64))) if values else None


@dataclass(frozen=True)
class GroupSizes:
    model: str
    method: str
    cutting: str
    size: Spread  # w·ε* over the done instances
    uniform: Spread  # the uniform baseline's w·ε on the same instances
    ratio: float | None  # median of w·ε* / uniform over instances whose uniform > 0
    cuts: int  # CEGIS cuts summed over the instances


def group_sizes(data: SweepData) -> list[GroupSizes]:
    groups = []
    for method in data.methods():
        for cutting in data.cuttings():
            for model in data.models():
                done = data.done(model, method, cutting)
                if not done and not any(o.group == (model, method, cutting) for o in data.outcomes):
                    continue
                uniform = [o.uniform_size for o in done if o.uniform_size is not None]
                ratios = [o.size / o.uniform_size for o in done if o.uniform_size and o.size is not None]
                groups.append(
                    GroupSizes(
                        model, method, cutting,
                        spread([o.size for o in done if o.size is not None]),
                        spread(uniform),
                        median(ratios),
                        sum(o.cuts for o in done),
                    )
                )
    return groups


@dataclass(frozen=True)
class Paired:
    """Side a against side b over the canvases both finished."""

    a: str
    b: str
    n: int
    median_difference: float | None  # median of size_a − size_b
    a_larger: int
    b_larger: int
    equal: int
    p_value: float | None  # Wilcoxon signed-rank, two-sided; None when every pair is equal


def _pairs(left: list[Outcome], right: list[Outcome]) -> list[tuple[float, float]]:
    sizes = {o.where: o.size for o in right if o.size is not None}
    return [(o.size, sizes[o.where]) for o in left if o.size is not None and o.where in sizes]


def paired(a: str, b: str, left: list[Outcome], right: list[Outcome]) -> Paired:
    pairs = _pairs(left, right)
    differences = np.asarray([x - y for x, y in pairs], dtype=np.float64)
    nonzero = differences[np.abs(differences) > SAME]
    p_value = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else None
    return Paired(
        a, b, len(pairs),
        median(list(differences)),
        int((differences > SAME).sum()),
        int((differences < -SAME).sum()),
        int((np.abs(differences) <= SAME).sum()),
        p_value,
    )


def model_comparisons(data: SweepData, method: str, cutting: str) -> list[Paired]:
    """Every pair of the models that ran under this method and cutting (several sweeps reported
    together may ask different models of different methods: those never meet)."""
    models = [m for m in data.models() if any(o.group == (m, method, cutting) for o in data.outcomes)]
    return [
        paired(a, b, data.done(a, method, cutting), data.done(b, method, cutting)) for a, b in combinations(models, 2)
    ]


@dataclass(frozen=True)
class CuttingComparison:
    model: str
    method: str
    a: str
    b: str
    n: int
    identical: int
    ratio: Spread  # size_b / size_a over pairs with size_a > 0
    ratio_min: float | None
    ratio_max: float | None
    cuts_a: int
    cuts_b: int


def cutting_comparisons(data: SweepData) -> list[CuttingComparison]:
    cuttings = data.cuttings()
    found = []
    for method in data.methods():
        for model in data.models():
            for a, b in combinations(cuttings, 2):
                left, right = data.done(model, method, a), data.done(model, method, b)
                if not left or not right:
                    continue
                pairs = _pairs(left, right)
                ratios = [y / x for x, y in pairs if x > 0]
                found.append(
                    CuttingComparison(
                        model, method, a, b, len(pairs),
                        sum(1 for x, y in pairs if abs(x - y) <= SAME),
                        spread(ratios),
                        min(ratios) if ratios else None,
                        max(ratios) if ratios else None,
                        sum(o.cuts for o in left),
                        sum(o.cuts for o in right),
                    )
                )
    return found


@dataclass(frozen=True)
class LayerEps:
    layer: int
    n: int  # instances with this layer (the layer count depends on where the object lies)
    mean: float
    median: float


def layer_eps(done: list[Outcome]) -> list[LayerEps]:
    depth = max((len(o.eps) for o in done), default=0)
    rows = []
    for layer in range(depth):
        values = [o.eps[layer] for o in done if len(o.eps) > layer]
        rows.append(LayerEps(layer, len(values), float(np.mean(values)), float(np.median(values))))
    return rows


@dataclass(frozen=True)
class Cell:
    """One (perturbed digit, target digit) pair of the explanations."""

    perturbed: int
    target: int
    n: int
    size: float
    object_eps: float  # median ε of layer 0, the perturbed digit itself
    near_eps: float  # median over instances of the mean ε of the near layers


def near_eps(outcome: Outcome) -> float:
    values = [outcome.eps[d] for d in NEAR_LAYERS if d < len(outcome.eps)]
    return float(np.mean(values)) if values else 0.0


def explanation_cells(done: list[Outcome]) -> list[Cell]:
    cells: dict[tuple[int, int], list[Outcome]] = {}
    for o in done:
        if o.perturbed_label is not None and o.target is not None:
            cells.setdefault((o.perturbed_label, o.target), []).append(o)
    return [
        Cell(
            p, t, len(group),
            float(np.median([o.size for o in group])),
            float(np.median([o.eps[0] for o in group])),
            float(np.median([near_eps(o) for o in group])),
        )
        for (p, t), group in sorted(cells.items())
    ]


@dataclass(frozen=True)
class LayerGap:
    """How far the proved ε*_d is from the smallest confirmed counterexample's ε_d."""

    layer: int
    n: int  # instances with this layer
    proved: float  # median ε*_d
    bracketed: int  # instances with a confirmed counterexample for this layer
    refuted: float | None  # median refuted ε_d over those
    ratio: float | None  # median refuted / ε*_d over those with ε*_d > 0


def gaps(done: list[Outcome], layers: int) -> list[LayerGap]:
    rows = []
    for layer in range(layers):
        having = [o for o in done if len(o.eps) > layer]
        if not having:
            break
        bracketed = [o for o in having if len(o.refuted) > layer and o.refuted[layer] is not None]
        ratios = [o.refuted[layer] / o.eps[layer] for o in bracketed if o.eps[layer] > 0]  # type: ignore[operator]
        rows.append(
            LayerGap(
                layer, len(having),
                float(np.median([o.eps[layer] for o in having])),
                len(bracketed),
                median([o.refuted[layer] for o in bracketed]),  # type: ignore[misc]
                median(ratios),
            )
        )
    return rows


@dataclass(frozen=True)
class VerifierCost:
    verifier: str
    runs: int
    seconds: float
    runs_per_instance: float | None  # median
    seconds_per_instance: float | None  # median


def verifier_costs(done: list[Outcome]) -> list[VerifierCost]:
    names = sorted({name for o in done for name in o.verifiers})
    costs = []
    for name in names:
        uses = [o.verifiers.get(name) for o in done]
        runs = [u.runs if u else 0 for u in uses]
        seconds = [u.seconds if u else 0.0 for u in uses]
        costs.append(VerifierCost(name, sum(runs), float(sum(seconds)), median(runs), median(seconds)))
    return costs
