"""`mlrobust sweep`: every instance answered and proved, the manifest true to the results, and
nothing lost: a rerun reuses what is done, a killed or interrupted sweep resumes, a failing
instance does not stop the others. Process pools and Dask clusters are real ones."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlrobust.compile import compile_problem
from mlrobust.spec.check import check_spec
from mlrobust.sweep import MANIFEST, SCHEMA, question, sweep
from mlrobust.verify import bounds
from mlrobust.verify.registry import VERIFIERS
from mlrobust.verify.verdict import Status

from .helpers import REPO, run_cli

SPEC = REPO / "tests" / "specs" / "sweep" / "fast.mlr"


def manifest(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / MANIFEST).read_text())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    return sweep(SPEC, folder, workers=2), folder


@pytest.fixture(scope="module")
def checked():
    return check_spec(SPEC)


def test_every_instance_is_done_and_its_eps_is_proved_afresh(swept, checked) -> None:
    result, folder = swept
    assert [row.status for row in result.rows] == ["done", "done"]
    assert {Path(row.model).stem for row in result.rows} == {"double_mnist_pgd", "double_mnist_none"}
    for row, instance in zip(result.rows, checked.instances, strict=True):
        run = json.loads((folder / row.folder / "result.json").read_text())
        assert run["problem"]["model"] == str(instance.model) == row.model
        assert run["size"] == pytest.approx(row.size) and row.size > 0
        problem = compile_problem(checked.spec, instance)
        bounds.forget(problem)
        fresh = VERIFIERS["bounds"].check(problem, np.array(run["eps"]), method="crown")
        assert fresh.status is Status.ROBUST  # the sweep reports proofs, checked here from scratch


def test_the_manifest_table_and_plot_agree_with_the_runs(swept) -> None:
    result, folder = swept
    payload = manifest(folder)
    assert payload["schema"] == SCHEMA and payload["counts"]["done"] == 2 and not payload["interrupted"]
    by_model = {line["model"]: line for line in payload["models"]}
    for row in result.rows:
        assert by_model[row.model]["median_size"] == pytest.approx(row.size)  # one instance per model
    with (folder / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [float(line["size"]) for line in lines] == pytest.approx([row.size for row in result.rows])
    assert (folder / "sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_reuses_what_is_done_and_reruns_what_is_missing(swept, tmp_path: Path) -> None:
    result, folder = swept
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    kept, dropped = result.rows
    (copy / dropped.folder / "result.json").unlink()
    kept_bytes = (copy / kept.folder / "result.json").read_bytes()
    again = sweep(SPEC, copy, workers=1)
    first, second = again.rows
    assert first.reused and first.size == kept.size
    assert (copy / kept.folder / "result.json").read_bytes() == kept_bytes  # not run again
    assert not second.reused and second.status == "done"
    assert second.size == pytest.approx(dropped.size)
    assert second.new_queries == 0  # its own journal answered every query


def test_the_question_ignores_layout_but_not_meaning(checked, tmp_path: Path) -> None:
    text = SPEC.read_text()
    moved = tmp_path / "moved.mlr"
    moved.write_text("# a comment\n\n" + text.replace("../../../", str(REPO) + "/"))
    changed = tmp_path / "changed.mlr"
    changed.write_text(text.replace("../../../", str(REPO) + "/").replace("base = 0.8", "base = 0.7"))
    same, other = check_spec(moved), check_spec(changed)
    reference = question(checked.spec, checked.instances[0], "search")
    assert question(same.spec, same.instances[0], "search") == reference
    assert question(other.spec, other.instances[0], "search") != reference
    assert question(checked.spec, checked.instances[0], "uniform") != reference
    assert question(checked.spec, checked.instances[1], "search") != reference


def test_a_killed_sweep_resumes_without_redoing_finished_instances(swept, tmp_path: Path) -> None:
    result, _ = swept
    command = [sys.executable, "-m", "mlrobust", "sweep", str(SPEC), "--out", str(tmp_path), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if manifest(tmp_path)["counts"]["done"] >= 1:
                break
        except (OSError, ValueError):
            pass  # not written yet (it is replaced atomically, never half-written)
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, with no chance to clean up
    process.wait()
    before = manifest(tmp_path)
    assert before["counts"]["done"] == 1, before["counts"]
    resumed = sweep(SPEC, tmp_path, workers=1)
    assert [row.status for row in resumed.rows] == ["done", "done"]
    assert sum(row.reused for row in resumed.rows) == 1
    assert [row.size for row in resumed.rows] == pytest.approx([row.size for row in result.rows])


def test_ctrl_c_stops_the_sweep_and_a_rerun_finishes_it(swept, tmp_path: Path) -> None:
    result, _ = swept
    command = [sys.executable, "-m", "mlrobust", "sweep", str(SPEC), "--out", str(tmp_path), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    journals = list(tmp_path.glob("*/test/0001/journal.jsonl"))
    while time.time() < deadline and not any(j.exists() and j.stat().st_size > 0 for j in journals):
        time.sleep(0.2)
        journals = list(tmp_path.glob("*/test/0001/journal.jsonl"))
    os.killpg(process.pid, signal.SIGINT)  # as a terminal sends it: to every process of the group
    assert process.wait(timeout=120) == 130
    stopped = manifest(tmp_path)
    assert stopped["interrupted"] and stopped["counts"]["done"] < 2
    resumed = sweep(SPEC, tmp_path, workers=2)
    assert [row.status for row in resumed.rows] == ["done", "done"]
    assert [row.size for row in resumed.rows] == pytest.approx([row.size for row in result.rows])


def test_an_instance_that_cannot_be_written_fails_alone(swept, tmp_path: Path) -> None:
    result, _ = swept
    blocked = tmp_path / result.rows[0].folder
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the instance's folder should go")
    # --force: the folder holds something that is not a sweep (the blocker), refused without it
    cli = run_cli("sweep", str(SPEC), "--out", str(tmp_path), "--workers", "2", "--force")
    assert cli.code == 1, cli.stderr
    assert "Traceback" not in cli.stdout + cli.stderr
    rows = manifest(tmp_path)["instances"]
    assert rows[0]["status"] == "failed" and rows[0]["error_kind"] == "user"
    assert str(blocked) in rows[0]["error"]
    assert rows[1]["status"] == "done" and rows[1]["size"] == pytest.approx(result.rows[1].size)


def test_a_local_dask_cluster_gives_the_same_answers(swept, tmp_path: Path) -> None:
    result, _ = swept
    on_dask = sweep(SPEC, tmp_path, executor="dask", workers=2)
    assert [row.status for row in on_dask.rows] == ["done", "done"]
    assert [row.size for row in on_dask.rows] == pytest.approx([row.size for row in result.rows])
    assert manifest(tmp_path)["executor"] == "dask"


def test_a_running_dask_scheduler_takes_the_work(swept, tmp_path: Path) -> None:
    import dask
    from distributed import LocalCluster

    result, _ = swept
    # a cluster started elsewhere, as `dask worker` would be (without the malloc setting that
    # slows torch down: docs/architecture.md, Sweeps)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
    ):
        remote = sweep(SPEC, tmp_path, executor="dask", scheduler=cluster.scheduler_address)
    assert [row.size for row in remote.rows] == pytest.approx([row.size for row in result.rows])


def test_an_unreachable_scheduler_is_a_user_error(tmp_path: Path) -> None:
    # port 9 (discard) has no listener here: the client gives up after its 10 s connect timeout
    cli = run_cli("sweep", str(SPEC), "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9")
    assert cli.code == 1
    assert "cannot reach the Dask scheduler" in cli.stderr and "Traceback" not in cli.stderr


def test_a_malformed_spec_stops_before_any_work(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mlr"
    broken.write_text(SPEC.read_text().replace("k = 2", "").replace("resolution = 0.01", "resolution = -1"))
    cli = run_cli("sweep", str(broken), "--out", str(tmp_path / "out"))
    assert cli.code == 1
    assert "broken.mlr:" in cli.stdout + cli.stderr and "Traceback" not in cli.stdout + cli.stderr
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_every_manifest_field_is_documented(swept) -> None:
    _, folder = swept
    payload = manifest(folder)
    section = (REPO / "docs" / "result-schema.md").read_text().split("mlrobust.sweep/1", 1)[1]
    for key in [*payload, *payload["instances"][0], *payload["models"][0], *payload["counts"]]:
        assert f"`{key}`" in section, key


def test_a_misclassified_image_is_skipped_with_the_reason_and_stays_skipped(tmp_path: Path) -> None:
    spec = SPEC.with_name("misclassified.mlr")
    first = run_cli("sweep", str(spec), "--out", str(tmp_path))
    assert first.code == 0, first.stderr
    (row,) = manifest(tmp_path)["instances"]
    assert row["status"] == "skipped" and "top 2" in row["error"] and row["size"] is None
    assert not (tmp_path / row["folder"] / "result.json").exists()  # no ε* is claimed
    again = run_cli("sweep", str(spec), "--out", str(tmp_path), "--json")
    payload = json.loads(again.stdout)  # --json: the manifest alone on stdout, the rest on stderr
    assert payload == manifest(tmp_path)
    assert payload["instances"][0]["status"] == "skipped" and payload["instances"][0]["reused"]


def test_run_refuses_a_misclassified_image_with_a_user_error(tmp_path: Path) -> None:
    cli = run_cli("run", str(SPEC.with_name("misclassified.mlr")), "--out", str(tmp_path))
    assert cli.code == 1
    assert "does not put target 3 in its top 2 on test/0007" in cli.stderr and "Traceback" not in cli.stderr


def test_workers_share_the_cores_this_process_may_use_not_the_machines() -> None:
    """Under taskset (or a container's cpuset) the sweep counts only the cores it may run on:
    a worker with more torch threads than cores waits on descheduled threads at every op."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from mlrobust.sweep import usable_cores; print(usable_cores())"
    )
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert pinned.stdout.strip() == "1"
    from mlrobust.sweep import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))
