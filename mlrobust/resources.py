"""Files shipped inside the package, found the same way from a checkout and from a wheel."""

from __future__ import annotations

from importlib import resources

GRAMMAR_FILE = "mlr.lark"
VNNLIB_GRAMMAR_FILE = "vnnlib.lark"


def grammar_text() -> str:
    """The spec language grammar (grammar/mlr.lark in the repository)."""
    return resources.files("mlrobust.grammar").joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


def grammar_location() -> str:
    """Where the grammar was found, for diagnostics and tests."""
    return str(resources.files("mlrobust.grammar").joinpath(GRAMMAR_FILE))


def vnnlib_grammar_text() -> str:
    """The VNN-LIB 1.0 S-expression grammar (grammar/vnnlib.lark in the repository)."""
    return resources.files("mlrobust.grammar").joinpath(VNNLIB_GRAMMAR_FILE).read_text(encoding="utf-8")
