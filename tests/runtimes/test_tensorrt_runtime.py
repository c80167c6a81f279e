"""The tensorrt runtime: a clear error without TensorRT or a GPU; a real engine where both exist."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from latency_helpers import INPUT, tiny_model

from prunekit.errors import MissingDependencyError
from prunekit.latency.measure import TimingOptions
from prunekit.runtimes import Execution, get_runtime
from prunekit.runtimes.tensorrt import require_tensorrt

TRT = get_runtime("tensorrt")
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present")
def test_tensorrt_missing_is_a_clear_error():
    reason = TRT.available()
    assert reason in ("TensorRT is not installed", "no CUDA GPU is available on this machine")
    with pytest.raises(MissingDependencyError, match=reason):
        TRT.require()
    with pytest.raises(MissingDependencyError):
        require_tensorrt()
    with pytest.raises(MissingDependencyError):
        TRT.time_model(tiny_model(), INPUT, Execution(device="cuda:0", precision="fp16"))


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engine_timing():
    stats = TRT.time_model(tiny_model(), INPUT, Execution(device="cuda:0", precision="fp16"),
                           TimingOptions(warmup=3, repeats=10))
    assert stats.median_ms > 0 and stats.clock == "cuda"
