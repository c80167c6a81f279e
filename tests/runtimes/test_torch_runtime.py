"""The torch runtime: PyTorch eager timing on the CPU (CUDA events where a GPU is present)."""

from __future__ import annotations

import pytest
import torch
from latency_helpers import INPUT, tiny_model

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import TimingOptions
from prunekit.runtimes import Execution, ModelRef, get_runtime

TORCH = get_runtime("torch")


def test_time_model_on_the_cpu_leaves_the_model_alone():
    model = tiny_model()
    stats = TORCH.time_model(model, INPUT, Execution(device="cpu"), TimingOptions(warmup=1, repeats=3))
    assert stats.runs == 3 and stats.median_ms > 0 and stats.clock == "wall"
    half = TORCH.time_model(model, INPUT, Execution(device="cpu", precision="fp16"), TimingOptions(repeats=2))
    assert half.runs == 2
    assert next(model.parameters()).dtype == torch.float32  # timed on a copy


def test_pair_and_onnx_only_is_an_error():
    pair = TORCH.time_pair(tiny_model(), tiny_model(), INPUT, Execution(), TimingOptions(repeats=6, block=3))
    assert pair.mode == "blocks" and pair.dense.runs == 6
    with pytest.raises(PrunekitError, match="times PyTorch models"):
        TORCH.time_model(ModelRef(onnx=b"x"), INPUT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu():
    with pytest.raises(MissingDependencyError, match="no CUDA GPU"):
        TORCH.resolve_device("cuda")
    assert TORCH.resolve_device("auto") == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_events():
    stats = TORCH.time_model(tiny_model(), INPUT, Execution(device="cuda:0"), TimingOptions(warmup=3, repeats=10))
    assert stats.runs == 10 and stats.median_ms > 0 and stats.clock == "cuda"


def test_measure_cells_cpu():
    info = {"op": "conv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (8, 8)}
    cells = TORCH.measure_cells(info, [(8, 8), (8, 16)], Execution(device="cpu"))
    assert set(cells) == {(8, 8), (8, 16)} and all(v > 0 for v in cells.values())
