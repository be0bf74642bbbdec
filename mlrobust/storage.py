"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    """Stable JSON (sorted keys, 2-space indent, trailing newline) written atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def file_sha256(path: Path | None) -> str | None:
    """The file's sha256 (hex), for provenance and for telling whether an input changed; None
    when there is no such file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.exists() else None


def save_counterexample(folder: Path, point: Any) -> Path:
    """Write a counterexample as the model takes it, (1, C, H, W) float32 `.npy`, named by its
    content's hash (the same point is one file), atomically; returns its path."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(point, dtype=np.float32)[None], allow_pickle=False)
    data = buffer.getvalue()
    path = folder / f"counterexample-{hashlib.sha256(data).hexdigest()[:16]}.npy"
    atomic_write_bytes(path, data)
    return path
