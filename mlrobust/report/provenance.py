"""What was asked, with the hashes that pin it down: one record for `check` and `run` alike."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from dataclasses import dataclass
from typing import Any

from mlrobust import __version__
from mlrobust.problem.property import OutputProperty
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Spec
from mlrobust.storage import file_sha256


@dataclass(frozen=True)
class Asked:
    """The files (absolute paths and sha256), the target, k, the property, the range, the layer
    count and the frozen pixels: what a reader needs to know which question the answer is to."""

    spec: str
    model: str
    model_sha256: str | None
    image: str
    image_sha256: str | None
    mask: str | None
    mask_sha256: str | None
    canvas: str | None
    target: int | None  # None only for keep_predicted without a target
    k: int
    value_range: tuple[float, float]
    layers: int
    freeze: str | None = None  # the `freeze` mask file (None for a rect or no freeze)
    frozen_pixels: int = 0  # pixels held at the image's value (ε = 0 whatever their layer)
    # a dataset canvas's digits, and the digit whose mask is the perturbed one (None: not a
    # canvas, or a mask that is no digit's, e.g. a rectangle): what `mlrobust report`'s
    # explanations group by
    canvas_labels: tuple[int, ...] | None = None
    perturbed_label: int | None = None
    # the property asked (`OutputProperty.record`, plus `text`: as the spec writes it)
    output_property: dict[str, Any] | None = None
    # how pixels are grouped into layers: `union`, or `per_object` with each object's name and
    # number of distances (the flat layers are numbered object by object, distance by distance)
    layering: str = "union"
    objects: tuple[tuple[str, int], ...] | None = None

    @property
    def layer_labels(self) -> tuple[tuple[int, int], ...] | None:
        """(object, distance) of each flat layer per object; None under `union` (layer = distance)."""
        if self.objects is None:
            return None
        return tuple((o, d) for o, (_, count) in enumerate(self.objects) for d in range(count))

    def layer_label(self, layer: int) -> str:
        """A flat layer as people read it: `3` (union), `(1, 3)` (object 1, distance 3)."""
        labels = self.layer_labels
        return str(layer) if labels is None else f"({labels[layer][0]}, {labels[layer][1]})"

    @property
    def words(self) -> str:
        """The question as the console names it: `target 3, top-2` for the top-k question (as it
        always has), the property's own words for the others."""
        if self.output_property is None or self.output_property["kind"] == "top_k":
            return f"target {self.target}, top-{self.k}"
        return str(self.output_property["words"])

    @classmethod
    def of(cls, spec: Spec, instance: Instance, layers: int, output: OutputProperty | None = None) -> Asked:
        """`output`: the compiled property (it knows the labels predicted on the clean image)."""
        record = {"text": spec.output_property.text, **output.record()} if output is not None else None
        return cls(
            spec=str(spec.file),
            model=str(instance.model),
            model_sha256=file_sha256(instance.model),
            image=str(instance.image_path.resolve()),
            image_sha256=file_sha256(instance.image_path),
            mask=str(instance.mask_path.resolve()) if instance.mask_path else None,
            mask_sha256=file_sha256(instance.mask_path),
            canvas=instance.canvas,
            target=instance.target,
            k=spec.k,
            value_range=spec.value_range,
            layers=layers,
            freeze=str(instance.freeze_path.resolve()) if instance.freeze_path else None,
            frozen_pixels=int(instance.frozen.sum()) if instance.frozen is not None else 0,
            output_property=record,
            **_canvas_digits(spec, instance),
            **_layering(instance),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "image": self.image,
            "image_sha256": self.image_sha256,
            "mask": self.mask,
            "mask_sha256": self.mask_sha256,
            "canvas": self.canvas,
            "target": self.target,
            "k": self.k,
            "range": list(self.value_range),
            "layers": self.layers,
            "freeze": self.freeze,
            "frozen_pixels": self.frozen_pixels,
            "canvas_labels": list(self.canvas_labels) if self.canvas_labels is not None else None,
            "perturbed_label": self.perturbed_label,
            "property": self.output_property,
            "layering": self.layering,
            "objects": None
            if self.objects is None
            else [{"object": o, "name": name, "distances": count} for o, (name, count) in enumerate(self.objects)],
            "layer_labels": None if self.layer_labels is None else [list(label) for label in self.layer_labels],
        }


def _canvas_digits(spec: Spec, instance: Instance) -> dict[str, Any]:
    """The canvas's labels from the dataset index, and which digit's mask is perturbed."""
    if spec.dataset is None or instance.canvas is None:
        return {}
    from mlrobust.data.index import load_index

    entry = load_index(spec.dataset.path).by_id(instance.canvas)
    mask = instance.mask_path.resolve() if instance.mask_path else None
    perturbed = [o.label for o in entry.objects if mask is not None and o.mask.resolve() == mask]
    return {"canvas_labels": tuple(entry.labels), "perturbed_label": perturbed[0] if perturbed else None}


def _layering(instance: Instance) -> dict[str, Any]:
    """The instance's layering and, per object, its name and number of distances."""
    layering = instance.pixel_layers()
    if not layering.per_object:
        return {}
    names = instance.object_names or tuple(f"object {o}" for o in range(len(layering.counts)))
    return {"layering": layering.mode, "objects": tuple(zip(names, layering.counts, strict=True))}


def spec_record(spec: Spec) -> dict[str, str]:
    """The spec's text as it was when the run started, and its sha256 (read as lint reads it: a
    regular UTF-8 file within the size limit, so a file swapped since the check cannot hang it)."""
    from mlrobust.spec.source import read_spec_text

    text = read_spec_text(spec.file)
    return {"spec_text": text, "spec_sha256": hashlib.sha256(text.encode()).hexdigest()}


def versions() -> dict[str, str]:
    import onnxruntime
    import torch

    found = {
        "mlrobust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:  # from the package metadata: constructing a Highs object prints its banner
        found["highspy"] = importlib.metadata.version("highspy")
    except importlib.metadata.PackageNotFoundError:
        found["highspy"] = "unknown"
    return found
