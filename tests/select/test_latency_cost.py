"""The knapsack's latency costs are full marginal costs, and the selection lands near its goal."""

from __future__ import annotations

import pytest
import torch

from prunekit.latency.predict import predict_latency
from prunekit.latency.profile import load_profile
from prunekit.models import build_model
from prunekit.pruning import PruningGraph
from prunekit.select.latency import LatencyCostModel, candidate_widths, select_for_latency

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def setup():
    profile = load_profile("cpu-ort")
    graph = PruningGraph(build_model("resnet18", 10).eval(), torch.zeros(SHAPE), "resnet18")
    return profile, graph, LatencyCostModel(graph, profile, SHAPE)


def test_costs_at_current_widths_sum_to_the_table(setup):
    profile, graph, cm = setup
    scores = {g.name: torch.ones(g.width) for g in graph.groups}
    names, cands, options, fixed = cm.options(scores, 8, 0.05)
    at_full = sum(opts[c.index(graph.group(n).width)][0] for n, c, opts in zip(names, cands, options, strict=True))
    assert at_full + fixed == pytest.approx(cm.table_ms(graph.widths()), rel=1e-9)


def test_each_marginal_equals_the_single_group_table_difference(setup):
    """A layer shared by two groups used to be charged half to each: marginals showed 0.5x."""
    profile, graph, cm = setup
    scores = {g.name: torch.ones(g.width) for g in graph.groups}
    names, cands, options, _ = cm.options(scores, 8, 0.05)
    full = graph.widths()
    base = cm.table_ms(full)
    for n, c, opts in zip(names, cands, options, strict=True):
        at_full = opts[c.index(full[n])][0]
        for k, (cost, _v) in zip(c, opts, strict=True):
            trial = dict(full)
            trial[n] = k
            assert cost - at_full == pytest.approx(cm.table_ms(trial) - base, rel=1e-6, abs=1e-9)


def test_table_sum_matches_the_predictor_on_a_pruned_model(setup):
    profile, graph, cm = setup
    widths = {n: max(8, (w // 2) // 8 * 8) for n, w in graph.widths().items()}
    trial = build_model("resnet18", 10).eval()
    tg = PruningGraph(trial, torch.zeros(SHAPE), "resnet18")
    tg.prune({n: torch.arange(k) for n, k in widths.items()})
    assert cm.table_ms(widths) == pytest.approx(predict_latency(trial, profile, SHAPE).layers_ms, rel=1e-6)


def test_candidate_widths_honour_round_to_and_group_step():
    assert candidate_widths(64, 8, 8) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert candidate_widths(96, 8, 1, step=12) == [24, 48, 72, 96]  # lcm(8, 12) = 24
    assert candidate_widths(6, 8, 1) == [6]


@pytest.mark.parametrize("budget", [0.7, 0.5, 0.3])
def test_selection_fills_the_goal_with_few_exact_predictions(setup, budget):
    profile, graph, _ = setup
    dense = predict_latency(graph.model, profile, SHAPE).total_ms
    scores = graph.importance("magnitude")
    sel = select_for_latency(graph, scores, profile, SHAPE, budget * dense)
    assert budget * dense * 0.97 <= sel.predicted_ms <= budget * dense
    assert sel.exact_predictions <= 3
