"""Latency part of `check`: dense and pruned timed on the target's runtime, next to the prediction.

The runtime is looked up by the profile's `runtime` field in `prunekit.runtimes`; it times the
exported ONNX files (onnxruntime, tensorrt) or the PyTorch models (torch). The default schedule is
warm blocks (see `prunekit.latency.measure`): consecutive runs of one model, dense and pruned
alternating in blocks, ratio = median(pruned) / median(dense).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import TimingOptions
from prunekit.runs import LoadedRun
from prunekit.runtimes import Execution, ModelRef, Runtime, get_runtime


def target_runtime(profile: Any) -> Runtime:
    """The profile's runtime, or a one-line MissingDependencyError naming the target if it is absent here."""
    rt = get_runtime(profile.runtime)
    try:
        rt.require()
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"target {profile.name!r} runs on {rt.name}, which is not available here: {exc.message}",
            "run check on the target device, or pick a target this machine has (prunekit targets)",
        ) from None
    return rt


def schedule_words(timing: TimingOptions) -> str:
    if timing.mode == "interleaved":
        return "interleaved one run each (cold: each run follows the other model)"
    block = min(timing.block, timing.per_session().repeats)
    words = f"warm: alternating blocks of {block} consecutive runs ({timing.block_warmup} untimed per block)"
    if timing.sessions > 1:
        words += f", in {timing.sessions} fresh sessions (ratio: the median of theirs)"
    return words


def measure_latency(run: LoadedRun, profile: Any, dense_onnx: Path, pruned_onnx: Path,
                    shape: tuple[int, int, int, int], timing: TimingOptions) -> dict[str, Any]:
    """Dense and pruned timed in one process on the runtime `profile` names (check.json's "latency")."""
    rt = target_runtime(profile)
    ex = Execution.of_profile(profile, rt)
    pair = rt.time_pair(ModelRef(module=run.dense, onnx=dense_onnx), ModelRef(module=run.pruned, onnx=pruned_onnx),
                        shape, ex, timing)
    out: dict[str, Any] = {
        "runtime": rt.name,
        "how": f"{rt.describe(ex)}; dense and pruned {schedule_words(timing)}",
        "threads": ex.threads,
        "device": ex.device,
        "input_shape": list(shape),
        **timing.to_dict(),
        "dense": pair.dense.to_dict(),
        "pruned": pair.pruned.to_dict(),
        "ratio": pair.ratio,
        "ratio_spread": pair.spread(),
        "session_ratios": pair.session_ratios,
        "speedup": 1.0 / pair.ratio if pair.ratio > 0 else None,
        "notes": rt.notes(ex),
    }
    return out


def predicted_latency(run: LoadedRun, profile: Any, shape: tuple[int, int, int, int]
                      ) -> tuple[dict[str, Any] | None, str | None]:
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
