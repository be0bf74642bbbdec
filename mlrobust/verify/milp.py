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
from mlrobust.verify.bounds import SAFETY_MARGIN
from mlrobust.verify.milp_encoding import Encoding, encode, start_values
from mlrobust.verify.recheck import Recheck, recheck, snap_into_box
from mlrobust.verify.verdict import Budget, Status, Verdict

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
    encoding: Encoding, time_limit: float, threads: int = 1, start: np.ndarray | None = None, gap: float = 1e-4
) -> Solution:
    """`gap` is the relative optimality gap at which HiGHS stops (its default); tests ask for less."""
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
    highs.run()
    status = highs.modelStatusToString(highs.getModelStatus())
    if status == "Solve error":
        # seen on tiny models: HiGHS's final check finds a 1e-6 primal violation on its own
        # optimum and drops the answer; solving again with a tighter MIP feasibility tolerance
        # gives a clean optimum
        highs.setOptionValue("mip_feasibility_tolerance", RETRY_FEASIBILITY_TOLERANCE)
        highs.setOptionValue("time_limit", float(max(time_limit - (time.perf_counter() - started), 0.01)))
        highs.run()
        status = highs.modelStatusToString(highs.getModelStatus())
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


def solve_gurobi(encoding: Encoding, time_limit: float, threads: int = 1, start: np.ndarray | None = None) -> Solution:
    import gurobipy as gp

    started = time.perf_counter()
    builder = encoding.builder
    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    model = gp.Model(env=env)
    model.Params.TimeLimit = max(time_limit, 0.01)
    model.Params.Threads = threads
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
    encoding: Encoding, solver: str, time_limit: float, threads: int, start: np.ndarray | None = None
) -> tuple[Solution, str | None]:
    """Solve with the chosen solver; Gurobi trouble falls back to HiGHS with the reason."""
    if solver == "gurobi":
        try:
            return solve_gurobi(encoding, time_limit, threads, start), None
        except ImportError:
            reason = "gurobipy is not installed"
        except Exception as error:  # GurobiError: no licence, or 10010 (model too large for the licence)
            reason = f"Gurobi failed: {error}"
        log.warning("%s; solving with HiGHS instead", reason)
        return solve_highs(encoding, time_limit, threads, start), reason
    return solve_highs(encoding, time_limit, threads, start), None


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
    budget: Budget,
    solver: str = "highs",
    time_limit: float = 30.0,
    refine: str = "none",
    threads: int = 1,
    start_point: np.ndarray | None = None,
) -> Verdict:
    """`start_point` (a point of the box, e.g. the attack's best) seeds the solver's incumbent."""
    started = time.perf_counter()
    limit = time_limit if budget.seconds is None else min(time_limit, budget.seconds)
    encoding = encode(problem, eps)
    point = problem.image if start_point is None else start_point
    start = start_values(problem, encoding, snap_into_box(problem, eps, point))
    solution, fallback = solve(encoding, solver, limit - (time.perf_counter() - started), threads, start)
    stats = {
        "solver": solution.solver,
        "solver_status": solution.status,
        "nodes": solution.nodes,
        "solve_seconds": round(solution.seconds, 3),
        "dual_bound": solution.dual_bound,
        "incumbent": solution.incumbent,
        "milp_margin": MILP_MARGIN,
        **encoding.counts,
    }
    if fallback:
        stats["fallback"] = fallback
    best = solution.incumbent
    point, checked = _incumbent_point(problem, eps, encoding, solution)
    weakest: tuple[np.ndarray, ...] = () if point is None else (point,)
    if checked is not None:
        stats["recheck"] = checked.reason
        if checked.confirmed:
            return Verdict(
                Status.NOT_ROBUST,
                "milp",
                solution.dual_bound,
                checked.margin,
                point,
                weakest,
                time.perf_counter() - started,
                stats,
            )
    # Both the solver's dual bound and the CROWN bound the encoding was built from are sound;
    # early in a search the LP relaxation can be the looser of the two.
    crown = float(np.sort(encoding.margin_upper)[::-1][problem.k - 1])
    stats["crown_bound"] = crown
    bound = min(solution.dual_bound, crown)
    proved = solution.dual_bound < -MILP_MARGIN or crown < -SAFETY_MARGIN
    if proved:  # which bound proved it: the solver's, or (when it ran out of time) the encoding's
        stats["proof"] = "solver dual bound" if solution.dual_bound < -MILP_MARGIN else "CROWN bound of the encoding"
    status = Status.ROBUST if proved else Status.UNKNOWN
    return Verdict(status, "milp", bound, best, None, weakest, time.perf_counter() - started, stats)


def check_pairwise(problem: Problem, eps: np.ndarray, budget: Budget, time_limit: float = 30.0) -> Verdict:
    """The thesis's oracle, kept as a baseline: one MILP per k-subset of the other classes.

    ROBUST when every subset was solved within the time limit with a dual bound below
    -MILP_MARGIN; NOT_ROBUST when a subset's incumbent reaches m >= 0 and onnxruntime confirms
    it; otherwise UNKNOWN.
    """
    from mlrobust.verify.milp_encoding import encode_network, selections, with_objective

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
