"""The CLI surface: help, version, exit codes 0/1/2, and no tracebacks for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlrobust import __version__
from mlrobust.cli import main
from mlrobust.errors import ExitCode, MlrobustError, UserError, exit_code_for

from .helpers import run_cli


def test_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in ("run", "check", "lint", "fmt", "sweep", "data", "models"):
        assert f"    {command} " in result.stdout
    assert "1 user error" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"mlrobust {__version__}"


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["data"], ["models", "train", "--recipe", "fancy"], ["data", "build", "--bogus"]],
)
def test_bad_arguments_are_user_errors(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.code == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    result = run_cli("data", "show", str(tmp_path / "nowhere"))
    assert result.code == 1
    assert "no Double-MNIST index" in result.stderr


def test_data_show_summarises_the_committed_subset() -> None:
    result = run_cli("data", "show")
    assert result.code == 0
    assert "200 canvases" in result.stdout


def test_exit_code_policy_is_decided_in_one_place() -> None:
    assert exit_code_for(UserError("x")) == ExitCode.USER_ERROR == 1
    assert exit_code_for(MlrobustError("x")) == 2
    assert exit_code_for(ValueError("x")) == 2
    assert ExitCode.OK == 0


def test_an_unexpected_exception_is_exit_2_without_traceback(monkeypatch, capsys) -> None:
    def explode(_args):
        raise RuntimeError("boom [not markup]")

    monkeypatch.setattr("mlrobust.commands.data.show", explode)
    assert main(["data", "show"]) == 2
    err = capsys.readouterr().err
    assert "internal error" in err and "boom [not markup]" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_output_folder_that_cannot_be_made_is_a_user_error(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli(command, "tests/specs/run/fast.mlr", "--out", str(blocker / "out"))
    assert result.code == 1, result.stderr
    assert f"cannot write or read {blocker}" in result.stderr and "Traceback" not in result.stderr
