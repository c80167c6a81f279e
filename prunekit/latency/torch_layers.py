"""The table unit the torch and tensorrt runtimes time for one grid point of a layer signature.

PyTorch eager runs Conv -> BatchNorm -> ReLU as separate kernels, so a table unit is that
triple (what an eager model executes); TensorRT folds BatchNorm and fuses the activation, so
its unit is the same triple exported to ONNX and built into an engine. The timing itself is the
runtimes' (`prunekit.runtimes.torch`, `prunekit.runtimes.tensorrt`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.latency.layers import OP_DWCONV, OP_GCONV, OP_LINEAR


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
