"""Golden specs: valid ones format to their canonical twin and check clean; invalid ones
produce exactly the diagnostics written in their `# expect: code [file:]line:col` lines."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mlrobust.spec.check import check_spec
from mlrobust.spec.format import format_spec

from .helpers import REPO

SPECS = REPO / "tests" / "specs"
VALID = sorted(p for p in (SPECS / "valid").glob("*.mlr") if not p.name.endswith(".canonical.mlr"))
INVALID = sorted(p for p in (SPECS / "invalid").rglob("*.mlr") if "# expect:" in p.read_text())
EXPECT = re.compile(r"# expect: (\S+) (?:(\S+\.mlr):)?(\d+):(\d+)")


def canonical_twin(path: Path) -> Path:
    return path.with_name(path.stem + ".canonical.mlr")


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_spec_formats_to_its_canonical_twin(path: Path) -> None:
    expected = canonical_twin(path).read_text()
    assert format_spec(path.read_text(), str(path)) == expected
    assert format_spec(expected) == expected  # the canonical form is a fixed point


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_spec_and_its_twin_check_clean_and_mean_the_same(path: Path) -> None:
    original = check_spec(path)
    twin = check_spec(canonical_twin(path))
    assert original.diagnostics == () and twin.diagnostics == ()
    assert original.spec is not None and twin.spec is not None
    # the same meaning; only the file (and the default output named after it) differ
    assert original.spec == dataclasses.replace(twin.spec, file=original.spec.file, output=original.spec.output)
    assert len(original.instances) >= 1


@pytest.mark.parametrize("path", INVALID, ids=lambda p: str(p.relative_to(SPECS / "invalid")))
def test_invalid_spec_gives_exactly_the_expected_diagnostics(path: Path) -> None:
    expected = sorted(
        (code, (path.parent / (file or path.name)).resolve(), int(line), int(col))
        for code, file, line, col in EXPECT.findall(path.read_text())
    )
    result = check_spec(path)
    got = sorted((d.code, Path(d.span.file).resolve(), d.span.line, d.span.column) for d in result.diagnostics)
    assert got == expected
    for diagnostic in result.diagnostics:
        assert diagnostic.message.strip() and (diagnostic.hint is None or diagnostic.hint.strip())


def test_every_invalid_error_case_leaves_no_spec() -> None:
    for path in INVALID:
        result = check_spec(path)
        if any(d.is_error for d in result.diagnostics):
            assert not result.ok, path


def test_every_registered_error_code_has_a_golden_case() -> None:
    from mlrobust.spec.diagnostics import CODES

    covered = {code for path in INVALID for code, *_ in EXPECT.findall(path.read_text())}
    # environment-dependent (Gurobi licence), or only reachable through sweeps: tested elsewhere
    elsewhere = {"solver-unavailable", "empty-sweep", "image-load-error", "unknown-block", "unknown-label"}
    # limits that take a 256 KiB file or a chain of 33 files: tests/test_spec_limits.py builds them
    elsewhere |= {"file-too-large", "extends-too-deep"}
    # VNN-LIB files, not specs: each code has its case in tests/test_vnnlib.py
    vnnlib = {code for code in CODES if code.startswith("vnnlib-")}
    assert set(CODES) - covered - elsewhere - vnnlib == set()
