"""VNN-COMP result files: the first line is `sat`, `unsat`, `timeout` or `unknown` (some tools
write `violated` / `holds` / `error`), and a `sat` is followed by the witness
`((X_0 v) (X_1 v) … (Y_0 v) …)`. Written by `mlrobust verify`; read back for an external
verifier's answer (never trusted without a re-check, see verify/external.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlrobust.storage import atomic_write_text

ANSWERS = ("sat", "unsat", "timeout", "unknown")
SYNONYMS = {"violated": "sat", "holds": "unsat", "error": "unknown"}
_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)")


@dataclass(frozen=True)
class ResultFile:
    answer: str  # one of ANSWERS
    inputs: np.ndarray | None = None  # the witness's X, for sat (flattened)
    outputs: np.ndarray | None = None  # its Y, as the tool reported them


def format_result(answer: str, inputs: np.ndarray | None = None, outputs: np.ndarray | None = None) -> str:
    """The file's text; values are written exactly (repr of each float)."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}")
    if answer != "sat" or inputs is None:
        return f"{answer}\n"
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.ravel(inputs))]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.ravel(outputs if outputs is not None else []))]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def write_result(path: Path, answer: str, inputs: np.ndarray | None = None, outputs: np.ndarray | None = None) -> None:
    atomic_write_text(path, format_result(answer, inputs, outputs))


class MalformedResult(ValueError):
    """A result file that says nothing we can read."""


def parse_result(text: str, inputs: int | None = None, witness: bool = True) -> ResultFile:
    """The answer and, for sat, the witness. Raises MalformedResult on garbage: an unknown first
    line, or a sat without every X_i of the property (when `inputs` is given). `witness=False`
    takes a bare `sat` (a benchmark comparing answers; a verifier never does)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise MalformedResult("the result file is empty")
    first = lines[0].lower()
    answer = SYNONYMS.get(first, first)
    if answer not in ANSWERS:
        raise MalformedResult(f"the first line is {lines[0][:80]!r}, not one of {', '.join(ANSWERS)}")
    if answer != "sat" or (not witness and len(lines) == 1):
        return ResultFile(answer)
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for kind, index, value in _PAIR.findall("\n".join(lines[1:])):
        values[kind][int(index)] = float(value)
    xs = values["X"]
    count = inputs if inputs is not None else (max(xs) + 1 if xs else 0)
    if count == 0 or sorted(xs) != list(range(count)):
        missing = sorted(set(range(count)) - set(xs))[:5]
        raise MalformedResult(f"a sat without a full witness (missing X_{missing[0] if missing else '?'} …)")
    ys = values["Y"]
    outputs = np.array([ys[j] for j in sorted(ys)]) if ys and sorted(ys) == list(range(len(ys))) else None
    return ResultFile("sat", np.array([xs[i] for i in range(count)]), outputs)
