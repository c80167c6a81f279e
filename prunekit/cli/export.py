"""`prunekit export`: a finished run in one of the deploy format table's formats (onnx, engine, ...)."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.deploy.formats.engine import INT8_HELP
from prunekit.deploy.onnx import DEFAULT_OPSET
from prunekit.runtimes.tensorrt import DEFAULT_WORKSPACE_MB


def _formats_help() -> str:
    from prunekit.deploy.base import FORMATS, list_formats

    return " ".join(f"{name}: {FORMATS[name].summary}." for name in list_formats())


@app.command()
@handle_errors
def export(
    run: Path = typer.Argument(..., help="Run folder written by prunekit compress."),
    format: str = typer.Option("onnx", "--format", help=_formats_help()),
    opset: int = typer.Option(DEFAULT_OPSET, help="ONNX opset (18 is the exporter's native one; lower ones are converted)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Export a dynamic batch axis (default: a static "
                                       "batch, the target profile's batch size or 1, which runtimes optimise best)."),
    target: str | None = typer.Option(None, help="Target profile (default: the run's --target): sets the static batch "
                                      "size, and the precision in build_engine.sh / of the engine."),
    fp16: bool | None = typer.Option(None, "--fp16/--no-fp16", help="Engine precision FP16 (default: the target "
                                     "profile's precision, FP16 without a TensorRT target)."),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    workspace_mb: int = typer.Option(DEFAULT_WORKSPACE_MB, help="TensorRT builder workspace limit in MiB."),
    dla_core: int | None = typer.Option(None, help="Jetson: build for this DLA core, with GPU fallback for layers "
                                        "the DLA cannot run."),
    max_batch: int | None = typer.Option(None, help="Largest batch of a --dynamic-batch engine's optimisation profile "
                                         "(default 32)."),
    timing_cache: str | None = typer.Option(None, help="TensorRT timing cache file, reused across builds to make them "
                                            "faster (default RUN/timing.cache)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Export a finished run for deployment, and record it in RUN/export.json.

    --format onnx writes RUN/dense.onnx and RUN/pruned.onnx (torch's exporter, simplified with onnxslim, checked with onnx.checker) and verifies each in ONNX Runtime against PyTorch on real validation images: a mismatch is an error and nothing is written. It also writes RUN/build_engine.sh, the trtexec commands to build TensorRT engines on the device itself.

    --format engine builds TensorRT engines with the TensorRT Python API from the ONNX files (exported first if missing), each with a JSON sidecar saying which TensorRT and GPU built it: engines are not portable. Without TensorRT or a GPU it stops with an error after writing build_engine.sh.
    """
    from prunekit.deploy.base import export as run_export
    from prunekit.deploy.base import get_format

    console = ui(json_out)
    fmt = get_format(format)
    options = {"opset": opset, "dynamic_batch": True if dynamic_batch else None, "target": target, "fp16": fp16,
               "int8": int8, "workspace_mb": workspace_mb, "dla_core": dla_core, "max_batch": max_batch,
               "timing_cache": timing_cache}
    with console.status(fmt.status):
        result = run_export(run, fmt.name, **options)
    if json_out:
        emit_json(result.to_dict())
        return
    console.print(result.rich())
