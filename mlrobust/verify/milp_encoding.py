"""The exact MILP of max m over N(ε), as sparse matrices, with as few variables as possible.

Every activation is an affine expression E v + c over the MILP's variables v. Variables are
created only where the network is not affine on the box: the free input pixels (lower <
upper), each unstable ReLU (y and a binary a: y >= x, y <= x - l (1 - a), y <= u a, y >= 0)
and each undecided max-pool window (y, and a binary per candidate i: y >= x_i,
y <= x_i + (u_max - l_i)(1 - δ_i), Σ δ = 1). Stable ReLUs and decided windows are substituted.
A LeakyReLU is a ReLU whose inactive piece is a x (the same big-M form with a's terms); Add
and Concat of branches are sums and permutations of expressions, exactly.
Bounds l, u come from CROWN (the tighter, the smaller every big-M).

Two objectives on the same network part. The subset form (one model per k-subset S:
maximise μ <= d_j for j in S, with d_j = F_j - F_t) is what `milp.check` solves, for the
subsets CROWN leaves live. The one-model top-k form (maximise μ subject to
μ <= d_j + M_j (1 - s_j) for every class j != t, Σ s_j = k, s binary) has the k-th largest
d_j as its optimum, but its LP relaxation is weak (the big-Ms relax to nothing); it is kept
for tests (it must equal the best subset) and as the bench's baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlrobust.nn import ops as o
from mlrobust.problem.problem import Problem
from mlrobust.problem.property import TopK
from mlrobust.verify.bounds import Interval, crown_intermediate, ibp, patch_answers

INF = float("inf")


def affine_matrix(op: o.AffineOp) -> tuple[sp.csr_matrix, np.ndarray]:
    """The op as y = A x + b over flattened activations (cached on the op)."""
    build = o.rule(SPARSE_MATRICES, op, "sparse matrix table (MILP)")
    return o.memo(op, "sparse", lambda: build(op))  # type: ignore[arg-type]


def _reshape_matrix(op: o.Reshape) -> tuple[sp.csr_matrix, np.ndarray]:
    size = int(np.prod(op.in_shape))
    return sp.identity(size, format="csr"), np.zeros(size)


def _elementwise_matrix(op: o.Affine) -> tuple[sp.csr_matrix, np.ndarray]:
    scale = np.broadcast_to(op.scale, op.in_shape).ravel()
    shift = np.broadcast_to(op.shift, op.in_shape).ravel()
    return sp.diags(scale, format="csr"), shift.copy()


def _linear_matrix(op: o.Linear) -> tuple[sp.csr_matrix, np.ndarray]:
    return sp.csr_matrix(op.weight), op.bias.copy()


def _conv_matrix(op: o.Conv) -> tuple[sp.csr_matrix, np.ndarray]:
    c_out, c_in, kh, kw = op.weight.shape
    _, h_out, w_out = op.out_shape
    _, h_in, w_in = op.in_shape
    co, oy, ox, ci, ky, kx = np.meshgrid(
        np.arange(c_out),
        np.arange(h_out),
        np.arange(w_out),
        np.arange(c_in),
        np.arange(kh),
        np.arange(kw),
        indexing="ij",
    )
    iy = oy * op.stride[0] - op.padding[0] + ky * op.dilation[0]
    ix = ox * op.stride[1] - op.padding[1] + kx * op.dilation[1]
    inside = (iy >= 0) & (iy < h_in) & (ix >= 0) & (ix < w_in)
    rows = ((co * h_out + oy) * w_out + ox)[inside]
    cols = ((ci * h_in + iy) * w_in + ix)[inside]
    values = op.weight[co[inside], ci[inside], ky[inside], kx[inside]]
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(c_out * h_out * w_out, c_in * h_in * w_in))
    return matrix, np.repeat(op.bias, h_out * w_out)


SPARSE_MATRICES: Mapping[type, Callable[[Any], tuple[sp.csr_matrix, np.ndarray]]] = {
    o.Conv: _conv_matrix,
    o.Linear: _linear_matrix,
    o.Affine: _elementwise_matrix,
    o.Reshape: _reshape_matrix,
}


@dataclass(frozen=True)
class Block:
    """What a run of columns stands for, so a concrete point can be turned into a MILP start."""

    kind: str  # "pixel", "relu" (a ReLU's or LeakyReLU's output), "gate", "pool", "choice", "mu", "select"
    op_index: int
    neurons: np.ndarray  # neuron (or window) index of each column in its activation
    columns: np.ndarray
    members: np.ndarray | None = None  # for "choice": the candidate input of each column


@dataclass
class Builder:
    """Columns (variables) and rows (constraints) of the MILP being built."""

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    blocks: list[sp.csr_matrix] = field(default_factory=list)  # constraint rows, widened at the end
    row_lower: list[np.ndarray] = field(default_factory=list)
    row_upper: list[np.ndarray] = field(default_factory=list)
    tags: list[Block] = field(default_factory=list)

    def tag(self, kind: str, op_index: int, neurons, columns, members=None) -> None:  # type: ignore[no-untyped-def]
        self.tags.append(
            Block(
                kind,
                op_index,
                np.asarray(neurons),
                np.asarray(columns),
                None if members is None else np.asarray(members),
            )
        )

    @property
    def count(self) -> int:
        return len(self.lower)

    def add_variables(self, lower: np.ndarray, upper: np.ndarray, integer: bool) -> np.ndarray:
        start = self.count
        self.lower.extend(np.asarray(lower, dtype=np.float64).tolist())
        self.upper.extend(np.asarray(upper, dtype=np.float64).tolist())
        self.integer.extend([integer] * len(lower))
        return np.arange(start, self.count)

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        self.blocks.append(sp.csr_matrix(matrix))
        self.row_lower.append(np.asarray(lower, dtype=np.float64))
        self.row_upper.append(np.asarray(upper, dtype=np.float64))

    def matrix(self) -> sp.csr_matrix:
        width = self.count
        widened = [sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.shape[0], width)) for b in self.blocks]
        return sp.vstack(widened, format="csr") if widened else sp.csr_matrix((0, width))


def _unit(columns: np.ndarray, width: int) -> sp.csr_matrix:
    """Rows that pick single variables: row i is e_{columns[i]}."""
    n = len(columns)
    return sp.csr_matrix((np.ones(n), (np.arange(n), columns)), shape=(n, width))


def _widen(matrix: sp.csr_matrix, width: int) -> sp.csr_matrix:
    return sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], width))


@dataclass(frozen=True)
class Encoding:
    builder: Builder
    objective_column: int  # μ
    pixel_columns: np.ndarray  # variable index of each free pixel
    free_pixels: np.ndarray  # flat pixel indices that are variables
    fixed_image: np.ndarray  # the point's value at fixed pixels (flat)
    counts: dict[str, int]
    margin_upper: np.ndarray  # U_j (j != t) used for the big-Ms
    margin_lower: np.ndarray


# An encoding rule takes the op's input as expressions over the MILP's variables (expr v +
# const, one row per neuron) and returns its output in the same form, adding the variables and
# constraints it needs; `bounds` are the input's bounds (for the big-Ms).


def _affine(builder: Builder, op: o.AffineOp, expr, const, bounds, counts, index: int) -> tuple:
    matrix, bias = affine_matrix(op)
    return matrix @ expr, matrix @ const + bias


def _relu(
    builder: Builder, op: o.Relu, expr: sp.csr_matrix, const: np.ndarray, bounds: Interval, counts, index: int
) -> tuple:
    return _two_pieces(builder, 0.0, expr, const, bounds, counts, index)


def _leaky_relu(
    builder: Builder, op: o.LeakyRelu, expr: sp.csr_matrix, const: np.ndarray, bounds: Interval, counts, index: int
) -> tuple:
    return _two_pieces(builder, op.slope, expr, const, bounds, counts, index)


def _two_pieces(
    builder: Builder, a: float, expr: sp.csr_matrix, const: np.ndarray, bounds: Interval, counts, index: int
) -> tuple:
    """y = max(x, a x) (a = 0: ReLU) on an unstable neuron: y >= x, y >= a x (for a = 0 the
    variable's lower bound 0), y <= x - (1 - a) l (1 - g), y <= a x + (1 - a) u g with g binary
    (g = 1: y = x and x >= 0; g = 0: y = a x and x <= 0). Stable neurons are the linear pieces
    they are, substituted."""
    lower, upper = bounds.lower.flatten().numpy(), bounds.upper.flatten().numpy()
    active, inactive = lower >= 0, upper <= 0
    unstable = np.flatnonzero(~active & ~inactive)
    scale = np.where(active, 1.0, np.where(inactive, a, 0.0))
    new_expr, new_const = sp.diags(scale, format="csr") @ expr, np.where(scale != 0, scale * const, 0.0)
    if unstable.size:
        low, up = lower[unstable], upper[unstable]
        ys = builder.add_variables(a * low + 0.0, up, integer=False)  # + 0.0: no -0.0 at a = 0
        gates = builder.add_variables(np.zeros(unstable.size), np.ones(unstable.size), integer=True)
        builder.tag("relu", index, unstable, ys)
        builder.tag("gate", index, unstable, gates)
        width = builder.count
        x = _widen(expr[unstable], width)
        y = _unit(ys, width)
        g = _unit(gates, width)
        c = const[unstable]
        never = np.full(unstable.size, INF)
        builder.add_rows(y - x, c, never)  # y >= x
        if a != 0:
            builder.add_rows(y - a * x, a * c, never)  # y >= a x
        builder.add_rows(y - x - sp.diags((1 - a) * low) @ g, -never, c - (1 - a) * low)  # y <= x - (1-a) l (1-g)
        below = y - sp.diags((1 - a) * up) @ g
        if a != 0:
            below = below - a * x
        builder.add_rows(below, -never, a * c + 0.0)  # y <= a x + (1-a) u g
        place = sp.csr_matrix((np.ones(unstable.size), (unstable, ys)), shape=(lower.size, width))
        new_expr = _widen(new_expr, width) + place
        counts["relu_binaries"] += unstable.size
    counts["relus_substituted"] += int(active.sum() + inactive.sum())
    return new_expr, new_const


def _add(builder: Builder, op: o.Add, exprs: list, consts: list, bounds, counts, index: int) -> tuple:
    width = builder.count
    first, second = (sign * _widen(e, width) for sign, e in zip(op.signs, exprs, strict=True))
    return sp.csr_matrix(first + second), op.signs[0] * consts[0] + op.signs[1] * consts[1]


def concat_positions(op: o.Concat) -> list[np.ndarray]:
    """Per input, the flat output position of each of its (flat, C-order) elements."""
    positions = np.arange(int(np.prod(op.out_shape))).reshape(op.out_shape)
    parts = np.split(positions, np.cumsum(op.sizes)[:-1], axis=op.axis)
    return [part.ravel() for part in parts]


def _concat(builder: Builder, op: o.Concat, exprs: list, consts: list, bounds, counts, index: int) -> tuple:
    width = builder.count
    order = np.concatenate(concat_positions(op))  # stacked row i goes to output position order[i]
    stacked = sp.vstack([_widen(e, width) for e in exprs], format="csr")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return stacked[inverse], np.concatenate(consts)[inverse]


def _maxpool(builder: Builder, op: o.MaxPool, expr, const, bounds: Interval, counts, index: int) -> tuple:
    lower, upper = bounds.lower.flatten().numpy(), bounds.upper.flatten().numpy()
    rows_out: list[sp.csr_matrix] = []
    consts_out = np.zeros(op.windows.shape[0])
    for out, window in enumerate(op.windows):
        members = window[window >= 0]
        floor = lower[members].max()
        candidates = members[upper[members] >= floor]
        best = candidates[np.argmax(lower[candidates])]
        others = candidates[candidates != best]
        if candidates.size == 1 or lower[best] >= (upper[others].max() if others.size else -INF):
            rows_out.append(expr[best])
            consts_out[out] = const[best]
            counts["maxpools_substituted"] += 1
            continue
        u_max = upper[candidates].max()
        (y,) = builder.add_variables(np.array([floor]), np.array([u_max]), integer=False)
        deltas = builder.add_variables(np.zeros(candidates.size), np.ones(candidates.size), integer=True)
        builder.tag("pool", index, [out], [y])
        builder.tag("choice", index, np.full(candidates.size, out), deltas, candidates)
        width = builder.count
        x = _widen(expr[candidates], width)
        y_rows = _unit(np.full(candidates.size, y), width)
        big = u_max - lower[candidates]
        builder.add_rows(y_rows - x, const[candidates], np.full(candidates.size, INF))  # y >= x_i
        builder.add_rows(
            y_rows - x + sp.diags(big) @ _unit(deltas, width), np.full(candidates.size, -INF), const[candidates] + big
        )  # y <= x_i + big (1 - δ_i)
        builder.add_rows(_unit(deltas, width).sum(axis=0), np.ones(1), np.ones(1))  # Σ δ = 1
        rows_out.append(_unit(np.array([y]), width))
        counts["maxpool_binaries"] += candidates.size
    width = builder.count
    return sp.vstack([_widen(sp.csr_matrix(r), width) for r in rows_out], format="csr"), consts_out


MILP_RULES: Mapping[type, Callable[..., tuple]] = {
    o.Conv: _affine,
    o.Linear: _affine,
    o.Affine: _affine,
    o.Reshape: _affine,
    o.Add: _add,
    o.Concat: _concat,
    o.Relu: _relu,
    o.LeakyRelu: _leaky_relu,
    o.MaxPool: _maxpool,
}


@dataclass(frozen=True)
class NetworkPart:
    """The network's encoding over N(ε), shared by every objective asked on the same box."""

    builder: Builder
    diff_expr: sp.csr_matrix  # the property's rows v_r (top-k: d_j = F_j - F_t), as expressions over the variables
    diff_const: np.ndarray
    upper_d: np.ndarray  # CROWN bounds on each row
    lower_d: np.ndarray
    pixel_columns: np.ndarray
    free: np.ndarray
    fixed: np.ndarray
    counts: dict[str, int]


def encode_network(problem: Problem, eps: np.ndarray) -> NetworkPart:
    """Pixels, ReLUs and max-pools of N(ε), and the property's rows (top-k: the class
    differences d_j = F_j - F_t) with their bounds."""
    import torch

    from mlrobust.verify.bounds import backsubstitute

    lower, upper = problem.box(eps)
    box = Interval(torch.as_tensor(lower)[None], torch.as_tensor(upper)[None])
    ops = problem.network.ops
    bounds = crown_intermediate(ops, box, remembered=patch_answers(problem))
    ibp_bounds = ibp(ops, box)
    builder = Builder()
    flat_lower, flat_upper = lower.ravel(), upper.ravel()
    free = np.flatnonzero(flat_lower < flat_upper)
    pixel_columns = builder.add_variables(flat_lower[free], flat_upper[free], integer=False)
    builder.tag("pixel", -1, free, pixel_columns)
    size = flat_lower.size
    expr = sp.csr_matrix((np.ones(free.size), (free, pixel_columns)), shape=(size, builder.count))
    const = np.where(flat_lower < flat_upper, 0.0, flat_lower)
    counts = {
        "free_pixels": int(free.size),
        "relu_binaries": 0,
        "relus_substituted": 0,
        "maxpool_binaries": 0,
        "maxpools_substituted": 0,
    }
    values: dict[int, tuple[sp.csr_matrix, np.ndarray]] = {0: (expr, const)}
    last_reader = {source: index for index in range(len(ops)) for source in o.inputs_of(ops, index)}
    for index, op in enumerate(ops):
        encode = o.rule(MILP_RULES, op, "MILP encoding")
        sources = o.inputs_of(ops, index)
        if isinstance(op, o.MERGE_OPS):
            exprs = [values[source][0] for source in sources]
            consts = [values[source][1] for source in sources]
            values[index + 1] = encode(builder, op, exprs, consts, None, counts, index)
        else:
            (source,) = sources
            expr, const = values[source]
            interval = bounds[index] or ibp_bounds[source]
            values[index + 1] = encode(builder, op, _widen(expr, builder.count), const, interval, counts, index)
        for source in sources:  # a value no later op reads is let go (a chain keeps one at a time)
            if last_reader[source] == index:
                del values[source]
    expr, const = values[len(ops)]
    expr = _widen(expr, builder.count)
    output = problem.output
    rows = sp.csr_matrix(output.rows)
    diff_expr = rows @ expr
    diff_const = output.rows @ const + output.offsets
    # bounds on each row from CROWN on both of its signs
    spec = torch.as_tensor(output.rows)
    upper_d = backsubstitute(ops, len(ops), spec, bounds, box).numpy() + output.offsets
    lower_d = -backsubstitute(ops, len(ops), -spec, bounds, box).numpy() + output.offsets
    fixed = np.where(flat_lower < flat_upper, 0.0, flat_lower)
    return NetworkPart(
        builder, sp.csr_matrix(diff_expr), diff_const, upper_d, lower_d, pixel_columns, free, fixed, counts
    )


def _copy(builder: Builder) -> Builder:
    """A builder that can grow without touching the shared one (blocks are never mutated)."""
    return Builder(
        list(builder.lower),
        list(builder.upper),
        list(builder.integer),
        list(builder.blocks),
        list(builder.row_lower),
        list(builder.row_upper),
        list(builder.tags),
    )


def with_objective(problem: Problem, part: NetworkPart, selection: tuple[int, ...] | None = None) -> Encoding:
    """The one-model top-k form (selection None; top-k problems only) or the disjunct model
    max min_{r in S} v_r (S: row indices of one disjunct) on `part`."""
    builder = _copy(part.builder)
    counts = dict(part.counts)
    ops = problem.network.ops
    others = np.arange(len(part.diff_const))
    diff_expr, diff_const, upper_d, lower_d = part.diff_expr, part.diff_const, part.upper_d, part.lower_d
    (mu,) = builder.add_variables(np.array([-INF]), np.array([upper_d.max()]), integer=False)
    builder.tag("mu", len(ops), [0], [mu], None if selection is None else np.array(selection))
    if selection is None:
        chosen = builder.add_variables(np.zeros(others.size), np.ones(others.size), integer=True)
        builder.tag("select", len(ops), others, chosen)
        width = builder.count
        big = upper_d.max() - lower_d
        mu_rows = _unit(np.full(others.size, mu), width)
        builder.add_rows(
            mu_rows - _widen(diff_expr, width) + sp.diags(big) @ _unit(chosen, width),
            np.full(others.size, -INF),
            diff_const + big,
        )  # μ <= d_j + M_j (1 - s_j)
        assert isinstance(problem.output, TopK), "the one-model form is the top-k property's"
        k = problem.output.k
        builder.add_rows(_unit(chosen, width).sum(axis=0), np.array([k]), np.array([k]))
        counts["selection_binaries"] = int(others.size)
    else:
        picked = np.array(selection)
        width = builder.count
        builder.add_rows(
            _unit(np.full(picked.size, mu), width) - _widen(diff_expr[picked], width),
            np.full(picked.size, -INF),
            diff_const[picked],
        )  # μ <= v_r for r in S
    counts["variables"] = builder.count
    counts["binaries"] = int(sum(builder.integer))
    return Encoding(builder, int(mu), part.pixel_columns, part.free, part.fixed, counts, upper_d, lower_d)


def encode(problem: Problem, eps: np.ndarray, selection: tuple[int, ...] | None = None) -> Encoding:
    """The MILP for max m over N(ε); with `selection` (a disjunct's rows), the model
    max min_{r in S} v_r."""
    return with_objective(problem, encode_network(problem, eps), selection)


def selections(problem: Problem) -> list[tuple[int, ...]]:
    """Every disjunct of the property, as row indices (top-k: the C(n-1, k) rival subsets of
    the thesis's pairwise formulation)."""
    return list(problem.output.disjuncts())


def start_values(problem: Problem, encoding: Encoding, point: np.ndarray) -> np.ndarray:
    """Every variable's value at a concrete point of the box: a feasible MILP start."""
    import torch

    ops = problem.network.ops
    with torch.no_grad():
        activations = o.forward_values(ops, torch.as_tensor(point[None], dtype=torch.float64))
    flat = [a.flatten().numpy() for a in activations]
    values = np.zeros(encoding.builder.count)
    rows = problem.output.row_values(flat[-1])[0]  # top-k: F_j - F_t for j != t
    for block in encoding.builder.tags:
        if block.kind == "pixel":
            values[block.columns] = flat[0][block.neurons]
        elif block.kind == "relu":
            values[block.columns] = flat[block.op_index + 1][block.neurons]
        elif block.kind == "gate":
            values[block.columns] = (flat[o.input_of(ops, block.op_index)][block.neurons] > 0).astype(float)
        elif block.kind == "pool":
            values[block.columns] = flat[block.op_index + 1][block.neurons]
        elif block.kind == "choice":
            inputs = flat[o.input_of(ops, block.op_index)][block.members]
            chosen = np.zeros(len(block.columns))
            chosen[int(np.argmax(inputs))] = 1.0
            values[block.columns] = chosen
        elif block.kind == "mu":
            if block.members is None:
                values[block.columns] = problem.output.margin(flat[-1])[0]
            else:
                values[block.columns] = min(rows[np.asarray(block.members)])
        elif block.kind == "select":
            assert isinstance(problem.output, TopK)
            top = np.argsort(-rows, kind="stable")[: problem.output.k]
            chosen = np.zeros(len(block.columns))
            chosen[top] = 1.0
            values[block.columns] = chosen
    return values
