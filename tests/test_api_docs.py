"""docs/api.md and docs/export-your-model.md stay true: every Python example runs as written,
from the repository root, in a fresh namespace."""

from __future__ import annotations

import re

import pytest

from .helpers import REPO

DOCS = ("api.md", "export-your-model.md")
EXAMPLES = [
    (name, index, code)
    for name in DOCS
    for index, code in enumerate(re.findall(r"```python\n(.*?)```", (REPO / "docs" / name).read_text(), flags=re.S))
]


def test_the_docs_have_examples() -> None:
    assert {name for name, _, _ in EXAMPLES} == set(DOCS)
    text = "\n".join(code for _, _, code in EXAMPLES)
    assert "mlrobust.check(" in text and "mlrobust.run(" in text and "torch.onnx.export(" in text


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{name}-{index}" for name, index, _ in EXAMPLES])
def test_example_runs(example, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    name, index, code = example
    monkeypatch.chdir(REPO)
    exec(compile(code, f"docs/{name} example {index}", "exec"), {"__name__": "__docs__"})
