"""Issue 21, the spec front end and budgets: bad input ends in exit 1 with a diagnostic that names
the problem, never exit 2, a traceback, a hang, or a line of a file that is not a spec.

Most tests call the CLI in-process (`main(argv)` returns the exit code) for speed; those that
could hang if the fix regressed (a FIFO, /dev/zero) or that need a real process (`sweep`) run
it in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlrobust.cli import main
from mlrobust.spec.check import check_spec
from mlrobust.spec.parser import parse_text
from mlrobust.spec.source import MAX_EXTENDS, MAX_FILE_BYTES, MAX_NESTING

from .helpers import REPO

HEAD = (
    f'model = "{REPO}/models/double_mnist_none.onnx"\n'
    f'dataset = "{REPO}/data/double_mnist"\n'
    'canvas = "test/0000"\n'
    "target = 3\n"
)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout + stderr) of one in-process CLI call."""
    code = main(list(argv))
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    return code, text


def _subprocess(*argv: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mlrobust", *argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout
    )


def _codes(path: Path) -> list[str]:
    return [d.code for d in check_spec(path).diagnostics]


# --- the spec front end -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "named"),
    [("mask = rectangle", "unknown mask `rectangle`"), ("cutting = foo", "unknown cutting strategy `foo`")],
)
def test_an_unknown_name_where_a_generator_goes_is_a_diagnostic(tmp_path, capsys, line, named) -> None:
    """`mask = rectangle` was an AttributeError (exit 2): a Name has no `.name`."""
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + ("mask = other_digit\n" if "mask" not in line else "") + line + "\n")
    code, out = _cli(capsys, "lint", str(path))
    assert code == 1
    assert "unknown-generator" in out and named in out


def test_a_5001_digit_integer_is_refused_and_quoted_short(tmp_path, capsys) -> None:
    """int() of more than 4,300 digits raises ValueError: it was exit 2 in lint and fmt."""
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + "mask = other_digit\nk = " + "9" * 5001 + "\n")
    code, out = _cli(capsys, "lint", str(path))
    assert code == 1
    assert "k must be a finite number" in out and "(5,001 characters)" in out
    assert max(len(line) for line in out.splitlines()) < 400  # the message does not quote 5,001 digits
    code, out = _cli(capsys, "fmt", "--check", str(path))
    assert code == 0  # the text is canonical: fmt has no opinion on values


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 250, 500, 5000])
def test_deep_nesting_is_refused_by_lint_and_fmt(tmp_path, capsys, depth: int) -> None:
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + "mask = other_digit\nweights = " + "[" * depth + "1" + "]" * depth + "\n")
    for argv in (["lint"], ["fmt", "--check"]):
        code, out = _cli(capsys, *argv, str(path))
        assert code == 1, argv
        assert "nesting-too-deep" in out and f"nested more than {MAX_NESTING} deep" in out


def test_nesting_up_to_the_limit_parses(tmp_path) -> None:
    text = "weights = " + "[" * MAX_NESTING + "1" + "]" * MAX_NESTING + "\n"
    assert parse_text(text).statements  # no diagnostic: the limit itself is allowed


def _chain(folder: Path, files: int) -> Path:
    """spec.mlr extends base1.mlr … so that the chain holds `files` files; returns spec.mlr."""
    for i in range(1, files):
        nxt = f'extends "base{i + 1}.mlr"\n' if i < files - 1 else ""
        (folder / f"base{i}.mlr").write_text(f"{nxt}k = 2\n")
    spec = folder / "spec.mlr"
    spec.write_text(('extends "base1.mlr"\n' if files > 1 else "") + HEAD + "mask = other_digit\n")
    return spec


def test_an_extends_chain_at_the_limit_is_fine_and_one_more_file_is_refused(tmp_path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "long").mkdir()
    assert "extends-too-deep" not in _codes(_chain(tmp_path / "ok", MAX_EXTENDS))
    result = check_spec(_chain(tmp_path / "long", MAX_EXTENDS + 1))
    assert [d.code for d in result.diagnostics] == ["extends-too-deep"]
    assert f"more than {MAX_EXTENDS} spec files" in result.diagnostics[0].message


def test_1500_chained_extends_end_in_a_diagnostic_not_a_recursion_error(tmp_path, capsys) -> None:
    spec = _chain(tmp_path, 1500)
    code, out = _cli(capsys, "lint", str(spec))
    assert code == 1 and "extends-too-deep" in out


def test_a_latin1_file_is_unreadable_not_missing_in_lint_and_fmt(tmp_path, capsys) -> None:
    path = tmp_path / "latin1.mlr"
    path.write_bytes("target = 3\n# café\n".encode("latin-1"))
    for argv in (["lint"], ["fmt", "--check"]):
        code, out = _cli(capsys, *argv, str(path))
        assert code == 1, argv
        assert "unreadable-file" in out and "not UTF-8 text: byte 0xe9 at line 2, column 6" in out
        assert "file-not-found" not in out


def test_crlf_line_ends_read_as_they_always_did(tmp_path, capsys) -> None:
    """Files are now read as bytes (bounded), then decoded: line ends must still be text mode's."""
    path = tmp_path / "crlf.mlr"
    path.write_bytes((HEAD + "mask = other_digit  # the 5\n").replace("\n", "\r\n").encode())
    assert _cli(capsys, "lint", str(path))[0] == 0
    code, out = _cli(capsys, "fmt", "--check", str(path))
    assert code == 0 and "already canonical" in out


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys) -> None:
    path = tmp_path / "big.mlr"
    path.write_text(f'canvas = "{"a" * 5_000_000}"\n')  # was a MemoryError
    for argv in (["lint"], ["fmt", "--check"]):
        start = time.perf_counter()
        code, out = _cli(capsys, *argv, str(path))
        assert code == 1, argv
        assert "file-too-large" in out and f"at most {MAX_FILE_BYTES:,}" in out
        assert time.perf_counter() - start < 10
    base = tmp_path / "extends_big.mlr"
    base.write_text('extends "big.mlr"\n')
    assert "file-too-large" in _codes(base)


def test_a_string_just_under_the_limit_parses_in_linear_time() -> None:
    """A 1 MB string took 4.4 s and 555 MB (a per-character scan and a regex group per character)."""
    text = f'canvas = "{"a" * (MAX_FILE_BYTES - 100)}"\n'
    start = time.perf_counter()
    document = parse_text(text)
    assert time.perf_counter() - start < 5  # ~0.05 s; generous for a loaded machine
    assert len(document.statements[0].value.value) == MAX_FILE_BYTES - 100


def test_fmt_refuses_to_grow_a_file_past_the_limit(tmp_path, capsys) -> None:
    path = tmp_path / "dense.mlr"
    weights = "weights = [" + "1," * 500 + "]\n"  # formatted, each item gains a space: 500 bytes more
    text = "# " + "x" * (MAX_FILE_BYTES - len(weights) - 300) + "\n" + weights
    path.write_text(text)
    assert len(text) < MAX_FILE_BYTES
    code, out = _cli(capsys, "fmt", str(path))
    assert code == 1 and "file-too-large" in out and "formatted," in out
    assert path.read_text() == text  # left as it was


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/zero", "a device"), (".", "a folder"), ("fifo.mlr", "a pipe")], ids=str
)
def test_extends_reads_only_regular_files(tmp_path, target: str, kind: str) -> None:
    """`extends "/dev/zero"` read until memory ran out; a FIFO would block open() forever."""
    if target == "/dev/zero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    if target == "fifo.mlr":
        os.mkfifo(tmp_path / "fifo.mlr")
    spec = tmp_path / "spec.mlr"
    spec.write_text(f'extends "{target}"\n' + HEAD + "mask = other_digit\n")
    done = _subprocess("lint", str(spec), cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unreadable-file" in done.stdout and f"is {kind}, not a spec file" in done.stdout


def test_lint_does_not_echo_lines_of_files_that_are_not_specs(tmp_path, capsys) -> None:
    """A spec from a pull request extends a secret: lint names the problem but prints no line of it."""
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    spec = tmp_path / "spec.mlr"
    spec.write_text('extends "passwd"\n' + HEAD + "mask = other_digit\n")
    (tmp_path / "link.mlr").symlink_to(secret)  # a .mlr name that really is the secret
    for path in (spec, tmp_path / "link.mlr"):
        code, out = _cli(capsys, "lint", str(path))
        assert code == 1
        assert "syntax-error" in out and "passwd:1:5" in out
        assert "/bin/bash" not in out and "root:x" not in out and "❌" not in out


def test_a_spec_with_a_syntax_error_still_shows_its_line(tmp_path, capsys) -> None:
    spec = tmp_path / "spec.mlr"
    spec.write_text("target = 3\nmask other_digit\n")
    code, out = _cli(capsys, "lint", str(spec))
    assert code == 1 and "   2 | mask other_digit" in out and "^" in out


def test_markup_emoji_and_control_characters_in_a_spec_print_as_written(tmp_path, capsys) -> None:
    spec = tmp_path / "spec.mlr"
    spec.write_text(HEAD + 'mask = other_digit\nnote = "[bold]x[/bold] :x: [red]\x1b[31m"\n')
    code, out = _cli(capsys, "lint", str(spec))
    assert code == 1 and "unknown field `note`" in out
    assert '[bold]x[/bold] :x: [red]\ufffd[31m"' in out  # markup and emoji code as written
    assert "❌" not in out and "\x1b" not in out


def test_the_human_report_of_5000_glued_units_is_linear(tmp_path, capsys) -> None:
    """5,000 diagnostics on one 15 KB line printed the line 5,000 times: 113 MB, 59 s."""
    path = tmp_path / "glued.mlr"
    path.write_text("k = " + " ".join(["5m"] * 5000) + "\n")
    start = time.perf_counter()
    code, out = _cli(capsys, "lint", str(path))
    assert code == 1
    assert "4,950 more diagnostic(s) not shown" in out and "5000 error(s)" in out
    assert len(out) < 100_000  # 50 diagnostics with a 120-column window each
    assert time.perf_counter() - start < 30
    code, out = _cli(capsys, "lint", "--format", "json", str(path))
    assert code == 1 and len(json.loads(out)["diagnostics"]) == 5000  # JSON still lists every one


def test_a_long_line_is_shown_as_a_window_around_the_column(tmp_path, capsys) -> None:
    path = tmp_path / "spec.mlr"
    path.write_text("k = [" + "1, " * 2000 + "5m]\n")
    code, out = _cli(capsys, "lint", str(path))
    assert code == 1 and "bad-unit" in out
    source = next(line for line in out.splitlines() if line.startswith("   1 | "))
    caret = out.splitlines()[out.splitlines().index(source) + 1]
    assert source.startswith("   1 | …") and len(source) < 140
    assert source[caret.index("^") : caret.index("^") + 2] == "5m"  # the caret still points at the unit


# --- budgets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("weights = uniform(1e309)", "uniform value must be a finite number, got 1e309"),
        ("weights = uniform(1e308)", "uniform value must be at most 1e6, got 1e308"),
        ("weights = [1e308, 1]", "each of weights must be at most 1e6"),
        ("weights = exponential(base = 1e308)", "exponential base must be at most 1e6"),
        ("weights = padded([1], fill = 1e999)", "padded fill must be a finite number"),
        ("weights = exponential(base = 1000)", "the weights reach 1e9 on layer 3"),
        ("weights = uniform(0)", "the weights are 0 on every one of the"),
        ("range = [0, 1e999]", "range bound must be a finite number, got 1e999"),
        ("range = [0, 1e7]", "range bound must be at most 1e6"),
        ("search {\n  resolution = 2\n}", "search resolution must be less than the range's width (1), got 2"),
        ("search {\n  resolution = 1e308\n}", "search resolution is out of scale: 1e308"),
        ("search {\n  resolution = 1e-12\n}", "search resolution must be at least 1e-9, got 1e-12"),
        ("search {\n  seed = 99999999999999999999\n}", "search seed is out of scale"),
        ("search {\n  time_limit = 99999999999999999999h\n}", "search time_limit is out of scale"),
        ("chain = attack(steps = 100000000000)", "attack option `steps` is out of scale"),
    ],
)
def test_out_of_scale_budgets_are_lint_errors_with_a_hint(tmp_path, capsys, line: str, says: str) -> None:
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + "mask = other_digit\n" + line + "\n")
    code, out = _cli(capsys, "lint", str(path))
    assert code == 1
    assert "bad-value" in out and says in out
    assert "hint:" in out or "range bound must be at most" in says


@pytest.mark.parametrize(
    "line", ["weights = exponential(base = 1.2)", "search {\n  resolution = 0.5\n}", "range = [-1, 255]"]
)
def test_budgets_within_the_bounds_still_lint_clean(tmp_path, capsys, line: str) -> None:
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + "mask = other_digit\n" + line + "\n")
    code, out = _cli(capsys, "lint", str(path))
    assert code == 0, out


def test_run_refuses_an_infinite_range_before_any_work(tmp_path, capsys) -> None:
    """`range = [0, 1e999]` passed lint and crashed the run."""
    path = tmp_path / "spec.mlr"
    path.write_text(HEAD + "mask = other_digit\nrange = [0, 1e999]\n")
    code, out = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and "bad-value" in out and "must be a finite number" in out
    assert not (tmp_path / "out" / "result.json").exists()


def test_an_empty_canvas_list_is_an_empty_sweep_in_lint_and_sweep(tmp_path, capsys) -> None:
    """`canvases = []` quietly ran the spec's own canvas, though the docs promise empty-sweep."""
    spec = tmp_path / "spec.mlr"
    spec.write_text(
        HEAD.replace("target = 3", "target = first_digit") + "mask = other_digit\nsweep {\n  canvases = []\n}\n"
    )
    code, out = _cli(capsys, "lint", str(spec))
    assert code == 1 and "empty-sweep" in out and "the list of canvases is empty" in out
    done = _subprocess("sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "empty-sweep" in done.stderr and "the list of canvases is empty" in done.stderr
    assert not (tmp_path / "out").exists()
