"""mlrobust: maximal robust layered neighborhoods for multi-label classifiers.

The public API is loaded lazily, so `import mlrobust` (and `mlrobust --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "QueryResult",
    "Result",
    "Spec",
    "SpecError",
    "UserError",
    "__version__",
    "check",
    "format_spec",
    "load_spec",
    "run",
]

if TYPE_CHECKING:
    from mlrobust.errors import UserError
    from mlrobust.query import QueryResult, check
    from mlrobust.report.result import Result
    from mlrobust.run import run
    from mlrobust.spec import Spec, SpecError, format_spec, load_spec


def __getattr__(name: str) -> Any:
    """The public API, imported on first use (docs/api.md)."""
    if name in ("Spec", "SpecError", "format_spec", "load_spec"):
        from mlrobust import spec

        return getattr(spec, name)
    if name == "run":
        # Importing the submodule binds it here as `run` (so later lookups find the module, which
        # is callable: it calls the function); it is not rebound to the function, so that
        # `import mlrobust.run as module` keeps meaning the module.
        from mlrobust.run import run

        return run
    if name in ("check", "QueryResult"):
        from mlrobust import query

        return getattr(query, name)
    if name == "Result":
        from mlrobust.report.result import Result

        return Result
    if name == "UserError":
        from mlrobust.errors import UserError

        return UserError
    raise AttributeError(f"module 'mlrobust' has no attribute {name!r}")
