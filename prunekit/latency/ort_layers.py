"""ONNX graphs of single layers, many grid points per graph (what the onnxruntime runtime times).

Each graph holds one small layer per grid point (Conv + Relu, so ONNX Runtime fuses the
activation into the convolution as it does in a real CNN; Gemm for Linear), built directly
with `onnx.helper` (no torch export per point). The onnxruntime runtime
(`prunekit.runtimes.onnxruntime`) runs them under ONNX Runtime's profiler, which gives every
node's kernel time, so the layout reorders ONNX Runtime inserts around an isolated layer
(absent between two layers of a real model) are not counted: the table holds the layer's own
kernel time, and reorders that do occur in a model are priced by the profile's constant model.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from onnx import TensorProto
from onnx import helper as oh

from prunekit.latency.layers import OP_DWCONV, OP_GCONV, OP_LINEAR

TAG = re.compile(r"^L(\d+)(?:\D|$)")  # node name -> grid point index
GMACS_PER_S = 30.0  # rough single-core speed, only used to size sessions and repeat counts


class WeightPool:
    """A pool of small random floats sliced into initializers (fast graph building)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = np.zeros(0, dtype=np.float32)

    def take(self, n: int) -> np.ndarray:
        if self.pool.size < n:
            self.pool = (self.rng.standard_normal(max(n, 1 << 20), dtype=np.float32) * 0.05).astype(
                np.float32
            )
        return self.pool[:n]


def cell_macs(info: dict[str, Any], cin: int, cout: int, batch: int) -> int:
    """Multiply-accumulates of one grid point (to size sessions)."""
    if info["op"] == OP_LINEAR:
        return batch * int(info["rows"]) * cin * cout
    kh, kw = info["kernel"]
    sh, sw = info["stride"]
    ph, pw = info["padding"]
    dh, dw = info.get("dilation", (1, 1))
    h, w = info["input_hw"]
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    groups = cin if info["op"] == OP_DWCONV else int(info.get("groups", 1))
    return batch * (cin // groups) * cout * kh * kw * max(ho, 1) * max(wo, 1)


def build_cells_graph(
    info: dict[str, Any], cells: list[tuple[int, int]], batch: int, weights: WeightPool | None = None
) -> bytes:
    """One ONNX graph with a layer per (cin, cout) cell; node names start with `L<index>`."""
    weights = weights or WeightPool()
    nodes, inits, inputs, outputs = [], [], [], []
    seen_inputs: dict[tuple[int, ...], str] = {}
    op = info["op"]
    for j, (cin, cout) in enumerate(cells):
        if op == OP_LINEAR:
            rows = int(info["rows"])
            shape = (batch, cin) if rows == 1 else (batch, rows, cin)
        else:
            shape = (batch, cin, *info["input_hw"])
        x = seen_inputs.get(shape)
        if x is None:
            x = f"x{len(seen_inputs)}"
            seen_inputs[shape] = x
            inputs.append(oh.make_tensor_value_info(x, TensorProto.FLOAT, list(shape)))
        y = f"L{j}y"
        if op == OP_LINEAR:
            w = oh.make_tensor(
                f"L{j}w",
                TensorProto.FLOAT,
                [cout, cin] if info["rows"] == 1 else [cin, cout],
                weights.take(cin * cout),
            )
            b = oh.make_tensor(f"L{j}b", TensorProto.FLOAT, [cout], weights.take(cout))
            inits += [w, b]
            if info["rows"] == 1:
                nodes.append(oh.make_node("Gemm", [x, w.name, b.name], [y], name=f"L{j}gemm", transB=1))
            else:
                nodes.append(oh.make_node("MatMul", [x, w.name], [f"L{j}m"], name=f"L{j}mm"))
                nodes.append(oh.make_node("Add", [f"L{j}m", b.name], [y], name=f"L{j}add"))
        else:
            groups = cin if op == OP_DWCONV else (int(info["groups"]) if op == OP_GCONV else 1)
            kh, kw = info["kernel"]
            ph, pw = info["padding"]
            w = oh.make_tensor(
                f"L{j}w",
                TensorProto.FLOAT,
                [cout, cin // groups, kh, kw],
                weights.take(cout * (cin // groups) * kh * kw),
            )
            b = oh.make_tensor(f"L{j}b", TensorProto.FLOAT, [cout], weights.take(cout))
            inits += [w, b]
            nodes.append(
                oh.make_node(
                    "Conv",
                    [x, w.name, b.name],
                    [f"L{j}c"],
                    name=f"L{j}conv",
                    kernel_shape=[kh, kw],
                    strides=list(info["stride"]),
                    pads=[ph, pw, ph, pw],
                    dilations=list(info.get("dilation", (1, 1))),
                    group=groups,
                )
            )
            nodes.append(oh.make_node("Relu", [f"L{j}c"], [y], name=f"L{j}relu"))
        outputs.append(oh.make_tensor_value_info(y, TensorProto.FLOAT, None))
    graph = oh.make_graph(nodes, "cells", inputs, outputs, inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def chunk_cells(
    info: dict[str, Any],
    cells: list[tuple[int, int]],
    batch: int,
    max_ms: float = 60.0,
    max_weight_mb: float = 64.0,
    max_cells: int = 48,
) -> list[list[tuple[int, int]]]:
    """Split cells into sessions small enough to build fast and run in tens of ms."""
    chunks: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    ms = mb = 0.0
    for cin, cout in cells:
        c_ms = cell_macs(info, cin, cout, batch) / (GMACS_PER_S * 1e6)
        k = info.get("kernel", (1, 1))
        groups = cin if info["op"] == OP_DWCONV else int(info.get("groups", 1))
        c_mb = 4 * cout * (cin // groups) * k[0] * k[1] / 2**20
        if cur and (ms + c_ms > max_ms or mb + c_mb > max_weight_mb or len(cur) >= max_cells):
            chunks.append(cur)
            cur, ms, mb = [], 0.0, 0.0
        cur.append((cin, cout))
        ms += c_ms
        mb += c_mb
    if cur:
        chunks.append(cur)
    return chunks
