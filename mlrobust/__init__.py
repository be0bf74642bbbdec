"""mlrobust: maximal robust layered neighborhoods for multi-label classifiers.

The public API is loaded lazily, so `import mlrobust` (and `mlrobust --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Result", "Spec", "SpecError", "__version__", "format_spec", "load_spec", "run"]

if TYPE_CHECKING:
    from mlrobust.search.run import Result, run
    from mlrobust.spec import Spec, SpecError, format_spec, load_spec


def __getattr__(name: str) -> Any:
    if name in ("Spec", "SpecError", "format_spec", "load_spec"):
        from mlrobust import spec

        return getattr(spec, name)
    if name in ("run", "Result"):
        from mlrobust.search import run as search_run

        return getattr(search_run, name)
    raise AttributeError(f"module 'mlrobust' has no attribute {name!r}")
