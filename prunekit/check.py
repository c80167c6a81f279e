"""`check`: the last pipeline stage. Is the exported model faster on the target, and still robust?

    run folder -> (export ONNX if missing) -> latency of dense.onnx and pruned.onnx, side by side,
    on the target's runtime -> accuracy of the EXPORTED files, clean and corrupted -> check.json,
    check.png -> optional CI gate against an earlier check.json

The gate compares the *speedup ratio* (dense / pruned, measured interleaved in one process), not
milliseconds, so a slower or busier CI machine does not fail it; accuracy is compared absolutely.
A regression is exit code 1 at the CLI; bad input (missing run, broken ONNX, foreign baseline,
absent runtime) is a PrunekitError, exit code 2.
"""

from __future__ import annotations

import io
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from prunekit.atomic import write_bytes, write_json
from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.runs import LoadedRun, load_run, read_json

CHECK_FORMAT = "prunekit-check/1"
DEFAULT_MAX_LATENCY_REGRESSION = 0.10
DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_WARMUP = 10
DEFAULT_REPEATS = 100
EPS = 1e-9  # accuracies are ratios of integers: an unchanged one must not count as a drop


@dataclass
class GateResult:
    """Outcome of comparing a check with a baseline check.json."""

    baseline: str
    max_latency_regression: float
    max_accuracy_drop: float
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [c["metric"] for c in self.checks if c["regressed"]]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline, "passed": self.passed, "regressions": self.regressions,
            "max_latency_regression": self.max_latency_regression, "max_accuracy_drop": self.max_accuracy_drop,
            "checks": self.checks,
        }

    def summary(self) -> str:
        """One line naming each regressed metric, or saying it passed."""
        if self.passed:
            return f"gate passed against {self.baseline}"
        parts = [f"{c['metric']} {c['baseline']:.4g} -> {c['current']:.4g} ({c['rule']})"
                 for c in self.checks if c["regressed"]]
        return "regression: " + "; ".join(parts)


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


# ------------------------------------------------------------------------------------- gate
def _num(obj: dict[str, Any], path: str, where: str) -> float:
    cur: Any = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise PrunekitError(f"baseline {where} has no '{path}'", "pass a check.json written by prunekit check")
        cur = cur[key]
    if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(float(cur)):
        raise PrunekitError(f"baseline {where}: '{path}' is not a number", "pass a check.json written by prunekit check")
    return float(cur)


def _cells(acc: dict[str, Any], where: str) -> dict[tuple[str, int], float]:
    cells = acc.get("cells") if isinstance(acc, dict) else None
    if not isinstance(cells, dict):
        raise PrunekitError(f"baseline {where} has no per-corruption accuracies", "pass a check.json written by prunekit check")
    out: dict[tuple[str, int], float] = {}
    for name, row in cells.items():
        if not isinstance(row, dict):
            raise PrunekitError(f"baseline {where}: corruption '{name}' is malformed")
        for sev, value in row.items():
            try:
                out[(str(name), int(sev))] = float(value)
            except (TypeError, ValueError):
                raise PrunekitError(f"baseline {where}: accuracy of {name} severity {sev} is not a number") from None
    return out


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate an earlier check.json (any damage or a foreign file is a one-line error)."""
    p = Path(path)
    obj = read_json(p, "baseline")
    if obj.get("format") != CHECK_FORMAT:
        raise PrunekitError(f"baseline {p} is not a prunekit check.json (format {obj.get('format')!r})",
                            f"expected format {CHECK_FORMAT!r}, written by prunekit check")
    _num(obj, "latency.speedup", str(p))
    _num(obj, "accuracy.pruned.clean", str(p))
    _num(obj, "accuracy.n_images", str(p))
    _cells(obj.get("accuracy", {}).get("pruned", {}), str(p))
    return obj


def check_baseline_compatible(baseline: dict[str, Any], current: dict[str, Any], where: str,
                              cells: Sequence[tuple[str, int]], n_images: int) -> None:
    """A baseline measured on another target, model, data or image set cannot gate this check."""
    for key, label in (("target", "target"), ("model", "model"), ("data", "data"), ("input_size", "input size")):
        if baseline.get(key) != current.get(key):
            raise PrunekitError(
                f"baseline {where} is for {label} {baseline.get(key)!r}, this check is for {current.get(key)!r}",
                "compare checks of the same model, data and target",
            )
    base_n = int(_num(baseline, "accuracy.n_images", where))
    if base_n != n_images:
        raise PrunekitError(f"baseline {where} evaluated {base_n} images, this check evaluates {n_images}",
                            "use the same --limit as the baseline")
    shared = set(_cells(baseline["accuracy"]["pruned"], where)) & set(cells)
    if not shared:
        raise PrunekitError(f"baseline {where} has no corruption/severity in common with this check",
                            "use the same --corruptions and --severities as the baseline")


def compare(current: dict[str, Any], baseline: dict[str, Any], where: str,
            max_latency_regression: float, max_accuracy_drop: float) -> GateResult:
    """Gate `current` (a check record) against `baseline`; both must be compatible."""
    gate = GateResult(where, max_latency_regression, max_accuracy_drop)
    base_speedup = _num(baseline, "latency.speedup", where)
    cur_speedup = float(current["latency"]["speedup"])
    floor = base_speedup * (1.0 - max_latency_regression)
    gate.checks.append({
        "metric": "speedup", "baseline": base_speedup, "current": cur_speedup, "limit": floor,
        "rule": f"must stay >= {floor:.4g} ({100 * max_latency_regression:g} % below the baseline)",
        "regressed": cur_speedup < floor - EPS,
    })
    base_clean = _num(baseline, "accuracy.pruned.clean", where)
    cur_clean = float(current["accuracy"]["pruned"]["clean"])
    gate.checks.append({
        "metric": "clean accuracy", "baseline": base_clean, "current": cur_clean,
        "limit": base_clean - max_accuracy_drop,
        "rule": f"may drop at most {max_accuracy_drop:g}", "regressed": base_clean - cur_clean > max_accuracy_drop + EPS,
    })
    base_cells = _cells(baseline["accuracy"]["pruned"], where)
    cur_cells = _cells(current["accuracy"]["pruned"], "current")
    shared = sorted(set(base_cells) & set(cur_cells))
    if shared:
        b = sum(base_cells[k] for k in shared) / len(shared)
        c = sum(cur_cells[k] for k in shared) / len(shared)
        gate.checks.append({
            "metric": "corrupted accuracy", "baseline": b, "current": c, "limit": b - max_accuracy_drop,
            "rule": f"mean over {len(shared)} shared corruption/severity cells may drop at most {max_accuracy_drop:g}",
            "regressed": b - c > max_accuracy_drop + EPS,
        })
    return gate


# ------------------------------------------------------------------------------------- latency
def _machine() -> dict[str, Any]:
    from prunekit.latency.profiler import cpu_model

    cpu = cpu_model()
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def _require(runtime: str, target: str) -> None:
    from prunekit.latency.measure import require_runtime

    try:
        require_runtime(runtime)
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"target {target!r} runs on {runtime}, which is not available here: {exc.message}",
            "run check on the target device, or pick a target this machine has (prunekit targets)",
        ) from None


def measure_latency(run: LoadedRun, profile: Any, dense_onnx: Path, pruned_onnx: Path,
                    shape: tuple[int, int, int, int], warmup: int, repeats: int) -> dict[str, Any]:
    """Dense and pruned timed side by side on the runtime `profile` names."""
    from prunekit.latency import measure

    threads = int(profile.threads or 1)
    notes: list[str] = []
    if profile.runtime == "onnxruntime":
        pair = measure.measure_pair(dense_onnx, pruned_onnx, threads=threads, input_shape=shape,
                                    warmup=warmup, repeats=repeats)
        dense, pruned, ratio = pair.dense, pair.pruned, pair.ratio
        what = f"ONNX Runtime CPU, {threads} thread(s), dense.onnx and pruned.onnx interleaved"
    elif profile.runtime == "torch":
        device = str(getattr(profile.provenance, "device", "cpu") or "cpu")
        if device.startswith("cuda"):
            measure.require_cuda()
        half = profile.precision == "fp16"
        rounds = 5
        dsamples: list[float] = []
        psamples: list[float] = []
        ratios: list[float] = []
        per = max(1, repeats // rounds)
        for _ in range(rounds):  # alternate in rounds so that drift hits both models alike
            d = measure.measure_torch(run.dense, shape, device=device, warmup=warmup, repeats=per, half=half)
            p = measure.measure_torch(run.pruned, shape, device=device, warmup=warmup, repeats=per, half=half)
            dsamples += d.samples_ms
            psamples += p.samples_ms
            ratios.append(p.median_ms / d.median_ms)
        dense = measure.LatencyStats.from_samples(dsamples)
        pruned = measure.LatencyStats.from_samples(psamples)
        ratio = float(statistics.median(ratios))
        what = f"PyTorch eager on {device}{' fp16' if half else ''}, dense and pruned alternated in {rounds} rounds"
        notes.append("the torch runtime runs the PyTorch models; accuracy is still measured on the ONNX files")
    elif profile.runtime == "tensorrt":
        fp16 = profile.precision != "fp32"
        if profile.precision == "int8":
            notes.append("int8 profile: timed with FP16 engines (INT8 timing needs calibrated engines)")
        dense = measure.measure_tensorrt(dense_onnx, fp16=fp16, warmup=warmup, repeats=repeats)
        pruned = measure.measure_tensorrt(pruned_onnx, fp16=fp16, warmup=warmup, repeats=repeats)
        ratio = pruned.median_ms / dense.median_ms
        what = f"TensorRT {'FP16' if fp16 else 'FP32'} engines built from the ONNX files, CUDA-event timing"
    else:
        raise PrunekitError(f"unknown runtime {profile.runtime!r} in profile {profile.name}")
    return {
        "runtime": profile.runtime, "how": what, "threads": threads, "input_shape": list(shape),
        "warmup": warmup, "repeats": repeats,
        "dense": dense.to_dict(), "pruned": pruned.to_dict(),
        "ratio": ratio, "speedup": 1.0 / ratio if ratio > 0 else None, "notes": notes,
    }


def predicted_latency(run: LoadedRun, profile: Any, shape: tuple[int, int, int, int]) -> tuple[dict[str, Any] | None, str | None]:
    """The profile's predicted dense and pruned latency, or (None, why not)."""
    from prunekit.latency.predict import predict_latency

    try:
        model = str(run.settings.get("model"))
        d = predict_latency(run.dense, profile, shape, model_hint=model)
        p = predict_latency(run.pruned, profile, shape, model_hint=model)
    except PrunekitError as exc:
        return None, exc.one_line()
    ratio = p.total_ms / d.total_ms if d.total_ms > 0 else None
    return {"dense_ms": d.total_ms, "pruned_ms": p.total_ms, "ratio": ratio,
            "speedup": (1.0 / ratio) if ratio else None}, None


def budget_of(settings: dict[str, Any], latency: dict[str, Any], target: str) -> dict[str, Any]:
    """The run's goal, and whether the measurement meets it."""
    run_target = settings.get("target")
    same = run_target in (None, target)
    if settings.get("latency_budget") is not None:
        b = float(settings["latency_budget"])
        return {"kind": "latency_budget", "value": b, "run_target": run_target,
                "met": bool(latency["ratio"] <= b) if same else None,
                "note": f"pruned/dense latency <= {b:g}" + ("" if same else f" on {run_target}, not measured here")}
    if settings.get("latency_ms") is not None:
        ms = float(settings["latency_ms"])
        return {"kind": "latency_ms", "value": ms, "run_target": run_target,
                "met": bool(latency["pruned"]["median_ms"] <= ms) if same else None,
                "note": f"pruned median <= {ms:g} ms" + ("" if same else f" on {run_target}, not measured here")}
    ratio = settings.get("prune_ratio") or 0.5
    of = settings.get("ratio_of", "channels")
    return {"kind": "prune_ratio", "value": ratio, "run_target": run_target, "met": None,
            "note": f"no latency budget: pruned {100 * float(ratio):g} % of the {of}"}


# ------------------------------------------------------------------------------------- accuracy
def evaluate_exported(run: LoadedRun, dense_onnx: Path, pruned_onnx: Path, corruptions: Sequence[str],
                      severities: Sequence[int], seed: int, limit: int | None, threads: int,
                      progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Clean and corrupted accuracy of the exported ONNX files (ONNX Runtime CPU), and R_C."""
    from prunekit.data import load_data
    from prunekit.deploy.ort_model import OrtClassifier
    from prunekit.robustness.metrics import corruption_errors, evaluate_corruptions

    s = run.settings
    data = load_data(str(s["data"]), int(s["input_size"]), int(s["num_classes"]))
    loader = data.loader("val", batch_size=128, shuffle=False)
    out: dict[str, Any] = {
        "evaluated": "the exported ONNX files on ONNX Runtime CPU (fp32)", "data": str(s["data"]),
        "corruptions": list(corruptions), "severities": list(severities), "seed": seed, "limit": limit,
    }
    reports = {}
    for which, path in (("dense", dense_onnx), ("pruned", pruned_onnx)):
        predict = OrtClassifier(path, threads=threads)
        tick = (lambda n, _w=which: progress(_w, n)) if progress is not None else None
        rep = evaluate_corruptions(predict, loader, list(corruptions), list(severities), seed, limit=limit,
                                   progress=tick)
        reports[which] = rep
        rc = rep.relative_robustness
        out[which] = {
            "clean": rep.clean_accuracy,
            "corrupted": rep.mean_corruption_accuracy,
            "r_c": None if math.isnan(rc) else rc,
            "per_corruption": {c: rep.corruption_mean(c) for c in rep.accuracy},
            "cells": {c: {str(k): v for k, v in row.items()} for c, row in rep.accuracy.items()},
        }
        out["n_images"] = rep.n_images
    ces = corruption_errors(reports["pruned"], reports["dense"])
    out["pruned"]["mce_vs_dense"] = (sum(ces.values()) / len(ces)) if ces else None
    return out


def n_eval_images(run: LoadedRun, limit: int | None) -> int:
    from prunekit.data import load_data

    s = run.settings
    n = len(load_data(str(s["data"]), int(s["input_size"]), int(s["num_classes"])).val_set)
    return min(n, limit) if limit is not None else n


# ------------------------------------------------------------------------------------- the stage
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
    seed: int = 0,
    plot: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> CheckResult:
    """Measure the run's exported models on `target` and write RUN/check.json (+ check.png).

    Exports ONNX first when the run has none. With `baseline`, also gates against it: the result's
    `gate.passed` is False (exit 1 at the CLI) when the speedup fell by more than
    `max_latency_regression` (relative) or accuracy, clean or corrupted, by more than
    `max_accuracy_drop` (absolute).
    """
    from prunekit.deploy.onnx_export import export_onnx
    from prunekit.deploy.ort_model import load_checked_onnx, static_batch
    from prunekit.latency.profile import load_profile
    from prunekit.robustness.corruptions import CORRUPTIONS, validate_names, validate_severity

    if not 0.0 <= max_latency_regression < 1.0:
        raise PrunekitError(f"--max-latency-regression must be in [0, 1), got {max_latency_regression}")
    if not 0.0 <= max_accuracy_drop <= 1.0:
        raise PrunekitError(f"--max-accuracy-drop must be in [0, 1], got {max_accuracy_drop}")
    if repeats < 5 or warmup < 0:
        raise PrunekitError(f"--repeats must be >= 5 and warm-up >= 0, got {repeats} and {warmup}")
    if limit is not None and limit < 1:
        raise PrunekitError(f"--limit must be >= 1, got {limit}")
    names = validate_names(list(corruptions) if corruptions is not None else list(CORRUPTIONS))
    sevs = sorted({validate_severity(int(s)) for s in severities})
    if not names or not sevs:
        raise PrunekitError("no corruptions or no severities selected")

    run = load_run(run_path)
    profile = load_profile(target)
    _require(profile.runtime, profile.name)
    s = run.settings
    head = {"target": profile.name, "model": s.get("model"), "data": s.get("data"), "input_size": s.get("input_size")}
    base = None
    if baseline is not None:
        base = load_baseline(baseline)
        cells = [(c, v) for c in names for v in sevs]
        check_baseline_compatible(base, head, str(baseline), cells, n_eval_images(run, limit))

    folder = run.folder
    dense_onnx, pruned_onnx = folder.file("dense.onnx"), folder.file("pruned.onnx")
    exported_now = False
    if not dense_onnx.exists() and not pruned_onnx.exists():
        export_onnx(folder.path, target=profile.name)
        exported_now = True
    protos = {"dense": load_checked_onnx(dense_onnx), "pruned": load_checked_onnx(pruned_onnx)}
    size = int(s["input_size"])
    batches = {k: static_batch(p) for k, p in protos.items()}
    for which, b in batches.items():
        if b is not None and b != profile.batch_size:
            raise PrunekitError(
                f"{folder.file(which + '.onnx')} has a static batch of {b}, target {profile.name} measures batch "
                f"{profile.batch_size}",
                f"re-export with prunekit export {folder.path} --format onnx --target {profile.name} (or --dynamic-batch)",
            )
    shape = (int(profile.batch_size), 3, size, size)

    started = time.perf_counter()
    latency = measure_latency(run, profile, dense_onnx, pruned_onnx, shape, warmup, repeats)
    pred, pred_err = predicted_latency(run, profile, shape)
    latency["predicted"] = pred
    latency["predicted_error"] = pred_err
    latency["budget"] = budget_of(s, latency, profile.name)
    accuracy = evaluate_exported(run, dense_onnx, pruned_onnx, names, sevs, seed, limit,
                                 int(profile.threads or 1), progress)

    import hashlib

    record: dict[str, Any] = {
        "format": CHECK_FORMAT,
        "run": str(folder.path),
        **head,
        "runtime": profile.runtime,
        "precision": profile.precision,
        "threads": int(profile.threads or 1),
        "batch_size": int(profile.batch_size),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
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


# ------------------------------------------------------------------------------------- output
def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f} %"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f} ms"


def _x(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}x"


def check_table(record: dict[str, Any]) -> Group:
    """Rich tables: latency (measured vs predicted, budget), accuracy (clean, corrupted, R_C), gate."""
    lat, acc = record["latency"], record["accuracy"]
    pred = lat.get("predicted") or {}
    t = Table(title=f"check {record['model']} on {record['target']} ({lat['how']})")
    t.add_column("metric")
    t.add_column("dense", justify="right")
    t.add_column("pruned", justify="right")
    t.add_column("speedup", justify="right")
    t.add_row("latency, median (measured)", _ms(lat["dense"]["median_ms"]), _ms(lat["pruned"]["median_ms"]),
              _x(lat["speedup"]))
    t.add_row("latency, p90 (measured)", _ms(lat["dense"]["p90_ms"]), _ms(lat["pruned"]["p90_ms"]), "")
    if pred:
        t.add_row("latency (predicted by profile)", _ms(pred.get("dense_ms")), _ms(pred.get("pruned_ms")),
                  _x(pred.get("speedup")))
    else:
        t.add_row("latency (predicted by profile)", "-", "-", "n/a")
    t.add_row(f"accuracy, clean ({acc['n_images']} images)", _pct(acc["dense"]["clean"]), _pct(acc["pruned"]["clean"]), "")
    t.add_row(f"accuracy, corrupted ({len(acc['corruptions'])} x {len(acc['severities'])})",
              _pct(acc["dense"]["corrupted"]), _pct(acc["pruned"]["corrupted"]), "")
    rc_d, rc_p = acc["dense"]["r_c"], acc["pruned"]["r_c"]
    t.add_row("R_C = acc_C / acc", "-" if rc_d is None else f"{rc_d:.3f}", "-" if rc_p is None else f"{rc_p:.3f}", "")
    mce = acc["pruned"].get("mce_vs_dense")
    if mce is not None:
        t.add_row("mCE vs dense", "1.000", f"{mce:.3f}", "")
    b = lat["budget"]
    met = {True: " [green](met)[/]", False: " [red](missed)[/]", None: ""}[b.get("met")]
    parts: list[Any] = [t, f"budget: {b['note']}{met}"]
    if not pred and lat.get("predicted_error"):
        parts.append(f"[dim]no prediction: {lat['predicted_error']}[/]")
    per = Table(title="accuracy per corruption (mean over severities)")
    per.add_column("corruption")
    per.add_column("dense", justify="right")
    per.add_column("pruned", justify="right")
    for c in acc["corruptions"]:
        per.add_row(c, _pct(acc["dense"]["per_corruption"][c]), _pct(acc["pruned"]["per_corruption"][c]))
    parts.append(per)
    gate = record.get("gate")
    if gate:
        g = Table(title=f"CI gate vs {gate['baseline']}")
        g.add_column("metric")
        g.add_column("baseline", justify="right")
        g.add_column("now", justify="right")
        g.add_column("rule")
        g.add_column("result")
        for c in gate["checks"]:
            fmt = _x if c["metric"] == "speedup" else _pct
            g.add_row(c["metric"], fmt(c["baseline"]), fmt(c["current"]), c["rule"],
                      "[red]REGRESSED[/]" if c["regressed"] else "[green]ok[/]")
        parts.append(g)
    return Group(*parts)


def plot_check(record: dict[str, Any], path: str | Path) -> Path:
    """PNG summary: latency bars (median, p90 whisker, predicted marker) and accuracy per corruption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, acc = record["latency"], record["accuracy"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 3]})
    names = ["dense", "pruned"]
    med = [lat[n]["median_ms"] for n in names]
    p90 = [lat[n]["p90_ms"] for n in names]
    ax1.bar(names, med, color=["#888888", "#2a7ab9"], yerr=[[0, 0], [p - m for p, m in zip(p90, med, strict=True)]],
            capsize=6, label="measured median (whisker: p90)")
    pred = lat.get("predicted")
    if pred:
        ax1.scatter(names, [pred["dense_ms"], pred["pruned_ms"]], marker="D", color="#d95f02", zorder=3,
                    label="predicted by profile")
    top = max([*p90, *((pred["dense_ms"], pred["pruned_ms"]) if pred else ())])
    ax1.set_ylim(0, 1.35 * top)
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(f"{record['target']}: speedup {lat['speedup']:.2f}x")
    ax1.legend(fontsize=8)
    labels = ["clean", *acc["corruptions"], "mean corrupted"]
    for i, n in enumerate(names):
        vals = [acc[n]["clean"], *[acc[n]["per_corruption"][c] for c in acc["corruptions"]], acc[n]["corrupted"]]
        xs = [j + (i - 0.5) * 0.4 for j in range(len(labels))]
        ax2.bar(xs, [100 * v for v in vals], width=0.4, label=n, color=["#888888", "#2a7ab9"][i])
    ax2.set_xticks(range(len(labels)))
    ax2.set_xticklabels([lab.replace("_", " ") for lab in labels], rotation=40, ha="right")
    ax2.set_ylabel("top-1 accuracy (%)")
    ax2.set_ylim(0, 100)
    ax2.set_title(f"exported models, {acc['n_images']} images, severities {','.join(map(str, acc['severities']))}")
    ax2.legend()
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(f"prunekit check: {record['model']} ({record['data']})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)
