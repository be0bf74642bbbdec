"""A sweep's `methods` and `cuttings` axes (the thesis experiment: models × methods × cuttings ×
canvases): every combination is its own instance, folder and question, a rerun reuses them all,
and a sweep without the axes keeps its folders and question hashes. thesis-style cuts with the
spec's cutting."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlrobust.compile import compile, compile_problem, method_chain
from mlrobust.contract.methods import METHOD_TABLE
from mlrobust.errors import UserError
from mlrobust.run import run
from mlrobust.search.cutting import fixed_weights, sensitivity_weights
from mlrobust.spec import ir
from mlrobust.spec.check import check_spec
from mlrobust.storage import file_sha256
from mlrobust.sweep import MANIFEST, instance_folders, question, sweep

from .helpers import REPO, run_cli

SPECS = REPO / "tests" / "specs"
AXES = SPECS / "sweep" / "axes.mlr"  # one model, 2 canvases, [search, thesis_style] × [fixed, sensitivity]
FAST = SPECS / "sweep" / "fast.mlr"  # no axes: two models on one canvas
GOLDEN = SPECS / "valid" / "sweep_axes.mlr"  # [search, thesis_style] × [fixed, sensitivity, a list]
THESIS = SPECS / "run" / "thesis.mlr"


def manifest(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / MANIFEST).read_text())


def spec_text(path: Path, tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """A copy of a test spec with absolute paths (and `edits` made), in tmp_path."""
    text = path.read_text().replace('"../../../', f'"{REPO}/')
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    copy = tmp_path / name
    copy.write_text(text)
    return copy


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("axes")
    return sweep(AXES, folder, workers=2), folder


EXPECTED = [
    (method, cutting, canvas)
    for method in ("search", "thesis-style")
    for cutting in ("fixed", "sensitivity")
    for canvas in ("test/0000", "test/0001")
]


def test_the_axes_make_four_times_the_instances_each_in_its_own_folder(swept) -> None:
    result, folder = swept
    rows = result.rows
    assert [(row.method, row.cutting, row.canvas) for row in rows] == EXPECTED  # models × methods × cuttings × images
    assert [row.status for row in rows] == ["done"] * 8
    assert [row.folder for row in rows] == [
        f"double_mnist_pgd/{METHOD_TABLE[method].spec_name}/{cutting}/{canvas}" for method, cutting, canvas in EXPECTED
    ]
    assert len({row.question for row in rows}) == 8  # no two instances share a question
    for row in rows:
        run = json.loads((folder / row.folder / "result.json").read_text())
        assert run["problem"]["question"] == row.question and run["method"] == row.method
        assert run["problem"]["canvas"] == row.canvas
        assert row.cutting_weights == pytest.approx(run["problem"]["cutting"])
        if row.cutting == "fixed":
            assert run["problem"]["cutting"] == pytest.approx(fixed_weights(run["problem"]["layers"]))
        else:  # sensitivity cutting really cut with other weights, thesis-style included
            assert not np.allclose(run["problem"]["cutting"], fixed_weights(run["problem"]["layers"]))
    # the two cuttings differ by their cutting weights only, for both methods
    for method in ("search", "thesis-style"):
        fixed, sensitivity = (
            json.loads((folder / row.folder / "result.json").read_text())["problem"]
            for row in rows
            if row.method == method and row.canvas == "test/0000"
        )
        assert fixed["chain"] == sensitivity["chain"] and fixed["cutting"] != sensitivity["cutting"]


def test_the_manifest_groups_per_model_method_and_cutting(swept) -> None:
    _, folder = swept
    payload = manifest(folder)
    assert payload["method"] == "mixed" and payload["methods"] == ["search", "thesis-style"]
    groups = [(line["method"], line["cutting"], line["instances"], line["done"]) for line in payload["models"]]
    assert groups == [(m, c, 2, 2) for m in ("search", "thesis-style") for c in ("fixed", "sensitivity")]
    assert all(line["cutting_weights"] is None and "median_size" in line for line in payload["models"])
    rows = payload["instances"]
    assert [(row["method"], row["cutting"]) for row in rows] == [(m, c) for m, c, _ in EXPECTED]
    with (folder / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["method"], line["cutting"], line["canvas"]) for line in lines] == EXPECTED
    assert (folder / "sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = (REPO / "docs" / "result-schema.md").read_text().split("mlrobust.sweep/1", 1)[1]
    for key in [*payload, *rows[0], *payload["models"][0]]:
        assert f"`{key}`" in section, key


def test_a_rerun_reuses_every_instance(swept, tmp_path: Path) -> None:
    result, folder = swept
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    before = {row.folder: (copy / row.folder / "result.json").read_bytes() for row in result.rows}
    again = sweep(AXES, copy, workers=2)
    assert all(row.reused and row.status == "done" and row.new_queries == 0 for row in again.rows)
    assert [row.question for row in again.rows] == [row.question for row in result.rows]
    assert [row.cutting_weights for row in again.rows] == [row.cutting_weights for row in result.rows]
    assert {row.folder: (copy / row.folder / "result.json").read_bytes() for row in again.rows} == before


def test_an_axis_value_asks_the_question_the_spec_field_asks(swept, tmp_path: Path) -> None:
    """The instance `thesis_style × sensitivity` of the sweep is the question of a spec that says
    `method = thesis_style` and `cutting = sensitivity` without axes: same hash, same answer."""
    result, _ = swept
    plain = spec_text(
        AXES,
        tmp_path,
        "plain.mlr",
        ('extends "fast.mlr"', f'extends "{FAST}"'),
        ("  methods = [search, thesis_style]\n  cuttings = [fixed, sensitivity]\n", ""),
        ("chain =", "cutting = sensitivity\nchain ="),
    )
    checked = check_spec(plain)
    assert checked.ok, checked.diagnostics
    assert [question(checked.spec, instance, "thesis-style") for instance in checked.instances] == [
        row.question for row in result.rows if row.method == "thesis-style" and row.cutting == "sensitivity"
    ]


def test_a_list_of_cutting_weights_gets_a_stable_short_folder_name() -> None:
    checked = check_spec(GOLDEN)
    assert checked.ok, checked.diagnostics
    instances = list(checked.instances)
    folders = instance_folders(instances)
    assert len(instances) == 2 * 3 * 2 and len(set(folders)) == 12
    assert len({question(checked.spec, i, "search") for i in instances}) == 12
    custom = ir.ExplicitCutting((1.0, 0.9, 0.8, 0.5, 0.25))
    digest = hashlib.sha256(json.dumps([1.0, 0.9, 0.8, 0.5, 0.25]).encode()).hexdigest()[:8]
    assert custom.label == f"cutting-{digest}" == ir.ExplicitCutting((1, 0.9, 0.8, 0.5, 0.25)).label
    assert folders[:6] == [
        f"double_mnist_pgd/search/{cutting}/test/{canvas}"
        for cutting in ("fixed", "sensitivity", custom.label)
        for canvas in ("0000", "0001")
    ]
    # the plan cuts with the instance's own list
    plan = compile(checked.spec, instances[4], "search")
    assert plan.method.name == "search" and list(plan.cutting) == [1.0, 0.9, 0.8, 0.5, 0.25]
    thesis = compile(checked.spec, instances[6], "search")  # the axis's method wins over the one given
    assert thesis.method.name == "thesis-style" and thesis.cutting == pytest.approx(fixed_weights(5))


def test_an_axis_of_one_value_adds_no_folder_level(tmp_path: Path) -> None:
    spec = spec_text(
        FAST, tmp_path, "one.mlr", ("sweep {", "sweep {\n  methods = [thesis_style]\n  cuttings = [fixed]")
    )
    checked = check_spec(spec)
    instances = list(checked.instances)
    assert instance_folders(instances) == ["double_mnist_pgd/test/0001", "double_mnist_none/test/0001"]
    assert [i.method for i in instances] == ["thesis-style"] * 2


# --- a sweep without the axes: as before -------------------------------------------------------


def question_before_the_axes(spec: ir.Spec, instance, method: str) -> str:  # type: ignore[no-untyped-def]
    """compile.question_hashes as it was written before the axes (and before thesis-style took
    the spec's cutting), for a spec without a freeze."""
    chosen = METHOD_TABLE[method]
    queries = [
        file_sha256(instance.model),
        hashlib.sha256(np.ascontiguousarray(instance.image, dtype=np.float32).tobytes()).hexdigest(),
        hashlib.sha256(np.ascontiguousarray(instance.mask, dtype=bool).tobytes()).hexdigest(),
        list(instance.image.shape),
        instance.target,
        spec.k,
        list(spec.value_range),
        [
            [step.name, [list(option) for option in step.options if option[0] != "device"]]
            for step in method_chain(spec, chosen)
        ],
    ]
    search = [repr((spec.weights, spec.cutting)), repr((spec.search.resolution, spec.search.seed)), chosen.name]
    return hashlib.sha256(json.dumps([*queries, *search]).encode()).hexdigest()[:24]


@pytest.mark.parametrize("cutting", ["fixed", "sensitivity"])
def test_a_sweep_without_axes_keeps_its_folders_and_questions(tmp_path: Path, cutting: str) -> None:
    spec = spec_text(FAST, tmp_path, "old.mlr", ('canvases = ["test/0001"]', "canvases = rows(0, 2)"))
    spec.write_text(spec.read_text().replace("weights =", f"cutting = {cutting}\nweights ="))
    checked = check_spec(spec)
    instances = list(checked.instances)
    assert [(i.method, i.cutting) for i in instances] == [(None, None)] * 4
    assert instance_folders(instances) == [
        f"{model}/test/{canvas}" for model in ("double_mnist_pgd", "double_mnist_none") for canvas in ("0000", "0001")
    ]
    for instance in instances:
        for method in ("search", "uniform", "per-layer"):
            assert question(checked.spec, instance, method) == question_before_the_axes(checked.spec, instance, method)
        thesis = question(checked.spec, instance, "thesis-style")
        if cutting == "fixed":  # thesis-style's fixed cutting is what it always did: the same question
            assert thesis == question_before_the_axes(checked.spec, instance, "thesis-style")
        else:  # it cut with fixed weights then, whatever the spec said: not the same question now
            assert thesis != question_before_the_axes(checked.spec, instance, "thesis-style")


def test_the_rows_of_a_sweep_without_axes_say_its_method_and_cutting(tmp_path: Path) -> None:
    from mlrobust.sweep import manifest_rows

    checked = check_spec(FAST)
    rows = manifest_rows(checked.spec, list(checked.instances), tmp_path, "uniform")
    assert [(row.method, row.cutting, row.folder) for row in rows] == [
        ("uniform", "fixed", "double_mnist_pgd/test/0001"),
        ("uniform", "fixed", "double_mnist_none/test/0001"),
    ]
    assert rows[0].cutting_weights == pytest.approx(fixed_weights(checked.instances[0].layers))


# --- --method and the methods axis; thesis-style's cutting ----------------------------------------


def test_method_flag_with_a_methods_axis_is_a_user_error(tmp_path: Path) -> None:
    cli = run_cli("sweep", str(AXES), "--method", "search", "--out", str(tmp_path / "out"))
    assert cli.code == 1, cli.stderr
    assert "both choose the method" in cli.stderr and "Traceback" not in cli.stderr
    assert not (tmp_path / "out" / MANIFEST).exists()
    with pytest.raises(UserError, match="both choose the method"):
        run(AXES, out=tmp_path / "run", method="thesis-style", instance=5)


def test_thesis_style_cuts_with_the_spec_cutting(tmp_path: Path) -> None:
    plans = {}
    for cutting in ("fixed", "sensitivity"):
        spec = spec_text(THESIS, tmp_path, f"{cutting}.mlr", ("weights =", f"cutting = {cutting}\nweights ="))
        checked = check_spec(spec)
        plans[cutting] = compile(checked.spec, checked.instances[0], "thesis-style")
    problem = compile_problem(checked.spec, checked.instances[0])
    assert plans["fixed"].cutting == pytest.approx(fixed_weights(problem.num_layers))
    assert plans["sensitivity"].cutting == pytest.approx(sensitivity_weights(problem))
    assert not np.allclose(plans["fixed"].cutting, plans["sensitivity"].cutting)
    assert plans["fixed"].question != plans["sensitivity"].question
    assert plans["fixed"].queries_key == plans["sensitivity"].queries_key  # the verdicts are the same


def test_run_method_thesis_style_writes_the_sensitivity_cutting_it_used(tmp_path: Path) -> None:
    spec = spec_text(
        THESIS,
        tmp_path,
        "sensitivity.mlr",
        ("weights =", "cutting = sensitivity\nweights ="),
        ("queries = 300", "queries = 2"),
        ("milp(time_limit = 2s)", "milp(time_limit = 500ms)"),
    )
    cli = run_cli("run", str(spec), "--method", "thesis-style", "--out", str(tmp_path / "out"))
    assert cli.code == 0, cli.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    checked = check_spec(spec)
    problem = compile_problem(checked.spec, checked.instances[0])
    assert result["method"] == "thesis-style"
    assert result["problem"]["cutting"] == pytest.approx(sensitivity_weights(problem))
    assert not np.allclose(result["problem"]["cutting"], fixed_weights(problem.num_layers))
    assert result["problem"]["question"] == compile(checked.spec, checked.instances[0], "thesis-style").question


def test_each_instance_of_an_axis_spec_runs_its_own_method() -> None:
    checked = check_spec(AXES)
    spec = checked.spec
    assert spec is not None
    for instance, (method, cutting, _) in zip(checked.instances, EXPECTED, strict=True):
        assert (instance.method, instance.cutting.name if instance.cutting else None) == (method, cutting)
    # what `run --instance 6` compiles: the axis's method and cutting, not the spec's search { method }
    plan = compile(spec, checked.instances[6], spec.search.method)
    assert plan.method.name == "thesis-style" and plan.chain[0].name == "milp_pairwise"
    assert not np.allclose(plan.cutting, fixed_weights(plan.num_layers))  # sensitivity
