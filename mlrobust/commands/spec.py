"""`mlrobust lint` and `mlrobust fmt`."""

from __future__ import annotations

import argparse
import difflib
import stat
import sys
from pathlib import Path

from rich.console import Console

from mlrobust.errors import ExitCode, UserError
from mlrobust.spec import syntax as s
from mlrobust.spec.check import check_spec
from mlrobust.spec.diagnostics import Diagnostic, SpecError, sort_key
from mlrobust.spec.format import format_spec
from mlrobust.spec.parser import parse_text
from mlrobust.spec.report import as_json, as_sarif, dumps, print_human
from mlrobust.spec.source import read_spec_text
from mlrobust.storage import atomic_write_text


def spec_files(paths: list[str]) -> list[Path]:
    """The .mlr files named, with folders searched recursively; missing paths are user errors."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.mlr")))
        elif path.exists():
            found.append(path)
        else:
            raise UserError(f"no such file or folder: {name}")
    if not found:
        raise UserError(f"no .mlr files in {', '.join(paths)}")
    return found


def _extended_by(files: list[Path]) -> set[Path]:
    """Files that some linted spec extends: bases, checked as partial specs."""
    bases: set[Path] = set()
    for path in files:
        try:
            document = parse_text(read_spec_text(path), str(path))
        except SpecError:
            continue  # check_spec reports why the file cannot be used
        for statement in document.statements:
            if isinstance(statement, s.Extends):
                try:
                    bases.add((path.parent / statement.path.value).resolve())
                except (ValueError, OSError):
                    continue  # check_spec reports the unusable path
    return bases


def lint(args: argparse.Namespace) -> ExitCode:
    files = spec_files(args.paths)
    bases = _extended_by(files)
    diagnostics: list[Diagnostic] = []
    for path in files:
        result = check_spec(path, partial=path.resolve() in bases)
        diagnostics.extend(result.diagnostics)
    diagnostics = sorted(set(diagnostics), key=sort_key)  # a shared base is reported once
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if args.format == "json":
        print(dumps({"files": [str(f) for f in files], "diagnostics": as_json(diagnostics)}))
    elif args.format == "sarif":
        print(dumps(as_sarif(diagnostics)))
    else:
        console = Console()
        print_human(console, diagnostics)
        status = "[green]clean[/]" if not diagnostics else f"{errors} error(s), {warnings} warning(s)"
        console.print(f"{len(files)} spec file(s) checked: {status}")
    if errors or (warnings and args.strict):
        return ExitCode.USER_ERROR
    return ExitCode.OK


def fmt(args: argparse.Namespace) -> ExitCode:
    files = spec_files(args.paths)
    console = Console(stderr=True)
    changed: list[Path] = []
    failed = False
    for path in files:
        try:
            text = read_spec_text(path)  # a regular UTF-8 file within the size limit, as lint reads
            formatted = format_spec(text, str(path))
        except SpecError as error:
            print_human(console, error.diagnostics)
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(path)
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(keepends=True), formatted.splitlines(keepends=True), str(path), str(path)
                )
            )
        elif not args.check:
            atomic_write_text(path, formatted, mode=stat.S_IMODE(path.stat().st_mode))  # keep its permissions
    verb = "would reformat" if (args.check or args.diff) else "reformatted"
    for path in changed:
        console.print(f"{verb} {path}")
    console.print(
        f"{len(changed)} of {len(files)} file(s) {verb if changed else 'already canonical'}"
        if changed
        else f"{len(files)} file(s) already canonical"
    )
    if failed or (args.check and changed):
        return ExitCode.USER_ERROR
    return ExitCode.OK
