"""Reproduces the architecture table in docs/models.md: candidates trained on fresh canvases.

Usage: python scripts/architecture_search.py CANDIDATE [--epochs 60] [--threads 1]
Candidates: A, F, I (4x4/stride-4 first conv), G8, G12, G16 (6x6/stride-4 first conv, padded).
Prints the exact top-2 set accuracy on 2,000 test canvases every 10 epochs. Needs the `data` extra.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from mlrobust.data.canvas import compose
from mlrobust.data.source import load_pools


def candidate(name: str) -> nn.Sequential:
    first = {
        "A": (16, 4, 4, 0),
        "F": (16, 4, 4, 0),
        "I": (16, 4, 4, 0),
        "G8": (8, 6, 4, 1),
        "G12": (12, 6, 4, 1),
        "G16": (16, 6, 4, 1),
    }[name]
    second = {"A": (4, 2, 1), "F": (6, 2, 2), "I": (8, 2, 3)}.get(name, (6, 2, 2))
    channels, kernel, stride, padding = first
    return nn.Sequential(
        nn.Conv2d(1, channels, kernel, stride, padding),
        nn.ReLU(),
        nn.Conv2d(channels, 32, *second),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", choices=["A", "F", "I", "G8", "G12", "G16"])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pools = load_pools()
    test = compose(pools["test"], 2000, np.random.default_rng(1))
    test_x, test_y = torch.from_numpy(test.images[:, None]), torch.from_numpy(np.sort(test.labels, axis=1))
    model = candidate(args.candidate)
    batches = 20_000 // 128
    optimiser = torch.optim.Adam(model.parameters(), 2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=args.epochs * batches)
    rng, started = np.random.default_rng(0), time.perf_counter()
    for epoch in range(args.epochs):
        canvases = compose(pools["train"], 20_000, rng, max_uses=10)
        x, y = torch.from_numpy(canvases.images[:, None]), torch.from_numpy(canvases.multi_hot())
        order = torch.randperm(len(x))
        for start in range(0, batches * 128, 128):
            index = order[start : start + 128]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[index]), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            with torch.no_grad():
                top2 = model(test_x).topk(2, dim=1).indices.sort(dim=1).values
            accuracy = (top2 == test_y).all(dim=1).float().mean().item()
            print(f"{args.candidate} epoch {epoch + 1}: {time.perf_counter() - started:.0f} s, accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
