"""HALP-style selection under a latency budget: a grouped knapsack over the target's latency table.

For every channel group the options are "keep the k most important channels" for k on a grid
(multiples of `round_to`, and of the group's own step where whole conv groups must go, so widths
land on the runtime's staircase steps); an option's value is the sum of its top-k importances,
its cost the table latency of the layers the group touches at width k, with the neighbouring
groups at their current widths (HALP's linearisation).

Costs are *full marginal* costs: a layer L shared by n groups (input from one, output from
another) is charged to group g as `T_L(g -> k) - (1 - 1/n) * T_L(current)`. At the current widths
the costs of all groups add up to the table latency of the layers, and the change of each
group's cost between two widths is exactly that group's table difference (not 1/n of it), so a
first knapsack solve lands close to the goal.

The knapsack budget is then searched (up or down) against a cheap prediction: the exact table
sum at the chosen widths plus the non-table constant interpolated in the activation volume
between two exact predictions (current widths and minimum widths). Only the final choice is
checked with the exact predictor (an ONNX export for ORT profiles); if the cheap model was off,
its offset is corrected and the search repeated (bounded). Exact predictions are cached per
(profile, input shape, model, widths), so a scheduled method reuses the previous step's.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from prunekit import structures
from prunekit.errors import PrunekitError
from prunekit.latency.layers import OP_DWCONV, LayerSpec, enumerate_layers
from prunekit.latency.predict import LatencyPrediction, predict_latency
from prunekit.latency.profile import Profile
from prunekit.pruning import PruningGraph, candidate_widths
from prunekit.select.knapsack import solve_grouped_knapsack


@dataclass
class LatencySelection:
    """The keep-set chosen for a latency goal and what the profile predicts for it."""

    keep: dict[str, torch.Tensor]
    predicted_ms: float
    target_ms: float
    iterations: int
    exact_predictions: int = 0
    trace: list[dict[str, float]] = field(default_factory=list)


def _group_step(graph: PruningGraph, name: str) -> int:
    return int(getattr(graph.group(name), "step", 1) or 1)


class LatencyCostModel:
    """Table latency of a model's layers as a function of the group widths."""

    def __init__(self, graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int]) -> None:
        self.graph, self.profile, self.input_shape = graph, profile, input_shape
        self.layers: list[LayerSpec] = enumerate_layers(graph.model, input_shape)
        self.width0 = graph.widths()
        self._lookups: dict[tuple[str, int, int], float] = {}
        self.cin_groups: dict[str, list[str]] = {}
        self.cout_groups: dict[str, list[str]] = {}
        for g in graph.groups:
            for name in g.out_layers:
                self.cout_groups.setdefault(name, []).append(g.name)
            for name in g.in_layers:
                self.cin_groups.setdefault(name, []).append(g.name)
        self.attention_rate = self._attention_rates()

    def _attention_rates(self) -> dict[str, float]:
        """ms per kept q channel of every head group's attention (Q K^T, A V, softmax), from the
        profile's op costs: no weight, so no table layer, but it shrinks with the heads kept.

        Per q channel a block does 2 x rows x window MACs (rows: query positions of a sample x
        batch; window: the keys each query sees, all tokens for ViT, a window for Swin) and
        rows x window / head_dim softmax elements. No op costs in the profile: no term."""
        ops = getattr(self.profile.constant, "ops", {}) or {}
        mm = [ops[k].b_ms_per_melem for k in (":MatMul", "ms:FusedMatMul") if k in ops]
        sm = ops[":Softmax"].b_ms_per_melem if ":Softmax" in ops else 0.0
        if not mm:
            return {}
        mm_rate = sum(mm) / len(mm)
        rows = {spec.name: spec.rows * self.input_shape[0] for spec in self.layers}
        rates: dict[str, float] = {}
        for name, attn in structures.attention_blocks(self.graph.model).items():
            q = f"{name}.q"
            if q not in rows:
                continue
            window = math.prod(attn.window_size) if hasattr(attn, "window_size") else rows[q] // self.input_shape[0]
            per_channel = (2 * rows[q] * window * mm_rate + rows[q] * window / attn.head_dim * sm) / 1e6
            for g in self.cout_groups.get(q, []):
                rates[g] = rates.get(g, 0.0) + per_channel
        return rates

    def attention_ms(self, widths: dict[str, int]) -> float:
        """The head groups' attention cost at `widths` (linear in the kept q channels)."""
        return sum(rate * widths[g] for g, rate in self.attention_rate.items())

    def _groups_of(self, spec: LayerSpec) -> tuple[list[str], list[str]]:
        base = spec.name.split("#")[0]
        return self.cin_groups.get(base, []), self.cout_groups.get(base, [])

    def _channels(self, spec: LayerSpec, widths: dict[str, int]) -> tuple[int, int]:
        cin_g, cout_g = self._groups_of(spec)
        cout = spec.cout - sum(self.width0[g] - widths[g] for g in cout_g)
        if spec.op == OP_DWCONV:
            return cout, cout
        cin = spec.cin - sum(self.width0[g] - widths[g] for g in cin_g)
        return max(cin, 1), max(cout, 1)

    def layer_ms(self, spec: LayerSpec, widths: dict[str, int]) -> float:
        cin, cout = self._channels(spec, widths)
        key = (spec.signature, cin, cout)
        ms = self._lookups.get(key)
        if ms is None:  # the table interpolation is the hot loop of options() and the cheap predictor
            ms = self._lookups[key] = self.profile.layer_latency(spec.signature, cin, cout)
        return ms

    def table_ms(self, widths: dict[str, int]) -> float:
        """Sum of the table latencies of all layers at `widths` (exactly the predictor's layer sum)."""
        return sum(self.layer_ms(spec, widths) for spec in self.layers)

    def activation_elems(self, widths: dict[str, int]) -> float:
        """Output elements of all layers at `widths`: what the non-table ops (adds, pools, ...) touch."""
        total = 0.0
        for spec in self.layers:
            _, cout = self._channels(spec, widths)
            total += cout * spec.output_hw[0] * spec.output_hw[1] * spec.rows
        return total

    def options(
        self, scores: dict[str, torch.Tensor], round_to: int, min_fraction: float
    ) -> tuple[list[str], list[list[int]], list[list[tuple[float, float]]], float]:
        """Per group: candidate widths and (cost, value) options; plus the cost no option changes.

        Cost of width k for group g: sum over the layers L it touches of
        `T_L(g -> k) - (1 - 1/n_L) * T_L(current)`, n_L = number of groups touching L.
        """
        touching: dict[str, list[tuple[LayerSpec, float]]] = {}
        fixed = 0.0
        for spec in self.layers:
            cin_g, cout_g = self._groups_of(spec)
            owners = sorted(set(cin_g) | set(cout_g))
            if not owners:
                fixed += self.layer_ms(spec, self.width0)
                continue
            for g in owners:
                touching.setdefault(g, []).append((spec, 1.0 / len(owners)))
        names, widths_per_group, groups = [], [], []
        for g in self.graph.groups:
            width = self.width0[g.name]
            min_width = max(1, int(round(width * min_fraction)))
            cands = candidate_widths(width, round_to, min_width, _group_step(self.graph, g.name))
            sorted_scores = torch.sort(scores[g.name].float(), descending=True).values
            prefix = torch.cumsum(sorted_scores, 0)
            layers = touching.get(g.name, [])
            shared = sum((1.0 - share) * self.layer_ms(spec, self.width0) for spec, share in layers)
            opts = []
            for k in cands:
                trial = dict(self.width0)
                trial[g.name] = k
                cost = sum(self.layer_ms(spec, trial) for spec, _ in layers) - shared
                cost += self.attention_rate.get(g.name, 0.0) * k
                opts.append((cost, float(prefix[k - 1])))
            # A full marginal cost can be negative (the shared part exceeds a small width's cost);
            # the knapsack needs costs >= 0, so each group's cheapest option becomes 0 and the
            # shift joins the fixed part.
            low = min(c for c, _ in opts)
            fixed += low
            names.append(g.name)
            widths_per_group.append(cands)
            groups.append([(c - low, v) for c, v in opts])
        return names, widths_per_group, groups, fixed


def widths_to_keep(scores: dict[str, torch.Tensor], widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """Keep the `widths[g]` highest-scored channels of every group (indices sorted)."""
    return {g: torch.topk(scores[g].float(), k).indices.sort().values for g, k in widths.items()}


# Exact predictions, memoised per profile object (weakly: a profile that is dropped takes its
# entries with it). The key is what determines the architecture: model, input shape and widths.
_EXACT: dict[int, dict[tuple[object, ...], LatencyPrediction]] = {}


def _profile_cache(profile: Profile) -> dict[tuple[object, ...], LatencyPrediction]:
    key = id(profile)
    if key not in _EXACT:
        _EXACT[key] = {}
        weakref.finalize(profile, _EXACT.pop, key, None)
    return _EXACT[key]


def _cache_key(graph: PruningGraph, input_shape: tuple[int, ...], widths: dict[str, int]) -> tuple[object, ...]:
    # The classifier is in no group: its shape (number of classes) is part of the architecture.
    frame = tuple(tuple(p.shape) for m in graph.ignored for p in m.parameters(recurse=False))
    return (graph.model_name, type(graph.model).__name__, tuple(input_shape), frame, tuple(sorted(widths.items())))


def predict_current(graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int]) -> LatencyPrediction:
    """Exact prediction of the graph's model as it is now (cached)."""
    cache = _profile_cache(profile)
    key = _cache_key(graph, input_shape, graph.widths())
    if key not in cache:
        cache[key] = predict_latency(graph.model, profile, input_shape, model_hint=graph.model_name)
    return cache[key]


def predict_for_keep(
    graph: PruningGraph, keep: dict[str, torch.Tensor], profile: Profile, input_shape: tuple[int, int, int, int]
) -> float:
    """Exact profile prediction for the model `graph` would become with `keep` (on a copy; cached)."""
    widths = dict(graph.widths())
    widths.update({g: len(k) for g, k in keep.items()})
    cache = _profile_cache(profile)
    key = _cache_key(graph, input_shape, widths)
    if key not in cache:
        trial = copy.deepcopy(graph.model).cpu()
        tg = PruningGraph(trial, graph.example_input, graph.model_name)
        tg.prune(keep)
        cache[key] = predict_latency(trial, profile, input_shape, model_hint=graph.model_name)
    return cache[key].total_ms


class _CheapPredictor:
    """Table sum (exact) + the non-table constant, piecewise linear in activation volume through
    the exact predictions known for this model (at least two: e.g. current and minimum widths)."""

    def __init__(self, cost_model: LatencyCostModel, exact: list[tuple[dict[str, int], float]]) -> None:
        self.cost_model = cost_model
        points: dict[float, float] = {}
        for w, total in exact:
            points[round(cost_model.activation_elems(w), 3)] = total - self.priced(w)
        self.points = sorted(points.items())
        self.offset = 0.0

    def constant(self, widths: dict[str, int]) -> float:
        pts = self.points
        if len(pts) == 1:
            return pts[0][1]
        a = self.cost_model.activation_elems(widths)
        i = 1
        while i < len(pts) - 1 and pts[i][0] < a:
            i += 1
        (a0, c0), (a1, c1) = pts[i - 1], pts[i]
        return c0 + (c1 - c0) * (a - a0) / (a1 - a0)

    def priced(self, widths: dict[str, int]) -> float:
        """What the knapsack's options price: table layers and the head groups' attention."""
        return self.cost_model.table_ms(widths) + self.cost_model.attention_ms(widths)

    def __call__(self, widths: dict[str, int]) -> float:
        return self.priced(widths) + self.constant(widths) + self.offset


def known_predictions(
    graph: PruningGraph, profile: Profile, input_shape: tuple[int, ...]
) -> list[tuple[dict[str, int], float]]:
    """Exact predictions already made for this model and input shape, at widths of the current
    graph's groups (a group of the current graph missing from an entry skips the entry)."""
    prefix = _cache_key(graph, input_shape, {})[:4]
    names = set(graph.widths())
    out = []
    for key, pred in _profile_cache(profile).items():
        if key[:4] != prefix:
            continue
        widths = dict(key[4])  # type: ignore[arg-type]
        if names <= set(widths):
            out.append(({n: widths[n] for n in names}, pred.total_ms))
    return out


def select_for_latency(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    profile: Profile,
    input_shape: tuple[int, int, int, int],
    target_ms: float,
    round_to: int = 8,
    min_fraction: float = 0.05,
    max_iterations: int = 24,
    resolution: int = 2000,
    fill_tolerance: float = 0.02,
    max_exact: int = 4,
    floor_at_minimum: bool = False,
) -> LatencySelection:
    """Widths per group maximising kept importance with predicted latency <= `target_ms`.

    A target below the minimum widths' prediction is an error, unless `floor_at_minimum` (the
    measured loop of `compress --verify`, whose corrected targets may go below a prediction that
    over-estimates): then the minimum widths are the choice.

    The knapsack budget is searched against the cheap predictor until its prediction is within
    `fill_tolerance` (relative) under the target; the choice is then checked exactly, at most
    `max_exact` times (each mismatch corrects the cheap predictor's offset). With `max_exact=0`
    (a schedule's intermediate steps) nothing is exported when two exact predictions of this
    model are already known: the choice and its latency come from the cheap predictor.
    """
    known = known_predictions(graph, profile, input_shape)
    cheap_only = max_exact == 0 and len(known) >= 2
    cost_model = LatencyCostModel(graph, profile, input_shape)
    if cheap_only:
        cheap = _CheapPredictor(cost_model, known)
        current_ms = cheap(graph.widths())
    else:
        current_ms = predict_current(graph, profile, input_shape).total_ms
    if current_ms <= target_ms:
        keep = {g: torch.arange(w) for g, w in graph.widths().items()}
        return LatencySelection(keep, current_ms, target_ms, 0)
    names, cands, options, fixed_layers = cost_model.options(scores, round_to, min_fraction)
    min_widths = {n: c[0] for n, c in zip(names, cands, strict=True)}
    min_ms = cheap(min_widths) if cheap_only else math.inf
    if min_ms > target_ms * (1.0 - fill_tolerance):  # exact when it decides reachability
        min_ms = predict_for_keep(graph, widths_to_keep(scores, min_widths), profile, input_shape)
    if min_ms > target_ms and floor_at_minimum:
        return LatencySelection(widths_to_keep(scores, min_widths), min_ms, target_ms, 0, exact_predictions=1)
    if min_ms > target_ms:
        raise PrunekitError(
            f"latency goal {target_ms:.3f} ms is below what {graph.model_name} reaches on {profile.name} "
            f"even at the minimum width of every group ({min_ms:.3f} ms predicted)",
            f"ask for at least {min_ms:.3f} ms (a budget of {min_ms / current_ms:.2f} of dense)",
        )
    if not cheap_only:
        cheap = _CheapPredictor(cost_model, known_predictions(graph, profile, input_shape))
    min_cost = sum(min(c for c, _ in opts) for opts in options)
    max_cost = sum(max(c for c, _ in opts) for opts in options)
    best: LatencySelection | None = None
    trace: list[dict[str, float]] = []
    iterations = exact_calls = 0
    # First guess: the knapsack budget = goal minus everything the knapsack does not price, with
    # the constant taken at the current widths.
    budget = target_ms - cheap.constant(graph.widths()) - fixed_layers
    if cheap_only:
        widths, _, budget, iterations = _search_budget(
            options, names, cands, cheap, target_ms, budget, min_cost, max_cost, resolution, fill_tolerance,
            max_iterations, trace)
        return LatencySelection(widths_to_keep(scores, widths), cheap(widths), target_ms, iterations, 0, trace)
    tried: set[tuple[int, ...]] = set()
    while exact_calls < max(1, max_exact):
        widths, choice_key, budget, solves = _search_budget(
            options, names, cands, cheap, target_ms, budget, min_cost, max_cost, resolution, fill_tolerance,
            max_iterations, trace)
        iterations += solves
        keep = widths_to_keep(scores, widths)
        if choice_key in tried:
            break
        tried.add(choice_key)
        exact = predict_for_keep(graph, keep, profile, input_shape)
        exact_calls += 1
        trace.append({"budget": round(budget, 5), "exact_ms": round(exact, 5)})
        if exact <= target_ms and (best is None or exact > best.predicted_ms):
            best = LatencySelection(keep, exact, target_ms, iterations)
        if exact <= target_ms and exact >= target_ms * (1.0 - fill_tolerance):
            break
        cheap.offset += exact - cheap(widths)
    if best is None:  # every exact check was over the goal (the cheap predictor kept missing it)
        best = _step_down(graph, scores, profile, input_shape, options, names, cands, target_ms, budget, resolution,
                          tried, trace, fill_tolerance)
        exact_calls += sum(1 for t in trace if t.get("step_down"))
    if best is None:
        keep = widths_to_keep(scores, min_widths)
        best = LatencySelection(keep, min_ms, target_ms, iterations)
    best.iterations = iterations
    best.exact_predictions = exact_calls
    best.trace = trace
    return best


def _step_down(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    profile: Profile,
    input_shape: tuple[int, int, int, int],
    options: list[list[tuple[float, float]]],
    names: list[str],
    cands: list[list[int]],
    target_ms: float,
    budget: float,
    resolution: int,
    tried: set[tuple[int, ...]],
    trace: list[dict[str, float]],
    fill_tolerance: float = 0.02,
    tries: int = 6,
) -> LatencySelection | None:
    """Bracket the knapsack budget with exact checks until a choice meets the goal (and fills it).

    The fallback when the cheap predictor's choices all came out over the goal (`tried`, each over
    it): without it the selection fell to the minimum widths (a 0.73 goal on mobilenet_v2 at 224
    gave a model measuring 0.14 of dense). Lowers the budget until a choice is under the goal,
    then bisects between the two; returns the fullest choice under the goal, or None.
    """
    over, under = budget, None
    best: LatencySelection | None = None
    for _ in range(tries):
        b = (over + under) / 2 if under is not None else over * 0.9
        widths, key = _knapsack_choice(options, names, cands, b, resolution)
        if key in tried:  # a choice already found over the goal
            over = b
            continue
        tried.add(key)
        keep = widths_to_keep(scores, widths)
        exact = predict_for_keep(graph, keep, profile, input_shape)
        trace.append({"budget": round(b, 5), "exact_ms": round(exact, 5), "step_down": 1.0})
        if exact > target_ms:
            over = b
            continue
        under = b
        if best is None or exact > best.predicted_ms:
            best = LatencySelection(keep, exact, target_ms, 0)
        if exact >= target_ms * (1.0 - fill_tolerance):
            break
        tried.discard(key)  # (not over the goal: a repeat of it must not lower `over`)
    return best


def _knapsack_choice(options: list[list[tuple[float, float]]], names: list[str], cands: list[list[int]],
                     budget: float, resolution: int) -> tuple[dict[str, int], tuple[int, ...]]:
    """The knapsack's widths per group at `budget`, and the choice as a hashable key."""
    choice = solve_grouped_knapsack(options, budget, resolution)
    widths = {n: cands[i][j] for i, (n, j) in enumerate(zip(names, choice, strict=True))}
    return widths, tuple(int(j) for j in choice)


def _search_budget(
    options: list[list[tuple[float, float]]],
    names: list[str],
    cands: list[list[int]],
    cheap: _CheapPredictor,
    target_ms: float,
    budget: float,
    min_cost: float,
    max_cost: float,
    resolution: int,
    fill_tolerance: float,
    max_iterations: int,
    trace: list[dict[str, float]],
) -> tuple[dict[str, int], tuple[int, ...], float, int]:
    """Knapsack budget whose choice the cheap predictor puts at (or just under) the target.

    Shift by the prediction error until the target is bracketed, then bisect; returns the best
    feasible choice seen (or the cheapest one).
    """
    feasible: float | None = None
    infeasible: float | None = None
    best: tuple[float, dict[str, int], tuple[int, ...], float] | None = None
    fallback: tuple[dict[str, int], tuple[int, ...], float] | None = None
    solves = 0
    for _ in range(max_iterations):
        solves += 1
        budget = min(max(budget, min_cost), max_cost)
        widths, key = _knapsack_choice(options, names, cands, budget, resolution)
        predicted = cheap(widths)
        trace.append({"budget": round(budget, 5), "cheap_ms": round(predicted, 5)})
        if fallback is None or predicted < fallback[2]:
            fallback = (widths, key, budget)
        if predicted <= target_ms:
            if best is None or predicted > best[0]:
                best = (predicted, widths, key, budget)
            feasible = budget
            if predicted >= target_ms * (1.0 - fill_tolerance) or budget >= max_cost:
                break
        else:
            infeasible = budget
        if feasible is not None and infeasible is not None:
            nxt = (feasible + infeasible) / 2
        else:
            nxt = budget + (target_ms - predicted)
        if abs(nxt - budget) < 1e-9:
            break
        budget = nxt
    if best is not None:
        return best[1], best[2], best[3], solves
    assert fallback is not None
    return (*fallback, solves)


def minimum_widths(
    graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int], round_to: int,
    min_fraction: float = 0.05,
) -> tuple[dict[str, torch.Tensor], float]:
    """The keep-set of the narrowest model a selection may choose, and its predicted latency (ms)."""
    scores = {g.name: torch.ones(g.width) for g in graph.groups}
    widths = {g.name: candidate_widths(g.width, round_to, max(1, int(round(g.width * min_fraction))),
                                       _group_step(graph, g.name))[0] for g in graph.groups}
    keep = widths_to_keep(scores, widths)
    return keep, predict_for_keep(graph, keep, profile, input_shape)


def check_reachable(
    graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int], target_ms: float, round_to: int,
    min_fraction: float = 0.05,
    measured: tuple[Callable[[PruningGraph, dict[str, torch.Tensor]], float], float] | None = None,
) -> float:
    """The predicted target to select at; raises before any training when it cannot be reached.

    Unreachable means below the minimum-width model's prediction. With `measured` = (measure,
    budget), where the candidate can be timed on the target (`compress --verify`), a prediction
    is not the last word: the minimum-width model is timed, and if it *measures* within the
    budget the target is moved onto the line through (dense, 1) and (minimum, its measured ratio)
    in predicted ms, i.e. where the profile's prediction and the measurement agree best. The
    verify loop then corrects the final selection as usual. Returns `target_ms` when reachable
    as predicted.
    """
    min_keep, min_ms = minimum_widths(graph, profile, input_shape, round_to, min_fraction)
    if min_ms <= target_ms:
        return target_ms
    dense_ms = predict_current(graph, profile, input_shape).total_ms
    fix = f"ask for at least {min_ms:.3f} ms (a --latency-budget of {min_ms / dense_ms:.2f} or more)"
    if measured is None:
        raise PrunekitError(
            f"latency goal {target_ms:.3f} ms is below what {graph.model_name} reaches on {profile.name} "
            f"even at the minimum width of every group ({min_ms:.3f} ms predicted)",
            fix,
        )
    from prunekit.select.verify import VerifyOptions

    measure, budget = measured
    m_min = float(measure(graph, min_keep))
    p_min = min_ms / dense_ms
    if m_min > budget * VerifyOptions().high or m_min >= 1.0:
        raise PrunekitError(
            f"latency budget {budget:.3f} is below what {graph.model_name} reaches on {profile.name} even at the "
            f"minimum width of every group: measured {m_min:.3f} of dense here ({p_min:.3f} predicted)",
            f"ask for a --latency-budget of {m_min:.2f} or more",
        )
    ratio = 1.0 - (1.0 - budget) * (1.0 - p_min) / (1.0 - m_min)
    return max(min_ms, ratio * dense_ms)
