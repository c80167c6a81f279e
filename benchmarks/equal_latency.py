"""Accuracy at equal measured latency: prunekit's halp vs Torch-Pruning r8 uniform pruning.

    python benchmarks/equal_latency.py                                   # 2 models x 2 budgets x 5 seeds
    python benchmarks/equal_latency.py --models resnet18 --budgets 0.3 --seeds 0 1   # a quick look

The HALP paper's claim is accuracy at a given latency. Per model and seed a dense model is
pretrained once on the built-in digits (32x32); then, per latency budget b (fraction of dense),
with the default `--anchor tp`:

    tp-r8      Torch-Pruning's MagnitudePruner (GroupMagnitudeImportance p=2, uniform ratio,
               round_to=8) with the ratio bisected until its *measured* latency ratio is within 2 %
               of b, or the closest it gets (at 32 px resnet18's latency jumps where its weights
               start to fit the last-level cache: a uniform ratio can land on either side, not on
               the cliff), then fine-tuned for the same number of training steps as halp takes
               after its first pruning step (its fine-tune epochs + the between-step iterations)
    halp       `prunekit compress --method halp --target local --latency-budget t --verify` from the
               dense weights, t = the ratio tp-r8 *measured*: HALP Taylor importance, 4 knapsack
               steps on the exponential schedule with `--prune-every` training iterations in
               between (the last one timed here and corrected until it measures t, within
               [0.94, 1.03] x t), then `--epochs` of fine-tuning. halp is then timed against
               tp-r8 directly; when the two differ by more than 5 %, halp is pruned once more
               with its budget divided by that ratio. The summary's "halp / tp latency" is that
               side-by-side ratio after fine-tuning: the equal-latency check itself.

`--anchor halp` is the other order (halp pruned to b first, tp-r8 bisected to halp's measured
ratio), which at 32 px can leave the pair unmatched. `--target cpu-ort --no-verify` prunes halp
for the shipped table instead (measured on another machine).

Both pruned models are exported to ONNX and timed against the dense export with ONNX Runtime (1
thread, warm blocks, in five fresh sessions: the median of the five sessions' ratios of medians). Clean accuracy and corrupted accuracy (five corruptions
at severity 3) are measured on the validation split. The summary gives mean +- std over seeds and
the paired difference halp - tp (mean, std, and in how many seeds halp was ahead).

Results: <out>/equal_latency.{csv,md}.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
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
from prunekit.data import load_data  # noqa: E402
from prunekit.errors import PrunekitError  # noqa: E402
from prunekit.latency.measure import TimingOptions  # noqa: E402
from prunekit.models import build_model  # noqa: E402
from prunekit.pruning import count_macs_params  # noqa: E402
from prunekit.robustness.metrics import evaluate_corruptions, torch_predictor  # noqa: E402
from prunekit.runs import load_run, save_weights  # noqa: E402
from prunekit.runtimes import get_runtime  # noqa: E402
from prunekit.runtimes.base import Execution, ModelRef  # noqa: E402
from prunekit.settings import make_settings  # noqa: E402
from prunekit.train import TrainConfig, fit  # noqa: E402

CORRUPTIONS = ["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"]
MATCH_TOL = 0.02
# five fresh sessions per pair, the median of their ratios: at 32 px one session's ratio is 15-35 % off
TIMING = TimingOptions(sessions=5)


@dataclass
class Result:
    model: str
    budget: float
    seed: int
    method: str
    measured_ratio: float
    macs_ratio: float
    params_ratio: float
    clean: float
    corrupted: float
    tp_ratio: float | None = None
    vs_tp: float | None = None  # halp's latency / tp-r8's, the two timed side by side (halp rows)


def evaluate(model: nn.Module, data, seed: int) -> tuple[float, float]:
    rep = evaluate_corruptions(torch_predictor(model, torch.device("cpu")), data.loader("val", 256, shuffle=False),
                               CORRUPTIONS, [3], seed=seed)
    return rep.clean_accuracy, rep.mean_corruption_accuracy


def write(results: list[Result], out: Path, skipped: list[str]) -> str:
    """Write the CSV and the markdown summary (after every pair, so a stopped run keeps its rows)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "equal_latency.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(results[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in results)
    text = summary(results)
    if skipped:
        text += "\n\nNot run (halp refused the budget):\n" + "\n".join(f"- {x}" for x in skipped)
    (out / "equal_latency.md").write_text(text + "\n")
    return text


def run(args: argparse.Namespace) -> tuple[list[Result], list[str]]:
    """The results, and the (model, budget, seed) pairs halp refused."""
    data = load_data("digits")
    size = data.input_size
    shape = (1, 3, size, size)
    example = torch.zeros(shape)
    ort = get_runtime("onnxruntime")
    ex = Execution(threads=1)
    steps_per_epoch = math.ceil(len(data.train_set) / args.batch_size)
    results: list[Result] = []
    skipped: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="prunekit-eqlat-"))

    def side_by_side(tp_model: nn.Module, halp_model: nn.Module) -> float:
        # halp's latency over tp-r8's, the two timed against each other. Both fit in cache, so this
        # ratio is stable where each one's ratio to the memory-bound dense model drifts with the
        # host's memory traffic (+-15 % between minutes at 32 px).
        return ort.time_pair(ModelRef(module=tp_model), ModelRef(module=halp_model), shape, ex, TIMING).ratio

    for seed in args.seeds:  # seeds outer: a run stopped early has every model at the same seeds
        for name in args.models:
            torch.manual_seed(seed)
            dense = build_model(name, data.num_classes)
            fit(dense, data, TrainConfig(epochs=args.pretrain_epochs, seed=seed, batch_size=args.batch_size),
                stage="pretrain", device=torch.device("cpu"), quiet=True)
            dense.eval()
            weights = work / f"{name}-{seed}.safetensors"
            save_weights(dense, weights)
            dmacs, dparams = count_macs_params(dense, example)
            dref = ModelRef(module=dense)
            for budget in args.budgets:
                out = work / f"{name}-{seed}-{budget}"
                measure = lambda m, d=dref: ort.time_pair(d, ModelRef(module=m), shape, ex, TIMING).ratio  # noqa: E731
                tp_first = None
                halp_budget = budget
                if args.anchor == "tp":
                    # Torch-Pruning r8 lands where its staircase (and, at 32 px, the cache cliff) lets it;
                    # halp is then asked for exactly that measured ratio and --verify corrects it there.
                    tp_first = match_latency(dense, example, budget, measure, start=1.0 - budget ** 0.5, steps=8,
                                             tol=MATCH_TOL)
                    halp_budget = round(tp_first[1], 4)
                settings = make_settings(model=name, data="digits", weights=str(weights), method="halp",
                                         target=args.target, latency_budget=halp_budget, pretrain_epochs=0,
                                         epochs=args.epochs, seed=seed, batch_size=args.batch_size,
                                         verify=args.verify, verify_tries=args.verify_tries)
                try:
                    compress(settings, out, force=True, quiet=True)
                    halp = load_run(out).pruned.eval()
                    if tp_first is not None:  # equal latency checked directly; one correction
                        rel = side_by_side(tp_first[2], halp)
                        if abs(rel - 1.0) > MATCH_TOL * 2.5:
                            settings = settings.model_copy(update={"latency_budget": round(halp_budget / rel, 4)})
                            compress(settings, out, force=True, quiet=True)
                            halp = load_run(out).pruned.eval()
                except PrunekitError as exc:  # e.g. a budget below what the narrowest model measures
                    print(f"{name:<13} b={budget:.2f} seed {seed} halp   skipped: {exc}", flush=True)
                    skipped.append(f"{name} b={budget:.2f} seed {seed}: {exc}")
                    continue
                h_ratio = measure(halp)
                h_macs, h_params = count_macs_params(halp, example)
                h_clean, h_cor = evaluate(halp, data, seed)
                results.append(Result(name, budget, seed, "halp", h_ratio, h_macs / dmacs, h_params / dparams,
                                      h_clean, h_cor))
                if tp_first is None:  # Torch-Pruning r8 at halp's measured latency: bisect the uniform ratio
                    r, _, tpm = match_latency(dense, example, h_ratio, measure, start=1.0 - budget ** 0.5, steps=8,
                                              tol=MATCH_TOL)
                else:
                    r, _, tpm = tp_first
                extra = 3 * 30  # halp's between-step iterations (prune_steps - 1) x prune_every
                ft_epochs = args.epochs + math.ceil(extra / steps_per_epoch)
                fit(tpm, data, TrainConfig(epochs=ft_epochs, seed=seed, batch_size=args.batch_size),
                    stage="finetune", device=torch.device("cpu"), quiet=True)
                tpm.eval()
                t_ratio = measure(tpm)
                t_macs, t_params = count_macs_params(tpm, example)
                t_clean, t_cor = evaluate(tpm, data, seed)
                results.append(Result(name, budget, seed, "tp-r8", t_ratio, t_macs / dmacs, t_params / dparams,
                                      t_clean, t_cor, r))
                results[-2].vs_tp = side_by_side(tpm, halp)  # after fine-tuning: the reported check
                for res in results[-2:]:
                    print(f"{res.model:<13} b={res.budget:.2f} seed {res.seed} {res.method:<6} measured "
                          f"{res.measured_ratio:.3f} MACs {res.macs_ratio:.3f} clean {res.clean:.4f} "
                          f"corrupted {res.corrupted:.4f}" + (f" halp/tp latency {res.vs_tp:.3f}" if res.vs_tp else ""),
                          flush=True)
                write(results, Path(args.out), skipped)
    return results, skipped


def _ms(values: list[float]) -> str:
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summary(results: list[Result]) -> str:
    lines = ["| model | budget | method | seeds | measured latency | MACs | clean acc | corrupted acc |",
             "|---|---|---|---|---|---|---|---|"]
    paired = ["", "| model | budget | halp / tp latency, side by side | clean: halp - tp (mean ± std) | halp ahead "
              "(seeds) | corrupted: halp - tp | halp ahead (seeds) |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(r.model, r.budget) for r in results}, key=lambda k: (k[0], -k[1]))
    for model, budget in keys:
        rows = [r for r in results if r.model == model and r.budget == budget]
        for method in ("halp", "tp-r8"):
            rs = [r for r in rows if r.method == method]
            lines.append(f"| {model} | {budget:.2f} | {method} | {len(rs)} | {_ms([r.measured_ratio for r in rs])} | "
                         f"{_ms([r.macs_ratio for r in rs])} | {_ms([r.clean for r in rs])} | "
                         f"{_ms([r.corrupted for r in rs])} |")
        by_seed = {}
        for r in rows:
            by_seed.setdefault(r.seed, {})[r.method] = r
        d_clean = [v["halp"].clean - v["tp-r8"].clean for v in by_seed.values() if len(v) == 2]
        d_cor = [v["halp"].corrupted - v["tp-r8"].corrupted for v in by_seed.values() if len(v) == 2]
        ahead = sum(d > 0 for d in d_clean)
        ahead_c = sum(d > 0 for d in d_cor)
        rel = [v["halp"].vs_tp for v in by_seed.values() if len(v) == 2 and v["halp"].vs_tp]
        paired.append(f"| {model} | {budget:.2f} | {_ms(rel)} | {_ms(d_clean)} | {ahead}/{len(d_clean)} | "
                      f"{_ms(d_cor)} | {ahead_c}/{len(d_cor)} |")
    return "\n".join(lines + paired)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.2])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--target", default="local",
                    help="halp's target: local (this CPU, profiled on first use; default) or a shipped profile")
    ap.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                    help="halp: time the candidate here and correct it until it measures the budget (default on)")
    ap.add_argument("--verify-tries", type=int, default=8, help="halp: most selections --verify makes")
    ap.add_argument("--anchor", choices=["tp", "halp"], default="tp",
                    help="tp (default): bisect Torch-Pruning r8 to the budget, then ask halp for the ratio it "
                         "measured; halp: prune halp to the budget, then bisect Torch-Pruning to halp's ratio "
                         "(at 32 px a uniform ratio can jump over it: the cache cliff)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results, skipped = run(args)
    if not results:
        print("\n".join(["nothing was measured:", *skipped]))
        return 1
    print(write(results, Path(args.out), skipped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
