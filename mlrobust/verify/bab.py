"""`bab`: branch and bound on ReLU and max-pool splits over the bound engine (β-CROWN style),
complete given time.

A *domain* is the query's box with some unstable ReLUs fixed: z_i >= 0 (active) or z_i <= 0
(inactive). A LeakyReLU max(z, a z) splits the same way (its inactive piece is a z, not 0), so
"ReLU" below means either. A max-pool window whose maximum is undecided splits on a member j:
x_j is the maximum (y = x_j, and x_j >= x_i enters the bound by β) or it is not (y is the
maximum of the others); see `_split_maxpool_backward`. A domain's bound is CROWN's
back-substitution with
- the split neurons relaxed exactly (identity or zero), from their root bounds clipped at 0;
- the split constraints themselves in the linear bound by Lagrange multipliers β >= 0 (as in
  β-CROWN, Wang et al. 2021): max λ·F over {x in box : s_i z_i(x) >= 0} is at most
  max over the box of λ·F + Σ β_i s_i z_i for any β >= 0, so each split adds β_i s_i to the
  rows at its pre-activation, and β is tuned (with the lower ReLU slopes α) by projected
  Adam to lower the bound. Every α in [0, 1] and β >= 0 gives a sound bound, so tuning only
  tightens;
- the root's intermediate bounds for every other neuron (valid in every subdomain), the
  max-pool relaxations included.
Domains go through the engine in batches: one back-substitution of (domains × rows) rows.

A domain is closed when the margin's bound (the property's margin of its rows' bounds: the
k-th largest for top-k, max-min for a disjunction) is below -SAFETY_MARGIN. Open domains are
split on the neuron with the best BaBSR intercept score (Bunel et al. 2020: the amount the
upper relaxation's offset adds to the live rows' bounds; a window's is that of the ReLU in
max(x_j1, x_j2) = x_j1 + relu(x_j2 - x_j1) of its top two members), hardest domain first; a
domain with every unstable ReLU split and every window decided is settled by the exact MILP
of the box with those ReLUs' gates fixed (the max-pools keep their binaries, so it is exact
on the domain's superset). Candidate counterexamples: the input corner that maximises each
open domain's bound, and PGD from those corners; each goes through the onnxruntime re-check.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mlrobust.nn import ops as o
from mlrobust.problem.problem import Problem
from mlrobust.verify import bounds as B
from mlrobust.verify.adam import Adam
from mlrobust.verify.recheck import recheck, snap_into_box
from mlrobust.verify.verdict import QueryBudget, Status, Verdict

PLATEAU_STEPS, PLATEAU_GAIN = 10, 1e-3  # a long tuning stops once 10 steps gain < 1e-3 on every domain
ROOT_SCHEDULE = (0.5, 0.95)  # the root's long tuning: large steps first (the combined rows' λ move far), then fine
ROOT_STEPS = 100  # α/β/c optimisation steps at the root (one domain: cheap, and it warm-starts all)
MAX_DOMAINS = 20_000  # open domains kept at once (each holds its splits: a few bytes per unstable ReLU)
SPLIT_WINDOWS = True  # split max-pool windows too (bench/pool_bab.py turns it off to measure what they add)


@dataclass
class SplitContext:
    """What the ReLU rule of a domain batch needs: splits, α, β, and where to record rows."""

    domains: int
    splits: dict[int, torch.Tensor]  # ReLU op index -> (D, *shape) in {-1, 0, +1}
    ops: tuple = ()  # the network's ops (a rule looks at its neighbours)
    alphas: dict[int, torch.Tensor] = field(default_factory=dict)  # (D, R, *shape) lower slopes
    betas: dict[int, torch.Tensor] = field(default_factory=dict)  # (D, R, *shape) multipliers >= 0
    recorded: dict[int, torch.Tensor] = field(default_factory=dict)  # rows at each ReLU's / max-pool's output
    # max-pool op index -> (valid (out, W), lower, upper (B, out, W)): the windows' input bounds
    # the pool's rule used, kept for the branching score
    windows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # max-pool op index -> (upper-plane logits, lower logits), each (D, R, out, window): the
    # plane's slopes c and the lower combination μ, both on each window's simplex (softmax)
    pools: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # ReLU op index -> (D, *shape) pre-activation bounds recomputed in each domain (its splits
    # in earlier layers taken into account); the root's where absent
    refined: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def get(self, index: int) -> None:  # the plain CROWN rules ask contexts for α this way
        return None

    def relu_bounds(self, index: int, bounds: list[B.Interval | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """A ReLU's pre-activation bounds in each domain: refined or the root's, clipped by splits."""
        interval = bounds[index]
        assert interval is not None
        lower, upper = self.refined.get(index, (interval.lower, interval.upper))
        split = self.splits.get(index)
        if split is None:
            return lower, upper
        return torch.where(split > 0, lower.clamp(min=0), lower), torch.where(split < 0, upper.clamp(max=0), upper)


def domain_bounds(bounds: B.Interval, split: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, *shape) pre-activation bounds of each domain: the root's, clipped at 0 by its splits."""
    lower, upper = bounds.lower, bounds.upper  # (1, *shape)
    return (
        torch.where(split > 0, lower.clamp(min=0), lower),
        torch.where(split < 0, upper.clamp(max=0), upper),
    )


def _split_relu_backward(op: o.Relu | o.LeakyRelu, index: int, rows, constant, bounds, context: SplitContext):  # type: ignore[no-untyped-def]
    """The ReLU rule for a batch of domains: each with its own split neurons, α and β. A
    LeakyReLU max(x, a x) is the same with a in place of 0: slope a where inactive (split
    z <= 0 included), the chord from (l, a l) to (u, u) above, a + (1 - a) α below."""
    domains = context.domains
    split = context.splits.get(index)
    if split is None:  # no neuron of this layer is unstable at the root: nothing to split
        split = torch.zeros_like(bounds[index].lower)
    a = op.slope if isinstance(op, o.LeakyRelu) else 0.0
    lower, upper = context.relu_bounds(index, bounds)
    active, inactive = lower >= 0, upper <= 0
    unstable = ~active & ~inactive
    width = torch.where(unstable, upper - lower, torch.ones_like(upper))
    chord = (upper - a * lower) / width
    up_slope = torch.where(active, 1.0, torch.where(unstable, chord, a))
    up_offset = torch.where(unstable, (a - chord) * lower, torch.zeros_like(upper))
    view = rows.view(domains, -1, *rows.shape[1:])  # (D, R, *shape)
    context.recorded[index] = view
    alpha = context.alphas.get(index)
    chosen = (upper > -lower).to(upper.dtype)[:, None] if alpha is None else alpha
    low_slope = torch.where(active[:, None], 1.0, torch.where(unstable[:, None], a + (1 - a) * chosen, a))
    positive, negative = view.clamp(min=0), view.clamp(max=0)
    constant = constant + (positive * up_offset[:, None]).flatten(2).sum(2).flatten()
    new = positive * up_slope[:, None] + negative * low_slope
    beta = context.betas.get(index)
    if beta is not None:  # + Σ β_i s_i z_i: zero on the domain, so the bound still holds there
        new = new + beta * split[:, None].to(new.dtype)
    return new.reshape(rows.shape[0], *rows.shape[1:]), constant


def _window_bounds(op: o.MaxPool, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(members (out, W) flat input indices, valid (out, W), lower, upper (B, out, W) with -inf at
    padding) from (B, *in_shape) bounds of the max-pool's input (B = 1 or the domains)."""
    lower, upper = lower.flatten(1), upper.flatten(1)
    windows = torch.as_tensor(op.windows, device=lower.device)
    valid = windows >= 0
    members = windows.clamp(min=0)
    low = torch.where(valid, lower[:, members], torch.full_like(lower[:, members], -torch.inf))
    up = torch.where(valid, upper[:, members], torch.full_like(upper[:, members], -torch.inf))
    return members, valid, low, up


def _top_two(live: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per window, the live member with the highest upper bound (j1) and the runner-up (j2):
    (j1, u1, l1, u2, l2), each (B, out); u2 = l2 = -inf where one member is live."""
    up = torch.where(live, up, torch.full_like(up, -torch.inf))
    low = torch.where(live, low, torch.full_like(up, -torch.inf))
    top = up.topk(2, dim=-1)
    j1, j2 = top.indices[..., 0], top.indices[..., 1]
    l1 = low.gather(-1, j1[..., None])[..., 0]
    l2 = low.gather(-1, j2[..., None])[..., 0]
    return j1, top.values[..., 0], l1, top.values[..., 1], l2


def _undecided(live: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """(B, out, W) bool: the members that may be the maximum of a window whose maximum is
    undecided (the runner-up's upper bound above the top member's lower bound)."""
    live = live.expand_as(up)
    _, _, l1, u2, _ = _top_two(live, low.expand_as(up), up)
    return live & (up > l1[..., None]) & (u2 > l1)[..., None]


def pool_start(op: o.MaxPool, bounds: B.Interval) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose relaxation is CROWN's own choice: (out, W) for the upper plane's slopes
    (sigmoid: the chord weights), and (out, W + 1) for the lower combination (softmax over the
    inputs and the window's largest lower bound: nearly all weight on i*)."""
    relaxation = B.relax_maxpool(op, bounds)
    members, valid, _, _ = _window_bounds(op, bounds.lower, bounds.upper)
    chord = relaxation.weights.clamp(1e-4, 1 - 1e-4)
    upper = torch.where(valid, torch.log(chord / (1 - chord)), torch.full_like(chord, -torch.inf))
    best = members == relaxation.argmax_lower[:, None]
    lower = torch.where(valid, torch.where(best, 10.0, 0.0), torch.full_like(upper, -torch.inf)).to(upper.dtype)
    lower = torch.cat([lower, torch.zeros_like(lower[:, :1])], dim=1)  # the floor's weight
    return upper, lower


def _pool_input_bounds(op: o.MaxPool, index: int, bounds, context: SplitContext) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """(B, *in_shape) bounds of a max-pool's input: per domain where the input is a ReLU's
    output (its bounds follow from the domain's pre-activation bounds, split or refined, and
    max(z, a z) is monotone, so it maps bounds to bounds), else the root's (B = 1)."""
    previous = o.input_of(context.ops, index) - 1 if context.ops else index - 1  # the op computing the input
    if previous >= 0 and isinstance(context.ops[previous], (o.Relu, o.LeakyRelu)):
        activation = context.ops[previous]
        a = activation.slope if isinstance(activation, o.LeakyRelu) else 0.0
        lower, upper = context.relu_bounds(previous, bounds)
        if a == 0:
            return lower.clamp(min=0), upper.clamp(min=0)
        return torch.maximum(lower, a * lower), torch.maximum(upper, a * upper)
    return bounds[index].lower, bounds[index].upper


def _split_maxpool_backward(op: o.MaxPool, index: int, rows, constant, bounds, context: SplitContext):  # type: ignore[no-untyped-def]
    """The max-pool rule with tuned relaxations and window splits. Above: any plane
    y <= Σ c_i x_i + d with every c_i in [0, 1] and d = max_j (u_j - c_j (u_j - l_j)) - Σ c_i l_i,
    the least valid constant (y - c·x is convex, so largest at a vertex; where x_j is the maximum
    its coefficient 1 - c_j >= 0 sends it to u_j and the others' -c_i <= 0 send them to l_i,
    which keeps j the maximum): the chord weights, and the constant y <= max u (c = 0), are two
    points of it. Below: any convex combination of the inputs and of the window's largest lower
    bound (each is below y). CROWN's own choices are one point of each family; the tuned ones
    reach toward (and, having every window's whole family, sometimes past) the LP relaxation of
    the exact encoding.

    A window split on member j (`SplitContext.splits`, (D, out, W)) has two halves. +1: x_j is
    the window's maximum, so y = x_j exactly, and x_j - x_i >= 0 for every other member still
    in the window enters the bound with a multiplier β >= 0 (as a ReLU split's constraint does).
    -1: x_j is not the maximum, so y is the maximum of the other members: the plane is taken
    over them alone (the lower combination may still use x_j: y >= x_j holds everywhere). A
    window left with one member is exact too. Each half's bound is that of the network whose
    pool is replaced by its piece, and the piece equals the pool on the half."""
    tuned = context.pools.get(index)
    split = context.splits.get(index)
    if tuned is None and (split is None or not bool((split != 0).any())):
        return B.BACKWARD_RULES[o.MaxPool](op, index, rows, constant, bounds, None)
    lower, upper = _pool_input_bounds(op, index, bounds, context)
    members, valid, low, up = _window_bounds(op, lower, upper)
    domains = context.domains
    view = rows.reshape(domains, -1, members.shape[0])  # (D, R, out)
    count = view.shape[1]
    context.recorded[index] = view
    context.windows[index] = (valid, low, up)
    if tuned is None:  # CROWN's own relaxation (the root's) for every domain and row
        start_up, start_low = pool_start(op, bounds[index])
        tuned = (start_up.to(rows.dtype).expand(domains, count, *start_up.shape),
                 start_low.to(rows.dtype).expand(domains, count, *start_low.shape))  # fmt: skip
    up_logits, low_logits = tuned
    if split is None:
        split = torch.zeros_like(low[:1])
    live = valid & (split >= 0)  # (D or 1, out, W): the members that may be the window's maximum
    chosen = split > 0
    exact = chosen | (live & (live.sum(dim=-1, keepdim=True) == 1))  # one member per exact window
    fixed = exact.any(dim=-1)  # (D or 1, out)
    low, up = low[:, None], up[:, None]  # (B, 1, out, W): the same for every row of a domain
    live4 = live[:, None]
    c = torch.where(live4, torch.sigmoid(up_logits), torch.zeros_like(up_logits))  # (D, R, out, W)
    weights = torch.softmax(low_logits, dim=-1)  # (D, R, out, W + 1)
    mu, floor_weight = weights[..., :-1], weights[..., -1]
    finite_low = torch.where(live4, low, torch.zeros_like(low))
    reach = torch.where(live4, up - c * (up - finite_low), torch.full_like(c, -torch.inf)).max(dim=-1).values
    offset = reach - (c * finite_low).sum(dim=-1)  # (D, R, out)
    floor = low.max(dim=-1).values  # (B, 1, out): the window's largest lower bound
    positive, negative = view.clamp(min=0), view.clamp(max=0)
    relaxed = positive * offset + negative * floor_weight * floor
    fixed4 = fixed[:, None]  # (D or 1, 1, out)
    constant = constant + torch.where(fixed4, torch.zeros_like(relaxed), relaxed).sum(dim=-1).flatten()
    spread = positive[..., None] * c + negative[..., None] * mu  # (D, R, out, W)
    spread = torch.where(fixed4[..., None], view[..., None] * exact[:, None].to(view.dtype), spread)
    beta = context.betas.get(index)
    if beta is not None:  # + Σ β_i (x_j - x_i): >= 0 on the half where x_j is the maximum
        holds = chosen.any(dim=-1, keepdim=True) & live & ~chosen
        beta = torch.where(holds[:, None], beta, torch.zeros_like(beta))
        spread = spread - beta + chosen[:, None].to(beta.dtype) * beta.sum(dim=-1, keepdim=True)
    inputs = rows.new_zeros((domains * count, int(np.prod(op.in_shape))))
    inputs.index_add_(1, members.flatten(), spread.reshape(domains * count, -1))
    return inputs.reshape(domains * count, *op.in_shape), constant


RULES: dict[type, B.BackwardRule] = {
    **B.BACKWARD_RULES,
    o.Relu: _split_relu_backward,
    o.LeakyRelu: _split_relu_backward,
    o.MaxPool: _split_maxpool_backward,
}


@dataclass
class Root:
    """What every domain of a query shares."""

    problem: Problem
    box: B.Interval
    bounds: list[B.Interval | None]  # the root's intermediate bounds (the input of each ReLU / max-pool)
    relus: list[int]  # op indices of the ReLUs and LeakyReLUs with unstable neurons
    unstable: dict[int, torch.Tensor]  # op index -> (*shape) bool: unstable at the root (a pool's: (out, W))
    rows: torch.Tensor  # (R, n) the property's rows
    offsets: torch.Tensor  # (R,)
    box32: B.Interval | None = None  # float32 copies, for the optimisation steps
    bounds32: list[B.Interval | None] = field(default_factory=list)
    objective: Objective | None = None  # set after the root bound
    warm: Params | None = None  # the root's tuned parameters (on the objective's rows)
    pools: list[int] = field(default_factory=list)  # op indices of the max-pools with an undecided window

    @property
    def splittable(self) -> list[int]:
        return sorted(self.relus + self.pools)


MAX_COMBINED = 64  # disjuncts bounded as one combined row each; beyond this, rows alone


@dataclass
class Objective:
    """What the domains below the root are bounded on.

    Only the live rows (those the root cannot keep below -margin) are bounded again, and each
    live disjunct S of two or more rows also gets a combined row Σ λ_r v_r with λ on the
    simplex, tuned like α and β: min over S of v_r <= Σ λ_r v_r, so its bound is also one of
    the disjunct's, and a tighter one than the smallest separate bound (the worst x for one row
    is seldom the worst for the other; the MILP's disjunct models couple rows the same way).
    A disjunct holds nowhere in a domain once the smaller of its two bounds is below -margin.
    """

    live: torch.Tensor  # (L,) row indices
    members: torch.Tensor  # (S, L) bool: the live disjuncts, over the live rows
    combined: bool  # whether each disjunct gets a combined row
    dead_bound: float  # the largest root bound of a dead row: bounds every disjunct that holds one

    @property
    def extra(self) -> int:
        return self.members.shape[0] if self.combined else 0

    def margins(self, values: torch.Tensor) -> torch.Tensor:
        """(D,) the margin's bound from (D, L + extra) bounds of the live and combined rows."""
        rows = values[:, : self.live.numel()]
        members = self.members.to(values.device)
        inf = torch.full_like(rows[:, None, :], torch.inf)
        smallest = torch.where(members[None], rows[:, None, :], inf).min(dim=2).values  # (D, S)
        if self.combined:
            smallest = torch.minimum(smallest, values[:, self.live.numel() :])
        worst = smallest.max(dim=1).values if smallest.shape[1] else torch.full_like(values[:, 0], -torch.inf)
        return torch.clamp(worst, min=self.dead_bound)

    def open_rows(self, values: torch.Tensor, margin: float) -> torch.Tensor:
        """(D, L + extra) weights: 1 on the rows whose bound keeps an open disjunct open."""
        count = self.live.numel()
        rows = values[:, :count]
        members = self.members.to(values.device)
        inf = torch.full_like(rows[:, None, :], torch.inf)
        smallest = torch.where(members[None], rows[:, None, :], inf).min(dim=2).values
        if self.combined:
            smallest = torch.minimum(smallest, values[:, count:])
        open_disjuncts = (smallest >= -margin).to(values.dtype)  # (D, S)
        weights = torch.zeros_like(values)
        if self.combined:
            weights[:, count:] = open_disjuncts
        else:
            weights[:, :count] = (open_disjuncts @ members.to(values.dtype)).clamp(max=1)
        return weights


@dataclass(order=True)
class Domain:
    priority: float  # -bound: the heap pops the hardest domain first
    serial: int
    splits: dict[int, torch.Tensor] = field(compare=False)  # op index -> (*shape) int8
    bound: float = field(compare=False, default=float("inf"))
    depth: int = field(compare=False, default=0)
    values: torch.Tensor | None = field(compare=False, default=None)  # its rows' bounds: its children's too


@dataclass
class Stats:
    domains_bounded: int = 0
    closed: int = 0
    leaves_by_lp: int = 0
    max_queue: int = 0
    max_depth: int = 0
    window_splits: int = 0  # splits on a max-pool window's maximum (the rest are on ReLUs)
    batches: int = 0
    bound_seconds: float = 0.0
    branch_seconds: float = 0.0
    attack_seconds: float = 0.0
    lp_seconds: float = 0.0
    warm_started: int = 0  # 1: the root started from a previous query's tuning (`WarmStart`)

    def as_dict(self) -> dict[str, float | int]:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in vars(self).items()}


def _single(interval: B.Interval | None) -> B.Interval | None:
    return None if interval is None else B.Interval(interval.lower.float(), interval.upper.float())


def prepare(problem: Problem, eps: np.ndarray, device: torch.device) -> Root:
    lower, upper = problem.box(eps)
    box = B.Interval(
        torch.as_tensor(lower, dtype=torch.float64, device=device)[None],
        torch.as_tensor(upper, dtype=torch.float64, device=device)[None],
    )
    ops = problem.network.ops
    with torch.no_grad():
        plain = B.ibp(ops, box)
        remembered = B.patch_answers(problem) if device.type == "cpu" else None
        bounds = B.crown_intermediate(ops, box, ibp_bounds=plain, remembered=remembered)
    unstable = {}
    for index, op in enumerate(ops):
        linear = isinstance(op, o.LeakyRelu) and op.slope >= 1  # max(x, x): nothing to split
        if isinstance(op, (o.Relu, o.LeakyRelu)) and not linear and bounds[index] is not None:
            found = (bounds[index].lower[0] < 0) & (bounds[index].upper[0] > 0)  # type: ignore[union-attr]
            if bool(found.any()):
                unstable[index] = found
    relus = sorted(unstable)
    pools = []
    for index, op in enumerate(ops):
        if SPLIT_WINDOWS and isinstance(op, o.MaxPool) and op.windows.shape[1] > 1 and bounds[index] is not None:
            interval = bounds[index]
            assert interval is not None
            _, valid, low, up = _window_bounds(op, interval.lower, interval.upper)
            candidates = _undecided(valid, low, up)[0]  # (out, W)
            if bool(candidates.any()):
                unstable[index] = candidates
                pools.append(index)
    output = problem.output
    return Root(
        problem,
        box,
        bounds,
        relus,
        unstable,
        torch.as_tensor(output.rows, dtype=torch.float64, device=device),
        torch.as_tensor(output.offsets, dtype=torch.float64, device=device),
        box32=_single(box),
        bounds32=[_single(b) for b in bounds],
        pools=pools,
    )


def make_objective(root: Root, values: torch.Tensor, margin: float) -> Objective:
    """From the root's bounds of every row: the live rows and disjuncts the domains are bounded on."""
    output = root.problem.output
    upper = values.detach()[0].cpu().numpy()
    live = [int(r) for r in np.flatnonzero(upper >= -margin)]
    position = {row: i for i, row in enumerate(live)}
    disjuncts = output.live_disjuncts(upper, -margin)
    members = torch.zeros((len(disjuncts), len(live)), dtype=torch.bool)
    for index, disjunct in enumerate(disjuncts):
        members[index, [position[r] for r in disjunct]] = True
    dead = [float(upper[r]) for r in range(len(upper)) if r not in position]
    combined = 0 < len(disjuncts) <= MAX_COMBINED and max((len(d) for d in disjuncts), default=0) > 1
    return Objective(torch.tensor(live, dtype=torch.long), members, combined, max(dead, default=-np.inf))


@dataclass
class Params:
    """Tuned relaxation parameters of a batch (float32): α per ReLU, (c, μ) logits per max-pool,
    λ logits of the combined rows."""

    alphas: dict[int, torch.Tensor]
    pools: dict[int, tuple[torch.Tensor, torch.Tensor]]
    logits: torch.Tensor | None


def _disjunct_keys(objective: Objective) -> list[tuple[int, ...]]:
    """Each combined row's member rows (property row indices): its name across queries."""
    live = objective.live.tolist()
    return [tuple(live[i] for i in torch.nonzero(row).flatten().tolist()) for row in objective.members]


@dataclass
class WarmStart:
    """The last tuned root of a problem, kept for its next query.

    The search asks many nearby boxes one after another (maximality's probes differ from ε* in
    one layer), and α, the max-pool planes and λ tuned on one box start the next one far closer
    to its optimum than CROWN's own relaxation (on the PGD model the root's 100-step tuning
    took most of a 2 s query). Any such parameters are sound on any box, so a stale start
    costs steps, never soundness.
    """

    device: str
    rows: Params  # (1, R, ...) per property row; logits None
    disjuncts: dict[tuple[int, ...], Params]  # per combined row, by its member rows: (1, 1, ...), logits (1, 1, |S|)


@dataclass
class WarmMemory:
    """A problem's last tuned root: one per problem, since the search asks its boxes one after
    another and the latest is the nearest to the next."""

    last: WarmStart | None = None

    def start_for(self, device: str) -> WarmStart | None:
        """The last tuning if it was made on `device` (tensors do not move between devices)."""
        return self.last if self.last is not None and self.last.device == device else None


def warm_memory(problem: Problem) -> WarmMemory:
    return problem.memo.slot("bab warm start", WarmMemory)


def seed_params(objective: Objective, params: Params, values: torch.Tensor, known: WarmStart | None = None) -> Params:
    """The short root pass's parameters (tuned on every row) carried to the objective's rows:
    a live row keeps its own; a combined row takes those a previous query tuned for the same
    disjunct, else those of its member with the largest bound (the row it must beat), with λ
    uniform. Any α in [0, 1] and any logits are sound, so this only changes where the long
    tuning starts."""
    live = objective.live.to(values.device)
    picks = live
    if objective.combined:
        members = objective.members.to(values.device)
        live_values = values[live]
        hardest = torch.where(members, live_values[None], torch.full_like(live_values[None], -torch.inf)).argmax(dim=1)
        picks = torch.cat([live, live[hardest]])

    def carried(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach()[:, picks.to(tensor.device)].clone()

    alphas = {index: carried(alpha) for index, alpha in params.alphas.items()}
    pools = {index: (carried(up), carried(down)) for index, (up, down) in params.pools.items()}
    logits = None
    if objective.combined and known is not None:
        count = objective.live.numel()
        logits = torch.zeros((1, *objective.members.shape), dtype=torch.float32, device=values.device)
        for slot, key in enumerate(_disjunct_keys(objective)):
            old = known.disjuncts.get(key)
            if old is None:
                continue
            for index, alpha in alphas.items():
                if index in old.alphas:
                    alpha[:, count + slot] = old.alphas[index][:, 0]
            for index, (up, down) in pools.items():
                if index in old.pools:
                    up[:, count + slot], down[:, count + slot] = old.pools[index][0][:, 0], old.pools[index][1][:, 0]
            if old.logits is not None:
                logits[0, slot, objective.members[slot].to(values.device)] = old.logits[0, 0]
    return Params(alphas, pools, logits)


def remember(objective: Objective, short: Params, tuned: Params, device: str) -> WarmStart:
    """The root's parameters for the next query: the long tuning's on the live rows and the
    combined ones, the short pass's on the rows it left out."""
    live = objective.live
    count = live.numel()

    def rows(full: torch.Tensor, better: torch.Tensor) -> torch.Tensor:
        merged = full.detach().clone()
        merged[:, live.to(full.device)] = better.detach()[:, :count]
        return merged

    alphas = {index: rows(alpha, tuned.alphas[index]) for index, alpha in short.alphas.items() if index in tuned.alphas}
    pools = {
        index: (rows(up, tuned.pools[index][0]), rows(down, tuned.pools[index][1]))
        for index, (up, down) in short.pools.items()
        if index in tuned.pools
    }
    disjuncts = {}
    if objective.combined:
        for slot, key in enumerate(_disjunct_keys(objective)):
            at = count + slot
            logits = None
            if tuned.logits is not None:
                own = objective.members[slot].to(tuned.logits.device)
                logits = tuned.logits.detach()[:, slot, own][:, None].clone()

            def column(tensor: torch.Tensor, at: int = at) -> torch.Tensor:
                return tensor.detach()[:, at : at + 1].clone()

            disjuncts[key] = Params(
                {index: column(alpha) for index, alpha in tuned.alphas.items()},
                {index: (column(up), column(down)) for index, (up, down) in tuned.pools.items()},
                logits,
            )
    return WarmStart(device, Params(alphas, pools, None), disjuncts)


@dataclass
class Bounded:
    """A batch of domains after bounding: per domain its rows' bounds, its margin bound, its
    branching choice (None: every unstable ReLU split, every window decided) and its candidate
    counterexample."""

    rows: torch.Tensor  # (D, R) upper bounds of the property's rows
    margins: torch.Tensor  # (D,)
    choices: list[tuple[int, int] | None]  # (ReLU op index, flat neuron) to split next
    corners: torch.Tensor  # (D, *input) the input corner that maximises the worst row's bound
    params: Params | None = None


def _full_splits(root: Root, domains: list[Domain]) -> dict[int, torch.Tensor]:
    """Each ReLU layer's and max-pool's splits of a batch, dense: (D, *shape) in {-1, 0, +1}."""
    device = root.box.lower.device
    dense = {}
    for index in root.splittable:
        shape = root.unstable[index].shape
        layer = torch.zeros((len(domains), *shape), dtype=torch.float64, device=device)
        flat = layer.view(len(domains), -1)
        for row, domain in enumerate(domains):
            split = domain.splits.get(index)
            if split is not None:
                flat[row] = split.to(device=device, dtype=torch.float64)
        dense[index] = layer
    return dense


def _pass(root: Root, spec, offsets, count, splits, alphas, betas, pools, refined, single: bool):  # type: ignore[no-untyped-def]
    """One back-substitution of the batch: (bounds (D, rows), rows at the input, context).
    `spec` (D, rows, n) and `offsets` (D, rows) may differ per domain (the combined rows)."""
    ops = root.problem.network.ops
    context = SplitContext(count, splits, ops, alphas, betas, pools=pools, refined=refined)
    bounds, box = (root.bounds32, root.box32) if single else (root.bounds, root.box)
    assert box is not None
    inputs, constant = B.backward(ops, len(ops), spec.reshape(-1, spec.shape[-1]), bounds, context, RULES)
    values = B.concretize(inputs, constant, box).view(count, -1) + offsets
    return values, inputs, context


def _rows(root: Root, count: int, mix: torch.Tensor | None, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, rows, n) and (D, rows): every domain's rows, the property's own live rows, or (at
    the root) all of them, then one combined row per live disjunct (weights `mix`, (D, S, L))."""
    objective = root.objective
    if objective is None:
        spec, offsets = root.rows, root.offsets
    else:
        spec, offsets = root.rows[objective.live], root.offsets[objective.live]
    spec, offsets = spec.to(dtype), offsets.to(dtype)
    rows = spec.expand(count, *spec.shape)
    shifts = offsets.expand(count, *offsets.shape)
    if mix is not None:
        rows = torch.cat([rows, mix.to(dtype) @ spec], dim=1)
        shifts = torch.cat([shifts, mix.to(dtype) @ offsets], dim=1)
    return rows, shifts


def _mix(objective: Objective | None, logits: torch.Tensor | None) -> torch.Tensor | None:
    """λ on the simplex of each disjunct's rows, from free parameters (softmax over members)."""
    if objective is None or not objective.combined or logits is None:
        return None
    members = objective.members.to(logits.device)
    return torch.softmax(torch.where(members[None], logits, torch.full_like(logits, -torch.inf)), dim=2)


def _margins(root: Root, values: torch.Tensor) -> torch.Tensor:
    if root.objective is None:
        return root.problem.output.margin_tensor(values)
    return root.objective.margins(values)


def bound_domains(
    root: Root,
    domains: list[Domain],
    steps: int,
    margin: float,
    deadline: float,
    schedule: tuple[float, float] = (0.1, 1.0),
    start: Params | None = None,
) -> Bounded:
    """Bounds of a batch of domains. α, β (and the combined rows' λ) are tuned by `steps` of
    projected Adam in float32 (fast, and every α in [0, 1], β >= 0, λ on the simplex is sound),
    then the bound is computed in float64 with the best ones found: only that pass counts, as
    every bound of the engine."""
    count = len(domains)
    objective = root.objective
    splits64 = _full_splits(root, domains)
    splits32 = {i: s.float() for i, s in splits64.items()}
    refined64, infeasible = refine_domains(root, splits64, count, deadline)
    refined32 = {i: (low.float(), up.float()) for i, (low, up) in refined64.items()}
    bounds_of = SplitContext(count, splits64, root.problem.network.ops, refined=refined64)
    rows_per = root.offsets.numel() if objective is None else objective.live.numel() + objective.extra
    alphas: dict[int, torch.Tensor] = {}
    betas: dict[int, torch.Tensor] = {}
    # where the tuning starts: given parameters, else the root's tuned ones (every domain below
    # the root), else CROWN's own relaxation; a layer the start lacks starts at CROWN's
    warm = start if start is not None else root.warm if objective is not None else None

    def start_from(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.float().expand(count, *tensor.shape[1:]).clone().requires_grad_(True)

    for index in root.relus:
        lower, upper = bounds_of.relu_bounds(index, root.bounds)
        lower, upper = lower.expand(count, *lower.shape[1:]), upper.expand(count, *upper.shape[1:])
        initial = (upper > -lower).float()[:, None].expand(count, rows_per, *lower.shape[1:])
        if warm is not None and index in warm.alphas:
            # the root's slopes, except where a split fixed the neuron (its slope no longer matters)
            initial = warm.alphas[index].float().expand(count, *warm.alphas[index].shape[1:])
        alphas[index] = initial.clone().requires_grad_(True)
        if bool((splits64[index] != 0).any()):
            betas[index] = torch.zeros_like(alphas[index]).requires_grad_(True)
    for index in root.pools:  # the multipliers of "x_j is the window's maximum"
        if bool((splits64[index] > 0).any()):
            shape = (count, rows_per, *root.unstable[index].shape)
            betas[index] = torch.zeros(shape, device=root.rows.device, requires_grad=True)
    pools: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for index, op in enumerate(root.problem.network.ops):
        if isinstance(op, o.MaxPool) and root.bounds[index] is not None:
            if warm is not None and index in warm.pools:
                pools[index] = (start_from(warm.pools[index][0]), start_from(warm.pools[index][1]))
                continue
            upper, lower = pool_start(op, root.bounds[index])  # type: ignore[arg-type]
            pools[index] = (
                upper.float().expand(count, rows_per, *upper.shape).clone().requires_grad_(True),
                lower.float().expand(count, rows_per, *lower.shape).clone().requires_grad_(True),
            )
    logits = None
    if objective is not None and objective.combined:
        if warm is not None and warm.logits is not None:
            logits = start_from(warm.logits)
        else:
            logits = torch.zeros((count, *objective.members.shape), device=root.rows.device, requires_grad=True)
    parameters = [*alphas.values(), *betas.values(), *([logits] if logits is not None else [])]
    parameters += [tensor for pair in pools.values() for tensor in pair]
    best_pools = {i: (u.detach().clone(), v.detach().clone()) for i, (u, v) in pools.items()}
    best_alphas = {i: a.detach().clone() for i, a in alphas.items()}
    best_betas = {i: b.detach().clone() for i, b in betas.items()}
    best_logits = logits.detach().clone() if logits is not None else None

    def keep(mask: torch.Tensor, current: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *([1] * (current.dim() - 1))), current.detach(), kept)

    if steps > 0 and parameters:
        rate, decay = schedule  # Adam's step size and its decay per step
        optimiser = Adam(parameters, lr=rate)
        best = torch.full((count,), torch.inf, device=root.rows.device)
        checkpoint = best
        for step in range(steps):
            if time.perf_counter() >= deadline:
                break
            if steps > PLATEAU_STEPS and step % PLATEAU_STEPS == 0 and step > 0:
                if not bool((checkpoint - best > PLATEAU_GAIN).any()):  # a plateau: more steps buy nothing
                    break
                checkpoint = best
            spec, shifts = _rows(root, count, _mix(objective, logits), torch.float32)
            values, _, _ = _pass(root, spec, shifts, count, splits32, alphas, betas, pools, refined32, single=True)
            margins = _margins(root, values)
            with torch.no_grad():
                improved = margins.detach() < best
                best = torch.where(improved, margins.detach(), best)
                best_alphas = {key: keep(improved, alphas[key], kept) for key, kept in best_alphas.items()}
                best_betas = {key: keep(improved, betas[key], kept) for key, kept in best_betas.items()}
                best_pools = {
                    key: (keep(improved, pools[key][0], up), keep(improved, pools[key][1], down))
                    for key, (up, down) in best_pools.items()
                }
                if logits is not None and best_logits is not None:
                    best_logits = keep(improved, logits, best_logits)
            if bool((best < -2 * margin - 1e-3).all()):  # closed with room for float32's error: stop tuning
                break
            optimiser.zero_grad()
            (margins.sum() + 0.1 * values.mean()).backward()
            optimiser.step()
            optimiser.lr *= decay
            with torch.no_grad():
                for alpha in alphas.values():
                    alpha.clamp_(0, 1)
                for beta in betas.values():
                    beta.clamp_(min=0)
    with torch.no_grad():
        spec, shifts = _rows(root, count, _mix(objective, best_logits), torch.float64)
        alphas64 = {i: a.double() for i, a in best_alphas.items()}
        betas64 = {i: b.double() for i, b in best_betas.items()}
        pools64 = {i: (u.double(), v.double()) for i, (u, v) in best_pools.items()}
        values, inputs, context = _pass(
            root, spec, shifts, count, splits64, alphas64, betas64, pools64, refined64, single=False
        )
        values = torch.where(infeasible[:, None], torch.full_like(values, -torch.inf), values)
        margins = _margins(root, values)
        weights = objective.open_rows(values, margin) if objective is not None else (values >= -margin).double()
        choices = _choose(root, context, weights)
        corners = _corners(root, inputs.view(count, values.shape[1], *inputs.shape[1:]), values, weights)
    return Bounded(values, margins, choices, corners, Params(best_alphas, best_pools, best_logits))


def _choose(root: Root, context: SplitContext, weights: torch.Tensor) -> list[tuple[int, int] | None]:
    """BaBSR's intercept score per domain: for each free unstable neuron, how much its upper
    relaxation's offset -l u / (u - l) (a LeakyReLU's: (1 - a) times that) adds to the
    bounds of the rows that keep the domain open (`weights`, through their positive
    coefficients at the ReLU's output); the best neuron, or None when every unstable neuron
    is split (or made stable by refined bounds)."""
    count = weights.shape[0]
    best_score = torch.full((count,), -1.0, dtype=torch.float64)
    best_choice: list[tuple[int, int] | None] = [None] * count
    for index in root.relus:
        lower, upper = context.relu_bounds(index, root.bounds)
        free = (lower < 0) & (upper > 0) & (context.splits[index] == 0)
        if not bool(free.any()):
            continue
        # a LeakyReLU's chord offset is (1 - a) times a ReLU's
        op = root.problem.network.ops[index]
        leak = 1.0 - op.slope if isinstance(op, o.LeakyRelu) else 1.0
        intercept = torch.where(free, -leak * lower * upper / (upper - lower).clamp(min=1e-12), torch.zeros_like(upper))
        coefficients = context.recorded[index].clamp(min=0)  # (D, rows, *shape)
        weight = weights.view(count, -1, *([1] * (coefficients.dim() - 2)))
        score = (coefficients * weight).sum(1) * intercept
        # a tiny backup (the neuron's width) breaks ties where every live coefficient is zero
        score = score + 1e-9 * torch.where(free, upper - lower, torch.zeros_like(upper))
        score = torch.where(free, score, torch.full_like(score, -1.0)).flatten(1).cpu()
        value, neuron = score.max(dim=1)
        for d in range(count):
            if value[d] > best_score[d]:
                best_score[d] = value[d]
                best_choice[d] = (index, int(neuron[d]))
    for index in root.pools:
        # the window's maximum as max(x_j1, x_j2) = x_j1 + relu(x_j2 - x_j1) of its top two
        # members: the ReLU intercept of x_j2 - x_j1 in [l2 - u1, u2 - l1]; the split is on
        # j1 (its halves: x_j1 is the maximum, or it is not)
        valid, low, up = context.windows[index]
        split = context.splits[index]  # (D, out, W)
        live = (valid & (split >= 0)).expand(count, *valid.shape)
        low, up = low.expand_as(live), up.expand_as(live)
        j1, u1, l1, u2, l2 = _top_two(live, low, up)
        free = ~(split > 0).any(dim=-1) & (u2 > l1)  # (D, out)
        below, above = torch.where(free, l2 - u1, -1.0), torch.where(free, u2 - l1, 1.0)
        intercept = torch.where(free, -below * above / (above - below).clamp(min=1e-12), 0.0)
        coefficients = context.recorded[index].clamp(min=0)  # (D, rows, out)
        score = (coefficients * weights[:, :, None]).sum(1) * intercept
        score = score + 1e-9 * torch.where(free, u1 - l1, 0.0)
        score = torch.where(free, score, -1.0).cpu()
        value, window = score.max(dim=1)
        member = j1.cpu()
        for d in range(count):
            if value[d] > best_score[d]:
                best_score[d] = value[d]
                best_choice[d] = (index, int(window[d]) * valid.shape[1] + int(member[d, window[d]]))
    return best_choice


REFINE_LIMIT = 30_000_000  # elements of one refinement pass (domains × rows × the widest layer); beyond: skipped


def _reach_affine(op: o.AffineOp, marks: torch.Tensor) -> torch.Tensor:
    return op.abs_linear(marks)  # an output reads the inputs its nonzero weights reach


def _reach_elementwise(op: o.Relu | o.LeakyRelu, marks: torch.Tensor) -> torch.Tensor:
    return marks


def _reach_maxpool(op: o.MaxPool, marks: torch.Tensor) -> torch.Tensor:
    return op.forward(marks)  # a window's output reads every member


def _reach_add(op: o.Add, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return first + second  # marks are >= 0: a subtraction's term reaches as much as an addition's


def _reach_concat(op: o.Concat, *marks: torch.Tensor) -> torch.Tensor:
    return op.forward(*marks)


# One step of `_touched` per op type: (D, *out) > 0 where an output reads a marked input
# through a nonzero weight (marks are non-negative, so they only grow, never cancel).
REACH_RULES: dict[type, Callable[..., torch.Tensor]] = {
    o.Conv: _reach_affine,
    o.Linear: _reach_affine,
    o.Affine: _reach_affine,
    o.Reshape: _reach_affine,
    o.Add: _reach_add,
    o.Concat: _reach_concat,
    o.Relu: _reach_elementwise,
    o.LeakyRelu: _reach_elementwise,
    o.MaxPool: _reach_maxpool,
}


def _touched(ops: tuple[o.Op, ...], end: int, marks: dict[int, torch.Tensor], count: int, device) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """(D, *shape of value `end`) bool: per domain, the neurons of that value whose linear bound
    can differ from the root's, because a nonlinear op whose relaxation differs in the domain
    (`marks`: op index -> (D, *out) bool, a split neuron or window, or refined bounds) lies in
    their back-substitution's reach. Every other neuron's CROWN bound in the domain is the
    root's own, so recomputing it buys nothing (keeping the root's is sound either way)."""
    values = [torch.zeros((count, *ops[0].in_shape), dtype=torch.float32, device=device)]
    for index, op in enumerate(ops[:end]):
        value = o.rule(REACH_RULES, op, "reach table")(op, *[values[v] for v in o.inputs_of(ops, index)])
        if index in marks:
            value = value + marks[index].view(count, *op.out_shape).to(value.dtype)
        values.append(value.clamp(max=1.0))
    return values[end] > 0


def refine_domains(
    root: Root, splits: dict[int, torch.Tensor], count: int, deadline: float
) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each domain's pre-activation bounds of the unstable neurons of every ReLU layer after its
    first split, by CROWN with the domain's split neurons relaxed exactly (valid on the domain:
    its points satisfy its splits), intersected with the root's. Also (D,) bool: domains whose
    bounds cross (lower > upper): their split constraints hold nowhere, so they are closed.

    Only the neurons a split (or an earlier refined bound) can reach are bounded again, each
    domain its own (`_touched`; rows padded to the batch's largest count): on the PGD model a
    first-layer split reaches 4 of the second layer's 64 positions."""
    ops = root.problem.network.ops
    device = root.rows.device
    refined: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    infeasible = torch.zeros(count, dtype=torch.bool, device=device)
    split_layers = [i for i in root.splittable if bool((splits[i] != 0).any())]
    if not split_layers:
        return refined, infeasible
    marks = {i: (splits[i] != 0) if i in root.relus else (splits[i] != 0).any(dim=-1) for i in split_layers}
    context = SplitContext(count, splits, ops, refined=refined)
    for index in root.relus:
        if index <= split_layers[0]:
            continue
        interval = root.bounds[index]
        assert interval is not None
        shape = interval.lower.shape[1:]
        end = o.input_of(ops, index)
        candidates = _touched(ops, end, marks, count, device).flatten(1) & root.unstable[index].flatten().to(device)
        per_domain = candidates.sum(dim=1)
        n = int(per_domain.max())
        widest = max(int(np.prod(op.in_shape)) for op in ops[:index])
        if n == 0 or 2 * n * widest * count > REFINE_LIMIT or time.perf_counter() >= deadline:
            # nothing reached, too costly for this batch (thousands of unstable neurons over a
            # large input) or no time left: the root's bounds stay, which hold in every domain
            continue
        # per domain its own neurons first (stable sort), padded with others the rows ignore
        chosen = torch.argsort((~candidates).to(torch.int8), dim=1, stable=True)[:, :n]
        valid = torch.arange(n, device=device)[None] < per_domain[:, None]  # (D, n)
        rows = torch.zeros((count, 2 * n, candidates.shape[1]), dtype=torch.float64, device=device)
        rows[:, :n].scatter_(2, chosen[:, :, None], valid[:, :, None].double())
        rows[:, n:].scatter_(2, chosen[:, :, None], -valid[:, :, None].double())
        inputs, constant = B.backward(ops, end, rows.view(count * 2 * n, *shape), root.bounds, context, RULES)
        values = B.concretize(inputs, constant, root.box).view(count, 2 * n)
        lower = interval.lower.expand(count, *shape).flatten(1).clone()
        upper = interval.upper.expand(count, *shape).flatten(1).clone()
        inf = torch.full_like(values[:, :n], torch.inf)
        upper.scatter_reduce_(1, chosen, torch.where(valid, values[:, :n], inf), "amin")
        lower.scatter_reduce_(1, chosen, torch.where(valid, -values[:, n:], -inf), "amax")
        crossed = (lower > upper + 1e-9 * (1 + lower.abs())).any(dim=1)
        infeasible |= crossed
        # keep lower <= upper where they cross (those domains are closed anyway)
        lower = torch.minimum(lower, upper)
        changed = (lower != interval.lower.flatten(1)) | (upper != interval.upper.flatten(1))
        marks[index] = changed | (splits[index] != 0).flatten(1)
        refined[index] = (lower.view(count, *shape), upper.view(count, *shape))
        context.refined = refined
    return refined, infeasible


def _corners(root: Root, inputs: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per domain, the box corner that maximises the linear bound of its worst open row (D, *input)."""
    worst = torch.where(weights > 0, values, torch.full_like(values, -torch.inf)).argmax(dim=1)
    chosen = inputs[torch.arange(inputs.shape[0], device=inputs.device), worst]
    return torch.where(chosen > 0, root.box.upper, root.box.lower)


def _counterexample(problem: Problem, eps: np.ndarray, points: torch.Tensor) -> tuple[np.ndarray, float] | None:
    """The first of `points` that onnxruntime confirms (after snapping into the box), if any."""
    with torch.no_grad():
        margins = problem.margin_tensor(problem.network.forward(points.to(torch.float64))).cpu().numpy()
    for index in np.argsort(-margins):
        if margins[index] < 0:
            break
        candidate = snap_into_box(problem, eps, points[index].cpu().numpy())
        checked = recheck(problem, eps, candidate)
        if checked.confirmed:
            assert checked.margin is not None
            return candidate, checked.margin
    return None


def _pgd_from(problem: Problem, root: Root, starts: torch.Tensor, steps: int) -> torch.Tensor:
    """A few signed-gradient steps on the property's attack objective (the margin, or its smooth
    maximum over rows) from each start, inside the box (float32)."""
    lower, upper = root.box.lower.float(), root.box.upper.float()
    x = starts.float().clone()
    step = 0.1 * (upper - lower)
    for _ in range(steps):
        x.requires_grad_(True)
        objective = problem.attack_objective_tensor(problem.network.forward(x))
        (gradient,) = torch.autograd.grad(objective.sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * gradient.sign(), lower), upper)
    return x.detach()


def _children(root: Root, domain: Domain, choice: tuple[int, int], serial: int) -> list[Domain]:
    """The two halves of a domain: the chosen neuron active and inactive (a window: the chosen
    member its maximum, and not)."""
    index, neuron = choice
    children: list[Domain] = []
    for sign in (1, -1):
        splits = dict(domain.splits)
        layer = splits.get(index)
        layer = torch.zeros(root.unstable[index].numel(), dtype=torch.int8) if layer is None else layer.clone()
        layer[neuron] = sign
        splits[index] = layer
        children.append(
            Domain(domain.priority, serial + len(children), splits, domain.bound, domain.depth + 1, domain.values)
        )
    return children


@dataclass
class LeafSolver:
    """The exact problem of a domain whose every unstable ReLU is split and every window decided:
    the MILP encoding of the box with those ReLUs' gates fixed (max-pools keep their binaries,
    so it is exact on a superset of the domain: its "closed" is sound, its point is re-checked)."""

    problem: Problem
    eps: np.ndarray
    part: object = None  # the encoding's network part, built on first use

    def solve(self, domain: Domain, seconds: float) -> tuple[str, np.ndarray | None, float | None]:
        """("closed" | "counterexample" | "open", the point, its margin)."""
        from mlrobust.verify import milp
        from mlrobust.verify.milp_encoding import encode_network, start_values, with_objective

        if self.part is None:
            self.part = encode_network(self.problem, self.eps)
        part = self.part
        deadline = time.perf_counter() + seconds
        worst = -np.inf
        for subset in self.problem.output.live_disjuncts(part.upper_d, -B.SAFETY_MARGIN):  # type: ignore[attr-defined]
            encoding = with_objective(self.problem, part, subset)  # type: ignore[arg-type]
            builder = encoding.builder
            for block in builder.tags:
                split = domain.splits.get(block.op_index)
                if block.kind != "gate" or split is None:
                    continue
                signs = split.numpy()[np.asarray(block.neurons)]
                for column, sign in zip(block.columns, signs, strict=True):
                    if sign:
                        builder.lower[column] = builder.upper[column] = 1.0 if sign > 0 else 0.0
            start = start_values(self.problem, encoding, self.problem.image)
            left = deadline - time.perf_counter()
            if left <= 0:
                return "open", None, None
            solution = milp.solve_highs(encoding, left, start=start, stop_below=-milp.MILP_MARGIN, stop_at=0.0)
            point, checked = milp._incumbent_point(self.problem, self.eps, encoding, solution)
            if checked is not None and checked.confirmed:
                return "counterexample", point, checked.margin
            worst = max(worst, solution.dual_bound)
            if solution.dual_bound >= -milp.MILP_MARGIN:
                return "open", None, None
        return ("closed" if worst < -milp.MILP_MARGIN else "open"), None, None


def inherit(root: Root, bounded: Bounded, children: list[Domain]) -> Bounded:
    """A parent's row bounds hold on its children (subsets of its domain): a child keeps the
    smaller of its own and its parent's, so a split never loosens a bound (a tighter interval
    can flip a heuristic slope choice elsewhere, and tuning is not exact)."""
    inherited = [child.values for child in children]
    if all(values is not None for values in inherited):
        bounded.rows = torch.minimum(bounded.rows, torch.stack(inherited))  # type: ignore[arg-type]
        bounded.margins = _margins(root, bounded.rows)
    return bounded


def milp_margin() -> float:
    from mlrobust.verify.milp import MILP_MARGIN

    return MILP_MARGIN


def check(
    problem: Problem,
    eps: np.ndarray,
    budget: QueryBudget,
    *,
    time_limit: float,
    batch: int,
    steps: int,
    device: str,
) -> Verdict:
    """ROBUST when every domain is closed; NOT_ROBUST with a counterexample onnxruntime
    confirms; UNKNOWN when the time limit (or the queue's size) ends the search first, with
    the largest bound of the open domains as the margin bound (a sound one)."""
    started = time.perf_counter()
    limit = time_limit if budget.seconds is None else min(time_limit, budget.seconds)
    deadline = started + limit
    where = torch.device(device)
    stats = Stats()
    margin = B.SAFETY_MARGIN

    def verdict(status: Status, bound: float | None, point: np.ndarray | None = None, found: float | None = None):  # type: ignore[no-untyped-def]
        weakest = (point,) if point is not None else ()
        info = {**stats.as_dict(), "device": device, "batch": batch, "steps": steps, "safety_margin": margin}
        if status is Status.ROBUST:
            info["proof"] = f"bab closed {stats.closed + stats.leaves_by_lp} domain(s)"
        elapsed = time.perf_counter() - started
        return Verdict(status, "bab", bound, found, point, weakest, elapsed, info, tallies=stats.as_dict())

    clock = time.perf_counter()
    root = prepare(problem, eps, where)
    memory = warm_memory(problem)
    known = memory.start_for(device)
    stats.warm_started = int(known is not None)
    first = bound_domains(root, [Domain(0.0, 0, {})], steps, margin, deadline, start=known.rows if known else None)
    stats.bound_seconds += time.perf_counter() - clock
    stats.domains_bounded += 1
    root_bound = float(first.margins[0])
    if root_bound < -margin:
        stats.closed += 1
        return verdict(Status.ROBUST, root_bound)
    clock = time.perf_counter()
    found = _counterexample(problem, eps, first.corners)
    if found is None:  # a short PGD from the bound's corner before the long root tuning
        found = _counterexample(problem, eps, _pgd_from(problem, root, first.corners, 10))
    stats.attack_seconds += time.perf_counter() - clock
    if found is not None:
        return verdict(Status.NOT_ROBUST, None, *found)
    # the root again, on the live rows and disjuncts only, tuned long: every domain starts there
    clock = time.perf_counter()
    root.objective = make_objective(root, first.rows, margin)
    short = first.params
    if short is not None:  # from the short pass's parameters, not from CROWN's again
        root.warm = seed_params(root.objective, short, first.rows[0], known)
    first = bound_domains(root, [Domain(0.0, 0, {})], ROOT_STEPS, margin, deadline, ROOT_SCHEDULE)
    stats.bound_seconds += time.perf_counter() - clock
    stats.domains_bounded += 1
    root.warm = first.params
    if short is not None and first.params is not None:
        memory.last = remember(root.objective, short, first.params, device)
    root_bound = min(root_bound, float(first.margins[0]))
    if root_bound < -margin:
        stats.closed += 1
        return verdict(Status.ROBUST, root_bound)
    if first.choices[0] is None:  # nothing unstable, and not proved: the LP decides
        outcome, point, value = LeafSolver(problem, eps).solve(Domain(0.0, 0, {}), deadline - time.perf_counter())
        if outcome == "counterexample":
            return verdict(Status.NOT_ROBUST, None, point, value)
        return verdict(Status.ROBUST if outcome == "closed" else Status.UNKNOWN, root_bound)
    queue: list[tuple[Domain, tuple[int, int]]] = []
    serial = 1
    start = Domain(-root_bound, 0, {}, root_bound, 0, first.rows[0])
    heapq.heappush(queue, (start, first.choices[0]))  # type: ignore[misc]
    leaves = LeafSolver(problem, eps)
    open_leaves: list[float] = []
    proved = -np.inf  # the largest bound of a closed domain: the proof's margin once every domain is closed
    pace = 0.0  # seconds per domain of the last batch
    while queue:
        if time.perf_counter() >= deadline:
            return verdict(Status.UNKNOWN, max([-queue[0][0].priority, *open_leaves]))
        if len(queue) > MAX_DOMAINS:
            stats.max_queue = max(stats.max_queue, len(queue))
            return verdict(Status.UNKNOWN, max([-queue[0][0].priority, *open_leaves]))
        clock = time.perf_counter()
        # as many parents as fit the time left at the last batch's pace (never fewer than one)
        fits = int((deadline - time.perf_counter()) / max(pace, 1e-6) / 2)
        parents = [heapq.heappop(queue) for _ in range(max(1, min(batch // 2, len(queue), fits)))]
        children: list[Domain] = []
        for domain, split_on in parents:
            children.extend(_children(root, domain, split_on, serial))
            serial += 2
            stats.window_splits += int(split_on[0] in root.pools)
        stats.branch_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        bounded = inherit(root, bound_domains(root, children, steps, margin, deadline), children)
        pace = (time.perf_counter() - clock) / len(children)
        stats.bound_seconds += time.perf_counter() - clock
        stats.batches += 1
        stats.domains_bounded += len(children)
        clock = time.perf_counter()
        open_children = [i for i in range(len(children)) if float(bounded.margins[i]) >= -margin]
        stats.closed += len(children) - len(open_children)
        proved = max([proved, *(float(bounded.margins[i]) for i in set(range(len(children))) - set(open_children))])
        if open_children:
            starts = bounded.corners[open_children]
            found = _counterexample(problem, eps, starts)
            if found is None and stats.batches % 4 == 1:
                found = _counterexample(problem, eps, _pgd_from(problem, root, starts, 10))
            if found is not None:
                stats.attack_seconds += time.perf_counter() - clock
                return verdict(Status.NOT_ROBUST, None, *found)
        stats.attack_seconds += time.perf_counter() - clock
        for i in open_children:
            child, choice = children[i], bounded.choices[i]
            child.bound = float(bounded.margins[i])
            child.priority = -child.bound
            child.values = bounded.rows[i]
            stats.max_depth = max(stats.max_depth, child.depth)
            if choice is None:  # every unstable ReLU split, every window decided: the leaf MILP
                clock = time.perf_counter()
                outcome, point, value = leaves.solve(child, max(deadline - time.perf_counter(), 0.0))
                stats.lp_seconds += time.perf_counter() - clock
                if outcome == "counterexample":
                    return verdict(Status.NOT_ROBUST, None, point, value)
                if outcome == "closed":
                    stats.leaves_by_lp += 1
                    proved = max(proved, -milp_margin())
                else:
                    open_leaves.append(child.bound)
                continue
            heapq.heappush(queue, (child, choice))  # type: ignore[misc]
        stats.max_queue = max(stats.max_queue, len(queue))
    if open_leaves:
        return verdict(Status.UNKNOWN, max(open_leaves))
    return verdict(Status.ROBUST, proved)
