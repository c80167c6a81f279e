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
from prunekit.data import DataBundle
from prunekit.errors import PrunekitError
from prunekit.methods import Method, get_method
from prunekit.models import count_params, load_weights
from prunekit.pruning import PruningGraph, apply_plan, count_macs_params
from prunekit.runs import DEFAULT_ROOT, RunFolder, load_run, read_json, save_weights
from prunekit.select import Goal
from prunekit.select.verify import VerifyOptions
from prunekit.settings import CompressSettings, upgrade_settings_dict
from prunekit.tasks import Task, resolve_task
from prunekit.train import TrainConfig, fit


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
    goal: Goal
    task: Task | None = None  # None: classification

    @property
    def method(self) -> Method:
        return get_method(self.settings.method)

    @property
    def options(self) -> Any:
        """The method's validated options."""
        return self.settings.options

    def train_config(self, epochs: int, optimizer: str = "sgd", lr: float | None = None) -> TrainConfig:
        s = self.settings
        return TrainConfig(
            epochs=epochs,
            lr=s.lr if lr is None else lr,
            batch_size=s.batch_size,
            optimizer=optimizer,
            rho=s.finetune[1],
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
    report, _ = compress_model(settings, out, resume=resume, force=force, quiet=quiet, console=console)
    return report


def compress_model(
    settings: CompressSettings,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """`compress`, also returning this process's pruned model (every rank's, under torchrun)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    dist_utils.init_from_env()
    device = dist_utils.device_for_rank()
    s = settings

    task = resolve_task(s.task, s.model)
    data = task.load_data(s.data, s.input_size, s.num_classes)
    num_classes = s.num_classes or data.num_classes
    if s.num_classes is not None and s.data.split(":")[0] != "synthetic" and s.num_classes != data.num_classes:
        raise PrunekitError(
            f"--num-classes {s.num_classes} does not match the data ({data.num_classes} classes in {s.data})",
            "leave --num-classes out to use the data's class count",
        )
    size = data.input_size
    stored = s.model_dump()
    stored.update(num_classes=num_classes, input_size=size)
    folder = RunFolder(Path(out) if out else DEFAULT_ROOT / default_run_name(s))
    if resume and not force and folder.is_finished():
        # Nothing left to do: return the finished run's report (its settings must be these).
        folder.check_settings(stored, upgrade=upgrade_settings_dict)
        if not quiet and dist_utils.is_main():
            console.print(f"run folder: {folder.path} (finished earlier: nothing recomputed)", highlight=False)
        return read_json(folder.report_json, "report"), load_run(folder.path).pruned.to(device)

    torch.manual_seed(s.seed)
    model = task.build_model(s.model, num_classes)
    example = torch.zeros(1, 3, size, size)
    # Fail on an untraceable model, an unknown target or an unreachable budget now, not after
    # an hour of pretraining.
    PruningGraph(copy.deepcopy(model), example, s.model)
    goal = make_goal(s, model, example, console=console, quiet=quiet)
    if s.weights:
        load_weights(model, s.weights)

    resuming = False
    if dist_utils.is_main():
        resuming = folder.open(stored, resume=resume, force=force, upgrade=upgrade_settings_dict)
    resuming = dist_utils.broadcast_object(resuming)
    ctx = RunContext(s, data, folder, device, example, num_classes, resuming, quiet, console, goal, task)
    ctx.log(f"run folder: {folder.path}" + (" (resuming)" if resuming else ""))

    model = stage_dense(ctx, model)
    dense_metrics = measure(ctx, model, "dense")
    pruned, method_info = stage_prune(ctx, model)
    pruned = stage_finetune(ctx, pruned)
    pruned_metrics = measure(ctx, pruned, "pruned")
    timed = measured_latency(ctx, model, pruned) if dist_utils.is_main() else None
    if timed is not None:
        dense_metrics["measured_latency_ms"] = round(timed["dense_ms"], 5)
        pruned_metrics["measured_latency_ms"] = round(timed["pruned_ms"], 5)

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
        "method": method_info,
        "stages": _stage_logs(folder),
    }
    if goal.kind == "latency":
        target_ms = float(goal.target_ms or 0.0)
        met_table = pruned_metrics["predicted_latency_ms"] <= target_ms + 1e-9
        report["goal"] = {
            "target": s.target,
            "target_ms": round(target_ms, 5),
            "budget": s.latency_budget,
            "met": met_table,
            "met_by": "table",
            "met_table": met_table,
        }
        if goal.calibration is not None and goal.dense_ms:
            from prunekit.latency.subnets import calibrated_ratio

            predicted = pruned_metrics["predicted_latency_ms"] / float(goal.dense_ms)
            report["goal"]["calibration"] = {
                "subnets": [list(p) for p in goal.calibration.points],
                "date": goal.calibration.date,
                "aimed_ratio": round(target_ms / float(goal.dense_ms), 5),
                "predicted_ratio": round(predicted, 5),
                "calibrated_ratio": round(calibrated_ratio(goal.calibration, predicted), 5),
            }
        if timed is not None:
            report["goal"]["measured_ratio"] = round(timed["ratio"], 5)
            report["goal"]["measured_how"] = timed["how"]
            if s.latency_budget is not None:
                # A measured verdict outranks the table's: it is the speed the user will see.
                report["goal"]["met"] = timed["ratio"] <= s.latency_budget * VerifyOptions.high
                report["goal"]["met_by"] = "measured"
    if dist_utils.is_main():
        folder.finish(report)
    dist_utils.barrier()
    return report, pruned


def make_goal(s: CompressSettings, model: nn.Module, example: torch.Tensor, *, console: Console | None = None,
              quiet: bool = False) -> Goal:
    """The selection goal; a latency goal is checked for reachability before any training.

    `--target local` is profiled here on first use; `--verify` / `--measure-cmd` attach the
    measurement that the final selection is checked (and corrected) with.
    """
    if s.target is None:
        return Goal(kind="ratio", ratio=s.effective_prune_ratio, ratio_of=s.ratio_of, round_to=s.round_to)
    from prunekit.latency.local import resolve_target
    from prunekit.latency.predict import predict_latency
    from prunekit.latency.store import LOCAL

    size = (int(example.shape[-2]), int(example.shape[-1]))
    shape = (1, 3, *size)
    calibrate = s.subnets if s.goal_is_latency and s.latency_budget is not None else 0
    classes = _num_outputs(model, example)
    profile = resolve_target(s.target, model, s.model, shape, classes, console=console, quiet=quiet)
    shape = (profile.batch_size, 3, *size)
    if not s.goal_is_latency:
        dense_ms = predict_latency(model, profile, shape, model_hint=s.model).total_ms
        return Goal(kind="ratio", ratio=s.effective_prune_ratio, ratio_of=s.ratio_of, round_to=s.round_to,
                    profile=profile, input_shape=shape, dense_ms=dense_ms)
    from prunekit.select.latency import check_reachable, predict_current

    # Through the selection's cache: the dense and minimum-width predictions made here anchor
    # the cheap predictor of every scheduled step (nothing is exported again for them).
    graph = PruningGraph(copy.deepcopy(model), example, s.model)
    dense_ms = predict_current(graph, profile, shape).total_ms
    target_ms = s.latency_ms if s.latency_ms is not None else dense_ms * float(s.latency_budget or 1.0)
    calibration = None
    if calibrate:
        from prunekit.latency.subnets import find_calibration, predicted_target

        calibration = find_calibration(profile, model, shape, dense_ms)
        if calibration is None and s.target == LOCAL:  # measured here on first use, kept in the profile
            from prunekit.latency.profiler import model_key
            from prunekit.latency.store import local_profile_path
            from prunekit.select.calibrate import calibrate_profile

            calibration = calibrate_profile(local_profile_path(), profile, model, shape,
                                            model_key(s.model, size, classes), s.subnets, s.round_to,
                                            None if quiet else console, s.model)
        if calibration is not None:
            aim = predicted_target(calibration, float(s.latency_budget))  # type: ignore[arg-type]
            if s.target == LOCAL:  # time the choice at that aim here, correct it, keep the copies
                from prunekit.latency.profiler import model_key
                from prunekit.latency.store import local_profile_path
                from prunekit.select.calibrate import refine_calibration

                calibration, aim = refine_calibration(local_profile_path(), profile, model, shape,
                                                      model_key(s.model, size, classes), calibration,
                                                      float(s.latency_budget), s.round_to,  # type: ignore[arg-type]
                                                      None if quiet else console, s.model)
            target_ms = dense_ms * aim
            if not quiet and console is not None:
                console.print(f"calibrated on {len(calibration.points)} pruned copies of {s.model} timed on "
                              f"{profile.name} ({calibration.date}): a measured {s.latency_budget} of dense is "
                              f"predicted {aim:.3f}; selecting at {target_ms:.3f} ms", highlight=False)
    measure = None
    if s.verify or s.measure_cmd:
        import tempfile

        from prunekit.select.verify import VerifyOptions, command_measure, runtime_measure

        dense_arch = copy.deepcopy(model).cpu().eval()
        if s.measure_cmd:
            measure = command_measure(s.measure_cmd, shape, dense_arch, tempfile.mkdtemp(prefix="prunekit-verify-"),
                                      s.measure_timeout)
        else:
            measure = runtime_measure(profile, shape, dense_arch)
    budget = s.latency_budget if measure is not None else None
    aimed = check_reachable(graph, profile, shape, target_ms, s.round_to,
                            measured=(measure, budget) if measure is not None and budget is not None else None)
    if aimed != target_ms:
        if not quiet and console is not None:
            console.print(f"the profile predicts budget {budget} out of reach ({target_ms:.3f} ms is below the "
                          f"minimum widths' prediction), but the minimum widths *measure* within it here: "
                          f"selecting at {aimed:.3f} ms predicted, corrected by the measurement", highlight=False)
        target_ms = aimed
    return Goal(kind="latency", round_to=s.round_to, profile=profile, input_shape=shape,
                target_ms=target_ms, dense_ms=dense_ms, measure=measure,
                budget=budget,
                verify=VerifyOptions(max_tries=s.verify_tries) if measure is not None else None,
                calibration=calibration)


def _num_outputs(model: nn.Module, example: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model.eval()(example).shape[-1])


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


def stage_prune(ctx: RunContext, dense: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """Select channels with the run's method and physically remove them; writes plan.json.

    Under DDP the decision is made once on rank 0 and broadcast (plan + weights), so every rank
    removes the same channels.
    """
    f = ctx.folder
    s = ctx.settings
    if ctx.resume and "prune" in f.stages_done():
        plan = read_json(f.plan_json, "plan")
        pruned = apply_plan(_task(ctx).build_model(s.model, ctx.num_classes), plan, ctx.example, s.model)
        load_weights(pruned, f.file("pruned_init.safetensors"))
        ctx.log("pruning: plan loaded from the interrupted run")
        return pruned.to(ctx.device), read_json(f.file("logs/method.json"), "method log")
    ctx.log(f"pruning with method {s.method}" + (f" for {s.target}" if s.target else ""))
    model = copy.deepcopy(dense).cpu()
    payload = None
    if dist_utils.is_main():
        graph, result = ctx.method.run(ctx, model, ctx.goal)
        plan, info = graph.plan(), result.to_dict()
        payload = (plan, info, _state_bytes(model) if dist_utils.is_distributed() else b"")
    if dist_utils.is_distributed():
        plan, info, blob = dist_utils.broadcast_object(payload)
        if not dist_utils.is_main():
            from safetensors.torch import load as load_safetensors

            model = apply_plan(model, plan, ctx.example, s.model)
            model.load_state_dict(load_safetensors(blob))
    plan["method"] = s.method
    if dist_utils.is_main():
        write_json(f.plan_json, plan)
        write_json(f.file("logs/method.json"), info)
        save_weights(model, f.file("pruned_init.safetensors"))
        f.mark("prune")
    dist_utils.barrier()
    return model.to(ctx.device), info


def _state_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})


def stage_finetune(ctx: RunContext, pruned: nn.Module) -> nn.Module:
    """Recover accuracy of the pruned model (SGD, SAM or ASAM); writes pruned.safetensors."""
    f = ctx.folder
    s = ctx.settings
    if ctx.resume and "finetune" in f.stages_done():
        load_weights(pruned, f.file("pruned.safetensors"))
        return pruned
    optimizer, rho = s.finetune
    cfg = ctx.train_config(s.epochs, optimizer=optimizer)
    cfg.rho = rho
    attack = ctx.method.finetune_attack(ctx.options, s)
    log = fit(
        pruned,
        ctx.data,
        cfg,
        attack=attack,
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
    """Params, MACs and the task's validation metrics (accuracy; mAP) of one model."""
    model.eval()
    macs, _ = count_macs_params(model.cpu(), ctx.example)
    model.to(ctx.device)
    out: dict[str, Any] = {"params": count_params(model), "macs": macs}
    out.update(_task(ctx).evaluate(model, ctx.data, ctx.device))
    if ctx.goal.profile is not None:
        from prunekit.latency.predict import predict_latency

        pred = predict_latency(model.cpu(), ctx.goal.profile, ctx.goal.input_shape, model_hint=ctx.settings.model)
        model.to(ctx.device)
        out["predicted_latency_ms"] = round(pred.total_ms, 5)
    return out


def measured_latency(ctx: RunContext, dense: nn.Module, pruned: nn.Module) -> dict[str, Any] | None:
    """Dense and pruned timed warm on the target's runtime, where this machine is the target.

    That is: `--verify` (timed here) or a profile measured on this very device (`local`, or
    `cpu-ort` on its build machine). None elsewhere (a Jetson profile on a laptop, --measure-cmd).
    """
    profile = ctx.goal.profile
    if profile is None or ctx.settings.measure_cmd:
        return None
    from prunekit.runtimes import Execution, ModelRef, get_runtime

    rt = get_runtime(profile.runtime)
    if rt.available() is not None:
        return None
    ex = Execution.of_profile(profile, rt)
    here = profile.provenance.kind == "measured" and profile.provenance.device_model == rt.device_model(ex.device)
    if not (ctx.settings.verify or here):
        return None
    a, b = copy.deepcopy(dense).cpu().eval(), copy.deepcopy(pruned).cpu().eval()
    pair = rt.time_pair(ModelRef(module=a), ModelRef(module=b), ctx.goal.input_shape, ex)
    return {"dense_ms": pair.dense.median_ms, "pruned_ms": pair.pruned.median_ms, "ratio": pair.ratio,
            "how": f"{rt.describe(ex)}, warm blocks, ratio of medians"}


def _task(ctx: RunContext) -> Task:
    return ctx.task if ctx.task is not None else resolve_task(ctx.settings.task, ctx.settings.model)


def _stage_logs(folder: RunFolder) -> dict[str, Any]:
    logs: dict[str, Any] = {}
    for name in ("pretrain", "finetune"):
        p = folder.file(f"logs/{name}.json")
        if p.exists():
            logs[name] = read_json(p, "log")
    return logs
