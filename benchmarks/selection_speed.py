"""How fast and how close a latency-knapsack selection step is (issue: <= 2 s for resnet50 @ 224).

    python benchmarks/selection_speed.py                     # resnet18@32, mobilenet_v2@224, resnet50@224
    python benchmarks/selection_speed.py --models resnet50 --budgets 0.5

For each model and budget: wall time of one `select_for_latency` call (the dense prediction is
made first, as `compress` does when it sets the goal), the number of knapsack solves and of exact
(ONNX-exporting) predictions, where the first knapsack solve landed relative to the goal, and the
final predicted / goal ratio. The profile is the shipped `cpu-ort`.
"""

from __future__ import annotations

import argparse
import time

import torch

from prunekit.latency.profile import load_profile
from prunekit.models import build_model
from prunekit.pruning import PruningGraph
from prunekit.select.latency import predict_current, select_for_latency

CASES = {"resnet18": 32, "mobilenet_v2": 224, "resnet50": 224}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(CASES))
    ap.add_argument("--budgets", default="0.7,0.5,0.3")
    ap.add_argument("--profile", default="cpu-ort")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    torch.set_num_threads(1)
    print(f"{'model':<14}{'size':>5}{'budget':>8}{'seconds':>9}{'solves':>8}{'exact':>7}{'first/goal':>12}{'final/goal':>12}")
    for name in args.models.split(","):
        size = CASES.get(name, 224)
        shape = (profile.batch_size, 3, size, size)
        model = build_model(name, 10 if size <= 64 else 1000).eval()
        graph = PruningGraph(model, torch.zeros(shape), name)
        scores = graph.importance("magnitude")
        dense = predict_current(graph, profile, shape).total_ms
        for b in (float(x) for x in args.budgets.split(",")):
            t = time.perf_counter()
            sel = select_for_latency(graph, scores, profile, shape, b * dense)
            dt = time.perf_counter() - t
            first = next(e["exact_ms"] for e in sel.trace if "exact_ms" in e)
            print(f"{name:<14}{size:>5}{b:>8.2f}{dt:>9.2f}{sel.iterations:>8}{sel.exact_predictions:>7}"
                  f"{first / (b * dense):>12.3f}{sel.predicted_ms / (b * dense):>12.3f}")


if __name__ == "__main__":
    main()
