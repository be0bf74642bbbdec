"""The search and its baselines, by name. Torch-free: the spec checker and the CLI use it."""

from __future__ import annotations

METHODS = ("search", "uniform", "per-layer", "thesis-style")
# a spec writes names, which have no hyphens: `method = per_layer`
SPEC_NAMES = {name.replace("-", "_"): name for name in METHODS}
DESCRIPTION = (
    "search (the oracle-guided search, the default) or a baseline: uniform bisection, per-layer "
    "bisection (thesis §3), thesis-style (MILP-only oracle, pairwise top-k queries, fixed cutting)"
)
