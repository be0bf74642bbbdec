"""docs/spec-language.md stays true: every `mlr` example parses and is already canonical."""

from __future__ import annotations

import re

import pytest

from mlrobust.spec.format import format_spec
from mlrobust.spec.parser import parse_text

from .helpers import REPO

DOC = REPO / "docs" / "spec-language.md"
EXAMPLES = re.findall(r"```mlr\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_reference_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_example_parses_and_is_canonical(example: str) -> None:
    document = parse_text(example, str(DOC))
    assert document.statements
    assert format_spec(example) == example


def test_every_diagnostic_code_is_documented() -> None:
    from mlrobust.spec.diagnostics import CODES

    text = DOC.read_text()
    assert [code for code in CODES if f"`{code}`" not in text] == []


def test_every_verifier_option_is_documented() -> None:
    from mlrobust.verify.options import VERIFIERS

    text = DOC.read_text()
    missing = [f"{v.name}.{o.name}" for v in VERIFIERS.values() for o in v.options if f"`{o.name}`" not in text]
    assert missing == []
