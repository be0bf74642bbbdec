"""VNN-LIB 1.0 text -> a `VnnlibProperty`: the unsafe region as cases of (input box, output
disjunction), or diagnostics with file:line:col (never a traceback, never `eval`).

What is read (the forms VNN-COMP benchmarks write, and the general case):
- `(declare-const X_i Real)` / `(declare-const Y_j Real)`: inputs (the flattened ONNX input)
  and outputs (the flattened output), numbered from 0 without gaps;
- `(assert F)` where F nests `and` / `or` over comparisons `<=`, `>=`, `<`, `>`, `=` (chained
  as SMT-LIB allows: `(<= a b c)`) of linear terms: numbers, variables, `+`, `-`, `*` by a
  constant. Strict comparisons are read as non-strict: the unsafe region becomes its closure,
  so `unsat` stays a proof, and a `sat` witness is checked against the closed region.

Every assert must hold: the conjunction is normalised to disjunctive normal form. In each
disjunct the input constraints must bound every X_i (from below and above) one variable at a
time, and the output constraints are linear over the Y_j only. Disjuncts with the same input
box become one case whose output constraints form a disjunction (the usual "input box AND
(OR of output conjunctions)" is one case).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

from mlrobust.contract.span import Span
from mlrobust.errors import UserError
from mlrobust.resources import vnnlib_grammar_text
from mlrobust.spec.diagnostics import Diagnostic, SpecError

MAX_DEPTH = 200  # nesting deeper than this is refused (the reader recurses)
MAX_TERMS = 100_000  # disjuncts after normalisation
VARIABLE = re.compile(r"^([XY])_(0|[1-9]\d*)$")
COMPARISONS = ("<=", ">=", "<", ">", "=")


class VnnlibError(SpecError):
    """A VNN-LIB file that cannot be used, with every diagnostic found."""


# --- S-expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class Symbol:
    name: str
    span: Span


@dataclass(frozen=True)
class SList:
    items: tuple[Number | Symbol | SList, ...]
    span: Span

    @property
    def head(self) -> str | None:
        return self.items[0].name if self.items and isinstance(self.items[0], Symbol) else None


Sexpr = Number | Symbol | SList


@functools.cache
def _lark() -> Lark:
    return Lark(vnnlib_grammar_text(), parser="lalr", propagate_positions=True)


def _span(file: str, meta: Meta | Token) -> Span:
    return Span(file, meta.line or 1, meta.column or 1, meta.end_line or 1, meta.end_column or 1)


class _ToSexpr(Transformer):  # type: ignore[type-arg]
    def __init__(self, file: str) -> None:
        super().__init__(visit_tokens=False)
        self.file = file

    def start(self, children):  # type: ignore[no-untyped-def]
        return tuple(children)

    def number(self, children):  # type: ignore[no-untyped-def]
        (token,) = children
        return Number(float(token), str(token), _span(self.file, token))

    def symbol(self, children):  # type: ignore[no-untyped-def]
        (token,) = children
        return Symbol(str(token), _span(self.file, token))

    def __default__(self, data, children, meta):  # type: ignore[no-untyped-def]
        # `list`: keep the position of the whole parenthesised form
        return SList(tuple(children), _span(self.file, meta))


def _syntax_diagnostic(file: str, text: str, error: UnexpectedInput) -> Diagnostic:
    line, column = error.line or 1, error.column or 1
    span = Span(file, line, column, line, column + 1)
    if isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        lines = text.split("\n")
        end = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 1)
        return Diagnostic("vnnlib-syntax", "the file ends inside an unclosed `(`", end, "close every `(` with `)`")
    if isinstance(error, UnexpectedToken) and error.token.type == "RPAR":
        return Diagnostic("vnnlib-syntax", "a `)` closes nothing", span, "remove it, or open its `(`")
    if isinstance(error, UnexpectedCharacters):
        character = error.char if hasattr(error, "char") else "?"
        return Diagnostic(
            "vnnlib-syntax",
            f"unexpected character {character!r}",
            span,
            "VNN-LIB has no strings or quoted symbols; comments start with ';'",
        )
    return Diagnostic("vnnlib-syntax", "not a well-formed S-expression here", span)


def read_sexprs(text: str, file: str) -> tuple[Sexpr, ...]:
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise VnnlibError([_syntax_diagnostic(file, text, error)]) from None
    return _ToSexpr(file).transform(tree)  # type: ignore[no-any-return]


# --- linear terms and formulas ----------------------------------------------------------------


@dataclass(frozen=True)
class Linear:
    """Σ coefficients[v]·v + constant."""

    coefficients: dict[str, float] = field(default_factory=dict)
    constant: float = 0.0

    def scaled(self, factor: float) -> Linear:
        return Linear({v: c * factor for v, c in self.coefficients.items()}, self.constant * factor)

    def plus(self, other: Linear) -> Linear:
        merged = dict(self.coefficients)
        for variable, coefficient in other.coefficients.items():
            merged[variable] = merged.get(variable, 0.0) + coefficient
        return Linear(merged, self.constant + other.constant)

    @property
    def variables(self) -> set[str]:
        return {v for v, c in self.coefficients.items() if c != 0}


@dataclass(frozen=True)
class Atom:
    """The constraint `expression <= 0`."""

    expression: Linear
    span: Span


# A formula in DNF: disjuncts, each a tuple of atoms that must all hold.
Dnf = tuple[tuple[Atom, ...], ...]


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.declared: dict[str, Span] = {}

    def report(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    # terms -------------------------------------------------------------------------------

    def term(self, node: Sexpr, depth: int) -> Linear | None:
        if depth > MAX_DEPTH:
            self.report("vnnlib-unsupported", f"terms nested deeper than {MAX_DEPTH} levels", node.span)
            return None
        if isinstance(node, Number):
            return Linear({}, node.value)
        if isinstance(node, Symbol):
            if node.name not in self.declared:
                self.report(
                    "vnnlib-undeclared",
                    f"`{node.name}` is not declared",
                    node.span,
                    f"declare it first: (declare-const {node.name} Real)",
                )
                return None
            return Linear({node.name: 1.0}, 0.0)
        head = node.head
        arguments = node.items[1:]
        if head not in ("+", "-", "*") or not arguments:
            what = f"`{head}`" if head else "this list"
            self.report(
                "vnnlib-unknown",
                f"{what} is not a linear term",
                node.span,
                "terms are numbers, declared variables, (+ …), (- …) and (* constant term)",
            )
            return None
        parts = [self.term(argument, depth + 1) for argument in arguments]
        if any(part is None for part in parts):
            return None
        terms = [part for part in parts if part is not None]
        if head == "+":
            return functools.reduce(Linear.plus, terms)
        if head == "-":
            if len(terms) == 1:
                return terms[0].scaled(-1.0)
            return functools.reduce(lambda a, b: a.plus(b.scaled(-1.0)), terms)
        # `*`: at most one factor with variables, the rest constants
        varying = [t for t in terms if t.variables]
        if len(varying) > 1:
            self.report(
                "vnnlib-nonlinear",
                "a product of two terms with variables is not linear",
                node.span,
                "multiply a variable only by a number",
            )
            return None
        factor = float(np.prod([t.constant for t in terms if not t.variables]))
        return varying[0].scaled(factor) if varying else Linear({}, factor)

    # formulas ------------------------------------------------------------------------------

    def formula(self, node: Sexpr, depth: int) -> Dnf | None:
        if depth > MAX_DEPTH:
            self.report("vnnlib-unsupported", f"formulas nested deeper than {MAX_DEPTH} levels", node.span)
            return None
        if not isinstance(node, SList) or node.head is None:
            self.report(
                "vnnlib-unknown",
                "expected a formula: (and …), (or …) or a comparison such as (<= X_0 0.5)",
                node.span,
            )
            return None
        head, arguments = node.head, node.items[1:]
        if head in ("and", "or"):
            parts = [self.formula(argument, depth + 1) for argument in arguments]
            if any(part is None for part in parts):
                return None
            dnfs = [part for part in parts if part is not None]
            if head == "or":
                return tuple(term for dnf in dnfs for term in dnf) if dnfs else ()
            return self.conjoin(dnfs, node.span)
        if head in COMPARISONS:
            return self.comparison(node, head, arguments, depth)
        self.report(
            "vnnlib-unknown",
            f"`{head}` is not a VNN-LIB 1.0 connective or comparison",
            node.items[0].span,
            "use and, or, <=, >=, <, >, ="
            + (" (write `not` away by flipping the comparison)" if head == "not" else ""),
        )
        return None

    def comparison(self, node: SList, head: str, arguments: tuple[Sexpr, ...], depth: int) -> Dnf | None:
        if len(arguments) < 2:
            self.report("vnnlib-unknown", f"`{head}` compares at least two terms", node.span)
            return None
        terms = [self.term(argument, depth + 1) for argument in arguments]
        if any(term is None for term in terms):
            return None
        atoms: list[Atom] = []
        for left, right in itertools.pairwise(terms):
            assert left is not None and right is not None
            below = left.plus(right.scaled(-1.0))  # left - right
            if head in ("<=", "<", "="):
                atoms.append(Atom(below, node.span))
            if head in (">=", ">", "="):
                atoms.append(Atom(below.scaled(-1.0), node.span))
        return (tuple(atoms),)

    def conjoin(self, dnfs: list[Dnf], span: Span) -> Dnf | None:
        """The DNF of a conjunction: every combination of one disjunct from each part."""
        terms: list[tuple[Atom, ...]] = [()]
        for dnf in dnfs:
            if len(dnf) == 1:  # the common case: one conjunction, appended to every disjunct
                terms = [term + dnf[0] for term in terms]
                continue
            if len(terms) * len(dnf) > MAX_TERMS:
                self.report(
                    "vnnlib-unsupported",
                    f"the property's disjunctive normal form has more than {MAX_TERMS:,} disjuncts",
                    span,
                    "split the property into several files, one per disjunct of the input region",
                )
                return None
            terms = [term + other for term in terms for other in dnf]
        return tuple(terms)

    # commands ------------------------------------------------------------------------------

    def declare(self, node: SList) -> None:
        items = node.items
        if len(items) != 3 or not isinstance(items[1], Symbol) or not isinstance(items[2], Symbol):
            self.report("vnnlib-unknown", "expected (declare-const NAME Real)", node.span)
            return
        name, sort = items[1], items[2]
        if sort.name != "Real":
            self.report("vnnlib-unsupported", f"`{name.name}` has sort {sort.name}; only Real is supported", sort.span)
            return
        if not VARIABLE.match(name.name):
            self.report(
                "vnnlib-unsupported",
                f"`{name.name}` is neither an input X_i nor an output Y_j",
                name.span,
                "VNN-LIB 1.0 names the flattened ONNX input X_0, X_1, … and the output Y_0, Y_1, …",
            )
            return
        if name.name in self.declared:
            self.report("vnnlib-undeclared", f"`{name.name}` is declared twice", name.span)
            return
        self.declared[name.name] = name.span

    def read(self, sexprs: tuple[Sexpr, ...]) -> list[Dnf]:
        asserted: list[Dnf] = []
        for node in sexprs:
            if not isinstance(node, SList) or node.head is None:
                self.report("vnnlib-unknown", "expected a command: (declare-const …) or (assert …)", node.span)
                continue
            if node.head == "declare-const":
                self.declare(node)
            elif node.head == "assert":
                if len(node.items) != 2:
                    self.report("vnnlib-unknown", "(assert F) takes exactly one formula", node.span)
                    continue
                dnf = self.formula(node.items[1], 1)
                if dnf is not None:
                    asserted.append(dnf)
            else:
                self.report(
                    "vnnlib-unknown",
                    f"`{node.head}` is not a VNN-LIB 1.0 command",
                    node.items[0].span,
                    "a property declares variables (declare-const) and asserts formulas (assert)",
                )
        return asserted

    def indices(self, prefix: str) -> int:
        """How many variables named prefix_i are declared; they must be numbered 0 … n-1."""
        found = sorted(int(VARIABLE.match(name).group(2)) for name in self.declared if name[0] == prefix)  # type: ignore[union-attr]
        if found != list(range(len(found))):
            missing = min(set(range(len(found))) - set(found))
            anchor = next(iter(self.declared.values()), Span(self.file, 1, 1, 1, 1))
            self.report(
                "vnnlib-undeclared",
                f"{prefix}_{missing} is not declared, but {prefix}_{max(found)} is: {prefix} variables are "
                "numbered from 0 without gaps",
                anchor,
            )
        return len(found)


# --- the property -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Case:
    """One input box and the unsafe region over the outputs there: a disjunction of
    conjunctions of rows `rows[r]·Y + offsets[r] >= 0`."""

    lower: np.ndarray  # (inputs,)
    upper: np.ndarray
    rows: np.ndarray  # (R, outputs)
    offsets: np.ndarray  # (R,)
    terms: tuple[tuple[int, ...], ...]

    @property
    def empty(self) -> bool:
        return bool(np.any(self.lower > self.upper))


@dataclass(frozen=True, eq=False)
class VnnlibProperty:
    file: Path
    inputs: int
    outputs: int
    cases: tuple[Case, ...]  # unsafe = the union of the cases; none: the region is empty


def _case_atoms(atoms: tuple[Atom, ...]) -> Iterator[tuple[str, Atom]]:
    """('input', atom) for bounds on one X, ('output', atom) for Y-only, ('constant', atom)."""
    for atom in atoms:
        variables = atom.expression.variables
        kinds = {name[0] for name in variables}
        if not variables:
            yield "constant", atom
        elif kinds == {"Y"}:
            yield "output", atom
        elif kinds == {"X"} and len(variables) == 1:
            yield "input", atom
        else:
            yield "mixed", atom


def _build(reader: _Reader, asserted: list[Dnf], path: Path) -> VnnlibProperty | None:
    inputs, outputs = reader.indices("X"), reader.indices("Y")
    root = Span(reader.file, 1, 1, 1, 1)
    if inputs == 0 or outputs == 0:
        reader.report(
            "vnnlib-undeclared",
            f"the property declares {inputs} inputs X_i and {outputs} outputs Y_j; it needs both",
            root,
        )
    dnf = reader.conjoin(asserted, root) if asserted else ((),)
    if dnf is None or any(d.is_error for d in reader.diagnostics):
        return None
    boxes: dict[tuple[bytes, bytes], list[list[Atom]]] = {}
    box_arrays: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray]] = {}
    for term in dnf:
        lower, upper = np.full(inputs, -np.inf), np.full(inputs, np.inf)
        outputs_here: list[Atom] = []
        feasible = True
        for kind, atom in _case_atoms(term):
            expression = atom.expression
            if kind == "mixed":
                reader.report(
                    "vnnlib-unsupported",
                    "this constraint mixes variables mlrobust keeps apart: "
                    + (
                        "inputs and outputs" if {v[0] for v in expression.variables} == {"X", "Y"} else "several inputs"
                    ),
                    atom.span,
                    "mlrobust verifies an input box (one input per bound) against linear output constraints",
                )
                return None
            if kind == "constant":
                feasible &= expression.constant <= 0
            elif kind == "output":
                outputs_here.append(atom)
            else:
                (name,) = expression.variables
                index, coefficient = int(name[2:]), expression.coefficients[name]
                value = -expression.constant / coefficient
                if coefficient > 0:
                    upper[index] = min(upper[index], value)
                else:
                    lower[index] = max(lower[index], value)
        if not feasible or np.any(lower > upper):
            continue  # this disjunct holds nowhere
        unbounded = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
        if unbounded.size:
            side = "lower" if not np.isfinite(lower[unbounded[0]]) else "upper"
            reader.report(
                "vnnlib-unbounded",
                f"X_{unbounded[0]} has no {side} bound in a disjunct of the property"
                + (f" ({unbounded.size} inputs are unbounded)" if unbounded.size > 1 else ""),
                term[0].span if term else root,
                "bound every input from below and above: (assert (>= X_i lo)) and (assert (<= X_i hi))",
            )
            return None
        lower, upper = lower + 0.0, upper + 0.0  # -0.0 -> 0.0: equal boxes must have equal bytes
        key = (lower.tobytes(), upper.tobytes())
        box_arrays[key] = (lower, upper)
        boxes.setdefault(key, []).append(outputs_here)
    cases = []
    for key, conjunctions in boxes.items():
        rows: list[np.ndarray] = []
        offsets: list[float] = []
        terms = []
        for conjunction in conjunctions:
            members = []
            for atom in conjunction or [Atom(Linear(), root)]:  # no output constraint: all of the box is unsafe
                row = np.zeros(outputs)
                for name, coefficient in atom.expression.coefficients.items():
                    row[int(name[2:])] -= coefficient  # c·Y + e <= 0  <=>  -c·Y - e >= 0
                rows.append(row)
                offsets.append(-atom.expression.constant)
                members.append(len(rows) - 1)
            terms.append(tuple(members))
        lower, upper = box_arrays[key]
        cases.append(Case(lower, upper, np.array(rows), np.array(offsets), tuple(terms)))
    return VnnlibProperty(path, inputs, outputs, tuple(cases))


def parse_vnnlib(text: str, path: Path) -> VnnlibProperty:
    """Raises VnnlibError (a user error) carrying every diagnostic."""
    file = str(path)
    reader = _Reader(file)
    asserted = reader.read(read_sexprs(text, file))
    built = _build(reader, asserted, path)
    if built is None:
        raise VnnlibError(reader.diagnostics)
    return built


VERSION_2 = re.compile(r"^\s*(;[^\n]*\n\s*)*\(\s*vnnlib-version\s*<\s*2\.", re.S)


def parse_vnnlib2(text: str, path: Path) -> VnnlibProperty:
    """A VNN-LIB 2.0 file, through the `vnnlib` package (its parser and its reachability view:
    cases of an input box and a disjunction of output polytopes A·Y <= b, the same shape as
    ours). One network, with one input and one output, as `verify` takes one model."""
    try:
        import vnnlib
        import vnnlib.compat
    except ImportError:
        raise UserError(
            f"{path.name} is VNN-LIB 2.0, which mlrobust reads through the `vnnlib` package (not installed)",
            hint="pip install 'mlrobust[vnnlib2]', or write the property in VNN-LIB 1.0",
        ) from None
    root = Span(str(path), 1, 1, 1, 1)
    try:
        query = vnnlib.parse_query_string(text)
        found = vnnlib.compat.transform(query)
    except Exception as error:  # VNNLibException, or a parser error of the C++ library
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VnnlibError(
            [Diagnostic("vnnlib-syntax", f"the vnnlib package refuses this VNN-LIB 2.0 file: {first}", root)]
        ) from None
    if len(query.networks) != 1:
        raise VnnlibError(
            [
                Diagnostic(
                    "vnnlib-unsupported", f"the property names {len(query.networks)} networks; verify takes one", root
                )
            ]
        )
    cases = []
    inputs = outputs = 0
    for case in found:
        box = np.array(case.input_box, dtype=np.float64).reshape(-1, 2)
        inputs = len(box)
        rows, offsets, terms = [], [], []
        for polytope in case.output_constraints:
            matrix = np.array(polytope.coeff_matrix, dtype=np.float64)
            outputs = matrix.shape[1]
            start = len(offsets)
            rows.extend(-matrix)  # A·Y <= b  <=>  -A·Y + b >= 0
            offsets.extend(np.array(polytope.rhs, dtype=np.float64))
            terms.append(tuple(range(start, len(offsets))))
        lower, upper = box[:, 0] + 0.0, box[:, 1] + 0.0
        if np.any(lower > upper) or not terms:
            continue
        cases.append(Case(lower, upper, np.array(rows), np.array(offsets), tuple(terms)))
    return VnnlibProperty(path, inputs, outputs, tuple(cases))


def load_vnnlib(path: Path) -> VnnlibProperty:
    """A VNN-LIB 1.0 file (our own reader), or a 2.0 one (`(vnnlib-version <2.0>)`: the
    `vnnlib` package's)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"property file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if VERSION_2.match(text):
        return parse_vnnlib2(text, path)
    return parse_vnnlib(text, path)
