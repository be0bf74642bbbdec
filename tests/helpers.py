"""Shared test helpers: repository paths and a real-subprocess CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "double_mnist"
MODELS = REPO / "models"
MODEL_NAMES = ("double_mnist_none", "double_mnist_l0", "double_mnist_pgd")


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path = REPO) -> CliResult:
    """Run `python -m mlrobust ARGS` in a real subprocess, so exit codes are the real ones."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mlrobust", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    return CliResult(done.returncode, done.stdout, done.stderr)
