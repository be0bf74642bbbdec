"""The search's only way to ask a question: cached by monotonicity, journaled, resumable.

- A box inside a proved box is ROBUST without a query (N(ε) ⊆ N(ε') when ε <= ε').
- A box containing a known counterexample is NOT_ROBUST without a query.
- Every real query appends one JSON line to the journal (flushed and fsynced), so a killed run
  loses at most the query in flight; a rerun replays the journal into the cache and asks again
  only what was never answered. A line torn by a kill mid-write is dropped on load (the next
  entry then starts on a line of its own), and the journal is never opened through a symlink.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlrobust.contract.verifiers import VerifierStep
from mlrobust.errors import UserError
from mlrobust.plan import Plan, SearchBudget
from mlrobust.problem.problem import Problem
from mlrobust.storage import save_counterexample
from mlrobust.verify.bounds import MarginBound
from mlrobust.verify.chain import ChainResult, run_chain_many
from mlrobust.verify.registry import VERIFIERS, fast_steps, guide_step
from mlrobust.verify.verdict import QueryBudget, Status, Verdict

NOT_ASKED = "budget"  # the verifier named by an UNKNOWN that the query budget left unasked


class OutOfTime(Exception):
    """The search's time budget is spent: no further bound or query may run."""


@dataclass(frozen=True)
class Query:
    eps: tuple[float, ...]
    status: Status
    verifier: str
    margin_bound: float | None
    best_margin: float | None
    seconds: float
    cached: bool  # answered from the journal or by monotonicity, not by a verifier
    counterexample: str | None = None  # file name (in the run folder) for NOT_ROBUST
    purpose: str = ""


def box_key(eps: Sequence[float] | np.ndarray) -> tuple[float, ...]:
    """A box as the journal, the cache and the search's bookkeeping know it: exact floats."""
    return tuple(float(v) for v in eps)


@dataclass
class GuideStats:
    """The bounds the search steered by: how many, how long (none of them decides a verdict)."""

    step: VerifierStep
    calls: int = 0
    computed: int = 0  # calls not answered from the problem's memo
    seconds: float = 0.0


@dataclass
class VerifierWork:
    """What one verifier of the chain did in this process (journal answers are not counted):
    how often it ran, how long, its verdicts, and its tallies summed over its runs (a `max_…`
    one keeps its maximum) — e.g. bab's domains bounded and closed, the MILP's nodes — so a
    user sees where the search's time went."""

    runs: int = 0
    seconds: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.runs += 1
        self.seconds += verdict.seconds
        self.verdicts[verdict.status.value] = self.verdicts.get(verdict.status.value, 0) + 1
        for name, value in verdict.tallies.items():
            if name.startswith("max_"):
                self.totals[name] = max(self.totals.get(name, value), value)
            else:
                self.totals[name] = self.totals.get(name, 0) + value

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "seconds": round(self.seconds, 3),
            "verdicts": dict(sorted(self.verdicts.items())),
            "stats": {k: round(v, 3) if isinstance(v, float) else v for k, v in sorted(self.totals.items())},
        }


@dataclass
class Oracle:
    problem: Problem
    chain: tuple[VerifierStep, ...]
    folder: Path
    key: str  # identifies the problem + chain: journals of other questions are ignored
    query_seconds: float | None = None
    robust: list[np.ndarray] = field(default_factory=list)
    counterexamples: list[np.ndarray] = field(default_factory=list)
    counterexample_files: list[str] = field(default_factory=list)  # each one's file in the run folder
    journal: dict[tuple[float, ...], dict] = field(default_factory=dict)
    history: list[Query] = field(default_factory=list)
    new_queries: int = 0
    # boxes the journal answered in this run (a resumed run's earlier queries): they count against
    # the query budget like new ones, so a killed and resumed run stops where an unbroken one would
    _replayed_keys: set[tuple[float, ...]] = field(default_factory=set, repr=False)
    listener: Callable[[Query], None] | None = None  # told every answer (progress lines)
    deadline: float | None = None  # perf_counter time: the search's time budget also caps each query
    query_cap: int | None = None  # new queries the search may ask
    guide_stats: GuideStats | None = None
    work: dict[str, VerifierWork] = field(default_factory=dict)  # verifier name -> what it did
    journal_warnings: list[str] = field(default_factory=list)  # what load_journal repaired, for the user
    repeats: int = 0  # answers to a box already in the history, from the cache (not recorded again)
    # the full chain's UNKNOWN answers by box, in the order first reached: see `unproved_inside`
    _full_unknowns: dict[tuple[float, ...], Query] = field(default_factory=dict, repr=False)
    _recorded: set[tuple[Any, ...]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.guide_stats is None:
            self.guide_stats = GuideStats(guide_step(self.chain))

    @classmethod
    def for_plan(cls, plan: Plan, folder: Path) -> Oracle:
        return cls(plan.problem, plan.chain, folder, plan.queries_key)

    def start(self, budget: SearchBudget) -> None:
        """Start the search's clock: from now on no bound or query runs past its time budget,
        and `exhausted` says when its query budget is spent."""
        self.deadline = time.perf_counter() + budget.seconds
        self.query_cap = budget.queries

    @property
    def replayed(self) -> int:
        return len(self._replayed_keys)

    @property
    def spent(self) -> int:
        """Queries counted against the budget: asked now, or answered by the journal of this question."""
        return self.new_queries + self.replayed

    def exhausted(self) -> str | None:
        """Why the search must stop now (a budget is spent), or None."""
        if self.query_cap is not None and self.spent >= self.query_cap:
            return f"query budget ({self.query_cap}) reached"
        if self.deadline is not None and time.perf_counter() > self.deadline:
            return "time budget reached"
        return None

    def guide(self, eps: np.ndarray, with_gradient: bool = False) -> MarginBound:
        """The chain's own bound (its `bounds` step, with the options the spec gave it) on N(ε):
        what the search steers by between queries. Counted, timed and refused past the deadline;
        it decides nothing by itself (every box the search keeps is asked through `ask`)."""
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise OutOfTime
        stats = self.guide_stats
        assert stats is not None
        started = time.perf_counter()
        guide = VERIFIERS[stats.step.name].guide
        assert guide is not None
        result = guide(self.problem, np.asarray(eps, dtype=np.float64), with_gradient, **dict(stats.step.options))
        stats.calls += 1
        stats.computed += result.seconds > 0
        stats.seconds += time.perf_counter() - started
        return result

    @property
    def journal_path(self) -> Path:
        return self.folder / "journal.jsonl"

    def _open_journal(self, flags: int) -> int:
        """The journal's descriptor, never through a symlink: a link named journal.jsonl would
        have every answer appended to its target (another run's journal, any file)."""
        try:
            return os.open(self.journal_path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            if self.journal_path.is_symlink():
                raise UserError(
                    f"{self.journal_path} is a symbolic link; mlrobust does not write its journal through links",
                    hint=f"remove the link (`rm {self.journal_path}`) or choose another folder with --out",
                ) from None
            raise error

    def _read_journal(self) -> str:
        """The journal's complete lines. A last line without its newline that does not parse is a
        write a kill cut short: it is cut off the file (and said in `journal_warnings`), or the next
        append would join it and lose that answer too; its query is simply asked again."""
        try:
            fd = self._open_journal(os.O_RDONLY)
        except FileNotFoundError:
            return ""
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            try:
                json.loads(data[cut:])
            except ValueError:
                fd = self._open_journal(os.O_WRONLY)
                try:
                    os.ftruncate(fd, cut)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.journal_warnings.append(
                    f"dropped a torn last line of {self.journal_path} ({len(data) - cut} bytes: a write cut "
                    "short by a crash); that query is asked again"
                )
                data = data[:cut]
        return data.decode("utf-8", "replace")

    def load_journal(self) -> int:
        """Replay a previous run's journal (same key only); returns how many answers it held."""
        for line in self._read_journal().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a damaged line: that query is simply asked again
            if entry.get("key") != self.key:
                continue
            eps = tuple(entry["eps"])
            self.journal[eps] = entry
            if entry["status"] == Status.ROBUST:
                self.robust.append(np.array(eps))
            elif entry["status"] == Status.NOT_ROBUST and entry.get("counterexample"):
                path = self.folder / entry["counterexample"]
                if path.exists():
                    self.counterexamples.append(np.load(path)[0].astype(np.float64))
                    self.counterexample_files.append(entry["counterexample"])
        return len(self.journal)

    def _contains_counterexample(self, eps: np.ndarray) -> int | None:
        radius = self.problem.pixel_eps(eps)
        for index, point in enumerate(self.counterexamples):
            if np.all(np.abs(point - self.problem.image) <= radius):
                return index
        return None

    @property
    def fast_chain(self) -> tuple[VerifierStep, ...]:
        """The chain without its complete verifiers: what the exploration asks (the full chain
        decides maximality)."""
        return fast_steps(self.chain)

    def unproved_inside(self, eps: np.ndarray) -> list[Query]:
        """The full chain's UNKNOWN answers in this run to boxes inside this one, in order asked.

        Not a verdict (a larger box is not known to be non-robust), only a strategy fact: the
        complete verifiers ran out of budget on a smaller box, and a larger one holds every
        subproblem the smaller did, so asking would spend their whole time limit again. Only
        answers this run has reached count (a resumed run replays them in the same order), so
        a resumed search takes the path of the run before it."""
        box = np.asarray(eps, dtype=np.float64)
        return [query for query in self._full_unknowns.values() if np.all(np.asarray(query.eps) <= box)]

    def ask(self, eps: np.ndarray, purpose: str = "", full: bool = False) -> Query:
        """ROBUST and NOT_ROBUST are facts whichever chain found them; UNKNOWN only for that chain."""
        return self.ask_many([eps], [purpose], full)[0]

    def ask_many(self, boxes: list[np.ndarray], purposes: list[str], full: bool = False) -> list[Query]:
        """Several questions at once: answered as `ask` would, one by one, but the boxes that need
        a verifier go through the chain together (`run_chain_many`: one batched attack)."""
        boxes = [np.maximum(np.asarray(eps, dtype=np.float64), 0.0) for eps in boxes]
        answers: list[Query | None] = [
            self._known(eps, purpose, full) for eps, purpose in zip(boxes, purposes, strict=True)
        ]
        asked = self._within_budget(boxes, purposes, answers)
        if asked:
            chain = self.chain if full else self.fast_chain
            seconds = self.query_seconds
            if self.deadline is not None:
                left = max(self.deadline - time.perf_counter(), 0.0)
                seconds = left if seconds is None else min(seconds, left)
            outcomes = run_chain_many(self.problem, [boxes[i] for i in asked], chain, QueryBudget(seconds))
            for i, outcome in zip(asked, outcomes, strict=True):
                answers[i] = self._answered(boxes[i], outcome, purposes[i], full)
        if full:  # a box asked again (from the cache) keeps its first place
            for answer in answers:
                if answer is not None and answer.status is Status.UNKNOWN and answer.verifier != NOT_ASKED:
                    self._full_unknowns.setdefault(box_key(answer.eps), answer)
        return [self._record(answer) for answer in answers if answer is not None]

    def _within_budget(self, boxes: list[np.ndarray], purposes: list[str], answers: list[Query | None]) -> list[int]:
        """The unanswered questions that the query budget still allows, in order; the others are
        answered UNKNOWN by the `budget` (not asked, not journaled, not recorded): the budget is
        a hard cap on new queries, a batch is cut to fit."""
        asked = [i for i, answer in enumerate(answers) if answer is None]
        room = None if self.query_cap is None else max(self.query_cap - self.spent, 0)
        if room is not None and len(asked) > room:
            for i in asked[room:]:
                key = box_key(boxes[i])
                answers[i] = Query(key, Status.UNKNOWN, NOT_ASKED, None, None, 0.0, True, purpose=purposes[i])
            asked = asked[:room]
        return asked

    def refute_many(self, boxes: list[np.ndarray], purposes: list[str], step: VerifierStep) -> list[Query]:
        """Ask one falsifier (the chain's attack) about boxes, for the counterexamples alone: a
        NOT_ROBUST is a fact (kept, journaled, its point saved) whichever verifier found it; an
        UNKNOWN only says this falsifier found nothing, so its journal line is marked and answers
        no question of the chain, only a rerun's same falsifier question. Counted against the
        query budget like any query."""
        boxes = [np.maximum(np.asarray(eps, dtype=np.float64), 0.0) for eps in boxes]
        answers: list[Query | None] = [
            self._known(eps, purpose, False, falsifier=True) for eps, purpose in zip(boxes, purposes, strict=True)
        ]
        asked = self._within_budget(boxes, purposes, answers)
        if asked:
            seconds = None if self.deadline is None else max(self.deadline - time.perf_counter(), 0.0)
            verifier = VERIFIERS[step.name]
            verdicts = verifier.check_many(
                self.problem, [boxes[i] for i in asked], QueryBudget(seconds), **dict(step.options)
            )
            for i, verdict in zip(asked, verdicts, strict=True):
                self._worked(verdict)
                name = None
                if verdict.status is Status.NOT_ROBUST:
                    assert verdict.counterexample is not None
                    name = self._keep_counterexample(verdict.counterexample)
                status = Status.NOT_ROBUST if verdict.status is Status.NOT_ROBUST else Status.UNKNOWN
                query = Query(
                    box_key(boxes[i]), status, verdict.verifier, None, verdict.best_margin,
                    verdict.seconds, False, name, purposes[i],
                )  # fmt: skip
                cut_short = self.deadline is not None and time.perf_counter() >= self.deadline
                if status is Status.NOT_ROBUST or not cut_short:
                    self._append_journal(query, False, falsifier=status is Status.UNKNOWN)
                self.new_queries += 1
                answers[i] = query
        return [self._record(answer) for answer in answers if answer is not None]

    def _known(self, eps: np.ndarray, purpose: str, full: bool, falsifier: bool = False) -> Query | None:
        """The answer without a verifier: the journal's answer to this very box, by monotonicity,
        or a known counterexample. A falsifier's UNKNOWN (`refute_many`) answers only another
        falsifier question.

        The journal comes first: a resumed run must get the answers the run before it got, in
        the same order (a box proved later in that run would otherwise answer an earlier
        question from the cache, and the search would take another path). Each journaled box
        counts once against the query budget, as it did when it was asked."""
        key = box_key(eps)
        entry = self.journal.get(key)
        if entry is not None and (falsifier or self._answers(entry, full)):
            # a rerun replays a falsifier's answers as they were: the run that asked had not yet
            # found the counterexamples a replay knows from the start, and the brackets it
            # computed followed those answers
            self._replayed_keys.add(key)  # each box counts once
            return self._from_journal(key, entry, purpose)
        if any(np.all(eps <= proved) for proved in self.robust):
            return Query(key, Status.ROBUST, "cache", None, None, 0.0, True, purpose=purpose)
        known = self._contains_counterexample(eps)
        if known is not None:
            # the known point is the evidence: name its file, as a verifier's answer would
            file = self.counterexample_files[known]
            return Query(key, Status.NOT_ROBUST, "cache", None, None, 0.0, True, file, purpose)
        return None

    @staticmethod
    def _answers(entry: dict, full: bool) -> bool:  # type: ignore[type-arg]
        """Whether a journal line answers a chain question: a falsifier's UNKNOWN never does, an
        UNKNOWN of the fast chain does not answer the full chain's question."""
        if entry["status"] == Status.UNKNOWN and entry.get("falsifier"):
            return False
        return bool(entry["status"] != Status.UNKNOWN or entry.get("full", True) >= full)

    @staticmethod
    def _from_journal(key: tuple[float, ...], entry: dict, purpose: str) -> Query:
        return Query(
            key,
            Status(entry["status"]),
            entry["verifier"],
            entry["margin_bound"],
            entry["best_margin"],
            entry["seconds"],
            True,
            entry.get("counterexample"),
            purpose,
        )

    def _answered(self, eps: np.ndarray, outcome: ChainResult, purpose: str, full: bool) -> Query:
        """Keep a verifier's answer: in the cache, the counterexample on disk, the journal."""
        verdict = outcome.verdict
        for step in outcome.steps:
            self._worked(step)
        bounds = [v.margin_bound for v in outcome.steps if v.margin_bound is not None]
        counterexample_name = None
        if verdict.status is Status.ROBUST:
            self.robust.append(eps.copy())
        elif verdict.status is Status.NOT_ROBUST:
            assert verdict.counterexample is not None
            counterexample_name = self._keep_counterexample(verdict.counterexample)
        query = Query(
            box_key(eps),
            verdict.status,
            verdict.verifier,
            min(bounds) if bounds else None,
            verdict.best_margin,
            sum(v.seconds for v in outcome.steps),
            False,
            counterexample_name,
            purpose,
        )
        cut_short = self.deadline is not None and time.perf_counter() >= self.deadline
        if not (verdict.status is Status.UNKNOWN and cut_short):
            # an UNKNOWN the time budget cut short is no answer to the question: a resumed or
            # longer run must ask it again
            self._append_journal(query, full)
        self.new_queries += 1
        return query

    def _worked(self, verdict: Verdict) -> None:
        self.work.setdefault(verdict.verifier, VerifierWork()).add(verdict)

    def _record(self, query: Query) -> Query:
        """Keep an answer in the run's history, once: the same box answered again from the cache
        (a loop re-asking what it already asked) is a repeat, counted but not a new entry, so a
        spinning caller cannot grow the history and result.json without bound."""
        if query.verifier == NOT_ASKED:
            return query  # no answer: the query budget ran out before it
        key = (query.eps, query.status)
        if query.cached and key in self._recorded:
            self.repeats += 1
            return query
        self._recorded.add(key)
        self.history.append(query)
        if self.listener is not None:
            self.listener(query)
        return query

    def _keep_counterexample(self, point: np.ndarray) -> str:
        """Keep a confirmed counterexample for the cache and save it; returns its file name."""
        name = self._save(point)
        self.counterexamples.append(point)
        self.counterexample_files.append(name)
        return name

    def _save(self, point: np.ndarray) -> str:
        """The counterexample's file, relative to the run folder (as the journal keeps it)."""
        return str(save_counterexample(self.folder / "counterexamples", point).relative_to(self.folder))

    def _append_journal(self, query: Query, full: bool, falsifier: bool = False) -> None:
        entry = {
            **({"falsifier": True} if falsifier else {}),
            "full": full,
            "key": self.key,
            "eps": list(query.eps),
            "status": query.status.value,
            "verifier": query.verifier,
            "margin_bound": query.margin_bound,
            "best_margin": query.best_margin,
            "seconds": round(query.seconds, 4),
            "counterexample": query.counterexample,
            "time": time.time(),
        }
        self.journal[query.eps] = entry
        self.folder.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry) + "\n").encode()
        fd = self._open_journal(os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # never join a last line left without its newline
            while line:
                line = line[os.write(fd, line) :]
            os.fsync(fd)
        finally:
            os.close(fd)
