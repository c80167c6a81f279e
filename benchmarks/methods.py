"""Every pruning method at several latency budgets on cpu-ort, side by side, several seeds.

    python benchmarks/methods.py                      # digits, resnet18 @ 32 px, budgets 0.7/0.5/0.3, seeds 0 1 2
    python benchmarks/methods.py --quick              # one seed, budget 0.5
    python benchmarks/methods.py --data cifar10:DIR   # a local CIFAR-10 folder instead of digits

For each (method, budget, seed): `compress` from the same pretrained dense model (one per seed),
then dense and pruned timed in one process on the profile's runtime with its threads, warm
(alternating blocks of consecutive runs; the measured latency ratio), clean accuracy, accuracy under a corruption
subset (severity 3) and R_C, and the seed papers' own metrics for every method alike: accuracy
under an L-inf PGD attack (S2AP's claim; eps 2/255, 10 steps, `--eval-limit` images) and the
probabilistic certified accuracy of `prunekit eval --certify` (C-SAM's; `--certify-samples`
random corruptions per image, epsilon 0.1). Latency is timed in five fresh sessions per pair
(the median of their ratios; `prunekit.latency.measure`: sessions); `--target local --verify`
prunes for this CPU and corrects each selection by measurement. Then the per-step cost of SAM / ASAM / the cheaper every-k SAM vs
SGD, timed interleaved, and the accuracy of the every-k variant vs full SAM after fine-tuning.
Writes a CSV, a Pareto plot (measured latency ratio vs corrupted accuracy) and prints tables.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from prunekit.compress import compress_model
from prunekit.data import load_data
from prunekit.latency.measure import TimingOptions
from prunekit.latency.profile import load_profile
from prunekit.models import build_model
from prunekit.robustness.certify import certify
from prunekit.robustness.metrics import evaluate_corruptions, torch_predictor
from prunekit.robustness.pgd import adversarial_accuracy
from prunekit.runs import save_weights
from prunekit.runtimes import Execution, get_runtime
from prunekit.settings import make_settings
from prunekit.train import TrainConfig, fit, make_optimizer, train_step

METHODS = ["magnitude", "taylor", "halp", "adasap", "csam", "s2ap"]
CORRUPTIONS = ["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression", "pixelate"]
PGD_EPS, PGD_STEPS = 2 / 255, 10  # L-inf; digits at 8/255 leaves every pruned model near 0


def pretrain(args: argparse.Namespace, seed: int, out: Path) -> Path:
    path = out / f"dense-seed{seed}.safetensors"
    if path.exists():
        return path
    data = load_data(args.data, args.input_size)
    torch.manual_seed(seed)
    model = build_model(args.model, data.num_classes)
    fit(model, data, TrainConfig(epochs=args.pretrain_epochs, seed=seed), stage="pretrain", quiet=True)
    save_weights(model, path)
    return path


def run_one(args, method: str, budget: float, seed: int, weights: Path, out: Path, threads: int) -> dict:
    settings = make_settings(
        model=args.model, data=args.data, input_size=args.input_size, weights=str(weights), method=method,
        target=args.target, latency_budget=budget, pretrain_epochs=0, epochs=args.epochs, seed=seed,
        warmup_epochs=1, mask_epochs=1, score_epochs=1, verify=args.verify,
    )
    started = time.perf_counter()
    report, pruned = compress_model(settings, out / f"{method}-{budget}-s{seed}", force=True, quiet=True)
    seconds = time.perf_counter() - started
    data = load_data(args.data, args.input_size)
    dense = build_model(args.model, data.num_classes)
    from prunekit.models import load_weights

    load_weights(dense, weights)
    shape = (1, 3, args.input_size, args.input_size)
    runtime = get_runtime(load_profile(args.target).runtime)  # warm blocks (prunekit.latency.measure)
    pair = runtime.time_pair(dense.eval(), pruned.eval().cpu(), shape, Execution(threads),
                             TimingOptions(warmup=20, repeats=args.repeats, sessions=5))
    loader = data.loader("val", 128, shuffle=False)
    corr = evaluate_corruptions(torch_predictor(pruned.eval().cpu()), loader, CORRUPTIONS, [3], seed=seed)
    # the papers' own metrics, for every method alike: S2AP's PGD accuracy, C-SAM's certificate
    adv = adversarial_accuracy(pruned.eval().cpu(), loader, eps=PGD_EPS, steps=PGD_STEPS, step_size=PGD_EPS / 4,
                               seed=seed, limit=args.eval_limit)
    cert = certify(torch_predictor(pruned.eval().cpu()), loader, n_samples=args.certify_samples, epsilon=0.1,
                   corruptions=CORRUPTIONS, seed=seed, limit=args.eval_limit)
    return {
        "method": method, "budget": budget, "seed": seed,
        "predicted_ratio": report["pruned"]["predicted_latency_ms"] / report["dense"]["predicted_latency_ms"],
        "measured_ratio": pair.ratio,
        "macs_ratio": report["pruned"]["macs"] / report["dense"]["macs"],
        "accuracy": report["pruned"]["accuracy"],
        "corrupted_accuracy": corr.mean_corruption_accuracy,
        "r_c": corr.relative_robustness,
        "pgd_accuracy": adv.adversarial_accuracy,
        "certified_accuracy": cert.certified_accuracy,
        "met": pair.ratio <= budget * 1.04,
        "within_window": budget * 0.94 <= pair.ratio <= budget * 1.03,
        "seconds": seconds,
    }


def sam_cost(args, weights: Path, seed: int, steps: int = 12) -> list[dict]:
    """Per-step time of SAM variants relative to SGD, timed interleaved on the same batches."""
    data = load_data(args.data, args.input_size)
    x, y = next(iter(data.loader("train", 64, seed=seed)))
    variants = [("sgd", 1), ("sam", 1), ("asam", 1), ("sam", 2), ("sam", 4)]
    models, opts = [], []
    for name, every in variants:
        torch.manual_seed(seed)
        m = build_model(args.model, data.num_classes)
        from prunekit.models import load_weights

        load_weights(m, weights)
        m.train()
        models.append(m)
        opts.append(make_optimizer(m, TrainConfig(epochs=1, optimizer=name, rho=0.05, sam_every=every)))
    times: list[list[float]] = [[] for _ in variants]
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for step in range(steps):
        order = range(len(variants)) if step % 2 == 0 else reversed(range(len(variants)))
        for i in order:
            t0 = time.perf_counter()
            train_step(models[i], opts[i], scaler, x, y, False, torch.device("cpu"))
            if step >= 2:
                times[i].append(time.perf_counter() - t0)
    base = statistics.median(times[0])
    return [{"variant": f"{n}" + (f" every {k}" if k > 1 else ""), "step_ratio_vs_sgd": statistics.median(t) / base}
            for (n, k), t in zip(variants, times, strict=True)]


def sam_accuracy(args, weights: Path, seed: int, out: Path) -> list[dict]:
    """Fine-tuning accuracy of a 50 %-budget magnitude model with SGD, SAM, and SAM every 4."""
    rows = []
    for opt, every in (("sgd", 1), ("sam", 1), ("sam", 4)):
        settings = make_settings(model=args.model, data=args.data, input_size=args.input_size, weights=str(weights),
                                 method="magnitude", target=args.target, latency_budget=0.5, pretrain_epochs=0,
                                 epochs=args.epochs, seed=seed, finetune_optimizer=opt, sam_every=every)
        started = time.perf_counter()
        report, _ = compress_model(settings, out / f"sam-{opt}-{every}-s{seed}", force=True, quiet=True)
        rows.append({"variant": opt + (f" every {every}" if every > 1 else ""), "accuracy": report["pruned"]["accuracy"],
                     "seconds": time.perf_counter() - started})
    return rows


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    """The summary as a markdown table: mean ± std over seeds."""
    keys = ("measured_ratio", "accuracy", "corrupted_accuracy", "r_c", "pgd_accuracy", "certified_accuracy")
    out = ["| method | budget | seeds | measured | in window | clean | corrupted | R_C | PGD | certified |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for budget in args.budgets:
        for method in args.methods:
            sel = [r for r in rows if r["method"] == method and r["budget"] == budget]
            if not sel:
                continue
            cells = []
            for k in keys:
                v = [float(r[k]) for r in sel]
                cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}")
            out.append(f"| {method} | {budget} | {len(sel)} | {cells[0]} | {sum(r['within_window'] for r in sel)}/"
                       f"{len(sel)} | " + " | ".join(cells[1:]) + " |")
    return "\n".join(out) + "\n"


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--target", default="cpu-ort", help="cpu-ort (shipped table) or local (this CPU, with --verify)")
    ap.add_argument("--verify", action=argparse.BooleanOptionalAction, default=False,
                    help="compress --verify: time the final selection here and correct it (needs the target's runtime)")
    ap.add_argument("--eval-limit", type=int, default=200, help="images for PGD and the certificate")
    ap.add_argument("--certify-samples", type=int, default=50,
                    help="random corruptions per image for the certificate (>= 29: with fewer, even 0 flips bound above 0.1)")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="one seed, budget 0.5")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/methods"))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets = args.seeds[:1], [0.5]
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console()
    torch.set_num_threads(1)
    profile = load_profile(args.target)
    threads = profile.threads or 1
    console.print(f"target {profile.name}: runtime {profile.runtime}, {threads} thread(s); data {args.data}, "
                  f"{args.model} @ {args.input_size}px; seeds {args.seeds}")

    rows = []
    for seed in args.seeds:
        weights = pretrain(args, seed, args.out)
        for budget in args.budgets:
            for method in args.methods:
                row = run_one(args, method, budget, seed, weights, args.out, threads)
                rows.append(row)
                _write_csv(rows, args.out / "methods.csv")  # as it goes: a long run can be read early
                console.print(f"  {method:9s} budget {budget} seed {seed}: measured {row['measured_ratio']:.3f} "
                              f"acc {row['accuracy']:.3f} corrupted {row['corrupted_accuracy']:.3f} ({row['seconds']:.0f}s)")

    table = Table(title=f"methods on {args.target} ({args.data}, {args.model} @ {args.input_size}px), mean over seeds {args.seeds}")
    for col in ("method", "budget", "predicted", "measured", "in [0.94, 1.03]", "MACs", "accuracy", "corrupted", "R_C",
                "PGD", "certified", "s/run"):
        table.add_column(col, justify="right")
    for budget in args.budgets:
        for method in args.methods:
            sel = [r for r in rows if r["method"] == method and r["budget"] == budget]
            mean = {k: statistics.mean(float(r[k]) for r in sel) for k in
                    ("predicted_ratio", "measured_ratio", "macs_ratio", "accuracy", "corrupted_accuracy", "r_c",
                     "pgd_accuracy", "certified_accuracy", "seconds")}

            def sd(key: str, sel=sel) -> float:
                return statistics.stdev([float(r[key]) for r in sel]) if len(sel) > 1 else 0.0

            table.add_row(method, f"{budget}", f"{mean['predicted_ratio']:.3f}", f"{mean['measured_ratio']:.3f}",
                          f"{sum(r['within_window'] for r in sel)}/{len(sel)}", f"{mean['macs_ratio']:.3f}",
                          f"{mean['accuracy']:.3f}±{sd('accuracy'):.3f}",
                          f"{mean['corrupted_accuracy']:.3f}±{sd('corrupted_accuracy'):.3f}",
                          f"{mean['r_c']:.3f}±{sd('r_c'):.3f}", f"{mean['pgd_accuracy']:.3f}±{sd('pgd_accuracy'):.3f}",
                          f"{mean['certified_accuracy']:.3f}±{sd('certified_accuracy'):.3f}", f"{mean['seconds']:.0f}")
    console.print(table)
    (args.out / "methods.md").write_text(_markdown(rows, args))

    cost = sam_cost(args, pretrain(args, args.seeds[0], args.out), args.seeds[0])
    acc = {r["variant"]: r for r in sam_accuracy(args, pretrain(args, args.seeds[0], args.out), args.seeds[0], args.out)}
    t2 = Table(title="SAM cost: per-step time vs SGD (interleaved, median) and fine-tuning accuracy at budget 0.5")
    for col in ("variant", "step time / SGD", "fine-tuned accuracy", "fine-tune run s"):
        t2.add_column(col, justify="right")
    for r in cost:
        a = acc.get(r["variant"])
        t2.add_row(r["variant"], f"{r['step_ratio_vs_sgd']:.2f}", f"{a['accuracy']:.3f}" if a else "-",
                   f"{a['seconds']:.0f}" if a else "-")
    console.print(t2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in args.methods:
        sel = [r for r in rows if r["method"] == method]
        ax.scatter([r["measured_ratio"] for r in sel], [r["corrupted_accuracy"] for r in sel], label=method, alpha=0.8)
    for b in args.budgets:
        ax.axvline(b, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("measured latency, pruned / dense (ONNX Runtime)")
    ax.set_ylabel("accuracy under corruptions (severity 3)")
    ax.set_title(f"{args.model} on {args.data}: methods at latency budgets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "methods_pareto.png", dpi=120)
    console.print(f"wrote {args.out / 'methods.csv'} and {args.out / 'methods_pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
