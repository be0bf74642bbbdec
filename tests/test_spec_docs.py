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
    from mlrobust.contract.verifiers import CATALOGUE, LANGUAGE

    text = DOC.read_text()
    missing = [f"{name}.{o.name}" for name in LANGUAGE for o in CATALOGUE[name].options if f"`{o.name}`" not in text]
    assert missing == []


def test_the_verifier_table_is_the_catalogue() -> None:
    """The reference's table of verifiers and options is generated from their declarations
    (`python -m mlrobust.contract.verifiers` prints it), so the docs cannot drift from them."""
    from mlrobust.contract.verifiers import options_table

    assert options_table() in DOC.read_text()


def test_every_field_is_in_the_field_tables() -> None:
    """A field the checker accepts (`freeze` among them) has its row, with its value and default
    (the `sweep` block's three fields are described in its prose instead)."""
    from mlrobust.spec.check import BLOCK_FIELDS, TOP_FIELDS

    rows = {line.split("|")[1].strip() for line in DOC.read_text().splitlines() if line.startswith("| `")}
    fields = [*TOP_FIELDS, *BLOCK_FIELDS["search"]]
    assert [name for name in fields if f"`{name}`" not in rows] == []
