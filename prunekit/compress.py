"""`compress`: the composition of the pipeline stages on one run folder.

    load model + data -> dense (load weights or pretrain) -> select + remove (per method)
    -> recover (fine-tune) -> evaluate -> report.json

Each stage is marked done in run.json when its artifact is written, so `--resume` restarts an
interrupted run at the first unfinished stage (and, inside a training stage, at the last epoch
checkpoint) and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from prunekit import distributed as dist_utils
from prunekit.atomic import write_json
from prunekit.data import DataBundle, load_data
from prunekit.errors import PrunekitError
from prunekit.models import build_model, count_params, load_weights
from prunekit.pruning import PruningGraph, apply_plan, count_macs_params, select_by_ratio
from prunekit.runs import DEFAULT_ROOT, RunFolder, read_json, save_weights
from prunekit.settings import CompressSettings
from prunekit.train import TrainConfig, evaluate, fit


@dataclass
class RunContext:
    """What every stage of one run shares (read-only, except the run folder's files)."""

    settings: CompressSettings
    data: DataBundle
    folder: RunFolder
    device: torch.device
    example: torch.Tensor
    num_classes: int
    resume: bool
    quiet: bool
    console: Console

    def train_config(self, epochs: int, optimizer: str = "sgd", lr: float | None = None) -> TrainConfig:
        s = self.settings
        return TrainConfig(
            epochs=epochs,
            lr=s.lr if lr is None else lr,
            batch_size=s.batch_size,
            optimizer=optimizer,
            rho=s.rho,
            sam_every=s.sam_every,
            seed=s.seed,
        )

    def log(self, message: str) -> None:
        if not self.quiet and dist_utils.is_main():
            self.console.print(message, highlight=False)


def default_run_name(s: CompressSettings) -> str:
    """export/<model>-<data>-<method>[-<target>]: readable and stable for the same options."""
    data = s.data.split(":", 1)[0]
    model = s.model.replace(":", "-").replace("/", "-").replace(".", "-")
    parts = [model, data, s.method] + ([s.target] if s.target else [])
    return "-".join(parts)


def compress(
    settings: CompressSettings,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline into a run folder and return its report (also written to report.json)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    dist_utils.init_from_env()
    device = dist_utils.device_for_rank()
    s = settings

    data = load_data(s.data, s.input_size, s.num_classes)
    num_classes = s.num_classes or data.num_classes
    if s.num_classes is not None and s.data.split(":")[0] != "synthetic" and s.num_classes != data.num_classes:
        raise PrunekitError(
            f"--num-classes {s.num_classes} does not match the data ({data.num_classes} classes in {s.data})",
            "leave --num-classes out to use the data's class count",
        )
    size = data.input_size
    stored = s.model_dump()
    stored.update(num_classes=num_classes, input_size=size)

    _check_goal_before_training(s)
    torch.manual_seed(s.seed)
    model = build_model(s.model, num_classes)
    example = torch.zeros(1, 3, size, size)
    # Fail on an untraceable model now, not after an hour of pretraining.
    PruningGraph(copy.deepcopy(model), example, s.model)
    if s.weights:
        load_weights(model, s.weights)

    folder = RunFolder(Path(out) if out else DEFAULT_ROOT / default_run_name(s))
    resuming = False
    if dist_utils.is_main():
        resuming = folder.open(stored, resume=resume, force=force)
    resuming = dist_utils.broadcast_object(resuming)
    ctx = RunContext(s, data, folder, device, example, num_classes, resuming, quiet, console)
    ctx.log(f"run folder: {folder.path}" + (" (resuming)" if resuming else ""))

    model = stage_dense(ctx, model)
    dense_metrics = measure(ctx, model, "dense")
    pruned = stage_prune(ctx, model)
    pruned = stage_finetune(ctx, pruned)
    pruned_metrics = measure(ctx, pruned, "pruned")

    report: dict[str, Any] = {
        "dense": dense_metrics,
        "pruned": pruned_metrics,
        "settings": stored,
        "run": {
            "folder": str(folder.path),
            "seconds": round(time.perf_counter() - started, 2),
            "device": str(device),
            "world_size": dist_utils.world_size(),
            "resumed": resuming,
            "torch": torch.__version__,
        },
        "stages": _stage_logs(folder),
    }
    if dist_utils.is_main():
        folder.finish(report)
    dist_utils.barrier()
    return report


def _check_goal_before_training(s: CompressSettings) -> None:
    if s.goal_is_latency or s.method in ("halp",):
        raise PrunekitError(
            "latency-budgeted pruning (--target with --latency-budget / --latency-ms, method 'halp') "
            "is not available in this build yet",
            "use --prune-ratio with --method magnitude or taylor",
        )
    if s.method in ("adasap", "csam", "s2ap"):
        raise PrunekitError(
            f"method '{s.method}' is not available in this build yet", "use --method magnitude or taylor"
        )


# -- stages -------------------------------------------------------------------------------------
def stage_dense(ctx: RunContext, model: nn.Module) -> nn.Module:
    """The dense starting point: given weights, or pretrained here; saved as dense.safetensors."""
    f = ctx.folder
    if ctx.resume and "dense" in f.stages_done():
        load_weights(model, f.file("dense.safetensors"))
        ctx.log("dense model: loaded from the interrupted run")
        return model.to(ctx.device)
    s = ctx.settings
    log = None
    if not s.weights and s.pretrain_epochs > 0:
        ctx.log(f"pretraining {s.model} for {s.pretrain_epochs} epochs on {s.data}")
        log = fit(
            model,
            ctx.data,
            ctx.train_config(s.pretrain_epochs),
            stage="pretrain",
            checkpoint_dir=f.checkpoints,
            resume=ctx.resume,
            device=ctx.device,
            quiet=ctx.quiet,
        )
    if dist_utils.is_main():
        save_weights(model, f.file("dense.safetensors"))
        if log is not None:
            write_json(f.file("logs/pretrain.json"), log.to_dict())
        f.mark("dense")
    dist_utils.barrier()
    return model.to(ctx.device)


def stage_prune(ctx: RunContext, dense: nn.Module) -> nn.Module:
    """Select channels (per method) and physically remove them; writes plan.json."""
    f = ctx.folder
    s = ctx.settings
    if ctx.resume and "prune" in f.stages_done():
        pruned = apply_plan(build_model(s.model, ctx.num_classes), read_json(f.plan_json, "plan"), ctx.example, s.model)
        load_weights(pruned, f.file("pruned_init.safetensors"))
        ctx.log("pruning: plan loaded from the interrupted run")
        return pruned.to(ctx.device)
    model = copy.deepcopy(dense).cpu()
    graph = PruningGraph(model, ctx.example, s.model)
    keep = None
    if dist_utils.is_main():
        keep = select_channels(ctx, graph)
    keep = dist_utils.broadcast_object(keep)
    graph.prune(keep)
    plan = graph.plan()
    plan["method"] = s.method
    if dist_utils.is_main():
        write_json(f.plan_json, plan)
        save_weights(model, f.file("pruned_init.safetensors"))
        f.mark("prune")
    dist_utils.barrier()
    return model.to(ctx.device)


def select_channels(ctx: RunContext, graph: PruningGraph) -> dict[str, torch.Tensor]:
    """The keep-set of every group for a ratio goal (channels, or MACs by bisection on the ratio)."""
    s = ctx.settings
    batches = ctx.data.loader("train", s.batch_size, seed=s.seed) if s.method == "taylor" else None
    graph.model.to(ctx.device)
    scores = graph.importance("taylor" if s.method == "taylor" else "magnitude", batches=batches)
    graph.model.cpu()
    ratio = s.effective_prune_ratio
    if s.ratio_of == "channels":
        return select_by_ratio(scores, ratio, round_to=s.round_to)
    return select_for_macs(graph, scores, 1.0 - ratio, round_to=s.round_to, model_name=s.model)


def select_for_macs(
    graph: PruningGraph, scores: dict[str, torch.Tensor], macs_fraction: float, round_to: int, model_name: str
) -> dict[str, torch.Tensor]:
    """Uniform channel ratio found by bisection so that MACs(pruned) <= macs_fraction * MACs(dense)."""
    dense_macs, _ = count_macs_params(graph.model, graph.example_input)

    def macs_at(r: float) -> float:
        trial = copy.deepcopy(graph.model)
        g = PruningGraph(trial, graph.example_input, model_name)
        g.prune(select_by_ratio(scores, r, round_to=round_to))
        return count_macs_params(trial, graph.example_input)[0] / dense_macs

    lo, hi = 0.0, 0.99
    for _ in range(14):
        mid = (lo + hi) / 2
        if macs_at(mid) <= macs_fraction:
            hi = mid
        else:
            lo = mid
    return select_by_ratio(scores, hi, round_to=round_to)


def stage_finetune(ctx: RunContext, pruned: nn.Module) -> nn.Module:
    """Recover accuracy of the pruned model (SGD, SAM or ASAM); writes pruned.safetensors."""
    f = ctx.folder
    s = ctx.settings
    if ctx.resume and "finetune" in f.stages_done():
        load_weights(pruned, f.file("pruned.safetensors"))
        return pruned
    log = fit(
        pruned,
        ctx.data,
        ctx.train_config(s.epochs, optimizer=s.finetune_optimizer),
        stage="finetune",
        checkpoint_dir=f.checkpoints,
        resume=ctx.resume,
        device=ctx.device,
        quiet=ctx.quiet,
    )
    if dist_utils.is_main():
        save_weights(pruned, f.file("pruned.safetensors"))
        write_json(f.file("logs/finetune.json"), log.to_dict())
        f.mark("finetune")
    dist_utils.barrier()
    return pruned


def measure(ctx: RunContext, model: nn.Module, which: str) -> dict[str, Any]:
    """Params, MACs and validation accuracy of one model."""
    model.eval()
    macs, _ = count_macs_params(model.cpu(), ctx.example)
    model.to(ctx.device)
    loader = ctx.data.loader("val", 256, shuffle=False)
    acc = evaluate(model, loader, ctx.device)
    return {"params": count_params(model), "macs": macs, "accuracy": round(acc, 6)}


def _stage_logs(folder: RunFolder) -> dict[str, Any]:
    logs: dict[str, Any] = {}
    for name in ("pretrain", "finetune"):
        p = folder.file(f"logs/{name}.json")
        if p.exists():
            logs[name] = read_json(p, "log")
    return logs
