"""A run's result as typed records, serialised only at the edge (`to_json`, docs/result-schema.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust.contract.verifiers import VerifierStep
from mlrobust.report.provenance import Asked
from mlrobust.search.certify import Certificate
from mlrobust.search.loop import LayerMaximality
from mlrobust.search.oracle import GuideStats, Query, VerifierWork

SCHEMA = "mlrobust.run/1"


@dataclass(frozen=True)
class SearchSetup:
    """How the search was asked: what the run's JSON calls `problem` beyond the asked instance."""

    asked: Asked
    spec_text: str
    spec_sha256: str
    weights: np.ndarray
    cutting: np.ndarray
    resolution: float
    seed: int
    chain: tuple[VerifierStep, ...]
    versions: dict[str, str]
    journal_answers_replayed: int
    question: str

    def to_json(self) -> dict[str, Any]:
        return {
            **self.asked.to_json(),
            "spec_sha256": self.spec_sha256,
            "spec_text": self.spec_text,
            "weights": self.weights.tolist(),
            "cutting": self.cutting.tolist(),
            "resolution": self.resolution,
            "seed": self.seed,
            "chain": chain_json(self.chain),
            "versions": self.versions,
            "journal_answers_replayed": self.journal_answers_replayed,
            "question": self.question,
        }


def chain_json(chain: tuple[VerifierStep, ...]) -> list:  # type: ignore[type-arg]
    return [[step.name, [list(option) for option in step.options]] for step in chain]


@dataclass(frozen=True)
class Result:
    eps: tuple[float, ...]
    size: float
    certificate: Certificate
    maximality: tuple[LayerMaximality, ...]
    setup: SearchSetup
    queries: tuple[Query, ...]
    complete: bool
    stop_reason: str
    uniform_eps: float
    seconds: float
    new_queries: int
    folder: Path
    method: str
    guide: GuideStats
    work: dict[str, VerifierWork] = field(default_factory=dict)  # verifier name -> its runs in this process
    query_budget: int | None = None  # the spec's `queries`: a hard cap on new_queries (per invocation)
    repeated_answers: int = 0  # boxes answered again from the cache, not listed again in `queries`
    starts: tuple[Any, ...] = ()  # StartResult: where each start of the search ended
    rounds: int = 0  # maximality passes

    @property
    def verifier(self) -> str:
        return self.certificate.verifier

    @property
    def interrupted(self) -> bool:
        return self.stop_reason.startswith("interrupted")

    @property
    def uniform_size(self) -> float:
        weights = self.setup.weights
        return float(np.dot(weights, np.full(len(weights), self.uniform_eps)))

    def query_size(self, query: Query) -> float:
        return float(np.dot(self.setup.weights, query.eps))

    def to_json(self) -> dict[str, Any]:
        reproof = self.certificate.reproof
        reproof_json: dict[str, Any] = {"verifier": reproof.verifier, "verdict": reproof.verdict}
        if reproof.seconds is not None:
            reproof_json["seconds"] = reproof.seconds
        if reproof.proof is not None:
            reproof_json["proof"] = reproof.proof
        labels = self.setup.asked.layer_labels
        return {
            "schema": SCHEMA,
            "eps": list(self.eps),
            "size": self.size,
            "verifier": self.verifier,
            "maximality": [
                {
                    "layer": m.layer,
                    # (object, distance) of the layer: object null under `union`, where layer = distance
                    "object": labels[m.layer][0] if labels is not None else None,
                    "distance": labels[m.layer][1] if labels is not None else m.layer,
                    "status": m.status,
                    "counterexample": m.counterexample,
                    "probe": list(m.probe) if m.probe else None,
                    "chain": m.chain,
                    "reason": m.reason,
                    "grown": m.grown,
                    "refuted": m.refuted,
                }
                for m in self.maximality
            ],
            "problem": self.setup.to_json(),
            "queries": [
                {
                    "eps": list(q.eps),
                    "size": self.query_size(q),
                    "verdict": q.status.value,
                    "verifier": q.verifier,
                    "margin_bound": q.margin_bound,
                    "best_margin": q.best_margin,
                    "seconds": round(q.seconds, 4),
                    "cached": q.cached,
                    "counterexample": q.counterexample,
                    "purpose": q.purpose,
                }
                for q in self.queries
            ],
            "complete": self.complete,
            "stop_reason": self.stop_reason,
            "uniform_eps": self.uniform_eps,
            "uniform_size": self.uniform_size,
            "seconds": self.seconds,
            "new_queries": self.new_queries,
            "query_budget": self.query_budget,
            "repeated_answers": self.repeated_answers,
            "starts": [{"name": st.name, "size": st.size, "eps": list(st.eps)} for st in self.starts],
            "maximality_rounds": self.rounds,
            "folder": str(self.folder),
            "method": self.method,
            "reproof": reproof_json,
            "guide": {
                "verifier": self.guide.step.name,
                "options": dict(self.guide.step.options),
                "calls": self.guide.calls,
                "computed": self.guide.computed,
                "seconds": round(self.guide.seconds, 3),
            },
            "verifiers": {name: work.to_json() for name, work in sorted(self.work.items())},
        }
