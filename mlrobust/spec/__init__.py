"""The spec language: parse, check, format. Nothing downstream sees text."""

from mlrobust.spec.check import CheckResult, check_spec, load_spec
from mlrobust.spec.diagnostics import CODES, Diagnostic, SpecError
from mlrobust.spec.format import format_spec
from mlrobust.spec.ir import Spec

__all__ = ["CODES", "CheckResult", "Diagnostic", "Spec", "SpecError", "check_spec", "format_spec", "load_spec"]
