"""`prunekit export`: ONNX files (always both dense and pruned) or TensorRT engines from a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.deploy.onnx_export import DEFAULT_OPSET
from prunekit.deploy.tensorrt_build import DEFAULT_WORKSPACE_MB, INT8_HELP
from prunekit.errors import PrunekitError


@app.command()
@handle_errors
def export(
    run: Path = typer.Argument(..., help="Run folder written by prunekit compress."),
    format: str = typer.Option("onnx", "--format", help="onnx: RUN/dense.onnx + RUN/pruned.onnx, checked against "
                               "PyTorch. engine: TensorRT engines RUN/<model>.engine (needs TensorRT and an NVIDIA GPU)."),
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
    """Export a finished run for deployment.

    --format onnx writes RUN/dense.onnx and RUN/pruned.onnx (torch's exporter, simplified with onnxslim, checked with onnx.checker) and verifies each in ONNX Runtime against PyTorch on real validation images: a mismatch is an error and nothing is written. It also writes RUN/build_engine.sh, the trtexec commands to build TensorRT engines on the device itself.

    --format engine builds TensorRT engines with the TensorRT Python API (+ a JSON sidecar saying which TensorRT and GPU built them: engines are not portable). Without TensorRT or a GPU it stops with an error after writing build_engine.sh.
    """
    console = ui(json_out)
    if format == "onnx":
        from prunekit.deploy.onnx_export import export_onnx

        engine_options = {"fp16": fp16, "int8": int8, "workspace_mb": workspace_mb, "dla_core": dla_core,
                          "max_batch": max_batch, "timing_cache": timing_cache}
        with console.status("exporting and verifying dense and pruned models"):
            result = export_onnx(run, opset=opset, dynamic_batch=dynamic_batch, target=target,
                                 engine_options=engine_options)
        if json_out:
            emit_json(result.to_dict())
            return
        from rich.table import Table

        t = Table(title=f"ONNX export of {run} (opset {result.opset}, "
                  + ("dynamic batch" if result.dynamic_batch else f"static batch {result.batch_size}") + ")")
        for col in ("model", "size", "nodes", "max |onnx - torch|", "tolerance", "top-1 agreement"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for m in result.models.values():
            t.add_row(m.file, f"{m.bytes / 1e6:.2f} MB", str(m.nodes), f"{m.parity.max_abs_diff:.2e}",
                      f"{m.parity.tolerance:.1e}", f"{100 * m.parity.top1_agreement:.1f} %")
        console.print(t)
        console.print(f"parity inputs: {result.parity_inputs}")
        for name, m in result.models.items():
            for note in m.notes:
                console.print(f"[yellow]note ({name}):[/] {note}")
        console.print(f"exporter: {result.models['pruned'].exporter}; TensorRT build script: {run / result.build_script}")
        return
    if format == "engine":
        from prunekit.deploy.tensorrt_build import build_engine

        with console.status("building TensorRT engines"):
            res = build_engine(run, target, fp16=fp16, int8=int8, workspace_mb=workspace_mb, dla_core=dla_core,
                               timing_cache=timing_cache, max_batch=max_batch, opset=opset,
                               dynamic_batch=True if dynamic_batch else None)
        if json_out:
            emit_json(res.to_dict())
            return
        for name, path in res.engines.items():
            info = res.info[name]
            console.print(f"{name}: {path} (TensorRT {info['tensorrt']}, {info['gpu']}, {info['precision']}, "
                          f"input {info['input']['opt']})")
        console.print(f"timing cache: {res.timing_cache}; trtexec equivalent: {res.build_script}")
        return
    raise PrunekitError(f"unknown --format {format!r}", "use onnx or engine")
