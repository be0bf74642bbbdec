"""A VNN-COMP-style tool for the tests: `fake_verifier.py MODE v1 CATEGORY ONNX VNNLIB RESULT TIMEOUT`.

MODE: falsify (sample the box with onnxruntime; sat with a witness, else unknown), unsat (always
unsat: a tool that lies), garbage, crash (no file, exit 3), hang (sleeps, with a child that
sleeps too; both pids are appended to $FAKE_VERIFIER_PIDS when set), bad-witness (sat with the
box's centre, which is safe).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    mode, _, _, onnx, vnnlib, result, _timeout = sys.argv[1:8]
    out = Path(result)
    if mode == "crash":
        return 3
    if mode == "garbage":
        out.write_text("perhaps\n")
        return 0
    if mode == "unsat":
        out.write_text("unsat\n")
        return 0
    if mode == "hang":
        child = subprocess.Popen(["sleep", "1000"])
        if os.environ.get("FAKE_VERIFIER_PIDS"):  # the test checks these were killed with the tool
            with open(os.environ["FAKE_VERIFIER_PIDS"], "a") as pids:
                pids.write(f"{os.getpid()}\n{child.pid}\n")
        time.sleep(1000)
        return 0
    import onnxruntime

    from mlrobust.vnnlib.parse import load_vnnlib
    from mlrobust.vnnlib.result import write_result

    prop = load_vnnlib(Path(vnnlib))
    session = onnxruntime.InferenceSession(onnx)
    declared = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in declared.shape]
    rng = np.random.default_rng(0)
    for case in prop.cases:
        centre = (case.lower + case.upper) / 2
        if mode == "bad-witness":
            outputs = session.run(None, {declared.name: centre.astype(np.float32).reshape(shape)})[0].ravel()
            write_result(out, "sat", centre, outputs)
            return 0
        points = case.lower + rng.uniform(size=(200, case.lower.size)) * (case.upper - case.lower)
        points = np.concatenate([points, np.where(rng.uniform(size=points.shape) < 0.5, case.lower, case.upper)])
        for point in points.astype(np.float32):
            outputs = session.run(None, {declared.name: point.reshape(shape)})[0].ravel().astype(np.float64)
            values = case.rows @ outputs + case.offsets
            if any(all(values[r] >= 0 for r in term) for term in case.terms):
                write_result(out, "sat", point.astype(np.float64), outputs)
                return 0
    out.write_text("unknown\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
