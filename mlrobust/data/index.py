"""Reading a Double-MNIST folder written by `mlrobust data build` (e.g. data/double_mnist)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlrobust.errors import UserError
from mlrobust.userfiles import load_image, require_regular_file

INDEX_FILE = "index.json"
INDEX_FORMAT = "mlrobust-double-mnist/1"


@dataclass(frozen=True)
class DigitObject:
    label: int
    mask: Path
    position: tuple[int, int]
    source_index: int


@dataclass(frozen=True)
class CanvasEntry:
    id: str
    split: str
    image: Path
    labels: tuple[int, ...]  # two digits (Double-MNIST) or three (Triple-MNIST)
    objects: tuple[DigitObject, ...]

    def object_for(self, label: int) -> DigitObject:
        for obj in self.objects:
            if obj.label == label:
                return obj
        raise UserError(f"canvas {self.id} shows digits {self.labels}, not {label}")

    def other_object(self, target: int) -> DigitObject:
        """The digit that is not `target`: the perturbed object when `target` is the target."""
        self.object_for(target)
        return next(obj for obj in self.objects if obj.label != target)

    def other_objects(self, target: int) -> tuple[DigitObject, ...]:
        """Every digit that is not `target` (one on a Double-MNIST canvas, two on a Triple-MNIST one)."""
        self.object_for(target)
        return tuple(obj for obj in self.objects if obj.label != target)


@dataclass(frozen=True)
class DatasetIndex:
    root: Path
    seed: int
    mask_threshold: float
    canvases: tuple[CanvasEntry, ...]

    def by_id(self, canvas_id: str) -> CanvasEntry:
        for entry in self.canvases:
            if entry.id == canvas_id:
                return entry
        raise UserError(f"no canvas {canvas_id!r} in {self.root / INDEX_FILE}")


def load_index(root: Path) -> DatasetIndex:
    path = root / INDEX_FILE
    if path.exists():
        require_regular_file(path, "dataset index")  # before reading: a pipe named index.json must not hang
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise UserError(f"no Double-MNIST index at {path}", hint="build one with `mlrobust data build`") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise UserError(f"{path} has format {found!r}, expected {INDEX_FORMAT!r}")
    try:
        return _parse_index(root, raw)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise UserError(
            f"{path} is not a valid {INDEX_FORMAT} index: {type(error).__name__}: {error}",
            hint="rebuild it with `mlrobust data build`",
        ) from None


def _parse_index(root: Path, raw: dict) -> DatasetIndex:  # type: ignore[type-arg]
    for item in raw["canvases"]:
        labels = item["labels"]
        if not isinstance(item["id"], str) or not all(type(label) is int for label in labels) or len(labels) < 2:
            raise ValueError(f"canvas {item['id']!r}: an id string and two or more integer labels are expected")
        if len(item["objects"]) != len(labels):
            raise ValueError(f"canvas {item['id']!r}: one object per label is expected")
    entries = tuple(
        CanvasEntry(
            id=item["id"],
            split=item["split"],
            image=root / item["image"],
            labels=tuple(item["labels"]),
            objects=tuple(
                DigitObject(o["label"], root / o["mask"], (o["position"][0], o["position"][1]), o["source_index"])
                for o in item["objects"]
            ),
        )
        for item in raw["canvases"]
    )
    return DatasetIndex(root, raw["seed"], raw["mask_threshold"], entries)


def read_gray_png(path: Path) -> np.ndarray:
    """A grayscale PNG as float32 in [0, 1] (value / 255); regular files within the pixel limit only."""
    image = load_image(path)
    if image.mode not in ("L", "1"):
        raise UserError(f"{path} is a {image.mode} image; expected 8-bit grayscale")
    return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)


def read_mask_png(path: Path) -> np.ndarray:
    """A mask PNG as bool (nonzero pixels are in the mask)."""
    return read_gray_png(path) > 0
