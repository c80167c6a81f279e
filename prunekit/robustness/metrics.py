"""Clean and corruption accuracy, robustness ratio R_C and corruption error (mCE).

`predict` is any callable from an image batch [B, 3, H, W] in [0, 1] to logits [B, K] (a torch
model wrapped by `torch_predictor`, or an ONNX Runtime session wrapper returning a tensor or a
NumPy array). A loader is any iterable of (images, labels) batches.

Definitions (Hendrycks & Dietterich, 2019; the ratio as used by AdaSAP):

* corruption accuracy acc_C: accuracy averaged over every (corruption, severity) cell;
* R_C = acc_C / acc_clean;
* corruption error CE_c = sum_s err(model, c, s) / sum_s err(reference, c, s), and mCE its mean
  over corruptions, with the reference being e.g. the dense model a pruned one came from.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.robustness.corruptions import CORRUPTIONS, corrupt, validate_names, validate_severity
from prunekit.robustness.readers import CorruptedSet

Predict = Callable[[torch.Tensor], Any]
Loader = Iterable[tuple[torch.Tensor, torch.Tensor]]
Progress = Callable[[int], None]


def torch_predictor(model: nn.Module, device: str | torch.device | None = None) -> Predict:
    """Wrap a torch model as `predict`: puts it in eval mode; no autograd; inputs go to its device."""
    model.eval()
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    dev = torch.device(device)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(dev, non_blocking=True))

    return predict


def _logits(predict: Predict, images: torch.Tensor) -> torch.Tensor:
    out = predict(images)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
        shape = getattr(out, "shape", type(out).__name__)
        raise PrunekitError(f"predict() must return logits [batch, classes], got {shape}")
    return out


def _limited(loader: Loader, limit: int | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of `loader`, cut so that at most `limit` images are seen."""
    seen = 0
    for images, labels in loader:
        if limit is not None:
            if seen >= limit:
                return
            keep = min(images.shape[0], limit - seen)
            images, labels = images[:keep], labels[:keep]
        seen += images.shape[0]
        yield images, labels


def _count_correct(predict: Predict, images: torch.Tensor, labels: torch.Tensor) -> int:
    pred = _logits(predict, images).argmax(1).cpu()
    return int((pred == labels.cpu()).sum())


def evaluate_clean(predict: Predict, loader: Loader, *, limit: int | None = None) -> float:
    """Top-1 accuracy of `predict` on `loader` (at most `limit` images)."""
    correct = total = 0
    for images, labels in _limited(loader, limit):
        correct += _count_correct(predict, images, labels)
        total += images.shape[0]
    if total == 0:
        raise PrunekitError("the evaluation data is empty", "check --data and --limit")
    return correct / total


@dataclass
class CorruptionReport:
    """Accuracy per corruption and severity, with the clean accuracy it is compared to."""

    clean_accuracy: float
    accuracy: dict[str, dict[int, float]]
    n_images: int
    seed: int | None = None
    source: str = "generated"  # "generated" (on the fly, from a seed) or the folder it was read from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def corruptions(self) -> list[str]:
        return list(self.accuracy)

    @property
    def severities(self) -> list[int]:
        return sorted({s for row in self.accuracy.values() for s in row})

    def corruption_mean(self, name: str) -> float:
        """Accuracy on corruption `name` averaged over its severities."""
        row = self.accuracy[name]
        return sum(row.values()) / len(row)

    @property
    def mean_corruption_accuracy(self) -> float:
        """acc_C: mean accuracy over every (corruption, severity) cell."""
        cells = [a for row in self.accuracy.values() for a in row.values()]
        return sum(cells) / len(cells) if cells else math.nan

    @property
    def relative_robustness(self) -> float:
        """R_C = acc_C / acc_clean (1.0 means corruptions cost nothing)."""
        if self.clean_accuracy <= 0:
            return math.nan
        return self.mean_corruption_accuracy / self.clean_accuracy

    def to_dict(self) -> dict[str, Any]:
        rc = self.relative_robustness
        return {
            "clean_accuracy": self.clean_accuracy,
            "mean_corruption_accuracy": self.mean_corruption_accuracy,
            "relative_robustness": None if math.isnan(rc) else rc,
            "n_images": self.n_images,
            "seed": self.seed,
            "source": self.source,
            "per_corruption": {c: self.corruption_mean(c) for c in self.accuracy},
            "accuracy": {c: {str(s): a for s, a in row.items()} for c, row in self.accuracy.items()},
            **self.extra,
        }


def cell_seed(seed: int, batch_index: int, corruption: str, severity: int) -> int:
    """A stable seed for one (batch, corruption, severity) cell, independent of run order."""
    key = [int(seed) & 0xFFFF_FFFF, batch_index, zlib.crc32(corruption.encode()), severity]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)


def evaluate_corruptions(
    predict: Predict,
    loader: Loader,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    *,
    clean_accuracy: float | None = None,
    limit: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> CorruptionReport:
    """Accuracy of `predict` on every corruption x severity, generated on the fly from `seed`.

    Each batch is corrupted on `device` (default: where the batch is; pass the model's GPU to run the
    suite there). The clean accuracy is measured on the same images unless given. `progress` is
    called with the number of images finished after every batch and cell.
    """
    return evaluate_corruptions_shared(
        {"model": predict}, loader, corruptions, severities, seed,
        clean_accuracy=None if clean_accuracy is None else {"model": clean_accuracy},
        limit=limit, device=device, progress=progress,
    )["model"]


def evaluate_corruptions_shared(
    predicts: dict[str, Predict],
    loader: Loader,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    *,
    clean_accuracy: dict[str, float] | None = None,
    limit: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> dict[str, CorruptionReport]:
    """`evaluate_corruptions` for several models at once: every batch is corrupted ONCE per cell and
    the same corrupted images are fed to every model (a dense and a pruned model compared on
    identical inputs, at the cost of one corruption pass). `progress` counts images per cell, once
    for all models.
    """
    names = validate_names(list(corruptions) if corruptions is not None else list(CORRUPTIONS))
    sevs = [validate_severity(s) for s in severities]
    if not names or not sevs:
        raise PrunekitError("no corruptions or no severities selected")
    if not predicts:
        raise PrunekitError("nothing to evaluate")
    dev = torch.device(device) if device is not None else None
    correct = {m: {c: dict.fromkeys(sevs, 0) for c in names} for m in predicts}
    clean_correct = dict.fromkeys(predicts, 0)
    total = 0
    for b, (images, labels) in enumerate(_limited(loader, limit)):
        x = images.to(dev) if dev is not None else images
        if clean_accuracy is None:
            for m, predict in predicts.items():
                clean_correct[m] += _count_correct(predict, x, labels)
        for c in names:
            for s in sevs:
                xc = corrupt(x, c, s, seed=cell_seed(seed, b, c, s))
                for m, predict in predicts.items():
                    correct[m][c][s] += _count_correct(predict, xc, labels)
                if progress is not None:
                    progress(images.shape[0])
        total += images.shape[0]
    if total == 0:
        raise PrunekitError("the evaluation data is empty", "check --data and --limit")
    out = {}
    for m in predicts:
        acc = {c: {s: correct[m][c][s] / total for s in sevs} for c in names}
        clean = clean_accuracy[m] if clean_accuracy is not None else clean_correct[m] / total
        out[m] = CorruptionReport(clean_accuracy=clean, accuracy=acc, n_images=total, seed=seed)
    return out


def evaluate_corrupted_sets(
    predict: Predict,
    sets: Iterable[CorruptedSet],
    clean_accuracy: float,
    *,
    source: str = "files",
    progress: Progress | None = None,
) -> CorruptionReport:
    """Accuracy of `predict` on pre-corrupted cells (from `read_cifar_c` / `read_imagenet_c`)."""
    acc: dict[str, dict[int, float]] = {}
    n = 0
    for cell in sets:
        correct = total = 0
        for images, labels in cell.loader:
            correct += _count_correct(predict, images, labels)
            total += images.shape[0]
            if progress is not None:
                progress(images.shape[0])
        if total == 0:
            raise PrunekitError(f"{cell.corruption} severity {cell.severity} holds no images")
        acc.setdefault(cell.corruption, {})[cell.severity] = correct / total
        n = max(n, total)
    if not acc:
        raise PrunekitError("no corrupted data was read")
    return CorruptionReport(clean_accuracy=clean_accuracy, accuracy=acc, n_images=n, seed=None, source=source)


def corruption_errors(report: CorruptionReport, reference: CorruptionReport) -> dict[str, float]:
    """CE per corruption: the model's summed error over severities / the reference's.

    Corruptions on which the reference makes no error at any severity are left out (CE undefined).
    Both reports must cover the same severities of each shared corruption.
    """
    shared = [c for c in report.accuracy if c in reference.accuracy]
    if not shared:
        raise PrunekitError("the two reports share no corruption; mCE needs the same corruptions")
    out: dict[str, float] = {}
    for c in shared:
        sevs = sorted(report.accuracy[c])
        if sorted(reference.accuracy[c]) != sevs:
            raise PrunekitError(f"{c}: the reports cover different severities; mCE needs the same ones")
        err = sum(1.0 - report.accuracy[c][s] for s in sevs)
        ref = sum(1.0 - reference.accuracy[c][s] for s in sevs)
        if ref > 0:
            out[c] = err / ref
    return out


def mce(report: CorruptionReport, reference_report: CorruptionReport) -> float:
    """Mean corruption error of `report` relative to `reference_report` (1.0 = as robust).

    Raises PrunekitError when the reference makes no error on any shared corruption.
    """
    ces = corruption_errors(report, reference_report)
    if not ces:
        raise PrunekitError(
            "the reference model makes no error on any corruption, so the corruption error is undefined",
            "use more or harder data (higher severities)",
        )
    return sum(ces.values()) / len(ces)
