"""`prunekit compress`: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.data import SPEC_HELP


@app.command()
@handle_errors
def compress(
    model: str = typer.Option(
        "resnet18", help="torchvision classification model (resnet18, mobilenet_v2, ...), timm:<name>, "
        "or package.module:factory (called with num_classes=)."
    ),
    data: str = typer.Option("digits", help=f"Training/validation data: {SPEC_HELP}."),
    num_classes: int | None = typer.Option(None, help="Number of classes (default: from the data)."),
    input_size: int | None = typer.Option(None, help="Input resolution in pixels (default: 32 for digits/CIFAR/synthetic, 224 for imagefolder)."),
    weights: Path | None = typer.Option(None, help="Trained weights of the dense model (.safetensors or a torch state dict; loaded with weights_only, never unpickled code). Without it, the model is pretrained here for --pretrain-epochs."),
    method: str = typer.Option("magnitude", help="How channels are chosen: magnitude (L2 norm), taylor (first-order |w*grad|), halp (latency knapsack), adasap, csam, s2ap. See README 'Methods'."),
    prune_ratio: float | None = typer.Option(None, help="Fraction to REMOVE, in (0, 1). With --ratio-of channels (default) it is the fraction of channels removed in every group, so MACs fall by about 1-(1-r)^2; with --ratio-of macs it is the fraction of MACs removed. Default 0.5 when no latency budget is given."),
    ratio_of: str = typer.Option("channels", help="What --prune-ratio counts: channels or macs."),
    round_to: int = typer.Option(8, help="Keep channel counts at multiples of this (runtimes' vector kernels like multiples of 8)."),
    target: str | None = typer.Option(None, help="Device profile to prune for (see `prunekit targets`), e.g. cpu-ort, jetson-orin."),
    latency_budget: float | None = typer.Option(None, help="Latency goal as a fraction in (0, 1] of the dense model's latency predicted on --target."),
    latency_ms: float | None = typer.Option(None, help="Latency goal in milliseconds on --target (instead of --latency-budget)."),
    pretrain_epochs: int = typer.Option(3, help="Epochs to train the dense model first when no --weights are given (0: skip)."),
    epochs: int = typer.Option(3, help="Fine-tuning epochs after pruning (0: prune only)."),
    lr: float = typer.Option(0.05, help="Learning rate (SGD with momentum 0.9, cosine schedule)."),
    batch_size: int = typer.Option(64, help="Batch size per process."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same run, also after --resume."),
    finetune_optimizer: str = typer.Option("sgd", help="Fine-tuning optimizer: sgd, sam or asam (sharpness-aware; twice the cost per step unless --sam-every > 1)."),
    rho: float = typer.Option(0.05, help="SAM/ASAM perturbation radius for fine-tuning (paper defaults: 0.05 SAM, 2.0 ASAM)."),
    sam_every: int = typer.Option(1, help="Cheaper SAM: compute the sharpness step only every k steps and reuse its direction in between."),
    out: Path | None = typer.Option(None, help="Run folder (default: export/<model>-<data>-<method>[-<target>])."),
    force: bool = typer.Option(False, "--force", help="Overwrite a run folder that already holds a run."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in the same folder from its last checkpoint."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON object on stdout."),
) -> None:
    """Prune a model (physically removing channels), fine-tune it, and write a run folder.

    Bare `prunekit compress` is the main job: resnet18 on the built-in digits data, 50 % of the
    channels removed, in a few minutes on a laptop CPU.
    """
    from prunekit.compress import compress as run_compress
    from prunekit.report import compress_table
    from prunekit.settings import make_settings

    settings = make_settings(
        model=model, data=data, num_classes=num_classes, input_size=input_size,
        weights=str(weights) if weights else None, method=method, prune_ratio=prune_ratio, ratio_of=ratio_of,
        round_to=round_to, target=target, latency_budget=latency_budget, latency_ms=latency_ms,
        pretrain_epochs=pretrain_epochs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        finetune_optimizer=finetune_optimizer, rho=rho, sam_every=sam_every,
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
