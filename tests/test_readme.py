"""The README's two commands stay true: CI runs the test command verbatim, and the first one
names only commands and files that exist."""

from __future__ import annotations

import re

from .helpers import REPO

README = (REPO / "README.md").read_text()
COMMANDS = re.findall(r"```bash\n(.+?)\n```", README.split("## Commands")[0])


def test_readme_has_exactly_two_commands_up_front() -> None:
    assert len(COMMANDS) == 2
    install_and_run, test = COMMANDS
    assert install_and_run.startswith("python3 -m venv .venv && .venv/bin/pip install -e .")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert COMMANDS[1] in ci


def test_the_first_command_runs_real_subcommands_on_bundled_files() -> None:
    from mlrobust.cli import build_parser

    parser = build_parser()
    for part in COMMANDS[0].split("&&")[2:]:
        args = parser.parse_args(part.split()[1:])  # a renamed subcommand or flag fails here
        assert args.handler is not None, f"`{part.strip()}` is not implemented yet"
    assert list((REPO / "specs").glob("*.mlr"))
