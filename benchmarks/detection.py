"""Detection at equal measured latency: dense vs prunekit's halp vs Torch-Pruning r8 uniform pruning.

    python benchmarks/detection.py                                   # ssdlite on shapes, budget 0.7, seed 0
    python benchmarks/detection.py --data coco:/data/coco-mini --input-size 320 --budgets 0.5 0.7

Per seed a dense detector (`DetectorNet`, torchvision's ssdlite320_mobilenet_v3_large by default)
is trained on the data (`shapes` by default: the generated set with exact boxes, or a COCO / VOC
folder); then, per latency budget b (fraction of dense):

    halp    `compress --task detection --method halp --target local --latency-budget b [--verify]`
            from the dense weights (HALP Taylor importance from the detector's own losses, knapsack
            steps over this CPU's latency table, training in between), then `--epochs` fine-tuning;
    tp-r8   Torch-Pruning's MagnitudePruner (GroupMagnitudeImportance p=2, uniform ratio,
            round_to=8, the box / class output convs ignored) with the ratio bisected until its
            *measured* latency ratio is within 2 % of halp's, fine-tuned for as many steps as halp
            trained after its first pruning step.

Latency: the networks (no decoding / NMS, which is the same code for all three) exported to ONNX
and timed against the dense export with ONNX Runtime (1 thread, warm blocks, ratio of medians).
Accuracy: COCO mAP@[.5:.95] and mAP@.5 (pycocotools) on the validation split, and rPC = mPC /
clean mAP over five corruptions at severity 3 (Michaelis et al. 2019). Results:
<out>/detection.{csv,md}.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tp_match import match_latency  # noqa: E402

from prunekit.compress import compress  # noqa: E402
from prunekit.pruning import count_macs_params  # noqa: E402
from prunekit.runs import load_run, save_weights  # noqa: E402
from prunekit.runtimes import get_runtime  # noqa: E402
from prunekit.runtimes.base import Execution, ModelRef  # noqa: E402
from prunekit.settings import make_settings  # noqa: E402
from prunekit.tasks import get_task  # noqa: E402
from prunekit.tasks.detection.robust import detection_robustness, val_batches  # noqa: E402
from prunekit.train import TrainConfig, fit  # noqa: E402

CORRUPTIONS = ["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"]
MATCH_TOL = 0.02


@dataclass
class Result:
    model: str
    data: str
    budget: float | None
    seed: int
    method: str
    measured_ratio: float
    macs_ratio: float
    params_ratio: float
    map: float
    map_50: float
    mpc: float
    rpc: float | None
    tp_ratio: float | None = None


def scores(model: nn.Module, data, seed: int, limit: int | None) -> tuple[float, float, float, float | None]:
    batches = val_batches(data, 16, limit)
    res = detection_robustness({"m": (model.eval(), model)}, batches, data.num_classes, CORRUPTIONS, [3], seed)
    m = res["models"]["m"]
    return m["map"], m["map_50"], m["mpc"], m["rpc"]


def write(results: list[Result], out: Path) -> str:
    """Write the CSV and the markdown table (after every row, so a stopped run keeps its rows)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "detection.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(results[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in results)
    lines = ["| model | data | budget | seed | method | measured latency ratio | MACs ratio | params ratio | "
             "mAP | mAP@.5 | mPC | rPC |", "|" + "---|" * 12]
    for r in results:
        lines.append(f"| {r.model} | {r.data} | {'-' if r.budget is None else r.budget} | {r.seed} | {r.method} | "
                     f"{r.measured_ratio:.3f} | {r.macs_ratio:.3f} | {r.params_ratio:.3f} | {100 * r.map:.2f} | "
                     f"{100 * r.map_50:.2f} | {100 * r.mpc:.2f} | {'-' if r.rpc is None else f'{r.rpc:.3f}'} |")
    text = "\n".join(lines)
    (out / "detection.md").write_text(text + "\n")
    return text


def run(args: argparse.Namespace) -> list[Result]:
    task = get_task("detection")
    data = task.load_data(args.data, args.input_size, None)
    size = data.input_size
    shape = (1, 3, size, size)
    example = torch.zeros(shape)
    ort = get_runtime("onnxruntime")
    ex = Execution(threads=1)
    steps_per_epoch = math.ceil(len(data.train_set) / args.batch_size)
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="prunekit-det-"))
    for seed in args.seeds:
        torch.manual_seed(seed)
        dense = task.build_model(args.model, data.num_classes)
        fit(dense, data, TrainConfig(epochs=args.pretrain_epochs, seed=seed, batch_size=args.batch_size, lr=args.lr),
            stage="pretrain", device=torch.device("cpu"), quiet=True)
        dense.eval()
        weights = work / f"dense-{seed}.safetensors"
        save_weights(dense, weights)
        dmacs, dparams = count_macs_params(dense, example)
        dref = ModelRef(module=dense)
        results.append(Result(args.model, args.data, None, seed, "dense", 1.0, 1.0, 1.0,
                              *scores(dense, data, seed, args.limit)))
        print(f"dense seed {seed}: mAP {results[-1].map:.4f}", flush=True)
        for budget in args.budgets:
            out = work / f"halp-{seed}-{budget}"
            settings = make_settings(task="detection", model=args.model, data=args.data, input_size=size,
                                     weights=str(weights), method="halp", target=args.target, latency_budget=budget,
                                     pretrain_epochs=0, epochs=args.epochs, seed=seed, batch_size=args.batch_size,
                                     lr=args.lr, verify=args.verify,
                                     method_options={"prune_steps": args.prune_steps, "prune_every": args.prune_every})
            compress(settings, out, force=True, quiet=True)
            halp = load_run(out).pruned.eval()
            h_ratio = ort.time_pair(dref, ModelRef(module=copy.deepcopy(halp)), shape, ex).ratio
            h_macs, h_params = count_macs_params(halp, example)
            results.append(Result(args.model, args.data, budget, seed, "halp", h_ratio, h_macs / dmacs,
                                  h_params / dparams, *scores(halp, data, seed, args.limit)))
            # Torch-Pruning r8 at halp's measured latency: bisect the uniform ratio.
            r, _, tpm = match_latency(dense, example, h_ratio,
                                      lambda m, d=dref: ort.time_pair(d, ModelRef(module=copy.deepcopy(m)), shape, ex).ratio,
                                      start=1.0 - budget ** 0.5, steps=args.bisect_steps, tol=MATCH_TOL)
            extra = (args.prune_steps - 1) * args.prune_every
            fit(tpm, data, TrainConfig(epochs=args.epochs + math.ceil(extra / steps_per_epoch), seed=seed,
                                       batch_size=args.batch_size, lr=args.lr),
                stage="finetune", device=torch.device("cpu"), quiet=True)
            tpm.eval()
            t_ratio = ort.time_pair(dref, ModelRef(module=copy.deepcopy(tpm)), shape, ex).ratio
            t_macs, t_params = count_macs_params(tpm, example)
            results.append(Result(args.model, args.data, budget, seed, "tp-r8", t_ratio, t_macs / dmacs,
                                  t_params / dparams, *scores(tpm, data, seed, args.limit), r))
            for res in results[-2:]:
                print(f"b={budget:.2f} seed {seed} {res.method:<6} measured {res.measured_ratio:.3f} "
                      f"MACs {res.macs_ratio:.3f} mAP {res.map:.4f} mAP@.5 {res.map_50:.4f} rPC {res.rpc}", flush=True)
            write(results, Path(args.out))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ssdlite320_mobilenet_v3_large")
    p.add_argument("--data", default="shapes", help="shapes[:N], coco:DIR or voc:DIR")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--target", default="local")
    p.add_argument("--verify", action="store_true", help="halp: time each selection and correct it (--verify)")
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--prune-steps", type=int, default=2)
    p.add_argument("--prune-every", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--bisect-steps", type=int, default=6)
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N validation images")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    results = run(args)
    print(write(results, Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
