"""`prunekit profile`: measure a target's latency table for a model, on this machine."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.errors import PrunekitError


def _input_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise PrunekitError(f"--input-size {text!r} is not a size", "give one number (224) or HxW (224x224)")
    return parts[0], parts[1]


def _runtimes_help() -> str:
    from prunekit.runtimes import RUNTIMES, list_runtimes

    return "Runtime to time layers on: " + "; ".join(f"{n}: {RUNTIMES[n].summary}" for n in list_runtimes()) + "."


@app.command("profile")
@handle_errors
def profile_cmd(
    target: str = typer.Option(
        ..., "--target", "-t", help="Profile name to create or extend (e.g. cpu-ort, my-orin)."
    ),
    runtime: str = typer.Option("onnxruntime", "--runtime", "-r", help=_runtimes_help()),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model whose layers to measure, any spec compress takes: a torchvision name (resnet18), "
        "timm:<name>, or package.module:factory.",
    ),
    input_size: str = typer.Option("224", "--input-size", help="Input image size: 224 or HxW."),
    num_classes: int = typer.Option(
        1000, "--num-classes", help="Classifier outputs (changes the last layer)."
    ),
    step: int = typer.Option(
        8,
        "--step",
        help="Channel step of the grid for widths up to --fine-limit; "
        "wider layers get about 16 points (see profiles/README.md).",
    ),
    fine_limit: int = typer.Option(
        64, "--fine-limit", help="Widths up to this are sampled every --step channels."
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        help="Intra-op threads of a runtime that has them (onnxruntime); default for a new profile: the "
        "fastest of 1/2/4 measured on this machine (printed). A profile keeps one thread count.",
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size the table is measured at."),
    precision: str = typer.Option(
        None, "--precision", help="fp32, fp16 or int8 where the runtime has it (default: the runtime's: fp16 "
        "for tensorrt, else fp32). A profile keeps one precision."
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        help="For --runtime torch: cuda (exit 2 without a GPU), cpu, or auto (cuda if present).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Profile file to write/extend (default: $PRUNEKIT_PROFILE_DIR or "
        "~/.config/prunekit/profiles/TARGET.json).",
    ),
    no_calibrate: bool = typer.Option(
        False, "--no-calibrate", help="Skip the runtime's calibration of the non-layer ops (ONNX Runtime's priced graph)."
    ),
    subnets: int = typer.Option(
        0, "--subnets", min=0, max=64,
        help="Then time up to this many pruned copies of the model (the latency knapsack's choices at targets "
        "from its minimum widths to 0.92 of dense) against it end to end and keep them in the profile: "
        "`compress --latency-budget` on this model aims through that measured curve (0: skip).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Measure every layer a model needs on this machine and add it to a target's profile.

    Each Conv/Linear layer kind is timed over a grid of (input, output) channel counts fine enough to show the runtime's latency staircase (warm-up, repeats, robust average). The profile is saved after every layer kind: interrupt and rerun the same command to continue; points already measured are skipped. It ends with a dense end-to-end check (consecutive warm runs of the dense model, measured vs predicted). Use the model's own --input-size and --num-classes: a 32x32, 10-class model has other layers than the 224x224, 1000-class one. Example, on a Jetson Orin:

        prunekit profile --target jetson-orin --runtime tensorrt --model resnet50
    """
    from prunekit.latency.profiler import profile_model

    console = ui(json_out)
    hw = _input_size(input_size)
    run = profile_model(
        target,
        runtime,
        model,
        hw,
        step,
        num_classes=num_classes,
        batch_size=batch_size,
        threads=threads,
        precision=precision,
        out=out,
        fine_limit=fine_limit,
        calibrate=not no_calibrate,
        console=console,
        progress=True,
        device=device,
    )
    if subnets > 0:
        from prunekit.latency.profiler import model_key
        from prunekit.select.calibrate import calibrate_profile
        from prunekit.tasks import resolve_task

        net = resolve_task(None, model).build_model(model, num_classes).eval()
        shape = (run.profile.batch_size, 3, hw[0], hw[1])
        cal = calibrate_profile(run.path, run.profile, net, shape, model_key(run.model, hw, num_classes), subnets,
                                console=console, model_name=model)
        run.subnets = list(cal.points)
    if json_out:
        emit_json(run.to_dict())
        return
    prof = run.profile
    table = Table(
        title=f"profile {prof.name} ({prof.runtime}, {prof.precision}, {prof.threads or '-'} threads)"
    )
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("file", str(run.path))
    table.add_row("model", f"{run.model} {hw[0]}x{hw[1]}, {num_classes} classes")
    table.add_row(
        "layer signatures",
        f"{len(run.signatures)} needed, {len(run.measured)} measured now ({run.cells_measured} grid points)",
    )
    if run.threads_choice:
        table.add_row("threads", f"{run.threads} (dense ms by threads: {run.threads_choice})")
    if run.dense_measured_ms is not None:
        pred = run.dense_predicted_ms
        err = f" ({(pred / run.dense_measured_ms - 1) * 100:+.1f} %)" if pred else ""
        table.add_row(
            "dense latency",
            f"measured {run.dense_measured_ms:.3f} ms, predicted "
            f"{pred if pred is None else f'{pred:.3f}'} ms{err}",
        )
    if run.subnets:
        table.add_row("pruned copies (predicted -> measured of dense)",
                      ", ".join(f"{p:.3f} -> {m:.3f}" for p, m in run.subnets))
    if run.seeded_from:
        table.add_row("seeded from", run.seeded_from)
    console.print(table)
