"""mlrobust: maximal robust layered neighborhoods for multi-label classifiers."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
