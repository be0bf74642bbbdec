"""Queries out, so any other verifier can check them: ONNX + VNN-LIB pairs.

A query (a problem and an ε) is its input box and its output property. Two forms:
- `dnf`: the user's own model, and a VNN-LIB file whose unsafe region is the property's DNF
  (top-k: one conjunction `Y_j >= Y_t` per k-subset of rivals, C(n-1, k) of them, which grows
  fast: a warning says so);
- `head`: the model with a margin head appended (the property's margin m from the outputs,
  built from Gemm, Slice and Max/Min nodes: a compare-exchange network selects the k-th
  largest), and a one-constraint VNN-LIB file `Y_0 >= 0`, so a verifier that takes a single
  halfspace can answer it.
Files are named by content hashes (the same query is one file), and an index (`index.json`,
and VNN-COMP's `instances.csv`) lists every pair.

The property is on logits. For a model that ends in a Sigmoid or Softmax, the file's outputs
Y_j are probabilities: a property whose every row compares two outputs (Y_a >= Y_b: top-k,
keep_predicted's top-k set) means the same of probabilities as of logits, since both heads
keep the order of the classes, so the user's own file is exported. Any other row (a threshold,
logit(t) - Y_j >= 0) would mean something else of probabilities, so the model is exported
without its head (`strip_head`: the same graph, its logits as the output) and the property
constrains those logits, exactly as mlrobust verifies it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlrobust.problem.property import OutputProperty, TopK
from mlrobust.storage import atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256

log = logging.getLogger(__name__)
FORMS = ("dnf", "head")
DNF_WARNING = 1000  # disjuncts: beyond this a DNF export is large and slow for most tools


def number(value: float) -> str:
    """A decimal that reads back as exactly this float64, without an exponent (SMT-LIB has none)."""
    return np.format_float_positional(float(value), unique=True, trim="-")


def _row_text(row: np.ndarray, offset: float) -> str:
    """`row·Y + offset >= 0` as a VNN-LIB comparison (the plain `(>= Y_a Y_b)` where it is one)."""
    nonzero = np.flatnonzero(row)
    if offset == 0 and len(nonzero) == 2 and sorted(row[nonzero].tolist()) == [-1.0, 1.0]:
        above = int(nonzero[row[nonzero] > 0][0])
        below = int(nonzero[row[nonzero] < 0][0])
        return f"(>= Y_{above} Y_{below})"
    terms = " ".join(f"(* {number(row[j])} Y_{j})" for j in nonzero) or "0"
    return f"(>= (+ {terms}) {number(-offset)})" if len(nonzero) > 1 else f"(>= {terms} {number(-offset)})"


def property_text(lower: np.ndarray, upper: np.ndarray, output: OutputProperty, outputs: int, comment: str) -> str:
    """The DNF form: input bounds, and the unsafe region as (or (and rows…) …)."""
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs)]
    lines += ["", "; the input box"]
    for i, (low, high) in enumerate(zip(lower.ravel(), upper.ravel(), strict=True)):
        lines += [f"(assert (>= X_{i} {number(low)}))", f"(assert (<= X_{i} {number(high)}))"]
    lines += ["", "; the unsafe region"]
    disjuncts = [
        "(and " + " ".join(_row_text(output.rows[r], output.offsets[r]) for r in term) + ")"
        for term in output.disjuncts()
    ]
    lines.append("(assert (or\n    " + "\n    ".join(disjuncts) + "\n))")
    return "\n".join(lines) + "\n"


def head_property_text(lower: np.ndarray, upper: np.ndarray, comment: str) -> str:
    """The single-halfspace form for a model with a margin head: unsafe iff Y_0 >= 0."""
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines.append("(declare-const Y_0 Real)")
    for i, (low, high) in enumerate(zip(lower.ravel(), upper.ravel(), strict=True)):
        lines += [f"(assert (>= X_{i} {number(low)}))", f"(assert (<= X_{i} {number(high)}))"]
    lines.append("(assert (>= Y_0 0))")
    return "\n".join(lines) + "\n"


def head_invariant(output: OutputProperty) -> bool:
    """Whether every row compares two outputs (e_a - e_b, offset 0): such a property holds of a
    Sigmoid's or Softmax's probabilities exactly when it holds of their logits."""
    rows, offsets = np.asarray(output.rows), np.asarray(output.offsets)
    if np.any(offsets != 0):
        return False
    return all(sorted(row[row != 0].tolist()) == [-1.0, 1.0] for row in rows)


def _strip(proto) -> None:  # type: ignore[no-untyped-def]
    """Drop the trailing Sigmoid / Softmax node: its input (the logits) becomes the output."""
    from onnx import helper

    graph = proto.graph
    output = graph.output[0]
    producer = next(node for node in graph.node if output.name in node.output)
    if producer.op_type not in ("Sigmoid", "Softmax"):
        raise ValueError(f"the model's output comes from a {producer.op_type}, not a head")
    logits = producer.input[0]
    graph.node.remove(producer)
    tensor = output.type.tensor_type
    dims = [d.dim_param or d.dim_value or None for d in tensor.shape.dim] if tensor.HasField("shape") else None
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(logits, tensor.elem_type, dims))


def strip_head(model: Path) -> bytes:
    """The model without its trailing Sigmoid / Softmax: the same graph, its logits as output."""
    import onnx

    proto = onnx.load(str(model))
    _strip(proto)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def margin_head_model(model: Path, output: OutputProperty, strip: bool = False) -> bytes:
    """The model with the property's margin as its only output, shape (batch, 1); with `strip`,
    the margin is computed from the logits entering the model's Sigmoid / Softmax head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(model))
    if strip:
        _strip(proto)
    graph = proto.graph
    source = graph.output[0].name
    nodes, initializers = [], []

    def name(text: str) -> str:
        return f"mlrobust_{text}"

    rows = numpy_helper.from_array(output.rows.astype(np.float32), name("rows"))
    offsets = numpy_helper.from_array(output.offsets.astype(np.float32), name("offsets"))
    initializers += [rows, offsets]
    flat = name("outputs")
    nodes.append(helper.make_node("Flatten", [source], [flat], axis=1))
    values = name("row_values")
    nodes.append(helper.make_node("Gemm", [flat, rows.name, offsets.name], [values], transB=1))
    count = len(output.offsets)
    column = []
    for r in range(count):
        for label, value in (("start", r), ("end", r + 1)):
            initializers.append(numpy_helper.from_array(np.array([value], dtype=np.int64), name(f"{label}_{r}")))
        if r == 0:
            initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), name("axis")))
        column.append(name(f"row_{r}"))
        nodes.append(
            helper.make_node("Slice", [values, name(f"start_{r}"), name(f"end_{r}"), name("axis")], [column[-1]])
        )
    if isinstance(output, TopK):
        # k passes of compare-exchange: after pass p, position p holds the p-th largest
        current = list(column)
        serial = 0
        for p in range(output.k):
            for r in range(count - 1, p, -1):
                high, low = name(f"hi_{serial}"), name(f"lo_{serial}")
                nodes.append(helper.make_node("Max", [current[r - 1], current[r]], [high]))
                nodes.append(helper.make_node("Min", [current[r - 1], current[r]], [low]))
                current[r - 1], current[r] = high, low
                serial += 1
        result = current[output.k - 1]
    else:
        minima = []
        for index, term in enumerate(output.disjuncts()):
            minima.append(name(f"term_{index}"))
            nodes.append(helper.make_node("Min", [column[r] for r in term], [minima[-1]]))
        result = name("max")
        nodes.append(helper.make_node("Max", minima, [result]))
    nodes.append(helper.make_node("Identity", [result], ["margin"]))
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    dims = [batch.dim_param or batch.dim_value or "batch", 1]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("margin", TensorProto.FLOAT, dims))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@dataclass(frozen=True)
class Pair:
    onnx: str  # file names, relative to the export folder
    vnnlib: str
    form: str


class Exporter:
    """Writes pairs into one folder and keeps its index (rewritten atomically after each pair)."""

    def __init__(self, folder: Path, timeout: float = 60.0) -> None:
        self.folder = folder
        self.timeout = timeout
        self.entries: list[dict] = []  # type: ignore[type-arg]
        index = folder / "index.json"
        if index.exists():
            try:
                self.entries = list(json.loads(index.read_text()).get("pairs", []))
            except (OSError, ValueError):
                self.entries = []
        self.seen = {(e["onnx"], e["vnnlib"]) for e in self.entries}

    def _logits_copy(self, model: Path) -> str:
        stripped = strip_head(model)
        name = f"{model.stem}-logits-{hashlib.sha256(stripped).hexdigest()[:12]}.onnx"
        if not (self.folder / name).exists():
            atomic_write_bytes(self.folder / name, stripped)
        return name

    def _model_copy(self, model: Path) -> str:
        digest = file_sha256(model) or ""
        name = f"{model.stem}-{digest[:12]}.onnx"
        if not (self.folder / name).exists():
            atomic_write_bytes(self.folder / name, model.read_bytes())
        return name

    def export(
        self,
        model: Path,
        lower: np.ndarray,
        upper: np.ndarray,
        output: OutputProperty,
        outputs: int,
        info: dict,
        form: str,
        head: str | None = None,
    ) -> Pair:
        """One query in one form; `info` (what the query is: spec, eps, …) goes to the index.
        `head`: the model's trailing Sigmoid / Softmax (the network's `head`), which is left out
        of the export when the property is not the same of probabilities as of logits."""
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}")
        strip = head is not None and not head_invariant(output)
        if strip:
            info = {**info, "model_without_head": head}
        comment = "exported by mlrobust: " + json.dumps(info, sort_keys=True, default=str)
        if strip:
            comment += f"\nthe model is exported without its {head}: Y_j are its logits, as the property asks"
        if form == "dnf":
            if output.disjunct_count() > DNF_WARNING:
                log.warning(
                    "the DNF export of this property has %d disjuncts (C(n-1, k) for top-k); the `head` form "
                    "has one constraint",
                    output.disjunct_count(),
                )
            onnx_name = self._logits_copy(model) if strip else self._model_copy(model)
            text = property_text(lower, upper, output, outputs, comment)
        else:
            margin = margin_head_model(model, output, strip)
            onnx_name = f"{model.stem}-head-{hashlib.sha256(margin).hexdigest()[:12]}.onnx"
            if not (self.folder / onnx_name).exists():
                atomic_write_bytes(self.folder / onnx_name, margin)
            text = head_property_text(lower, upper, comment)
        digest = hashlib.sha256((onnx_name + text.split("\n", 1)[-1]).encode()).hexdigest()[:16]
        vnnlib_name = f"query-{digest}.vnnlib"
        pair = Pair(onnx_name, vnnlib_name, form)
        if (onnx_name, vnnlib_name) not in self.seen:
            atomic_write_text(self.folder / vnnlib_name, text)
            self.seen.add((onnx_name, vnnlib_name))
            self.entries.append({"onnx": onnx_name, "vnnlib": vnnlib_name, "form": form, **info})
            self._write_index()
        return pair

    def _write_index(self) -> None:
        atomic_write_json(self.folder / "index.json", {"schema": "mlrobust.export/1", "pairs": self.entries})
        csv = "".join(f"{e['onnx']},{e['vnnlib']},{self.timeout:g}\n" for e in self.entries)
        atomic_write_text(self.folder / "instances.csv", csv)


def export_query(
    exporter: Exporter,
    problem,
    eps: np.ndarray,
    info: dict,
    forms: tuple[str, ...] = FORMS,  # type: ignore[no-untyped-def]
) -> list[Pair]:
    """A problem's query at ε, in each form."""
    lower, upper = problem.box(eps)
    return [
        exporter.export(
            problem.network.path,
            lower.ravel(),
            upper.ravel(),
            problem.output,
            problem.network.num_classes,
            {**info, "eps": [float(v) for v in eps]},
            form,
            problem.network.head,
        )
        for form in forms
    ]
