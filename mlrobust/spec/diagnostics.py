"""Diagnostics: one registry of stable codes, and the exception that carries them.

Codes are kebab-case and never change meaning once released (tools and CI configurations
match on them). Each code has one severity; a message says what is wrong at this span, a
hint says what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mlrobust.contract.span import Span
from mlrobust.errors import UserError


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    name: str
    severity: Severity
    summary: str


def _codes(*entries: tuple[str, Severity, str]) -> dict[str, Code]:
    table: dict[str, Code] = {}
    for name, severity, summary in entries:
        if name in table:
            raise ValueError(f"duplicate diagnostic code {name}")
        table[name] = Code(name, severity, summary)
    return table


E, W = Severity.ERROR, Severity.WARNING

CODES: dict[str, Code] = _codes(
    ("syntax-error", E, "the text is not a well-formed spec"),
    ("unknown-field", E, "a field name the language does not know"),
    ("duplicate-field", E, "a field given twice in one file or block"),
    ("missing-field", E, "a required field is absent"),
    ("unknown-block", E, "a block name the language does not know"),
    ("wrong-type", E, "a value of the wrong kind for its field"),
    ("bad-unit", E, "a duration with a missing or unknown unit"),
    ("bad-value", E, "a value outside what its field accepts"),
    ("negative-value", E, "a negative weight, epsilon, resolution or budget"),
    ("file-not-found", E, "a path that does not exist"),
    ("extends-cycle", E, "specs that extend each other in a cycle"),
    ("extends-too-deep", E, "an extends chain longer than the limit"),
    ("file-too-large", E, "a spec file larger than the limit"),
    ("unreadable-file", E, "a spec path that is not a regular UTF-8 text file (a folder, a device, Latin-1, …)"),
    ("nesting-too-deep", E, "lists or calls nested deeper than the limit"),
    ("model-load-error", E, "the ONNX model does not load"),
    ("unsupported-op", E, "the model uses an operator the verifiers do not support"),
    ("image-load-error", E, "the image or mask file does not load"),
    ("shape-mismatch", E, "the image does not fit the model's input shape"),
    ("label-out-of-range", E, "a label the model does not have"),
    ("unknown-label", E, "a label name not found in the model card"),
    ("k-out-of-range", E, "k must satisfy 1 <= k < number of classes"),
    ("unused-field", W, "a field the spec's property does not use (k with a threshold property)"),
    ("property-unsupported", E, "the property cannot be asked of this model (a threshold on a Softmax head)"),
    ("nothing-predicted", E, "keep_predicted(threshold = t): no label's score is above t on the image"),
    ("weights-length", E, "the weight vector does not have one entry per layer"),
    ("empty-mask", E, "the perturbed object's mask has no pixel"),
    ("freeze-overlaps-mask", W, "`freeze` holds pixels of the perturbed object: they are not perturbed"),
    ("target-not-in-canvas", E, "the target label is not one of the canvas's digits"),
    ("unknown-verifier", E, "a verifier name the chain does not know"),
    ("unknown-option", E, "an option a verifier does not take"),
    ("bad-option", E, "an option value of the wrong type or outside its choices"),
    ("solver-unavailable", E, "a verifier's solver or device is not available here (Gurobi, CUDA)"),
    ("no-sound-verifier", W, "the chain can never prove ROBUST"),
    ("unknown-generator", E, "a weights, cutting or mask form the language does not know"),
    ("needs-dataset", E, "the value needs `dataset` (and `canvas`) to be set"),
    ("empty-sweep", E, "a sweep that selects no image or model"),
    ("duplicate-axis-value", E, "a sweep's `methods` or `cuttings` lists the same value twice"),
    # VNN-LIB property files (`mlrobust verify`): docs/vnnlib.md
    ("vnnlib-syntax", E, "the text is not well-formed VNN-LIB (S-expressions)"),
    ("vnnlib-unknown", E, "a command, connective or operator VNN-LIB 1.0 does not have"),
    ("vnnlib-undeclared", E, "a variable used before `declare-const`, or declared twice"),
    ("vnnlib-nonlinear", E, "a term that is not linear in the declared variables"),
    ("vnnlib-unsupported", E, "a valid VNN-LIB form mlrobust cannot verify (it says which, and why)"),
    ("vnnlib-unbounded", E, "an input with no lower or upper bound in some disjunct"),
)


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None
    severity: Severity = field(init=False)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code!r}")
        object.__setattr__(self, "severity", CODES[self.code].severity)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        return f"{self.span}: {self.severity.value}[{self.code}]: {self.message}"


def sort_key(diagnostic: Diagnostic) -> tuple[str, int, int, str]:
    return (diagnostic.span.file, diagnostic.span.line, diagnostic.span.column, diagnostic.code)


class SpecError(UserError):
    """A spec that cannot be used; carries every diagnostic found (errors and warnings)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=sort_key)
        errors = [d for d in self.diagnostics if d.is_error]
        first = errors[0] if errors else self.diagnostics[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}", hint=first.hint)
