"""`prunekit eval`: robust accuracy of a model, an ONNX file or a run (dense vs pruned)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.errors import PrunekitError


@dataclass
class _Target:
    """What MODEL_OR_RUN names: a run, an ONNX file or a model architecture + weights."""

    kind: str  # "run" | "onnx" | "model"
    data: str
    num_classes: int | None
    input_size: int | None
    models: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # the run's --task (None: from the model name)
    model: str | None = None


def _resolve(
    target: str, weights: Path | None, data: str | None, num_classes: int | None, size: int | None
) -> _Target:
    path = Path(target)
    if path.is_dir():
        from prunekit.runs import load_run

        run = load_run(path)
        s = run.settings
        if size is not None and size != int(s["input_size"]):
            raise PrunekitError(
                f"the run was trained at {s['input_size']} px, not {size}", "leave out --input-size"
            )
        models = {"dense": run.dense, "pruned": run.pruned}
        return _Target("run", data or str(s["data"]), int(s["num_classes"]), int(s["input_size"]), models,
                       s.get("task"), str(s["model"]))
    if data is None:
        raise PrunekitError("--data is required unless MODEL_OR_RUN is a run folder", "e.g. --data digits")
    if path.suffix == ".onnx":
        from prunekit.deploy.ort_model import OrtClassifier, input_hw, load_checked_onnx

        hw = input_hw(load_checked_onnx(path))
        if hw and size is not None and size != hw[0]:
            raise PrunekitError(f"{path} takes {hw[0]} px inputs, not {size}", "leave out --input-size")
        return _Target(
            "onnx", data, num_classes, hw[0] if hw else size, {path.stem: OrtClassifier(str(path))}
        )
    if path.suffix in (".pt", ".pth", ".safetensors", ".bin"):
        raise PrunekitError(
            f"{path} is a weights file; name the architecture as MODEL_OR_RUN",
            f"e.g. prunekit eval resnet18 --weights {path} --data ...",
        )
    if weights is None:
        raise PrunekitError(
            f"model '{target}' needs --weights (an untrained model has nothing to evaluate)",
            "pass --weights FILE, a run folder, or an .onnx file",
        )
    return _Target("model", data, num_classes, size, model=target)


@app.command("eval")
@handle_errors
def eval_command(
    model_or_run: str = typer.Argument(
        ...,
        metavar="MODEL_OR_RUN",
        help="A run folder from `prunekit compress` (evaluates dense and pruned side by side), an .onnx "
        "file (run with ONNX Runtime), or a model name (resnet18, timm:<name>, package.module:factory) "
        "with --weights.",
    ),
    data: str | None = typer.Option(
        None,
        help="Clean evaluation data, e.g. digits, cifar10:DIR, imagefolder:DIR (default: the run's data).",
    ),
    corruptions: str | None = typer.Option(
        None,
        help="Comma-separated corruptions, 'benchmark' (the 15 of ImageNet-C / CIFAR-10-C, the default) or "
        "'all' (adds speckle_noise, gaussian_blur, spatter, saturate).",
    ),
    severities: str = typer.Option("1,2,3,4,5", help="Comma-separated severities, each 1..5."),
    corrupted_dir: Path | None = typer.Option(
        None,
        "--corrupted-dir",
        help="Read pre-corrupted images instead of generating them: a CIFAR-10-C/-100-C folder "
        "(<corruption>.npy + labels.npy) or an ImageNet-C folder (<corruption>/<severity>/<wnid>/).",
    ),
    pgd: bool = typer.Option(False, "--pgd", help="Also measure accuracy under an L-inf PGD attack."),
    eps: float = typer.Option(8 / 255, help="PGD radius in [0, 1] pixel units (8/255 = 0.0314)."),
    pgd_steps: int = typer.Option(10, help="PGD steps."),
    pgd_step_size: float = typer.Option(2 / 255, help="PGD step size in [0, 1] pixel units."),
    certify_samples: int = typer.Option(
        0,
        "--certify",
        metavar="N",
        help="Probabilistic certified accuracy from N random corruptions per image (0: off).",
    ),
    epsilon: float = typer.Option(
        0.1, help="--certify: certified when the flip-probability bound is below this."
    ),
    alpha: float = typer.Option(0.05, help="--certify: 1 - confidence of the Clopper-Pearson bound."),
    weights: Path | None = typer.Option(None, help="Weights file when MODEL_OR_RUN is a model name."),
    num_classes: int | None = typer.Option(None, help="Classes of a bare model (default: from the data)."),
    input_size: int | None = typer.Option(None, help="Input resolution (default: the run's, or the data's)."),
    batch_size: int = typer.Option(128, help="Images per batch."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N images (faster, noisier)."),
    seed: int = typer.Option(0, help="Seed of the corruption noise, PGD starts and certification draws."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write a bar chart PNG of accuracy per corruption here."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Measure robust accuracy: clean, per corruption and severity, R_C, and optionally PGD and
    certified accuracy. A run folder is evaluated dense vs pruned on the same corrupted images,
    with the pruned model's corruption error (mCE) relative to the dense one.
    """
    import torch

    from prunekit.progress import progress_bar
    from prunekit.robustness.evaluation import EvalOptions, evaluate_models, plot_accuracy
    from prunekit.robustness.spec import parse_corruptions, parse_severities

    console = ui(json_out)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev != "cpu" and not dev.startswith("cuda"):
        raise PrunekitError(f"unknown --device '{dev}'", "use cpu or cuda")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise PrunekitError("--device cuda was asked for but no CUDA GPU is available", "use --device cpu")
    options = EvalOptions(
        corruptions=parse_corruptions(corruptions),
        severities=parse_severities(severities),
        seed=seed,
        limit=limit,
        device=dev,
        corrupted_dir=corrupted_dir,
        batch_size=batch_size,
        pgd=pgd,
        eps=eps,
        pgd_steps=pgd_steps,
        pgd_step_size=pgd_step_size,
        certify_samples=certify_samples,
        certify_epsilon=epsilon,
        certify_alpha=alpha,
    )
    options.validate()  # before any model or data is loaded
    tgt = _resolve(model_or_run, weights, data, num_classes, input_size)
    spec = tgt.data
    from prunekit.tasks import resolve_task

    task = resolve_task(tgt.task, tgt.model)
    bundle = task.load_data(spec, tgt.input_size, tgt.num_classes)
    options.input_size = bundle.input_size
    if tgt.kind == "run" and bundle.num_classes != tgt.num_classes:
        raise PrunekitError(
            f"the run has {tgt.num_classes} classes but --data {spec} has {bundle.num_classes}"
        )
    models = tgt.models
    if tgt.kind == "model":
        from prunekit.models import load_weights

        net = task.build_model(model_or_run, tgt.num_classes or bundle.num_classes)
        load_weights(net, weights)  # type: ignore[arg-type]
        models = {model_or_run: net.eval()}
    own = task.robustness(models, bundle, options)  # a detector's mAP, mPC and rPC
    if own is not None:
        own.update(model_or_run=model_or_run, data=spec, device=dev)
        if json_out:
            emit_json(own)
        else:
            console.print(_map_table(own))
        return
    loader = bundle.loader("val", batch_size, seed=seed, shuffle=False)
    n_images = min(len(bundle.val_set), limit or len(bundle.val_set))
    cells = len(options.corruptions) * len(options.severities)
    per_model = (
        n_images * (cells if corrupted_dir is None else 0)
        + (n_images if pgd else 0)
        + (n_images if certify_samples else 0)
    )
    with progress_bar(console, disable=per_model == 0, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, n: int) -> None:
            if task not in tasks:
                total = n_images * cells if task.endswith("corruptions") else n_images
                tasks[task] = bar.add_task(task, total=None if task.endswith("files") else total, info="")
            bar.advance(tasks[task], n)

        result = evaluate_models(models, loader, options, progress=progress)
    result["model_or_run"] = model_or_run
    result["data"] = spec
    result["device"] = dev
    if out is not None:
        result["chart"] = str(plot_accuracy(result, out, title=f"{Path(model_or_run).name} on {spec}"))
    if json_out:
        emit_json(result)
        return
    console.print(_table(result))
    for name, m in result["models"].items():
        cert = m.get("certify")
        if cert and cert["smallest_bound"] >= cert["epsilon"]:
            console.print(
                f"[yellow]note:[/] with {cert['n_samples']} samples no image of '{name}' can be certified at "
                f"epsilon {cert['epsilon']} (zero flips still bound the flip rate at {cert['smallest_bound']:.3f}); "
                "raise --certify or --epsilon"
            )
    if out is not None:
        console.print(f"chart: {result['chart']}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _table(result: dict[str, Any]) -> Table:
    models = result["models"]
    names = list(models)
    sevs = ",".join(str(s) for s in result["settings"]["severities"])
    table = Table(title=f"Robust accuracy (%) on {result['data']} — severities {sevs}")
    table.add_column("corruption")
    for n in names:
        table.add_column(n, justify="right")
    if len(names) > 1:
        table.add_column(f"{names[-1]} - {names[0]}", justify="right")

    def row(label: str, values: list[float | None], pct: bool = True, end: bool = False) -> None:
        cells = [(_pct(v) if pct else ("-" if v is None else f"{v:.3f}")) for v in values]
        if len(names) > 1:
            a, b = values[0], values[-1]
            diff = None if a is None or b is None else b - a
            cells.append("-" if diff is None else (f"{100 * diff:+.1f}" if pct else f"{diff:+.3f}"))
        table.add_row(label, *cells, end_section=end)

    row("clean", [models[n]["clean_accuracy"] for n in names], end=True)
    for c in models[names[0]]["per_corruption"]:
        row(c.replace("_", " "), [models[n]["per_corruption"].get(c) for n in names])
    table.add_section()
    row("mean corruption (acc_C)", [models[n]["mean_corruption_accuracy"] for n in names])
    row("R_C = acc_C / clean", [models[n]["relative_robustness"] for n in names], pct=False)
    if len(names) > 1:
        table.add_row("mCE vs " + names[0], "1.000", *[_mce(models[n]) for n in names[1:]], "")
    if all("pgd" in models[n] for n in names):
        eps = models[names[0]]["pgd"]["eps"]
        row(f"PGD eps={eps:.4f}", [models[n]["pgd"]["adversarial_accuracy"] for n in names])
    if all("certify" in models[n] for n in names):
        c0 = models[names[0]]["certify"]
        row(
            f"certified (N={c0['n_samples']}, eps={c0['epsilon']})",
            [models[n]["certify"]["certified_accuracy"] for n in names],
        )
    return table


def _map_table(result: dict[str, Any]) -> Table:
    """Detection: clean mAP, mAP per corruption (mean over severities), mPC and rPC per model."""
    models = result["models"]
    names = list(models)
    sevs = ",".join(str(s) for s in result["severities"])
    table = Table(title=f"Robust mAP@[.5:.95] (%) on {result['data']} — severities {sevs}, {result['n_images']} images")
    table.add_column("corruption")
    for n in names:
        table.add_column(n, justify="right")
    table.add_row("clean mAP", *[_pct(models[n]["map"]) for n in names])
    table.add_row("clean mAP@.5", *[_pct(models[n]["map_50"]) for n in names], end_section=True)
    for c in result["corruptions"]:
        table.add_row(c.replace("_", " "), *[_pct(models[n]["per_corruption"][c]) for n in names])
    table.add_section()
    table.add_row("mPC (mean over corruptions x severities)", *[_pct(models[n]["mpc"]) for n in names])
    table.add_row("rPC = mPC / clean mAP", *["-" if models[n]["rpc"] is None else f"{models[n]['rpc']:.3f}"
                                             for n in names])
    return table


def _mce(m: dict[str, Any]) -> str:
    return "-" if m.get("mce") is None else f"{m['mce']:.3f}"
