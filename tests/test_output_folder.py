"""The output folder and the processes that write it: never through a symlink, never into a
folder of someone else's without --force (but an mlrobust folder always resumes), one writer at a
time, a torn journal line repaired, one file mode, and no sweep worker outliving its sweep.

Real files, real subprocesses, real locks and real signals throughout."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlrobust.compile import compile_problem
from mlrobust.contract.verifiers import step
from mlrobust.errors import UserError
from mlrobust.output_folder import LOCK, FolderInUse, check_folder, locked
from mlrobust.run import run
from mlrobust.search.oracle import Oracle
from mlrobust.spec.check import check_spec
from mlrobust.storage import atomic_write_bytes, atomic_write_json, save_counterexample
from mlrobust.sweep import MANIFEST, sweep

from .helpers import REPO, run_cli

RUN_SPEC = REPO / "tests" / "specs" / "run" / "fast.mlr"
SWEEP_SPEC = REPO / "tests" / "specs" / "sweep" / "fast.mlr"


def tiny_spec(folder: Path, extra: str = "") -> Path:
    """The run spec with a 4-query, 1-second budget: a whole run in a couple of seconds."""
    text = RUN_SPEC.read_text().replace("../../../", f"{REPO}/")
    text = text.replace("queries = 300", "queries = 4").replace("time_limit = 2min", "time_limit = 1s")
    path = folder / "tiny.mlr"
    path.write_text(text + extra)
    return path


@pytest.fixture(scope="module")
def problem():
    checked = check_spec(RUN_SPEC)
    return compile_problem(checked.spec, checked.instances[0])


def small(problem, eps: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.full(problem.num_layers, eps)


def no_traceback(cli) -> bool:  # type: ignore[no-untyped-def]
    return "Traceback" not in cli.stdout + cli.stderr and "internal error" not in cli.stderr


# --- symlinks ------------------------------------------------------------------------------


def test_a_symlinked_journal_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").symlink_to(victim)
    cli = run_cli("run", str(RUN_SPEC), "--out", str(out))
    assert cli.code == 1 and no_traceback(cli), cli.stderr
    assert "symbolic link" in cli.stderr and "journal.jsonl" in cli.stderr
    assert victim.read_text() == "someone else's file\n"
    assert sorted(p.name for p in out.iterdir()) == ["journal.jsonl"]  # nothing written beside it


@pytest.mark.parametrize("name", ["counterexamples", LOCK, "result.json"])
def test_any_symlinked_entry_is_refused_before_work(tmp_path: Path, name: str) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        run(tiny_spec(tmp_path), out=out, force=True)  # --force does not make a link writable
    assert list(target.iterdir()) == []


def test_the_oracle_never_reads_or_appends_through_a_symlinked_journal(problem, tmp_path: Path) -> None:
    """The folder check aside, the journal itself is opened with O_NOFOLLOW."""
    victim = tmp_path / "victim.jsonl"
    victim.write_text("not a journal\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.jsonl").symlink_to(victim)
    oracle = Oracle(problem, (step("bounds"),), tmp_path / "run", "links")
    with pytest.raises(UserError, match="symbolic link"):
        oracle.load_journal()
    with pytest.raises(UserError, match="symbolic link"):
        oracle.ask(small(problem, 0.001))
    assert victim.read_text() == "not a journal\n"


def test_a_counterexample_is_never_written_through_a_symlinked_folder(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "counterexamples").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        save_counterexample(tmp_path / "counterexamples", np.zeros((1, 4, 4), dtype=np.float32))
    assert list(target.iterdir()) == []


# --- whose folder it is ----------------------------------------------------------------------


def test_a_foreign_non_empty_folder_is_refused_and_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "result.json").write_text('{"my": "own results"}\n')
    (out / "notes.txt").write_text("draft\n")
    cli = run_cli("run", str(RUN_SPEC), "--out", str(out))
    assert cli.code == 1 and no_traceback(cli), cli.stderr
    assert "not empty" in cli.stderr and "--force" in cli.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "result.json"]
    assert (out / "result.json").read_text() == '{"my": "own results"}\n'


def test_a_sweep_refuses_a_foreign_folder_before_writing_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="not empty") as raised:
        sweep(SWEEP_SPEC, tmp_path)
    assert "--force" in (raised.value.hint or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_force_writes_into_a_foreign_folder_which_then_resumes_without_it(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("draft\n")
    with pytest.raises(UserError, match="not empty"):
        run(spec, out=out)
    first = run(spec, out=out, force=True)
    assert (out / "result.json").exists() and (out / "notes.txt").read_text() == "draft\n"
    journaled = len((out / "journal.jsonl").read_text().splitlines())
    assert journaled >= 1
    again = run(spec, out=out)  # now an mlrobust folder: a rerun resumes from its journal
    assert again.setup.journal_answers_replayed == journaled
    assert again.size >= first.size


@pytest.mark.parametrize(
    ("files", "ours"),
    [
        ({"journal.jsonl": '{"key": "k"}\n', "notes.txt": "x"}, True),  # a run from before the lock file
        ({"result.json": json.dumps({"schema": "mlrobust.run/1"})}, True),
        ({MANIFEST: json.dumps({"schema": "mlrobust.sweep/1"}), "results.csv": ""}, True),
        ({LOCK: "123\n"}, True),  # a run that stopped before its first answer
        ({"result.json": json.dumps({"schema": "another.tool/2"})}, False),
        ({MANIFEST: "not json"}, False),
        ({".hidden": ""}, False),
    ],
)
def test_what_counts_as_an_mlrobust_folder(tmp_path: Path, files: dict[str, str], ours: bool) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if ours:
        check_folder(tmp_path)  # resumable: no refusal
    else:
        with pytest.raises(UserError, match="not empty"):
            check_folder(tmp_path)
        check_folder(tmp_path, force=True)


def test_a_file_in_place_of_the_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UserError, match="is a file"):
        check_folder(tmp_path / "out", force=True)


@pytest.mark.parametrize("value", ["", "."])
def test_output_naming_the_specs_own_folder_is_refused(tmp_path: Path, value: str) -> None:
    spec = tiny_spec(tmp_path, f'output = "{value}"\n')
    cli = run_cli("run", str(spec), "--force")
    assert cli.code == 1 and no_traceback(cli), cli.stderr
    assert "spec's own folder" in cli.stderr and 'output = "runs/NAME"' in cli.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mlr"]
    sweeping = tmp_path / "sweep.mlr"
    sweeping.write_text(SWEEP_SPEC.read_text().replace("../../../", f"{REPO}/") + f'output = "{value}"\n')
    with pytest.raises(UserError, match="spec's own folder"):
        sweep(sweeping)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.mlr", "tiny.mlr"]
    linted = run_cli("lint", str(spec), "--format", "json")  # lint says so first
    assert linted.code == 1 and '"bad-value"' in linted.stdout and "spec's own folder" in linted.stdout


# --- one writer at a time ----------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from mlrobust.output_folder import locked
with locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_busy_folder_is_refused_naming_the_holder_and_freed_when_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        cli = run_cli("run", str(RUN_SPEC), "--out", str(tmp_path))
        assert cli.code == 1 and no_traceback(cli), cli.stderr
        assert f"in use by PID {holder.pid}" in cli.stderr
        assert not (tmp_path / "journal.jsonl").exists()
        with pytest.raises(FolderInUse, match=f"in use by PID {holder.pid}"):
            sweep(SWEEP_SPEC, tmp_path)
        assert not (tmp_path / MANIFEST).exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # no chance to unlock: the kernel must release it
        holder.wait()
    with locked(tmp_path):
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"


@pytest.mark.slow
def test_two_real_runs_into_one_folder_the_second_exits_1(tmp_path: Path) -> None:
    # a long search (a fine δ, the MILP in the chain, a large budget): still running when the second starts
    text = RUN_SPEC.read_text().replace("../../../", f"{REPO}/").replace("resolution = 0.004", "resolution = 0.0005")
    text = text.replace("bounds(method = crown)", "bounds(method = crown) -> milp(time_limit = 5s)")
    spec = tmp_path / "long.mlr"
    text = text.replace("queries = 300", "queries = 100000").replace("time_limit = 2min", "time_limit = 30min")
    spec.write_text(text)
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "mlrobust", "run", str(spec), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = out / "journal.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (journal.exists() and journal.stat().st_size > 0):
            time.sleep(0.2)
        cli = run_cli("run", str(spec), "--out", str(out))
        assert first.poll() is None, "the first run ended before the second started: no overlap was tested"
        assert cli.code == 1 and f"in use by PID {first.pid}" in cli.stderr, cli.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.endswith("}")]
    keys = [(line["eps"], line.get("full"), line.get("falsifier")) for line in lines]
    assert len(keys) == len({json.dumps(k) for k in keys})  # no answer journaled twice


# --- the journal's torn tail ---------------------------------------------------------------------


def test_a_torn_last_journal_line_is_dropped_and_the_next_answer_kept(problem, tmp_path: Path) -> None:
    chain = (step("bounds"),)
    first = Oracle(problem, chain, tmp_path, "torn")
    first.ask(small(problem, 0.001))
    journal = first.journal_path
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole[: len(whole) // 2])  # a kill halfway through the next entry
    again = Oracle(problem, chain, tmp_path, "torn")
    assert again.load_journal() == 1
    assert len(again.journal_warnings) == 1 and "torn" in again.journal_warnings[0]
    assert journal.read_bytes() == whole  # the torn bytes are gone from the file
    again.ask(small(problem, 0.002))
    third = Oracle(problem, chain, tmp_path, "torn")
    assert third.load_journal() == 2 and third.journal_warnings == []  # both answers survive


def test_a_run_says_it_dropped_a_torn_line_and_its_journal_stays_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_bytes(b'{"full": false, "key": "')  # killed during its first write
    told: list[dict] = []  # type: ignore[type-arg]
    result = run(tiny_spec(tmp_path), out=out, on_start=told.append)
    assert len(told[0]["warnings"]) == 1 and "torn" in told[0]["warnings"][0]  # the CLI prints these
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert result.new_queries >= 1 and len(lines) >= 1
    assert all(json.loads(line)["key"] for line in lines)  # the first new answer did not join the torn bytes


def test_a_whole_last_line_without_its_newline_is_kept_and_not_joined(problem, tmp_path: Path) -> None:
    chain = (step("bounds"),)
    first = Oracle(problem, chain, tmp_path, "edited")
    first.ask(small(problem, 0.001))
    first.journal_path.write_bytes(first.journal_path.read_bytes().rstrip(b"\n"))  # a hand edit
    again = Oracle(problem, chain, tmp_path, "edited")
    assert again.load_journal() == 1 and again.journal_warnings == []
    again.ask(small(problem, 0.002))
    lines = first.journal_path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["key"] == "edited" for line in lines)


# --- one file mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_plots_journal_and_counterexamples_share_the_umask_mode(problem, tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "result.json", {"schema": "mlrobust.run/1"})
        atomic_write_bytes(tmp_path / "heatmap.png", b"\x89PNG")
        Oracle(problem, (step("bounds"),), tmp_path, "mode").ask(small(problem, 0.001))
        point = save_counterexample(tmp_path / "counterexamples", np.zeros((1, 4, 4), dtype=np.float32))
    finally:
        os.umask(previous)
    files = [tmp_path / "result.json", tmp_path / "heatmap.png", tmp_path / "journal.jsonl", point]
    assert {p: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p: oct(0o666 & ~umask) for p in files}


# --- sweep workers die with the sweep -------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, or at least not yet a zombie (a zombie computes and writes nothing; whether
    it is reaped is up to PID 1 of this container)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_pool_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_sweep_takes_its_busy_workers_with_it(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mlrobust", "sweep", str(SWEEP_SPEC), "--out", str(tmp_path), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline:
            workers = [pid for pid in _children(process.pid) if _is_pool_worker(pid)]
            journals = [j for j in tmp_path.glob("*/test/*/journal.jsonl") if j.stat().st_size > 0]
            if len(workers) == 2 and journals:
                break  # the workers are up and at least one is searching
            time.sleep(0.1)
        assert len(workers) == 2, "the pool did not start"
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers), "a worker outlived the sweep"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of this test's own session
        except ProcessLookupError:
            pass


def test_json_results_never_hold_infinity_or_nan(tmp_path: Path) -> None:
    from mlrobust.storage import atomic_write_json

    path = tmp_path / "result.json"
    atomic_write_json(path, {"size": float("inf"), "bounds": [1.5, float("-inf"), float("nan")], "k": 2})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"size": None, "bounds": [1.5, None, None], "k": 2}
