"""Latency-budgeted selection on the shipped cpu-ort profile (resnet18 @ 32 px is covered)."""

from __future__ import annotations

import json

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.latency.predict import predict_latency
from prunekit.latency.profile import load_profile
from prunekit.models import build_model
from prunekit.pruning import PruningGraph
from prunekit.select.latency import check_reachable, minimum_widths, select_for_latency

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def profile():
    return load_profile("cpu-ort")


@pytest.mark.parametrize("budget", [0.7, 0.4])
def test_knapsack_meets_the_predicted_budget_on_round_widths(profile, budget):
    model = build_model("resnet18", 10).eval()
    graph = PruningGraph(model, torch.zeros(SHAPE), "resnet18")
    dense_ms = predict_latency(model, profile, SHAPE).total_ms
    scores = graph.importance("magnitude")
    sel = select_for_latency(graph, scores, profile, SHAPE, budget * dense_ms, round_to=8)
    assert sel.predicted_ms <= budget * dense_ms
    assert sel.predicted_ms >= 0.8 * budget * dense_ms  # it uses the budget, not far below it
    for name, kept in sel.keep.items():
        assert len(kept) % 8 == 0 or len(kept) == graph.group(name).width
    graph.prune(sel.keep)
    assert predict_latency(model, profile, SHAPE).total_ms == pytest.approx(sel.predicted_ms, rel=1e-6)


def test_unreachable_budget_names_the_minimum(profile):
    graph = PruningGraph(build_model("resnet18", 10), torch.zeros(SHAPE), "resnet18")
    with pytest.raises(PrunekitError, match="minimum width of every group"):
        check_reachable(graph, profile, SHAPE, 1e-4, 8)


def test_a_measured_minimum_within_the_budget_moves_the_target_instead_of_refusing(profile):
    # the profile over-predicts small pruned models: where the minimum widths *measure* within the
    # budget (compress --verify), the target goes onto the line through (1, 1) and the measured minimum
    graph = PruningGraph(build_model("resnet18", 10), torch.zeros(SHAPE), "resnet18")
    dense = predict_latency(graph.model, profile, SHAPE).total_ms
    timed = []
    _, min_ms = minimum_widths(graph, profile, SHAPE, 8)
    p_min = min_ms / dense

    def measure(g, keep):
        timed.append({k: len(v) for k, v in keep.items()})
        return p_min / 2  # the minimum runs twice as fast as predicted

    budget = p_min * 0.8  # below the predicted minimum, above the measured one
    aimed = check_reachable(graph, profile, SHAPE, budget * dense, 8, measured=(measure, budget))
    assert len(timed) == 1 and all(w < graph.group(n).width for n, w in timed[0].items())
    expected = 1 - (1 - budget) * (1 - p_min) / (1 - p_min / 2)
    assert aimed == pytest.approx(max(min_ms, expected * dense))
    assert min_ms <= aimed < dense
    with pytest.raises(PrunekitError, match="measured .* of dense here"):
        check_reachable(graph, profile, SHAPE, 1e-4, 8, measured=(measure, p_min / 3))


def test_the_measured_loop_floors_a_corrected_target_at_the_minimum_widths(profile):
    graph = PruningGraph(build_model("resnet18", 10), torch.zeros(SHAPE), "resnet18")
    keep, min_ms = minimum_widths(graph, profile, SHAPE, 8)
    scores = graph.importance("magnitude")
    with pytest.raises(PrunekitError, match="minimum width"):
        select_for_latency(graph, scores, profile, SHAPE, 0.5 * min_ms, round_to=8)
    sel = select_for_latency(graph, scores, profile, SHAPE, 0.5 * min_ms, round_to=8, floor_at_minimum=True)
    assert {g: len(k) for g, k in sel.keep.items()} == {g: len(k) for g, k in keep.items()}
    assert sel.predicted_ms == pytest.approx(min_ms)


def test_unreachable_budget_fails_before_training(cli, tmp_path):
    result = cli(["compress", "--target", "cpu-ort", "--latency-budget", "0.01", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "ask for at least" in result.output
    assert not (tmp_path / "r").exists()


def test_missing_signature_names_the_profile_command(cli, tmp_path):
    result = cli(["compress", "--target", "cpu-ort", "--latency-budget", "0.5", "--input-size", "40",
                  "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "prunekit profile" in result.output


FAST = ["--pretrain-epochs", "0", "--epochs", "0", "--batch-size", "256", "--target", "cpu-ort",
        "--latency-budget", "0.5"]


@pytest.mark.parametrize(
    "method, extra",
    [
        ("magnitude", []),
        ("halp", ["--prune-steps", "2", "--prune-every", "2"]),
        ("adasap", ["--prune-steps", "2", "--prune-every", "2", "--warmup-epochs", "1"]),
        ("csam", ["--mask-epochs", "1"]),
        ("s2ap", ["--score-epochs", "1", "--pgd-train-steps", "1"]),
    ],
)
def test_every_method_meets_its_latency_budget(cli, tmp_path, method, extra):
    result = cli(["compress", *FAST, "--method", method, *extra, "--out", str(tmp_path / method), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["goal"]["met"] is True and report["goal"]["met_by"] == "table"
    assert report["pruned"]["predicted_latency_ms"] <= 0.5 * report["dense"]["predicted_latency_ms"] + 1e-9
    assert report["pruned"]["params"] < report["dense"]["params"]


def test_goal_caption_says_which_evidence_decided():
    from prunekit.report import goal_caption

    measured = {"budget": 0.5, "met": False, "met_by": "measured", "met_table": True, "measured_ratio": 0.561,
                "measured_how": "onnxruntime, warm blocks"}
    assert goal_caption(measured) == "latency budget 0.5: missed, measured ratio 0.561 (onnxruntime, warm blocks)"
    table = {"budget": 0.7, "met": True, "met_by": "table", "met_table": True}
    assert goal_caption(table) == "latency budget 0.7: met by the latency table (not measured)"
    assert goal_caption({"budget": None, "target_ms": 3.0}) is None and goal_caption(None) is None
