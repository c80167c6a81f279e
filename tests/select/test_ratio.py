"""Ratio rules and the Goal: per-group, global (AdaSAP_P), MACs; `select` dispatches on the goal."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.models import build_model
from prunekit.pruning import PruningGraph, count_macs_params
from prunekit.select import Goal, final_point, select, select_global_ratio, select_ratio


def test_per_group_rule_keeps_the_same_fraction_of_every_group():
    scores = {"a": torch.arange(32.0), "b": torch.arange(16.0).flip(0)}
    keep = select_ratio(scores, 0.5, {"a": 32, "b": 16}, round_to=8)
    assert keep["a"].tolist() == list(range(16, 32))  # the highest scores
    assert keep["b"].tolist() == list(range(8))


def test_global_rule_ranks_all_channels_together():
    # group "low" scores below everything in "high": a global rank empties it to its minimum
    scores = {"high": torch.linspace(10, 20, 32), "low": torch.linspace(0, 1, 32)}
    keep = select_global_ratio(scores, 0.5, {"high": 32, "low": 32}, round_to=8)
    assert len(keep["high"]) == 32
    assert len(keep["low"]) == 8  # at least round_to where the group is wider than that
    per_group = select_ratio(scores, 0.5, {"high": 32, "low": 32}, round_to=8)
    assert len(per_group["high"]) == len(per_group["low"]) == 16
    # every group keeps at least one channel even when all of its scores lose
    tiny = select_global_ratio({"x": torch.ones(4) * 5, "y": torch.zeros(4)}, 0.5, {"x": 4, "y": 4}, round_to=1)
    assert len(tiny["x"]) == 4 and len(tiny["y"]) == 1


def test_global_rule_keeps_the_asked_fraction_of_all_channels():
    torch.manual_seed(0)
    scores = {f"g{i}": torch.rand(64) * (i + 1) for i in range(6)}
    widths = {k: 64 for k in scores}
    keep = select_global_ratio(scores, 0.3, widths, round_to=1)
    assert sum(len(v) for v in keep.values()) == pytest.approx(0.3 * 64 * 6, abs=6)
    lowest_kept = min(float(scores[g][k].min()) for g, k in keep.items() if len(k) > 1)
    dropped = torch.cat([scores[g][[i for i in range(64) if i not in set(k.tolist())]] for g, k in keep.items()])
    assert float(dropped.max()) <= lowest_kept + 1e-6  # a threshold over the whole model


def test_goal_checks_its_fields():
    with pytest.raises(PrunekitError):
        Goal(kind="speed")
    with pytest.raises(PrunekitError):
        Goal(kind="ratio", rank="random")
    with pytest.raises(PrunekitError):
        Goal(kind="latency")  # no profile, no target


def test_select_dispatches_on_the_goal_and_macs_rule_meets_the_macs():
    model = build_model("resnet18", 10).eval()
    example = torch.zeros(1, 3, 32, 32)
    graph = PruningGraph(model, example, "resnet18")
    scores = graph.importance("magnitude")
    keep, info = select(graph, scores, Goal(kind="ratio", ratio=0.5))
    assert info == {"keep_fraction": 0.5}
    assert all(len(k) == max(8, round(graph.group(n).width * 0.5 / 8) * 8) for n, k in keep.items())
    global_keep, _ = select(graph, scores, Goal(kind="ratio", ratio=0.5, rank="global"))
    assert global_keep.keys() == keep.keys()
    macs_goal = Goal(kind="ratio", ratio=0.5, ratio_of="macs")
    keep_frac = final_point(graph, scores, macs_goal)
    dense_macs, _ = count_macs_params(model, example)
    keep, _ = select(graph, scores, macs_goal)
    graph.prune(keep)
    assert count_macs_params(model, example)[0] <= 0.5 * dense_macs
    assert 0.5 < keep_frac < 1.0
