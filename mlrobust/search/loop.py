"""The oracle-guided loop: expand along the best size-per-margin direction, CEGIS on failure.

The search steers by a *guide*: the bound of the chain's own `bounds` step (CROWN unless the
spec says otherwise), read through the oracle (`Oracle.guide`: counted, capped by the time
budget). "CROWN" below is that guide. It decides nothing: every box the search keeps is asked
through the verifier chain.

1. Start: uniform bisection (every layer the same ε) with the oracle.
2. Expand: from a robust ε (half the uniform optimum at first), with CROWN's gradient
   g = ∂bound/∂ε, take the direction Δ_d ∝ w_d / (g_d + γ) (size gained per unit of margin),
   go as far along it as CROWN still proves (a line search on the bound, started where the
   bound's tangent reaches the margin), and ask the chain. ROBUST: accept and repeat.
   Otherwise CEGIS: cut toward the robust ε with the cutting weights (at most MAX_CUTS
   times). When a step gains less than δ, a boundary walk slides along CROWN's edge toward
   larger w·ε. Stop when that gains less than δ too, on the query or time budget, or on Ctrl-C.
   The expansion is local, so it runs from several starts: half the uniform optimum, half the
   corner (the heaviest layer alone, as far as CROWN proves), half the box along ε ∝ w at
   CROWN's edge, and any box given from elsewhere (`--start-from`: a previous run's ε*) that
   the chain proves. Keep the largest of the starts and their expansions; each one's size
   goes into the result. A proposal the chain already left unproved ends an expansion (it
   would only come back from the cache).
3. Maximality: grow the layers the bound barely feels together, then each layer alone as far
   as CROWN proves (confirmed by the chain); then probe every layer with weight > 0 one δ
   beyond, all in one batch with the fast chain (the chain without its complete verifiers).
   A layer's first probe is one δ beyond where its gallop stopped, which lies inside
   ε* + δ e_d. ROBUST: take it and probe again (at ε + δ e_d); NOT_ROBUST: proved maximal (the
   counterexample is one step out); UNKNOWN: in the first pass the full chain grows all such
   layers together (one proof along w_d², galloped then bisected); then it gallops each alone
   (most valuable first; step ×2 after ROBUST, ÷2 after a failure, settled by a failure at
   exactly δ), until the full chain has left COMPLETE_PROBE_PATIENCE probes UNKNOWN without
   settling one (counted across passes); a layer still UNKNOWN is not expandable by this
   chain. A pass that grew a layer with the complete verifiers makes the box larger, so
   another pass follows (at most MAX_ROUNDS): it probes every layer one δ out again and
   gallops alone the open ones.
4. Every query checks the query budget first: a batch is cut to fit, and what it leaves
   unasked is no answer (its layer is not checked, and says so).

The caller then re-proves ε* with the strongest verifier of the chain (`certify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mlrobust.plan import Plan
from mlrobust.search.cutting import cut
from mlrobust.search.oracle import NOT_ASKED, Oracle, OutOfTime, box_key
from mlrobust.verify.bounds import SAFETY_MARGIN
from mlrobust.verify.verdict import Status

# after this many probes that the full chain (its complete verifiers: the MILP, bab) leaves
# UNKNOWN (their time limit) without settling one between them, the other layers are probed
# with the fast chain only: on big boxes the MILP rarely finishes, and each try costs its
# whole time limit (on the bundled PGD model, 3 tries cost 6 of 19 s per canvas and none of
# them ever answered); see `Patience`
COMPLETE_PROBE_PATIENCE = 2
GROWN_TOGETHER = (
    "grown together with the other open layers by the whole chain, to their joint edge; "
    "not probed one δ out alone from there"
)
JOINT_FAILURES = 3  # failed full-chain probes that end the layers' joint gallop (each costs a whole time limit)
MAX_CUTS = 3  # CEGIS cuts per failed step before giving up on that direction (near-1 weights cut slowly)
LINE_SEARCH_STEPS = 8  # the line search's smallest first step: 2^-8 of the ray's length
LINE_SEARCH_PRECISION = 6  # the line search stops when its bracket is 2^-6 of the bracket's far end
JOINT_ROOM = 8  # maximality grows together the layers with room for this many δ steps (by the tangent)
MAX_ROUNDS = 4  # maximality passes at most (another runs while the complete verifiers grow a layer)
MAX_EDGE_STEPS = 16  # CROWN calls per edge search, at most
WALK_STEPS = 40  # CROWN evaluations (with gradient) per boundary walk
WALK_PATIENCE = 10  # stop a walk after this many iterations without a better proved point
WALK_SLACK = 0.05  # the Newton step aims this far (logit units) inside the proved region


@dataclass(frozen=True)
class LayerMaximality:
    layer: int
    status: str  # "proved_maximal" | "not_expandable" | "zero_weight" | "at_range_limit" | "not_checked"
    counterexample: str | None = None
    # the box asked: ε at that moment + δ e_d. Later layers only grow, so it lies inside
    # ε* + δ e_d, and a counterexample in it is one in ε* + δ e_d too.
    probe: tuple[float, ...] | None = None
    # "full": the whole chain answered the probe; "fast": the chain without its complete verifiers
    chain: str | None = None
    reason: str | None = None  # why a layer is open (not_expandable / not_checked): which verifier, which budget
    grown: float = 0.0  # how far the complete verifiers grew the layer past where the fast chain left it
    # the smallest ε_d (the other layers at ε*) where a confirmed counterexample was found:
    # with ε*_d, the bracket of the layer's true edge; None when none was found (or not looked for)
    refuted: float | None = None


@dataclass(frozen=True)
class SearchOutcome:
    eps: np.ndarray
    uniform_eps: float
    maximality: tuple[LayerMaximality, ...]
    complete: bool  # False when a budget or Ctrl-C stopped the search early
    stop_reason: str
    starts: tuple[StartResult, ...] = ()  # where each start of the search ended, in the order run
    rounds: int = 0  # maximality passes run (another follows while one grows a layer)


@dataclass(frozen=True)
class StartResult:
    """One start of the search and the proved box it ended at: the search is local, so a user
    sees how much the starts disagree (and the winner is only as good as the best of them)."""

    name: str
    eps: tuple[float, ...]
    size: float


def range_limit(oracle: Oracle) -> np.ndarray:
    """Per layer, the ε beyond which the box stops growing (it already covers [lo, hi])."""
    return oracle.problem.layer_reach()


def uniform_bisection(oracle: Oracle, resolution: float, limit: float) -> float:
    """The largest uniform ε (to `resolution`) that the oracle proves robust."""
    layers = oracle.problem.num_layers
    low, high = 0.0, limit
    if oracle.ask(np.full(layers, high), "uniform").status is Status.ROBUST:
        return high
    while high - low > resolution and oracle.exhausted() is None:
        middle = (low + high) / 2
        if oracle.ask(np.full(layers, middle), "uniform").status is Status.ROBUST:
            low = middle
        else:
            high = middle
    return low


def _direction(
    oracle: Oracle, eps: np.ndarray, weights: np.ndarray, limit: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """(direction, CROWN bound at ε, its gradient): the size-per-margin direction."""
    result = oracle.guide(eps, with_gradient=True)
    gradient = np.maximum(result.gradient if result.gradient is not None else 0.0, 0.0)
    room = limit > eps + 1e-12
    # γ = the mean gradient: a layer the bound barely feels still cannot take the whole step
    # (the bound's gradient holds its relaxation fixed and understates what a big step costs)
    gamma = max(float(gradient[room].mean()) if room.any() else 1.0, 1e-9)
    direction = np.where(room, weights / (gradient + gamma), 0.0)
    return direction, result.bound, gradient


def _proved(bound: float) -> bool:
    return bound < -SAFETY_MARGIN


def _edge(bound_at, low: float, high: float, tolerance: float) -> tuple[float, float]:
    """(The largest t in [low, high) proved by bound_at, the nearest t above it that is not), to
    `tolerance`, by bisection.

    Needs low proved and high not. (Interpolating on the bound was tried: CROWN's bound along
    a ray is flat and then steep, the first convolution's dead zone ending, so interpolation
    crept from the flat side and took more calls than bisection.)
    """
    for _ in range(MAX_EDGE_STEPS):
        if high - low <= tolerance:
            break
        middle = (low + high) / 2
        if _proved(bound_at(middle)):
            low = middle
        else:
            high = middle
    return low, high


def _grow(bound_at, low: float, first: float, room: float, factor: float) -> tuple[float, float | None]:
    """From a proved `low`, try first, first·factor, … up to room: (last proved, first not) or (room, None)."""
    step = min(first, room)
    while _proved(bound_at(step)):
        low = step
        if step >= room:
            return room, None
        step = min(step * factor, room)
    return low, step


def _ray_edge(
    oracle: Oracle,
    start: np.ndarray,
    direction: np.ndarray,
    t_max: float,
    first: float,
    absolute: float = 0.0,
    relative: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The farthest start + t·direction (t <= t_max) that CROWN proves: t = first, 2·first, …
    until it fails, then bisection to max(absolute, relative × the failed t); and the nearest
    point beyond it where CROWN failed (None when t_max itself is proved)."""

    def bound_at(t: float) -> float:
        return oracle.guide(start + t * direction).bound

    low, high = _grow(bound_at, 0.0, first, t_max, 2.0)
    if high is None:
        return start + low * direction, None
    low, high = _edge(bound_at, low, high, max(absolute, relative * high))
    return start + low * direction, start + high * direction


def _line_search(
    oracle: Oracle, robust: np.ndarray, bound_robust: float, slope: float, direction: np.ndarray, limit: np.ndarray
) -> np.ndarray:
    """The farthest point robust + t·direction (within the range limits) that CROWN still proves.

    CROWN costs tens of milliseconds, so searching t on it is far cheaper than letting the
    verifier chain reject guesses; the chain then confirms the point (CROWN is sound, so it
    normally does). The first guess is where the bound's tangent (slope = its derivative along
    the ray) reaches the safety margin: the tangent understates the bound's growth, so the
    edge is usually just short of it, and bisection starts from a narrow bracket.
    """
    positive = direction > 0
    t_max = float(np.min((limit[positive] - robust[positive]) / direction[positive]))
    first = t_max if slope <= 0 else min(t_max, (-SAFETY_MARGIN - bound_robust) / slope)
    first = max(first, t_max / 2**LINE_SEARCH_STEPS)
    return _ray_edge(oracle, robust, direction, t_max, first, relative=2.0**-LINE_SEARCH_PRECISION)[0]


def _gallop(
    oracle: Oracle, eps: np.ndarray, layer: int, resolution: float, limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """The farthest ε + t e_d that CROWN proves, to about δ (steps δ, 2δ, 4δ, … then bisection),
    and the nearest box beyond it that CROWN did not prove (None: the range limit is proved).

    The bisection stops within δ, so the failing box is moved out to exactly δ beyond the
    proved one (CROWN failed nearer, so it almost surely fails there too; the chain asks it
    afresh): that is the box ε* + δ e_d that the maximality probe is defined on.
    """
    axis = np.zeros_like(eps)
    axis[layer] = 1.0
    room = float(limit[layer] - eps[layer])
    jump, failed = _ray_edge(oracle, eps, axis, room, resolution, absolute=resolution)
    if failed is not None:
        failed = jump.copy()
        failed[layer] = min(jump[layer] + resolution, float(limit[layer]))
    return jump, failed


def boundary_walk(
    oracle: Oracle, start: np.ndarray, weights: np.ndarray, limit: np.ndarray, iterations: int = WALK_STEPS
) -> np.ndarray:
    """Slide along CROWN's boundary toward larger w·ε; returns the best point CROWN proved.

    The expansion only ever grows ε, so it stops on the first point where the bound is tight.
    From there the size still grows by trading: a push along w (all layers, by weight) leaves
    the proved region, a Newton step along the bound's gradient comes back, and the gradient
    takes most from the layers that cost the most margin. Every iterate's bound is computed,
    so the best one with a bound below the safety margin is CROWN-proved as it stands.
    """
    eps = start.copy()
    best, best_size = start.copy(), float(np.dot(weights, start))
    push = float(np.max(start)) * 0.1 or 1e-3  # in ε units, adapted below
    inside = -WALK_SLACK
    stale = 0  # iterations since the best point last improved
    for _ in range(iterations):
        if stale >= WALK_PATIENCE:
            break
        stale += 1
        result = oracle.guide(eps, with_gradient=True)
        gradient = result.gradient if result.gradient is not None else np.zeros_like(eps)
        if result.bound < -SAFETY_MARGIN:
            size = float(np.dot(weights, eps))
            if size > best_size:
                best, best_size, stale = eps.copy(), size, 0
                push *= 1.5
            eps = np.clip(eps + push * weights / weights.max(), 0.0, limit)
        else:
            push *= 0.7
            norm = float(np.dot(gradient, gradient))
            if norm <= 0:
                break
            eps = np.clip(eps - (result.bound - inside) / norm * gradient, 0.0, limit)
    return best


def _proposal(
    oracle: Oracle, robust: np.ndarray, weights: np.ndarray, resolution: float, limit: np.ndarray
) -> np.ndarray | None:
    """The next box to ask: as far along the size-per-margin direction as the guide proves, or
    along its boundary when that gains less than δ (None: no layer can grow)."""
    direction, bound_robust, gradient = _direction(oracle, robust, weights, limit)
    if not np.any(direction > 0):
        return None
    direction = direction / direction.max()
    proposal = _line_search(oracle, robust, bound_robust, float(gradient @ direction), direction, limit)
    if float(np.dot(weights, proposal - robust)) < resolution * float(weights.max()):
        proposal = boundary_walk(oracle, proposal, weights, limit)
    return proposal


def expand(
    oracle: Oracle,
    start: np.ndarray,
    weights: np.ndarray,
    cutting: np.ndarray,
    resolution: float,
) -> tuple[np.ndarray, str]:
    """Repeatedly step along the best size-per-margin direction as far as the guide bound allows."""
    robust = start.copy()
    limit = range_limit(oracle)
    refused: set[tuple[float, ...]] = set()  # proposals the chain did not prove
    while True:
        reason = oracle.exhausted()
        if reason:
            return robust, reason
        try:
            proposal = _proposal(oracle, robust, weights, resolution, limit)
        except OutOfTime:
            return robust, "time budget reached"
        if proposal is None:
            return robust, "no layer can grow"
        if float(np.dot(weights, proposal - robust)) < resolution * float(weights.max()):
            return robust, "converged"
        if box_key(proposal) in refused:
            # the guide proposes again what the chain already left unproved (its sound verifier is
            # weaker than the guide's bound): asking again would only replay the cached answer
            return robust, "converged (the chain does not prove the guide's next step)"
        for cuts in range(MAX_CUTS + 1):
            # a cut's query says so: `mlrobust report` counts how often CEGIS cut (cutting acts only there)
            query = oracle.ask(proposal, "expand" if cuts == 0 else f"expand (CEGIS cut {cuts})")
            if query.status is Status.ROBUST:
                robust = proposal
                break
            refused.add(box_key(proposal))
            proposal = cut(proposal, robust, cutting)
            if np.max(proposal - robust) < resolution / 2 or oracle.exhausted() or box_key(proposal) in refused:
                return robust, "converged"


@dataclass
class Patience:
    """The full chain's maximality probes left UNKNOWN since it last settled one (NOT_ROBUST),
    across maximality passes: after COMPLETE_PROBE_PATIENCE of them its complete verifiers are
    not asked again (a later pass starts from a larger box, where they would fail again).

    A ROBUST does not start the count over: near CROWN's edge bab proves boxes in a fraction
    of a second and times out a step further, so proofs between timeouts would let it spend a
    whole time limit per step, layer after layer, without ever settling one."""

    unknowns: int = 0

    @property
    def spent(self) -> bool:
        return self.unknowns >= COMPLETE_PROBE_PATIENCE

    def record(self, status: Status) -> None:
        """Count one answer of the full chain (one a verifier gave, not the cache)."""
        if status is Status.UNKNOWN:
            self.unknowns += 1
        elif status is Status.NOT_ROBUST:
            self.unknowns = 0


def maximality(
    oracle: Oracle,
    eps: np.ndarray,
    weights: np.ndarray,
    resolution: float,
    first_pass: bool = True,
    patience: Patience | None = None,
) -> tuple[np.ndarray, tuple[LayerMaximality, ...]]:
    """Grow every layer as far as CROWN proves, then probe every layer one δ beyond.

    Growing other layers never makes a settled layer expandable again (the boxes only grow), so
    one pass settles every layer. Each layer's gallop ends one δ beyond where the layer
    stopped, at a box inside ε* + δ e_d: that box is the layer's probe, and the whole batch
    of probes goes through the chain at once (one batched attack). A probe that comes back
    ROBUST grows its layer, and that layer is probed again, one δ beyond ε, in the next round.

    The layers the fast chain leaves UNKNOWN go to the full chain: in the first pass all of
    them together (`_joint_complete_gallop`), then each alone (`_full_chain_gallops`), while
    the `patience` lasts (carried from pass to pass). A later pass (`first_pass` False: the
    one before grew the box with the complete verifiers) starts from a box grown past CROWN's
    edge, where CROWN's own gallops (a bigger box, a looser bound) cannot prove anything: it
    only probes every layer again one δ out (a counterexample is now nearer) and gallops alone
    the layers the fast chain leaves open; a layer's δ-probe holding its own earlier one that
    the full chain left UNKNOWN is not asked again (`Oracle.unproved_inside`).
    """
    patience = Patience() if patience is None else patience
    eps = eps.copy()
    limit = range_limit(oracle)
    order = [int(d) for d in np.argsort(-weights, kind="stable")]  # the most valuable layers first
    results: dict[int, LayerMaximality] = {d: LayerMaximality(d, "zero_weight") for d in order if weights[d] <= 0}
    valued = [d for d in order if weights[d] > 0]
    beyond: dict[int, np.ndarray] = {}
    if first_pass:
        eps, beyond = _jumps(oracle, eps, valued, resolution, limit)
    unknown: list[int] = []  # layers whose probe the fast chain left UNKNOWN, for the full chain
    asked = "fast" if oracle.fast_chain != oracle.chain else "full"
    pending = valued
    while pending:
        batch = []
        for layer in pending:
            if eps[layer] >= limit[layer]:
                results[layer] = LayerMaximality(layer, "at_range_limit")
            elif oracle.exhausted():
                results[layer] = LayerMaximality(layer, "not_checked", reason=oracle.exhausted())
            else:
                batch.append(layer)
        probes = []
        for layer in batch:
            probe = beyond.pop(layer, None)
            if probe is None:
                probe = eps.copy()
                probe[layer] = min(eps[layer] + resolution, limit[layer])
            probes.append(probe)
        answers = oracle.ask_many(probes, [f"maximality layer {layer}" for layer in batch]) if batch else []
        pending, grown = [], False
        for layer, probe, query in zip(batch, probes, answers, strict=True):
            if query.status is Status.ROBUST:
                # probes of one round are robust one at a time, not together: take the first
                # (most valuable) that contains ε and ask the others again from the grown box
                if not grown and np.all(probe >= eps):
                    eps, grown = probe, True
                pending.append(layer)
            elif query.status is Status.NOT_ROBUST:
                results[layer] = LayerMaximality(layer, "proved_maximal", query.counterexample, query.eps, asked)
            elif query.verifier == NOT_ASKED:
                results[layer] = LayerMaximality(layer, "not_checked", reason=oracle.exhausted())
            else:
                # the probe box lies inside ε* + δ e_d (ε only grows from here)
                which = "the chain without its complete verifiers" if asked == "fast" else "the chain"
                reason = f"UNKNOWN one δ out ({which}, last {query.verifier})"
                results[layer] = LayerMaximality(layer, "not_expandable", None, query.eps, asked, reason)
                unknown.append(layer)
    start = eps.copy()  # where the fast chain left every layer
    if asked == "fast":
        unknown = sorted(unknown, key=order.index)
        if first_pass:
            eps = _joint_complete_gallop(oracle, eps, weights, unknown, resolution, limit, patience)
            for d in unknown:
                if eps[d] > start[d]:
                    # its fast probe now lies inside the proved box: no evidence about the new edge
                    results[d] = LayerMaximality(d, "not_expandable", None, None, "full", GROWN_TOGETHER)
        # then each alone (the joint edge is not the layer's own), as far as the patience lasts
        eps = _full_chain_gallops(oracle, eps, unknown, resolution, limit, results, patience)
    final = {
        d: replace(result, grown=float(eps[d] - start[d])) if eps[d] > start[d] else result
        for d, result in results.items()
    }
    return eps, tuple(final[d] for d in range(len(eps)))


def _joint_complete_gallop(
    oracle: Oracle,
    eps: np.ndarray,
    weights: np.ndarray,
    layers: list[int],
    resolution: float,
    limit: np.ndarray,
    patience: Patience,
) -> np.ndarray:
    """Grow together, with the full chain, the layers whose δ-probe the fast chain left UNKNOWN.

    Past CROWN's edge every proof costs a complete verifier's run, and grown one layer at a
    time that is several runs per layer, each failure its whole time limit (bench/search.py
    with bab: 18 runs, 30 s per canvas, to grow the two heaviest layers). One proof along a
    joint direction grows them all. The direction is w_d² over those layers (the heaviest take
    most of each step), scaled so its largest component is δ: on 4 PGD canvases it grew w·ε
    more than w itself or the guide's size-per-margin direction (which CROWN's gradient bends
    toward layers the bound barely feels, not the ones bab proves most on). t = 1, 2, 4, …
    steps while ROBUST, then bisection between the last proof and the nearest failure; a box
    holding one the full chain already left UNKNOWN counts as a failure without asking
    (`Oracle.unproved_inside`). Ends when the two are one step apart or after JOINT_FAILURES
    failures.

    Its UNKNOWNs count toward the `patience`, which the layers' gallops alone then continue.
    """
    chosen = [d for d in layers if limit[d] > eps[d] + 1e-12]  # the layers have weight > 0
    if not chosen or oracle.exhausted():
        return eps
    direction = np.zeros(len(eps))
    direction[chosen] = weights[chosen] ** 2
    direction *= resolution / direction.max()
    low, high, step, failures = 0.0, np.inf, 1.0, 0
    while failures < JOINT_FAILURES and not oracle.exhausted():
        t = low + step
        if t >= high:
            if step <= 1.0:
                break
            step /= 2
            continue
        probe = np.minimum(eps + t * direction, limit)
        if oracle.unproved_inside(probe):
            high = t
            continue
        query = oracle.ask(probe, "maximality (complete verifiers, layers together)", full=True)
        if not query.cached:
            patience.record(query.status)
        if query.status is Status.ROBUST:
            low, step = t, step * 2
        else:
            high, failures = t, failures + 1
            if step <= 1.0:
                break
            step /= 2
    return np.minimum(eps + low * direction, limit) if low > 0 else eps


def _full_chain_gallops(
    oracle: Oracle,
    eps: np.ndarray,
    layers: list[int],
    resolution: float,
    limit: np.ndarray,
    results: dict[int, LayerMaximality],
    patience: Patience,
) -> np.ndarray:
    """Layers the fast chain could not grow, most valuable first: grow each with the full chain.

    The MILP proves boxes past CROWN's edge (bench/relaxations.py: 24 of 36 boxes 5–20% past
    it), but one δ at a time that is a MILP per δ. So each layer gallops: after a ROBUST the
    step doubles, after a failure it halves, and the layer is settled only by a failure at
    exactly δ beyond ε (its evidence, as in the fast rounds). Every UNKNOWN of the full chain
    counts toward the `Patience`, whatever the step: once it is spent no probe goes to it any
    more, even mid-gallop, and the remaining layers keep their fast-chain answers: on big
    boxes the MILP rarely finishes, and each try costs its whole time limit.
    """
    for layer in layers:
        if patience.spent or oracle.exhausted():
            results[layer] = replace(results[layer], reason=f"{results[layer].reason}; {_not_asked(oracle, patience)}")
            continue
        step, grew = resolution, False
        while True:
            if eps[layer] >= limit[layer]:
                results[layer] = LayerMaximality(layer, "at_range_limit")
                break
            if oracle.exhausted():
                results[layer] = LayerMaximality(layer, "not_checked", reason=oracle.exhausted())
                break
            if patience.spent:
                why = _not_asked(oracle, patience)
                if grew:  # its probe lies inside the proved box now: no evidence about the new edge
                    reason = f"grown alone by the whole chain; its gallop stopped before a failure one δ out: {why}"
                    results[layer] = LayerMaximality(layer, "not_expandable", None, None, "full", reason)
                else:
                    results[layer] = replace(results[layer], reason=f"{results[layer].reason}; {why}")
                break
            probe = eps.copy()
            probe[layer] = min(eps[layer] + step, limit[layer])
            inside = oracle.unproved_inside(probe)
            if inside and step > resolution * (1 + 1e-9):
                step = max(step / 2, resolution)  # a failure without asking
                continue
            # the layer's own δ-probe from a smaller box, left UNKNOWN: the same evidence, already paid for
            earlier = [q for q in inside if q.eps[layer] == probe[layer]]
            if earlier:
                last = earlier[-1].verifier
                reason = f"UNKNOWN one δ out (the whole chain, last {last}; not asked again from a larger box)"
                results[layer] = LayerMaximality(layer, "not_expandable", None, earlier[-1].eps, "full", reason)
                break
            query = oracle.ask(probe, f"maximality layer {layer}", full=True)
            if not query.cached:
                patience.record(query.status)
            if query.status is Status.ROBUST:
                eps, step, grew = probe, step * 2, True
                continue
            if step > resolution * (1 + 1e-9):
                step = max(step / 2, resolution)  # δ·2^n halves back to δ exactly
                continue
            if query.status is Status.NOT_ROBUST:
                results[layer] = LayerMaximality(layer, "proved_maximal", query.counterexample, query.eps, "full")
            else:
                reason = f"UNKNOWN one δ out (the whole chain, last {query.verifier})"
                results[layer] = LayerMaximality(layer, "not_expandable", None, query.eps, "full", reason)
            break
    return eps


def _not_asked(oracle: Oracle, patience: Patience) -> str:
    """Why the full chain was not asked (further) about a layer: a budget, or its patience."""
    exhausted = oracle.exhausted()
    if exhausted:
        return exhausted
    return f"the complete verifiers were not asked: they left {patience.unknowns} probes UNKNOWN without settling one"


BRACKET_SHARE = 0.9  # the brackets cover the heaviest layers holding this share of the weight
BRACKET_ROUNDS = 12  # batched attacks per bracket pass, at most
BRACKET_PRECISION = 0.1  # bisection stops when the bracket is this fraction of its upper end (or δ)


def brackets(
    oracle: Oracle, eps: np.ndarray, weights: np.ndarray, resolution: float, results: tuple[LayerMaximality, ...]
) -> tuple[LayerMaximality, ...]:
    """Per layer, the smallest ε_d (the others at ε*) where a confirmed counterexample was found:
    the upper end of the bracket whose lower end is the proved ε*_d, so a user sees how far the
    proved box is from the true edge. A layer proved maximal has it already (one δ out); for the
    others (the heaviest, holding BRACKET_SHARE of the weight) the chain's attack gallops out
    (×2 from δ) and bisects, all layers in one batch per round. A layer where nothing breaks up
    to its range limit keeps None. Only counterexamples count (re-checked by onnxruntime)."""
    attacks = [step for step in oracle.chain if step.info.tier == "fast" and not step.info.sound]
    if not attacks or oracle.exhausted():
        return results
    limit = range_limit(oracle)
    out = list(results)
    order = [int(d) for d in np.argsort(-weights, kind="stable") if weights[d] > 0]
    covered = np.cumsum(weights[order]) / max(float(weights.sum()), 1e-300)
    chosen = order[: int(np.searchsorted(covered, BRACKET_SHARE)) + 1]
    for d in chosen:
        if out[d].status == "proved_maximal" and out[d].probe is not None:
            out[d] = replace(out[d], refuted=out[d].probe[d])
    todo = [d for d in chosen if out[d].status not in ("proved_maximal", "at_range_limit", "zero_weight")]
    low = {d: float(eps[d]) for d in todo}  # largest ε_d the attack did not refute
    high: dict[int, float] = {}
    step = {d: resolution for d in todo}
    for _ in range(BRACKET_ROUNDS):
        asking = [
            d
            for d in todo
            if (d not in high and low[d] < limit[d])
            or (d in high and high[d] - low[d] > max(resolution, BRACKET_PRECISION * high[d]))
        ]
        if not asking or oracle.exhausted():
            break
        boxes = []
        for d in asking:
            box = eps.copy()
            box[d] = min(low[d] + step[d], limit[d]) if d not in high else (low[d] + high[d]) / 2
            boxes.append(box)
        answers = oracle.refute_many(boxes, [f"bracket layer {d}" for d in asking], attacks[0])
        for d, box, answer in zip(asking, boxes, answers, strict=True):
            if answer.status is Status.NOT_ROBUST:
                high[d] = float(box[d])
            elif answer.verifier != NOT_ASKED:
                low[d] = float(box[d])
                step[d] *= 2
    for d in todo:
        if d in high:
            out[d] = replace(out[d], refuted=high[d])
    return tuple(out)


def _jumps(
    oracle: Oracle, eps: np.ndarray, layers: list[int], resolution: float, limit: np.ndarray
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Per layer in turn: jump along e_d as far as CROWN proves, and keep it if the chain agrees.

    Returns the grown ε and, per layer, the box one δ beyond its edge (its maximality probe).
    A layer whose jump the chain refuses gets no such box: its edge may lie more than δ
    beyond ε.
    """
    beyond: dict[int, np.ndarray] = {}
    try:
        eps = _joint_jump(oracle, eps, layers, resolution, limit)
    except OutOfTime:
        return eps, beyond
    for layer in layers:
        if oracle.exhausted():
            break
        try:
            jump, failed = _gallop(oracle, eps, layer, resolution, limit)
        except OutOfTime:
            break
        if jump[layer] > eps[layer]:
            if oracle.exhausted() or oracle.ask(jump, f"maximality layer {layer}").status is not Status.ROBUST:
                continue
            eps = jump
        if failed is not None and failed[layer] - eps[layer] <= resolution * (1 + 1e-9):
            beyond[layer] = failed
    return eps, beyond


def _joint_jump(oracle: Oracle, eps: np.ndarray, layers: list[int], resolution: float, limit: np.ndarray) -> np.ndarray:
    """Grow together the layers with room: those where the bound's tangent allows at least
    JOINT_ROOM steps of δ, each in proportion to its own room.

    After the expansion the tight layers block every ray that includes them, while others
    (often far, low-weight layers, some in the first convolution's dead zone) still have room.
    One line search along those layers costs a few CROWN calls; a gallop per layer costs up
    to fifteen each.
    """
    at = oracle.guide(eps, with_gradient=True)
    gradient = np.maximum(at.gradient if at.gradient is not None else np.zeros_like(eps), 0.0)
    slack = -SAFETY_MARGIN - at.bound
    room = np.minimum(slack / np.maximum(gradient, 1e-12), limit - eps)
    chosen = np.zeros(len(eps), dtype=bool)
    chosen[layers] = True
    chosen &= room >= JOINT_ROOM * resolution
    if chosen.sum() < 2 or slack <= 0 or oracle.exhausted():
        return eps
    direction = np.where(chosen, room, 0.0)
    direction = direction / direction.max()
    jump = _line_search(oracle, eps, at.bound, float(gradient @ direction), direction, limit)
    if np.max(jump - eps) >= resolution and oracle.ask(jump, "maximality (layers with room)").status is Status.ROBUST:
        return jump
    return eps


def search(plan: Plan, oracle: Oracle, given_starts: Sequence[tuple[str, np.ndarray]] = ()) -> SearchOutcome:
    """The plan's method (the search, or a baseline it is measured against) through the oracle,
    within the plan's budget, whose clock starts now. `given_starts`: boxes from elsewhere (a
    previous run's ε*, e.g. of a stronger property) that the search also starts from, once the
    chain proves them."""
    oracle.start(plan.budget)
    loop = plan.method.loop
    if loop == "search":
        return oracle_guided(oracle, plan.weights, plan.cutting, plan.resolution, given_starts)
    layers = oracle.problem.num_layers
    try:
        if loop == "uniform":
            uniform = uniform_bisection(oracle, plan.resolution, float(range_limit(oracle).max()))
            eps = np.full(layers, uniform)
        elif loop == "per-layer":
            eps, uniform = per_layer_bisection(oracle, plan.weights, plan.resolution), 0.0
        else:
            raise ValueError(f"method {plan.method.name!r} names an unknown loop {loop!r}")
        reason = oracle.exhausted()
        return SearchOutcome(eps, uniform, (), reason is None, reason or "converged")
    except KeyboardInterrupt:
        return interrupted(oracle, plan.weights)


def oracle_guided(
    oracle: Oracle,
    weights: np.ndarray,
    cutting: np.ndarray,
    resolution: float,
    given_starts: Sequence[tuple[str, np.ndarray]] = (),
) -> SearchOutcome:
    layers = oracle.problem.num_layers
    zero = oracle.ask(np.zeros(layers), "start")
    if zero.status is not Status.ROBUST:
        return SearchOutcome(np.zeros(layers), 0.0, (), False, f"the image itself is {zero.status.value} (ε = 0)")
    uniform = 0.0
    starts: list[StartResult] = []
    try:
        limit = range_limit(oracle)
        uniform = uniform_bisection(oracle, resolution, float(limit.max()))
        eps, reason, starts = _multi_start(oracle, weights, cutting, resolution, limit, uniform, given_starts)
        rounds, grew = 0, True
        layers_result: tuple[LayerMaximality, ...] = ()
        grown = np.zeros(layers)  # per layer, what the complete verifiers grew over all rounds
        patience = Patience()
        while grew and oracle.exhausted() is None and rounds < MAX_ROUNDS:
            # a layer the complete verifiers grew makes the box larger: the other layers' answers
            # were about a smaller box, so they are asked again until a round changes nothing
            before = eps.copy()
            eps, layers_result = maximality(oracle, eps, weights, resolution, rounds == 0, patience)
            rounds += 1
            grown += [r.grown for r in layers_result]
            grew = bool(np.any(eps > before)) and any(r.grown > 0 for r in layers_result)
        # each round reports what it grew; a layer grown in an earlier round keeps that credit
        layers_result = tuple(replace(r, grown=float(grown[r.layer])) for r in layers_result)
        complete = oracle.exhausted() is None
        stop = reason if complete else oracle.exhausted() or ""
        # the brackets are evidence about ε*, not part of finding it: a budget they spend leaves
        # the search complete (their layers then keep refuted = None)
        layers_result = brackets(oracle, eps, weights, resolution, layers_result)
        return SearchOutcome(eps, uniform, layers_result, complete, stop, tuple(starts), rounds)
    except KeyboardInterrupt:
        best = interrupted(oracle, weights)
        return replace(best, uniform_eps=uniform, starts=tuple(starts))
    except OutOfTime:  # a step that keeps nothing of its own ran into the deadline
        best = interrupted(oracle, weights)
        return SearchOutcome(best.eps, uniform, (), False, "time budget reached", tuple(starts))


def _multi_start(
    oracle: Oracle,
    weights: np.ndarray,
    cutting: np.ndarray,
    resolution: float,
    limit: np.ndarray,
    uniform: float,
    given: Sequence[tuple[str, np.ndarray]] = (),
) -> tuple[np.ndarray, str, list[StartResult]]:
    """Expand from several starts and keep the largest proved box (the first of equals).

    The expansion is local: from the uniform start it spreads ε over the near layers, while the
    best box of some problems puts nearly everything on one heavy layer (`corner`), and others
    are best along the weights themselves. "Converged" is said only of the best start; every
    start's size goes into the result."""
    layers = len(weights)

    def size(box: np.ndarray) -> float:
        return float(np.dot(weights, box))

    starts: list[StartResult] = []

    def keep(name: str, box: np.ndarray) -> np.ndarray:
        starts.append(StartResult(name, box_key(box), size(box)))
        return box

    # Expanding from the uniform optimum itself is blocked (it sits on the bound's boundary in
    # every direction); from half of it the size-per-margin direction has room to pay off.
    keep("uniform", np.full(layers, uniform))
    eps, reason = expand(oracle, np.full(layers, uniform / 2), weights, cutting, resolution)
    keep("expand from uniform/2", eps)
    reasons = {"expand from uniform/2": reason}
    if oracle.exhausted() is None:
        heavy = corner(oracle, weights, resolution, limit)
        keep("heaviest layer alone", heavy)
        if np.any(heavy > 0) and oracle.exhausted() is None:
            box, reasons["expand from the heaviest layer"] = expand(oracle, heavy / 2, weights, cutting, resolution)
            keep("expand from the heaviest layer", box)
    if oracle.exhausted() is None:
        try:
            along = _weights_ray(oracle, weights, limit)
        except OutOfTime:
            along = None
        if along is not None and oracle.ask(along, "start (along the weights)").status is Status.ROBUST:
            keep("along the weights", along)
            if oracle.exhausted() is None:
                box, reasons["expand along the weights"] = expand(oracle, along / 2, weights, cutting, resolution)
                keep("expand along the weights", box)
    for name, box in given:
        if oracle.exhausted() is not None:
            break
        box = np.clip(np.asarray(box, dtype=np.float64), 0.0, limit)
        if oracle.ask(box, f"start ({name})").status is not Status.ROBUST:
            continue  # not proved by this chain for this question: no start
        keep(name, box)
        if oracle.exhausted() is None:
            grown, reasons[f"expand from {name}"] = expand(oracle, box, weights, cutting, resolution)
            keep(f"expand from {name}", grown)
    best = max(starts, key=lambda start: start.size)  # max keeps the first of equals
    if best.name in reasons:
        reason = reasons[best.name]
    else:
        reason = f"converged (the best start: {best.name})"
    return np.array(best.eps), reason, starts


def _weights_ray(oracle: Oracle, weights: np.ndarray, limit: np.ndarray) -> np.ndarray | None:
    """The box along ε ∝ weights as far as the guide proves (None: not even a small step)."""
    direction = weights / weights.max()
    room = float(np.min(np.where(direction > 0, limit / np.maximum(direction, 1e-300), np.inf)))
    if not np.isfinite(room) or room <= 0:
        return None
    point, _ = _ray_edge(
        oracle, np.zeros(len(weights)), direction, room, room / 2**LINE_SEARCH_STEPS,
        relative=2.0**-LINE_SEARCH_PRECISION,
    )  # fmt: skip
    return point if np.any(point > 0) else None


def corner(oracle: Oracle, weights: np.ndarray, resolution: float, limit: np.ndarray) -> np.ndarray:
    """The heaviest layer alone, as far as CROWN proves (confirmed by the chain); ε = 0 if not.

    The expansion is local: from the uniform start it spreads ε over the near layers, while on
    some problems (the undefended models: test/0004, 0009, 0016 of `none`) the best box puts
    nearly everything on the perturbed object itself and nothing around it. From this corner
    the maximality pass grows the other layers in order of weight, as the per-layer baseline
    does, so the search ends at least where a greedy per-layer pass on CROWN would. One gallop:
    a few CROWN calls.
    """
    zero = np.zeros(len(weights))
    if oracle.exhausted():
        return zero
    try:
        grown, _ = _gallop(oracle, zero, int(np.argmax(weights)), resolution, limit)
    except OutOfTime:
        return zero
    if not np.any(grown > 0) or oracle.ask(grown, "start (heaviest layer alone)").status is not Status.ROBUST:
        return zero
    return grown


def interrupted(oracle: Oracle, weights: np.ndarray) -> SearchOutcome:
    """After Ctrl-C: the largest box proved so far (every one the oracle holds is a proof)."""
    zero = np.zeros(oracle.problem.num_layers)
    best = max(oracle.robust, key=lambda e: float(np.dot(weights, e)), default=zero)
    return SearchOutcome(best, 0.0, (), False, "interrupted (Ctrl-C)")


def per_layer_bisection(oracle: Oracle, weights: np.ndarray, resolution: float) -> np.ndarray:
    """The thesis's naive algorithm (a baseline): layers in order of weight, each bisected alone
    with the earlier layers fixed at their found ε and the later ones at 0."""
    eps = np.zeros(oracle.problem.num_layers)
    limit = range_limit(oracle)
    for layer in np.argsort(-weights, kind="stable"):
        if weights[layer] <= 0 or oracle.exhausted():
            continue
        low, high = 0.0, float(limit[layer])
        while high - low > resolution and oracle.exhausted() is None:
            middle = (low + high) / 2
            trial = eps.copy()
            trial[layer] = middle
            if oracle.ask(trial, f"per-layer {layer}").status is Status.ROBUST:
                low = middle
            else:
                high = middle
        eps[layer] = low
    return eps
