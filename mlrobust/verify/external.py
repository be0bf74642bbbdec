"""`external`: any VNN-COMP-style tool, asked about our query through the files it reads.

The query is exported as an ONNX + VNN-LIB pair (vnnlib/export.py) into a fresh folder, the
tool runs with its own time limit (its whole process group is killed past it), and its result
file is read back:
- `sat` with a witness: the witness is moved into the box (float32 rounding) and re-checked
  by onnxruntime on the user's file, as every counterexample is; only then NOT_ROBUST;
- `unsat`: ROBUST only when the spec says `trusted = true` (the result names the tool), else
  UNKNOWN, with the tool's answer kept in the stats;
- anything else (timeout, unknown, a crash, no file, garbage): UNKNOWN with what happened.
A tool never crashes mlrobust and never decides alone what we cannot check.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from mlrobust.problem.problem import Problem
from mlrobust.verify.recheck import recheck, snap_into_box
from mlrobust.verify.verdict import QueryBudget, Status, Verdict
from mlrobust.vnnlib.export import Exporter, export_query
from mlrobust.vnnlib.result import MalformedResult, parse_result

GRACE = 2.0  # seconds a tool gets past its timeout to write its file before it is killed
RUNNING: set[int] = set()  # process groups of tools in flight (killed if this process is asked to stop)
TAIL = 600  # characters of the tool's stderr kept in the stats


def stop_running_tools(*_: object) -> None:
    """Kill every tool this process started and has not reaped (a SIGTERM handler calls it)."""
    for group in list(RUNNING):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    RUNNING.clear()


INTERPRETERS = ("python", "bash", "sh", "env", "uv", "conda")


def tool_name(command: str) -> str:
    """What the result calls the tool: its program, or the script an interpreter runs."""
    words = [Path(word).name for word in shlex.split(command)] if command.strip() else []
    for word in words:
        if not word.startswith(INTERPRETERS) and not word.startswith("-"):
            return word
    return words[0] if words else "?"


def arguments(command: str, onnx: Path, vnnlib: Path, result: Path, timeout: float) -> list[str]:
    """The tool's argv: placeholders filled in, or the VNN-COMP run_instance.sh arguments appended."""
    fields = {"onnx": str(onnx), "vnnlib": str(vnnlib), "result": str(result), "timeout": f"{timeout:g}"}
    words = shlex.split(command)
    if any("{" + key + "}" in word for word in words for key in fields):
        return [word.format(**fields) for word in words]
    return [*words, "v1", "mlrobust", str(onnx), str(vnnlib), str(result), f"{timeout:g}"]


def _run(argv: list[str], limit: float) -> tuple[int | None, str, bool]:
    """(exit code or None, stderr's tail, timed out); the tool gets its own process group."""
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
    )
    RUNNING.add(process.pid)
    try:
        _, errors = process.communicate(timeout=limit + GRACE)
        return process.returncode, errors.decode(errors="replace")[-TAIL:], False
    except subprocess.TimeoutExpired:
        return None, "", True
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        RUNNING.discard(process.pid)


def check(
    problem: Problem, eps: np.ndarray, budget: QueryBudget, *, command: str, timeout: float, trusted: bool, form: str
) -> Verdict:
    started = time.perf_counter()
    limit = timeout if budget.seconds is None else min(timeout, budget.seconds)
    tool = tool_name(command)
    stats: dict = {"tool": tool, "trusted": trusted, "form": form}

    def unknown(reason: str, **more: object) -> Verdict:
        stats.update(reason=reason, **more)
        return Verdict(Status.UNKNOWN, "external", None, None, seconds=time.perf_counter() - started, stats=stats)

    with tempfile.TemporaryDirectory(prefix="mlrobust-external-") as folder:
        pair = export_query(Exporter(Path(folder), limit), problem, eps, {}, (form,))[0]
        result = Path(folder) / "result.txt"
        argv = arguments(command, Path(folder) / pair.onnx, Path(folder) / pair.vnnlib, result, limit)
        try:
            code, errors, timed_out = _run(argv, limit)
        except OSError as error:
            return unknown(f"the tool could not be started: {error.strerror or error} ({argv[0]})")
        stats.update(exit_code=code, stderr=errors.strip() or None)
        if timed_out:
            return unknown(f"the tool did not finish within {limit:g} s (+{GRACE:g} s); it was stopped")
        try:
            answer = parse_result(result.read_text(errors="replace"), inputs=problem.image.size)
        except FileNotFoundError:
            return unknown(f"the tool wrote no result file (exit code {code})")
        except MalformedResult as error:
            return unknown(f"the tool's result file is not readable: {error}")
    stats["answer"] = answer.answer
    if answer.answer == "sat":
        assert answer.inputs is not None
        point = snap_into_box(problem, eps, answer.inputs.reshape(problem.image.shape))
        checked = recheck(problem, eps, point)
        stats["recheck"] = checked.reason
        if checked.confirmed:
            return Verdict(
                Status.NOT_ROBUST,
                "external",
                None,
                checked.margin,
                point,
                (point,),
                time.perf_counter() - started,
                stats,
            )
        return unknown(f"the tool said sat, but its witness is no counterexample: {checked.reason}")
    if answer.answer == "unsat":
        if trusted:
            stats["proof"] = f"unsat by {tool} (trusted = true)"
            return Verdict(Status.ROBUST, "external", None, None, seconds=time.perf_counter() - started, stats=stats)
        return unknown(f"{tool} said unsat, which counts only with trusted = true")
    return unknown(f"{tool} answered {answer.answer}")
