"""`format_spec(text) -> text`: the canonical layout of a spec, comments kept.

Layout: statements in the order written (reordering would move comments around and gain
nothing), one per line, `key = value`, blocks indented by two spaces, at most one blank line
between statements (kept where the author left one), a chain on one line when it fits in
LINE_WIDTH columns and else one `-> step` per line. Numbers, durations and strings keep the
exact text the author wrote, so formatting never changes a value.

Safe mode (the default) re-parses the output and insists on the same syntax tree (spans
aside) and on stability (formatting the output changes nothing); a formatter bug then
surfaces as an internal error instead of a silently changed spec.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from mlrobust.contract.span import Span
from mlrobust.errors import MlrobustError
from mlrobust.spec import syntax as s
from mlrobust.spec.diagnostics import Diagnostic, SpecError
from mlrobust.spec.parser import parse_text
from mlrobust.spec.source import MAX_FILE_BYTES

LINE_WIDTH = 100
INDENT = "  "


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


def render_value(value: s.Value) -> str:
    """One value on one line."""
    if isinstance(value, s.String):
        return f'"{_escape(value.value)}"'
    if isinstance(value, (s.Number, s.Duration)):
        return value.text
    if isinstance(value, s.Boolean):
        return "true" if value.value else "false"
    if isinstance(value, s.Name):
        return value.value
    if isinstance(value, s.ListValue):
        return "[" + ", ".join(render_value(item) for item in value.items) + "]"
    if isinstance(value, s.Call):
        args = ", ".join(
            render_value(a.value) if a.name is None else f"{a.name} = {render_value(a.value)}" for a in value.arguments
        )
        return f"{value.name}({args})"
    return " -> ".join(render_value(step) for step in value.steps)


def _render_field(item: s.Field, indent: str) -> list[str]:
    head = f"{indent}{item.key} = "
    one_line = head + render_value(item.value)
    if len(one_line) <= LINE_WIDTH or not isinstance(item.value, s.Chain):
        return [one_line]
    first, *rest = item.value.steps
    return [head + render_value(first)] + [f"{indent}{INDENT}{INDENT}-> {render_value(step)}" for step in rest]


@dataclass
class _Emitter:
    comments: deque[s.Comment]  # taken from the front: a deque keeps 100,000 comments linear
    lines: list[str]
    last_line: int = 0  # last source line already emitted

    def _leading(self, before_line: int, indent: str) -> None:
        """Every comment not yet placed that stands before `before_line`, each on its own line.

        Own-line comments land here, and so does a trailing comment no statement claimed (one
        after a `{` that stands on a line of its own, say): order is kept either way.
        """
        while self.comments and self.comments[0].line < before_line:
            comment = self.comments.popleft()
            self._gap(comment.line)
            self.lines.append(indent + comment.text)
            self.last_line = comment.line

    def _gap(self, line: int) -> None:
        """Keep one blank line where the source had some, but never right after `{`."""
        if self.lines and line > self.last_line + 1 and self.lines[-1] != "" and not self.lines[-1].endswith("{"):
            self.lines.append("")

    def _inner(self, start: int, end: int) -> tuple[list[str], str]:
        """Comments on lines start..end: (own lines to put before the statement, a trailing suffix).

        One line holds at most one comment (two would merge into one on the next parse), so
        only the last comment of a multi-line statement can trail it; the others, own-line
        comments inside a multi-line value among them, move above it, in order.
        """
        found = []
        while self.comments and start <= self.comments[0].line <= end:
            found.append(self.comments.popleft())
        if found and found[-1].trailing:
            return [c.text for c in found[:-1]], "  " + found[-1].text
        return [c.text for c in found], ""

    def _emit(self, indent: str, before: list[str], lines: list[str], suffix: str) -> None:
        self.lines.extend(indent + text for text in before)
        lines[-1] += suffix
        self.lines.extend(lines)

    def statement(self, statement: s.Statement, indent: str = "") -> None:
        span = statement.span
        self._leading(span.line, indent)
        self._gap(span.line)
        if isinstance(statement, s.Extends):
            before, suffix = self._inner(span.line, span.end_line)
            self._emit(indent, before, [f'{indent}extends "{_escape(statement.path.value)}"'], suffix)
        elif isinstance(statement, s.Field):
            before, suffix = self._inner(span.line, span.end_line)
            self._emit(indent, before, _render_field(statement, indent), suffix)
        elif not statement.fields:
            before, suffix = self._inner(span.line, span.end_line)
            self._emit(indent, before, [f"{indent}{statement.name} {{}}"], suffix)
        else:
            # Only a comment on the opening line trails `{`; own-line comments after it lead the
            # first field, and comments on the first field's line are that field's own.
            opener_end = span.line if statement.fields[0].span.line > span.line else span.line - 1
            before, suffix = self._inner(span.line, opener_end)
            self._emit(indent, before, [f"{indent}{statement.name} {{"], suffix)
            self.last_line = span.line
            for item in statement.fields:
                self.statement(item, indent + INDENT)
            self._leading(span.end_line, indent + INDENT)
            before, suffix = self._inner(span.end_line, span.end_line)
            self._emit(indent + INDENT, before, [f"{indent}}}"], suffix)
        self.last_line = span.end_line

    def rest(self) -> None:
        """Comments after the last statement (and any left over)."""
        while self.comments:
            comment = self.comments.popleft()
            if comment.trailing and self.lines:
                self.lines[-1] += "  " + comment.text
                continue
            self._gap(comment.line)
            self.lines.append(comment.text)
            self.last_line = comment.line


def _format_document(document: s.Document) -> str:
    emitter = _Emitter(deque(sorted(document.comments, key=lambda c: (c.line, c.column))), [])
    for statement in document.statements:
        emitter.statement(statement)
    emitter.rest()
    return "\n".join(emitter.lines).rstrip() + "\n" if emitter.lines else ""


class FormatterError(MlrobustError):
    """The formatter would change a spec's meaning or is unstable: a bug, never the user's fault."""


def format_spec(text: str, file: str = "<text>", safe: bool = True) -> str:
    """The canonical form of `text`; raises SpecError if it does not parse."""
    document = parse_text(text, file)
    formatted = _format_document(document)
    size = len(formatted.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:  # `[1,1]` grows to `[1, 1]`: a file near the limit can format past it
        raise SpecError(
            [
                Diagnostic(
                    "file-too-large",
                    f"formatted, {file} would be {size:,} bytes; a spec file may have at most {MAX_FILE_BYTES:,}",
                    Span(file, 1, 1, 1, 1),
                    "split the spec: put shared fields in a base and `extends` it, or sweep with glob() or rows()",
                )
            ]
        )
    if safe:
        again = parse_text(formatted, file)
        if again.statements != document.statements:
            raise FormatterError(f"formatting {file} would change its meaning; the file was left as it was")
        if [c.text for c in again.comments] != [c.text for c in document.comments]:
            raise FormatterError(f"formatting {file} would lose or reorder comments; the file was left as it was")
        if _format_document(again) != formatted:
            raise FormatterError(f"formatting {file} is not stable; the file was left as it was")
    return formatted
