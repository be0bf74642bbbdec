"""The search and its baselines, as records: the spec checker, the CLI and the compiler read them.

A baseline that differs from the search only in its oracle says so here (`oracle`), so no
stage has to recognise it by name. Every method takes the spec's cutting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # as the CLI writes it (`per-layer`); a spec writes it with `_` (`per_layer`)
    summary: str
    loop: str  # which loop runs: "search" | "uniform" | "per-layer"
    oracle: str | None = None  # a verifier that replaces the spec's chain (its time limit kept)
    # the cutting this method imposed in earlier versions, before it took the spec's: a question
    # asked with another cutting gets a mark in its hash, so an answer computed under the old
    # rule (with this cutting, whatever the spec said) is never reused for it
    former_cutting: str | None = None

    @property
    def spec_name(self) -> str:
        return self.name.replace("-", "_")


METHOD_TABLE: dict[str, Method] = {
    method.name: method
    for method in (
        Method("search", "the oracle-guided search (the default)", "search"),
        Method("uniform", "uniform bisection: every layer the same ε", "uniform"),
        Method("per-layer", "per-layer bisection, layers by weight (the thesis's naive algorithm)", "per-layer"),
        Method(
            "thesis-style",
            "the search with the thesis's oracle: MILP only, pairwise top-k queries; the spec's cutting "
            "(fixed unless it says otherwise)",
            "search",
            oracle="milp_pairwise",
            former_cutting="fixed",
        ),
    )
}

METHODS = tuple(METHOD_TABLE)
SPEC_NAMES = {method.spec_name: method.name for method in METHOD_TABLE.values()}
DESCRIPTION = (
    "search (the oracle-guided search, the default) or a baseline: uniform bisection, per-layer "
    "bisection (thesis §3), thesis-style (MILP-only oracle, pairwise top-k queries, the spec's cutting: "
    "fixed unless it says sensitivity or a list)"
)
