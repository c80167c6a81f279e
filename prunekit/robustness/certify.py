"""Probabilistic certified accuracy under the corruption suite (C-SAM's PCA).

For every input, N transformations are sampled from the suite (a random corruption and severity,
with fresh noise), the prediction on each is compared with the clean prediction, and a one-sided
Clopper-Pearson upper bound on the flip probability is computed from the k observed flips. The
input is *certified* when that bound is below epsilon and the clean prediction is correct; the
certified accuracy is the fraction of certified inputs. Each input's statement holds with
confidence 1 - alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import beta

from prunekit.errors import PrunekitError
from prunekit.robustness.corruptions import CORRUPTIONS, corrupt, validate_names, validate_severity
from prunekit.robustness.metrics import Loader, Predict, _limited, _logits


def clopper_pearson_upper(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on a binomial probability from k of n.

    It is the (1 - alpha) quantile of Beta(k + 1, n - k), and 1 when k == n.
    """
    if n < 1 or not 0 <= k <= n:
        raise PrunekitError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise PrunekitError(f"alpha must be in (0, 1), got {alpha}")
    if k == n:
        return 1.0
    return float(beta.ppf(1.0 - alpha, k + 1, n - k))


@dataclass
class CertifyReport:
    """Per-input flip counts, their upper bounds and the resulting certified accuracy."""

    n_samples: int
    epsilon: float
    alpha: float
    flips: list[int]
    upper_bounds: list[float]
    clean_correct: list[bool]
    certified: list[bool]
    corruptions: list[str]
    severities: list[int]
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return len(self.flips)

    @property
    def certified_accuracy(self) -> float:
        return sum(self.certified) / self.n_inputs if self.n_inputs else 0.0

    @property
    def clean_accuracy(self) -> float:
        return sum(self.clean_correct) / self.n_inputs if self.n_inputs else 0.0

    @property
    def smallest_bound(self) -> float:
        """The bound with zero flips: inputs can only be certified when it is below epsilon."""
        return clopper_pearson_upper(0, self.n_samples, self.alpha)

    @property
    def mean_flip_rate(self) -> float:
        return sum(self.flips) / (self.n_inputs * self.n_samples) if self.n_inputs else 0.0

    def to_dict(self, per_input: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "certified_accuracy": self.certified_accuracy,
            "clean_accuracy": self.clean_accuracy,
            "mean_flip_rate": self.mean_flip_rate,
            "n_inputs": self.n_inputs,
            "n_samples": self.n_samples,
            "epsilon": self.epsilon,
            "alpha": self.alpha,
            "smallest_bound": self.smallest_bound,
            "corruptions": self.corruptions,
            "severities": self.severities,
            "seed": self.seed,
            **self.extra,
        }
        if per_input:
            out["flips"] = self.flips
            out["upper_bounds"] = self.upper_bounds
            out["certified"] = self.certified
        return out


def certify(
    predict: Predict,
    loader: Loader,
    n_samples: int = 100,
    epsilon: float = 0.1,
    alpha: float = 0.05,
    corruptions: Sequence[str] | None = None,
    seed: int = 0,
    *,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    device: str | torch.device | None = None,
    progress: Any = None,
) -> CertifyReport:
    """Probabilistic certified accuracy of `predict` under `n_samples` random suite draws per input.

    Draw j uses one (corruption, severity) for the whole batch, sampled uniformly and independently
    per draw, with its own noise seed: for every single input the N draws are independent samples of
    the suite, which is what the per-input binomial bound needs, while the batch is corrupted in one
    call.
    """
    if n_samples < 1:
        raise PrunekitError(f"--certify needs at least 1 sample per input, got {n_samples}")
    if not 0.0 < epsilon < 1.0:
        raise PrunekitError(f"epsilon must be in (0, 1), got {epsilon}")
    if not 0.0 < alpha < 1.0:
        raise PrunekitError(f"alpha must be in (0, 1), got {alpha}")
    names = validate_names(list(corruptions) if corruptions is not None else list(CORRUPTIONS))
    sevs = [validate_severity(s) for s in severities]
    if not names or not sevs:
        raise PrunekitError("no corruptions or no severities selected")
    rng = np.random.default_rng(seed)
    dev = torch.device(device) if device is not None else None
    flips: list[int] = []
    correct: list[bool] = []
    for images, labels in _limited(loader, limit):
        x = images.to(dev) if dev is not None else images
        clean_pred = _logits(predict, x).argmax(1).cpu()
        count = torch.zeros(x.shape[0], dtype=torch.long)
        for _ in range(n_samples):
            name = names[int(rng.integers(len(names)))]
            sev = sevs[int(rng.integers(len(sevs)))]
            xc = corrupt(x, name, sev, seed=int(rng.integers(2**62)))
            count += (_logits(predict, xc).argmax(1).cpu() != clean_pred).long()
        flips.extend(count.tolist())
        correct.extend((clean_pred == labels.cpu()).tolist())
        if progress is not None:
            progress(images.shape[0])
    if not flips:
        raise PrunekitError("the evaluation data is empty", "check --data and --limit")
    bounds = [clopper_pearson_upper(k, n_samples, alpha) for k in flips]
    cert = [ok and ub < epsilon for ok, ub in zip(correct, bounds, strict=True)]
    return CertifyReport(
        n_samples=n_samples,
        epsilon=epsilon,
        alpha=alpha,
        flips=flips,
        upper_bounds=bounds,
        clean_correct=correct,
        certified=cert,
        corruptions=names,
        severities=sevs,
        seed=seed,
    )
