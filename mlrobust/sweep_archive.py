"""A sweep's answers in one small file that can live in git: pack, and unpack to resume or report.

A sweep folder holds, per instance, result.json (the answer), plots and a query journal. Only
the manifest (sweep.json) and the result.json files decide what `mlrobust report` prints and
what a rerun of the sweep reuses (sweep.py: a done row with the same question and its
result.json is skipped), so an archive of those alone lets another machine, or a later
session on a fresh checkout, regenerate docs/results.md or resume a sweep that was cut short.
The plots can be redrawn and the journals only matter to an interrupted instance, which runs
again anyway. A full thesis sweep packs to a few MB; its folder is tens.

The archive is deterministic (sorted names, zero times and owners, gzip without a
timestamp): packing the same answers twice gives the same bytes, so a repository holding it
grows only when an answer changed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlrobust.errors import UserError

MANIFEST = "sweep.json"
RESULT = "result.json"
SUMMARY = "results.csv"


@dataclass(frozen=True)
class Packed:
    archive: Path
    sweeps: int
    results: int
    size: int  # bytes of the archive


@dataclass(frozen=True)
class Unpacked:
    written: tuple[Path, ...]
    kept: tuple[Path, ...]  # already there with other bytes: left alone (see `unpack`)


def _members(folder: Path) -> list[tuple[str, Path]]:
    """(name in the archive, file) of one sweep folder: its manifest, summary, and the
    result.json of every row the manifest lists (files of rows it no longer lists stay out)."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise UserError(f"{folder} is not a sweep folder: it has no {MANIFEST}", hint="pack the folder a sweep wrote")
    try:
        manifest = json.loads(manifest_file.read_text())
        rows = manifest["instances"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{manifest_file} is not a sweep manifest ({error})") from None
    members = [(f"{folder.name}/{MANIFEST}", manifest_file)]
    if (folder / SUMMARY).is_file():
        members.append((f"{folder.name}/{SUMMARY}", folder / SUMMARY))
    for row in rows:
        result = folder / str(row.get("folder", "")) / RESULT
        if row.get("status") == "done" and result.is_file():
            members.append((f"{folder.name}/{row['folder']}/{RESULT}", result))
    return members


def pack(folders: list[Path], archive: Path) -> Packed:
    """Write `archive` (.tar.gz) with each folder's answers under the folder's own name; the
    file appears whole or not at all (written beside it, then renamed)."""
    names = [folder.name for folder in folders]
    if len(set(names)) != len(names):
        raise UserError(f"two sweep folders share a name ({', '.join(names)}): the archive keys them by name")
    members = sorted((m for folder in folders for m in _members(folder)), key=lambda m: m[0])
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, path in members:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, archive)
    results = sum(1 for name, _ in members if name.endswith(f"/{RESULT}"))
    return Packed(archive, len(folders), results, archive.stat().st_size)


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise UserError(f"the archive holds {name!r}, which is not a path inside a sweep folder: refused")
    if path.name not in (MANIFEST, RESULT, SUMMARY):
        raise UserError(f"the archive holds {name!r}: a sweep archive holds only {MANIFEST}, {SUMMARY} and {RESULT}")
    return path


def unpack(archive: Path, into: Path) -> Unpacked:
    """Write the archive's files under `into` (each sweep in `into/<its name>`). A file already
    there with the same bytes is left as it is; one with other bytes is kept too (a resumed
    sweep's newer answer must not be overwritten by an older archive) and listed, so the
    caller can say so. Only regular files with the three expected names are taken."""
    if not archive.is_file():
        raise UserError(f"{archive} does not exist", hint="pack one with `python scripts/sweep_archive.py pack`")
    written: list[Path] = []
    kept: list[Path] = []
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    raise UserError(f"the archive holds {member.name!r}, which is not a regular file: refused")
                target = into / _safe_name(member.name)
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
                if target.exists():
                    if target.read_bytes() != data:
                        kept.append(target)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(data)
                os.replace(partial, target)
                written.append(target)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UserError(f"could not unpack {archive}: {error}") from None
    return Unpacked(tuple(written), tuple(kept))
