"""Regenerates the small fixture files next to this script (committed; run by hand if needed).

tanh.onnx   a 1x64x64 -> 10 model with a Tanh node (an unsupported op)
softmax.onnx a 1x64x64 -> 10 linear model ending in a Softmax (no threshold property on it)
bad.onnx    bytes that are not an ONNX model
small.png   a 28x28 grayscale image (wrong shape for the 64x64 models)
empty.png   a 64x64 all-black mask (selects no pixel)
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = Path(__file__).parent


def save_model(name: str, nodes: list, output: str, weight) -> None:  # type: ignore[no-untyped-def]
    """A 1x64x64 -> 10 graph of `nodes` (input "image", a dynamic batch), checked and saved."""
    graph = helper.make_graph(
        nodes,
        f"{name}_net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 64, 64])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 10])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, HERE / f"{name}.onnx")


def softmax_model() -> None:
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array((0.01 * rng.standard_normal((10, 4096))).astype(np.float32), "W")
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "W"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
    ]
    save_model("softmax", nodes, "scores", weight)


def main() -> None:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((10, 4096)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
        helper.make_node("Tanh", ["flat"], ["squashed"], name="squash"),
        helper.make_node("Gemm", ["squashed", "W"], ["logits"], name="fc", transB=1),
    ]
    save_model("tanh", nodes, "logits", weight)
    (HERE / "bad.onnx").write_bytes(b"this is not an ONNX model\n")
    Image.fromarray(np.full((28, 28), 128, dtype=np.uint8), mode="L").save(HERE / "small.png")
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8), mode="L").save(HERE / "empty.png")
    softmax_model()


if __name__ == "__main__":
    main()
