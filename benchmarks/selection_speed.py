"""How fast and how close a latency-knapsack selection step is (issue: <= 2 s for resnet50 @ 224).

    python benchmarks/selection_speed.py                     # resnet18@32, mobilenet_v2@224, resnet50@224
    python benchmarks/selection_speed.py --models resnet50 --budgets 0.5

As `compress` does, the dense and minimum-width models are predicted exactly first (the goal's
reachability check); they anchor the cheap predictor. Then, per model and budget, two kinds of
step are timed:

    waypoint   a scheduled method's intermediate step (`max_exact=0`): knapsack solves against
               the cheap predictor (table sum + constant interpolated between known exact
               predictions), nothing exported
    final      the goal itself, checked with the exact predictor (an ONNX export + ORT's
               optimiser for ORT profiles), corrected and re-solved if it is off

It prints the seconds of each, the knapsack solves and exact predictions, and for the waypoint
how far its cheap prediction is from the exact one of the same widths (computed after the timing).
The profile is the shipped `cpu-ort`.
"""

from __future__ import annotations

import argparse
import time

import torch

from prunekit.latency.profile import load_profile
from prunekit.models import build_model
from prunekit.pruning import PruningGraph
from prunekit.select.latency import check_reachable, predict_current, predict_for_keep, select_for_latency

CASES = {"resnet18": 32, "mobilenet_v2": 224, "resnet50": 224}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(CASES))
    ap.add_argument("--budgets", default="0.7,0.5,0.3")
    ap.add_argument("--profile", default="cpu-ort")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    torch.set_num_threads(1)
    print(f"{'model':<14}{'size':>5}{'budget':>8}{'waypoint s':>12}{'final s':>9}{'solves':>8}{'exact':>7}"
          f"{'cheap err':>11}{'final/goal':>12}")
    for name in args.models.split(","):
        size = CASES.get(name, 224)
        shape = (profile.batch_size, 3, size, size)
        model = build_model(name, 10 if size <= 64 else 1000).eval()
        graph = PruningGraph(model, torch.zeros(shape), name)
        scores = graph.importance("magnitude")
        dense = predict_current(graph, profile, shape).total_ms
        budgets = [float(x) for x in args.budgets.split(",")]
        check_reachable(graph, profile, shape, min(budgets) * dense, 8)
        for b in budgets:
            t = time.perf_counter()
            way = select_for_latency(graph, scores, profile, shape, b * dense, max_exact=0)
            t_way = time.perf_counter() - t
            t = time.perf_counter()
            sel = select_for_latency(graph, scores, profile, shape, b * dense)
            t_final = time.perf_counter() - t
            exact_way = predict_for_keep(graph, way.keep, profile, shape)
            err = way.predicted_ms / exact_way - 1
            print(f"{name:<14}{size:>5}{b:>8.2f}{t_way:>12.2f}{t_final:>9.2f}{sel.iterations:>8}"
                  f"{sel.exact_predictions:>7}{err:>+11.2%}{sel.predicted_ms / (b * dense):>12.3f}", flush=True)


if __name__ == "__main__":
    main()
