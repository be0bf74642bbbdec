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

from mlrobust.report.experiment_data import NEAR_LAYERS, LayerKey, Outcome, SweepData

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
                        model,
                        method,
                        cutting,
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
        a,
        b,
        len(pairs),
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
                        model,
                        method,
                        a,
                        b,
                        len(pairs),
                        sum(1 for x, y in pairs if abs(x - y) <= SAME),
                        spread(ratios),
                        min(ratios) if ratios else None,
                        max(ratios) if ratios else None,
                        sum(o.cuts for o in left),
                        sum(o.cuts for o in right),
                    )
                )
    return found


def key_order(key: LayerKey) -> tuple[int, int]:
    """Objects in the order the spec lists them, then by distance (union: by distance)."""
    return (-1 if key[0] is None else key[0], key[1])


def layer_keys(done: list[Outcome]) -> list[LayerKey]:
    """Every (object, distance) some instance has, in `key_order`."""
    return sorted({key for o in done for key in o.layers}, key=key_order)


def layer_label(key: LayerKey) -> str:
    """How a table names a layer: its distance under union (as always), `object:distance` else."""
    obj, distance = key
    return str(distance) if obj is None else f"{obj}:{distance}"


def _at(outcome: Outcome, values: tuple, key: LayerKey):  # type: ignore[no-untyped-def]
    """The instance's entry of `values` (eps, refuted) for this layer; None when it has no such layer."""
    index = outcome.layer_index.get(key)
    return values[index] if index is not None and index < len(values) else None


@dataclass(frozen=True)
class LayerEps:
    layer: int  # the distance (under union: the layer index)
    n: int  # instances with this layer (the layer count depends on where the object lies)
    mean: float
    median: float
    object: int | None = None  # the object, under per_object layers

    @property
    def key(self) -> LayerKey:
        return (self.object, self.layer)


def layer_eps(done: list[Outcome]) -> list[LayerEps]:
    rows = []
    for key in layer_keys(done):
        values = [v for o in done if (v := _at(o, o.eps, key)) is not None]
        rows.append(LayerEps(key[1], len(values), float(np.mean(values)), float(np.median(values)), key[0]))
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


def _mean_at_distances(outcome: Outcome, distances: tuple[int, ...]) -> float | None:
    """Mean ε over the instance's layers at these distances (of every object, under per_object)."""
    values = [e for e, (_, d) in zip(outcome.eps, outcome.layers, strict=True) if d in distances]
    return float(np.mean(values)) if values else None


def near_eps(outcome: Outcome) -> float:
    value = _mean_at_distances(outcome, NEAR_LAYERS)
    return 0.0 if value is None else value


def object_eps(outcome: Outcome) -> float:
    """ε of the perturbed object itself (distance 0; under per_object, the mean over objects)."""
    value = _mean_at_distances(outcome, (0,))
    return 0.0 if value is None else value


def explanation_cells(done: list[Outcome]) -> list[Cell]:
    cells: dict[tuple[int, int], list[Outcome]] = {}
    for o in done:
        if o.perturbed_label is not None and o.target is not None:
            cells.setdefault((o.perturbed_label, o.target), []).append(o)
    return [
        Cell(
            p,
            t,
            len(group),
            float(np.median([o.size for o in group])),
            float(np.median([object_eps(o) for o in group])),
            float(np.median([near_eps(o) for o in group])),
        )
        for (p, t), group in sorted(cells.items())
    ]


@dataclass(frozen=True)
class LayerGap:
    """How far the proved ε*_d is from the smallest confirmed counterexample's ε_d."""

    layer: int  # the distance (under union: the layer index)
    n: int  # instances with this layer
    proved: float  # median ε*_d
    bracketed: int  # instances with a confirmed counterexample for this layer
    refuted: float | None  # median refuted ε_d over those
    ratio: float | None  # median refuted / ε*_d over those with ε*_d > 0
    object: int | None = None  # the object, under per_object layers

    @property
    def key(self) -> LayerKey:
        return (self.object, self.layer)


def gaps(done: list[Outcome], distances: int) -> list[LayerGap]:
    """The gap of every layer closer than `distances` to its object."""
    rows = []
    for key in layer_keys(done):
        if key[1] >= distances:
            continue
        having = [o for o in done if _at(o, o.eps, key) is not None]
        proved = {id(o): _at(o, o.eps, key) for o in having}
        refuted = {id(o): r for o in having if (r := _at(o, o.refuted, key)) is not None}
        bracketed = [o for o in having if id(o) in refuted]
        ratios = [refuted[id(o)] / proved[id(o)] for o in bracketed if proved[id(o)] > 0]
        rows.append(
            LayerGap(
                key[1],
                len(having),
                float(np.median(list(proved.values()))),
                len(bracketed),
                median([refuted[id(o)] for o in bracketed]),
                median(ratios),
                key[0],
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
