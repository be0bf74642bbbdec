"""A sweep read back for `mlrobust report`: its manifest and every done instance's result.json.

The report is made from these files alone, so a sweep folder copied elsewhere (or committed)
can be reported again. Nothing is dropped: an instance that failed, was skipped, is still
pending, or whose result.json is gone is kept with its status and reason, and the report lists it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from mlrobust.errors import UserError

MANIFEST = "sweep.json"
SCHEMA = "mlrobust.sweep/1"
RESULT_SCHEMA = "mlrobust.run/1"
NEAR_LAYERS = (1, 2, 3)  # "near" layers in the explanations: the ring just around the object

# A layer as the report groups it across instances: (object, distance). The object is None
# under `layers = union`, where the layer index is the distance; under `per_object` the same
# index means different (object, distance) pairs on different canvases, so indices never mix.
LayerKey = tuple[int | None, int]


@dataclass(frozen=True)
class VerifierUse:
    runs: int
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """One instance of the sweep: its row, and what its result.json says when it is done."""

    index: int  # the row's index in its sweep
    sweep: str  # the sweep's folder name (several sweeps can be reported together)
    model: str  # the model file's stem
    method: str
    cutting: str  # `fixed`, `sensitivity` or `custom`
    where: str  # the canvas id, or the image's file name
    status: str  # the row's status; `missing` when a done row's result.json is gone or unreadable
    reason: str | None  # why it is not done (the row's error, or what is wrong with its result)
    target: int | None
    perturbed_label: int | None = None
    size: float | None = None
    uniform_size: float | None = None
    eps: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    refuted: tuple[float | None, ...] = ()
    maximality: tuple[str, ...] = ()
    seconds: float | None = None
    complete: bool | None = None
    cuts: int = 0  # CEGIS cuts the search made (queries with purpose `expand (CEGIS cut n)`)
    verifiers: dict[str, VerifierUse] = field(default_factory=dict)
    image: str | None = None  # as result.json records it (an absolute path on the machine that ran it)
    mask: str | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    labels: tuple[LayerKey, ...] = ()  # per entry of eps, its (object, distance); () under union
    image_sha256: str | None = None
    mask_sha256: str | None = None
    home: Path | None = None  # the sweep folder it was read from

    @cached_property
    def picture_files(self) -> tuple[str | None, str | None]:
        """(image, mask) found on this machine (`locate`), on demand: only the heatmap grid's
        canvases need them, so a report does not hash every instance's files."""
        home = self.home if self.home is not None else Path.cwd()
        return locate(self.image, self.image_sha256, home), locate(self.mask, self.mask_sha256, home)

    @cached_property
    def layers(self) -> tuple[LayerKey, ...]:
        """Per entry of eps, its (object, distance): under union (no labels), (None, index)."""
        return self.labels or tuple((None, d) for d in range(len(self.eps)))

    @cached_property
    def layer_index(self) -> dict[LayerKey, int]:
        """Where each (object, distance) sits in eps: the report looks every layer up by key."""
        return {key: index for index, key in enumerate(self.layers)}

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.model, self.method, self.cutting)


@dataclass(frozen=True)
class SweepRun:
    """One sweep folder's manifest: what ran and how long its last invocation took."""

    folder: Path
    spec: str
    executor: str
    workers: int
    seconds: float  # the wall time of every invocation into the folder (its resumable parts)
    invocations: int
    interrupted: bool


@dataclass(frozen=True)
class SweepData:
    """One or more sweeps reported together (e.g. the main sweep and a baseline's on fewer canvases)."""

    sweeps: tuple[SweepRun, ...]
    outcomes: tuple[Outcome, ...]

    def models(self) -> list[str]:
        return _in_order(o.model for o in self.outcomes)

    def methods(self) -> list[str]:
        return _in_order(o.method for o in self.outcomes)

    def cuttings(self) -> list[str]:
        return _in_order(o.cutting for o in self.outcomes)

    def done(self, model: str | None = None, method: str | None = None, cutting: str | None = None) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if o.done
            and (model is None or o.model == model)
            and (method is None or o.method == method)
            and (cutting is None or o.cutting == cutting)
        ]


def _in_order(values: Any) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise UserError(
            f"no {what} at {path}", hint="give the folder `mlrobust sweep` wrote (it holds sweep.json)"
        ) from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from error
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a JSON object")
    return raw


def load_sweeps(folders: list[Path]) -> SweepData:
    runs, outcomes = [], []
    seen: dict[tuple[str, str, str, str], str] = {}
    for folder in folders:
        run, found = load_sweep(folder)
        runs.append(run)
        for o in found:
            key = (*o.group, o.where)
            if key in seen and seen[key] != o.sweep:
                raise UserError(
                    f"{o.model} ({o.method}, {o.cutting} cutting) on {o.where} is in two sweeps:"
                    f" {seen[key]} and {o.sweep}",
                    hint="report sweeps that ask different questions (other models, methods or cuttings)",
                )
            seen[key] = o.sweep
        outcomes.extend(found)
    return SweepData(tuple(runs), tuple(outcomes))


def load_sweep(folder: Path) -> tuple[SweepRun, list[Outcome]]:
    manifest = _read_json(folder / MANIFEST, "sweep manifest")
    if manifest.get("schema") != SCHEMA:
        raise UserError(f"{folder / MANIFEST} has schema {manifest.get('schema')!r}, expected {SCHEMA!r}")
    rows = manifest.get("instances")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{folder / MANIFEST} lists no instances")
    try:
        run = SweepRun(
            folder=folder,
            spec=str(manifest["spec"]),
            executor=str(manifest.get("executor", "process")),
            workers=int(manifest.get("workers", 1)),
            seconds=float(manifest.get("total_seconds", manifest.get("seconds", 0.0))),
            invocations=int(manifest.get("invocations", 1)),
            interrupted=bool(manifest.get("interrupted", False)),
        )
        return run, [_outcome(folder, row, manifest) for row in rows]
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{folder / MANIFEST} is not a sweep manifest this version reads: {error!r}") from error


def _outcome(folder: Path, row: dict[str, Any], manifest: dict[str, Any]) -> Outcome:
    where = row.get("canvas") or Path(row["image"]).name
    base = Outcome(
        index=int(row["index"]),
        sweep=folder.name,
        model=Path(row["model"]).stem,
        method=str(row.get("method") or manifest.get("method") or "search"),
        cutting=str(row.get("cutting") or "fixed"),
        where=str(where),
        status=str(row["status"]),
        reason=row.get("error"),
        target=row.get("target"),
        seconds=row.get("seconds"),
    )
    if not base.done:
        return base
    path = folder / row["folder"] / "result.json"
    try:
        result = json.loads(path.read_text())
        if result.get("schema") != RESULT_SCHEMA:
            raise ValueError(f"schema {result.get('schema')!r}")
        return _with_result(base, result, folder)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        missing = isinstance(error, FileNotFoundError)
        reason = "result.json is missing" if missing else f"result.json unreadable: {error}"
        return replace(base, status="missing", reason=reason)


def locate(recorded: str | None, sha256: str | None, folder: Path) -> str | None:
    """The file a result.json names (its canvas image or mask), found again when the checkout
    moved: result.json records absolute paths, so a sweep unpacked from docs/results/ on another
    machine or at another path names files that are not there. Then the same path's tail is
    tried under the sweep folder and every folder above it, and a candidate counts only when
    its bytes match the recorded sha256: a report never draws another picture than the one the
    run verified. None when no such file is found."""
    if recorded is None:
        return None
    path = Path(recorded)
    if _holds(path, sha256):
        return recorded
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for base in (folder.resolve(), *folder.resolve().parents):
        for start in range(len(parts)):
            candidate = base.joinpath(*parts[start:])
            if _holds(candidate, sha256):
                return str(candidate)
    return None


def _holds(path: Path, sha256: str | None) -> bool:
    from mlrobust.storage import file_sha256

    try:
        return path.is_file() and (sha256 is None or file_sha256(path) == sha256)
    except OSError:  # unreadable (permissions, a vanished mount): not the file, keep looking
        return False


def _with_result(base: Outcome, result: dict[str, Any], folder: Path) -> Outcome:
    problem = result["problem"]
    layers = result.get("maximality") or []
    verifiers = {
        name: VerifierUse(int(use.get("runs", 0)), float(use.get("seconds", 0.0)))
        for name, use in sorted((result.get("verifiers") or {}).items())
    }
    cuts = sum(1 for q in result.get("queries") or [] if str(q.get("purpose", "")).startswith("expand (CEGIS cut"))
    lo, hi = problem.get("range", [0.0, 1.0])
    eps = tuple(float(v) for v in result["eps"])
    given = problem.get("layer_labels")  # null under union (older results: absent)
    labels = tuple((int(o), int(d)) for o, d in given) if given else ()
    if labels and len(labels) != len(eps):
        raise ValueError(f"{len(labels)} layer labels for {len(eps)} layers")
    return replace(
        base,
        target=int(problem["target"]) if problem.get("target") is not None else None,  # keep_predicted: none
        perturbed_label=problem.get("perturbed_label"),
        size=float(result["size"]),
        uniform_size=float(result["uniform_size"]) if result.get("uniform_size") is not None else None,
        eps=eps,
        labels=labels,
        weights=tuple(float(v) for v in problem["weights"]),
        refuted=tuple((float(layer["refuted"]) if layer.get("refuted") is not None else None) for layer in layers),
        maximality=tuple(str(layer.get("status")) for layer in layers),
        seconds=float(result.get("seconds", base.seconds or 0.0)),
        complete=result.get("complete"),
        cuts=cuts,
        verifiers=verifiers,
        image=problem.get("image"),
        mask=problem.get("mask"),
        image_sha256=problem.get("image_sha256"),
        mask_sha256=problem.get("mask_sha256"),
        home=folder,
        value_range=(float(lo), float(hi)),
    )
