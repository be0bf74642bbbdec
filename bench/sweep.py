"""Sweep benchmark: throughput of `mlrobust sweep` against running the instances one by one.

Usage: python bench/sweep.py [--spec specs/double_mnist_pgd.mlr] [--model pgd] [--canvases 8]
                             [--executors serial process dask] [--workers 2]

Builds a sweep spec from --spec (its chain, weights and search options) over the first
--canvases test canvases of one model, then times, each into a fresh folder:
- serial: `run_instance` on each instance in this process, one after another (torch on every
  core): what a user gets from a shell loop over `mlrobust run --instance N`, without the
  per-process start-up;
- process: `mlrobust sweep` on a process pool of --workers (torch threads shared among them);
- dask: the same on a Dask LocalCluster of --workers.
Prints wall time, instances per minute and speed-up over serial, and checks that every
executor reports the same w·ε* for every instance (the search is deterministic). Then times a
rerun of the process sweep, which must reuse everything.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlrobust.spec.check import check_spec
from mlrobust.sweep import sweep

REPO = Path(__file__).resolve().parents[1]


def sweep_spec(base: Path, model: str, canvases: int, folder: Path) -> Path:
    path = folder / "bench_sweep.mlr"
    path.write_text(
        f'extends "{base.resolve()}"\n'
        f'model = "{(REPO / "models" / f"double_mnist_{model}.onnx").resolve()}"\n'
        "target = first_digit\n"
        f"sweep {{\n  canvases = rows(0, {canvases})\n}}\n"
    )
    return path


def serial(spec_path: Path, out: Path) -> tuple[float, list[float | None]]:
    from mlrobust.errors import TargetNotInTopK
    from mlrobust.run import run_instance

    checked = check_spec(spec_path)
    assert checked.spec is not None
    sizes: list[float | None] = []
    started = time.perf_counter()
    for index, instance in enumerate(checked.instances):
        try:
            sizes.append(run_instance(checked.spec, instance, out / str(index)).size)
        except TargetNotInTopK:
            sizes.append(None)
    return time.perf_counter() - started, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REPO / "specs" / "double_mnist_pgd.mlr"))
    parser.add_argument("--model", default="pgd")
    parser.add_argument("--canvases", type=int, default=8)
    parser.add_argument("--executors", nargs="+", default=["serial", "process", "dask"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        spec = sweep_spec(Path(args.spec), args.model, args.canvases, folder)
        times: dict[str, float] = {}
        sizes: dict[str, list[float | None]] = {}
        per_instance: dict[str, list[float]] = {}
        for name in args.executors:
            out = folder / name
            if name == "serial":
                times[name], sizes[name] = serial(spec, out)
                continue
            result = sweep(spec, out, executor=name, workers=args.workers)
            times[name] = result.seconds
            sizes[name] = [row.size for row in result.rows]
            per_instance[name] = [row.seconds for row in result.rows if row.seconds is not None]
            print(f"{name}: {result.count('done')} done, {result.count('skipped')} skipped", flush=True)
        rerun = None
        if "process" in args.executors:
            again = sweep(spec, folder / "process", executor="process", workers=args.workers)
            assert all(row.reused for row in again.rows), "a rerun must reuse every instance"
            rerun = again.seconds
    reference = next(iter(sizes.values()))
    agree = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)
        for other in sizes.values()
        for a, b in zip(reference, other, strict=True)
    )
    count = len(reference)
    print(f"\n{count} canvases, model double_mnist_{args.model}, spec {Path(args.spec).name}, {args.workers} workers")
    print(f"{'executor':<10}{'wall s':>9}{'per min':>9}{'speed-up':>10}{'median s/instance':>19}")
    base = times.get("serial")
    for name, seconds in times.items():
        speedup = f"{base / seconds:.2f}x" if base else "-"
        median = f"{statistics.median(per_instance[name]):.1f}" if per_instance.get(name) else "-"
        print(f"{name:<10}{seconds:>9.1f}{60 * count / seconds:>9.2f}{speedup:>10}{median:>19}")
    print(f"same w·ε* on every instance across executors: {agree}")
    if rerun is not None:
        print(f"rerun of the finished process sweep (everything reused): {rerun:.2f} s")


if __name__ == "__main__":
    main()
