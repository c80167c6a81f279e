"""Does the latency predictor track pruned vision transformers? Predicted vs measured, heads and MLP.

    python benchmarks/transformer_latency.py --profile PROFILE.json
    python benchmarks/transformer_latency.py --profile P.json --models timm:deit_tiny_patch16_224 --repeats 40
    python benchmarks/transformer_latency.py --profile P.json --predict-only --out /tmp/before.json

For each model (224x224, batch 1, 1000 classes, untrained: latency does not depend on the
weights) the dense model and copies pruned by prunekit (`PruningGraph`: whole heads, MLP hidden
widths on multiples of 8; the embedding width kept), uniformly over the blocks:

    heads-2/3            2/3 of every block's heads kept (deit_tiny: 2 of 3; vit_small: 4 of 6)
    heads-1/3            1/3 of the heads kept
    mlp-1/2              half of every MLP's hidden width
    heads-1/3+mlp-1/4    both

are timed on the profile's runtime against the dense model (`Runtime.time_pair`: warm blocks, the
runtime's clock; ONNX Runtime with one thread: the thread's CPU time) and predicted from the
profile (`prunekit.latency.predict_latency`). Reported: measured and predicted ms, the error, and
the pruned / dense ratios (measured vs predicted). `--predict-only` skips the timing (to compare
predictors on the same variants). Writes JSON rows to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ["timm:deit_tiny_patch16_224", "timm:vit_small_patch16_224"]
LEVELS: list[tuple[str, float, float]] = [  # label, fraction of heads kept, of MLP width kept
    ("heads-2/3", 2 / 3, 1.0),
    ("heads-1/3", 1 / 3, 1.0),
    ("mlp-1/2", 1.0, 0.5),
    ("heads-1/3+mlp-1/4", 1 / 3, 0.25),
]


def pruned_copy(model_name: str, heads_keep: float, mlp_keep: float, shape: tuple[int, int, int, int]) -> nn.Module:
    """A fresh model with every block's heads and MLP width cut to the given fractions."""
    from prunekit.models import build_model
    from prunekit.pruning import PruningGraph, kept_width

    model = build_model(model_name, 1000).eval()
    graph = PruningGraph(model, torch.zeros(shape), model_name)
    keep = {}
    for g in graph.groups:
        if g.step > 1:  # whole heads (units of head_dim)
            keep[g.name] = torch.arange(max(g.step, int(round(g.width / g.step * heads_keep)) * g.step))
        elif len(g.out_layers) == 1:  # an MLP's hidden width
            keep[g.name] = torch.arange(kept_width(g.width, mlp_keep, round_to=8))
    graph.prune(keep)
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True, help="profile name or file")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--predict-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transformer_latency.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from prunekit.latency.measure import TimingOptions
    from prunekit.latency.predict import predict_latency
    from prunekit.latency.profile import load_profile
    from prunekit.models import build_model
    from prunekit.runtimes import Execution, ModelRef, get_runtime

    prof = load_profile(args.profile)
    shape = (prof.batch_size, 3, 224, 224)
    runtime = get_runtime(prof.runtime)
    execution = Execution.of_profile(prof, runtime)
    timing = TimingOptions(mode="blocks", warmup=5, repeats=args.repeats)
    rows = []
    started = time.time()
    for name in args.models:
        dense = build_model(name, 1000).eval()
        dense_pred = predict_latency(dense, prof, shape, model_hint=name)
        dense_ref = ModelRef(module=dense)
        for label, hk, mk in [("dense", 1.0, 1.0), *LEVELS]:
            model = dense if label == "dense" else pruned_copy(name, hk, mk, shape)
            pred = dense_pred if label == "dense" else predict_latency(model, prof, shape, model_hint=name)
            row = {"model": name, "variant": label, "predicted_ms": round(pred.total_ms, 3),
                   "layers_ms": round(pred.layers_ms, 3), "constant_ms": round(pred.constant_ms, 3),
                   "predicted_ratio": round(pred.total_ms / dense_pred.total_ms, 4),
                   "unpriced_ops": pred.unpriced_ops,
                   "constant_detail": {k: round(v, 3) for k, v in sorted(pred.constant_detail.items())}}
            if not args.predict_only:
                pair = runtime.time_pair(dense_ref, ModelRef(module=model), shape, execution, timing)
                row.update(measured_ms=round(pair.pruned.median_ms, 3), measured_fast_ms=round(pair.pruned.fast_ms, 3),
                           dense_measured_ms=round(pair.dense.median_ms, 3), measured_ratio=round(pair.ratio, 4),
                           error_pct=round((pred.total_ms / pair.pruned.median_ms - 1) * 100, 1),
                           clock=pair.pruned.clock)
            rows.append(row)
            meas = (f"measured {row['measured_ms']:8.3f} ms (ratio {row['measured_ratio']:.3f})  "
                    if "measured_ms" in row else "")
            print(f"{name:30s} {label:18s} {meas}predicted {row['predicted_ms']:8.3f} ms "
                  f"(ratio {row['predicted_ratio']:.3f}; layers {row['layers_ms']:.3f} + constant "
                  f"{row['constant_ms']:.3f})" + (f"  error {row['error_pct']:+.1f} %" if "error_pct" in row else ""),
                  flush=True)
    errs = [abs(r["error_pct"]) for r in rows if "error_pct" in r]
    summary = {"profile": str(args.profile), "rows": len(rows), "seconds": round(time.time() - started, 1),
               "load_average": round(os.getloadavg()[0], 2),
               "median_abs_error_pct": round(statistics.median(errs), 1) if errs else None,
               "max_abs_error_pct": round(max(errs), 1) if errs else None}
    print(json.dumps(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
