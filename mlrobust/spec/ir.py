"""The Spec IR: what a checked spec means, as frozen dataclasses with spans.

Nothing downstream of the checker sees text or syntax trees. Paths are absolute (resolved
against the folder of the file that wrote them); every default is filled in; every node
keeps the span it came from (excluded from equality) so later stages can still point at it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mlrobust.contract.span import UNKNOWN_SPAN, Span
from mlrobust.contract.verifiers import VerifierStep


@dataclass(frozen=True)
class FileRef:
    path: Path
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


# --- target -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTarget:
    """`target = 3`: a class index."""

    label: int
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class NamedTarget:
    """`target = "cat"`: a class name from the model card's `classes`."""

    name: str
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class DigitTarget:
    """`target = first_digit` / `second_digit`: the label of the canvas's object 0 or 1."""

    slot: int
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


Target = LabelTarget | NamedTarget | DigitTarget


# --- mask -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskFile:
    """`mask = "m.png"`: nonzero pixels are the perturbed object."""

    path: Path
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class OtherDigitMask:
    """`mask = other_digit`: the mask of the canvas's digit that is not the target."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class RectMask:
    """`mask = rect(top = 10, left = 4, height = 20, width = 12)`."""

    top: int
    left: int
    height: int
    width: int
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def array(self, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=bool)
        mask[self.top : self.top + self.height, self.left : self.left + self.width] = True
        return mask


@dataclass(frozen=True)
class MaskUnion:
    """`mask = [other_digit, rect(…), "m.png"]`: several perturbed objects, their union one mask
    (layers by distance to the union)."""

    parts: tuple[MaskFile | OtherDigitMask | RectMask, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


Mask = MaskFile | OtherDigitMask | RectMask | MaskUnion


@dataclass(frozen=True)
class TargetDigitMask:
    """`freeze = target_digit`: the mask of the canvas's digit that is the target."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


# What `freeze` names: pixels that get ε = 0 whatever their layer (a mask file, a rectangle, or
# the target digit of a canvas). Written like `mask`, so one reader serves both.
Freeze = MaskFile | RectMask | TargetDigitMask


# --- the property -----------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


@dataclass(frozen=True)
class TopKProperty:
    """`property = top_k` (the default): the target stays in the top k."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    uses_k: ClassVar[bool] = True
    needs_target: ClassVar[bool] = True
    threshold: ClassVar[float | None] = None

    @property
    def text(self) -> str:
        """The property as a spec writes it."""
        return "top_k"

    def key(self) -> list[object] | None:
        """What the question hash appends for it: nothing, so the hashes of specs that say
        nothing (or `top_k`) stay what they were before properties existed."""
        return None


@dataclass(frozen=True)
class ThresholdProperty:
    """`property = threshold(t = 0.5)`: the target's sigmoid score stays above t, i.e. its
    logit stays above logit(t) (0 < t < 1)."""

    threshold: float = 0.5
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    uses_k: ClassVar[bool] = False
    needs_target: ClassVar[bool] = True

    @property
    def text(self) -> str:
        return f"threshold(t = {_number(self.threshold)})"

    def key(self) -> list[object] | None:
        return ["property", "threshold", float(self.threshold)]


@dataclass(frozen=True)
class KeepPredictedProperty:
    """`property = keep_predicted`: every label predicted on the clean image stays predicted.
    Without a threshold the prediction is the top-k set (the spec's k), which must stay the
    top-k set; with `keep_predicted(threshold = t)` it is every label whose sigmoid score is
    above t, which must each stay above t. The target is not part of it."""

    threshold: float | None = None
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    needs_target: ClassVar[bool] = False

    @property
    def uses_k(self) -> bool:
        return self.threshold is None

    @property
    def text(self) -> str:
        return "keep_predicted" if self.threshold is None else f"keep_predicted(threshold = {_number(self.threshold)})"

    def key(self) -> list[object] | None:
        return ["property", "keep_predicted", None if self.threshold is None else float(self.threshold)]


OutputPropertySpec = TopKProperty | ThresholdProperty | KeepPredictedProperty


# --- weights and cutting weights --------------------------------------------------------


@dataclass(frozen=True)
class ExplicitWeights:
    """`[1, 0.5, 0.25]`, or `padded([1, 0.5], fill = 0)` to fill the remaining layers."""

    values: tuple[float, ...]
    fill: float | None = None
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def vector(self, layers: int) -> np.ndarray:
        if len(self.values) > layers or (self.fill is None and len(self.values) != layers):
            raise ValueError(f"{len(self.values)} weights for {layers} layers")
        tail = [self.fill] * (layers - len(self.values)) if self.fill is not None else []
        return np.array([*self.values, *tail], dtype=np.float64)


@dataclass(frozen=True)
class UniformWeights:
    """`uniform` or `uniform(0.5)`: the same weight for every layer."""

    value: float = 1.0
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def vector(self, layers: int) -> np.ndarray:
        return np.full(layers, self.value, dtype=np.float64)


@dataclass(frozen=True)
class LinearWeights:
    """`linear(start = 1, end = 0)`: from start at layer 0 to end at the last layer."""

    start: float = 1.0
    end: float = 0.0
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def vector(self, layers: int) -> np.ndarray:
        return np.linspace(self.start, self.end, layers) if layers > 1 else np.array([self.start])


@dataclass(frozen=True)
class ExponentialWeights:
    """`exponential(base = 0.5)`: w_d = base ** d."""

    base: float = 0.5
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def vector(self, layers: int) -> np.ndarray:
        return self.base ** np.arange(layers, dtype=np.float64)


@dataclass(frozen=True)
class ObjectOnlyWeights:
    """`object_only`: weight 1 on layer 0 (the perturbed object), 0 elsewhere."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    def vector(self, layers: int) -> np.ndarray:
        weights = np.zeros(layers, dtype=np.float64)
        weights[0] = 1.0
        return weights


OneObjectWeights = ExplicitWeights | UniformWeights | LinearWeights | ExponentialWeights | ObjectOnlyWeights


@dataclass(frozen=True)
class PerObjectWeights:
    """`[[1, 0.5, 0.25], exponential(base = 0.5)]` under `layers = per_object`: one weights form
    per object, in the order the objects are listed, each over that object's distances."""

    parts: tuple[OneObjectWeights, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


Weights = OneObjectWeights | PerObjectWeights


def weight_vector(weights: Weights, counts: tuple[int, ...]) -> np.ndarray:
    """One weight per flat layer (docs/spec-language.md, "Layers and weights").

    `counts` holds each object's number of distances (one entry under `union`). A single form
    is applied to every object's distances in turn; a per-object form gives each object its own.
    Raises ValueError when the shapes disagree (lint's `weights-length` says so first).
    """
    if isinstance(weights, PerObjectWeights):
        if len(weights.parts) != len(counts):
            raise ValueError(f"weights for {len(weights.parts)} objects, but there are {len(counts)}")
        return np.concatenate([part.vector(count) for part, count in zip(weights.parts, counts, strict=True)])
    return np.concatenate([weights.vector(count) for count in counts])


@dataclass(frozen=True)
class FixedCutting:
    """The thesis's fixed cutting weights (near layers shrink less)."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    @property
    def name(self) -> str:
        """How a sweep's row names it: `fixed`, `sensitivity` or `custom`."""
        return "fixed"

    @property
    def label(self) -> str:
        """A short, stable name for a folder: the name, or `cutting-<hash8>` of a list."""
        return self.name


@dataclass(frozen=True)
class SensitivityCutting:
    """Cutting weights from the vanilla gradient of the margin, averaged per layer."""

    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)

    @property
    def name(self) -> str:
        return "sensitivity"

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class ExplicitCutting:
    """One cutting weight in [0, 1] per layer: `[1, 0.9, …]`, or under `layers = per_object`
    one list per object, `[[1, 0.9, …], [1, 0.5, …]]`, held flat (object by object, as the flat
    layers are numbered) with each object's length in `per_object`."""

    values: tuple[float, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    per_object: tuple[int, ...] | None = None  # each object's number of values; None: one flat list

    @property
    def parts(self) -> tuple[tuple[float, ...], ...]:
        """The values per object (one part for a flat list)."""
        if self.per_object is None:
            return (self.values,)
        ends = np.cumsum(self.per_object)
        return tuple(self.values[end - n : end] for n, end in zip(self.per_object, ends, strict=True))

    @property
    def name(self) -> str:
        return "custom"

    @property
    def label(self) -> str:
        """`cutting-` and 8 hex digits of the values' sha256: equal lists (`[1, 0.5]`,
        `[1.0, 0.50]`) get one label, and the label never changes with layout or spans. A
        per-object cutting hashes its lists of lists (two splits of the same values differ)."""
        shown: list = [float(v) for v in self.values]  # type: ignore[type-arg]
        if self.per_object is not None:
            shown = [[float(v) for v in part] for part in self.parts]
        digest = hashlib.sha256(json.dumps(shown).encode()).hexdigest()
        return f"cutting-{digest[:8]}"


Cutting = FixedCutting | SensitivityCutting | ExplicitCutting


# --- chain, search, sweep ---------------------------------------------------------------


@dataclass(frozen=True)
class SearchOptions:
    resolution: float = 0.001
    queries: int = 1000
    time_limit: float = 600.0
    seed: int = 0
    method: str = "search"  # one of contract/methods.py METHODS
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Sweep:
    """Several models and/or several images (files, or canvases of the dataset), and
    optionally several search methods and cutting strategies: the instances are
    models × methods × cuttings × images. An empty axis is the spec's own value."""

    models: tuple[FileRef, ...] = ()
    images: tuple[FileRef, ...] = ()
    canvases: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()  # names in contract/methods.py METHODS (`thesis-style`); () = search { method }
    cuttings: tuple[Cutting, ...] = ()  # () = the spec's `cutting`
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Spec:
    file: Path
    model: FileRef | None
    image: FileRef | None
    dataset: FileRef | None
    canvas: str | None
    target: Target | None  # None only where the property needs none (keep_predicted)
    mask: Mask
    k: int
    weights: Weights
    cutting: Cutting
    chain: tuple[VerifierStep, ...]
    value_range: tuple[float, float]
    search: SearchOptions
    output: Path
    sweep: Sweep | None
    extends: tuple[Path, ...] = ()
    freeze: Freeze | None = None
    output_property: OutputPropertySpec = field(default_factory=TopKProperty)  # the `property` field
    layers: str = "union"  # `union` or `per_object` (problem/layers.py LAYERINGS)
    spans: dict[str, Span] = field(default_factory=dict, compare=False, repr=False)

    def span_of(self, name: str) -> Span:
        """Where field `name` was written (the spec's first line when it took its default)."""
        return self.spans.get(name) or Span(str(self.file), 1, 1, 1, 1)
