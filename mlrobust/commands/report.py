"""`mlrobust report SWEEP_DIR… [--out FILE]`: the experiment's Markdown report and figures from a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mlrobust.errors import ExitCode, UserError

SWEEP_HINT = "give the folder `mlrobust sweep` wrote (it holds sweep.json)"


def report(args: argparse.Namespace) -> ExitCode:
    from mlrobust.report.experiment import write_report

    folders = [Path(name) for name in args.sweep_dirs]
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder", hint=SWEEP_HINT)
    if len({folder.resolve().name for folder in folders}) < len(folders):
        raise UserError("two sweep folders have the same name", hint="the report tells sweeps apart by folder name")
    out = Path(args.out) if args.out else folders[0] / "report.md"
    if out.suffix.lower() != ".md":
        raise UserError(f"--out {out} is not a Markdown file name", hint="end it in .md, e.g. docs/results.md")
    if out.is_symlink():
        raise UserError(f"--out {out} is a symbolic link; mlrobust does not write through links")
    files = write_report(folders, out)
    console = Console()
    console.print(f"wrote {files.markdown}", highlight=False, soft_wrap=True)
    for path in (*files.figures, *files.tables):
        console.print(f"  {path}", highlight=False, soft_wrap=True)
    return ExitCode.OK
