"""Models exported the way a new user exports them (torch.onnx.export), with an image and a
spec about them: small enough that every verifier answers in milliseconds, and built so that
the answer is known exactly.

The network is Conv(identity, 2 channels) -> ReLU -> Flatten -> Linear, optionally with a
Sigmoid or Softmax head. On inputs in [0, 1] it computes three logits: class 0 is the mean of
the image's left half, class 1 the mean of its right half, class 2 the constant 0.25. The
image's left half is 128/255 (≈ 0.502) and its right half 0, so the target 0 is the top 1
(logits 0.502, 0, 0.25). The perturbed object is the right half: layer 0 is columns 6 … 11,
layer d is column 6 − d (7 layers). Hence, for k = 1:

- a uniform ε below 0.251 is robust (class 0 stays above 0.502 − ε > max(ε, 0.25)), and
  0.3 is not (the left half at 0.202, the right half at 0.3);
- with the left half frozen, class 0 stays 0.502, and only ε_0 ≥ 0.502 is not robust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 12
HALF = SIZE // 2
LAYERS = HALF + 1
LEFT = 128 / 255  # the left half's value, as the PNG stores it
QUICK_CHAIN = "chain = attack(steps = 20, restarts = 2) -> bounds(method = crown)\n"


def toy_model(head: str | None = None) -> torch.nn.Sequential:
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    linear = torch.nn.Linear(2 * SIZE * SIZE, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, 0, 1, 1] = 1.0  # both channels copy the image
        weight = torch.zeros(3, 2, SIZE, SIZE)
        weight[0, 0, :, :HALF] = 1.0 / (SIZE * HALF)
        weight[1, 1, :, HALF:] = 1.0 / (SIZE * HALF)
        linear.weight.copy_(weight.reshape(3, -1))
        linear.bias.copy_(torch.tensor([0.0, 0.0, 0.25]))
    layers: list[torch.nn.Module] = [conv, torch.nn.ReLU(), torch.nn.Flatten(), linear]
    if head == "Sigmoid":
        layers.append(torch.nn.Sigmoid())
    elif head == "Softmax":
        layers.append(torch.nn.Softmax(dim=1))
    elif head is not None:
        raise ValueError(head)
    return torch.nn.Sequential(*layers).eval()


def export(model: torch.nn.Module, path: Path, dynamic_batch: bool = True) -> Path:
    """As the PyTorch docs show it, with the TorchScript exporter (onnxscript is not installed)."""
    axes = {"dynamic_axes": {"image": {0: "batch"}, "scores": {0: "batch"}}} if dynamic_batch else {}
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, SIZE, SIZE),),
        str(path),
        dynamo=False,
        input_names=["image"],
        output_names=["scores"],
        **axes,  # type: ignore[arg-type]
    )
    return path


def image() -> np.ndarray:
    """The image as the spec reads it: float (H, W) in [0, 1]."""
    pixels = np.zeros((SIZE, SIZE), dtype=np.float64)
    pixels[:, :HALF] = LEFT
    return pixels


def write_problem(
    folder: Path, head: str | None = None, dynamic_batch: bool = True, extra: str = "", model: Path | None = None
) -> Path:
    """The model (unless given), the image and a spec in `folder`; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = export(toy_model(head), folder / "model.onnx", dynamic_batch)
    pixels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    pixels[:, :HALF] = 128
    Image.fromarray(pixels).save(folder / "image.png")
    spec = folder / "toy.mlr"
    spec.write_text(
        f'model = "{model}"\nimage = "image.png"\ntarget = 0\nk = 1\n'
        f"mask = rect(top = 0, left = {HALF}, height = {SIZE}, width = {HALF})\n" + extra
    )
    return spec
