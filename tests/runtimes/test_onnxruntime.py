"""The onnxruntime runtime: real timing of tiny ONNX models, clocks, errors, layer cells."""

from __future__ import annotations

import pytest
from latency_helpers import INPUT, tiny_model
from torch import nn

from prunekit.deploy.onnx import to_onnx
from prunekit.errors import PrunekitError
from prunekit.latency.measure import TimingOptions
from prunekit.runtimes import Execution, ModelRef, get_runtime

ORT = get_runtime("onnxruntime")


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 4)).eval()


def test_time_model_from_file_bytes_or_module(tmp_path):
    dense = to_onnx(tiny_model(), INPUT, path=tmp_path / "dense.onnx").data
    assert (tmp_path / "dense.onnx").read_bytes() == dense
    stats = ORT.time_model(tmp_path / "dense.onnx", INPUT, Execution(threads=1), TimingOptions(warmup=2, repeats=7))
    assert stats.runs == 7 and 0 < stats.median_ms <= stats.p90_ms and stats.clock == "cpu"
    wall = ORT.time_model(dense, INPUT, Execution(threads=1), TimingOptions(warmup=1, repeats=3, clock="wall"))
    assert wall.clock == "wall"
    assert ORT.time_model(ModelRef(module=tiny_model()), INPUT, timing=TimingOptions(repeats=3)).runs == 3


@pytest.mark.parametrize("mode", ["blocks", "interleaved"])
def test_time_pair_both_modes(mode):
    timing = TimingOptions(mode=mode, warmup=2, repeats=9, block=4)
    pair = ORT.time_pair(tiny_model(), small(), INPUT, Execution(threads=1), timing)
    assert pair.mode == mode and pair.dense.runs == pair.pruned.runs == 9 and pair.ratio > 0
    assert pair.to_dict()["ratio_spread"]["pairs"] == (3 if mode == "blocks" else 9)


def test_cpu_clock_needs_one_thread():
    with pytest.raises(PrunekitError, match="single-threaded"):
        ORT.time_model(tiny_model(), INPUT, Execution(threads=2), TimingOptions(repeats=1, clock="cpu"))


def test_missing_onnx_file_is_a_clear_error(tmp_path):
    with pytest.raises(PrunekitError, match="does not exist"):
        ORT.time_model(tmp_path / "nope.onnx", INPUT)


def test_runs_on_the_cpu_only():
    assert ORT.available() is None and ORT.version().startswith("onnxruntime ")
    assert ORT.resolve_device("auto") == "cpu"
    with pytest.raises(PrunekitError, match="profiled on the CPU"):
        ORT.resolve_device("cuda")
    with pytest.raises(PrunekitError, match="fp32"):
        ORT.check_precision("fp16")


def test_measure_cells_and_alignment():
    info = {"op": "conv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (8, 8)}
    seen = []
    cells = ORT.measure_cells(info, [(8, 8), (8, 16), (16, 16)], Execution(threads=1), on_chunk=seen.append)
    assert set(cells) == {(8, 8), (8, 16), (16, 16)} and all(v > 0 for v in cells.values())
    assert sum(seen) == 3
    align_cin, align_cout, pad = ORT.alignment(Execution(threads=1))
    assert align_cin >= 1 and align_cout >= 1 and pad >= 1
