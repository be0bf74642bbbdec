"""A small MLP on Double-MNIST, for benchmarks where the exact MILP answers quickly.

The bundled models are CNNs with thousands of ReLUs: the MILP rarely finishes on them, so they
cannot show whether the search's maximality answers are right. This MLP (64x64 -> 64 -> 10,
64 ReLUs) is small enough for an exact MILP per query in about a second, yet trained on real
canvases (the training digit pool, canvases composed afresh each epoch) so its questions look
like the real ones. It is built on first use (about a minute on 2 cores, seed fixed) and cached
in bench/out/, which git ignores: a benchmark model, not a shipped one.

Usage: python bench/small_mlp.py [--out bench/out/double_mnist_mlp64.onnx] [--force] [--hidden 64]
(examples/thesis_style/double_mnist_mlp64.onnx is its output, committed for the thesis-style sweep there)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlrobust.data.canvas import compose
from mlrobust.data.source import load_pools
from mlrobust.models.export import export_onnx
from mlrobust.models.pgd import bce_loss

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO / "bench" / "out" / "double_mnist_mlp64.onnx"
HIDDEN = 64
EPOCHS = 40
CANVASES_PER_EPOCH = 20_000
BATCH = 128


def build_mlp(hidden: int = HIDDEN) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train_mlp(seed: int = 0, hidden: int = HIDDEN) -> nn.Sequential:
    """BCE on fresh canvases every epoch (Adam, one-cycle), as the bundled models are trained."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pool = load_pools()["train"]
    model = build_mlp(hidden)
    steps = EPOCHS * (CANVASES_PER_EPOCH // BATCH)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    for _ in range(EPOCHS):
        canvases = compose(pool, CANVASES_PER_EPOCH, rng, max_uses=10)
        inputs = torch.from_numpy(canvases.images[:, None])
        targets = torch.from_numpy(canvases.multi_hot())
        order = torch.randperm(len(inputs))
        for start in range(0, (len(inputs) // BATCH) * BATCH, BATCH):
            batch = order[start : start + BATCH]
            loss = bce_loss(model(inputs[batch]), targets[batch]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def small_mlp_path(path: Path = DEFAULT_PATH, force: bool = False, hidden: int = HIDDEN) -> Path:
    """The MLP's ONNX file, trained and exported (cross-checked with onnxruntime) if missing."""
    if path.exists() and not force:
        return path
    torch.set_num_threads(2)
    started = time.perf_counter()
    model = train_mlp(hidden=hidden)
    check_images = compose(load_pools()["test"], 16, np.random.default_rng(1)).images[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, check_images)
    print(f"trained {path.name} ({hidden} ReLUs) in {time.perf_counter() - started:.0f} s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--force", action="store_true", help="train again even if the file exists")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="ReLUs of the hidden layer")
    args = parser.parse_args()
    path = small_mlp_path(args.out, args.force, args.hidden)
    from canvases import problems

    from mlrobust.nn.network import load_network

    network, _ = load_network(path)
    asked = [problem for _, problem in problems(network, 100)]
    print(f"{path}: the target in the top 2 on {sum(p is not None for p in asked)} of {len(asked)} test canvases")


if __name__ == "__main__":
    main()
