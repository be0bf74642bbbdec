"""Text -> syntax tree, with parse errors turned into diagnostics (never exceptions from Lark)."""

from __future__ import annotations

import bisect
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
from mlrobust.spec.source import MAX_FILE_BYTES, MAX_NESTING, too_large

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


# Digits past which an integer literal is read as ±inf: far beyond any usable value, and short of
# Python's 4,300-digit limit on int(str) (a ValueError). The checker refuses non-finite numbers.
_MAX_INT_DIGITS = 300


def _number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        if len(text.lstrip("-").lstrip("0")) > _MAX_INT_DIGITS:
            return float("-inf") if text.startswith("-") else float("inf")
        return int(text)
    return float(text)  # 1e999 is inf, 1e-999 is 0.0: never an exception


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


# A string runs from `"` to its closing quote or the end of its line (strings never span lines);
# a comment from `#` outside a string to the end of its line. One regex finds both, in order, so
# scanning is linear in the text (a per-character loop took seconds on a 1 MB string).
_STRING_OR_COMMENT = re.compile(r'"[^"\\\n]*(?:\\[^\n][^"\\\n]*)*(?:"|\\?(?=\n)|\\?\Z)|#[^\n]*')


class _Lines:
    """Line and column of an offset, by bisection over the line starts (linear overall)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.starts, offset) - 1
        return index + 1, offset - self.starts[index] + 1


def scan_comments(text: str) -> tuple[s.Comment, ...]:
    """Every `#` comment outside a string."""
    lines = _Lines(text)
    comments = []
    for match in _STRING_OR_COMMENT.finditer(text):
        if match.group(0).startswith("#"):
            line, column = lines.position(match.start())
            line_start = lines.starts[line - 1]
            trailing = bool(text[line_start : match.start()].strip())
            comments.append(s.Comment(match.group(0).rstrip(), line, column, trailing))
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

    def blank(match: re.Match[str]) -> str:
        found = match.group(0)
        return " " * len(found) if found.startswith("#") else '"' + " " * (len(found) - 1)

    return _STRING_OR_COMMENT.sub(blank, text)


def _bad_units(file: str, text: str, blanked: str) -> list[Diagnostic]:
    """A number glued to letters that are not a unit (`30sec`, `5m`): always a mistake.

    `blanked` is the text with strings and comments blanked (_blank_strings_and_comments).
    """
    diagnostics = []
    lines: _Lines | None = None
    for match in _GLUED_UNIT.finditer(blanked):
        if match.group(2) in DURATION_UNITS:
            continue
        lines = lines or _Lines(text)
        line, column = lines.position(match.start())
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


_BRACKET = re.compile(r"[\[\](){}]")
_OPENS = frozenset("[({")


def _nesting(file: str, text: str, blanked: str) -> None:
    """Raise nesting-too-deep past MAX_NESTING open brackets (strings and comments aside).

    The tree of a spec is as deep as its brackets, and each level costs the parser, the
    checker and the formatter a few Python frames: a cap keeps them all far from the
    recursion limit, whatever the text.
    """
    depth = 0
    for match in _BRACKET.finditer(blanked):
        if match.group(0) in _OPENS:
            depth += 1
            if depth > MAX_NESTING:
                line, column = _Lines(text).position(match.start())
                raise SpecError(
                    [
                        Diagnostic(
                            "nesting-too-deep",
                            f"lists and calls are nested more than {MAX_NESTING} deep here",
                            Span(file, line, column, line, column + 1),
                            "a spec value needs a few levels at most: `[1, 0.5]`, `padded([1], fill = 0)`",
                        )
                    ]
                )
        elif depth > 0:
            depth -= 1  # a stray closer is the parser's to report


def parse_text(text: str, file: str = "<text>") -> s.Document:
    """Parse one file's text; raises SpecError with a syntax-error diagnostic on bad text."""
    if len(text) > MAX_FILE_BYTES:  # text handed in from Python; files are limited when read
        raise too_large(file, len(text))
    blanked = _blank_strings_and_comments(text)
    _nesting(file, text, blanked)
    bad_units = _bad_units(file, text, blanked)
    if bad_units:
        raise SpecError(bad_units)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise SpecError([_syntax_diagnostic(file, text, error)]) from None
    statements = _ToSyntax(file).transform(tree)
    return s.Document(file, statements, scan_comments(text))
