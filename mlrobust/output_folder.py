"""The output folder of a run or a sweep: whose it is, and who writes in it now.

A folder is written only when it is new, empty, or already an mlrobust output folder (which
is how a rerun resumes); anything else is the user's and is refused unless they pass --force.
A run or sweep holds an exclusive `flock` on `.mlrobust.lock` in its folder for as long as it
writes there, so a second one into the same folder stops at once instead of journaling every
answer twice; the kernel releases the lock when the holder dies, however it dies. The names
the tool writes must not be symbolic links: appends and writes would land in the link's target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlrobust.errors import UserError

LOCK = ".mlrobust.lock"
# every name the tool writes directly in a run's or a sweep's folder
WRITTEN = (LOCK, "journal.jsonl", "counterexamples", "result.json", "heatmap.png", "trace.png",
           "sweep.json", "results.csv", "sizes.png")  # fmt: skip
FORCE_HINT = "pass --force to write into it anyway (its files of the same names are replaced)"


class FolderInUse(UserError):
    """Another process holds the folder's lock."""


def refuse_symlinks(folder: Path) -> None:
    """A symlinked journal or counterexamples folder would send appends and writes to its target
    (another run's journal, a system file): refuse it rather than follow it."""
    for name in WRITTEN:
        entry = folder / name
        if entry.is_symlink():
            raise UserError(
                f"{entry} is a symbolic link (to {os.readlink(entry)}); mlrobust does not write through links",
                hint=f"remove the link (`rm {entry}`) or choose another folder with --out",
            )


def _schema(path: Path) -> str:
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return ""
    return str(payload.get("schema", "")) if isinstance(payload, dict) else ""


def is_ours(folder: Path) -> bool:
    """Whether the folder holds an mlrobust run or sweep (its lock file, journal, result or
    manifest): such a folder is resumed, never refused. A result.json or sweep.json counts only
    with mlrobust's schema, so another tool's file of that name is not mistaken for ours."""
    if (folder / LOCK).is_file() or (folder / "journal.jsonl").is_file():
        return True
    return _schema(folder / "result.json").startswith("mlrobust.") or _schema(folder / "sweep.json").startswith(
        "mlrobust."
    )


def check_folder(folder: Path, force: bool = False) -> None:
    """Refuse, before any work, a folder the run must not write into: a file, a symlinked entry,
    or (without `force`) a non-empty folder that is not an mlrobust output folder."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output folder {folder} is a file, not a folder", hint="choose another path with --out")
    if not folder.is_dir():
        return  # new: created when the run first writes
    refuse_symlinks(folder)
    if force or is_ours(folder):
        return
    if next(folder.iterdir(), None) is not None:
        raise UserError(
            f"the output folder {folder} is not empty and holds no mlrobust run or sweep "
            "(no journal.jsonl, result.json or sweep.json)",
            hint=f"choose a new or empty folder with --out DIR, or {FORCE_HINT}",
        )


def refuse_spec_folder(folder: Path, spec_file: Path) -> None:
    """`output = ""` (or ".") in a spec names the spec's own folder: results, plots and journals
    would be mixed with the specs, and a demanding user never means that."""
    if folder.resolve() == spec_file.resolve().parent:
        raise UserError(
            f"the spec's `output` is the spec's own folder ({folder})",
            hint='set `output = "runs/NAME"` in the spec, or choose a folder with --out DIR',
        )


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"PID {text}" if text.isdigit() else "another process"


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock (non-blocking) while the body writes there; a second run or sweep
    into the same folder raises FolderInUse naming the holder's PID. The lock file stays: removing
    it would let a third process lock a fresh file while the second still holds the old one."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if path.is_symlink():
            refuse_symlinks(folder)
        raise UserError(f"cannot open the lock file {path}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(
                f"the output folder {folder} is in use by {_holder(fd)} (another mlrobust run or sweep writing there)",
                hint="wait for it to finish or stop it, or choose another folder with --out DIR",
            ) from None
        except OSError as error:  # a file system without locks (some network mounts)
            raise UserError(
                f"cannot lock {path}: {error.strerror or error}",
                hint="choose an output folder on a local disk with --out DIR",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock (as the kernel does when the process dies)


@contextmanager
def claimed(folder: Path, force: bool = False) -> Iterator[None]:
    """check_folder, then hold the lock: what a run or a sweep does before it writes a file."""
    check_folder(folder, force)
    with locked(folder):
        refuse_symlinks(folder)  # the folder's entries as they are now, under the lock
        yield
