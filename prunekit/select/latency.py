"""HALP-style selection under a latency budget: a grouped knapsack over the target's latency table.

For every channel group the options are "keep the k most important channels" for k on a grid
(multiples of `round_to`, so widths land on the runtime's staircase steps); an option's value is
the sum of its top-k importances, its cost the table latency of the layers the group touches at
width k, with the neighbouring groups at their current widths (HALP's linearisation). A layer
touched by two groups (input from one, output from another) is shared half-and-half, so at the
current widths the group costs add up exactly to the table latency of the layers.

Because the linearisation and the constant (non-table) cost are approximate, the chosen widths
are checked with the exact predictor on a trial model and the knapsack budget is searched (up
or down) until the prediction is at, or just under, the goal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from prunekit.errors import PrunekitError
from prunekit.latency.layers import OP_DWCONV, LayerSpec, enumerate_layers
from prunekit.latency.predict import predict_latency
from prunekit.latency.profile import Profile
from prunekit.pruning import PruningGraph
from prunekit.select.knapsack import solve_grouped_knapsack


@dataclass
class LatencySelection:
    """The keep-set chosen for a latency goal and what the profile predicts for it."""

    keep: dict[str, torch.Tensor]
    predicted_ms: float
    target_ms: float
    iterations: int


def candidate_widths(width: int, round_to: int, min_width: int) -> list[int]:
    """Widths a group may be pruned to: multiples of `round_to` (and the full width), >= min_width."""
    step = max(1, round_to)
    cands = {k for k in range(step, width + 1, step) if k >= min_width}
    cands.add(width)
    return sorted(cands)


class LatencyCostModel:
    """Table latency of a model's layers as a function of the group widths."""

    def __init__(self, graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int]) -> None:
        self.graph, self.profile, self.input_shape = graph, profile, input_shape
        self.layers: list[LayerSpec] = enumerate_layers(graph.model, input_shape)
        self.width0 = graph.widths()
        self.cin_groups: dict[str, list[str]] = {}
        self.cout_groups: dict[str, list[str]] = {}
        for g in graph.groups:
            for name in g.out_layers:
                self.cout_groups.setdefault(name, []).append(g.name)
            for name in g.in_layers:
                self.cin_groups.setdefault(name, []).append(g.name)

    def _groups_of(self, spec: LayerSpec) -> tuple[list[str], list[str]]:
        base = spec.name.split("#")[0]
        return self.cin_groups.get(base, []), self.cout_groups.get(base, [])

    def layer_ms(self, spec: LayerSpec, widths: dict[str, int]) -> float:
        cin_g, cout_g = self._groups_of(spec)
        cout = spec.cout - sum(self.width0[g] - widths[g] for g in cout_g)
        if spec.op == OP_DWCONV:
            return self.profile.layer_latency(spec.signature, cout, cout)
        cin = spec.cin - sum(self.width0[g] - widths[g] for g in cin_g)
        return self.profile.layer_latency(spec.signature, max(cin, 1), max(cout, 1))

    def table_ms(self, widths: dict[str, int]) -> float:
        return sum(self.layer_ms(spec, widths) for spec in self.layers)

    def options(
        self, scores: dict[str, torch.Tensor], round_to: int, min_fraction: float
    ) -> tuple[list[str], list[list[int]], list[list[tuple[float, float]]], float]:
        """Per group: candidate widths and (cost, value) options; plus the cost no group affects."""
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
            cands = candidate_widths(width, round_to, min_width)
            sorted_scores = torch.sort(scores[g.name].float(), descending=True).values
            prefix = torch.cumsum(sorted_scores, 0)
            opts = []
            for k in cands:
                trial = dict(self.width0)
                trial[g.name] = k
                cost = sum(share * self.layer_ms(spec, trial) for spec, share in touching.get(g.name, []))
                opts.append((cost, float(prefix[k - 1])))
            names.append(g.name)
            widths_per_group.append(cands)
            groups.append(opts)
        return names, widths_per_group, groups, fixed


def widths_to_keep(scores: dict[str, torch.Tensor], widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """Keep the `widths[g]` highest-scored channels of every group (indices sorted)."""
    return {g: torch.topk(scores[g].float(), k).indices.sort().values for g, k in widths.items()}


def predict_for_keep(
    graph: PruningGraph, keep: dict[str, torch.Tensor], profile: Profile, input_shape: tuple[int, int, int, int]
) -> float:
    """Exact profile prediction for the model `graph` would become with `keep` (on a copy)."""
    trial = copy.deepcopy(graph.model).cpu()
    tg = PruningGraph(trial, graph.example_input, graph.model_name)
    tg.prune(keep)
    return predict_latency(trial, profile, input_shape, model_hint=graph.model_name).total_ms


def select_for_latency(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    profile: Profile,
    input_shape: tuple[int, int, int, int],
    target_ms: float,
    round_to: int = 8,
    min_fraction: float = 0.05,
    max_iterations: int = 8,
    resolution: int = 2000,
    fill_tolerance: float = 0.02,
) -> LatencySelection:
    """Widths per group maximising kept importance with predicted latency <= `target_ms`.

    Stops once a prediction is within `fill_tolerance` (relative) under the target, or after
    `max_iterations` knapsack solves (each checked with the exact predictor).
    """
    cost_model = LatencyCostModel(graph, profile, input_shape)
    names, cands, options, fixed_layers = cost_model.options(scores, round_to, min_fraction)
    current = predict_latency(graph.model, profile, input_shape, model_hint=graph.model_name)
    constant = current.constant_ms
    if current.total_ms <= target_ms:
        keep = {g: torch.arange(w) for g, w in graph.widths().items()}
        return LatencySelection(keep, current.total_ms, target_ms, 0)
    min_ms = _minimum_reachable(graph, scores, cands, names, profile, input_shape)
    if min_ms > target_ms:
        raise PrunekitError(
            f"latency goal {target_ms:.3f} ms is below what {graph.model_name} reaches on {profile.name} "
            f"even at the minimum width of every group ({min_ms:.3f} ms predicted)",
            f"ask for at least {min_ms:.3f} ms (a budget of {min_ms / current.total_ms:.2f} of dense)",
        )
    # The knapsack's linearised costs are exact only at the current widths: pruning two neighbouring
    # groups together saves more than the sum of their separate savings, so a solution can land far
    # *below* the target as well as above it. Search the knapsack budget both ways (shifted by the
    # prediction error until the target is bracketed, then bisection) for the largest prediction <= target.
    min_cost = sum(min(c for c, _ in opts) for opts in options)
    max_cost = sum(max(c for c, _ in opts) for opts in options)
    budget = target_ms - constant - fixed_layers
    feasible: float | None = None  # largest knapsack budget known to predict <= target
    infeasible: float | None = None  # smallest known to predict > target
    best: LatencySelection | None = None
    for it in range(1, max_iterations + 1):
        budget = min(max(budget, min_cost), max_cost)
        choice = solve_grouped_knapsack(options, budget, resolution)
        widths = {n: cands[i][j] for i, (n, j) in enumerate(zip(names, choice, strict=True))}
        keep = widths_to_keep(scores, widths)
        predicted = predict_for_keep(graph, keep, profile, input_shape)
        if predicted <= target_ms:
            if best is None or predicted > best.predicted_ms:
                best = LatencySelection(keep, predicted, target_ms, it)
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
    if best is None:
        widths = {n: c[0] for n, c in zip(names, cands, strict=True)}
        keep = widths_to_keep(scores, widths)
        best = LatencySelection(keep, predict_for_keep(graph, keep, profile, input_shape), target_ms, max_iterations)
    return best


def check_reachable(
    graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int], target_ms: float, round_to: int,
    min_fraction: float = 0.05,
) -> float:
    """Raise before any training when `target_ms` is below the minimum-width model's prediction."""
    scores = {g.name: torch.ones(g.width) for g in graph.groups}
    cands = [candidate_widths(g.width, round_to, max(1, int(round(g.width * min_fraction)))) for g in graph.groups]
    names = [g.name for g in graph.groups]
    min_ms = _minimum_reachable(graph, scores, cands, names, profile, input_shape)
    if min_ms > target_ms:
        dense_ms = predict_latency(graph.model, profile, input_shape, model_hint=graph.model_name).total_ms
        raise PrunekitError(
            f"latency goal {target_ms:.3f} ms is below what {graph.model_name} reaches on {profile.name} "
            f"even at the minimum width of every group ({min_ms:.3f} ms predicted)",
            f"ask for at least {min_ms:.3f} ms (a --latency-budget of {min_ms / dense_ms:.2f} or more)",
        )
    return min_ms


def _minimum_reachable(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    cands: list[list[int]],
    names: list[str],
    profile: Profile,
    input_shape: tuple[int, int, int, int],
) -> float:
    widths = {n: c[0] for n, c in zip(names, cands, strict=True)}
    return predict_for_keep(graph, widths_to_keep(scores, widths), profile, input_shape)
