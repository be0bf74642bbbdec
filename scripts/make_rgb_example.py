"""Regenerates examples/rgb/: a tiny RGB multi-label classifier, one canvas, its mask, its card.

Usage: nice python scripts/make_rgb_example.py [--epochs 12] [--threads 1]   (needs the `data` extra)

Why it exists: every bundled model is grayscale, so nothing exercised the RGB path end to
end (issue 19). A canvas here is 3x28x56: two real MNIST digits of different classes side by
side, each painted in its own random saturated hue on black. The hue is random, not per
class, so the network must read the strokes (colour says nothing about the label) and a
perturbation that moves the three channels of a pixel independently is a real colour attack.
Digits come from the project's fixed train/test split (`mlrobust.data.source`), so the
committed canvas uses test digits only. Deterministic for a seed; ~1 minute on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb
from PIL import Image
from torch import nn

from mlrobust.data.canvas import MASK_THRESHOLD, NUM_CLASSES
from mlrobust.data.source import DIGIT_SIZE, DigitPool, load_pools
from mlrobust.models.export import export_onnx, sha256_file, top_k_sets

OUT = Path(__file__).resolve().parents[1] / "examples" / "rgb"
SHAPE = (3, DIGIT_SIZE, 2 * DIGIT_SIZE)  # C, H, W: two 28x28 digits side by side


def build_network() -> nn.Sequential:
    """Two strided convs and one FC layer: 3,136 + 1,568 ReLUs, ~18k weights (a ~75 KB ONNX),
    so a search with attack and CROWN takes seconds."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=2, padding=1),  # 8x14x28
        nn.ReLU(),
        nn.Conv2d(8, 16, 4, stride=2, padding=1),  # 16x7x14
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 7 * 14, NUM_CLASSES),
    )


def compose_rgb(
    pool: DigitPool, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 28, 56), labels (N, 2) left then right, right-digit masks bool
    (N, 28, 56), hues (N, 2) in [0, 1)).

    Each digit is its grey intensity times a random hue (saturation 0.6-1, value 1), rounded
    to uint8 as a PNG stores it, so training sees exactly what the committed file holds."""
    rows = rng.integers(0, len(pool), size=(count, 2))
    while np.any(same := pool.labels[rows[:, 0]] == pool.labels[rows[:, 1]]):
        rows[same, 1] = rng.integers(0, len(pool), size=int(same.sum()))
    hsv = np.stack([rng.random((count, 2)), rng.uniform(0.6, 1.0, (count, 2)), np.ones((count, 2))], axis=-1)
    colours = hsv_to_rgb(hsv)  # (N, 2, 3)
    grey = pool.images[rows].astype(np.float64) / 255  # (N, 2, 28, 28)
    painted = grey[:, :, None] * colours[:, :, :, None, None]  # (N, 2, 3, 28, 28)
    images = np.concatenate([painted[:, 0], painted[:, 1]], axis=-1)  # (N, 3, 28, 56)
    masks = np.zeros((count, *SHAPE[1:]), dtype=bool)
    masks[:, :, DIGIT_SIZE:] = grey[:, 1] > MASK_THRESHOLD
    return np.round(images * 255).astype(np.uint8), pool.labels[rows], masks, hsv[..., 0]


def as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / np.float32(255))


def exact_top2(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(as_input(images)).numpy()
    return float(np.mean(np.all(top_k_sets(logits, 2) == np.sort(labels, axis=1), axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pools = load_pools()
    test_images, test_labels, _, _ = compose_rgb(pools["test"], 2000, np.random.default_rng(args.seed + 1))
    model = build_network()
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    rng, started, batch = np.random.default_rng(args.seed), time.perf_counter(), 128
    for epoch in range(args.epochs):
        images, labels, _, _ = compose_rgb(pools["train"], 16_000, rng)  # fresh canvases every epoch
        targets = np.zeros((len(labels), NUM_CLASSES), dtype=np.float32)
        np.put_along_axis(targets, labels, 1.0, axis=1)
        model.train()
        for start in range(0, len(labels), batch):
            chunk = slice(start, start + batch)
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(as_input(images[chunk])), torch.from_numpy(targets[chunk])
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        accuracy = exact_top2(model, test_images, test_labels)
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, exact top-2 {accuracy:.3f} ({seconds:.0f}s)")
    write_example(model, pools["test"], accuracy, args)


def write_example(model: nn.Module, pool: DigitPool, accuracy: float, args: argparse.Namespace) -> None:
    """The ONNX (cross-checked with onnxruntime), a test canvas the model gets right whose two
    digits have clearly different hues (the heatmap then shows what "coloured per digit" means),
    its mask, and a card."""
    OUT.mkdir(parents=True, exist_ok=True)
    images, labels, masks, hues = compose_rgb(pool, 200, np.random.default_rng(args.seed + 2))
    check = export_onnx(model, OUT / "rgb_mnist.onnx", images[:64].astype(np.float32) / 255)
    with torch.no_grad():
        logits = model(as_input(images)).numpy()
    right = np.all(top_k_sets(logits, 2) == np.sort(labels, axis=1), axis=1)
    apart = np.abs(hues[:, 0] - hues[:, 1])
    chosen = int(np.flatnonzero(right & (np.minimum(apart, 1 - apart) > 0.25))[0])
    Image.fromarray(np.moveaxis(images[chosen], 0, -1), mode="RGB").save(OUT / "canvas.png")
    Image.fromarray(masks[chosen].astype(np.uint8) * 255, mode="L").save(OUT / "mask.png")
    canvas_labels = [int(d) for d in labels[chosen]]
    card = {
        "classes": [str(d) for d in range(NUM_CLASSES)],
        "input": f"N x {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} in [0, 1] (RGB)",
        "architecture": "Conv 8@4x4 stride 2 pad 1 -> ReLU (8x14x28) -> Conv 16@4x4 stride 2 pad 1 -> ReLU "
        "(16x7x14) -> FC 1568->10",
        "training": {"script": "scripts/make_rgb_example.py", "epochs": args.epochs, "seed": args.seed},
        "evaluation": {"canvases": 2000, "exact_top2_accuracy": round(accuracy, 4), "chance": round(1 / 45, 4)},
        "canvas": {"labels": canvas_labels, "mask": "the right-hand digit"},
        "onnxruntime_max_abs_diff": check.max_abs_diff,
        "sha256": sha256_file(OUT / "rgb_mnist.onnx"),
    }
    (OUT / "rgb_mnist.card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {OUT}: canvas labels {canvas_labels}, exact top-2 {accuracy:.3f}")


if __name__ == "__main__":
    main()
