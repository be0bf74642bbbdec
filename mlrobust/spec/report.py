"""Printing diagnostics: for people (source line and caret), JSON, and SARIF 2.1.0 for code scanning."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from mlrobust import __version__
from mlrobust.spec.diagnostics import CODES, Diagnostic, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _source_lines(file: str) -> tuple[str, ...]:
    try:
        return tuple(Path(file).read_text(encoding="utf-8").split("\n"))
    except (OSError, UnicodeDecodeError):
        return ()


def _display_path(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(Path.cwd()))
    except ValueError:
        return file


def print_human(console: Console, diagnostics: Iterable[Diagnostic]) -> None:
    sources: dict[str, tuple[str, ...]] = {}  # each file read once per call, never kept (it may change)
    for d in diagnostics:
        colour = "red" if d.severity is Severity.ERROR else "yellow"
        location = f"{_display_path(d.span.file)}:{d.span.line}:{d.span.column}"
        code = f"[dim]\\[{d.code}][/]"
        console.print(
            f"[bold]{escape(location)}[/]: [bold {colour}]{d.severity.value}[/]{code} {escape(d.message)}",
            soft_wrap=True,
        )
        if d.span.file not in sources:
            sources[d.span.file] = _source_lines(d.span.file)
        lines = sources[d.span.file]
        if 1 <= d.span.line <= len(lines):
            source = lines[d.span.line - 1]
            width = (d.span.end_column if d.span.end_line == d.span.line else len(source) + 1) - d.span.column
            gutter = f"{d.span.line:>4} | "
            console.print(f"[dim]{gutter}[/]{escape(source)}", soft_wrap=True, highlight=False)
            caret = " " * (len(gutter) + d.span.column - 1) + f"[{colour}]{'^' * max(1, width)}[/]"
            console.print(caret, soft_wrap=True)
        if d.hint:
            console.print(f"     [bold]hint:[/] {escape(d.hint)}", soft_wrap=True)


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
