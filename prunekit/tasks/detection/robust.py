"""Robust detection: mAP on corrupted images, the protocol of Michaelis et al. 2019 ("Benchmarking
Robustness in Object Detection").

Every validation batch is corrupted once per (corruption, severity) cell with prunekit's
ImageNet-C / CIFAR-10-C suite (`prunekit.robustness.corruptions`, seeded) and the same corrupted
batch goes to every model. Per model:

- clean mAP (the COCO AP@[.5:.95], pycocotools) and mAP@.5,
- mAP of every cell,
- mPC = the mean of the cells' mAP over corruptions and severities,
- rPC = mPC / clean mAP (the detection counterpart of the classifier's R_C = acc_C / acc).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from prunekit.robustness.corruptions import corrupt, validate_names, validate_severity
from prunekit.tasks.detection.metrics import mean_ap

Target = dict[str, torch.Tensor]
Predict = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def detection_robustness(
    models: dict[str, tuple[Predict, Any]],
    batches: Sequence[tuple[torch.Tensor, list[Target]]],
    num_classes: int,
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int = 0,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Clean mAP, mAP per corruption and severity, mPC and rPC of every model on the same images.

    `models[name] = (predict, decoder)`: `predict(images) -> raw outputs` (a DetectorNet, or an
    ONNX Runtime session of its export) and a DetectorNet whose `decode` turns them into boxes.
    """
    validate_names(corruptions)
    for s in severities:
        validate_severity(s)
    targets = [t for _, ys in batches for t in ys]
    cells: list[tuple[str, int | None]] = [("clean", None)] + [(c, s) for c in corruptions for s in severities]
    preds: dict[str, dict[tuple[str, int | None], list[Target]]] = {n: {c: [] for c in cells} for n in models}
    for b, (x, _) in enumerate(batches):
        size = (int(x.shape[-2]), int(x.shape[-1]))
        for cell in cells:
            name, sev = cell
            images = x if sev is None else corrupt(x, name, sev, seed=seed * 1_000_003 + 7919 * b + 31 * sev)
            for model_name, (predict, decoder) in models.items():
                out = predict(images)
                preds[model_name][cell].extend({k: v.cpu() for k, v in d.items()} for d in decoder.decode(out, size))
            if progress is not None:
                progress("corruptions", len(x))
    result: dict[str, Any] = {}
    for model_name in models:
        clean = mean_ap(preds[model_name][("clean", None)], targets, num_classes)
        per_cell = {c: {s: mean_ap(preds[model_name][(c, s)], targets, num_classes)["map"] for s in severities}
                    for c in corruptions}
        values = [v for row in per_cell.values() for v in row.values()]
        mpc = sum(values) / len(values)
        result[model_name] = {
            "map": clean["map"], "map_50": clean["map_50"], "mpc": mpc,
            "rpc": mpc / clean["map"] if clean["map"] > 0 else None,
            "per_corruption": {c: sum(row.values()) / len(row) for c, row in per_cell.items()},
            "cells": {c: {str(s): v for s, v in row.items()} for c, row in per_cell.items()},
        }
    return {"protocol": "Michaelis et al. 2019: mPC = mean mAP over corruptions x severities, rPC = mPC / clean mAP",
            "corruptions": list(corruptions), "severities": list(severities), "seed": seed,
            "n_images": len(targets), "models": result}


def val_batches(data: Any, batch_size: int, limit: int | None) -> list[tuple[torch.Tensor, list[Target]]]:
    """The first `limit` validation images (all by default), in batches, in a fixed order."""
    out: list[tuple[torch.Tensor, list[Target]]] = []
    seen = 0
    for x, ys in data.loader("val", batch_size, shuffle=False):
        if limit is not None and seen >= limit:
            break
        if limit is not None and seen + len(ys) > limit:
            x, ys = x[: limit - seen], ys[: limit - seen]
        out.append((x, ys))
        seen += len(ys)
    return out
