"""End-to-end calibration on sampled pruned copies (prunekit.latency.subnets): the monotone fit and
its inverse against hand computation, and, on a simulated device with a cache cliff the table
cannot see, calibrated predictions that land where raw ones do not."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

from prunekit.latency.layers import enumerate_layers
from prunekit.latency.measure import Timer
from prunekit.latency.ort_layers import cell_macs
from prunekit.latency.schema import SubnetCalibration
from prunekit.latency.subnets import (
    calibrated_ratio,
    find_calibration,
    fit_curve,
    predicted_target,
    sample_keep,
    sample_levels,
)
from prunekit.pruning import PruningGraph, candidate_widths
from prunekit.runtimes import RUNTIMES, Runtime, register_runtime

SHAPE = (1, 3, 16, 16)


def _cal(points: list[tuple[float, float]]) -> SubnetCalibration:
    return SubnetCalibration(points=points, dense_predicted_ms=1.0)


def test_the_curve_interpolates_through_dense_and_scales_below_the_narrowest_copy():
    cal = _cal([(0.5, 0.25)])
    assert calibrated_ratio(cal, 1.0) == pytest.approx(1.0)
    assert calibrated_ratio(cal, 0.75) == pytest.approx(0.625)  # halfway from (0.5, 0.25) to (1, 1)
    assert calibrated_ratio(cal, 0.2) == pytest.approx(0.1)  # proportional below: 0.2 * 0.25 / 0.5
    assert calibrated_ratio(cal, 1.2) == pytest.approx(1.2)  # a slower-than-dense prediction is kept
    # the inverse: 0.5 measured is reached at 0.5 + (0.5 - 0.25) / 0.75 * 0.5 predicted
    assert predicted_target(cal, 0.5) == pytest.approx(0.5 + 0.25 / 0.75 * 0.5, abs=1e-6)
    assert predicted_target(cal, 0.1) == pytest.approx(0.2, abs=1e-6)


def test_noisy_copies_that_disagree_are_pooled_into_a_monotone_curve():
    curve = fit_curve([(0.4, 0.3), (0.6, 0.2)])  # the faster-measured wider copy: timing noise
    assert curve[0][1] == pytest.approx(0.25) and curve[1][1] == pytest.approx(0.25)
    assert curve[-1] == (1.0, 1.0)
    ys = [m for _, m in curve]
    assert ys == sorted(ys)


def test_the_inverse_of_a_convex_curve_matches_its_exact_inverse():
    cal = _cal([(p / 10, (p / 10) ** 2) for p in range(1, 10)])  # measured = predicted ** 2
    for budget in (0.2, 0.5, 0.7):
        assert predicted_target(cal, budget) == pytest.approx(budget ** 0.5, abs=0.02)
        assert calibrated_ratio(cal, predicted_target(cal, budget)) == pytest.approx(budget, abs=1e-6)


def _net(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4)).eval()


def test_sampled_copies_use_widths_the_selection_may_choose():
    model = _net()
    rng = random.Random(0)
    for level in sample_levels(6):
        graph = PruningGraph(copy.deepcopy(model), torch.zeros(SHAPE), "net")
        keep = sample_keep(graph, level, rng, round_to=8)
        for g in graph.groups:
            assert len(keep[g.name]) in candidate_widths(g.width, 8, max(1, round(g.width * 0.05)))
        graph.prune(keep)  # and the copy is a model that runs
    assert sample_levels(6)[0] < sample_levels(6)[-1] < 1.0


class CliffRuntime(Runtime):
    """A simulated device: 1 ms per MMAC, but a model with more than 80 % of the dense model's
    weights streams them from memory and runs twice as slow. Layers timed one by one never do."""

    name = "cliff-sim"
    summary = "simulated: cache cliff"
    dense_params = 0

    def version(self) -> str:
        return "cliff-sim 1.0"

    def timer(self, model, input_shape, execution, clock="auto"):
        module = model.torch_module()
        ms = sum(s.macs for s in enumerate_layers(module, tuple(input_shape))) / 1e6
        params = sum(p.numel() for p in module.parameters())
        if params > 0.8 * type(self).dense_params:
            ms *= 2.0
        return Timer(lambda n: [ms] * n, "wall")

    def measure_cells(self, info, cells, execution, batch=1, on_chunk=None):
        out = {(a, b): cell_macs(info, a, b, batch) / 1e6 for a, b in cells}
        if on_chunk is not None:
            on_chunk(len(cells))
        return out


@pytest.fixture
def cliff(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))
    register_runtime(CliffRuntime)
    CliffRuntime.dense_params = sum(p.numel() for p in _net().parameters())
    yield
    del RUNTIMES["cliff-sim"]


def _pruned(model: nn.Module, width: int) -> nn.Module:
    graph = PruningGraph(copy.deepcopy(model), torch.zeros(SHAPE), "net")
    graph.prune({g.name: torch.arange(width) for g in graph.groups})
    return graph.model.eval()


def test_profile_subnets_calibrate_what_the_table_cannot_see(cliff, tmp_path):
    from prunekit.latency.predict import predict_latency
    from prunekit.latency.profiler import profile_model

    model = _net()
    run = profile_model("cliff", "cliff-sim", model, 16, num_classes=4, out=tmp_path / "cliff.json",
                        progress=False, subnets=4, calibrate=False)
    cal = find_calibration(run.profile, model, SHAPE)
    assert cal is not None and len(cal.points) == 4 and len(run.subnets) == 4
    dense_pred = predict_latency(model, run.profile, SHAPE).total_ms
    held_out = _pruned(model, 40)  # a uniform copy: not one of the random ones
    raw = predict_latency(held_out, run.profile, SHAPE).total_ms / dense_pred
    truth = raw / 2.0  # dense streams its weights (x2), the copy does not
    assert raw == pytest.approx(2 * truth)  # the table alone is 100 % off
    assert calibrated_ratio(cal, raw) == pytest.approx(truth, rel=0.1)
    # and a budget is aimed through it: every copy measured half its prediction, so a measured 0.45
    # is aimed far above 0.45, on the segment from the widest copy to dense
    (p, m) = cal.points[-1]
    assert m < 0.45 and predicted_target(cal, 0.45) == pytest.approx(p + (0.45 - m) / (1 - m) * (1 - p), abs=1e-6)
    assert predicted_target(cal, 0.45) > 0.7


def test_a_calibration_is_not_used_for_another_model_or_once_the_table_moved(cliff, tmp_path):
    from prunekit.latency.profiler import profile_model

    model = _net()
    prof = profile_model("cliff", "cliff-sim", model, 16, num_classes=4, out=tmp_path / "cliff.json",
                         progress=False, subnets=2, calibrate=False).profile
    assert find_calibration(prof, model, SHAPE) is not None
    assert find_calibration(prof, _net(48), SHAPE) is None  # same geometry, narrower: another dense prediction
    assert find_calibration(prof, model, (1, 3, 32, 32)) is None  # other input size
    moved = prof.model_copy(deep=True)
    for entry in moved.table.values():
        entry.ms = [[v * 1.5 for v in row] if isinstance(row, list) else row * 1.5 for row in entry.ms]
    assert find_calibration(moved, model, SHAPE) is None  # stale: the table was re-measured since
