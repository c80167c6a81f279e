"""`prunekit compress`: the main job.

The options common to every run are the parameters of `compress` below. `--method` and the
method options are built from the method registry (prunekit.methods) when this module is
imported: one flag per field of each method's options model (`rho_max` -> `--rho-max`, its
description -> the help, in the panel "Method options: <methods>"). Plug-in methods are loaded
first (`load_plugins`: PRUNEKIT_PLUGINS and the `prunekit.methods` entry points).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.data import SPEC_HELP
from prunekit.errors import PrunekitError
from prunekit.methods import METHODS, list_methods, load_plugins, option_flag
from prunekit.tasks.detection.data import SPEC_HELP as DETECTION_SPEC_HELP

load_plugins()


def _method_help() -> str:
    listing = "; ".join(f"{name}: {m.help}" for name, m in METHODS.items())
    return f"How channels are chosen. {listing}. See README 'Methods'."


def compress(
    task: str | None = typer.Option(None, help="classification or detection (default: detection for a torchvision "
                                    "detector's name, else classification); sets the defaults of --model and --data."),
    model: str | None = typer.Option(
        None, help="torchvision classification model (resnet18, mobilenet_v2, ...), timm:<name>, "
        "or package.module:factory (called with num_classes=); with --task detection a torchvision detector "
        "(ssdlite320_mobilenet_v3_large, retinanet_resnet50_fpn, fcos_resnet50_fpn, ...) or a factory returning one. "
        "Default: resnet18; ssdlite320_mobilenet_v3_large for detection.", show_default=False,
    ),
    data: str | None = typer.Option(None, help=f"Training/validation data: {SPEC_HELP}; for detection: "
                                    f"{DETECTION_SPEC_HELP}. Default: digits; shapes for detection.", show_default=False),
    num_classes: int | None = typer.Option(None, help="Number of classes (default: from the data)."),
    input_size: int | None = typer.Option(None, help="Input resolution in pixels (default: 32 for digits/CIFAR/synthetic, 224 for imagefolder)."),
    weights: Path | None = typer.Option(None, help="Trained weights of the dense model (.safetensors or a torch state dict; loaded with weights_only, never unpickled code). Without it, the model is pretrained here for --pretrain-epochs."),
    method: str | None = typer.Option(None, help=_method_help() + " Default: halp for a latency goal, magnitude "
                                      "for --prune-ratio.", show_default=False),
    prune_ratio: float | None = typer.Option(None, help="Fraction to REMOVE, in (0, 1). With --ratio-of channels (default) it is the fraction of channels removed in every group, so MACs fall by about 1-(1-r)^2; with --ratio-of macs it is the fraction of MACs removed. Default 0.5 when no latency budget is given."),
    ratio_of: str = typer.Option("channels", help="What --prune-ratio counts: channels or macs."),
    round_to: int = typer.Option(8, help="Keep channel counts at multiples of this (runtimes' vector kernels like multiples of 8)."),
    target: str | None = typer.Option(None, help="Device profile to prune for (see `prunekit targets`), e.g. cpu-ort, jetson-orin, or local (ONNX Runtime on this CPU, measured here on first use)."),
    latency_budget: float | None = typer.Option(None, help="Latency goal as a fraction in (0, 1] of the dense model's latency predicted on --target."),
    latency_ms: float | None = typer.Option(None, help="Latency goal in milliseconds on --target (instead of --latency-budget)."),
    pretrain_epochs: int | None = typer.Option(None, help="Epochs to train the dense model first when no --weights are given (0: skip). Default: the task's (3; detection 40)."),
    epochs: int | None = typer.Option(None, help="Fine-tuning epochs after pruning (0: prune only). Default: the task's (3; detection 10)."),
    lr: float = typer.Option(0.05, help="Learning rate (SGD with momentum 0.9, cosine schedule)."),
    batch_size: int | None = typer.Option(None, help="Batch size per process. Default: the task's (64; detection 16)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same run, also after --resume."),
    finetune_optimizer: str | None = typer.Option(None, help="Fine-tuning optimizer: sgd, sam or asam (sharpness-aware; twice the cost per step unless --sam-every > 1). Default: the method's (asam for adasap), sgd otherwise."),
    rho: float | None = typer.Option(None, help="SAM/ASAM radius for fine-tuning. Default: 0.5 with asam, 0.05 with sam (the AdaSAP paper uses 2.0 for ASAM on ImageNet)."),
    sam_every: int = typer.Option(1, help="prunekit's own cheaper SAM (not from a paper): compute the sharpness step only every k steps and re-apply its perturbation in between (1: full SAM)."),
    verify: bool | None = typer.Option(None, "--verify/--no-verify", show_default=False, help="Measured in the loop (default: on for the bare main job, off otherwise): after selection, time the candidate warm against dense on the target's runtime on this machine; if its measured ratio is outside [0.94, 1.03] x --latency-budget, move the knapsack goal by budget / measured and select again (every try is in report.json). A budget the profile predicts out of reach is tried as measured: the minimum widths are timed first."),
    verify_tries: int = typer.Option(4, help="Most selections --verify / --measure-cmd make."),
    measure_cmd: str | None = typer.Option(None, help="Like --verify, but time each candidate with this shell command (on the device): {onnx} / {dense_onnx} are the candidate and dense ONNX files, {onnx_name} / {dense_onnx_name} their names; it must print `prunekit measure ... --json` output, e.g. \"scp {onnx} {dense_onnx} orin:/tmp/ && ssh orin prunekit measure /tmp/{onnx_name} --baseline /tmp/{dense_onnx_name} --target jetson-orin --json\"."),
    measure_timeout: float = typer.Option(600.0, help="Seconds one --measure-cmd call may take."),
    subnets: int = typer.Option(6, help="End-to-end calibration of a --latency-budget: up to N pruned copies of the model (the latency knapsack's own choices at targets from its minimum widths to 0.92 of dense) timed against it on the target. On --target local they are timed here on first use (seconds at 32x32); on other targets the profile's own (from `prunekit profile --subnets` on the device) is used where it has one. The budget is then aimed through the measured curve; on local the knapsack's choice at that aim is timed too and the aim corrected (up to 3 copies, kept in the profile). 0: the table alone."),
    out: Path | None = typer.Option(None, help="Run folder (default: export/<model>-<data>-<method>[-<target>])."),
    force: bool = typer.Option(False, "--force", help="Overwrite a run folder that already holds a run."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in the same folder from its last checkpoint (a finished run: print its report, nothing recomputed)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON object on stdout."),
    **method_flags: Any,
) -> None:
    """Prune a model (physically removing channels), fine-tune it, and write a run folder.

    Bare `prunekit compress` is the main job: resnet18 on the built-in digits data pruned by HALP
    to half its latency on this machine's CPU (--target local, profiled on first use, the result
    timed and corrected: --verify), in a few minutes on a laptop CPU. --prune-ratio instead
    removes a fraction of the channels (magnitude).
    """
    from prunekit.compress import compress as run_compress
    from prunekit.report import compress_table
    from prunekit.settings import main_job_defaults, make_settings

    # Bare `prunekit compress` (no goal flag): the task's main job, e.g. --target local --latency-budget 0.5.
    given = main_job_defaults({"task": task, "model": model, "method": method, "prune_ratio": prune_ratio,
                               "latency_budget": latency_budget, "latency_ms": latency_ms, "target": target,
                               "verify": verify})
    method, target, latency_budget, verify = given["method"], given["target"], given["latency_budget"], given["verify"]
    options = method_options_for(method, method_flags)
    settings = make_settings(
        task=task, model=model, data=data, num_classes=num_classes, input_size=input_size,
        weights=str(weights) if weights else None, method=method, prune_ratio=prune_ratio, ratio_of=ratio_of,
        round_to=round_to, target=target, latency_budget=latency_budget, latency_ms=latency_ms,
        pretrain_epochs=pretrain_epochs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        finetune_optimizer=finetune_optimizer, rho=rho, sam_every=sam_every, method_options=options,
        verify=verify, verify_tries=verify_tries, measure_cmd=measure_cmd, measure_timeout=measure_timeout,
        subnets=subnets,
    )
    console = ui(json_out)
    report = run_compress(settings, out, resume=resume, force=force, console=console)
    from prunekit import distributed

    if not distributed.is_main():
        return
    if json_out:
        emit_json(report)
    else:
        console.print(compress_table(report))
        console.print(f"run folder: {report['run']['folder']}")


def method_options_for(method: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The method options given on the command line for `method` (flags left out: None).

    A flag of another method is an error, not silently ignored."""
    given = {k: v for k, v in flags.items() if v is not None}
    if method not in METHODS:
        return given  # the settings name the unknown --method
    own = METHODS[method].Options.model_fields
    for key in given:
        if key not in own:
            owners = [n for n, m in METHODS.items() if key in m.Options.model_fields]
            raise PrunekitError(
                f"{option_flag(key)} is an option of method {', '.join(owners)}, not of {method}",
                f"leave it out, or use --method {owners[0]}" if owners else "leave it out",
            )
    return given


# -- method flags from the registry ------------------------------------------------------------------
def _cli_type(annotation: Any) -> Any:
    """The CLI type of an options field: Optional[X] -> X, Literal[...] -> str (checked by the
    options model, so the error is one line naming the flag)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _cli_type(args[0]) if len(args) == 1 else str
    if origin is typing.Literal:
        return str
    return annotation if annotation in (int, float, str, bool) else str


def _default_text(values: list[tuple[str, Any]]) -> str:
    shown = {f"{v:g}" if isinstance(v, float) else str(v) for _, v in values}
    if len(shown) == 1:
        return shown.pop()
    return ", ".join(f"{n}: {f'{v:g}' if isinstance(v, float) else v}" for n, v in values)


def method_parameters() -> list[inspect.Parameter]:
    """One keyword-only CLI parameter per method option field (shared fields once); default None
    = not given, so the method's options model fills in its own default."""
    common = set(inspect.signature(compress).parameters)
    fields: dict[str, dict[str, Any]] = {}
    for name in list_methods():
        for key, info in METHODS[name].Options.model_fields.items():
            if key in common:
                sys.stderr.write(f"warning: method {name}: option '{key}' clashes with a compress option; no flag\n")
                continue
            entry = fields.setdefault(key, {"info": info, "owners": [], "defaults": []})
            entry["owners"].append(name)
            entry["defaults"].append((name, info.default))
    params = []
    for key, entry in fields.items():
        info = entry["info"]
        kind = _cli_type(info.annotation)
        help_text = info.description or ""
        if typing.get_origin(info.annotation) is typing.Literal:
            help_text += f" One of: {', '.join(map(str, typing.get_args(info.annotation)))}."
        flag = option_flag(key) if kind is not bool else f"{option_flag(key)}/--no-{key.replace('_', '-')}"
        option = typer.Option(
            None, flag, help=help_text, show_default=_default_text(entry["defaults"]),
            rich_help_panel=f"Method options: {', '.join(entry['owners'])}",
        )
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=kind | None))
    return params


def _register() -> None:
    signature = inspect.signature(compress, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command = handle_errors(compress)
    command.__signature__ = signature.replace(parameters=fixed + method_parameters())  # type: ignore[attr-defined]
    app.command("compress")(command)


_register()
