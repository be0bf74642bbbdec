"""Text -> syntax tree, with parse errors turned into diagnostics (never exceptions from Lark)."""

from __future__ import annotations

import functools
import re

from lark import (
    Lark,
    Token,
    Transformer,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    v_args,
)
from lark.tree import Meta

from mlrobust.contract.span import Span
from mlrobust.resources import grammar_text
from mlrobust.spec import syntax as s
from mlrobust.spec.diagnostics import Diagnostic, SpecError

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))(ms|s|min|h)$")

# Terminal names as a person reads them in "expected ..." messages.
_TOKEN_WORDS = {
    "NAME": "a name",
    "STRING": 'a string ("...")',
    "NUMBER": "a number",
    "DURATION": "a duration (30s, 5min)",
    "EQUAL": '"="',
    "LBRACE": '"{"',
    "RBRACE": '"}"',
    "LPAR": '"("',
    "RPAR": '")"',
    "LSQB": '"["',
    "RSQB": '"]"',
    "COMMA": '","',
    "__ANON_0": '"->"',
    "EXTENDS": '"extends"',
    "TRUE": '"true"',
    "FALSE": '"false"',
    "$END": "the end of the file",
}


@functools.cache
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _token_span(file: str, token: Token) -> Span:
    return Span(file, token.line or 1, token.column or 1, token.end_line or 1, token.end_column or 1)


def _meta_span(file: str, meta: Meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 1, 1, 1, 1)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


@v_args(meta=True)
class _ToSyntax(Transformer):  # type: ignore[type-arg]
    """Lark tree -> frozen syntax nodes: one method per grammar rule or alias."""

    def __init__(self, file: str) -> None:
        super().__init__(visit_tokens=False)
        self.file = file

    def _span(self, meta: Meta) -> Span:
        return _meta_span(self.file, meta)

    def _token(self, token: Token) -> Span:
        return _token_span(self.file, token)

    def start(self, meta, children):
        return tuple(children)

    def string(self, meta, children):
        (token,) = children
        return s.String(_unescape(str(token)), self._token(token))

    def number(self, meta, children):
        (token,) = children
        return s.Number(_number(str(token)), str(token), self._token(token))

    def duration(self, meta, children):
        (token,) = children
        match = _DURATION.match(str(token))
        assert match is not None  # the grammar's DURATION regex guarantees the shape
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
        return s.Duration(seconds, str(token), self._token(token))

    def name(self, meta, children):
        (token,) = children
        return s.Name(str(token), self._token(token))

    def true(self, meta, children):
        return s.Boolean(True, self._span(meta))

    def false(self, meta, children):
        return s.Boolean(False, self._span(meta))

    def list(self, meta, children):
        return s.ListValue(tuple(c for c in children if c is not None), self._span(meta))

    def named_argument(self, meta, children):
        token, value = children
        return s.Argument(str(token), value, self._span(meta))

    def positional_argument(self, meta, children):
        (value,) = children
        return s.Argument(None, value, self._span(meta))

    def call(self, meta, children):
        token, *arguments = children
        arguments = tuple(a for a in arguments if a is not None)
        return s.Call(str(token), arguments, self._span(meta), self._token(token))

    def chain(self, meta, children):
        return s.Chain(tuple(children), self._span(meta))

    def extends(self, meta, children):
        (token,) = children
        return s.Extends(s.String(_unescape(str(token)), self._token(token)), self._span(meta))

    def field(self, meta, children):
        token, value = children
        return s.Field(str(token), value, self._span(meta), self._token(token))

    def block(self, meta, children):
        token, *fields = children
        return s.Block(str(token), tuple(fields), self._span(meta), self._token(token))


def _line_parts(line: str) -> tuple[list[bool], int | None]:
    """Per character, whether it is inside a string's quotes; and the column a comment starts at.

    Strings never span lines, so scanning a line on its own is exact.
    """
    inside = [False] * len(line)
    in_string = escaped = False
    for column, char in enumerate(line):
        if in_string:
            inside[column] = True
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            return inside, column
    return inside, None


def scan_comments(text: str) -> tuple[s.Comment, ...]:
    """Every `#` comment outside a string."""
    comments = []
    for number, line in enumerate(text.split("\n"), start=1):
        _, column = _line_parts(line)
        if column is not None:
            trailing = bool(line[:column].strip())
            comments.append(s.Comment(line[column:].rstrip(), number, column + 1, trailing))
    return tuple(comments)


def _expected_words(expected: set[str] | frozenset[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(name, name.strip('"').lower()) for name in expected})
    if len(words) > 6:
        words = [*words[:6], "…"]
    return ", ".join(words)


def _syntax_diagnostic(file: str, text: str, error: UnexpectedInput) -> Diagnostic:
    line = getattr(error, "line", 1) or 1
    column = getattr(error, "column", 1) or 1
    at_end = isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END")
    if line < 1 or at_end:  # point just past the last character that is not white space
        lines = text.rstrip().split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    span = Span(file, line, column, line, column + 1)
    hint = None
    if isinstance(error, UnexpectedCharacters):
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        message = f"unexpected character {char!r}"
        if char == '"':
            hint = "strings are written in double quotes on one line; close the string before the line ends"
        elif char == "'":
            hint = 'strings use double quotes: "..."'
        elif error.allowed:
            message += f"; expected {_expected_words(error.allowed)}"
    elif isinstance(error, UnexpectedEOF):
        message = f"the file ends too early; expected {_expected_words(set(error.expected))}"
        hint = "a block `name { ... }` needs its closing brace, a call its closing parenthesis"
    elif isinstance(error, UnexpectedToken):
        token = error.token
        expected = _expected_words(error.expected)
        if token.type == "$END":
            message = f"the file ends too early; expected {expected}"
        else:
            message = f"unexpected {str(token)!r}; expected {expected}"
        if "EQUAL" in error.expected:
            hint = "fields and named arguments are written `name = value`"
        elif "RBRACE" in error.expected:
            hint = "a block holds `name = value` fields and ends with `}`"
        elif error.expected & {"RPAR", "COMMA"}:
            hint = "arguments and list items are separated by commas"
    else:  # pragma: no cover - Lark has no other UnexpectedInput kinds
        message = str(error).splitlines()[0]
    return Diagnostic("syntax-error", message, span, hint)


_GLUED_UNIT = re.compile(r"(?<![\w.])(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?![eE][-+]?\d)([A-Za-z_]\w*)")


def _blank_strings_and_comments(text: str) -> str:
    """The text with string bodies and comments replaced by spaces (positions unchanged)."""
    lines = []
    for line in text.split("\n"):
        inside, comment = _line_parts(line)
        lines.append(
            "".join(" " if inside[i] or (comment is not None and i >= comment) else char for i, char in enumerate(line))
        )
    return "\n".join(lines)


def _bad_units(file: str, text: str) -> list[Diagnostic]:
    """A number glued to letters that are not a unit (`30sec`, `5m`): always a mistake."""
    diagnostics = []
    for match in _GLUED_UNIT.finditer(_blank_strings_and_comments(text)):
        if match.group(2) in DURATION_UNITS:
            continue
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        span = Span(file, line, column, line, column + len(match.group(0)))
        diagnostics.append(
            Diagnostic(
                "bad-unit",
                f"unknown unit {match.group(2)!r} in {match.group(0)!r}",
                span,
                hint="durations are written 500ms, 30s, 5min or 2h",
            )
        )
    return diagnostics


def parse_text(text: str, file: str = "<text>") -> s.Document:
    """Parse one file's text; raises SpecError with a syntax-error diagnostic on bad text."""
    bad_units = _bad_units(file, text)
    if bad_units:
        raise SpecError(bad_units)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise SpecError([_syntax_diagnostic(file, text, error)]) from None
    statements = _ToSyntax(file).transform(tree)
    return s.Document(file, statements, scan_comments(text))
