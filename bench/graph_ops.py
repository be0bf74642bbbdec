"""The cost of one CROWN query on each new op kind, against the chain-shaped net of the same size.

Usage: python bench/graph_ops.py [--size 28] [--repeats 5] [--eps 0.02]

Every net maps a 1×S×S image through three 3×3 convolutions of 8 channels with their
activations, then one linear layer to 10 logits (the bundled models' scale of ReLUs). They
differ in one place each:
- chain: conv → ReLU → conv → ReLU → conv → ReLU → linear (the patch fast path applies);
- chain, no patches: the same net with a 1×1 identity conv in front, so the patch path's
  prefix does not match (the generic back-substitution on a chain);
- residual: the third conv's output is added to the second ReLU's (a skip Add), then ReLU;
- concat: the second conv is two 4-channel convs side by side, joined by Concat;
- leaky: LeakyReLU(0.1) in place of every ReLU;
- batchnorm + avgpool: a BatchNorm after the skip Add (not folded: it follows no conv) and a
  3×3 average pool (stride 1) before the linear layer.
Each net is exported with torch.onnx.export and loaded through load_network (checked against
onnxruntime). The query is the top-2 margin over a uniform box of radius --eps on a random
image; the time is the median over --repeats cold queries (the memo forgotten each time).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlrobust.nn.network import load_network
from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B


class Net(torch.nn.Module):
    def __init__(self, variant: str, size: int) -> None:
        super().__init__()
        self.variant = variant
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        if variant == "concat":
            self.conv2a = torch.nn.Conv2d(8, 4, 3, padding=1)
            self.conv2b = torch.nn.Conv2d(8, 4, 3, padding=1)
        else:
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8) if variant == "batchnorm + avgpool" else None
        self.pool = torch.nn.AvgPool2d(3, stride=1, padding=1) if variant == "batchnorm + avgpool" else None
        self.linear = torch.nn.Linear(8 * size * size, 10)
        # made last, so the convolutions draw the same random weights as the chain's
        self.front = torch.nn.Conv2d(1, 1, 1) if variant == "chain, no patches" else None
        if self.front is not None:
            with torch.no_grad():
                self.front.weight.fill_(1.0)
                self.front.bias.zero_()

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(x, 0.1) if self.variant == "leaky" else torch.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            x = self.front(x)
        a = self.act(self.conv1(x))
        if self.variant == "concat":
            b = self.act(torch.cat([self.conv2a(a), self.conv2b(a)], dim=1))
        else:
            b = self.act(self.conv2(a))
        c = self.conv3(b)
        if self.variant in ("residual", "batchnorm + avgpool"):
            c = c + b
        if self.norm is not None:
            c = self.norm(c)
        c = self.act(c)
        if self.pool is not None:
            c = self.pool(c)
        return self.linear(torch.flatten(c, 1))


VARIANTS = ("chain", "chain, no patches", "residual", "concat", "leaky", "batchnorm + avgpool")


def build(variant: str, size: int, folder: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Net(variant, size)
    if model.norm is not None:
        with torch.no_grad():
            model.norm.running_mean.uniform_(-0.1, 0.1)
            model.norm.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = folder / f"{variant.replace(' ', '_').replace(',', '').replace('+', 'and')}.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, size, size),), path, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    network, _ = load_network(path)
    return network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (1, args.size, args.size))
    folder = Path(tempfile.mkdtemp(prefix="mlrobust-graph-bench-"))
    rows = []
    for variant in VARIANTS:
        network = build(variant, args.size, folder)
        target = int(np.argmax(network.logits(image[None])[0]))
        problem = Problem(network, image, np.zeros((args.size, args.size), dtype=np.int64), target, 2, (0.0, 1.0))
        eps = np.array([args.eps])
        times, answer = [], None
        for _ in range(args.repeats):
            B.forget(problem)
            started = time.perf_counter()
            answer = B.margin_bound(problem, eps, "crown")
            times.append(time.perf_counter() - started)
        assert answer is not None
        relus = sum(int(np.prod(op.in_shape)) for op in network.ops if type(op).__name__ in ("Relu", "LeakyRelu"))
        kinds = sorted({type(op).__name__ for op in network.ops})
        rows.append((variant, statistics.median(times), answer.bound, answer.unstable, relus, len(network.ops), kinds))
    base = rows[0][1]
    generic = rows[1][1]
    print(f"one CROWN query (top-2 margin, uniform ε = {args.eps}, {args.size}×{args.size} input, 1 thread)")
    header = f"{'net':<22} {'median s':>9} {'× chain':>8} {'× no patches':>13} {'bound':>10} {'unstable':>9}"
    print(f"{header} {'ReLUs':>6} ops")
    for variant, seconds, bound, unstable, relus, count, kinds in rows:
        print(
            f"{variant:<22} {seconds:9.3f} {seconds / base:8.2f} {seconds / generic:13.2f} {bound:10.3f} {unstable:9d} "
            f"{relus:6d} {count} ({', '.join(kinds)})"
        )


if __name__ == "__main__":
    main()
