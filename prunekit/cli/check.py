"""`prunekit check`: measure the exported models on a target, and gate CI against a baseline."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.check import (
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MAX_LATENCY_REGRESSION,
    DEFAULT_REPEATS,
    DEFAULT_SESSIONS,
    DEFAULT_TIMING,
    DEFAULT_WARMUP,
)
from prunekit.cli.app import app, emit_json, err_console, handle_errors, ui
from prunekit.errors import PrunekitError
from prunekit.latency.measure import DEFAULT_BLOCK


@app.command()
@handle_errors
def check(
    run: Path = typer.Argument(..., help="Run folder written by prunekit compress (ONNX is exported first if missing)."),
    target: str | None = typer.Option(None, help="Target profile to measure on, e.g. cpu-ort (default: the run's "
                                      "--target). Its runtime must exist on this machine."),
    baseline: Path | None = typer.Option(None, help="An earlier check.json to gate against (CI): exit code 1 if this "
                                         "run is slower or less accurate beyond the limits below."),
    max_latency_regression: float = typer.Option(
        DEFAULT_MAX_LATENCY_REGRESSION, help="Allowed relative drop of the measured speedup (dense/pruned latency, "
        "timed side by side) vs the baseline: 0.1 = the speedup may fall 10 %. Ratios, not milliseconds, so a "
        "slower CI machine does not fail the gate."),
    max_accuracy_drop: float = typer.Option(
        DEFAULT_MAX_ACCURACY_DROP, help="Allowed absolute drop of the pruned model's accuracy vs the baseline, "
        "clean and corrupted (mean over shared cells): 0.01 = one percentage point."),
    corruptions: str | None = typer.Option(None, help="Comma-separated corruptions, 'benchmark' (the 15 of "
                                           "ImageNet-C / CIFAR-10-C, the default) or 'all' (19)."),
    severities: str = typer.Option("1,2,3,4,5", help="Comma-separated severities 1..5."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N validation images (same N as the baseline)."),
    repeats: int = typer.Option(DEFAULT_REPEATS, help="Timed runs per model (median and p90 are reported)."),
    warmup: int = typer.Option(DEFAULT_WARMUP, help="Untimed warm-up runs per model."),
    timing: str = typer.Option(DEFAULT_TIMING, help="blocks: warm, like trtexec - consecutive runs of one model, "
                               "dense and pruned alternating in blocks of --block runs, ratio of the medians. "
                               "interleaved: one run of each in turn (each run follows the other model: cold)."),
    block: int = typer.Option(DEFAULT_BLOCK, help="Consecutive timed runs per block (--timing blocks)."),
    sessions: int = typer.Option(DEFAULT_SESSIONS, help="Fresh runtime sessions per model, --repeats split between "
                                 "them; the ratio is the median of theirs (one session's ratio can be 15-35 % off "
                                 "at sub-millisecond latency)."),
    seed: int = typer.Option(0, help="Seed of the corruption suite (same seed, same corrupted images)."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write RUN/check.png (latency bars, accuracy per corruption)."),
    json_out: bool = typer.Option(False, "--json", help="Print check.json's content as one JSON object on stdout."),
) -> None:
    """Measure a run's exported models on a target and, with --baseline, gate CI.

    Times RUN/dense.onnx and RUN/pruned.onnx on the target's runtime, warm (after a warm-up, blocks of consecutive runs of each model, alternating; median and p90), shows the measured speedup next to the profile's predicted one and the run's budget, and evaluates the exported files (not the PyTorch models) on clean and corrupted validation images, with R_C = corrupted / clean accuracy. Writes RUN/check.json and RUN/check.png.

    Exit codes: 0 ok; 1 a metric regressed against --baseline (each is named); 2 bad input (missing or unfinished run, invalid ONNX, malformed or foreign baseline, runtime absent).
    """
    from prunekit.check import check as run_check
    from prunekit.check import check_table
    from prunekit.progress import progress_bar
    from prunekit.robustness.spec import parse_corruptions, parse_severities
    from prunekit.runs import RunFolder

    console = ui(json_out)
    if target is None:
        state = RunFolder(run).state() if (run / "run.json").is_file() else {}
        target = (state.get("settings") or {}).get("target")
        if not target:
            raise PrunekitError("no --target given and the run has none", "e.g. --target cpu-ort (see prunekit targets)")
    names = parse_corruptions(corruptions)
    sevs = parse_severities(severities)
    bar = progress_bar(console, disable=False)
    tasks: dict[str, int] = {}

    def tick(which: str, n: int) -> None:
        if which not in tasks:
            tasks[which] = bar.add_task(f"evaluating {which} (ONNX)", total=None, info="clean + corrupted")
        bar.advance(tasks[which], n)

    with bar:
        result = run_check(run, target, baseline=baseline, max_latency_regression=max_latency_regression,
                           max_accuracy_drop=max_accuracy_drop, corruptions=names, severities=sevs, limit=limit,
                           repeats=repeats, warmup=warmup, timing=timing, block=block, seed=seed, plot=plot,
                           progress=tick, sessions=sessions)
    if json_out:
        emit_json(result.record)
    else:
        console.print(check_table(result.record))
        console.print(f"wrote {result.path}" + (f" and {result.plot}" if result.plot else ""))
    if result.gate is not None:
        if result.gate.passed:
            console.print(f"[green]{result.gate.summary()}[/]")
        else:
            err_console.print(f"[bold red]{result.gate.summary()}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1)
