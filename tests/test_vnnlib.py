"""VNN-LIB in: the parser (positions, DNF, the general case, fuzzed), and `mlrobust verify` on
real ONNX files (sat re-checked by onnxruntime, unsat from a sound verifier, a hard timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.cli import main
from mlrobust.spec.diagnostics import SpecError
from mlrobust.vnnlib.parse import parse_vnnlib
from mlrobust.vnnlib.result import MalformedResult, format_result, parse_result

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(3)
)
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 -1))\n(assert (<= X_1 0.5))\n(assert (>= X_1 0))\n"


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_vnnlib(text, Path("p.vnnlib"))


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(text)
    return [str(d) for d in caught.value.diagnostics]


def test_the_usual_shape_is_one_box_and_a_disjunction_of_rows() -> None:
    prop = parse(HEADER + BOX + "(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))\n")
    assert (prop.inputs, prop.outputs, len(prop.cases)) == (2, 3, 1)
    case = prop.cases[0]
    np.testing.assert_array_equal(case.lower, [-1, 0])
    np.testing.assert_array_equal(case.upper, [1, 0.5])
    # row r holds (unsafe) iff rows[r]·Y + offsets[r] >= 0: Y_1 - Y_0 >= 0, Y_2 - Y_0 >= 0
    np.testing.assert_array_equal(case.rows, [[-1, 1, 0], [-1, 0, 1]])
    assert case.terms == ((0,), (1,))


def test_linear_terms_chained_comparisons_and_equalities() -> None:
    prop = parse(HEADER + BOX + "(assert (<= (+ (* 2 Y_0) (- Y_1) 3) (* 0.5 Y_2) 7))\n")
    (case,) = prop.cases
    # 2 Y_0 - Y_1 + 3 <= 0.5 Y_2, and 0.5 Y_2 <= 7: two rows of one conjunction
    y = np.array([0.1, 5.0, 4.0])
    values = case.rows @ y + case.offsets
    assert case.terms == ((0, 1),)
    np.testing.assert_allclose(values, [0.5 * 4.0 - (2 * 0.1 - 5.0 + 3), 7 - 0.5 * 4.0])
    equal = parse(HEADER + BOX + "(assert (= Y_0 Y_1))\n").cases[0]
    assert len(equal.offsets) == 2 and equal.terms == ((0, 1),)


def test_the_general_case_is_normalised_to_dnf_and_grouped_by_input_box() -> None:
    """An OR of input boxes, each with its own output constraints, and an AND of ORs."""
    text = HEADER + (
        "(assert (or (and (<= X_0 0) (>= X_0 -1) (<= X_1 1) (>= X_1 0) (>= Y_1 Y_0))"
        "            (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (>= Y_2 Y_0))))\n"
        "(assert (or (>= Y_0 10) (<= Y_0 -10)))\n"
    )
    prop = parse(text)
    assert len(prop.cases) == 2  # two input boxes
    for case in prop.cases:
        assert len(case.terms) == 2 and all(len(term) == 2 for term in case.terms)  # (Y-row ∧ Y_0-bound) × 2
    empty = parse(HEADER + BOX + "(assert (<= X_0 -2))\n(assert (>= Y_0 Y_1))\n")
    assert empty.cases == ()  # the input region is empty: nothing is unsafe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(declare-const X_0 Real", "p.vnnlib:1:24: error[vnnlib-syntax]"),
        (HEADER + "(assert (<= X_7 1))", "error[vnnlib-undeclared]: `X_7` is not declared"),
        (HEADER + BOX + "(assert (<= (* X_0 Y_1) 1))", "error[vnnlib-nonlinear]"),
        (HEADER + BOX + "(assert (<= X_0 Y_1))", "mixes variables mlrobust keeps apart: inputs and outputs"),
        (HEADER + "(assert (<= X_0 1))(assert (>= Y_0 Y_1))", "error[vnnlib-unbounded]: X_0 has no lower bound"),
        (HEADER + BOX + "(check-sat)", "error[vnnlib-unknown]: `check-sat` is not a VNN-LIB 1.0 command"),
        (HEADER + BOX + "(assert (not (<= Y_0 1)))", "`not` is not a VNN-LIB 1.0 connective"),
        ("(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)", "X_1 is not declared"),
        ("(declare-const Z Real)", "`Z` is neither an input X_i nor an output Y_j"),
        (HEADER + "(declare-const X_0 Real)", "`X_0` is declared twice"),
    ],
)
def test_malformed_files_get_positions_and_a_message(text: str, expected: str) -> None:
    found = errors(text)
    assert any(expected in line for line in found), found
    assert all(line.startswith("p.vnnlib:") for line in found)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('()XY_0123456789 .-+*<=>;\n"abcdeflnorst|')), max_size=200))
def test_the_parser_never_crashes_on_any_text(text: str) -> None:
    """Whatever the text: a property, or diagnostics with a position (no traceback)."""
    try:
        parse(text)
    except SpecError as error:
        assert error.diagnostics and all(d.span.line >= 1 and d.span.column >= 1 for d in error.diagnostics)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 400))
def test_deep_nesting_is_refused_with_a_position_not_a_recursion_error(depth: int) -> None:
    text = HEADER + BOX + "(assert " + "(and " * depth + "(>= Y_0 Y_1)" + ")" * depth + ")\n"
    try:
        prop = parse(text)
        assert len(prop.cases) == 1
    except SpecError as error:
        assert depth > 190 and "nested deeper" in str(error)


def test_result_files_round_trip_and_garbage_is_refused() -> None:
    text = format_result("sat", np.array([0.5, -1e-7]), np.array([1.0, 2.0]))
    parsed = parse_result(text, inputs=2)
    assert parsed.answer == "sat" and parsed.inputs.tolist() == [0.5, -1e-7] and parsed.outputs.tolist() == [1, 2]
    assert parse_result("unsat\n").answer == "unsat" and parse_result("holds").answer == "unsat"
    for garbage in ("", "maybe\n", "sat\n((X_0 1.0))\n"):
        with pytest.raises(MalformedResult):
            parse_result(garbage, inputs=2)


# --- mlrobust verify -----------------------------------------------------------------------------


def tiny_model(path: Path, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    # a fixed batch of 1, as torch.onnx.export writes by default (and VNN-COMP benchmarks do)
    torch.onnx.export(model, (torch.zeros(1, 4),), path, dynamo=False, opset_version=17)
    return model


def robustness_property(path: Path, centre: np.ndarray, eps: float, label: int, outputs: int = 3) -> None:
    """The mnistfc shape: an L∞ box, and `OR_j (and (>= Y_j Y_label))` as the unsafe region."""
    lines = [f"(declare-const X_{i} Real)" for i in range(centre.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs)]
    for i, value in enumerate(centre):
        lines += [f"(assert (<= X_{i} {float(value + eps)!r}))", f"(assert (>= X_{i} {float(value - eps)!r}))"]
    rivals = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(outputs) if j != label)
    lines.append(f"(assert (or {rivals}))")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def instance(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("verify")
    model = tiny_model(folder / "m.onnx")
    centre = np.array([0.1, 0.2, 0.3, 0.4])
    label = int(model(torch.tensor(centre, dtype=torch.float32)[None]).argmax())
    return folder, centre, label


def test_a_small_box_is_unsat_and_a_large_one_sat_with_a_witness_onnxruntime_confirms(instance) -> None:
    folder, centre, label = instance
    robustness_property(folder / "small.vnnlib", centre, 0.005, label)
    robustness_property(folder / "big.vnnlib", centre, 2.0, label)
    assert main(["verify", str(folder / "m.onnx"), str(folder / "small.vnnlib"), "--out", str(folder / "s")]) == 0
    assert (folder / "s").read_text() == "unsat\n"
    assert main(["verify", str(folder / "m.onnx"), str(folder / "big.vnnlib"), "--out", str(folder / "b")]) == 0
    witness = parse_result((folder / "b").read_text(), inputs=4)
    assert witness.answer == "sat"
    assert np.all(np.abs(witness.inputs - centre) <= 2.0)
    session = onnxruntime.InferenceSession(str(folder / "m.onnx"))
    outputs = session.run(None, {session.get_inputs()[0].name: witness.inputs.astype(np.float32)[None]})[0][0]
    np.testing.assert_allclose(outputs, witness.outputs, rtol=0, atol=1e-6)
    assert any(outputs[j] >= outputs[label] for j in range(3) if j != label)


def test_verify_json_names_the_deciding_verifier_and_its_time(instance, capsys) -> None:  # type: ignore[no-untyped-def]
    folder, centre, label = instance
    robustness_property(folder / "small.vnnlib", centre, 0.005, label)
    assert main(["verify", str(folder / "m.onnx"), str(folder / "small.vnnlib"), "--json", "--chain", "bounds()"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"] == "unsat" and payload["cases"][0]["verifier"] == "bounds"
    assert set(payload["seconds_per_verifier"]) == {"bounds"}
    assert main(["verify", str(folder / "m.onnx"), str(folder / "small.vnnlib"), "--json", "--chain", "bab()"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"] == "unsat" and payload["cases"][0]["verifier"] == "bab"
    (step,) = payload["cases"][0]["steps"]
    assert step["statistics"]["domains_bounded"] >= 1 and step["statistics"]["closed"] >= 1


def test_shapes_that_do_not_match_the_model_are_a_user_error(instance, tmp_path: Path) -> None:
    folder, _, _ = instance
    robustness_property(tmp_path / "wrong.vnnlib", np.zeros(5), 0.1, 0)
    assert main(["verify", str(folder / "m.onnx"), str(tmp_path / "wrong.vnnlib")]) == 1
    (tmp_path / "bad.vnnlib").write_text("(declare-const X_0 Real")
    assert main(["verify", str(folder / "m.onnx"), str(tmp_path / "bad.vnnlib")]) == 1


def test_the_timeout_is_a_hard_wall_clock_limit(instance, tmp_path: Path) -> None:
    """A MILP that cannot finish: at the limit the child is killed and the file says timeout."""
    folder, centre, label = instance
    robustness_property(tmp_path / "p.vnnlib", centre, 0.4, label)
    result = tmp_path / "r"
    started = time.perf_counter()
    command = [
        sys.executable, "-m", "mlrobust", "verify", str(folder / "m.onnx"), str(tmp_path / "p.vnnlib"),
        "--timeout", "3", "--out", str(result), "--chain", "milp(time_limit = 1h)",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert finished.returncode == 0, finished.stderr
    assert result.read_text().split()[0] in ("timeout", "unsat", "sat")  # a tiny MILP may finish in time
    assert elapsed < 3 + 2 + 3  # the limit, a second or two, and the interpreter's start


def test_the_vnncomp_scripts_answer_an_instance(instance) -> None:  # type: ignore[no-untyped-def]
    """The competition's entry points, with its argument conventions (v1, category, …)."""
    folder, centre, label = instance
    robustness_property(folder / "big.vnnlib", centre, 2.0, label)
    scripts = Path(__file__).parents[1] / "scripts" / "vnncomp"
    model, prop, result = str(folder / "m.onnx"), str(folder / "big.vnnlib"), str(folder / "vnncomp.txt")
    environment = {**os.environ, "MLROBUST": str(Path(sys.executable).parent / "mlrobust")}
    prepared = subprocess.run([scripts / "prepare_instance.sh", "v1", "test", model, prop], capture_output=True)
    assert prepared.returncode == 0
    missing = subprocess.run([scripts / "prepare_instance.sh", "v1", "test", model + ".x", prop], capture_output=True)
    assert missing.returncode != 0
    finished = subprocess.run(
        [scripts / "run_instance.sh", "v1", "test", model, prop, result, "30"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert parse_result(Path(result).read_text(), inputs=4).answer == "sat"


def test_a_vnnlib_2_file_reads_through_the_vnnlib_package_into_the_same_cases(tmp_path: Path) -> None:
    """The same property in 1.0 (our reader) and 2.0 (the `vnnlib` package): the same case."""
    from mlrobust.vnnlib.parse import load_vnnlib

    body = (
        "(assert (<= X[0] 1.0))\n(assert (>= X[0] -1.0))\n(assert (<= X[1] 0.5))\n(assert (>= X[1] 0.0))\n"
        "(assert (or (>= Y[1] Y[0]) (and (>= Y[2] Y[0]) (<= (+ Y[2] (* -2.0 Y[1])) 3.0))))\n"
    )
    two = tmp_path / "p2.vnnlib"
    two.write_text(
        "; a 2.0 file\n(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [2])\n"
        "  (declare-output Y float32 [3]))\n" + body
    )
    one = tmp_path / "p1.vnnlib"
    one.write_text(HEADER + body.replace("X[", "X_").replace("Y[", "Y_").replace("]", ""))
    old, new = load_vnnlib(one), load_vnnlib(two)
    assert (new.inputs, new.outputs, len(new.cases)) == (old.inputs, old.outputs, 1) == (2, 3, 1)
    a, b = old.cases[0], new.cases[0]
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    y = np.random.default_rng(0).normal(size=(50, 3))

    def margin(case):  # type: ignore[no-untyped-def]
        values = y @ case.rows.T + case.offsets
        return np.max([np.min(values[:, list(term)], axis=1) for term in case.terms], axis=0)

    np.testing.assert_allclose(margin(a), margin(b))  # the same unsafe region on any outputs
    broken = tmp_path / "p3.vnnlib"
    broken.write_text("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [2])\n")
    with pytest.raises(SpecError, match="vnnlib package refuses"):
        load_vnnlib(broken)


def test_every_vnnlib_code_has_a_case_here() -> None:
    """The golden spec cases leave the VNN-LIB codes to this file: each is produced above."""
    from mlrobust.spec.diagnostics import CODES

    produced = set()
    for case in test_malformed_files_get_positions_and_a_message.pytestmark[0].args[1]:  # type: ignore[attr-defined]
        with pytest.raises(SpecError) as caught:
            parse(case[0])
        produced |= {d.code for d in caught.value.diagnostics}
    assert {code for code in CODES if code.startswith("vnnlib-")} <= produced
