"""The spec mutation fuzzer (bench/fuzz_specs.py): bad specs end in exit 0 or 1, never exit 2 or a
hang. 50 mutants by default, 600 in the slow set; and the harness itself counts what it should."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import REPO

sys.path.append(str(REPO / "bench"))  # a spawned fuzz worker imports the module by this name too
import fuzz_specs


def _failures(tally: fuzz_specs.Tally) -> str:
    return "\n".join(f"{o.mutant.name} {o.mutant.operators}: {o.result}\n{o.detail[-800:]}" for o in tally.failures)


def test_mutants_are_deterministic_and_use_every_operator() -> None:
    first, again = fuzz_specs.make_mutants(40, seed=3), fuzz_specs.make_mutants(40, seed=3)
    assert first == again
    assert fuzz_specs.make_mutants(40, seed=4) != first
    used = {op for mutant in fuzz_specs.make_mutants(500) for op in mutant.operators}
    assert used >= set(fuzz_specs.OPERATORS) | {"extends-chain", "extends-odd"}


def test_the_harness_counts_hangs_crashes_and_dead_workers(tmp_path: Path) -> None:
    """A hang must be counted as a timeout (and the worker replaced), not hang the fuzzer."""
    cases = {"ok": "fine", "user": "user error", "hang": "hang", "crash": "crash", "die": "die", "after": "fine"}
    mutants = [fuzz_specs.Mutant(name, (), {fuzz_specs.MAIN: text.encode()}) for name, text in cases.items()]
    tally = fuzz_specs.run_mutants(mutants, timeout=5, entry="fuzz_specs:selftest_main")
    assert [o.result for o in tally.outcomes] == ["0", "1", "timeout", "2", "2", "0"]
    assert "RecursionError" in tally.outcomes[3].detail and "worker died" in tally.outcomes[4].detail
    assert tally.table().splitlines()[1].split() == ["6", "2", "1", "2", "1"]


def _fuzz(count: int) -> None:
    tally = fuzz_specs.run_mutants(fuzz_specs.make_mutants(count), timeout=60)
    assert Path(tally.mlrobust) == REPO / "mlrobust"  # this checkout's code was fuzzed
    assert len(tally.outcomes) == count
    assert tally.count("2") == 0 and tally.count("timeout") == 0, _failures(tally)
    assert tally.count("1") > count // 2  # the mutants do reach the checks (most are refused)


def test_50_mutants_never_exit_2_or_hang() -> None:
    _fuzz(50)


@pytest.mark.slow
def test_600_mutants_never_exit_2_or_hang() -> None:
    _fuzz(600)
