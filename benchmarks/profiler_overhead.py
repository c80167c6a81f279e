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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Per-node profiler overhead, dense vs pruned.")
    ap.add_argument("--cases", nargs="*", default=CASES, help="model@size (10 classes at 32 px, else 1000)")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    console = Console(width=130)
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
