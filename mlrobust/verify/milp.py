"""`milp`: the exact MILP solved by HiGHS (default) or Gurobi (when installed and licensed).

ROBUST needs the solver's dual bound (a proved upper bound on max m) below -MILP_MARGIN,
which absorbs the solver's feasibility tolerances times the big-M values; NOT_ROBUST needs
the incumbent's input pixels to be confirmed by onnxruntime; everything else (a time limit, a
tolerance-sized optimum, a rejected incumbent) is UNKNOWN, with the bound and incumbent kept.
Gurobi problems (missing, unlicensed, or over the size-limited licence: GurobiError 10010)
are reported in the verdict's stats and the query is solved by HiGHS instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from mlrobust.problem.problem import Problem
from mlrobust.problem.property import OutputProperty
from mlrobust.verify.bounds import SAFETY_MARGIN
from mlrobust.verify.milp_encoding import Encoding, encode_network, start_values, with_objective
from mlrobust.verify.recheck import Recheck, recheck, snap_into_box
from mlrobust.verify.verdict import QueryBudget, Status, Verdict

log = logging.getLogger(__name__)
MILP_MARGIN = 1e-3


# HiGHS model statuses after which its dual bound is a valid upper bound on the maximum
BOUND_STATUSES = frozenset(
    {
        "Optimal",
        "Time limit reached",
        "Iteration limit reached",
        "Solution limit reached",
        "Memory limit reached",
        "Interrupted by user",
        "Interrupted by HiGHS",
    }
)
RETRY_FEASIBILITY_TOLERANCE = 1e-8


@dataclass(frozen=True)
class Solution:
    status: str
    dual_bound: float  # proved upper bound on μ (inf if none)
    incumbent: float | None  # best μ at a feasible point
    values: np.ndarray | None  # variable values of the incumbent
    nodes: int
    solver: str
    seconds: float


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS prints a banner from C++ when created; keep it out of --json output."""
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def solve_highs(
    encoding: Encoding,
    time_limit: float,
    threads: int = 1,
    start: np.ndarray | None = None,
    gap: float = 1e-4,
    stop_below: float | None = None,
    stop_at: float | None = None,
) -> Solution:
    """`gap` is the relative optimality gap at which HiGHS stops (its default); tests ask for less.

    `stop_below`: stop once the dual bound is below it (the question is answered: nothing in
    the box reaches it); `stop_at`: stop once an incumbent reaches it (a candidate to re-check).
    Both by HiGHS's MIP interrupt callback, so the dual bound reported stays the solver's own.
    The same callback enforces the time limit: HiGHS checks its own `time_limit` only between
    phases, and on a box with every pixel free a 2 s solve ran 4.5 s. (HiGHS's root LP calls
    no callback: when that LP alone outlasts the limit, the solve ends when the LP does.)
    """
    import highspy

    started = time.perf_counter()
    builder = encoding.builder
    matrix = builder.matrix().tocsc()
    with _quiet_stdout():
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(max(time_limit, 0.01)))
    highs.setOptionValue("threads", int(threads))
    highs.setOptionValue("mip_rel_gap", float(gap))
    lp = highspy.HighsLp()
    lp.num_col_ = builder.count
    lp.num_row_ = matrix.shape[0]
    cost = np.zeros(builder.count)
    cost[encoding.objective_column] = 1.0
    lp.col_cost_ = cost
    infinity = highspy.kHighsInf
    lp.col_lower_ = np.nan_to_num(np.array(builder.lower), neginf=-infinity, posinf=infinity)
    lp.col_upper_ = np.nan_to_num(np.array(builder.upper), neginf=-infinity, posinf=infinity)
    lp.row_lower_ = np.nan_to_num(np.concatenate(builder.row_lower), neginf=-infinity, posinf=infinity)
    lp.row_upper_ = np.nan_to_num(np.concatenate(builder.row_upper), neginf=-infinity, posinf=infinity)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    kinds = highspy.HighsVarType
    lp.integrality_ = [kinds.kInteger if flag else kinds.kContinuous for flag in builder.integer]
    lp.sense_ = highspy.ObjSense.kMaximize
    highs.passModel(lp)
    if start is not None:
        initial = highspy.HighsSolution()
        initial.col_value = list(start)
        initial.value_valid = True
        highs.setSolution(initial)
    timed_out = _interrupt(highs, started + time_limit, stop_below, stop_at)
    highs.run()
    status = _status(highs, timed_out)
    if status == "Solve error":
        # seen on tiny models: HiGHS's final check finds a 1e-6 primal violation on its own
        # optimum and drops the answer; solving again with a tighter MIP feasibility tolerance
        # gives a clean optimum
        highs.setOptionValue("mip_feasibility_tolerance", RETRY_FEASIBILITY_TOLERANCE)
        highs.setOptionValue("time_limit", float(max(time_limit - (time.perf_counter() - started), 0.01)))
        highs.run()
        status = _status(highs, timed_out)
    info = highs.getInfo()
    has_point = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = np.array(highs.getSolution().col_value) if has_point else None
    if status not in BOUND_STATUSES:
        dual = float("inf")  # after an error or an unexpected status the reported bound proves nothing
    elif any(builder.integer):
        dual = float(info.mip_dual_bound)
        if status == "Optimal" and not np.isfinite(dual):
            dual = float(info.objective_function_value)
    else:  # a pure LP (every ReLU stable): HiGHS's MIP dual bound is not set, the optimum is the bound
        dual = float(info.objective_function_value) if status == "Optimal" else float("inf")
    return Solution(
        status,
        dual if np.isfinite(dual) else float("inf"),
        float(info.objective_function_value) if has_point else None,
        values,
        int(max(info.mip_node_count, 0)),
        "highs",
        time.perf_counter() - started,
    )


def _interrupt(highs, deadline: float, stop_below: float | None, stop_at: float | None) -> list[bool]:  # type: ignore[no-untyped-def]
    """Install the MIP interrupt callback; the returned flag is set when it stopped at the deadline."""
    import highspy

    timed_out = [False]

    def interrupt(kind, message, data_out, data_in, user_data) -> None:  # type: ignore[no-untyped-def]
        if time.perf_counter() >= deadline:
            timed_out[0] = data_in.user_interrupt = True
        elif stop_below is not None and data_out.mip_dual_bound < stop_below:
            data_in.user_interrupt = True
        elif stop_at is not None and np.isfinite(data_out.mip_primal_bound) and data_out.mip_primal_bound >= stop_at:
            data_in.user_interrupt = True

    highs.setCallback(interrupt, None)
    highs.startCallback(highspy.cb.HighsCallbackType.kCallbackMipInterrupt)
    return timed_out


def _status(highs, timed_out: list[bool]) -> str:  # type: ignore[no-untyped-def]
    status = highs.modelStatusToString(highs.getModelStatus())
    return "Time limit reached" if status == "Interrupted by user" and timed_out[0] else status


def solve_gurobi(
    encoding: Encoding,
    time_limit: float,
    threads: int = 1,
    start: np.ndarray | None = None,
    stop_below: float | None = None,
    stop_at: float | None = None,
) -> Solution:
    import gurobipy as gp

    started = time.perf_counter()
    builder = encoding.builder
    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    model = gp.Model(env=env)
    model.Params.TimeLimit = max(time_limit, 0.01)
    model.Params.Threads = threads
    if stop_below is not None:
        model.Params.BestBdStop = stop_below
    if stop_at is not None:
        model.Params.BestObjStop = stop_at
    kinds = np.where(np.array(builder.integer), gp.GRB.BINARY, gp.GRB.CONTINUOUS)
    x = model.addMVar(builder.count, lb=np.array(builder.lower), ub=np.array(builder.upper), vtype=kinds)
    matrix = builder.matrix()
    lower, upper = np.concatenate(builder.row_lower), np.concatenate(builder.row_upper)
    finite_upper, finite_lower = np.isfinite(upper), np.isfinite(lower)
    if finite_upper.any():
        model.addMConstr(matrix[finite_upper], x, "<", upper[finite_upper])
    if finite_lower.any():
        model.addMConstr(matrix[finite_lower], x, ">", lower[finite_lower])
    model.setObjective(x[encoding.objective_column], gp.GRB.MAXIMIZE)
    if start is not None:
        x.Start = start
    model.optimize()
    has_point = model.SolCount > 0
    names = {
        gp.GRB.OPTIMAL: "Optimal",
        gp.GRB.TIME_LIMIT: "Time limit reached",
        gp.GRB.ITERATION_LIMIT: "Iteration limit reached",
        gp.GRB.SOLUTION_LIMIT: "Solution limit reached",
        gp.GRB.INTERRUPTED: "Interrupted by user",
        gp.GRB.USER_OBJ_LIMIT: "Interrupted by user",  # BestBdStop / BestObjStop: the bound still holds
    }
    status = names.get(model.Status, f"Gurobi status {model.Status}")
    return Solution(
        status,
        float(model.ObjBound) if status in BOUND_STATUSES else float("inf"),  # otherwise it proves nothing
        float(model.ObjVal) if has_point else None,
        np.array(x.X) if has_point else None,
        int(model.NodeCount),
        "gurobi",
        time.perf_counter() - started,
    )


def solve(
    encoding: Encoding,
    solver: str,
    time_limit: float,
    threads: int,
    start: np.ndarray | None = None,
    stop_below: float | None = None,
    stop_at: float | None = None,
) -> tuple[Solution, str | None]:
    """Solve with the chosen solver; Gurobi trouble falls back to HiGHS with the reason."""
    stops = {"stop_below": stop_below, "stop_at": stop_at}
    if solver == "gurobi":
        try:
            return solve_gurobi(encoding, time_limit, threads, start, **stops), None
        except ImportError:
            reason = "gurobipy is not installed"
        except Exception as error:  # GurobiError: no licence, or 10010 (model too large for the licence)
            reason = f"Gurobi failed: {error}"
        log.warning("%s; solving with HiGHS instead", reason)
        return solve_highs(encoding, time_limit, threads, start, **stops), reason
    return solve_highs(encoding, time_limit, threads, start, **stops), None


def point_of(problem: Problem, encoding: Encoding, values: np.ndarray) -> np.ndarray:
    flat = encoding.fixed_image.copy()
    flat[encoding.free_pixels] = values[encoding.pixel_columns]
    return flat.reshape(problem.image.shape)


def _incumbent_point(
    problem: Problem, eps: np.ndarray, encoding: Encoding, solution: Solution
) -> tuple[np.ndarray | None, Recheck | None]:
    """The solver's point snapped into the box, and, when its μ claims m >= 0, onnxruntime's
    re-check of it: only a confirmed point may make a NOT_ROBUST."""
    if solution.values is None:
        return None, None
    point = snap_into_box(problem, eps, point_of(problem, encoding, solution.values))
    if solution.incumbent is None or solution.incumbent < 0:
        return point, None
    checked = recheck(problem, eps, point)
    if not checked.confirmed:
        log.warning("MILP incumbent (μ = %.4g) not confirmed by onnxruntime: %s", solution.incumbent, checked.reason)
    return point, checked


def check(
    problem: Problem,
    eps: np.ndarray,
    budget: QueryBudget,
    *,
    solver: str,
    time_limit: float,
    threads: int,
    start_point: np.ndarray | None = None,
) -> Verdict:
    """max m over N(ε), asked as one MILP per live disjunct S of the property: max μ with
    μ <= v_r for r in S (top-k: the k-subsets S of rival classes, v_j = d_j = F_j - F_t).

    Why subsets and not the one-model top-k form (`encode` with no selection): that form's
    selection big-Ms relax to nothing, so its LP relaxation is no tighter than the largest
    U_j, and on the bundled PGD model HiGHS spent a 20 s limit at the root without a bound
    below CROWN's. A subset model's relaxation couples the classes of S through the network;
    most subsets are refuted at or near the root in well under a second. Each solve stops as
    soon as its dual bound is below -MILP_MARGIN (refuted) or its incumbent reaches μ >= 0 (a
    candidate for onnxruntime). ROBUST: every live subset refuted; NOT_ROBUST: a confirmed
    incumbent; otherwise (a subset's time ran out, or an incumbent was not confirmed) UNKNOWN.
    `start_point` (a point of the box, e.g. the attack's best) seeds every solver's incumbent.
    """
    started = time.perf_counter()
    limit = time_limit if budget.seconds is None else min(time_limit, budget.seconds)
    deadline = started + limit
    part = encode_network(problem, eps)
    point = snap_into_box(problem, eps, problem.image if start_point is None else start_point)
    output = problem.output
    upper = part.upper_d  # CROWN's bound on each row
    # a disjunct with a row CROWN keeps below zero holds nowhere; the rest, most dangerous first
    subsets = output.live_disjuncts(upper, -SAFETY_MARGIN)
    crown = output.bound(upper)
    stats: dict = {
        "milp_margin": MILP_MARGIN,
        "crown_bound": crown,
        "live_subsets": len(subsets),
        "refuted": 0,
        "nodes": 0,
        **part.counts,
    }
    # per subset: the solver's dual bound once asked, CROWN's min U_r over S until then
    bounds = {subset: min(upper[r] for r in subset) for subset in subsets}
    best: float | None = None
    weakest: list[np.ndarray] = []
    unanswered = False
    for subset in subsets:
        if time.perf_counter() >= deadline:
            unanswered = True
            break
        encoding = with_objective(problem, part, subset)
        solution, fallback = solve(
            encoding,
            solver,
            deadline - time.perf_counter(),
            threads,
            start_values(problem, encoding, point),
            stop_below=-MILP_MARGIN,
            stop_at=0.0,
        )
        if fallback:
            stats["fallback"] = fallback
        stats["solver"] = solution.solver
        stats["nodes"] += solution.nodes
        bounds[subset] = min(bounds[subset], solution.dual_bound)
        if solution.incumbent is not None:
            best = solution.incumbent if best is None else max(best, solution.incumbent)
        found, checked = _incumbent_point(problem, eps, encoding, solution)
        if found is not None:
            weakest.append(found)
        if checked is not None:
            stats["recheck"] = checked.reason
            if checked.confirmed:
                stats.update(subset=_described(output, subset), solver_status=solution.status)
                stats["dual_bound"] = max(bounds.values())
                elapsed = time.perf_counter() - started
                return Verdict(
                    Status.NOT_ROBUST, "milp", None, checked.margin, found, tuple(weakest), elapsed, stats,
                    tallies=_milp_tallies(stats),
                )  # fmt: skip
        if bounds[subset] < -MILP_MARGIN:
            stats["refuted"] += 1
        else:
            stats["solver_status"] = solution.status
            unanswered = True
            break  # this subset may hold m >= 0: the box cannot be proved robust any more
    # every other disjunct holds a row that CROWN keeps below zero: its min U_r bounds it
    dead = [min(upper[r] for r in subset) for subset in output.disjuncts() if subset not in bounds]
    bound = max([*bounds.values(), *dead])
    stats["dual_bound"] = bound
    proved = not unanswered
    if proved:
        stats["proof"] = (
            "CROWN bound of the encoding" if not subsets else f"solver dual bounds of {len(subsets)} disjunct(s)"
        )
    status = Status.ROBUST if proved else Status.UNKNOWN
    elapsed = time.perf_counter() - started
    return Verdict(status, "milp", bound, best, None, tuple(weakest), elapsed, stats, tallies=_milp_tallies(stats))


def _milp_tallies(stats: dict) -> dict[str, float]:  # type: ignore[type-arg]
    return {"nodes": stats["nodes"], "refuted_subsets": stats["refuted"]}


def _described(output: OutputProperty, subset: tuple[int, ...]) -> list[object]:
    """A disjunct as a person reads it: the rival classes of a top-k subset, the label of a
    threshold, the [s, j] pair of keep_predicted's top-k set, else its rows."""
    return output.described_disjunct(subset)


def check_pairwise(problem: Problem, eps: np.ndarray, budget: QueryBudget, *, time_limit: float) -> Verdict:
    """The thesis's oracle, kept as a baseline: one MILP per k-subset of the other classes.

    ROBUST when every subset was solved within the time limit with a dual bound below
    -MILP_MARGIN; NOT_ROBUST when a subset's incumbent reaches m >= 0 and onnxruntime confirms
    it; otherwise UNKNOWN.
    """
    from mlrobust.verify.milp_encoding import selections

    started = time.perf_counter()
    deadline = started + (time_limit if budget.seconds is None else min(time_limit, budget.seconds))
    subsets = selections(problem)
    stats = {"subsets": len(subsets), "solved": 0}
    worst_bound = -np.inf
    best_found: float | None = None
    network = encode_network(problem, eps)  # the network part is the same for every subset
    for subset in subsets:
        if time.perf_counter() > deadline:
            break
        encoding = with_objective(problem, network, subset)
        start = start_values(problem, encoding, snap_into_box(problem, eps, problem.image))
        solution = solve_highs(encoding, max(deadline - time.perf_counter(), 0.01), start=start)
        stats["solved"] += 1
        worst_bound = max(worst_bound, solution.dual_bound)
        if solution.incumbent is not None:
            best_found = solution.incumbent if best_found is None else max(best_found, solution.incumbent)
        point, checked = _incumbent_point(problem, eps, encoding, solution)
        if checked is not None and checked.confirmed:
            elapsed = time.perf_counter() - started
            return Verdict(Status.NOT_ROBUST, "milp_pairwise", None, checked.margin, point, (point,), elapsed, stats)
    # a subset never solved bounds nothing: the dual bounds cover the solved subsets only
    proved = stats["solved"] == len(subsets) and worst_bound < -MILP_MARGIN
    status = Status.ROBUST if proved else Status.UNKNOWN
    elapsed = time.perf_counter() - started
    return Verdict(status, "milp_pairwise", worst_bound, best_found, None, (), elapsed, stats)
