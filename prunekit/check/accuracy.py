"""Accuracy part of `check`: the EXPORTED files, clean and corrupted, on ONNX Runtime CPU.

Both files see the same images: every validation batch is corrupted once per (corruption,
severity) cell and the corrupted batch is fed to dense.onnx and pruned.onnx alike
(`prunekit.robustness.metrics.evaluate_corruptions_shared`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prunekit.runs import LoadedRun

BOTH = "dense + pruned"  # the progress label: both files advance together


def evaluate_exported(run: LoadedRun, dense_onnx: Path, pruned_onnx: Path, corruptions: Sequence[str],
                      severities: Sequence[int], seed: int, limit: int | None, threads: int,
                      progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Clean and corrupted accuracy of the exported ONNX files (ONNX Runtime CPU), R_C and mCE
    (a detector: mAP, mPC and rPC in the same places, prunekit.tasks.detection)."""
    from prunekit.deploy.ort_model import OrtClassifier
    from prunekit.robustness.metrics import corruption_errors, evaluate_corruptions_shared
    from prunekit.tasks import resolve_task

    s = run.settings
    task = resolve_task(s.get("task"), str(s["model"]))
    data = task.load_data(str(s["data"]), int(s["input_size"]), int(s["num_classes"]))
    own = task.evaluate_exported(run, data, dense_onnx, pruned_onnx, corruptions, severities, seed, limit, threads)
    if own is not None:
        return own
    loader = data.loader("val", batch_size=128, shuffle=False)
    out: dict[str, Any] = {
        "evaluated": "the exported ONNX files on ONNX Runtime CPU (fp32), on the same corrupted images",
        "data": str(s["data"]), "corruptions": list(corruptions), "severities": list(severities), "seed": seed,
        "limit": limit,
    }
    predicts = {"dense": OrtClassifier(dense_onnx, threads=threads), "pruned": OrtClassifier(pruned_onnx, threads=threads)}
    tick = (lambda n: progress(BOTH, n)) if progress is not None else None
    reports = evaluate_corruptions_shared(predicts, loader, list(corruptions), list(severities), seed, limit=limit,
                                          progress=tick)
    for which, rep in reports.items():
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
    """How many validation images `check` evaluates (the gate needs the same number as its baseline)."""
    from prunekit.tasks import resolve_task

    s = run.settings
    task = resolve_task(s.get("task"), str(s["model"]))
    n = len(task.load_data(str(s["data"]), int(s["input_size"]), int(s["num_classes"])).val_set)
    return min(n, limit) if limit is not None else n
