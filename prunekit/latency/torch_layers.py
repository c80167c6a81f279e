"""Time single layers on PyTorch eager (CPU or CUDA) and on TensorRT.

PyTorch eager runs Conv -> BatchNorm -> ReLU as separate kernels, so a table unit is that
triple (what an eager model executes); TensorRT folds BatchNorm and fuses the activation, so
its unit is the same triple exported to ONNX and built into an engine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.latency.layers import OP_DWCONV, OP_GCONV, OP_LINEAR
from prunekit.latency.measure import time_module


def layer_module(info: dict[str, Any], cin: int, cout: int) -> nn.Module:
    """The torch module one grid point times: Conv2d+BN+ReLU, or Linear."""
    if info["op"] == OP_LINEAR:
        return nn.Linear(cin, cout)
    groups = cin if info["op"] == OP_DWCONV else (int(info["groups"]) if info["op"] == OP_GCONV else 1)
    conv = nn.Conv2d(
        cin,
        cout,
        tuple(info["kernel"]),
        tuple(info["stride"]),
        tuple(info["padding"]),
        tuple(info.get("dilation", (1, 1))),
        groups=groups,
        bias=False,
    )
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def input_shape_for(info: dict[str, Any], cin: int, batch: int) -> tuple[int, ...]:
    if info["op"] == OP_LINEAR:
        rows = int(info["rows"])
        return (batch, cin) if rows == 1 else (batch, rows, cin)
    return (batch, cin, *info["input_hw"])


def _time_torch(mod: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> float:
    return float(statistics.median(time_module(mod, x, warmup, repeats)))


def measure_cells_torch(
    info: dict[str, Any],
    cells: list[tuple[int, int]],
    batch: int,
    device: str,
    half: bool = False,
    warmup: int = 5,
    repeats: int = 25,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[tuple[int, int], float]:
    """Median eager latency (ms) per grid point; CUDA timed with CUDA events."""
    dev = torch.device(device)
    dtype = torch.float16 if half else torch.float32
    out: dict[tuple[int, int], float] = {}
    for cin, cout in cells:
        mod = layer_module(info, cin, cout).to(dev, dtype).eval()
        x = torch.rand(input_shape_for(info, cin, batch), device=dev, dtype=dtype)
        out[(cin, cout)] = _time_torch(mod, x, warmup, repeats)
        if on_chunk is not None:
            on_chunk(1)
    return out


def measure_cells_tensorrt(
    info: dict[str, Any],
    cells: list[tuple[int, int]],
    batch: int,
    fp16: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[tuple[int, int], float]:
    """Median TensorRT latency (ms) per grid point: one engine per point, built from ONNX."""
    from prunekit.latency.measure import measure_tensorrt, model_to_onnx

    out: dict[tuple[int, int], float] = {}
    for cin, cout in cells:
        mod = layer_module(info, cin, cout).eval()
        shape = input_shape_for(info, cin, batch)
        data = model_to_onnx(mod, shape)  # type: ignore[arg-type]
        out[(cin, cout)] = measure_tensorrt(data, fp16=fp16, warmup=10, repeats=50).median_ms
        if on_chunk is not None:
            on_chunk(1)
    return out
