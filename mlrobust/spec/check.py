"""The front door: a spec file -> a checked Spec IR and every diagnostic about it.

`check_spec` never raises for a bad spec: it returns what it could build and the
diagnostics (lint prints them). `load_spec` is the API for code: a Spec, or a SpecError that
carries every diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mlrobust.contract.methods import METHOD_TABLE, SPEC_NAMES
from mlrobust.contract.span import Span
from mlrobust.contract.verifiers import VerifierStep, default_chain
from mlrobust.spec import ir
from mlrobust.spec import syntax as s
from mlrobust.spec.convert import MAX_WEIGHT, Converter, number_text, unknown_name
from mlrobust.spec.diagnostics import Diagnostic, SpecError, sort_key
from mlrobust.spec.instances import Instance, dataset_root, expand_instances
from mlrobust.spec.parser import parse_text
from mlrobust.spec.resolve import Merged, merge

# Field -> what it holds; the language reference documents each with its default.
TOP_FIELDS: dict[str, str] = {
    "model": "the ONNX model",
    "image": "the image (PNG or .npy)",
    "dataset": "a Double-MNIST folder (for canvas, other_digit, first_digit)",
    "canvas": 'a canvas id of the dataset, e.g. "test/0000"',
    "target": "the target label",
    "mask": "the perturbed object's mask",
    "layers": "how pixels are grouped into layers: union (distance to every object) or per_object",
    "freeze": "pixels that are never perturbed (ε = 0 whatever their layer)",
    "k": "the classification is the top k labels",
    "property": "what must hold: top_k, threshold(t = 0.5), keep_predicted or keep_predicted(threshold = 0.5)",
    "weights": "one weight per layer (per object and distance with layers = per_object)",
    "cutting": "the cutting strategy for CEGIS",
    "chain": "the verifier chain",
    "range": "the valid input range [lo, hi]",
    "output": "the output folder",
}
BLOCK_FIELDS: dict[str, dict[str, str]] = {
    "search": {
        "resolution": "δ, the resolution of the search and the maximality check",
        "queries": "query budget",
        "time_limit": "time budget",
        "seed": "random seed",
        "method": "search, or a baseline: uniform, per_layer, thesis_style",
    },
    "sweep": {
        "models": "several models",
        "images": "several image files",
        "canvases": "several canvases of the dataset",
        "methods": "several search methods (search, uniform, per_layer, thesis_style)",
        "cuttings": "several cutting strategies (fixed, sensitivity, or a list of weights)",
    },
}


@dataclass(frozen=True)
class CheckResult:
    spec: ir.Spec | None
    diagnostics: tuple[Diagnostic, ...]
    instances: tuple[Instance, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors


def _unknown_fields(merged: Merged, conv: Converter) -> None:
    for key, item in merged.fields.items():
        if key in TOP_FIELDS:
            continue
        if key in BLOCK_FIELDS:
            conv.report(
                "unknown-field",
                f"`{key}` is a block, not a field",
                item.key_span,
                f"write {key} {{ … }} with its fields inside",
            )
        else:
            owner = next((b for b, fields in BLOCK_FIELDS.items() if key in fields), None)
            hint = (
                f"`{key}` belongs in the {owner} {{ … }} block"
                if owner
                else unknown_name("fields", key, list(TOP_FIELDS))
            )
            conv.report("unknown-field", f"unknown field `{key}`", item.key_span, hint)
    for name, fields in merged.blocks.items():
        if name not in BLOCK_FIELDS:
            conv.report(
                "unknown-block",
                f"unknown block `{name}`",
                merged.block_spans[name],
                unknown_name("blocks", name, list(BLOCK_FIELDS)),
            )
            continue
        for key, item in fields.items():
            if key not in BLOCK_FIELDS[name]:
                conv.report(
                    "unknown-field",
                    f"unknown field `{key}` in {name} {{ … }}",
                    item.key_span,
                    unknown_name(f"{name} fields", key, list(BLOCK_FIELDS[name])),
                )


def _search(merged: Merged, conv: Converter) -> ir.SearchOptions | None:
    fields = merged.blocks.get("search", {})
    span = merged.block_spans.get("search", Span(str(merged.root), 1, 1, 1, 1))
    defaults = ir.SearchOptions()
    values = {
        "resolution": conv.number(fields["resolution"].value, "search resolution", 0)
        if "resolution" in fields
        else defaults.resolution,
        "queries": conv.number(fields["queries"].value, "search queries", 1, integer=True)
        if "queries" in fields
        else defaults.queries,
        "time_limit": conv.duration(fields["time_limit"].value, "search time_limit")
        if "time_limit" in fields
        else defaults.time_limit,
        "seed": conv.number(fields["seed"].value, "search seed", 0, integer=True)
        if "seed" in fields
        else defaults.seed,
    }
    if "resolution" in fields and values["resolution"] == 0:
        conv.report("bad-value", "search resolution must be positive", fields["resolution"].value.span)
        return None
    # its upper bound, the range's width, is checked by _resolution_fits once the range is known
    values["method"] = _method(fields["method"].value, conv) if "method" in fields else defaults.method
    if any(v is None for v in values.values()):
        return None
    return ir.SearchOptions(
        float(values["resolution"]),
        int(values["queries"]),  # type: ignore[arg-type]
        float(values["time_limit"]),
        int(values["seed"]),
        str(values["method"]),
        span,
    )  # type: ignore[arg-type]


# The smallest resolution, as a share of the range's width: finer steps than this are below what a
# float64 ε can resolve near the range's ends, and a bisection would stop shrinking its interval.
MIN_RESOLUTION_SHARE = 1e-9


def _resolution_fits(
    merged: Merged, conv: Converter, search: ir.SearchOptions, value_range: tuple[float, float]
) -> None:
    """δ must be below the range's width (a larger step jumps past every ε the range allows)
    and above a billionth of it."""
    field = merged.blocks.get("search", {}).get("resolution")
    if field is None:
        return
    lo, hi = value_range
    width = hi - lo
    if search.resolution >= width:
        conv.report(
            "bad-value",
            f"search resolution must be less than the range's width ({number_text(width)}), "
            f"got {number_text(search.resolution)}",
            field.value.span,
            f"δ is the step of the search, a small share of the range [{lo:g}, {hi:g}]: e.g. 0.001",
        )
    elif search.resolution < width * MIN_RESOLUTION_SHARE:
        conv.report(
            "bad-value",
            f"search resolution must be at least {number_text(width * MIN_RESOLUTION_SHARE)}, "
            f"got {number_text(search.resolution)}",
            field.value.span,
            f"a step finer than {number_text(MIN_RESOLUTION_SHARE)} of the range's width is below float64's precision",
        )


def _weights_fit(spec: ir.Spec, instances: list[Instance], diagnostics: list[Diagnostic]) -> None:
    """Each instance's weight vector: finite, at most MAX_WEIGHT per layer, not all zero.

    Only the expanded vector shows it: exponential(base = 10) is harmless on 3 layers and
    1e27 on 28; a size w·ε that overflows would be written as `Infinity` in result.json.
    """
    seen: set[str] = set()
    span = spec.span_of("weights")
    for instance in instances:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                vector = ir.weight_vector(spec.weights, instance.pixel_layers().counts)
        except ValueError:  # a list of the wrong length or shape: weights-length says so
            continue
        where = f"{instance.model.name} on {instance.canvas or instance.image_path.name}"
        if not np.all(np.isfinite(vector)) or vector.max() > MAX_WEIGHT:
            layer = int(np.argmax(~np.isfinite(vector) | (vector > MAX_WEIGHT)))
            reach = number_text(float(vector[layer]))
            shown = instance.pixel_layers().label(layer)
            message = f"the weights reach {reach} on layer {shown} of {instance.layers} ({where})"
            hint = f"each layer's weight must be at most {number_text(MAX_WEIGHT)}: use a smaller base or scale"
        elif not vector.max() > 0:
            message = f"the weights are 0 on every one of the {instance.layers} layers ({where})"
            hint = "give some layer a positive weight: the search maximises w·ε"
        else:
            continue
        if message.split(" (")[0] not in seen:
            seen.add(message.split(" (")[0])
            diagnostics.append(Diagnostic("bad-value", message, span, hint))


def _method(value: s.Value, conv: Converter) -> str | None:
    """A method name as a spec writes it (`per_layer`) -> its name in METHODS (`per-layer`)."""
    if isinstance(value, s.Name) and value.value in SPEC_NAMES:
        return SPEC_NAMES[value.value]
    if isinstance(value, s.Name):
        conv.report(
            "bad-value",
            f"unknown search method `{value.value}`",
            value.span,
            unknown_name("methods", value.value, list(SPEC_NAMES)),
        )
        return None
    conv.wrong_type("search method", "a name (" + ", ".join(SPEC_NAMES) + ")", value)
    return None


def _methods(value: s.Value, conv: Converter) -> tuple[str, ...] | None:
    """`methods = [search, thesis_style]`: each a method as `search { method }` takes it (an
    unknown one is the same `bad-value`), each once."""
    items = conv.axis_items(value, "methods", "[search, thesis_style]")
    if items is None:
        return None
    methods = [_method(item, conv) for item in items]
    if any(m is None for m in methods):
        return None
    found = tuple(m for m in methods if m is not None)
    names = [METHOD_TABLE[m].spec_name for m in found]
    if conv.duplicates([item.span for item in items], names, "methods"):
        return None
    return found


def _sweep(merged: Merged, conv: Converter, dataset: ir.FileRef | None) -> ir.Sweep | None:
    if "sweep" not in merged.blocks:
        return None
    fields = merged.blocks["sweep"]
    span = merged.block_spans["sweep"]
    models = conv.path_list(fields["models"].value, "model") if "models" in fields else ()
    images = conv.path_list(fields["images"].value, "image") if "images" in fields else ()
    methods = _methods(fields["methods"].value, conv) if "methods" in fields else ()
    cuttings = conv.cutting_axis(fields["cuttings"].value) if "cuttings" in fields else ()
    canvases: tuple[str, ...] = ()
    if "canvases" in fields:
        selection = conv.canvas_selection(fields["canvases"].value)
        where = fields["canvases"].value.span
        if selection is not None and dataset is None:
            conv.report(
                "needs-dataset", "sweeping over canvases needs `dataset`", where, 'set dataset = "…/data/double_mnist"'
            )
        elif selection is not None and dataset is not None:
            from mlrobust.data.index import load_index
            from mlrobust.errors import UserError

            try:
                ids = [entry.id for entry in load_index(dataset_root(dataset.path)).canvases]
            except UserError as error:
                conv.report("file-not-found", error.message, dataset.span)
                ids = []
            if selection == "all":
                canvases = tuple(ids)
            elif isinstance(selection, tuple) and len(selection) == 2 and all(isinstance(x, int) for x in selection):
                start, stop = selection  # type: ignore[misc]
                if ids and stop > len(ids):
                    conv.report("bad-value", f"rows({start}, {stop}) reaches past the {len(ids)} canvases", where)
                canvases = tuple(ids[start:stop])
            else:
                canvases = tuple(selection)  # type: ignore[arg-type]
    if models is None or images is None or methods is None or cuttings is None:
        return None
    if images and canvases:
        conv.report("bad-value", "a sweep takes images or canvases, not both", span)
        return None
    return ir.Sweep(models, images, canvases, methods, cuttings, span)


def build_spec(merged: Merged, diagnostics: list[Diagnostic], partial: bool = False) -> ir.Spec | None:
    """Merged fields -> Spec IR with defaults; None when a required piece is unusable.

    A partial spec (a base that others extend) is not required to be complete.
    """
    conv = Converter(diagnostics)
    _unknown_fields(merged, conv)
    fields = merged.fields
    root_span = Span(str(merged.root), 1, 1, 1, 1)

    def get(key: str) -> s.Value | None:
        return fields[key].value if key in fields else None

    def convert(key: str, function, default=None):  # type: ignore[no-untyped-def]
        value = get(key)
        return function(value) if value is not None else default

    model = convert("model", lambda v: conv.path(v, "model"))
    image = convert("image", lambda v: conv.path(v, "image"))
    dataset = convert("dataset", lambda v: conv.path(v, "dataset"))
    canvas = convert("canvas", lambda v: conv.string(v, "canvas"))
    target = convert("target", conv.target)
    output_property = convert("property", conv.output_property, ir.TopKProperty())
    mask = convert("mask", conv.mask)
    layering = convert("layers", conv.layering, "union")
    freeze = convert("freeze", conv.freeze)
    k = convert("k", lambda v: conv.number(v, "k", 1, integer=True), 2)
    weights = convert("weights", conv.weights, ir.UniformWeights())
    cutting = convert("cutting", conv.cutting, ir.FixedCutting())
    chain = convert("chain", conv.chain) if "chain" in fields else default_chain()
    value_range = convert("range", conv.value_range, (0.0, 1.0))
    output_ref = convert("output", lambda v: conv.path(v, "output", must_exist=False))
    if output_ref is not None and output_ref.path.resolve() == Path(output_ref.span.file).resolve().parent:
        # `run` and `sweep` refuse it (results and journals mixed with the specs): say so first
        conv.report(
            "bad-value",
            "`output` names the spec's own folder",
            output_ref.span,
            'write results to a folder of their own: output = "runs/NAME"',
        )
    search = _search(merged, conv)
    if search is not None and value_range is not None:
        _resolution_fits(merged, conv, search, value_range)
    sweep = _sweep(merged, conv, dataset)

    # Completeness looks at what is written, so a sweep value with its own error does not
    # also count as missing.
    swept = merged.blocks.get("sweep", {})
    sweeps_models = "models" in swept
    sweeps_images = "images" in swept or "canvases" in swept
    # the target is needed unless the property does without one (keep_predicted); an unusable
    # property says so itself, so it does not also make the target missing
    needs_target = output_property.needs_target if output_property is not None else "property" not in fields
    for key, needed in (
        ("model", not sweeps_models),
        ("target", needs_target),
        ("mask", True),
        ("image", not sweeps_images and "canvas" not in fields),
    ):
        if needed and key not in fields and not partial:
            hint = {
                "model": 'model = "path/to/model.onnx" (or sweep { models = […] })',
                "image": 'image = "path/to/image.png", or dataset + canvas for Double-MNIST',
                "target": "target = 3 (a label), or first_digit / second_digit with a canvas",
                "mask": 'mask = "mask.png", other_digit, or rect(top =, left =, height =, width =)',
            }[key]
            conv.report("missing-field", f"the spec needs `{key}` ({TOP_FIELDS[key]})", root_span, hint)
    if "canvas" in fields and "image" in fields:
        conv.report("bad-value", "give either `image` or `canvas`, not both", fields["image"].key_span)
    if "canvas" in fields and "dataset" not in fields:
        conv.report(
            "needs-dataset",
            "`canvas` names a canvas of `dataset`, which is not set",
            fields["canvas"].key_span,
            'set dataset = "…/data/double_mnist"',
        )

    if output_property is not None and not output_property.uses_k and "k" in fields:
        conv.report(
            "unused-field",
            f"`k` is not used by property = {output_property.text}",
            fields["k"].key_span,
            "a threshold property asks about scores, not ranks: remove k, or use property = top_k / keep_predicted",
        )

    if any(d.is_error for d in diagnostics) or mask is None or output_property is None:
        return None
    if target is None and (output_property.needs_target or "target" in fields):
        return None
    stem = merged.root.stem
    return ir.Spec(
        file=merged.root,
        model=model,
        image=image,
        dataset=dataset,
        canvas=canvas,
        target=target,
        mask=mask,
        k=int(k),
        weights=weights,
        cutting=cutting,
        chain=chain,
        value_range=value_range,
        search=search,  # type: ignore[arg-type]
        output=output_ref.path if output_ref else (Path.cwd() / "runs" / stem).resolve(),
        sweep=sweep,
        extends=tuple(merged.files[:-1]),
        freeze=freeze,
        output_property=output_property,
        layers=layering,
        spans={key: item.value.span for key, item in fields.items()} | dict(merged.block_spans),
    )


def check_spec(path: Path | str, check_files: bool = True, partial: bool = False) -> CheckResult:
    """Parse, merge extends, convert and (optionally) check the files a spec names.

    `partial` checks a base spec: syntax, fields and types, but not completeness or files.
    """
    diagnostics: list[Diagnostic] = []
    merged = merge(Path(path), diagnostics)
    spec = build_spec(merged, diagnostics, partial) if not any(d.is_error for d in diagnostics) else None
    instances: list[Instance] = []
    if spec is not None and check_files and not partial:
        instances = expand_instances(spec, diagnostics)
        _weights_fit(spec, instances, diagnostics)
    return CheckResult(spec, tuple(sorted(diagnostics, key=sort_key)), tuple(instances))


def load_checked(spec: Path | str | ir.Spec) -> CheckResult:
    """A spec with no errors (warnings allowed) and its instances; raises SpecError carrying
    every diagnostic, as `lint` prints them, otherwise. The one way code loads a spec to use.

    A Spec already loaded (`load_spec`, in a notebook) has its files read and checked again,
    as a path's would be: they may have changed since, and its instances are not kept in it.
    """
    if isinstance(spec, ir.Spec):
        diagnostics: list[Diagnostic] = []
        instances = expand_instances(spec, diagnostics)
        _weights_fit(spec, instances, diagnostics)
        result = CheckResult(spec, tuple(sorted(diagnostics, key=sort_key)), tuple(instances))
    else:
        result = check_spec(spec)
    if not result.ok:
        raise SpecError(list(result.diagnostics))
    assert result.spec is not None
    return result


def load_spec(path: Path | str) -> ir.Spec:
    """The checked Spec of a file; raises SpecError (with every diagnostic) if it has errors."""
    spec = load_checked(path).spec
    assert spec is not None
    return spec


def chain_on_device(chain: tuple[VerifierStep, ...], device: str | None) -> tuple[VerifierStep, ...]:
    """A chain moved to the CLI's `--device` (None: as written); raises UserError when a step
    cannot run there (e.g. `cuda` without a CUDA device), before any work."""
    if device is None:
        return chain
    from mlrobust.contract.verifiers import DEVICES, on_device, unavailable_steps
    from mlrobust.errors import UserError

    if device not in DEVICES:
        raise UserError(f"--device {device!r} is not a device", hint=f"choose {' or '.join(DEVICES)}")
    moved = on_device(chain, device)
    blocked = unavailable_steps(moved)
    if blocked:
        step, why = blocked[0]
        raise UserError(f"--device {device}: {step.name} cannot run: {why.reason}", hint="use --device cpu")
    return moved


def parse_chain(text: str) -> tuple[VerifierStep, ...]:
    """A verifier chain written as in a spec (`attack() -> bounds() -> milp(time_limit = 5s)`),
    for commands that take one on their command line; raises SpecError with the diagnostics,
    their columns counted in `text`."""
    prefix = "chain = "
    where = "<--chain>"
    diagnostics: list[Diagnostic] = []
    try:
        document = parse_text(prefix + text, where)
    except SpecError as error:
        diagnostics = list(error.diagnostics)
        document = None
    chain = None
    if document is not None:
        fields = [statement for statement in document.statements if isinstance(statement, s.Field)]
        if len(fields) != 1 or len(document.statements) != 1:
            raise SpecError(
                [Diagnostic("syntax-error", "expected one chain, e.g. attack() -> bounds()", Span(where, 1, 1, 1, 2))]
            )
        chain = Converter(diagnostics).chain(fields[0].value)
    shifted = [
        replace(
            d,
            span=replace(
                d.span, column=max(1, d.span.column - len(prefix)), end_column=max(1, d.span.end_column - len(prefix))
            ),
        )
        for d in diagnostics
    ]
    if chain is None or any(d.is_error for d in shifted):
        raise SpecError(shifted)
    return chain
