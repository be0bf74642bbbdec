"""`mlrobust lint` and `mlrobust fmt` through the real CLI: exit codes, formats, in-place edits."""

from __future__ import annotations

import json
from pathlib import Path

from mlrobust.contract.solvers import gurobi_problem
from mlrobust.spec.check import check_spec
from mlrobust.spec.diagnostics import CODES

from .helpers import REPO, run_cli

INVALID = REPO / "tests" / "specs" / "invalid"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text.replace("@REPO", str(REPO)))
    return path


HEAD = (
    'model = "@REPO/models/double_mnist_none.onnx"\n'
    'dataset = "@REPO/data/double_mnist"\ncanvas = "test/0000"\ntarget = 3\nmask = other_digit\n'
)


def test_bundled_specs_lint_clean_and_are_fmt_stable() -> None:
    lint = run_cli("lint", "specs")
    assert lint.code == 0, lint.stdout
    assert "clean" in lint.stdout
    fmt = run_cli("fmt", "--check", "specs")
    assert fmt.code == 0, fmt.stderr


def test_lint_prints_location_caret_and_hint_and_exits_1() -> None:
    result = run_cli("lint", str(INVALID / "unknown_field.mlr"))
    assert result.code == 1
    assert "unknown_field.mlr:6:1" in result.stdout
    assert "error[unknown-field]" in result.stdout
    assert '   6 | modle = "x.onnx"' in result.stdout
    assert "\n       ^^^^^\n" in result.stdout  # caret under `modle`
    assert "hint:" in result.stdout


def test_lint_json_lists_every_diagnostic_with_position() -> None:
    result = run_cli("lint", "--format", "json", str(INVALID / "missing_fields.mlr"), str(INVALID / "bad_option.mlr"))
    assert result.code == 1
    payload = json.loads(result.stdout)
    found = sorted((d["code"], Path(d["file"]).name, d["line"], d["column"]) for d in payload["diagnostics"])
    assert found == [
        ("bad-option", "bad_option.mlr", 7, 25),
        ("missing-field", "missing_fields.mlr", 1, 1),
        ("missing-field", "missing_fields.mlr", 1, 1),
        ("missing-field", "missing_fields.mlr", 1, 1),
    ]


def test_lint_sarif_is_sarif_2_1_0_with_rules_for_every_code() -> None:
    result = run_cli("lint", "--format", "sarif", str(INVALID / "unknown_option.mlr"))
    assert result.code == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CODES)
    (finding,) = run["results"]
    assert finding["ruleId"] == "unknown-option" and rules[finding["ruleIndex"]]["id"] == "unknown-option"
    assert finding["level"] == "error"
    region = finding["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (7, 16)
    assert finding["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("unknown_option.mlr")


def test_warnings_alone_pass_unless_strict(tmp_path: Path) -> None:
    path = _write(tmp_path, "warn.mlr", HEAD + "chain = attack(steps = 5)\n")
    plain = run_cli("lint", str(path))
    assert plain.code == 0 and "no-sound-verifier" in plain.stdout
    assert run_cli("lint", "--strict", str(path)).code == 1


def test_fmt_check_diff_and_in_place(tmp_path: Path) -> None:
    messy = "k=2   # two\nsearch{seed=1}\n"
    path = _write(tmp_path, "messy.mlr", messy)
    check = run_cli("fmt", "--check", str(path))
    assert check.code == 1 and "would reformat" in check.stderr
    assert path.read_text() == messy
    diff = run_cli("fmt", "--diff", str(path))
    assert diff.code == 0 and "-k=2   # two" in diff.stdout and "+k = 2  # two" in diff.stdout
    assert path.read_text() == messy
    done = run_cli("fmt", str(path))
    assert done.code == 0
    assert path.read_text() == "k = 2  # two\nsearch {\n  seed = 1\n}\n"
    assert run_cli("fmt", "--check", str(path)).code == 0


def test_fmt_leaves_a_broken_file_alone_and_exits_1(tmp_path: Path) -> None:
    broken = "k = = 2\n"
    path = _write(tmp_path, "broken.mlr", broken)
    result = run_cli("fmt", str(path))
    assert result.code == 1 and "syntax-error" in result.stderr
    assert path.read_text() == broken


def test_missing_paths_are_user_errors(tmp_path: Path) -> None:
    for command in ("lint", "fmt"):
        result = run_cli(command, str(tmp_path / "absent.mlr"))
        assert result.code == 1 and "no such file" in result.stderr


def test_gurobi_choice_matches_what_is_installed(tmp_path: Path) -> None:
    path = _write(tmp_path, "gurobi.mlr", HEAD + "chain = milp(solver = gurobi)\n")
    codes = [d.code for d in check_spec(path).diagnostics]
    problem = gurobi_problem()
    if problem is None:
        assert codes == [], "gurobipy is licensed here, so solver = gurobi is fine"
    else:
        (diagnostic,) = check_spec(path).diagnostics
        assert diagnostic.code == "solver-unavailable" and problem in diagnostic.message
        assert "mlrobust[gurobi]" in (diagnostic.hint or "") and "highs" in (diagnostic.hint or "")


def test_fmt_keeps_the_files_own_permissions(tmp_path: Path) -> None:
    import stat

    spec = tmp_path / "spec.mlr"
    spec.write_text('model   =   "m.onnx"\n')
    spec.chmod(0o640)
    result = run_cli("fmt", str(spec))
    assert result.code == 0, result.stderr
    assert spec.read_text() == 'model = "m.onnx"\n'  # it was rewritten
    assert stat.S_IMODE(spec.stat().st_mode) == 0o640
