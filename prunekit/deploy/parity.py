"""Does the exported file compute what the PyTorch model computes? ONNX Runtime vs PyTorch on real images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.deploy.ort_model import OrtClassifier
from prunekit.errors import PrunekitError
from prunekit.runs import LoadedRun

PARITY_IMAGES = 64
# Parity tolerance on logits: |onnx - torch| <= ATOL + RTOL * max|torch logits|. Both sides compute in
# float32 (unit roundoff 6e-8); ONNX Runtime folds BatchNorm into the convs and reorders sums, which
# moves logits by 1e-8..1e-5 on the models tested here. 1e-3 of the logit range leaves ~100x headroom
# over that, while a real export bug (a wrong channel, a dropped BN, a mis-shaped reshape) changes
# logits by a large fraction of their range.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
MIN_TOP1_AGREEMENT = 0.99


@dataclass
class Parity:
    """ONNX Runtime vs PyTorch on the same images."""

    images: int
    logit_scale: float  # max |PyTorch logit|: near 0 means the comparison says little (untrained model)
    max_abs_diff: float
    tolerance: float
    top1_agreement: float
    near_ties: int  # disagreements where PyTorch's top-2 margin is within the tolerance
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)  # a task's own comparison (detection: boxes, scores)


def parity_images(run: LoadedRun, n: int = PARITY_IMAGES) -> tuple[torch.Tensor, str]:
    """The first `n` validation images of the run's data (fixed order), or random images if absent."""
    from prunekit.tasks import resolve_task

    s = run.settings
    size = int(s["input_size"])
    try:
        data = resolve_task(s.get("task"), str(s["model"])).load_data(str(s["data"]), size, int(s["num_classes"]))
        xs = []
        for x, _ in data.loader("val", batch_size=min(n, 256), shuffle=False):
            xs.append(x)
            if sum(len(b) for b in xs) >= n:
                break
        images = torch.cat(xs)[:n]
        return images, f"validation split of {s['data']} (first {len(images)} images)"
    except PrunekitError as exc:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(n, 3, size, size, generator=g)
        return images, f"random images in [0, 1]: validation data unavailable ({exc.message})"


def check_parity(model: nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> Parity:
    """Compare ONNX Runtime logits with PyTorch logits on `images`."""
    with torch.no_grad():
        ref = model.eval().cpu()(images).float().numpy()
    got = OrtClassifier(onnx_bytes, threads=1).run(images.numpy())
    if got.shape != ref.shape:
        raise PrunekitError(f"exported model returns shape {list(got.shape)}, PyTorch {list(ref.shape)}")
    diff = float(np.abs(got - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    tol = PARITY_ATOL + PARITY_RTOL * scale
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    agree = top_ref == top_got
    srt = np.sort(ref, axis=1)
    margin = srt[:, -1] - srt[:, -2] if ref.shape[1] > 1 else np.full(len(ref), np.inf)
    ties = int(np.sum(~agree & (margin <= tol)))
    agreement = float(agree.mean()) if len(agree) else 1.0
    # Near-ties (top-2 margin within the numeric tolerance) may flip either way in float32.
    effective = float((agree | (margin <= tol)).mean()) if len(agree) else 1.0
    passed = bool(np.isfinite(diff) and diff <= tol and effective >= MIN_TOP1_AGREEMENT)
    return Parity(len(images), scale, diff, tol, agreement, ties, passed)
