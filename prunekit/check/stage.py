"""`check`, the last pipeline stage: is the exported model faster on the target, and still robust?

    run folder -> (export ONNX through prunekit.deploy.export if missing) -> latency of dense and
    pruned on the target's runtime (warm blocks by default) -> accuracy of the EXPORTED files, clean
    and corrupted, on the same images -> check.json, check.png -> optional CI gate against an
    earlier check.json
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json
from prunekit.check.accuracy import evaluate_exported, n_eval_images
from prunekit.check.gate import (
    CHECK_FORMAT,
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MAX_LATENCY_REGRESSION,
    GateResult,
    check_baseline_compatible,
    compare,
    load_baseline,
)
from prunekit.check.render import plot_check
from prunekit.check.timing import budget_of, measure_latency, predicted_latency, target_runtime
from prunekit.errors import PrunekitError
from prunekit.latency.measure import DEFAULT_BLOCK, TIMING_MODES, TimingOptions
from prunekit.runs import load_run

DEFAULT_WARMUP = 10
DEFAULT_REPEATS = 100
DEFAULT_TIMING = "blocks"
DEFAULT_SESSIONS = 5  # fresh sessions per model, the ratio their median (latency.measure: sessions)


@dataclass
class CheckResult:
    """Everything `check` measured (the content of check.json) and the gate's outcome."""

    record: dict[str, Any]
    path: Path
    plot: Path | None
    gate: GateResult | None

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed

    def to_dict(self) -> dict[str, Any]:
        return self.record


def check(
    run_path: str | Path,
    target: str,
    *,
    baseline: str | Path | None = None,
    max_latency_regression: float = DEFAULT_MAX_LATENCY_REGRESSION,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    timing: str = DEFAULT_TIMING,
    block: int = DEFAULT_BLOCK,
    seed: int = 0,
    plot: bool = True,
    sessions: int = DEFAULT_SESSIONS,
    progress: Callable[[str, int], None] | None = None,
) -> CheckResult:
    """Measure the run's exported models on `target` and write RUN/check.json (+ check.png).

    Exports ONNX first when the run has none. `timing` is `blocks` (warm: alternating blocks of
    `block` consecutive runs per model) or `interleaved` (one run each in turn); `repeats` timed
    runs per model. With `baseline`, also gates against it: the result's `gate.passed` is False
    (exit 1 at the CLI) when the speedup fell by more than `max_latency_regression` (relative) or
    accuracy, clean or corrupted, by more than `max_accuracy_drop` (absolute).
    """
    from prunekit.deploy.base import export
    from prunekit.deploy.ort_model import load_checked_onnx, static_batch
    from prunekit.latency.store import load_profile
    from prunekit.robustness.corruptions import CORRUPTIONS, validate_names, validate_severity
    from prunekit.runtimes.machine import machine_info

    if not 0.0 <= max_latency_regression < 1.0:
        raise PrunekitError(f"--max-latency-regression must be in [0, 1), got {max_latency_regression}")
    if not 0.0 <= max_accuracy_drop <= 1.0:
        raise PrunekitError(f"--max-accuracy-drop must be in [0, 1], got {max_accuracy_drop}")
    if repeats < 5 or warmup < 0:
        raise PrunekitError(f"--repeats must be >= 5 and warm-up >= 0, got {repeats} and {warmup}")
    if timing not in TIMING_MODES:
        raise PrunekitError(f"unknown --timing {timing!r}", f"choose one of: {', '.join(TIMING_MODES)}")
    if block < 1:
        raise PrunekitError(f"--block must be >= 1, got {block}")
    if limit is not None and limit < 1:
        raise PrunekitError(f"--limit must be >= 1, got {limit}")
    names = validate_names(list(corruptions) if corruptions is not None else list(CORRUPTIONS))
    sevs = sorted({validate_severity(int(s)) for s in severities})
    if not names or not sevs:
        raise PrunekitError("no corruptions or no severities selected")
    timing_opts = TimingOptions(mode=timing, warmup=warmup, repeats=repeats, block=block, sessions=sessions).validate()

    run = load_run(run_path)
    profile = load_profile(target)
    target_runtime(profile)  # absent runtime: exit 2 before anything is exported or evaluated
    s = run.settings
    head = {"target": profile.name, "model": s.get("model"), "data": s.get("data"), "input_size": s.get("input_size"),
            "timing": timing}
    base = None
    if baseline is not None:
        base = load_baseline(baseline)
        cells = [(c, v) for c in names for v in sevs]
        check_baseline_compatible(base, head, str(baseline), cells, n_eval_images(run, limit))

    folder = run.folder
    dense_onnx, pruned_onnx = folder.file("dense.onnx"), folder.file("pruned.onnx")
    exported_now = False
    if not dense_onnx.exists() and not pruned_onnx.exists():
        export(folder.path, "onnx", target=profile.name)
        exported_now = True
    protos = {"dense": load_checked_onnx(dense_onnx), "pruned": load_checked_onnx(pruned_onnx)}
    size = int(s["input_size"])
    for which, proto in protos.items():
        b = static_batch(proto)
        if b is not None and b != profile.batch_size:
            raise PrunekitError(
                f"{folder.file(which + '.onnx')} has a static batch of {b}, target {profile.name} measures batch "
                f"{profile.batch_size}",
                f"re-export with prunekit export {folder.path} --format onnx --target {profile.name} (or --dynamic-batch)",
            )
    shape = (int(profile.batch_size), 3, size, size)

    started = time.perf_counter()
    latency = measure_latency(run, profile, dense_onnx, pruned_onnx, shape, timing_opts)
    pred, pred_err = predicted_latency(run, profile, shape)
    latency["predicted"] = pred
    latency["predicted_error"] = pred_err
    latency["budget"] = budget_of(s, latency, profile.name)
    accuracy = evaluate_exported(run, dense_onnx, pruned_onnx, names, sevs, seed, limit,
                                 int(profile.threads or 1), progress)

    record: dict[str, Any] = {
        "format": CHECK_FORMAT,
        "run": str(folder.path),
        **head,
        "runtime": profile.runtime,
        "precision": profile.precision,
        "threads": int(profile.threads or 1),
        "batch_size": int(profile.batch_size),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "exported_now": exported_now,
        "artifacts": {f"{k}.onnx": hashlib.sha256(folder.file(f"{k}.onnx").read_bytes()).hexdigest()
                      for k in ("dense", "pruned")},
        "latency": latency,
        "accuracy": accuracy,
        "seconds": None,
        "gate": None,
    }
    gate = None
    if base is not None:
        gate = compare(record, base, str(baseline), max_latency_regression, max_accuracy_drop)
        record["gate"] = gate.to_dict()
    record["seconds"] = round(time.perf_counter() - started, 2)
    png = None
    if plot:
        png = plot_check(record, folder.file("check.png"))
        record["plot"] = png.name
    path = folder.file("check.json")
    write_json(path, record)
    return CheckResult(record, path, png, gate)
