"""Properties of the spec language, over generated specs and generated garbage.

- Round trip: any syntax tree, written out messily (random spacing, newlines, comments),
  parses back to itself; fmt keeps it (parse(fmt(s)) == parse(s)) and is idempotent.
- Robustness: random and mutated text never raises anything but SpecError from the parser
  and formatter, never anything at all from the checker, and never a traceback from the CLI.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlrobust.cli import main
from mlrobust.contract.span import Span
from mlrobust.spec import syntax as s
from mlrobust.spec.check import check_spec
from mlrobust.spec.diagnostics import SpecError
from mlrobust.spec.format import format_spec, render_value
from mlrobust.spec.parser import parse_text

from .helpers import REPO

NO_SPAN = Span("<generated>", 1, 1, 1, 1)
KEYWORDS = {"true", "false", "extends"}

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
string_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from('"\\#\t')


@st.composite
def numbers(draw) -> s.Number:
    if draw(st.booleans()):
        value: int | float = draw(st.integers(-(10**6), 10**6))
        text = str(value)
    else:
        value = draw(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
        text = draw(st.sampled_from([repr(value), f"{value:.6g}", f"{value:e}"]))
        value = float(text)
        if "e" not in text and "." not in text:
            value = int(text)  # `1e+06` prints as `1000000` with .6g only for ints: keep the literal's kind
    return s.Number(value, text, NO_SPAN)


@st.composite
def durations(draw) -> s.Duration:
    from mlrobust.spec.parser import DURATION_UNITS

    amount = draw(st.integers(0, 10_000))
    unit = draw(st.sampled_from(sorted(DURATION_UNITS)))
    return s.Duration(amount * DURATION_UNITS[unit], f"{amount}{unit}", NO_SPAN)


def scalar_values() -> st.SearchStrategy[s.Value]:
    return st.one_of(
        st.text(string_chars, max_size=12).map(lambda t: s.String(t, NO_SPAN)),
        numbers(),
        durations(),
        st.booleans().map(lambda b: s.Boolean(b, NO_SPAN)),
        names.map(lambda n: s.Name(n, NO_SPAN)),
    )


def calls(values: st.SearchStrategy[s.Value]) -> st.SearchStrategy[s.Call]:
    argument = st.builds(lambda n, v: s.Argument(n, v, NO_SPAN), st.none() | names, values)
    return st.builds(lambda n, a: s.Call(n, tuple(a), NO_SPAN, NO_SPAN), names, st.lists(argument, max_size=3))


values: st.SearchStrategy[s.Value] = st.recursive(
    scalar_values(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: s.ListValue(tuple(items), NO_SPAN)),
        calls(inner),
    ),
    max_leaves=8,
)
field_values = st.one_of(
    values,
    st.lists(calls(values) | names.map(lambda n: s.Name(n, NO_SPAN)), min_size=2, max_size=4).map(
        lambda steps: s.Chain(tuple(steps), NO_SPAN)
    ),
)
fields = st.builds(lambda k, v: s.Field(k, v, NO_SPAN, NO_SPAN), names, field_values)
blocks = st.builds(lambda n, f: s.Block(n, tuple(f), NO_SPAN, NO_SPAN), names, st.lists(fields, max_size=3))
extends = st.text(string_chars, max_size=10).map(lambda p: s.Extends(s.String(p, NO_SPAN), NO_SPAN))


@st.composite
def statement_lists(draw) -> tuple[s.Statement, ...]:
    head = [draw(extends)] if draw(st.booleans()) else []
    return tuple(head + draw(st.lists(st.one_of(fields, blocks), max_size=6)))


@st.composite
def messy_text(draw, statements: tuple[s.Statement, ...]) -> str:
    """The statements written with random white space, newlines and comments between tokens."""
    gap = st.sampled_from([" ", "  ", "\t", "\n", " \n\n  ", " # note\n", "\n# own line\n"])

    def sep() -> str:
        return draw(gap)

    def value_text(value: s.Value) -> str:
        if isinstance(value, s.ListValue):
            trailing = "," if value.items and draw(st.booleans()) else ""
            return "[" + sep() + ("," + sep()).join(value_text(i) for i in value.items) + trailing + "]"
        if isinstance(value, s.Call):
            args = [
                (f"{a.name}{sep()}={sep()}" if a.name is not None else "") + value_text(a.value)
                for a in value.arguments
            ]
            return f"{value.name}(" + sep() + ("," + sep()).join(args) + ")"
        if isinstance(value, s.Chain):
            return (sep() + "->" + sep()).join(value_text(step) for step in value.steps)
        return render_value(value)

    parts = []
    for statement in statements:
        if isinstance(statement, s.Extends):
            parts.append("extends" + sep() + render_value(statement.path))
        elif isinstance(statement, s.Field):
            parts.append(f"{statement.key}{sep()}={sep()}{value_text(statement.value)}")
        else:
            inner = sep().join(f"{f.key}{sep()}={sep()}{value_text(f.value)}" for f in statement.fields)
            parts.append(f"{statement.name}{sep()}{{{sep()}{inner}{sep()}}}")
    return sep() + "\n".join(parts) + "\n" + draw(st.sampled_from(["", "# trailing comment\n"]))


@st.composite
def specs(draw) -> tuple[tuple[s.Statement, ...], str]:
    statements = draw(statement_lists())
    return statements, draw(messy_text(statements))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_messy_text_parses_to_its_tree_and_fmt_keeps_it(case) -> None:
    statements, text = case
    assert parse_text(text).statements == statements
    formatted = format_spec(text)  # safe mode checks meaning and stability itself; check again here
    assert parse_text(formatted).statements == statements
    assert format_spec(formatted) == formatted
    assert [c.text for c in parse_text(formatted).comments] == [c.text for c in parse_text(text).comments]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_ever_raises_spec_error(text: str) -> None:
    for function in (parse_text, format_spec):
        try:
            function(text)
        except SpecError as error:
            assert error.diagnostics and all(d.span.line >= 1 and d.span.column >= 1 for d in error.diagnostics)


VALID_SPEC = (REPO / "specs" / "double_mnist_none.mlr").read_text()
mutations = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "replace"]),
        st.integers(0, len(VALID_SPEC)),
        st.sampled_from([*string.printable, "é", "→", "\x00"]),
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, edits) -> str:
    for kind, position, char in edits:
        position = min(position, len(text))
        if kind == "delete":
            text = text[:position] + text[position + 1 :]
        elif kind == "insert":
            text = text[:position] + char + text[position:]
        else:
            text = text[:position] + char + text[position + 1 :]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations)
def test_mutated_specs_never_crash_the_checker(tmp_path_factory, edits) -> None:
    folder = tmp_path_factory.mktemp("mut")
    (folder / "base.mlr").write_text((REPO / "specs" / "base.mlr").read_text().replace("../", str(REPO) + "/"))
    path = folder / "spec.mlr"
    path.write_text(mutate(VALID_SPEC.replace("../", str(REPO) + "/"), edits))
    result = check_spec(path)  # must not raise
    assert all(d.span.line >= 1 for d in result.diagnostics)
    try:
        format_spec(path.read_text())
    except SpecError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations)
def test_mutated_specs_never_give_a_traceback_through_the_cli(tmp_path_factory, capsys, edits) -> None:
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "spec.mlr"
    path.write_text(mutate(VALID_SPEC.replace("../", str(REPO) + "/"), edits), encoding="utf-8")
    (folder / "base.mlr").write_text((REPO / "specs" / "base.mlr").read_text().replace("../", str(REPO) + "/"))
    for argv in (["lint", str(path)], ["lint", "--format", "sarif", str(path)], ["fmt", "--check", str(path)]):
        code = main(argv)
        out = capsys.readouterr()
        assert code in (0, 1), (argv, out.err)
        assert "Traceback" not in out.err + out.out and "internal error" not in out.err
