"""A spec -> its concrete instances: (model, image, mask, target) after every file is read.

One spec is one instance; a sweep is many: models × methods × cuttings × images (or
canvases), in that order, the methods and cuttings axes only when the sweep has them. The checker calls
this to find what is wrong with the files, with spans to point at; the compiler calls it
again on a checked spec to get the arrays. Files are read once per path (a sweep names the
same model many times).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mlrobust.contract.span import Span
from mlrobust.data.index import DatasetIndex, load_index
from mlrobust.errors import UserError
from mlrobust.nn.onnx_file import OnnxFileError
from mlrobust.nn.support import OnnxSummary, summarize_onnx, supported_op_types
from mlrobust.problem.layers import PER_OBJECT, HiddenObject, Layering, per_object_layering, union_layering
from mlrobust.spec import ir
from mlrobust.spec.diagnostics import Diagnostic
from mlrobust.spec.shapes import check_cutting, check_weights
from mlrobust.userfiles import load_image, require_regular_file, too_many_pixels


@dataclass(frozen=True)
class Instance:
    """One verification problem a spec asks for."""

    model: Path
    image_path: Path
    image: np.ndarray  # float32 (C, H, W)
    mask: np.ndarray  # bool (H, W)
    target: int | None  # None only where the property needs none (keep_predicted without a target)
    canvas: str | None
    num_classes: int
    layers: int
    mask_path: Path | None = None  # the mask file (None for a rectangle)
    # `freeze`: bool (H, W), pixels whose ε is 0 whatever their layer (None: nothing frozen)
    frozen: np.ndarray | None = None
    freeze_path: Path | None = None  # the freeze's mask file (None for a rectangle or no freeze)
    # a sweep's `methods` / `cuttings` axis value for this instance (None: the spec's own, or the CLI's --method)
    method: str | None = None  # a name of contract/methods.py METHODS
    cutting: ir.Cutting | None = None
    # each pixel's layer and what each layer is (the spec's `layers`: union or per_object);
    # expand_instances always sets it (None only for an Instance made by hand: the union's)
    layering: Layering | None = None
    object_names: tuple[str, ...] = ()  # the perturbed objects, as listed (other_digit: one per digit)

    def pixel_layers(self) -> Layering:
        """The instance's layering (the union's when none was set)."""
        return self.layering if self.layering is not None else union_layering(self.mask)

    def object_distances(self) -> tuple[int, ...] | None:
        """Each object's number of distances under `layers = per_object` (an `--eps` is given
        object by object then); None under union."""
        layering = self.pixel_layers()
        return layering.counts if layering.per_object else None

    @property
    def where(self) -> str:
        """The canvas id, or the image file's name."""
        return self.canvas or self.image_path.name

    def describe(self) -> str:
        return f"{self.model.name} on {self.where}"


@dataclass(frozen=True, eq=False)
class PerturbedObject:
    """One perturbed object of the spec's mask: its pixels, how messages name it, and the span
    that wrote it (the mask list's element; `other_digit` for each of its digits)."""

    mask: np.ndarray  # bool (H, W), non-empty
    name: str
    span: Span


def _object_name(part: ir.MaskFile | ir.RectMask) -> str:
    if isinstance(part, ir.RectMask):
        return f"rect(top = {part.top}, left = {part.left}, height = {part.height}, width = {part.width})"
    return part.path.name


def _card_classes(path: Path) -> tuple[str, ...] | None:
    card = path.with_name(path.stem + ".card.json")
    try:
        require_regular_file(card, "model card")  # a pipe named like a card must not hang lint
        classes = json.loads(card.read_text()).get("classes")
    except (OSError, ValueError, UserError):
        return None
    return tuple(str(c) for c in classes) if isinstance(classes, list) else None


# dtype kinds an image may not hold, and how to say so: each would be lost or garbled by float32
_NOT_REAL = {
    "c": "complex numbers (reading them would drop the imaginary part)",
    "U": "strings",
    "S": "bytes",
    "V": "structured records",
    "O": "Python objects",
    "M": "dates",
    "m": "time deltas",
}
NPY_HINT = "save one real-valued array per file: numpy.save(path, image.astype(numpy.float32))"


def _read_npy(path: Path, what: str) -> np.ndarray:
    """A .npy array as float32 (C, H, W), refusing what float32 cannot hold faithfully.

    Memory-mapped first, so dtype, shape and size are checked before the data is read.
    """
    require_regular_file(path, what)
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"cannot read {path} as a .npy array: {error}", hint=NPY_HINT) from None
    if not isinstance(loaded, np.ndarray):  # np.load opens any zip archive as an NpzFile, whatever its name
        loaded.close()
        raise UserError(f"{path} is an .npz archive, not a .npy array", hint=NPY_HINT)
    if loaded.dtype.kind not in "biuf":
        held = _NOT_REAL.get(loaded.dtype.kind, f"values of dtype {loaded.dtype}")
        raise UserError(f"{path} holds {held} (dtype {loaded.dtype}), not real numbers", hint=NPY_HINT)
    shape = loaded.shape
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise UserError(f"{path} holds an array of shape {loaded.shape}; expected (H, W) or (C, H, W)")
    if 0 in shape:
        raise UserError(f"{path} holds an empty array of shape {loaded.shape}")
    refusal = too_many_pixels(path, what, shape[1], shape[2])
    if refusal is not None:
        raise refusal
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused just below
        array = np.array(loaded, dtype=np.float32).reshape(shape)
    del loaded
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{path} holds {int(bad.sum())} NaN or infinite value(s) (or values beyond float32's range), "
            f"the first at (channel, row, column) {where}",
            hint="an image holds finite pixel values inside the spec's `range`",
        )
    return array


def _read_png(path: Path, what: str) -> np.ndarray:
    """A PNG as float32 (C, H, W), value / 255: one channel for grey, three for colour.

    Alpha is not an image channel the model sees: fully opaque alpha is dropped; any
    transparency is refused, since turning it into pixel values means guessing a background.
    """
    image = load_image(path, what)
    mode = image.mode
    if mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise UserError(
                f"{path} is an {mode} image with {int(np.count_nonzero(alpha < 255))} transparent or "
                "translucent pixel(s); mlrobust does not guess what lies behind them",
                hint=f"flatten it onto a background and save it as {mode[:-1]} (alpha that is fully opaque is ignored)",
            )
        image = image.convert(mode[:-1])
        mode = image.mode
    if mode in ("L", "1"):
        return np.asarray(image.convert("L"), dtype=np.float32)[None] / np.float32(255)
    if mode in ("RGB", "CMYK", "YCbCr"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255)
        return np.moveaxis(rgb, -1, 0)
    raise UserError(
        f"{path} is a {mode} image; expected 8-bit grayscale (L), RGB, or LA / RGBA with opaque alpha",
        hint="save it as an 8-bit grayscale or RGB PNG, or as a float32 .npy array",
    )


def read_image(path: Path, what: str = "image") -> np.ndarray:
    """An image file as float32 (C, H, W) of finite values: grayscale/RGB PNG (value/255) or a .npy array.

    Every refusal is a UserError naming the file and the problem, so `lint` reports it and
    `run` never meets it.
    """
    if path.suffix.lower() == ".npy":
        return _read_npy(path, what)
    return _read_png(path, what)


def read_mask(path: Path) -> np.ndarray:
    """A mask file as bool (H, W): nonzero pixels of a PNG or .npy."""
    array = read_image(path, "mask")
    return np.asarray(array.max(axis=0) > 0)


def dataset_root(path: Path) -> Path:
    return path.parent if path.is_file() else path


class _Expander:
    def __init__(self, spec: ir.Spec, diagnostics: list[Diagnostic]) -> None:
        self.spec = spec
        self.diagnostics = diagnostics
        self.reported: set[tuple[str, Span, str]] = set()
        # A sweep names each image once per model (and may repeat canvases): read each once.
        self.image_cache: dict[Path, np.ndarray | UserError] = {}
        self.mask_cache: dict[
            tuple[Path, int | None, str | None], tuple[np.ndarray, Layering, tuple[str, ...]] | None
        ] = {}
        self.frozen_cache: dict[tuple[Path, int | None, str | None], tuple[bool, np.ndarray | None]] = {}
        # Likewise each model and card (a sweep names every model once per image). Held by this
        # check only: a file changed between two checks is read afresh.
        self.summaries: dict[Path, OnnxSummary | OnnxFileError] = {}
        self.classes: dict[Path, tuple[str, ...] | None] = {}
        self.clean_logits: dict[tuple[Path, Path], np.ndarray] = {}

    def summary(self, path: Path) -> OnnxSummary | OnnxFileError:
        """The model's summary, from the same load `run` makes (import and onnxruntime check), once per path."""
        if path not in self.summaries:
            try:
                self.summaries[path] = summarize_onnx(path)
            except OnnxFileError as error:
                self.summaries[path] = error
        return self.summaries[path]

    def card_classes(self, path: Path) -> tuple[str, ...] | None:
        if path not in self.classes:
            self.classes[path] = _card_classes(path)
        return self.classes[path]

    def read_image(self, path: Path) -> np.ndarray | UserError:
        if path not in self.image_cache:
            try:
                image = read_image(path)
                image.setflags(write=False)  # shared by every instance that names this file
                self.image_cache[path] = image
            except UserError as error:
                self.image_cache[path] = error
        return self.image_cache[path]

    def mask_and_layering(
        self, image_path: Path, image: np.ndarray, label: int | None, canvas: str | None, index: DatasetIndex | None
    ) -> tuple[np.ndarray, Layering, tuple[str, ...]] | None:
        """(the union of the perturbed objects, their layering, the objects' names), once per image and target."""
        key = (image_path, label, canvas)
        if key not in self.mask_cache:
            self.mask_cache[key] = None
            objects = self.objects(image, label, canvas, index)
            layering = self.layering(objects, canvas) if objects is not None else None
            if objects is not None and layering is not None:
                mask = np.logical_or.reduce([obj.mask for obj in objects])  # each is non-empty, so the union is
                mask.setflags(write=False)
                layering.map.setflags(write=False)
                self.mask_cache[key] = (mask, layering, tuple(obj.name for obj in objects))
        return self.mask_cache[key]

    def frozen_and_usable(
        self,
        image_path: Path,
        image: np.ndarray,
        label: int | None,
        canvas: str | None,
        index: DatasetIndex | None,
        mask: np.ndarray,
    ) -> tuple[bool, np.ndarray | None]:
        """(usable, the frozen pixels or None when the spec freezes nothing), once per image and target."""
        key = (image_path, label, canvas)
        if key not in self.frozen_cache:
            usable, frozen = self.frozen(image, label, canvas, index, mask)
            if frozen is not None:
                frozen.setflags(write=False)
            self.frozen_cache[key] = (usable, frozen)
        return self.frozen_cache[key]

    def frozen(
        self, image: np.ndarray, label: int | None, canvas: str | None, index: DatasetIndex | None, mask: np.ndarray
    ) -> tuple[bool, np.ndarray | None]:
        """The spec's `freeze` on this image: (usable, the pixels as bool (H, W), or None when
        it freezes nothing); not usable when a diagnostic says why.

        A frozen pixel inside the perturbed object is a warning, not an error: the freeze wins
        (ε = 0 there) and the mask still decides the layers, which may be what was meant (a
        rectangle over the target that clips the object), but more often is a mistake. A freeze
        of every pixel is an error: nothing is left to perturb.
        """
        region = self.spec.freeze
        if region is None:
            return True, None
        height, width = image.shape[1:]
        if isinstance(region, ir.TargetDigitMask):
            if label is None:
                self.report(
                    "missing-field",
                    "target_digit is the canvas's target digit: it needs `target`",
                    region.span,
                    "set target = first_digit / second_digit, or freeze a mask file or a rect(…)",
                )
                return False, None
            if canvas is None or index is None:
                self.report(
                    "needs-dataset",
                    "target_digit is the mask of a Double-MNIST canvas's target digit",
                    region.span,
                    "set `dataset` and `canvas` (or sweep over canvases), or freeze a mask file or a rect(…)",
                )
                return False, None
            path = index.by_id(canvas).object_for(label).mask
        else:
            path = None
        frozen = self._region(region, path, (height, width), "freeze mask", "the freeze rect")
        if frozen is None:
            return False, None
        if frozen.all():
            self.report(
                "bad-value",
                f"`freeze` covers all {height}×{width} pixels of the image: nothing is left to perturb",
                region.span,
                "freeze only the pixels that must keep their value, e.g. target_digit",
            )
            return False, None
        overlap = int(np.count_nonzero(frozen & mask))
        if overlap:
            self.report(
                "freeze-overlaps-mask",
                f"`freeze` holds {overlap} of the perturbed object's {int(mask.sum())} pixels: they are not perturbed "
                "(the freeze wins; the mask still decides the layers)",
                region.span,
                "freeze pixels outside the perturbed object (`mask`), or make the mask smaller",
                key=str(canvas),
            )
        return True, frozen

    def predicts_something(self, model: ir.FileRef, image_path: Path, image: np.ndarray, threshold: float) -> bool:
        """For keep_predicted(threshold = t): whether the model predicts any label on the image
        (onnxruntime's logits, as `run` computes them: some F_j > logit(t)); else a diagnostic."""
        from mlrobust.nn.network import onnxruntime_logits
        from mlrobust.problem.property import logit, predicted_above

        key = (model.path, image_path)
        if key not in self.clean_logits:
            self.clean_logits[key] = onnxruntime_logits(model.path, np.asarray(image, dtype=np.float32)[None])[0]
        logits = self.clean_logits[key]
        if predicted_above(logits, threshold):
            return True
        best = int(np.argmax(logits))
        self.report(
            "nothing-predicted",
            f"property = {self.spec.output_property.text}: {model.path.name} predicts no label on {image_path.name} "
            f"(its highest logit, label {best}'s, is {float(logits[best]):.4g}, not above logit({threshold:g}) = "
            f"{logit(threshold):.4g})",
            self.spec.span_of("property"),
            "nothing predicted means nothing to keep: lower the threshold, or ask property = threshold(t = …) "
            "about one target",
            key=f"{model.path}|{image_path}",
        )
        return False

    def report(self, code: str, message: str, span: Span, hint: str | None = None, key: str = "") -> None:
        """Record once per (code, span, key): a sweep should not repeat one mistake 1,000 times."""
        if (code, span, key) in self.reported:
            return
        self.reported.add((code, span, key))
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def model(self, ref: ir.FileRef) -> OnnxSummary | None:
        summary = self.summary(ref.path)
        if isinstance(summary, OnnxFileError):
            self.report(
                "model-load-error",
                f"model {ref.path.name} does not load: {summary.message}",
                ref.span,
                summary.hint or "export the model to ONNX (opset >= 13) and check it with onnx.checker",
            )
            return None
        for op in summary.unsupported:
            op_name = f"{op.domain}.{op.op_type}" if op.domain not in ("", "ai.onnx") else op.op_type
            self.report(
                "unsupported-op",
                f"model {ref.path.name} uses {op_name} (node {op.node_name!r}, opset {op.opset}), "
                "which the verifiers do not support",
                ref.span,
                "supported: " + ", ".join(supported_op_types()) + " (Softmax/Sigmoid only as the last op)",
                key=op.op_type + op.node_name,
            )
        if summary.unsupported:
            return None
        refused = summary.refused
        if refused is not None:  # what `check` and `run` would refuse on load, said here first
            self.report(
                "unsupported-op" if refused.op_type else "model-load-error",
                f"model {ref.path.name} cannot be verified: {refused.message}",
                ref.span,
                refused.hint or "this is what `run` would say; docs/architecture.md lists what each op supports",
            )
            return None
        if summary.num_classes is None:
            self.report("model-load-error", f"model {ref.path.name} has no fixed number of output classes", ref.span)
            return None
        return summary

    def dataset(self) -> DatasetIndex | None:
        ref = self.spec.dataset
        if ref is None:
            return None
        root = dataset_root(ref.path)
        try:
            index: DatasetIndex | str = load_index(root)
        except UserError as error:
            index = error.message
        if isinstance(index, str):
            self.report("file-not-found", index, ref.span, "point `dataset` at a folder made by `mlrobust data build`")
            return None
        return index

    def images(self, index: DatasetIndex | None) -> Iterator[tuple[Path, str | None, Span]]:
        """(image path, canvas id, span to blame) for every image the spec selects."""
        spec = self.spec
        sweep = spec.sweep
        if sweep is not None and sweep.images:
            for ref in sweep.images:
                yield ref.path, None, ref.span
            return
        if sweep is not None and sweep.canvases:
            if index is None:
                return
            for canvas in sweep.canvases:
                try:
                    yield index.by_id(canvas).image, canvas, sweep.span
                except UserError as error:
                    self.report("bad-value", error.message, sweep.span, key=canvas)
            return
        if spec.canvas is not None:
            if index is not None:
                try:
                    yield index.by_id(spec.canvas).image, spec.canvas, spec.dataset.span  # type: ignore[union-attr]
                except UserError as error:
                    self.report("bad-value", error.message, spec.dataset.span)  # type: ignore[union-attr]
            return
        if spec.image is not None:
            yield spec.image.path, None, spec.image.span

    def target_label(
        self, summary: OnnxSummary, model: ir.FileRef, canvas_labels: tuple[int, ...] | None
    ) -> int | None:
        target = self.spec.target
        assert target is not None, "asked only of a spec with a target"
        classes = summary.num_classes or 0
        if isinstance(target, ir.DigitTarget):
            if canvas_labels is None:
                self.report(
                    "needs-dataset",
                    "first_digit / second_digit name a digit of a Double-MNIST canvas",
                    target.span,
                    "set `dataset` and `canvas` (or sweep over canvases)",
                )
                return None
            label = canvas_labels[target.slot]
        elif isinstance(target, ir.NamedTarget):
            names = self.card_classes(model.path)
            if names is None or target.name not in names:
                known = f"the model card lists: {', '.join(names)}" if names else "the model has no card with classes"
                self.report(
                    "unknown-label",
                    f"no class named {target.name!r} in {model.path.name}",
                    target.span,
                    f"{known}; or give the class index",
                )
                return None
            label = names.index(target.name)
        else:
            label = target.label
        if not 0 <= label < classes:
            self.report(
                "label-out-of-range",
                f"label {label} is out of range: {model.path.name} has {classes} classes (0 … {classes - 1})",
                target.span,
                key=str(label),
            )
            return None
        if canvas_labels is not None and label not in canvas_labels:
            self.report(
                "target-not-in-canvas",
                f"target {label} is not a digit of this canvas (it shows"
                f" {', '.join(map(str, canvas_labels[:-1]))} and {canvas_labels[-1]})",
                target.span,
                key=str(label),
            )
            return None
        return label

    def objects(
        self, image: np.ndarray, label: int | None, canvas: str | None, index: DatasetIndex | None
    ) -> list[PerturbedObject] | None:
        """The perturbed objects, in the order the spec lists them: each element of a mask list
        is one object, except `other_digit`, which is one object per digit that is not the target
        (two on a Triple-MNIST canvas, in the canvas's order). Under `layers = union` only their
        union matters; under `per_object` each is ringed on its own."""
        spec_mask = self.spec.mask
        parts = spec_mask.parts if isinstance(spec_mask, ir.MaskUnion) else (spec_mask,)
        found = [self.part_objects(part, image, label, canvas, index) for part in parts]
        if any(objects is None for objects in found):
            return None
        return [obj for objects in found for obj in objects]  # type: ignore[union-attr]

    def part_objects(
        self,
        spec_mask: ir.MaskFile | ir.OtherDigitMask | ir.RectMask,
        image: np.ndarray,
        label: int | None,
        canvas: str | None,
        index: DatasetIndex | None,
    ) -> list[PerturbedObject] | None:
        height, width = image.shape[1:]
        if isinstance(spec_mask, ir.OtherDigitMask):
            if label is None:
                self.report(
                    "missing-field",
                    "other_digit is the canvas's digit that is not the target: it needs `target`",
                    spec_mask.span,
                    "set target = first_digit / second_digit (the digit kept), or give the mask as a file or rect(…)",
                )
                return None
            if canvas is None or index is None:
                self.report(
                    "needs-dataset",
                    "other_digit is the mask of a Double-MNIST canvas's other digit",
                    spec_mask.span,
                    "set `dataset` and `canvas` (or sweep over canvases)",
                )
                return None
            others = index.by_id(canvas).other_objects(label)  # several on a Triple-MNIST canvas
            regions = [self._region(spec_mask, o.mask, (height, width), "mask", "rect") for o in others]
            names = [f"digit {o.label}" for o in others]
        else:
            regions = [self._region(spec_mask, None, (height, width), "mask", "rect")]
            names = [_object_name(spec_mask)]
        if any(region is None for region in regions):
            return None
        for region in regions:
            if not region.any():  # type: ignore[union-attr]
                self.report("empty-mask", "the mask selects no pixel", spec_mask.span, key=str(canvas))
                return None
        return [PerturbedObject(r, n, spec_mask.span) for r, n in zip(regions, names, strict=True)]  # type: ignore[arg-type]

    def layering(self, objects: list[PerturbedObject], canvas: str | None) -> Layering | None:
        """The spec's layering of these objects; None (with `empty-mask`) when, per object, one
        lies wholly inside the objects listed before it and so owns no pixel."""
        if self.spec.layers != PER_OBJECT:
            return union_layering(np.logical_or.reduce([obj.mask for obj in objects]))
        try:
            return per_object_layering([obj.mask for obj in objects])
        except HiddenObject as hidden:
            obj = objects[hidden.index]
            self.report(
                "empty-mask",
                f"with layers = per_object, object {hidden.index} ({obj.name}) lies wholly inside the objects "
                "listed before it: every pixel is nearer to (or as near to) one of them, so it owns no pixel "
                "and has no layer",
                obj.span,
                "list it before the objects that cover it, leave it out, or use layers = union",
                key=f"{canvas}|{hidden.index}",
            )
            return None

    def _region(
        self,
        region: ir.Mask | ir.Freeze,
        dataset_mask: Path | None,
        shape: tuple[int, int],
        noun: str,
        rect_noun: str,
    ) -> np.ndarray | None:
        """The pixels of a mask-like region — a dataset mask file already chosen, a rect or a
        file — read and held to the image's shape, for `mask` and `freeze` alike; None when a
        diagnostic says why. `noun` and `rect_noun` name the region in the messages."""
        height, width = shape
        if dataset_mask is not None:
            try:
                pixels = read_mask(dataset_mask)
            except UserError as error:  # the dataset's own mask file: blame the spec's line, name the file
                self.report("image-load-error", error.message, region.span, key=str(dataset_mask))
                return None
        elif isinstance(region, ir.RectMask):
            if region.top + region.height > height or region.left + region.width > width:
                self.report("bad-value", f"{rect_noun} reaches past the {height}×{width} image", region.span)
                return None
            pixels = region.array(shape)
        else:
            try:
                pixels = read_mask(region.path)  # type: ignore[union-attr]
            except UserError as error:
                self.report("image-load-error", error.message, region.span, error.hint)
                return None
        if pixels.shape != shape:
            self.report(
                "shape-mismatch",
                f"the {noun} is {pixels.shape[0]}×{pixels.shape[1]} but the image is {height}×{width}",
                region.span,
            )
            return None
        return pixels

    def check_vectors(self, layering: Layering, where: str, cuttings: tuple[ir.Cutting, ...]) -> None:
        """The weights and each cutting against the instance's layers: lengths, and the shape
        (one list, or one list per object) the spec's `layers` asks (spec/shapes.py)."""
        swept = bool(self.spec.sweep and self.spec.sweep.cuttings)
        for found in check_weights(self.spec.weights, layering, where):
            self.report("weights-length", found.message, found.span, found.hint, key=found.key)
        for cutting in cuttings:  # the spec's cutting, or each of the sweep's `cuttings` (which replace it)
            what = "this cutting of `cuttings`" if swept else "cutting"
            for found in check_cutting(cutting, layering, where, what):
                self.report("weights-length", found.message, found.span, found.hint, key=found.key)


def _mask_path(
    mask: ir.Mask | ir.Freeze | None, label: int | None, canvas: str | None, index: DatasetIndex | None
) -> Path | None:
    if isinstance(mask, ir.MaskFile):
        return mask.path
    if label is None:
        return None
    if isinstance(mask, ir.OtherDigitMask) and canvas is not None and index is not None:
        others = index.by_id(canvas).other_objects(label)
        return others[0].mask if len(others) == 1 else None  # several digits: their union is in no one file
    if isinstance(mask, ir.TargetDigitMask) and canvas is not None and index is not None:
        return index.by_id(canvas).object_for(label).mask
    return None


def expand_instances(spec: ir.Spec, diagnostics: list[Diagnostic]) -> list[Instance]:
    """Every instance of the spec, models × methods × cuttings × images; file problems become
    diagnostics (those instances are left out). Without a `methods` / `cuttings` axis an
    instance's method and cutting are None: the spec's own (or the CLI's --method)."""
    expander = _Expander(spec, diagnostics)
    models = spec.sweep.models if spec.sweep and spec.sweep.models else ((spec.model,) if spec.model else ())
    methods: tuple[str | None, ...] = (spec.sweep.methods if spec.sweep else ()) or (None,)
    cuttings: tuple[ir.Cutting | None, ...] = (spec.sweep.cuttings if spec.sweep else ()) or (None,)
    used_cuttings = tuple(c for c in cuttings if c is not None) or (spec.cutting,)
    index = expander.dataset()
    images = list(expander.images(index))
    instances = []
    for model in models:
        found = _model_instances(spec, expander, model, images, index, used_cuttings)
        instances.extend(
            replace(instance, method=method, cutting=cutting)
            for method in methods
            for cutting in cuttings
            for instance in found
        )
    return instances


def _model_instances(
    spec: ir.Spec,
    expander: _Expander,
    model: ir.FileRef,
    images: list[tuple[Path, str | None, Span]],
    index: DatasetIndex | None,
    cuttings: tuple[ir.Cutting, ...],
) -> list[Instance]:
    """One model's instances, one per image the spec selects (its usable ones)."""
    instances: list[Instance] = []
    summary = expander.model(model)
    if summary is None:
        return instances
    classes = summary.num_classes or 0
    asked = spec.output_property
    if asked.uses_k and not 1 <= spec.k < classes:
        expander.report(
            "k-out-of-range",
            f"k = {spec.k} but {model.path.name} has {classes} classes; k must be 1 … {classes - 1}",
            spec.span_of("k"),
        )
    if asked.threshold is not None and summary.head == "Softmax":
        expander.report(
            "property-unsupported",
            f"property = {asked.text} thresholds a sigmoid score, but {model.path.name} ends in a Softmax: "
            "a softmax score depends on every logit, so a threshold on it bounds no single logit",
            spec.span_of("property"),
            "ask property = top_k (k = 1: the target stays the argmax) or keep_predicted, "
            "or export the model without its Softmax to threshold σ(logit)",
            key=str(model.path),
        )
        return instances
    expected = tuple(d for d in summary.input_shape[1:])
    for image_path, canvas, span in images:
        image = expander.read_image(image_path)
        if isinstance(image, UserError):
            expander.report("image-load-error", image.message, span, image.hint, key=str(image_path))
            continue
        if any(isinstance(e, int) and e != a for e, a in zip(expected, image.shape, strict=False)) or len(
            expected
        ) != len(image.shape):
            expander.report(
                "shape-mismatch",
                f"{image_path.name} is {'×'.join(map(str, image.shape))} but "
                f"{model.path.name} takes {'×'.join(map(str, expected))}",
                span,
                key=f"{model.path}{image.shape}",
            )
            continue
        lo, hi = spec.value_range
        if image.min() < lo or image.max() > hi:
            expander.report(
                "bad-value",
                f"{image_path.name} has values in [{image.min():g}, {image.max():g}], outside range [{lo:g}, {hi:g}]",
                span,
                key=str(image_path),
            )
            continue
        entry = index.by_id(canvas) if canvas is not None and index is not None else None
        label = None
        if spec.target is not None:  # keep_predicted may go without one
            label = expander.target_label(summary, model, entry.labels if entry else None)
            if label is None:
                continue
        keeps_above = isinstance(asked, ir.KeepPredictedProperty) and asked.threshold is not None
        if keeps_above and not expander.predicts_something(model, image_path, image, asked.threshold):  # type: ignore[arg-type]
            continue
        found = expander.mask_and_layering(image_path, image, label, canvas, index)
        if found is None:
            continue
        mask, layering, names = found
        usable, frozen = expander.frozen_and_usable(image_path, image, label, canvas, index, mask)
        if not usable:
            continue
        where = f"{model.path.name} on {canvas or image_path.name}"
        expander.check_vectors(layering, where, cuttings)
        instances.append(
            Instance(
                model.path,
                image_path,
                image,
                mask,
                label,
                canvas,
                classes,
                layering.layers,
                _mask_path(spec.mask, label, canvas, index),
                frozen,
                _mask_path(spec.freeze, label, canvas, index),
                layering=layering,
                object_names=names,
            )
        )
    return instances
