"""The copies end-to-end calibration times (prunekit.select.calibrate): the knapsack's own choices,
kept in the profile, and on a simulated device with a cache cliff the table cannot see, calibrated
predictions that land where raw ones do not."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunekit.latency.layers import enumerate_layers
from prunekit.latency.measure import Timer
from prunekit.latency.ort_layers import cell_macs
from prunekit.latency.subnets import SAMPLER, calibrated_ratio, find_calibration, predicted_target
from prunekit.pruning import PruningGraph
from prunekit.runtimes import RUNTIMES, Runtime, register_runtime
from prunekit.select.calibrate import calibrate_profile, calibration_keeps
from prunekit.select.latency import predict_for_keep

SHAPE = (1, 3, 16, 16)
KEY = "net@16x16/c4"


def _net(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4)).eval()


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
        if sum(p.numel() for p in module.parameters()) > 0.8 * type(self).dense_params:
            ms *= 2.0
        return Timer(lambda n: [ms] * n, "wall")

    def measure_cells(self, info, cells, execution, batch=1, on_chunk=None):
        out = {(a, b): cell_macs(info, a, b, batch) / 1e6 for a, b in cells}
        if on_chunk is not None:
            on_chunk(len(cells))
        return out


@pytest.fixture
def cliff(monkeypatch, tmp_path):
    from prunekit.latency.profiler import profile_model

    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))
    register_runtime(CliffRuntime)
    CliffRuntime.dense_params = sum(p.numel() for p in _net().parameters())
    path = tmp_path / "cliff.json"
    run = profile_model("cliff", "cliff-sim", _net(), 16, num_classes=4, out=path, progress=False, calibrate=False)
    yield path, run.profile
    del RUNTIMES["cliff-sim"]


def _pruned(model: nn.Module, width: int) -> nn.Module:
    graph = PruningGraph(copy.deepcopy(model), torch.zeros(SHAPE), "net")
    graph.prune({g.name: torch.arange(width) for g in graph.groups})
    return graph.model.eval()


def test_the_copies_are_the_knapsacks_choices_from_the_minimum_widths_up(cliff):
    _, prof = cliff
    graph = PruningGraph(_net(), torch.zeros(SHAPE), "net")
    keeps = calibration_keeps(graph, prof, SHAPE, 5)
    ratios = [predict_for_keep(graph, k, prof, SHAPE) for k in keeps]
    assert 3 <= len(keeps) <= 5 and ratios == sorted(ratios)  # distinct, from narrow to wide
    for keep in keeps:
        assert all(len(k) % 8 == 0 for k in keep.values())  # the selection's own widths (round_to 8)


def test_a_calibration_corrects_what_the_table_cannot_see(cliff):
    from prunekit.latency.predict import predict_latency

    path, prof = cliff
    model = _net()
    cal = calibrate_profile(path, prof, model, SHAPE, KEY, 4, model_name="net")
    assert cal.sampler == SAMPLER and 3 <= len(cal.points) <= 4
    from prunekit.latency.store import read_profile_file

    stored = read_profile_file(path)
    assert stored.models[KEY].subnets == cal
    found = find_calibration(stored, model, SHAPE)
    assert found == cal
    dense_pred = predict_latency(model, prof, SHAPE).total_ms
    held_out = _pruned(model, 40)  # a uniform copy: not one of the knapsack's
    raw = predict_latency(held_out, prof, SHAPE).total_ms / dense_pred
    truth = raw / 2.0  # dense streams its weights (x2), the copy does not
    assert calibrated_ratio(cal, raw) == pytest.approx(truth, rel=0.15)  # the table alone: 100 % off
    # a budget is aimed through it: what measures 0.45 is predicted far above 0.45
    assert predicted_target(cal, 0.45) > 0.6  # the table alone would aim at 0.45


def test_a_calibration_is_not_used_for_another_model_sampler_or_once_the_table_moved(cliff):
    path, prof = cliff
    model = _net()
    cal = calibrate_profile(path, prof, model, SHAPE, KEY, 2, model_name="net")
    from prunekit.latency.store import read_profile_file

    stored = read_profile_file(path)
    assert find_calibration(stored, model, SHAPE) is not None
    assert find_calibration(stored, _net(48), SHAPE) is None  # same geometry, narrower: another dense prediction
    assert find_calibration(stored, model, (1, 3, 32, 32)) is None  # other input size
    moved = stored.model_copy(deep=True)
    for entry in moved.table.values():
        entry.ms = [[v * 1.5 for v in row] if isinstance(row, list) else row * 1.5 for row in entry.ms]
    assert find_calibration(moved, model, SHAPE) is None  # stale: the table was re-measured since
    old = stored.model_copy(deep=True)
    old.models[KEY].subnets = cal.model_copy(update={"sampler": "random"})
    assert find_calibration(old, model, SHAPE) is None  # copies from the first, random sampler


def test_refining_times_the_aim_and_moves_it_until_the_budget_measures(cliff):
    """Two coarse copies interpolate straight across the simulated cliff; the copy at that aim
    measures far under the budget. Refining times it, corrects the aim (proportionally, as
    --verify does) and keeps every timed copy, and the aim it chose, in the profile; a second run
    at the same budget reuses that aim and times nothing."""
    from prunekit.latency.store import read_profile_file
    from prunekit.select.calibrate import refine_calibration

    path, prof = cliff
    model = _net()
    coarse = calibrate_profile(path, prof, model, SHAPE, KEY, 2, model_name="net")
    budget = 0.27  # reachable at round_to 8: the copy with 3/4 of the widths measures 0.26
    first = predicted_target(coarse, budget)
    refined, aim = refine_calibration(path, prof, model, SHAPE, KEY, coarse, budget, model_name="net")
    assert len(refined.points) > len(coarse.points)
    stored = read_profile_file(path).models[KEY].subnets
    assert stored is not None and sorted(stored.points) == sorted(refined.points)
    measured = dict(refined.points)
    assert any(0.94 * budget <= m <= 1.03 * budget for m in measured.values())
    assert aim > first  # below the cliff every copy measures half its prediction: aim higher
    near = [m for p, m in refined.points if abs(p - aim) <= 1e-4]
    assert near and 0.94 * budget <= near[0] <= 1.03 * budget  # the aim is a copy timed in the window
    assert stored.aims == {"0.27": pytest.approx(aim, abs=1e-5)}
    again, aim2 = refine_calibration(path, prof, model, SHAPE, KEY, stored, budget, model_name="net")
    assert again.points == stored.points and aim2 == pytest.approx(aim, abs=1e-5)
