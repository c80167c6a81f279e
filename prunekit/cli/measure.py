"""`prunekit measure`: time one ONNX file on a target (the device half of `compress --measure-cmd`)."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.cli.app import app, emit_json, handle_errors, ui
from prunekit.latency.measure import DEFAULT_BLOCK


@app.command("measure")
@handle_errors
def measure_cmd(
    onnx: Path = typer.Argument(..., help="ONNX file to time (fixed input size)."),
    target: str = typer.Option(..., help="Target profile whose runtime, threads and batch size to time with."),
    baseline: Path | None = typer.Option(None, help="A second ONNX file (the dense model): time both side by side "
                                         "and report the ratio ONNX / BASELINE of their medians."),
    repeats: int = typer.Option(100, help="Timed runs per model."),
    warmup: int = typer.Option(10, help="Untimed warm-up runs per model."),
    timing: str = typer.Option("blocks", help="blocks (warm, consecutive runs per model) or interleaved."),
    block: int = typer.Option(DEFAULT_BLOCK, help="Consecutive timed runs per block."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Time an ONNX file on this machine with a target's runtime: median and p90 latency (ms).

    Run it on the device, e.g. through `prunekit compress --measure-cmd "scp {onnx} {dense_onnx} orin:/tmp/ &&
    ssh orin prunekit measure /tmp/{onnx_name} --baseline /tmp/{dense_onnx_name} --target jetson-orin --json"`.
    """
    from rich.table import Table

    from prunekit.check.measure import measure_file
    from prunekit.latency.measure import TimingOptions

    result = measure_file(onnx, target, baseline,
                          TimingOptions(mode=timing, warmup=warmup, repeats=repeats, block=block))
    if json_out:
        emit_json(result)
        return
    table = Table(title=f"{onnx.name} on {result['target']} ({result['how']})")
    for col in ("model", "median ms", "p90 ms"):
        table.add_column(col, justify="right" if col != "model" else "left")
    if baseline is not None:
        table.add_row(baseline.name, f"{result['baseline_median_ms']:.4f}", "")
    table.add_row(onnx.name, f"{result['median_ms']:.4f}", f"{result['p90_ms']:.4f}")
    console = ui(False)
    console.print(table)
    if baseline is not None:
        console.print(f"ratio {onnx.name} / {baseline.name}: {result['ratio']:.3f}")
