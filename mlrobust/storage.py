"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file gets the mode a plain `open` would give it (0666 less the umask: 0644 as a rule),
not mkstemp's 0600, so result.json, the plots and the journal of a run share one mode.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from mlrobust.errors import UserError

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc), else by the
    set-and-restore dance (under a lock: the umask is process-wide)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`; `mode`
    (default: what a plain open gives) e.g. keeps a rewritten file's own permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp's 0600, made what a plain open gives (or the mode asked for)
            os.fchmod(handle.fileno(), 0o666 & ~_umask() if mode is None else mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, payload: Any) -> None:
    """Stable JSON (sorted keys, 2-space indent, trailing newline) written atomically. A NaN or
    an infinity (a margin bound of -inf, say) is written as null: strict JSON parsers reject
    `Infinity`, and lint keeps the numbers a user chooses (weights, range) finite."""
    atomic_write_text(path, json.dumps(_finite(payload), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def file_sha256(path: Path | None) -> str | None:
    """The file's sha256 (hex), for provenance and for telling whether an input changed; None
    when there is no such file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.exists() else None


def save_counterexample(folder: Path, point: Any) -> Path:
    """Write a counterexample as the model takes it, (1, C, H, W) float32 `.npy`, named by its
    content's hash (the same point is one file), atomically; returns its path. A `folder` that is
    a symlink is refused: the point would be written into the link's target."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(point, dtype=np.float32)[None], allow_pickle=False)
    data = buffer.getvalue()
    if folder.is_symlink():
        raise UserError(
            f"{folder} is a symbolic link; mlrobust does not write counterexamples through links",
            hint=f"remove the link (`rm {folder}`) or choose another folder with --out",
        )
    path = folder / f"counterexample-{hashlib.sha256(data).hexdigest()[:16]}.npy"
    atomic_write_bytes(path, data)
    return path
