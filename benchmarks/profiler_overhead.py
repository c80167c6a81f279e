"""What ONNX Runtime's profiler adds to every node, dense and pruned side by side.

    python benchmarks/profiler_overhead.py                                  # the default cases
    python benchmarks/profiler_overhead.py --cases mobilenet_v3_small@32 resnet50@224

The latency table's cells and the graph constant's op costs are kernel times read from ONNX
Runtime's profiler (prunekit.runtimes.ort_session.profile_onnx_nodes), so whatever the profiler
adds per node is in every priced node, and the prediction removes it with one per-node
correction (the profile's `per_node_ms`). This benchmark checks that premise on whole models:
for the dense model and the Torch-Pruning copies of benchmarks/latency_model.py's held-out levels
it prints the node count, the sum of the profiled node times, the warm end-to-end median
(consecutive runs of one session, the timing thread's CPU time, 1 thread) and
(profiled - end-to-end) / nodes. Where that per-node difference is the same for dense and pruned,
one correction per profile is enough; where it is large against the nodes' own time (small
models at 32 px), any error in a profiled price is magnified once the correction is taken off.
Results also go to benchmarks/results/profiler_overhead.json.

    python benchmarks/profiler_overhead.py --cells          # the same question for layer-cell sessions

`--cells` times sessions of layer cells as `prunekit profile` builds them (the first chunk of
the lazy grid for four signatures, small at 4x4 to large at 56x56), each twice: the profiled node
sum, the warm end-to-end time with inputs and outputs bound to preallocated buffers (less the
fixed cost of one run), and their difference per node. Two repeats that agree say the difference
is a property of the session's layers, not noise. (It was the basis of a per-session shift of the
cells, tried 2026-12-03 and not adopted: profiles/README.md "Splits C to F, two ideas that did
not help".)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency_model import HELDOUT_LEVELS, prune  # noqa: E402

from prunekit.deploy.onnx import to_onnx  # noqa: E402
from prunekit.models import build_model  # noqa: E402
from prunekit.runtimes.ort_session import input_feed, ort_session, profile_onnx_nodes  # noqa: E402

CASES = ["mobilenet_v3_small@32", "resnet50@32", "mnasnet1_0@224", "regnet_y_400mf@224"]


def warm_median_ms(data: bytes, shape: tuple[int, int, int, int], runs: int) -> float:
    """Median of consecutive warm runs of one session, the calling thread's CPU time (1 thread)."""
    sess = ort_session(data, 1)
    feed = input_feed(sess, shape)
    for _ in range(20):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.thread_time()
        sess.run(None, feed)
        times.append(time.thread_time() - t)
    return statistics.median(times) * 1e3


CELL_CASES: dict[str, tuple[dict, list[tuple[int, int]]]] = {
    "dwconv 3x3 @4x4": ({"op": "dwconv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (4, 4)},
                        [(c, c) for c in range(16, 600, 16)]),
    "conv 1x1 @4x4": ({"op": "conv", "kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "input_hw": (4, 4)},
                      [(c, 2 * c) for c in range(16, 400, 16)]),
    "conv 3x3 @16x16": ({"op": "conv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (16, 16)},
                        [(c, c) for c in range(16, 260, 16)]),
    "conv 3x3 @56x56": ({"op": "conv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (56, 56)},
                        [(c, c) for c in range(16, 130, 16)]),
}


def bound_run_times(data: bytes, warmup: int, repeats: int) -> list[float]:
    """Warm per-run times (ms, thread CPU time, 1 thread), inputs and outputs bound to preallocated
    buffers (IOBinding), so converting many outputs to numpy is not timed."""
    import numpy as np

    from prunekit.latency.measure import clock_timer

    sess = ort_session(data, 1)
    feed = input_feed(sess)
    shapes = [o.shape for o in sess.run(None, feed)]
    binding = sess.io_binding()
    for name, value in feed.items():
        binding.bind_cpu_input(name, value)
    buffers = [np.empty(shape, dtype=np.float32) for shape in shapes]
    for spec, buf in zip(sess.get_outputs(), buffers, strict=True):
        binding.bind_output(spec.name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
    timer = clock_timer(lambda: sess.run_with_iobinding(binding), "cpu")
    timer.warm(warmup)
    return timer.timed(repeats)  # `buffers` stays alive until here: the binding writes into them


def run_floor_ms() -> float:
    """The fixed cost of one bound run: a session of a single Relu on one number."""
    from onnx import TensorProto
    from onnx import helper as oh

    from prunekit.latency.measure import band_mean

    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"], name="floor")], "floor", [x], [y])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return band_mean(bound_run_times(model.SerializeToString(), 20, 300))


def cell_sessions(console: Console, out: Path) -> int:
    """Per-node (profiled - end-to-end) of layer-cell sessions, each timed twice."""
    from prunekit.latency.measure import band_mean
    from prunekit.latency.ort_layers import WeightPool, build_cells_graph, chunk_cells

    floor = run_floor_ms()
    table = Table(title=f"layer-cell sessions: profiler vs bound warm run (1 thread; run floor {floor * 1e3:.2f} us)")
    for col in ("cells", "count", "nodes", "mean node us", "profiled ms", "end-to-end ms", "(prof - e2e) / node", "repeat"):
        table.add_column(col, justify="left" if col == "cells" else "right")
    rows = []
    for name, (info, cells) in CELL_CASES.items():
        chunk = chunk_cells(info, cells, 1)[0]
        graph = build_cells_graph(info, chunk, 1, WeightPool())
        shifts = []
        for _ in range(2):
            nodes, _ = profile_onnx_nodes(graph, 1, warmup=2, repeats=40)
            profiled = sum(n["ms"] for n in nodes)
            e2e = band_mean(bound_run_times(graph, 2, 60))  # the same statistic as the kernel times
            shifts.append(1e3 * (profiled - (e2e - floor)) / len(nodes))
        rows.append({"cells": name, "count": len(chunk), "nodes": len(nodes), "profiled_ms": round(profiled, 4),
                     "e2e_ms": round(e2e, 4), "shift_us": [round(v, 2) for v in shifts]})
        table.add_row(name, str(len(chunk)), str(len(nodes)), f"{1e3 * profiled / len(nodes):.1f}", f"{profiled:.3f}",
                      f"{e2e:.3f}", f"{shifts[0]:+.2f} us", f"{shifts[1]:+.2f} us")
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profiler_overhead_cells.json").write_text(json.dumps({"floor_us": round(floor * 1e3, 3), "rows": rows}, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Per-node profiler overhead, dense vs pruned.")
    ap.add_argument("--cases", nargs="*", default=CASES, help="model@size (10 classes at 32 px, else 1000)")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--cells", action="store_true", help="time layer-cell sessions instead of models")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    console = Console(width=130)
    if args.cells:
        return cell_sessions(console, Path(args.out))
    table = Table(title="ONNX Runtime profiler vs warm end-to-end (1 thread)")
    for col in ("model", "size", "variant", "nodes", "profiled sum ms", "end-to-end ms", "(profiled - e2e) / node"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    rows = []
    for case in args.cases:
        name, size = case.split("@")
        shape = (1, 3, int(size), int(size))
        dense = build_model(name, 10 if int(size) < 100 else 1000).eval()
        variants = [("dense", dense)] + [(lab, prune(dense, shape, r, c, rt)) for lab, r, c, rt in HELDOUT_LEVELS]
        for label, model in variants:
            data = to_onnx(model, shape).data
            nodes, _ = profile_onnx_nodes(data, 1, warmup=5, repeats=100)
            profiled = sum(n["ms"] for n in nodes)
            e2e = warm_median_ms(data, shape, args.runs)
            per_node_us = 1e3 * (profiled - e2e) / len(nodes)
            rows.append({"model": name, "size": int(size), "variant": label, "nodes": len(nodes),
                         "profiled_ms": round(profiled, 4), "e2e_ms": round(e2e, 4), "per_node_us": round(per_node_us, 2)})
            table.add_row(name, size, label, str(len(nodes)), f"{profiled:.3f}", f"{e2e:.3f}", f"{per_node_us:+.2f} us")
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profiler_overhead.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
