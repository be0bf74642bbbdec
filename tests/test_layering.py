"""The stages import one way: no arrow against the pipeline, function-local imports included.

Spec, Verify and Search meet only in `mlrobust.contract` (and the plan); a stage that needs
another's types takes them from there. A walk over every module's syntax tree, so an import
hidden inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .helpers import REPO

PACKAGE = REPO / "mlrobust"

# stage -> stages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "contract": {"spec", "verify", "search", "nn", "problem", "compile", "plan", "report", "run", "sweep", "commands"},
    "nn": {"spec", "verify", "search", "compile", "plan", "report", "run", "sweep", "commands"},
    "problem": {"spec", "verify", "search", "compile", "plan", "report", "run", "sweep", "commands"},
    "spec": {"verify", "search", "compile", "plan", "report", "run", "sweep"},
    "verify": {"spec", "search", "compile", "report", "run", "sweep", "commands"},
    "plan": {"spec", "search", "compile", "report", "run", "sweep", "commands"},
    "search": {"spec", "compile", "report", "run", "sweep", "commands"},
    "report": {"compile", "run", "sweep", "commands"},
}


def stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mlrobust" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from mlrobust import report` imports the module mlrobust.report
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_walk_sees_every_module_and_function_local_imports() -> None:
    assert len(MODULES) > 40
    # commands import their stages lazily, inside the handlers: the walk must see those
    lazy = [module for line, module in imports(PACKAGE / "commands" / "run.py") if module == "mlrobust.run"]
    assert lazy


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_no_import_runs_against_the_pipeline(path: Path) -> None:
    source = stage(module_name(path))
    forbidden = FORBIDDEN.get(source or "", set())
    wrong = [
        f"{module_name(path)}:{line} imports {module}" for line, module in imports(path) if stage(module) in forbidden
    ]
    assert wrong == []
