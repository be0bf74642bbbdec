"""The syntax tree of one .mlr file: what was written, before any meaning is given to it.

Spans are excluded from equality (`compare=False`), so two trees are equal exactly when they
say the same thing, wherever it stands in the file: the formatter's safety check and the
round-trip tests rely on that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlrobust.contract.span import Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Number:
    value: int | float
    text: str = field(compare=False)
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Duration:
    seconds: float
    text: str = field(compare=False)
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Boolean:
    value: bool
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    value: str
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class ListValue:
    items: tuple[Value, ...]
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Argument:
    name: str | None  # None for a positional argument
    value: Value
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    name: str
    arguments: tuple[Argument, ...]
    span: Span = field(compare=False, repr=False)
    name_span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Chain:
    steps: tuple[Call | Name, ...]  # `attack` alone is a step with every default
    span: Span = field(compare=False, repr=False)


Value = String | Number | Duration | Boolean | Name | ListValue | Call | Chain


@dataclass(frozen=True)
class Extends:
    path: String
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Field:
    key: str
    value: Value
    span: Span = field(compare=False, repr=False)
    key_span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Block:
    name: str
    fields: tuple[Field, ...]
    span: Span = field(compare=False, repr=False)
    name_span: Span = field(compare=False, repr=False)


Statement = Extends | Field | Block


@dataclass(frozen=True)
class Comment:
    """`# ...` text, where it stood, and whether code precedes it on its line."""

    text: str
    line: int
    column: int
    trailing: bool


@dataclass(frozen=True)
class Document:
    """A parsed file: its statements (the meaning) and its comments (kept for fmt)."""

    file: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(compare=False)


def value_kind(value: Value) -> str:
    """How a value is called in messages ("a string", "a list", ...)."""
    return {
        String: "a string",
        Number: "a number",
        Duration: "a duration",
        Boolean: "a boolean",
        Name: "a name",
        ListValue: "a list",
        Call: "a call",
        Chain: "a verifier chain",
    }[type(value)]
