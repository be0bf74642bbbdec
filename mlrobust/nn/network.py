"""A network: the IR ops of one ONNX file, run in torch, checked against onnxruntime on load.

The property is on logits. A model that ends in a Sigmoid or Softmax (a multi-label model
exported with its head) is imported without it (`onnx_import.HEADS`); onnxruntime is then
asked for the tensor before the head as well, so the IR is compared with onnxruntime like
with like, and a counterexample is re-checked on onnxruntime's logits. Both heads keep the
order of the classes, so the top-k sets of the logits and of the probabilities agree, except
where float32 probabilities saturate into ties (two logits of 20 and 25 both give 1.0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlrobust.errors import MlrobustError
from mlrobust.nn import ops as o
from mlrobust.nn.onnx_import import UnsupportedModel, import_onnx

ORT_TOLERANCE = 1e-4  # max |logit difference| accepted between the IR (float64) and onnxruntime (float32)


class NetworkMismatch(MlrobustError):
    """The IR computes something else than onnxruntime on the same file: a bug, never trusted."""


@dataclass(frozen=True, eq=False)
class Network:
    ops: tuple[o.Op, ...]
    input_shape: o.Shape
    num_classes: int
    path: Path
    opset: int
    head: str | None = None  # the trailing Sigmoid / Softmax of the file, not in `ops` (None: it ends in logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch (N, *input_shape), in the tensor's dtype (float64 for bounds, float32 for attacks)."""
        if o.is_chain(self.ops):  # no value is read twice: keep only the latest
            for op in self.ops:
                x = op.forward(x)
            return x
        return o.forward_values(self.ops, x)[-1]

    def logits(self, images: np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
        with torch.no_grad():
            return self.forward(torch.as_tensor(images, dtype=dtype)).numpy()

    def relu_count(self) -> int:
        return sum(int(np.prod(op.in_shape)) for op in self.ops if isinstance(op, (o.Relu, o.LeakyRelu)))

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        """What the file outputs for these logits: its dropped head applied (float64)."""
        return apply_head(self.head, logits)


def apply_head(head: str | None, logits: np.ndarray) -> np.ndarray:
    """A Sigmoid or Softmax head (over the classes) on (N, classes) logits; None is the identity."""
    logits = np.asarray(logits, dtype=np.float64)
    if head is None:
        return logits
    if head == "Sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-logits))
    if head == "Softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown head {head!r}")


@dataclass(frozen=True)
class _Runtime:
    """A pooled onnxruntime session of one file, and the names of its model output and its logits
    (the tensor before a trailing Sigmoid / Softmax; the output itself when there is none)."""

    session: Any  # onnxruntime.InferenceSession
    output: str
    logits: str
    head: str | None


def _trailing_head(model: Any) -> tuple[str, str] | None:
    """(head op, its input) when the model's output is computed by a Sigmoid / Softmax node."""
    from mlrobust.nn.onnx_import import HEADS

    output = model.graph.output[0].name
    producer = next((node for node in model.graph.node if output in node.output), None)
    if producer is None or producer.op_type not in HEADS or producer.domain not in ("", "ai.onnx"):
        return None
    return producer.op_type, producer.input[0]


@functools.lru_cache(maxsize=8)
def _session(path: Path, mtime: float) -> _Runtime:
    """The session, with the head's input exposed as a second output when the model has a head.

    The graph run is the user's own (same nodes, same weights): only an output is added, so
    onnxruntime's logits come from the very computation that produces its probabilities.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from mlrobust.nn.onnx_file import read_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    head = _trailing_head(onnx.load(str(path), load_external_data=False))
    if head is None:
        session = ort.InferenceSession(str(path), options, providers=providers)
        name = session.get_outputs()[0].name
        return _Runtime(session, name, name, None)
    model = read_onnx(path).model  # external weights loaded, through the same gate as the import's
    graph = model.graph  # type: ignore[attr-defined]
    elem_type = graph.output[0].type.tensor_type.elem_type
    graph.output.append(helper.make_tensor_value_info(head[1], elem_type, None))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)  # type: ignore[attr-defined]
    return _Runtime(session, graph.output[0].name, head[1], head[0])


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _ort_session(path: Path) -> _Runtime:
    """The pooled session of a file; onnxruntime's refusal to load it (types that do not fit,
    an op it lacks) is a fault of the file, so a user error, not a crash."""
    try:
        return _session(path, path.stat().st_mtime)
    except Exception as error:  # onnxruntime's own exception classes derive from Exception only
        raise UnsupportedModel(
            f"onnxruntime cannot load {path.name}: {_first_line(error)}",
            hint="check the model with onnxruntime.InferenceSession; mlrobust runs every model through it",
        ) from None


# onnxruntime's input type -> the numpy dtype it accepts (onnx_file.read_onnx admits only these two)
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def _run(path: Path, images: np.ndarray, which: tuple[str, ...]) -> list[np.ndarray]:
    """onnxruntime on the user's own file: the named tensors ("logits", "output") for (N, *input)
    images, fed in the model's own input type (float32, or float64 for a float64 model). A model
    exported with a fixed batch of 1 (the default of `torch.onnx.export`, and of most VNN-COMP
    benchmarks) is run one image at a time."""
    runtime = _ort_session(path)
    session = runtime.session
    wanted = [runtime.logits if name == "logits" else runtime.output for name in which]
    names = list(dict.fromkeys(wanted))  # without a head, the logits are the output: ask once
    declared = session.get_inputs()[0]
    images = np.ascontiguousarray(images, dtype=_ORT_DTYPES.get(declared.type, np.float32))
    batch = declared.shape[0] if declared.shape else None
    try:
        if batch == 1 and images.shape[0] != 1:
            parts = [session.run(names, {declared.name: images[i : i + 1]}) for i in range(len(images))]
            outputs = [np.concatenate([np.asarray(part[j]) for part in parts]) for j in range(len(names))]
        else:
            outputs = [np.asarray(value) for value in session.run(names, {declared.name: images})]
    except Exception as error:  # as above: onnxruntime failing on the user's file
        raise UnsupportedModel(f"onnxruntime cannot run {path.name}: {_first_line(error)}") from None
    by_name = {name: value.astype(np.float64) for name, value in zip(names, outputs, strict=True)}
    return [by_name[name] for name in wanted]


def onnxruntime_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Logits computed by onnxruntime on the user's own file: the ground truth for NOT_ROBUST.

    (N, *input) in, (N, classes) out. For a model that ends in a Sigmoid or Softmax these are
    the values entering it (the property is on logits), not the probabilities the file outputs.
    """
    return _run(path, images, ("logits",))[0]


def onnxruntime_outputs(path: Path, images: np.ndarray) -> np.ndarray:
    """What the file itself outputs (probabilities for a model with a Sigmoid / Softmax head)."""
    return _run(path, images, ("output",))[0]


def max_difference_to_onnxruntime(network: Network, images: np.ndarray) -> float:
    """The largest difference between the IR and onnxruntime on `images`: on the logits, and,
    for a model with a head, on the outputs too (the IR's logits through the dropped head), so
    a head read the wrong way (the wrong op, a Softmax over another axis) counts as well."""
    runtime = _ort_session(network.path)
    theirs, their_outputs = _run(network.path, images, ("logits", "output"))
    ours = network.logits(images)
    if ours.shape != theirs.shape:
        raise NetworkMismatch(
            f"the network read from {network.path.name} gives logits of shape {ours.shape[1:]}, "
            f"onnxruntime {theirs.shape[1:]}"
        )
    if runtime.head != network.head:
        raise NetworkMismatch(
            f"the network read from {network.path.name} ends in {network.head or 'its logits'}, "
            f"onnxruntime's in {runtime.head or 'its logits'}"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        difference = float(np.max(np.abs(ours - theirs)))
        if network.head is not None:
            difference = max(difference, float(np.max(np.abs(network.outputs(ours) - their_outputs))))
    return difference


def _largest_value(network: Network, images: np.ndarray) -> float:
    """The largest |value| anywhere in the forward pass (input, every op's output), in float64."""
    with torch.no_grad():
        values = o.forward_values(network.ops, torch.as_tensor(images, dtype=torch.float64))
    return max(float(value.abs().max()) for value in values)


def _refuse_unverifiable(network: Network, samples: np.ndarray, difference: float) -> None:
    """Raise a user error when the model, not mlrobust, is why the IR and onnxruntime disagree.

    Non-finite logits (an overflow in float32 onnxruntime, or in the IR) leave nothing to
    verify. Logits that differ by under 1e-5 of the largest value in the network (about 170
    float32 steps) are rounding (values so large that onnxruntime's float32 cannot agree to
    ORT_TOLERANCE), not a misread model. Anything else is left to NetworkMismatch: the IR would
    be a different function.
    """
    name = network.path.name
    theirs = onnxruntime_logits(network.path, samples)
    ours = network.logits(samples)
    for who, values in (("onnxruntime", theirs), ("the network IR (float64)", ours)):
        if not np.all(np.isfinite(values)):
            raise UnsupportedModel(
                f"{who} computes NaN or infinite logits for {name} on inputs in [0, 1]: its weights overflow",
                hint="the model is broken or its weights are too large; re-export a good checkpoint",
            )
    largest = _largest_value(network, samples)
    if difference <= largest * 1e-5:
        raise UnsupportedModel(
            f"{name} computes values up to {largest:.3g}, too large to check: onnxruntime and the exact network "
            f"differ by {difference:.3g}, float rounding at that size, above the {ORT_TOLERANCE} they must agree to",
            hint="the weights are too large to verify soundly; rescale or retrain the model",
        )


def load_network(path: Path, check_images: np.ndarray | None = None, seed: int = 0) -> tuple[Network, float]:
    """Import an ONNX file and check it against onnxruntime on `check_images` and random points.

    Returns the network and the largest logit difference seen. A model that cannot be checked
    (onnxruntime refuses it, its logits overflow, its values are too large for float32 to
    agree to ORT_TOLERANCE) is an UnsupportedModel (a user error); any other difference above
    ORT_TOLERANCE is a NetworkMismatch (the IR would be verifying a different function than
    the user's file: a bug in mlrobust).
    """
    graph = import_onnx(path)
    if len(graph.output_shape) != 1:
        raise UnsupportedModel(
            f"{path.name}: the output shape {graph.output_shape} is not a vector of class scores",
            hint="the model must end in one logit (or probability) per class, shape (batch, classes)",
        )
    network = Network(graph.ops, graph.input_shape, graph.output_shape[0], path.resolve(), graph.opset, graph.head)
    rng = np.random.default_rng(seed)
    samples = rng.uniform(0.0, 1.0, size=(8, *graph.input_shape))
    if check_images is not None:
        samples = np.concatenate([check_images.reshape(-1, *graph.input_shape), samples])
    difference = max_difference_to_onnxruntime(network, samples)
    if not difference <= ORT_TOLERANCE:
        _refuse_unverifiable(network, samples, difference)
        raise NetworkMismatch(
            f"the network read from {path.name} differs from onnxruntime by {difference:.2e} (> {ORT_TOLERANCE})"
        )
    return network, difference
