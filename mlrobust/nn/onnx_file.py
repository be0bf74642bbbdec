"""Reading an ONNX file: the one place that loads, validates and takes a model apart.

Both the importer (the network IR) and the checker's summary (what `lint` reports) start here,
so they agree on what a readable model is: a regular file that loads, passes onnx.checker, and
has exactly one computed input and one output, both float32 or float64 tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlrobust.errors import UserError
from mlrobust.userfiles import require_regular_file

# ONNX element type -> the numpy dtype onnxruntime takes for it. The IR computes in float64, so
# both are exact to check; float16 (or int8) rounds far beyond the 1e-4 the IR and onnxruntime
# must agree to, so such a model cannot be verified as it is.
FLOAT_TYPES = {1: "float32", 11: "float64"}  # TensorProto.FLOAT, TensorProto.DOUBLE


class OnnxFileError(UserError):
    """The file is missing, not a valid ONNX model, or not one input -> one output."""


@dataclass(frozen=True, eq=False)
class OnnxFile:
    path: Path
    model: object  # onnx.ModelProto
    opset: int  # of the default domain
    input: object  # onnx.ValueInfoProto: the one computed input
    output: object  # onnx.ValueInfoProto

    @property
    def graph(self):  # type: ignore[no-untyped-def]
        return self.model.graph  # type: ignore[attr-defined]

    @property
    def input_dims(self) -> tuple[int | str, ...]:
        return dims(self.input)

    @property
    def output_dims(self) -> tuple[int | str, ...]:
        return dims(self.output)


def dims(value_info) -> tuple[int | str, ...]:  # type: ignore[no-untyped-def]
    """A value's shape: numbers where fixed, the symbol (or "?") where not."""
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value_info.type.tensor_type.shape.dim
    )


def _require_float(path: Path, role: str, value_info) -> None:  # type: ignore[no-untyped-def]
    import onnx

    elem = value_info.type.tensor_type.elem_type if value_info.type.HasField("tensor_type") else 0
    if elem in FLOAT_TYPES:
        return
    name = onnx.TensorProto.DataType.Name(elem).lower() if elem else "not a tensor"
    raise OnnxFileError(
        f"{path.name}: its {role} {value_info.name!r} is {name}; mlrobust verifies float32 or float64 models",
        hint="re-export the model in float32 (e.g. call model.float() before torch.onnx.export)",
    )


def _load_external_data(model, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Weights stored beside the model are files too: each passes the same gate before onnx opens it."""
    from onnx import external_data_helper

    graph = model.graph
    candidates = [*graph.initializer, *(a.t for node in graph.node for a in node.attribute if a.HasField("t"))]
    tensors = [t for t in candidates if external_data_helper.uses_external_data(t)]
    if not tensors:
        return
    for tensor in tensors:
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        require_regular_file(path.parent / location, f"{path.name}'s external weights", OnnxFileError)
    external_data_helper.load_external_data_for_model(model, str(path.parent))


def read_onnx(path: Path) -> OnnxFile:
    import onnx

    require_regular_file(path, "model file", OnnxFileError)
    try:
        model = onnx.load(str(path), load_external_data=False)
        _load_external_data(model, path)
        onnx.checker.check_model(model)
    except OnnxFileError:
        raise
    except FileNotFoundError:
        raise OnnxFileError(f"model file not found: {path}") from None
    except Exception as error:  # onnx raises DecodeError, ValidationError, OSError, ...
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OnnxFileError(f"{path} is not a valid ONNX model: {type(error).__name__}: {first_line}") from None
    opset = next((x.version for x in model.opset_import if x.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxFileError(
            f"{path.name}: expected one input and one output, found {len(inputs)} and {len(graph.output)}"
        )
    for role, value in (("input", inputs[0]), ("output", graph.output[0])):
        _require_float(path, role, value)
    return OnnxFile(path, model, opset, inputs[0], graph.output[0])
