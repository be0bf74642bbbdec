"""Printing diagnostics: for people (source line and caret), JSON, and SARIF 2.1.0 for code scanning."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from mlrobust import __version__
from mlrobust.spec.diagnostics import CODES, Diagnostic, Severity, SpecError
from mlrobust.spec.parser import parse_text
from mlrobust.spec.source import read_spec_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


# Characters that must not reach a terminal as they are: control characters (an escape sequence
# could rewrite the screen) and bidirectional overrides (they reorder what a reviewer reads).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
WINDOW = 120  # columns of a source line shown around a diagnostic's column
SHOWN_PER_FILE = 50  # diagnostics printed in full per file; JSON and SARIF list every one


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("\ufffd", text)


def _source_lines(file: str) -> tuple[str, ...]:
    """The lines of a file that may be echoed: a spec, never whatever an `extends` pointed at.

    A file is echoed if it is a regular UTF-8 file within the size limit and either parses as
    a spec or is a `.mlr` file (its real path, so a link `x.mlr -> /etc/passwd` is no `.mlr`):
    lint in CI on a pull request must not print a line of /etc/passwd because a spec extends it.
    """
    path = Path(file)
    try:
        text = read_spec_text(path)
        is_spec_file = path.resolve().suffix == ".mlr"
    except (SpecError, OSError, RuntimeError, ValueError):
        return ()
    if not is_spec_file:
        try:
            parse_text(text, file)
        except SpecError:
            return ()
    return tuple(text.split("\n"))


def _display_path(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):
        return file


def _window(source: str, column: int, width: int) -> tuple[str, int, int]:
    """(the part of a long line to show, the caret's 0-based offset in it, the caret's width).

    At most WINDOW columns, so a diagnostic prints in bounded space however long its line is:
    5,000 diagnostics on one 30 KB line must not print 5,000 copies of it.
    """
    offset = column - 1
    if len(source) <= WINDOW:
        return source, offset, width
    start = max(0, min(offset - WINDOW // 3, len(source) - WINDOW))
    end = start + WINDOW
    shown = ("…" if start > 0 else "") + source[start:end] + ("…" if end < len(source) else "")
    caret = offset - start + (1 if start > 0 else 0)
    return shown, caret, max(1, min(width, end - offset))


def print_human(console: Console, diagnostics: Iterable[Diagnostic], per_file: int = SHOWN_PER_FILE) -> None:
    """Each diagnostic with its source line and a caret, for people: the first `per_file` of
    each file, then how many more there are (a person reads the first few; 5,000 would scroll
    for a minute).

    Everything from the files (lines, and the messages that quote them) is printed as rich
    Text, never as markup, with emoji codes off: `[bold]` or `:x:` in a spec prints as written.
    """
    sources: dict[str, tuple[str, ...]] = {}  # each file read once per call, never kept (it may change)
    places: dict[str, str] = {}
    counted: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for d in diagnostics:
        counted[d.span.file] = counted.get(d.span.file, 0) + 1
        if counted[d.span.file] > per_file:
            hidden[d.span.file] = hidden.get(d.span.file, 0) + 1
            continue
        colour = "red" if d.severity is Severity.ERROR else "yellow"
        if d.span.file not in places:
            places[d.span.file] = _printable(_display_path(d.span.file))
        location = f"{places[d.span.file]}:{d.span.line}:{d.span.column}"
        head = Text.assemble(
            (location, "bold"),
            ": ",
            (d.severity.value, f"bold {colour}"),
            (f"[{d.code}]", "dim"),
            " ",
            _printable(d.message),
        )
        console.print(head, soft_wrap=True, emoji=False, highlight=False)
        if d.span.file not in sources:
            sources[d.span.file] = _source_lines(d.span.file)
        lines = sources[d.span.file]
        if 1 <= d.span.line <= len(lines):
            source = lines[d.span.line - 1]
            width = (d.span.end_column if d.span.end_line == d.span.line else len(source) + 1) - d.span.column
            shown, caret, width = _window(source, d.span.column, max(1, width))
            gutter = f"{d.span.line:>4} | "
            console.print(
                Text.assemble((gutter, "dim"), _printable(shown)), soft_wrap=True, emoji=False, highlight=False
            )
            console.print(
                Text.assemble(" " * (len(gutter) + caret), ("^" * width, colour)),
                soft_wrap=True,
                emoji=False,
                highlight=False,
            )
        if d.hint:
            console.print(
                Text.assemble("     ", ("hint:", "bold"), " ", _printable(d.hint)),
                soft_wrap=True,
                emoji=False,
                highlight=False,
            )
    for file, count in hidden.items():
        console.print(
            Text(f"{places[file]}: {count:,} more diagnostic(s) not shown (--format json lists every one)", "dim"),
            soft_wrap=True,
            emoji=False,
            highlight=False,
        )


def as_json(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [
        {
            "code": d.code,
            "severity": d.severity.value,
            "message": d.message,
            "hint": d.hint,
            "file": d.span.file,
            "line": d.span.line,
            "column": d.span.column,
            "end_line": d.span.end_line,
            "end_column": d.span.end_column,
        }
        for d in diagnostics
    ]


def as_sarif(diagnostics: Iterable[Diagnostic]) -> dict[str, Any]:
    """One SARIF 2.1.0 run; every registered code is a rule, so viewers can explain each."""
    items = list(diagnostics)
    rule_ids = list(CODES)
    results = []
    for d in items:
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        results.append(
            {
                "ruleId": d.code,
                "ruleIndex": rule_ids.index(d.code),
                "level": "error" if d.severity is Severity.ERROR else "warning",
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _sarif_uri(d.span.file)},
                            "region": {
                                "startLine": d.span.line,
                                "startColumn": d.span.column,
                                "endLine": d.span.end_line,
                                "endColumn": d.span.end_column,
                            },
                        }
                    }
                ],
            }
        )
    rules = [
        {
            "id": code.name,
            "shortDescription": {"text": code.summary},
            "defaultConfiguration": {"level": "error" if code.severity is Severity.ERROR else "warning"},
        }
        for code in CODES.values()
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "mlrobust", "version": __version__, "rules": rules}},
                "results": results,
            }
        ],
    }


def _sarif_uri(file: str) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.resolve().as_uri() if path.is_absolute() else path.as_posix()


def dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False)
