"""One robustness evaluation of one or more models on the same images (what `prunekit eval` runs).

Each model gets clean accuracy, accuracy per corruption and severity (generated from a seed, or
read from CIFAR-10-C / ImageNet-C files), R_C, optionally PGD accuracy and probabilistic certified
accuracy. With more than one model, the first is the reference for the corruption error (mCE), as
the dense model is for its pruned version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.robustness.certify import certify
from prunekit.robustness.corruptions import CORRUPTIONS, validate_names, validate_severity
from prunekit.robustness.metrics import (
    CorruptionReport,
    Loader,
    Predict,
    corruption_errors,
    evaluate_clean,
    evaluate_corrupted_sets,
    evaluate_corruptions,
    torch_predictor,
)
from prunekit.robustness.pgd import CIFAR_EPS, CIFAR_STEP_SIZE, CIFAR_STEPS, adversarial_accuracy
from prunekit.robustness.readers import read_cifar_c, read_imagenet_c


@dataclass
class EvalOptions:
    """What to measure; the defaults are the benchmark's (15 corruptions x 5 severities)."""

    corruptions: Sequence[str] = CORRUPTIONS
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    seed: int = 0
    limit: int | None = None
    device: str = "cpu"
    corrupted_dir: Path | None = None  # read CIFAR-10-C / ImageNet-C files instead of generating
    batch_size: int = 128
    pgd: bool = False
    eps: float = CIFAR_EPS
    pgd_steps: int = CIFAR_STEPS
    pgd_step_size: float = CIFAR_STEP_SIZE
    certify_samples: int = 0
    certify_epsilon: float = 0.1
    certify_alpha: float = 0.05
    input_size: int | None = None

    def validate(self) -> None:
        validate_names(self.corruptions)
        for s in self.severities:
            validate_severity(s)
        if not self.corruptions or not self.severities:
            raise PrunekitError("no corruptions or no severities selected")
        if self.limit is not None and self.limit < 1:
            raise PrunekitError(f"--limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise PrunekitError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.eps < 0:
            raise PrunekitError(
                f"--eps must be >= 0, got {self.eps}", "eps is in [0, 1] pixel units, e.g. 0.0314"
            )
        if self.certify_samples < 0:
            raise PrunekitError(f"--certify must be >= 0, got {self.certify_samples}")


Model = nn.Module | Predict


@dataclass
class ModelResult:
    """Everything measured for one model."""

    corruption: CorruptionReport
    pgd: dict[str, Any] | None = None
    certify: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = self.corruption.to_dict()
        if self.pgd is not None:
            out["pgd"] = self.pgd
        if self.certify is not None:
            out["certify"] = self.certify
        out.update(self.extra)
        return out


def _corrupted_sets(opts: EvalOptions) -> Any:
    root = Path(opts.corrupted_dir)  # type: ignore[arg-type]
    kw = {"batch_size": opts.batch_size, "image_size": opts.input_size, "limit": opts.limit}
    if (root / "labels.npy").is_file():
        return read_cifar_c(root, opts.corruptions, opts.severities, **kw)
    return read_imagenet_c(root, opts.corruptions, opts.severities, **kw)


def evaluate_models(
    models: dict[str, Model],
    loader: Loader,
    options: EvalOptions,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Measure every model on `loader` (clean images) and return a JSON-ready result.

    `models` maps a name ("dense", "pruned", ...) to a torch model or a `predict` callable (PGD
    needs a torch model). `progress(task, n)` is told about finished images per task.
    """
    options.validate()
    if not models:
        raise PrunekitError("nothing to evaluate")
    dev = torch.device(options.device)
    results: dict[str, ModelResult] = {}
    for name, model in models.items():
        is_torch = isinstance(model, nn.Module)
        if options.pgd and not is_torch:
            raise PrunekitError(
                f"PGD needs gradients, which model '{name}' (ONNX Runtime) cannot give",
                "evaluate the run folder or the PyTorch model with --pgd",
            )
        if is_torch:
            model.to(dev)
        predict = torch_predictor(model, dev) if is_torch else model
        corr_dev = dev if is_torch else None

        def tick(task: str, _model: str = name) -> Callable[[int], None] | None:
            if progress is None:
                return None
            label = f"{_model}: {task}"
            return lambda n: progress(label, n)

        if options.corrupted_dir is not None:
            clean = evaluate_clean(predict, loader, limit=options.limit)
            report = evaluate_corrupted_sets(
                predict,
                _corrupted_sets(options),
                clean,
                source=str(options.corrupted_dir),
                progress=tick("corrupted files"),
            )
        else:
            report = evaluate_corruptions(
                predict,
                loader,
                options.corruptions,
                options.severities,
                options.seed,
                limit=options.limit,
                device=corr_dev,
                progress=tick("corruptions"),
            )
        result = ModelResult(report)
        if options.pgd:
            adv = adversarial_accuracy(
                model,  # type: ignore[arg-type]
                loader,
                options.eps,
                options.pgd_steps,
                options.pgd_step_size,
                options.seed,
                limit=options.limit,
                progress=tick("PGD"),
            )
            result.pgd = adv.to_dict()
        if options.certify_samples:
            cert = certify(
                predict,
                loader,
                options.certify_samples,
                options.certify_epsilon,
                options.certify_alpha,
                options.corruptions,
                options.seed,
                severities=options.severities,
                limit=options.limit,
                device=corr_dev,
                progress=tick("certify"),
            )
            result.certify = cert.to_dict()
        results[name] = result
        if is_torch:
            model.to("cpu")
    names = list(results)
    out: dict[str, Any] = {
        "models": {n: r.to_dict() for n, r in results.items()},
        "settings": {
            "corruptions": list(options.corruptions),
            "severities": list(options.severities),
            "seed": options.seed,
            "limit": options.limit,
            "corrupted_dir": str(options.corrupted_dir) if options.corrupted_dir else None,
            "pgd": {"eps": options.eps, "steps": options.pgd_steps, "step_size": options.pgd_step_size}
            if options.pgd
            else None,
            "certify": {
                "n_samples": options.certify_samples,
                "epsilon": options.certify_epsilon,
                "alpha": options.certify_alpha,
            }
            if options.certify_samples
            else None,
        },
    }
    if len(names) > 1:
        ref = results[names[0]].corruption
        for other in names[1:]:
            ces = corruption_errors(results[other].corruption, ref)
            out["models"][other]["reference"] = names[0]
            out["models"][other]["corruption_errors"] = ces
            out["models"][other]["mce"] = sum(ces.values()) / len(ces) if ces else None
    return out


def plot_accuracy(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Bar chart PNG of accuracy per corruption (mean over severities), one bar per model."""
    from prunekit.plots import accuracy_bars, figure, write_png

    models = result["models"]
    names = list(models)
    first = models[names[0]]
    labels = ["clean", *first["per_corruption"].keys(), "mean"]
    series = {n: [models[n]["clean_accuracy"], *models[n]["per_corruption"].values(),
                  models[n]["mean_corruption_accuracy"]] for n in names}
    fig, ax = figure(figsize=(min(16.0, max(8.0, 0.3 * len(labels) * len(names) + 3)), 5.0))
    sevs = ",".join(str(s) for s in result["settings"]["severities"])
    what = f"accuracy per corruption, mean over severities {sevs}"
    accuracy_bars(ax, labels, series, title=f"{title}: {what}" if title else what[0].upper() + what[1:])
    return write_png(fig, path, dpi=120)
