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


@functools.cache
def cuda_problem() -> str | None:
    """None when torch sees a CUDA device; else why not (the import is paid only when asked)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device here (torch " + torch.__version__ + ")"
    return None
