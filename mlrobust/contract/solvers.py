"""Which MILP solvers can run here. HiGHS is a dependency; Gurobi is optional and licensed.

Torch-free and cheap to import: `lint` asks it when a spec chooses Gurobi.
"""

from __future__ import annotations

import functools


@functools.cache
def gurobi_problem() -> str | None:
    """None when gurobipy imports and its licence starts an environment; else why not."""
    try:
        import gurobipy
    except ImportError:
        return "gurobipy is not installed"
    try:
        env = gurobipy.Env(empty=True)
        env.setParam("OutputFlag", 0)
        env.start()
        env.dispose()
    except gurobipy.GurobiError as error:
        return f"Gurobi has no usable licence ({error})"
    return None


GUROBI_FIX = "pip install 'mlrobust[gurobi]' (its size-limited licence covers small nets), or use solver = highs"
