"""`mlrobust data build`: Double-MNIST canvases, masks and an index, written to a folder.

Layout under OUT: `index.json`, and per split `images/NNNN.png` (8-bit grayscale; pixel/255
is the canvas value exactly, since MNIST digits are integers 0..255) and `masks/NNNN_S.png`
(0 or 255) for digit slot S = 0, 1 (and 2 for Triple-MNIST, `--digits 3`: 84x84 canvases).
Bytes are a function of the seed and the counts: the train
and test streams come from independent children of the seed, so changing --train does not
change the test canvases.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlrobust.data.canvas import CANVAS_SIZES, MASK_THRESHOLD, CanvasBatch, compose, max_canvases
from mlrobust.data.index import INDEX_FILE, INDEX_FORMAT
from mlrobust.data.source import DIGIT_SIZE, SPLIT_SEED, Split, load_pools
from mlrobust.errors import UserError
from mlrobust.storage import atomic_write_bytes, atomic_write_json

DEFAULT_MAX_USES = 4


def png_bytes(array: np.ndarray) -> bytes:
    """A deterministic 8-bit grayscale PNG of a (H, W) uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mlrobust-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"cannot write to output folder {out}: {error.strerror or error}",
            hint="choose a writable folder with --out",
        ) from error


def _write_split(out: Path, split: Split, batch: CanvasBatch) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i in range(len(batch)):
        stem = f"{i:04d}"
        image_rel = f"{split}/images/{stem}.png"
        pixels = np.rint(batch.images[i] * 255).astype(np.uint8)
        atomic_write_bytes(out / image_rel, png_bytes(pixels))
        objects = []
        for slot in range(batch.labels.shape[1]):
            mask_rel = f"{split}/masks/{stem}_{slot}.png"
            mask = batch.masks[i, slot]
            atomic_write_bytes(out / mask_rel, png_bytes(mask.astype(np.uint8) * 255))
            objects.append(
                {
                    "label": int(batch.labels[i, slot]),
                    "mask": mask_rel,
                    "position": [int(v) for v in batch.positions[i, slot]],
                    "source_index": int(batch.source_ids[i, slot]),
                    "mask_pixels": int(mask.sum()),
                }
            )
        entries.append(
            {
                "id": f"{split}/{stem}",
                "split": split,
                "image": image_rel,
                "labels": [int(v) for v in batch.labels[i]],
                "objects": objects,
            }
        )
    return entries


def build_dataset(
    out: Path, seed: int, train: int, test: int, max_uses: int = DEFAULT_MAX_USES, digits: int = 2
) -> dict[str, Any]:
    """Build the canvases and write them; returns the index that was written. A two-digit
    index is exactly what it was before Triple-MNIST (no `digits` key), so its bytes stay."""
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    if train < 0 or test < 0 or train + test == 0:
        raise UserError("ask for at least one canvas: --train N and/or --test N with N >= 0")
    if max_uses < 1:
        raise UserError(f"--max-uses must be at least 1, got {max_uses}")
    if digits not in CANVAS_SIZES:
        raise UserError(f"--digits must be one of {', '.join(map(str, CANVAS_SIZES))}, got {digits}")
    pools = load_pools()
    for split, count in (("train", train), ("test", test)):
        limit = max_canvases(len(pools[split]), max_uses, digits)  # type: ignore[index]
        if count > limit:
            raise UserError(
                f"asked for {count} {split} canvases, but the {split} pool has {len(pools[split])} digits "  # type: ignore[index]
                f"and each may appear in at most {max_uses} canvases (at most {limit})",
                hint="ask for fewer canvases or raise --max-uses",
            )
    ensure_writable(out)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    entries: list[dict[str, Any]] = []
    counts = {}
    for split, count, seq in (("train", train, train_seq), ("test", test, test_seq)):
        counts[split] = count
        if count:
            batch = compose(pools[split], count, np.random.default_rng(seq), max_uses, digits)  # type: ignore[index]
            entries += _write_split(out, split, batch)  # type: ignore[arg-type]
    index = {
        "format": INDEX_FORMAT,
        "seed": seed,
        **({} if digits == 2 else {"digits": digits}),
        "canvas_size": CANVAS_SIZES[digits],
        "digit_size": DIGIT_SIZE,
        "mask_threshold": MASK_THRESHOLD,
        "split_seed": SPLIT_SEED,
        "max_uses": max_uses,
        "pools": {split: {"digits": len(pool), "sha256": pool.sha256()} for split, pool in pools.items()},
        "counts": counts,
        "canvases": entries,
    }
    atomic_write_json(out / INDEX_FILE, index)
    return index
