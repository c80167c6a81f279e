"""Measurement helpers: ONNX Runtime timing, interleaved pairs, clear errors for missing runtimes."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from latency_helpers import INPUT, tiny_model
from torch import nn

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import (
    measure_onnx,
    measure_pair,
    measure_tensorrt,
    measure_torch,
    model_to_onnx,
    require_runtime,
)


def test_measure_onnx_and_pair(tmp_path):
    dense = model_to_onnx(tiny_model(), INPUT, tmp_path / "dense.onnx")
    assert (tmp_path / "dense.onnx").read_bytes() == dense
    small = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)
    )
    stats = measure_onnx(tmp_path / "dense.onnx", threads=1, warmup=2, repeats=7)
    assert stats.runs == 7 and 0 < stats.median_ms <= stats.p90_ms and stats.clock == "cpu"
    assert measure_onnx(dense, threads=1, warmup=1, repeats=3, clock="wall").clock == "wall"
    pair = measure_pair(dense, model_to_onnx(small, INPUT), threads=1, warmup=2, repeats=9)
    assert pair.dense.runs == pair.pruned.runs == 9 and pair.ratio > 0


def test_cpu_clock_needs_one_thread(tmp_path):
    dense = model_to_onnx(tiny_model(), INPUT)
    with pytest.raises(PrunekitError, match="single-threaded"):
        measure_onnx(dense, threads=2, repeats=1, clock="cpu")


def test_missing_onnx_file_is_a_clear_error(tmp_path):
    with pytest.raises(PrunekitError, match="does not exist"):
        measure_onnx(tmp_path / "nope.onnx")


def test_measure_torch_cpu():
    stats = measure_torch(tiny_model(), INPUT, "cpu", warmup=1, repeats=3)
    assert stats.runs == 3 and stats.median_ms > 0


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available(),
    reason="TensorRT and a GPU are present",
)
def test_tensorrt_missing_is_a_clear_error():
    with pytest.raises(MissingDependencyError):
        require_runtime("tensorrt")
    with pytest.raises(MissingDependencyError):
        measure_tensorrt(b"not used")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_torch_cuda_events():
    stats = measure_torch(tiny_model(), INPUT, "cuda", warmup=3, repeats=10)
    assert stats.runs == 10 and stats.median_ms > 0


@pytest.mark.tensorrt
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
    reason="needs TensorRT and a CUDA GPU",
)
def test_measure_tensorrt_engine():
    stats = measure_tensorrt(model_to_onnx(tiny_model(), INPUT), fp16=True, warmup=3, repeats=10)
    assert stats.median_ms > 0
