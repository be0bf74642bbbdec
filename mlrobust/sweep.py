"""`mlrobust sweep SPEC`: every instance of a spec (models × methods × cuttings × images), through
an Executor, resumable.

Each instance is one `mlrobust run` in its own folder (`OUT/<model>/<canvas or image>/`, with a
`<method>/` and a `<cutting>/` level in between when the sweep has more than one of either), with
its own result.json, plots and query journal. The sweep adds a manifest, `OUT/sweep.json`,
rewritten atomically each time an instance finishes, and a `results.csv` and `sizes.png` over
all of them.

Resuming: an instance is skipped when the manifest holds it as done for the same question (a
hash of the model, image and mask files and of everything in the spec that changes the answer)
and its result.json is still there and was not interrupted. (An instance its search budget
stopped is done: the budget is part of the question.) Anything else runs again; an instance that was
killed part-way replays its own journal, so it asks again only what was never answered.

The work goes through a `concurrent.futures.Executor`: a process pool by default, a Dask
cluster when asked (a LocalCluster of this machine, or the scheduler at an address). Workers
get the compiled spec and instance (plain dataclasses and arrays), not a path to re-check.

The sweep holds its output folder's lock while it runs (a second sweep into it stops at once)
and each worker holds its instance folder's. A pool worker dies with the sweep's process, even
a SIGKILLed one: it would otherwise go on computing results no manifest records.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import logging
import math
import os
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mlrobust.compile import as_asked, question_hashes
from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.errors import MlrobustError, TargetNotInTopK, UserError
from mlrobust.output_folder import claimed
from mlrobust.run import checked_spec, refuse_spec_output_folder, run_instance
from mlrobust.search.cutting import fixed_cutting
from mlrobust.spec.instances import Instance
from mlrobust.spec.ir import Cutting, ExplicitCutting, FixedCutting, Spec
from mlrobust.storage import atomic_write_json, atomic_write_text

SCHEMA = "mlrobust.sweep/1"
MANIFEST = "sweep.json"
EXECUTORS = ("process", "dask")
INTERRUPT_GRACE = 60.0  # seconds the running instances get, after Ctrl-C, to write their results
PARENT_POLL = 0.5  # seconds between a pool worker's checks that the sweep's process is alive
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Task:
    """What a worker needs for one instance; pickled to the worker."""

    index: int
    spec: Spec
    instance: Instance
    folder: Path
    method: str
    threads: int  # torch threads in the worker (the machine's cores shared among the workers)
    force: bool = False  # --force: the instance folder may be a non-empty folder of someone else's


@dataclass(frozen=True)
class Row:
    """One instance's line in the manifest."""

    index: int
    model: str
    image: str
    canvas: str | None
    target: int
    method: str  # the method the instance runs (`search`, `thesis-style`, …)
    cutting: str  # its cutting strategy: "fixed" | "sensitivity" | "custom" (a list of weights)
    cutting_weights: list[float] | None  # the weights: a custom list, fixed's; sensitivity's once its run is done
    folder: str  # relative to the sweep's output folder
    question: str  # sha256 of what decides the answer: a done row with this question is reused
    status: str  # "pending" | "done" | "skipped" (target not in the top k at ε = 0) | "incomplete" | "failed"
    complete: bool | None = None  # done without a budget stopping it (a budget stop is done, not complete)
    stop_reason: str | None = None
    size: float | None = None
    uniform_size: float | None = None
    verifier: str | None = None
    proved_maximal: int | None = None  # layers with a counterexample one δ out
    seconds: float | None = None
    new_queries: int | None = None
    error: str | None = None
    error_kind: str | None = None  # "user" | "internal"
    reused: bool = False  # taken from an earlier sweep without running

    @property
    def finished(self) -> bool:
        return self.status in ("done", "skipped", "failed")


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    rows: tuple[Row, ...]
    executor: str
    workers: int
    seconds: float
    interrupted: bool
    # what the folder's earlier invocations took (a sweep split into resumable parts, or
    # resumed after a kill, reports its whole wall time: `total_seconds`)
    earlier_seconds: float = 0.0
    earlier_invocations: int = 0

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    def as_json(self, spec_path: Path, method: str) -> dict[str, Any]:
        methods = list(dict.fromkeys(row.method for row in self.rows)) or [method]
        return {
            "schema": SCHEMA,
            "spec": str(spec_path),
            "method": methods[0] if len(methods) == 1 else "mixed",
            "methods": methods,
            "executor": self.executor,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "total_seconds": round(self.earlier_seconds + self.seconds, 3),
            "invocations": self.earlier_invocations + 1,
            "interrupted": self.interrupted,
            "counts": {s: self.count(s) for s in ("done", "skipped", "incomplete", "failed", "pending")},
            "models": summarise(self.rows),
            "instances": [asdict(row) for row in self.rows],
        }


def question(spec: Spec, instance: Instance, method: str) -> str:
    """A hash of everything that decides an instance's answer: the one `run` records in its
    result (compile.question_hashes), so a row and a result of the same question agree. The
    instance's sweep axes (method, cutting) win over `method` and the spec's cutting."""
    return question_hashes(spec, instance, METHOD_TABLE[method])[0]


def instance_folders(instances: list[Instance]) -> list[str]:
    """`<model stem>/<canvas id or image stem>`, with `<method>/` (as a spec writes it:
    `thesis_style`) and then `<cutting>/` (`fixed`, `sensitivity`, or `cutting-<hash8>` of a
    list) inserted before the image when the instances have more than one method, or more
    than one cutting (a sweep axis of one value adds no level). Unique: a repeated instance
    gets `-<index>`."""
    methods = {instance.method for instance in instances}
    cuttings = {instance.cutting.label if instance.cutting else None for instance in instances}
    seen: set[str] = set()
    names = []
    for index, instance in enumerate(instances):
        levels = [instance.model.stem]
        if len(methods) > 1:
            levels.append(METHOD_TABLE[instance.method].spec_name if instance.method else "spec")
        if len(cuttings) > 1:
            levels.append(instance.cutting.label if instance.cutting else "spec")
        name = "/".join([*levels, instance.canvas or instance.image_path.stem])
        if name in seen:
            name = f"{name}-{index}"
        seen.add(name)
        names.append(name)
    return names


# --- the worker side -----------------------------------------------------------------------


def _worker_setup(parent: int) -> None:
    """Ctrl-C reaches every process of the terminal's group: an idle worker stays quiet (a
    running one takes it: `_interruptible`). And the worker must not outlive the sweep's process
    `parent` (a SIGKILL gives it no chance to shut the pool down): Linux kills it when the parent
    dies (PR_SET_PDEATHSIG); a watchdog thread also ends it once its parent is gone, for
    systems without prctl and for a parent that died before prctl was set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl in this libc: the watchdog alone
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="mlrobust-parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Exit the worker at once (no cleanup: its run's journal is already fsynced) when it has
    been re-parented, i.e. the sweep's process is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


@contextmanager
def _interruptible() -> Iterator[None]:
    """While a run is in flight in a pool worker, Ctrl-C stops it (the run writes its best proved
    ε, marked incomplete). Dask runs tasks off the main thread, where signals cannot be set
    (and its workers handle Ctrl-C themselves)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_task(task: Task) -> dict[str, Any]:
    """One instance in a worker: a run, or the error it ended with (a sweep goes on past it)."""
    import torch

    torch.set_num_threads(task.threads)
    try:
        with _interruptible():
            result = run_instance(task.spec, task.instance, task.folder, method=task.method, force=task.force)
    except TargetNotInTopK as error:  # a misclassified image: nothing to prove, not a failure
        return {"status": "skipped", "error": error.message}
    except MlrobustError as error:
        kind = "user" if isinstance(error, UserError) else "internal"
        return {"status": "failed", "error": error.message, "error_kind": kind}
    except OSError as error:  # the instance's folder cannot be written (a file in its place, no space)
        where = f" {error.filename}" if error.filename else ""
        return {"status": "failed", "error": f"cannot write{where}: {error.strerror or error}", "error_kind": "user"}
    except KeyboardInterrupt:
        return {"status": "incomplete", "error": "interrupted (Ctrl-C) before a result was written"}
    except Exception as error:  # a bug in one instance must not take the sweep down
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return {"status": "failed", "error": text, "error_kind": "internal", "traceback": traceback.format_exc()}
    proved = sum(m.status == "proved_maximal" for m in result.maximality)
    return {
        "cutting_weights": [float(w) for w in result.setup.cutting],
        # a budget that stopped the search is part of the question: rerunning would not change
        # the answer (only Ctrl-C leaves an instance to resume)
        "status": "incomplete" if result.interrupted else "done",
        "complete": result.complete,
        "stop_reason": result.stop_reason,
        "size": result.size,
        "uniform_size": result.uniform_size,
        "verifier": result.verifier,
        "proved_maximal": proved,
        "seconds": result.seconds,
        "new_queries": result.new_queries,
    }


# --- the parent side -----------------------------------------------------------------------


def _previous_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """The earlier manifest's rows by instance folder (nothing if it is missing or unreadable)."""
    try:
        payload = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if payload.get("schema") != SCHEMA:
        return {}
    return {row["folder"]: row for row in payload.get("instances", []) if isinstance(row, dict) and "folder" in row}


def _earlier_time(folder: Path) -> tuple[float, int]:
    """The wall time and invocation count the folder's manifest already records (0, 0 if none)."""
    try:
        payload = json.loads((folder / MANIFEST).read_text())
        seconds = float(payload.get("total_seconds", payload.get("seconds", 0.0)))
        invocations = int(payload.get("invocations", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0, 0
    if not math.isfinite(seconds) or seconds < 0 or invocations < 0:
        return 0.0, 0
    return seconds, invocations


def _still_answered(previous: dict[str, Any] | None, row: Row, root: Path) -> dict[str, Any] | None:
    """The result.json (an empty dict for a skipped row) that still answers the row's
    question, or None when the instance must run."""
    if previous is None or previous.get("question") != row.question:
        return None
    if previous.get("status") == "skipped":
        return {}  # the model and image are the same (the question hashes them): still misclassified
    if previous.get("status") != "done":
        return None
    try:
        result = json.loads((root / row.folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not isinstance(result.get("problem"), dict):
        return None
    if result["problem"].get("question") != row.question:
        return None  # the folder holds the answer to another question (or an older result)
    if str(result.get("stop_reason", "interrupted")).startswith("interrupted"):
        return None
    return result


def _known_cutting_weights(cutting: Cutting, counts: tuple[int, ...]) -> list[float] | None:
    """The cutting weights known before the run: a custom list (flat, object by object), or
    fixed's (they depend only on each object's number of distances, `counts`: one entry under
    `union`); None for sensitivity (the run computes them from the model)."""
    if isinstance(cutting, ExplicitCutting):
        return [float(w) for w in cutting.values]
    if isinstance(cutting, FixedCutting):
        return [float(w) for w in fixed_cutting(counts)]
    return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset), not
    the machine's count. Workers that each take more torch threads than they have cores wait
    on one another at every parallel op: on this 2-core machine, a 2-thread worker beside a
    1-thread training ran its queries about 20× slower than alone."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1


def manifest_rows(spec: Spec, instances: list[Instance], root: Path, method: str) -> list[Row]:
    """Every instance's row: reused from the last manifest when still done, else pending."""
    previous = _previous_rows(root)
    rows = []
    for index, (instance, name) in enumerate(zip(instances, instance_folders(instances), strict=True)):
        asked, chosen = as_asked(spec, instance, method)
        row = Row(
            index=index,
            model=str(instance.model),
            image=str(instance.image_path),
            canvas=instance.canvas,
            target=instance.target,
            method=chosen,
            cutting=asked.cutting.name,
            cutting_weights=_known_cutting_weights(asked.cutting, instance.pixel_layers().counts),
            folder=name,
            question=question(spec, instance, method),
            status="pending",
        )
        old = previous.get(name)
        result = _still_answered(old, row, root)
        if result is not None:
            assert old is not None
            kept = ("size", "uniform_size", "verifier", "proved_maximal", "seconds", "complete", "stop_reason", "error")
            fields = {key: old.get(key) for key in kept}
            # a manifest written before rows had them: the weights from the run's own result
            weights = old.get("cutting_weights") or result.get("problem", {}).get("cutting") or row.cutting_weights
            row = replace(row, status=old["status"], reused=True, new_queries=0, cutting_weights=weights, **fields)
        rows.append(row)
    return rows


@contextmanager
def open_executor(kind: str, workers: int, scheduler: str | None) -> Iterator[tuple[Executor, int]]:
    """(executor, how many tasks it runs at once): a process pool, or a Dask client's executor
    (a LocalCluster of `workers` processes unless `scheduler` names a running cluster)."""
    if kind == "process":
        import multiprocessing

        # spawn: a forked child would inherit torch's thread pool state and can hang in it
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_setup,
            initargs=(os.getpid(),),
        )
        try:
            yield pool, workers
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    if kind != "dask":
        raise UserError(f"unknown executor {kind!r}", hint=f"choose one of: {', '.join(EXECUTORS)}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError(
            "the dask executor needs the `distributed` package, which is not installed",
            hint='install it with `pip install -e ".[dask]"`, or use --executor process',
        ) from None
    import dask

    if scheduler is None:
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which also turns off glibc's
        # adaptive mmap threshold: every large torch buffer is then mmapped and faulted in
        # afresh, and a run took twice as long (most of it system time). Unset it.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
    else:
        cluster = None
    try:
        try:
            client = Client(cluster if cluster is not None else scheduler, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise UserError(
                f"cannot reach the Dask scheduler at {scheduler}: {error}",
                hint="start one with `dask scheduler` and `dask worker ADDRESS`, or leave out --scheduler",
            ) from None
        slots = workers if cluster is not None else max(1, sum(client.nthreads().values()))
        try:
            yield client.get_executor(pure=False), slots
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


Listener = Callable[[Row, "SweepProgress"], None]


@dataclass(frozen=True)
class SweepProgress:
    finished: int
    total: int
    running: int
    elapsed: float


def sweep(
    spec_path: Path | str,
    out: Path | None = None,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    method: str | None = None,
    listener: Listener | None = None,
    on_plan: Callable[[list[Row], int], None] | None = None,
    force: bool = False,
) -> SweepResult:
    """Run every instance not already done; the manifest is rewritten as each one finishes.
    `force` (the CLI's --force) writes into a non-empty folder that holds no mlrobust output."""
    started = time.perf_counter()
    spec, instances, chosen = checked_spec(spec_path, method)
    if out is None:
        refuse_spec_output_folder(spec)
    root = (out or spec.output).resolve()
    with claimed(root, force):
        return _sweep(spec_path, spec, instances, chosen, root, executor, workers, scheduler, listener, on_plan,
                      force, started)  # fmt: skip


def _sweep(
    spec_path: Path | str,
    spec: Spec,
    instances: list[Instance],
    chosen: str,
    root: Path,
    executor: str,
    workers: int | None,
    scheduler: str | None,
    listener: Listener | None,
    on_plan: Callable[[list[Row], int], None] | None,
    force: bool,
    started: float,
) -> SweepResult:
    earlier = _earlier_time(root)
    rows = manifest_rows(spec, instances, root, chosen)
    todo = [row for row in rows if not row.reused]
    cores = usable_cores()
    count = max(1, min(workers or cores, len(todo) or 1))
    # torch threads per run: this machine's cores shared by the local workers (a remote
    # cluster's tasks take one thread each, the threads its workers were started with)
    threads = 1 if scheduler else max(1, cores // count)
    if on_plan is not None:
        on_plan(rows, count)
    _write_manifest(root, rows, spec_path, chosen, executor, count, time.perf_counter() - started, False, earlier)
    interrupted = False

    def record(row: Row, future: Future[dict[str, Any]], running: int) -> None:
        finished = _finished_row(row, future)
        rows[finished.index] = finished
        elapsed = time.perf_counter() - started
        _write_manifest(root, rows, spec_path, chosen, executor, count, elapsed, False, earlier)
        if listener is not None:
            listener(finished, SweepProgress(sum(r.finished for r in rows), len(rows), running, elapsed))

    if todo:
        with open_executor(executor, count, scheduler) as (pool, slots):
            count = slots
            # at most `slots` instances in flight: after Ctrl-C nothing queued is left to start
            queue = iter(todo)
            in_flight: dict[Future[dict[str, Any]], Row] = {}

            def submit_next() -> None:
                row = next(queue, None)
                if row is None:
                    return
                task = Task(row.index, spec, instances[row.index], root / row.folder, row.method, threads, force)
                try:
                    in_flight[pool.submit(run_task, task)] = row
                except BrokenExecutor:  # a worker died (killed, out of memory): the rest stay pending
                    for _ in queue:
                        pass

            for _ in range(slots):
                submit_next()
            try:
                while in_flight:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(in_flight.pop(future), future, len(in_flight))
                        submit_next()
            except KeyboardInterrupt:
                interrupted = True
                # the running instances got Ctrl-C too: each ends soon and writes what it proved
                try:
                    done, _ = wait(in_flight, timeout=INTERRUPT_GRACE)
                    for future in done:
                        record(in_flight.pop(future), future, 0)
                except KeyboardInterrupt:
                    pass
    result = SweepResult(root, tuple(rows), executor, count, time.perf_counter() - started, interrupted, *earlier)
    _write_manifest(root, rows, spec_path, chosen, executor, count, result.seconds, interrupted, earlier)
    write_tables(result)
    return result


def _finished_row(row: Row, future: Future[dict[str, Any]]) -> Row:
    try:
        outcome = future.result()
    except Exception as error:  # the worker itself died (killed, out of memory) or could not unpickle
        outcome = {
            "status": "failed",
            "error": f"worker lost: {type(error).__name__}: {error}",
            "error_kind": "internal",
        }
    outcome.pop("traceback", None)
    return replace(row, **outcome)


def _write_manifest(
    root: Path,
    rows: list[Row],
    spec_path: Path | str,
    method: str,
    executor: str,
    workers: int,
    seconds: float,
    stop: bool,
    earlier: tuple[float, int] = (0.0, 0),
) -> None:
    result = SweepResult(root, tuple(rows), executor, workers, seconds, stop, *earlier)
    atomic_write_json(root / MANIFEST, result.as_json(Path(spec_path).resolve(), method))


def group_key(row: Row) -> tuple[str, str, str, tuple[float, ...] | None]:
    """What a summary group shares: the model, the method and the cutting (a custom cutting's
    weights too: two lists are two groups)."""
    custom = tuple(row.cutting_weights) if row.cutting == "custom" and row.cutting_weights else None
    return row.model, row.method, row.cutting, custom


def summarise(rows: tuple[Row, ...] | list[Row]) -> list[dict[str, Any]]:
    """Per (model, method, cutting), in the rows' order: how many instances ended how, and
    medians over the done ones."""
    groups: dict[tuple[str, str, str, tuple[float, ...] | None], list[Row]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    summary = []
    for (model, method, cutting, custom), group in groups.items():
        done = [r for r in group if r.status == "done"]
        sizes = [r.size for r in done if r.size is not None]
        ratios = [r.size / r.uniform_size for r in done if r.size is not None and r.uniform_size]
        times = sorted(r.seconds for r in done if r.seconds is not None)
        summary.append(
            {
                "model": model,
                "method": method,
                "cutting": cutting,
                "cutting_weights": list(custom) if custom is not None else None,
                "instances": len(group),
                "done": len(done),
                "skipped": sum(r.status == "skipped" for r in group),
                "failed": sum(r.status == "failed" for r in group),
                "incomplete": sum(r.status == "incomplete" for r in group),
                "median_size": statistics.median(sizes) if sizes else None,
                "median_size_over_uniform": statistics.median(ratios) if ratios else None,
                "median_seconds": statistics.median(times) if times else None,
                "p90_seconds": times[min(len(times) - 1, math.floor(0.9 * len(times)))] if times else None,
                "proved_maximal_layers": sum(r.proved_maximal or 0 for r in done),
            }
        )
    return summary


CSV_COLUMNS = ("index", "model", "canvas", "image", "target", "status", "size", "uniform_size", "verifier",
               "proved_maximal", "seconds", "new_queries", "reused", "error", "folder",
               "method", "cutting")  # fmt: skip


def group_names(rows: tuple[Row, ...] | list[Row]) -> dict[tuple[str, str, str, tuple[float, ...] | None], str]:
    """A short name per summary group, for the plot and the console: the model's stem, then,
    when the sweep has more than one, the method and the cutting (a custom one by its folder
    name's `cutting-<hash8>`), one per line."""
    keys = list(dict.fromkeys(group_key(row) for row in rows))
    methods = {key[1] for key in keys}
    cuttings = {(key[2], key[3]) for key in keys}
    names: dict[tuple[str, str, str, tuple[float, ...] | None], str] = {}
    for key in keys:
        model, method, cutting, custom = key
        parts = [Path(model).stem]
        if len(methods) > 1:
            parts.append(method)
        if len(cuttings) > 1:
            parts.append(ExplicitCutting(custom).label if custom is not None else cutting)
        names[key] = "\n".join(parts)
    return names


def write_tables(result: SweepResult) -> None:
    """results.csv (one line per instance, for spreadsheets) and sizes.png (w·ε* per model, or
    per (model, method, cutting) when the sweep has more than one method or cutting)."""
    from mlrobust.report.plots import sweep_sizes

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows:
        values = asdict(row)
        values["model"] = Path(row.model).name
        values["image"] = Path(row.image).name
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    atomic_write_text(result.folder / "results.csv", buffer.getvalue())
    names = group_names(result.rows)
    groups: dict[str, list[float]] = {}
    for row in result.rows:
        if row.status == "done" and row.size is not None:
            groups.setdefault(names[group_key(row)], []).append(row.size)
    if groups:
        sweep_sizes(result.folder / "sizes.png", groups, f"{sum(map(len, groups.values()))} instances done")
