"""Reading an ONNX file: the one place that loads, validates and takes a model apart.

Both the importer (the network IR) and the checker's summary (what `lint` reports) start here,
so they agree on what a readable model is: it loads, passes onnx.checker, and has exactly one
computed input and one output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlrobust.errors import UserError


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


def read_onnx(path: Path) -> OnnxFile:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
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
    return OnnxFile(path, model, opset, inputs[0], graph.output[0])
