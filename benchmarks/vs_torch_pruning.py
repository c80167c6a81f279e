"""Measured speedup vs Torch-Pruning: prunekit's latency-budgeted pruning next to Torch-Pruning's
uniform pruning, exported to ONNX and timed on ONNX Runtime CPU, in one run.

    python benchmarks/vs_torch_pruning.py                                   # everything (tens of minutes)
    python benchmarks/vs_torch_pruning.py --models resnet18 --budgets 0.5 --no-accuracy
    python benchmarks/vs_torch_pruning.py --quick                           # fewer timed runs, 1 seed

Latency part: resnet18, mobilenet_v2, resnet50, efficientnet_b0 at 224x224, batch 1, 1000 classes,
untrained (latency does not depend on the weights). For every model and budget b (a fraction of
the dense model's latency on the `cpu-ort` profile):

    prunekit          magnitude importance + the HALP latency knapsack over the profile (widths on
                      multiples of 8), target b x predicted dense latency, channels physically removed
    tp @MACs          Torch-Pruning uniform pruning (its MagnitudePruner, GroupMagnitudeImportance p=2),
                      pruning_ratio bisected until the MACs are within 2 % of prunekit's; default settings
    tp-r8 @MACs       the same with round_to=8
    tp-r8 @latency    round_to=8, pruning_ratio bisected on the *measured* latency until it matches
                      prunekit's measured ratio: what each method keeps (MACs, params) at equal speed

Every pruned model is exported to ONNX and timed against the dense export in one process on the
profile's runtime (`prunekit.runtimes`, looked up by the profile's `runtime`), with its thread
count, warm by default: after a warm-up, blocks of consecutive runs of one model, dense and pruned
alternating, ratio = median(pruned) / median(dense) (`--timing interleaved`: one run of each in
turn, the median of the per-round ratios, as before). A row meets its budget when the measured
ratio is <= b x 1.04.

Accuracy part (`--accuracy`, on by default): the built-in digits data at 32x32 with resnet18 (the
default small model). Per seed the dense model is pretrained once; prunekit (magnitude + knapsack
at budget 0.5) and Torch-Pruning r8 matched to prunekit's measured latency prune copies of it; both,
and a dense copy as the reference, get the same fine-tuning epochs, then are evaluated clean and
under a few corruptions (severity 3). `--no-latency --accuracy` runs this part alone.

Results: <out>/vs_torch_pruning.{csv,json,png,md} and <out>/vs_torch_pruning_accuracy.{csv,md}.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch_pruning as tp  # noqa: E402

from prunekit.atomic import atomic_path, write_json, write_text  # noqa: E402
from prunekit.deploy.onnx import to_onnx  # noqa: E402
from prunekit.errors import PrunekitError  # noqa: E402
from prunekit.latency.measure import DEFAULT_BLOCK, PairStats, TimingOptions  # noqa: E402
from prunekit.latency.predict import predict_latency  # noqa: E402
from prunekit.latency.profile import MissingSignatureError, Profile, load_profile  # noqa: E402
from prunekit.pruning import PruningGraph, count_macs_params, find_classifier  # noqa: E402
from prunekit.runtimes import Execution, ModelRef, get_runtime  # noqa: E402
from prunekit.select.latency import select_for_latency  # noqa: E402

MODELS = ["resnet18", "mobilenet_v2", "resnet50", "efficientnet_b0"]
BUDGETS = [0.7, 0.5, 0.3]
TOLERANCE = 1.04  # a budget is met when measured ratio <= budget x TOLERANCE
MATCH_TOL = 0.02  # equal-MACs / equal-latency matching: within 2 %
ROUND_TO = 8
METHODS = {
    "prunekit": "prunekit knapsack (r8)",
    "tp": "Torch-Pruning @ equal MACs",
    "tp-r8": "Torch-Pruning r8 @ equal MACs",
    "tp-r8-lat": "Torch-Pruning r8 @ equal latency",
}
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression")


# ---------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One model x budget x method result; `error` is set (and the numbers left empty) on failure."""

    model: str
    budget: float
    method: str
    macs_ratio: float | None = None
    params_ratio: float | None = None
    predicted_ratio: float | None = None  # prunekit only
    measured_ratio: float | None = None
    budget_met: bool | None = None
    pruning_ratio: float | None = None  # Torch-Pruning's channel ratio after matching
    match_error: float | None = None  # matched quantity / its target - 1 (MACs or measured latency)
    dense_ms: float | None = None
    pruned_ms: float | None = None
    error: str = ""

    def finish(self, budget: float) -> Row:
        if self.measured_ratio is not None:
            self.budget_met = self.measured_ratio <= budget * TOLERANCE
        return self


@dataclass
class Timing:
    """How pruned models are timed against the dense one (the profile's runtime, warm blocks by default)."""

    threads: int = 1
    warmup: int = 10
    repeats: int = 60
    search_repeats: int = 20  # per probe of the equal-latency bisection
    runtime: str = "onnxruntime"
    mode: str = "blocks"
    block: int = DEFAULT_BLOCK

    def pair(
        self, dense_onnx: bytes, model: nn.Module, shape: tuple[int, int, int, int], search: bool = False
    ) -> PairStats:
        options = TimingOptions(
            mode=self.mode,
            warmup=self.warmup if not search else max(2, self.warmup // 2),
            repeats=self.search_repeats if search else self.repeats,
            block=self.block,
        )
        rt = get_runtime(self.runtime)
        return rt.time_pair(ModelRef(onnx=dense_onnx), ModelRef(module=model), shape, Execution(self.threads),
                            options)


@dataclass
class Dense:
    """The unpruned reference of one model: its counts, ONNX export and predicted latency."""

    name: str
    model: nn.Module
    shape: tuple[int, int, int, int]
    macs: int
    params: int
    onnx: bytes
    predicted_ms: float | None  # None when the profile cannot predict it (see profile_error)
    profile_error: str = ""

    @property
    def example(self) -> torch.Tensor:
        return torch.zeros(self.shape)


def prepare_dense(name: str, model: nn.Module, shape: tuple[int, int, int, int], profile: Profile) -> Dense:
    """Count, export and predict the dense model once; a missing profile signature is recorded."""
    model = model.eval()
    macs, params = count_macs_params(model, torch.zeros(shape))
    onnx = to_onnx(model, shape).data
    predicted, err = None, ""
    try:
        predicted = predict_latency(model, profile, shape, model_hint=name).total_ms
    except MissingSignatureError as exc:
        err = f"profile {profile.name} lacks {exc.signature}; measure it with: {exc.command}"
    return Dense(name, model, shape, macs, params, onnx, predicted, err)


# ------------------------------------------------------------------------------- the methods
def tp_uniform(dense: nn.Module, example: torch.Tensor, ratio: float, round_to: int | None) -> nn.Module:
    """Torch-Pruning's own uniform magnitude pruning (L2, group-mean normalised) of a copy."""
    model = copy.deepcopy(dense).eval()
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=find_classifier(model, example),
        round_to=round_to,
    )
    pruner.step()
    return model


def prunekit_prune(
    dense: Dense, profile: Profile, budget: float, round_to: int = ROUND_TO
) -> tuple[nn.Module, float]:
    """prunekit: magnitude importance + latency knapsack to `budget` x dense prediction, removed.

    Returns the pruned copy and its predicted latency ratio.
    """
    if dense.predicted_ms is None:
        raise PrunekitError(dense.profile_error)
    model = copy.deepcopy(dense.model).eval()
    graph = PruningGraph(model, dense.example, dense.name)
    scores = graph.importance("magnitude")
    sel = select_for_latency(
        graph, scores, profile, dense.shape, dense.predicted_ms * budget, round_to=round_to
    )
    graph.prune(sel.keep)
    return model, sel.predicted_ms / dense.predicted_ms


Probe = Callable[[float], tuple[float, Any]]


def bisect_ratio(
    probe: Probe,
    target: float,
    tol: float = MATCH_TOL,
    start: float | None = None,
    hi: float = 0.95,
    iterations: int = 14,
) -> tuple[float, float, Any]:
    """Channel ratio whose `probe(ratio)` value (falling as the ratio grows) is closest to `target`.

    Bisection on [0, hi], stopping as soon as a probe is within `tol` (relative); `start` is the
    first probe (a good guess saves probes). Returns (ratio, value, payload) of the closest probe.
    """
    lo, best = 0.0, None
    ratio = start if start is not None and 0.0 < start < hi else hi / 2
    for _ in range(max(1, iterations)):
        value, payload = probe(ratio)
        err = value / target - 1.0
        if best is None or abs(err) < abs(best[1] / target - 1.0):
            best = (ratio, value, payload)
        if abs(err) <= tol:
            break
        if value > target:
            lo = ratio
        else:
            hi = ratio
        ratio = (lo + hi) / 2
    assert best is not None
    return best


def match_macs(
    dense: Dense, target_macs: float, round_to: int | None, iterations: int = 14
) -> tuple[nn.Module, float, float]:
    """Torch-Pruning uniform pruning with MACs within 2 % of `target_macs`: (model, ratio, MACs)."""

    def probe(r: float) -> tuple[float, nn.Module]:
        m = tp_uniform(dense.model, dense.example, r, round_to)
        return float(count_macs_params(m, dense.example)[0]), m

    # MACs fall about as (1 - r)^2 with a uniform channel ratio r: start there
    guess = 1.0 - (target_macs / dense.macs) ** 0.5
    ratio, macs, model = bisect_ratio(probe, target_macs, start=guess, iterations=iterations)
    return model, ratio, macs


def match_latency(
    dense: Dense,
    target_ratio: float,
    timing: Timing,
    start: float | None,
    round_to: int | None = ROUND_TO,
    iterations: int = 8,
) -> tuple[nn.Module, float, float]:
    """Torch-Pruning uniform pruning whose *measured* latency ratio matches `target_ratio`."""

    def probe(r: float) -> tuple[float, nn.Module]:
        m = tp_uniform(dense.model, dense.example, r, round_to)
        return timing.pair(dense.onnx, m, dense.shape, search=True).ratio, m

    ratio, measured, model = bisect_ratio(probe, target_ratio, start=start, iterations=iterations)
    return model, ratio, measured


def _counted(row: Row, dense: Dense, model: nn.Module) -> Row:
    macs, params = count_macs_params(model, dense.example)
    row.macs_ratio, row.params_ratio = macs / dense.macs, params / dense.params
    return row


def _timed(row: Row, dense: Dense, model: nn.Module, timing: Timing) -> Row:
    pair = timing.pair(dense.onnx, model, dense.shape)
    row.measured_ratio, row.dense_ms, row.pruned_ms = pair.ratio, pair.dense.median_ms, pair.pruned.median_ms
    return row


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PrunekitError):
        return exc.one_line()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:240]


def compare_model(
    name: str,
    model: nn.Module,
    shape: tuple[int, int, int, int],
    profile: Profile,
    budgets: Sequence[float],
    timing: Timing,
    log: Callable[[str], None] = print,
    match_iterations: int = 14,
    latency_iterations: int = 8,
) -> list[Row]:
    """All methods side by side on one model, for every budget. Failures become rows with a reason."""
    rows: list[Row] = []
    try:
        dense = prepare_dense(name, model, shape, profile)
    except Exception as exc:  # noqa: BLE001 - a model that cannot even be exported fails every row
        return [Row(name, b, m, error=f"dense model: {_reason(exc)}") for b in budgets for m in METHODS]
    log(
        f"[bold]{name}[/]: {dense.macs / 1e9:.3f} GMACs, {dense.params / 1e6:.2f} M params, predicted "
        + (
            f"{dense.predicted_ms:.2f} ms on {profile.name}"
            if dense.predicted_ms
            else f"- ({dense.profile_error})"
        )
    )
    tp_error = ""
    try:
        tp_uniform(model, dense.example, 0.1, None)
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning raises many types on graphs it cannot trace
        tp_error = f"Torch-Pruning cannot prune {name}: {_reason(exc)}"
        log(f"  [red]{tp_error}[/]")
    for budget in budgets:
        pk_row = Row(name, budget, "prunekit")
        pk_model = None
        try:
            pk_model, pk_row.predicted_ratio = prunekit_prune(dense, profile, budget)
            _timed(_counted(pk_row, dense, pk_model), dense, pk_model, timing).finish(budget)
        except Exception as exc:  # noqa: BLE001 - reported as the row's reason, the benchmark goes on
            pk_row.error = _reason(exc)
            pk_model = None
        rows.append(pk_row)
        log(_progress(pk_row))
        r8_ratio = None
        for method, round_to in (("tp", None), ("tp-r8", ROUND_TO), ("tp-r8-lat", ROUND_TO)):
            row = Row(name, budget, method)
            if tp_error:
                row.error = tp_error
            elif pk_model is None:
                row.error = "no prunekit result to match (see its row)"
            else:
                try:
                    if method == "tp-r8-lat":
                        target = float(pk_row.measured_ratio)  # type: ignore[arg-type]
                        m, row.pruning_ratio, got = match_latency(
                            dense, target, timing, r8_ratio, iterations=latency_iterations
                        )
                    else:
                        target = float(pk_row.macs_ratio) * dense.macs  # type: ignore[arg-type]
                        m, row.pruning_ratio, got = match_macs(dense, target, round_to, match_iterations)
                        if method == "tp-r8":
                            r8_ratio = row.pruning_ratio
                    row.match_error = got / target - 1.0
                    _timed(_counted(row, dense, m), dense, m, timing).finish(budget)
                except Exception as exc:  # noqa: BLE001
                    row.error = _reason(exc)
            rows.append(row)
            log(_progress(row))
    return rows


def _progress(r: Row) -> str:
    head = f"  {r.model:16s} budget {r.budget:.2f}  {METHODS.get(r.method, r.method):34s}"
    if r.error:
        return f"{head} [red]failed: {r.error}[/]"
    pred = f" predicted {r.predicted_ratio:.3f}" if r.predicted_ratio is not None else ""
    return (
        f"{head} MACs {r.macs_ratio:.3f}  params {r.params_ratio:.3f}{pred}  measured "
        f"{r.measured_ratio:.3f} ({r.pruned_ms:.2f} / {r.dense_ms:.2f} ms)"
    )


# ------------------------------------------------------------------------------ accuracy part
@dataclass
class AccuracyRow:
    seed: int
    method: str
    measured_ratio: float | None
    macs_ratio: float | None
    params_ratio: float | None
    clean_accuracy: float
    corrupted_accuracy: float
    relative_robustness: float
    pruning_ratio: float | None = None
    predicted_ratio: float | None = None


def accuracy_study(
    profile: Profile,
    seeds: Sequence[int],
    budget: float,
    timing: Timing,
    pretrain_epochs: int = 3,
    epochs: int = 3,
    corruptions: Sequence[str] = CORRUPTIONS,
    severity: int = 3,
    log: Callable[[str], None] = print,
) -> list[AccuracyRow]:
    """prunekit vs Torch-Pruning r8 at equal measured latency on digits (resnet18, 32x32)."""
    from prunekit.data import load_data
    from prunekit.models import build_model
    from prunekit.robustness.metrics import evaluate_corruptions, torch_predictor
    from prunekit.train import TrainConfig, fit

    data = load_data("digits")
    shape = (profile.batch_size, 3, data.input_size, data.input_size)
    cpu = torch.device("cpu")
    rows: list[AccuracyRow] = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = build_model("resnet18", data.num_classes)
        fit(
            net,
            data,
            TrainConfig(epochs=pretrain_epochs, seed=seed),
            stage="pretrain",
            device=cpu,
            quiet=True,
        )
        dense = prepare_dense("resnet18", net, shape, profile)
        pk, pk_pred = prunekit_prune(dense, profile, budget)
        pk_pair = timing.pair(dense.onnx, pk, shape)
        r8_guess = match_macs(dense, count_macs_params(pk, dense.example)[0], ROUND_TO)[1]
        tpm, tp_ratio, _ = match_latency(dense, pk_pair.ratio, timing, r8_guess)
        tp_pair = timing.pair(dense.onnx, tpm, shape)
        models = [
            ("dense", dense.model, None, None),
            ("prunekit", pk, pk_pair.ratio, None),
            ("tp-r8-lat", tpm, tp_pair.ratio, tp_ratio),
        ]
        for method, m, ratio, pr in models:
            if method == "dense":
                m = copy.deepcopy(m)  # the reference gets the same extra epochs as the pruned copies
            fit(m, data, TrainConfig(epochs=epochs, seed=seed), stage="finetune", device=cpu, quiet=True)
            rep = evaluate_corruptions(
                torch_predictor(m, cpu),
                data.loader("val", 256, shuffle=False),
                list(corruptions),
                [severity],
                seed=seed,
            )
            macs, params = count_macs_params(m, dense.example)
            row = AccuracyRow(
                seed,
                method,
                ratio,
                macs / dense.macs,
                params / dense.params,
                rep.clean_accuracy,
                rep.mean_corruption_accuracy,
                rep.relative_robustness,
                pr,
                pk_pred if method == "prunekit" else None,
            )
            rows.append(row)
            log(
                f"  seed {seed} {method:10s} latency {'-' if ratio is None else f'{ratio:.3f}'}  MACs "
                f"{row.macs_ratio:.3f}  clean {row.clean_accuracy:.4f}  corrupted {row.corrupted_accuracy:.4f}"
            )
    return rows


# --------------------------------------------------------------------------------- reporting
def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def latency_table(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for col in (
        "model",
        "budget",
        "method",
        "MACs",
        "params",
        "predicted",
        "measured",
        "met",
        "tp ratio",
        "match",
    ):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    for r in rows:
        if r.error:
            table.add_row(
                r.model,
                f"{r.budget:.2f}",
                METHODS.get(r.method, r.method),
                "",
                "",
                "",
                "",
                "[red]failed[/]",
                "",
                f"[red]{r.error}[/]",
            )
            continue
        met = "[green]yes[/]" if r.budget_met else "[red]no[/]"
        table.add_row(
            r.model,
            f"{r.budget:.2f}",
            METHODS.get(r.method, r.method),
            _fmt(r.macs_ratio),
            _fmt(r.params_ratio),
            _fmt(r.predicted_ratio),
            _fmt(r.measured_ratio),
            met,
            _fmt(r.pruning_ratio),
            "" if r.match_error is None else f"{r.match_error * 100:+.1f} %",
        )
    return table


def accuracy_table(rows: list[AccuracyRow], title: str) -> Table:
    table = Table(title=title)
    for col in ("seed", "method", "latency", "MACs", "params", "clean acc", "corrupted acc", "R_C"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(
            str(r.seed),
            r.method,
            _fmt(r.measured_ratio),
            _fmt(r.macs_ratio),
            _fmt(r.params_ratio),
            _fmt(r.clean_accuracy, 4),
            _fmt(r.corrupted_accuracy, 4),
            _fmt(r.relative_robustness),
        )
    for method in dict.fromkeys(r.method for r in rows):
        sel = [r for r in rows if r.method == method]
        if len(sel) < 2:
            continue

        def ms(values: list[float], digits: int = 4) -> str:
            return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

        lat = [r.measured_ratio for r in sel if r.measured_ratio is not None]
        table.add_row(
            "mean",
            f"[bold]{method}[/]",
            ms(lat, 3) if len(lat) > 1 else "",
            _fmt(statistics.mean(r.macs_ratio or 0 for r in sel)),
            "",
            ms([r.clean_accuracy for r in sel]),
            ms([r.corrupted_accuracy for r in sel]),
            ms([r.relative_robustness for r in sel], 3),
        )
    return table


def latency_markdown(rows: list[Row]) -> str:
    """The latency table as Markdown (for the README)."""
    lines = [
        "| model | budget | method | MACs | params | predicted | measured | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = METHODS.get(r.method, r.method)
        if r.error:
            lines.append(f"| {r.model} | {r.budget:.2f} | {name} | failed: {r.error} | | | | |")
            continue
        met = "yes" if r.budget_met else "**no**"
        lines.append(
            f"| {r.model} | {r.budget:.2f} | {name} | {_fmt(r.macs_ratio)} | {_fmt(r.params_ratio)} | "
            f"{_fmt(r.predicted_ratio)} | {_fmt(r.measured_ratio)} | {met} |"
        )
    return "\n".join(lines) + "\n"


def accuracy_markdown(rows: list[AccuracyRow]) -> str:
    """Mean ± std over seeds per method, as Markdown."""
    lines = [
        "| method | seeds | measured latency | MACs | params | clean acc | corrupted acc | R_C |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r.method for r in rows):
        sel = [r for r in rows if r.method == method]

        def ms(values: list[float], digits: int = 3) -> str:
            if not values:
                return ""
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

        lat = [r.measured_ratio for r in sel if r.measured_ratio is not None]
        lines.append(
            f"| {method} | {len(sel)} | {ms(lat)} | {ms([r.macs_ratio or 0.0 for r in sel])} | "
            f"{ms([r.params_ratio or 0.0 for r in sel])} | {ms([r.clean_accuracy for r in sel])} | "
            f"{ms([r.corrupted_accuracy for r in sel])} | {ms([r.relative_robustness for r in sel])} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]))
    w.writeheader()
    w.writerows(records)
    write_text(path, buf.getvalue())


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Measured latency ratio vs MACs ratio, one panel per model, one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.error]
    models = list(dict.fromkeys(r.model for r in rows))
    if not ok or not models:
        return
    cols = min(2, len(models))
    nrows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4.6 * nrows), squeeze=False)
    markers = {
        "prunekit": ("*", 220, "tab:red"),
        "tp": ("o", 70, "tab:blue"),
        "tp-r8": ("s", 70, "tab:green"),
        "tp-r8-lat": ("^", 80, "tab:purple"),
    }
    budgets = sorted({r.budget for r in rows})
    for ax, model in zip(axes.flat, models, strict=False):
        for b in budgets:
            ax.axhline(b * TOLERANCE, color="0.75", ls="--", lw=0.8)
            ax.text(0.02, b * TOLERANCE, f"budget {b:g} (+4 %)", fontsize=7, color="0.45", va="bottom")
        ax.plot([0, 1.05], [0, 1.05], color="0.85", lw=0.8, ls=":")
        for method, (mk, size, color) in markers.items():
            pts = [r for r in ok if r.model == model and r.method == method]
            if pts:
                ax.scatter(
                    [r.macs_ratio for r in pts],
                    [r.measured_ratio for r in pts],
                    marker=mk,
                    s=size,
                    color=color,
                    label=METHODS[method],
                    edgecolors="black",
                    linewidths=0.4,
                    zorder=3,
                )
        ax.set_title(model)
        ax.set_xlabel("MACs ratio (pruned / dense)")
        ax.set_ylabel("measured latency ratio")
        ax.set_xlim(0, 1.05)
        ax.set_ylim(0, max([1.05] + [r.measured_ratio * 1.05 for r in ok if r.model == model]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 90 * cols)), fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def cpu_name() -> str:
    from prunekit.runtimes.machine import cpu_model

    return cpu_model()


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def machine_line(profile: Profile, threads: int) -> str:
    choice = profile.provenance.threads_choice if profile.provenance.kind == "measured" else {}
    why = f"measured per thread count: {choice}" if choice else "pinned in the profile"
    return (
        f"CPU: {cpu_name()} ({os.cpu_count()} cores); ONNX Runtime {onnxruntime_version()}, "
        f"{threads} intra-op thread(s) from profile {profile.name} ({why}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def latency_part(
    args: argparse.Namespace,
    profile: Profile,
    timing: Timing,
    machine: str,
    console: Console,
    out: Path,
    started: float,
) -> list[Row]:
    """Every model x budget x method, printed as a table and saved as CSV / JSON / PNG."""
    threads = timing.threads
    shape = (profile.batch_size, 3, args.size, args.size)
    rows: list[Row] = []
    from prunekit.models import build_model

    for name in args.models:
        try:
            torch.manual_seed(0)
            model = build_model(name, 1000)
        except Exception as exc:  # noqa: BLE001
            rows += [Row(name, b, m, error=_reason(exc)) for b in args.budgets for m in METHODS]
            continue
        rows += compare_model(
            name,
            model,
            shape,
            profile,
            args.budgets,
            timing,
            log=lambda s: console.print(s, highlight=False),
            latency_iterations=5 if args.quick else 8,
        )
        _save_latency(out, rows, machine, threads, profile, started)  # partial results survive an abort
    title = (
        f"Measured latency ratio (pruned / dense ONNX) on {profile.name}: ONNX Runtime CPU, {threads} "
        f"thread(s), batch {profile.batch_size}, {args.size}x{args.size}; met = measured <= budget x 1.04"
    )
    console.print(latency_table(rows, title))
    pk = [r for r in rows if r.method == "prunekit"]
    met = sum(1 for r in pk if r.budget_met)
    console.print(
        f"prunekit met {met} of {len(pk)} budgets (measured <= budget x {TOLERANCE}); "
        f"{sum(1 for r in pk if r.error)} failed. {machine}",
        highlight=False,
    )
    _save_latency(out, rows, machine, threads, profile, started)
    write_text(out / "vs_torch_pruning.md", f"{machine}\n\n{latency_markdown(rows)}")
    plot(
        rows,
        out / "vs_torch_pruning.png",
        f"Measured latency ratio (pruned / dense) vs MACs ratio on {profile.name}: ONNX Runtime "
        f"{onnxruntime_version()} CPU, {threads} thread(s), batch {profile.batch_size}, {args.size}x{args.size}, "
        f"{cpu_name()}; dashed: budget x 1.04",
    )
    return rows


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="prunekit vs Torch-Pruning, measured on ONNX Runtime CPU.")
    ap.add_argument(
        "--models", nargs="+", default=MODELS, help="torchvision model names (224x224, 1000 classes)"
    )
    ap.add_argument(
        "--budgets",
        nargs="+",
        type=float,
        default=BUDGETS,
        help="latency budgets as fractions of the dense model's latency",
    )
    ap.add_argument("--profile", default="cpu-ort", help="device profile (its thread count is used)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quick", action="store_true", help="fewer timed runs, 1 seed / 1 epoch for accuracy")
    ap.add_argument("--timing", choices=["blocks", "interleaved"], default="blocks",
                    help="blocks: warm, consecutive runs of one model in alternating blocks (default); "
                    "interleaved: one run of each in turn")
    ap.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the latency comparison on --models (224x224)",
    )
    ap.add_argument(
        "--accuracy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the accuracy-at-equal-latency study on digits",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    for b in args.budgets:
        if not 0 < b <= 1:
            ap.error(f"budgets must be in (0, 1], got {b}")
    console = Console(width=170)
    torch.set_num_threads(1)
    profile = load_profile(args.profile)
    threads = profile.threads or 1
    timing = Timing(
        threads,
        warmup=3 if args.quick else 10,
        repeats=20 if args.quick else 60,
        search_repeats=8 if args.quick else 20,
        runtime=profile.runtime,
        mode=args.timing,
    )
    get_runtime(profile.runtime).require()
    machine = machine_line(profile, threads)
    console.print(machine, highlight=False)
    console.print(
        f"timing ({timing.mode}): {timing.warmup} warm-up + {timing.repeats} timed runs per model and row"
        + (f" in blocks of {timing.block}" if timing.mode == "blocks" else ", interleaved")
        + f" ({timing.search_repeats} per equal-latency probe); clock: "
        f"{'thread CPU time' if threads == 1 else 'wall'}",
        highlight=False,
    )
    out = Path(args.out)
    started = time.time()
    if args.latency:
        latency_part(args, profile, timing, machine, console, out, started)
    if args.accuracy:
        seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
        epochs = 1 if args.quick else 3
        console.print(
            f"accuracy at equal latency: digits 32x32, resnet18, budget 0.5, seeds {seeds}, "
            f"{epochs} pretrain + {epochs} fine-tune epochs, corruptions {', '.join(CORRUPTIONS)} "
            f"at severity 3",
            highlight=False,
        )
        acc = accuracy_study(
            profile,
            seeds,
            0.5,
            timing,
            pretrain_epochs=epochs,
            epochs=epochs,
            log=lambda s: console.print(s, highlight=False),
        )
        console.print(
            accuracy_table(
                acc,
                f"Accuracy at equal measured latency (digits 32x32, resnet18, "
                f"budget 0.5 on {profile.name}, {threads} thread(s))",
            )
        )
        write_csv(out / "vs_torch_pruning_accuracy.csv", [asdict(r) for r in acc])
        write_text(out / "vs_torch_pruning_accuracy.md", accuracy_markdown(acc))
    console.print(f"results in {out} ({time.time() - started:.0f} s)", highlight=False)
    return 0


def _save_latency(
    out: Path, rows: list[Row], machine: str, threads: int, profile: Profile, started: float
) -> None:
    write_csv(out / "vs_torch_pruning.csv", [asdict(r) for r in rows])
    write_json(
        out / "vs_torch_pruning.json",
        {
            "machine": machine,
            "threads": threads,
            "profile": profile.name,
            "tolerance": TOLERANCE,
            "seconds": round(time.time() - started, 1),
            "fields": [f.name for f in fields(Row)],
            "rows": [asdict(r) for r in rows],
        },
    )


if __name__ == "__main__":
    raise SystemExit(main())
