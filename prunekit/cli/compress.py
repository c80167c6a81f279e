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
    finetune_optimizer: str | None = typer.Option(None, help="Fine-tuning optimizer: sgd, sam or asam (sharpness-aware; twice the cost per step unless --sam-every > 1). Default: asam for adasap, sgd otherwise."),
    rho: float | None = typer.Option(None, help="SAM/ASAM radius for fine-tuning. Default: 0.5 with asam, 0.05 with sam (the AdaSAP paper uses 2.0 for ASAM on ImageNet)."),
    sam_every: int = typer.Option(1, help="Cheaper SAM: compute the sharpness step only every k steps and reuse its direction in between."),
    prune_steps: int = typer.Option(4, help="[halp, adasap] Pruning steps on AdaSAP's exponential schedule toward the goal.", rich_help_panel="Method options"),
    prune_every: int = typer.Option(30, help="[halp, adasap] Training iterations between pruning steps (0: none).", rich_help_panel="Method options"),
    warmup_epochs: int = typer.Option(1, help="[adasap] Warm-up epochs with per-channel ASAM radii before pruning.", rich_help_panel="Method options"),
    rho_min: float = typer.Option(0.01, help="[adasap] Radius of the most important channels.", rich_help_panel="Method options"),
    rho_max: float = typer.Option(0.5, help="[adasap] Radius of the least important channels. The paper uses 2.0 (ASAM, ImageNet); on the built-in data 2.0 wrecked the model in one warm-up epoch, 0.5 did not.", rich_help_panel="Method options"),
    mask_epochs: int = typer.Option(1, help="[csam] Epochs of soft-mask search with frozen weights.", rich_help_panel="Method options"),
    mask_lr: float = typer.Option(0.05, help="[csam] Adam learning rate of the masks.", rich_help_panel="Method options"),
    csam_mu: float = typer.Option(0.5, help="[csam] Mask noise: C + U(-mu, mu), clipped to [0, 1].", rich_help_panel="Method options"),
    csam_eta: float = typer.Option(1.0, help="[csam] Safety threshold of the ratio loss.", rich_help_panel="Method options"),
    csam_tau: float = typer.Option(30.0, help="[csam] Percentile of the mask initialisation (top tau %% start fully on).", rich_help_panel="Method options"),
    lambda_stab: float = typer.Option(5.0, help="[csam] Weight of the stability loss.", rich_help_panel="Method options"),
    lambda_ratio: float = typer.Option(1.0, help="[csam] Weight of the margin-ratio loss.", rich_help_panel="Method options"),
    lambda_consist: float = typer.Option(1.0, help="[csam] Weight of the soft/binary consistency (KL) loss.", rich_help_panel="Method options"),
    score_epochs: int = typer.Option(1, help="[s2ap] Epochs of importance-score search against the PGD loss.", rich_help_panel="Method options"),
    score_lr: float = typer.Option(0.1, help="[s2ap] SGD learning rate of the scores.", rich_help_panel="Method options"),
    s2ap_rho: float = typer.Option(0.05, help="[s2ap] Radius of the sharpness step in score space (0: plain HYDRA).", rich_help_panel="Method options"),
    pgd_eps: float = typer.Option(8 / 255, help="[s2ap] L-inf radius of the PGD attack used for training, in [0, 1] pixel units.", rich_help_panel="Method options"),
    pgd_train_steps: int = typer.Option(3, help="[s2ap] PGD steps per batch during score search and adversarial fine-tuning.", rich_help_panel="Method options"),
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
        finetune_optimizer=finetune_optimizer, rho=rho, sam_every=sam_every, prune_steps=prune_steps,
        prune_every=prune_every, warmup_epochs=warmup_epochs, rho_min=rho_min, rho_max=rho_max,
        mask_epochs=mask_epochs, mask_lr=mask_lr, csam_mu=csam_mu, csam_eta=csam_eta, csam_tau=csam_tau,
        lambda_stab=lambda_stab, lambda_ratio=lambda_ratio, lambda_consist=lambda_consist,
        score_epochs=score_epochs, score_lr=score_lr, s2ap_rho=s2ap_rho, pgd_eps=pgd_eps,
        pgd_train_steps=pgd_train_steps,
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
