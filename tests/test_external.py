"""Queries out and other verifiers in: export round trips, the margin head, and `external`
with a tool of the tests' own (sat / unsat / garbage / crash / hang / a bad witness)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from mlrobust.cli import main
from mlrobust.compile import compile_problem
from mlrobust.problem.property import Disjunction
from mlrobust.spec.check import check_spec
from mlrobust.verify.external import GRACE
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status
from mlrobust.vnnlib.export import Exporter, export_query, margin_head_model
from mlrobust.vnnlib.parse import load_vnnlib
from mlrobust.vnnlib.result import parse_result

from .helpers import REPO
from .test_milp import _tiny_problem

TOOL = Path(__file__).parent / "tools" / "fake_verifier.py"


def tool(mode: str) -> str:
    return f"{sys.executable} {TOOL} {mode}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # type: ignore[no-untyped-def]
    return _tiny_problem(tmp_path_factory.mktemp("tiny"))


def ask(problem, eps: float, mode: str, **options):  # type: ignore[no-untyped-def]
    return VERIFIERS["external"].check(problem, np.full(problem.num_layers, eps), command=tool(mode), **options)


def test_a_tools_sat_counts_only_after_onnxruntime_confirms_it(tiny) -> None:
    found = ask(tiny, 1.0, "falsify")
    assert found.status is Status.NOT_ROBUST and found.stats["answer"] == "sat"
    assert tiny.violated(tiny.network.logits(found.counterexample[None]))[0]
    lower, upper = tiny.box(np.full(tiny.num_layers, 1.0))
    assert np.all(found.counterexample >= lower) and np.all(found.counterexample <= upper)
    assert ask(tiny, 1e-4, "falsify").status is Status.UNKNOWN  # nothing found: the tool says unknown
    lie = ask(tiny, 1e-4, "bad-witness")
    assert lie.status is Status.UNKNOWN and "no counterexample" in lie.stats["reason"]


def test_a_tools_unsat_is_a_proof_only_when_trusted(tiny) -> None:
    untrusted = ask(tiny, 1e-4, "unsat")
    assert untrusted.status is Status.UNKNOWN and "trusted = true" in untrusted.stats["reason"]
    trusted = ask(tiny, 1e-4, "unsat", trusted=True)
    assert trusted.status is Status.ROBUST and "fake_verifier.py" in trusted.stats["proof"]
    assert trusted.stats["tool"] == "fake_verifier.py"
    info = VERIFIERS["external"].info
    assert not info.is_sound({"trusted": False}) and info.is_sound({"trusted": True})


@pytest.mark.parametrize(("mode", "reason"), [("garbage", "not readable"), ("crash", "no result file")])
def test_a_broken_tool_is_unknown_with_its_message(tiny, mode: str, reason: str) -> None:
    verdict = ask(tiny, 0.1, mode)
    assert verdict.status is Status.UNKNOWN and reason in verdict.stats["reason"]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for an init that may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def assert_dead(pids: Path) -> None:
    written = [int(line) for line in pids.read_text().split()]
    assert len(written) == 2  # the tool and its own child
    deadline = time.time() + 2
    while any(running(pid) for pid in written) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in written)


def test_a_hanging_tool_is_stopped_with_its_children(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VERIFIER_PIDS", str(tmp_path / "pids"))
    started = time.perf_counter()
    verdict = ask(tiny, 0.1, "hang", timeout=1.0)
    elapsed = time.perf_counter() - started
    assert verdict.status is Status.UNKNOWN and "did not finish" in verdict.stats["reason"]
    assert elapsed < 1.0 + GRACE + 2.0
    assert_dead(tmp_path / "pids")


def test_a_missing_tool_is_unknown_not_a_crash(tiny) -> None:
    verdict = VERIFIERS["external"].check(tiny, np.full(tiny.num_layers, 0.1), command="/no/such/tool")
    assert verdict.status is Status.UNKNOWN and "could not be started" in verdict.stats["reason"]


def test_an_external_step_in_a_spec_chain(tmp_path: Path) -> None:
    spec = tmp_path / "ext.mlr"
    text = (REPO / "tests" / "specs" / "run" / "fast.mlr").read_text().replace('"../../../', f'"{REPO}/')
    chain = f'chain = attack(steps = 5, restarts = 1) -> external(command = "{tool("falsify")}", timeout = 30s)\n'
    lines = [line for line in text.splitlines() if not line.startswith("chain") and not line.startswith("    ->")]
    spec.write_text("\n".join(lines) + "\n" + chain)
    checked = check_spec(spec)
    assert checked.ok, [str(d) for d in checked.diagnostics]
    codes = [d.code for d in checked.diagnostics]
    assert codes == ["no-sound-verifier"]  # an untrusted tool proves nothing
    step = checked.spec.chain[1]
    assert step.name == "external" and dict(step.options)["trusted"] is False
    missing = tmp_path / "missing.mlr"
    missing.write_text(spec.read_text().replace(f'command = "{tool("falsify")}", ', ""))
    assert [d.code for d in check_spec(missing).errors] == ["bad-option"]


# --- export ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgd():  # type: ignore[no-untyped-def]
    checked = check_spec(REPO / "specs" / "double_mnist_pgd.mlr")
    return compile_problem(checked.spec, checked.instances[0])


def test_the_margin_head_computes_the_kth_largest_margin(pgd, tmp_path: Path) -> None:
    head = tmp_path / "head.onnx"
    head.write_bytes(margin_head_model(pgd.network.path, pgd.output))
    session = onnxruntime.InferenceSession(str(head))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (32, *pgd.image.shape)).astype(np.float32)
    images[0] = pgd.image
    margins = session.run(None, {session.get_inputs()[0].name: images})[0]
    assert margins.shape == (32, 1)
    expected = pgd.margin(pgd.network.logits(images.astype(np.float64)))
    np.testing.assert_allclose(margins[:, 0], expected, atol=1e-4)
    assert np.ptp(expected) > 1  # the inputs really differ


def test_the_margin_head_of_a_disjunction(tiny, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows, offsets = rng.normal(size=(5, 4)), rng.normal(size=5)
    prop = Disjunction(rows, offsets, ((0, 1), (2,), (3, 4, 0)))
    head = tmp_path / "head.onnx"
    head.write_bytes(margin_head_model(tiny.network.path, prop))
    session = onnxruntime.InferenceSession(str(head))
    inputs = rng.uniform(0, 1, (20, *tiny.image.shape)).astype(np.float32)
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[None]})[0] for x in inputs])[:, 0]
    np.testing.assert_allclose(got, prop.margin(tiny.network.logits(inputs.astype(np.float64))), atol=1e-4)


@pytest.mark.parametrize("eps", [0.002, 0.3])
def test_an_exported_query_gets_the_same_verdict_from_verify(pgd, tmp_path: Path, eps: float) -> None:
    """check (the chain on the layered problem) and verify (the exported DNF pair) agree."""
    from mlrobust.contract.verifiers import step
    from mlrobust.verify.chain import run_chain

    chain = (step("attack"), step("bounds"))
    box = np.full(pgd.num_layers, eps)
    direct = run_chain(pgd, box, chain).status
    (pair,) = export_query(Exporter(tmp_path), pgd, box, {"eps": eps}, ("dnf",))
    result = tmp_path / "result.txt"
    code = main(["verify", str(tmp_path / pair.onnx), str(tmp_path / pair.vnnlib), "--out", str(result),
                 "--chain", "attack() -> bounds()"])  # fmt: skip
    assert code == 0
    answer = parse_result(result.read_text(), inputs=pgd.image.size).answer
    assert answer == {Status.ROBUST: "unsat", Status.NOT_ROBUST: "sat", Status.UNKNOWN: "unknown"}[direct]
    prop = load_vnnlib(tmp_path / pair.vnnlib)
    assert len(prop.cases) == 1 and len(prop.cases[0].terms) == pgd.output.disjunct_count()
    lower, upper = pgd.box(box)
    np.testing.assert_array_equal(prop.cases[0].lower, lower.ravel())
    np.testing.assert_array_equal(prop.cases[0].upper, upper.ravel())


def test_export_command_writes_both_forms_and_an_index(tmp_path: Path) -> None:
    spec = REPO / "specs" / "double_mnist_pgd.mlr"
    assert main(["export", str(spec), "--eps", "0.01", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "instances.csv").read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(",60") for line in lines)
    for line in lines:
        onnx, vnnlib, _ = line.split(",")
        assert (tmp_path / onnx).exists() and (tmp_path / vnnlib).exists()
    # the same query again: the same files, the index unchanged
    assert main(["export", str(spec), "--eps", "0.01", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "instances.csv").read_text().splitlines() == lines


def test_a_hanging_external_tool_cannot_hold_verify_past_its_timeout(tmp_path: Path, tiny) -> None:
    """The hard limit: verify's child is stopped at --timeout, and the tool it started with it."""
    (pair,) = export_query(Exporter(tmp_path), tiny, np.full(tiny.num_layers, 0.1), {}, ("dnf",))
    result = tmp_path / "r.txt"
    chain = f'external(command = "{tool("hang")}", timeout = 1h)'
    started = time.perf_counter()
    command = [sys.executable, "-m", "mlrobust", "verify", str(tmp_path / pair.onnx), str(tmp_path / pair.vnnlib),
               "--timeout", "10", "--out", str(result), "--chain", chain]  # fmt: skip
    environment = {**os.environ, "FAKE_VERIFIER_PIDS": str(tmp_path / "pids")}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    elapsed = time.perf_counter() - started
    assert finished.returncode == 0, finished.stderr
    assert result.read_text() == "timeout\n"
    assert elapsed < 10 + 2 + 4  # the limit, a second or two, the interpreter's start
    time.sleep(0.2)
    assert_dead(tmp_path / "pids")  # the tool and its child went with verify's child
