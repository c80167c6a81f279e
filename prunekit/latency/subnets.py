"""End-to-end calibration of one model on its device: pruned copies, predicted vs measured.

The table prices layers one at a time; a model runs them together. Where that differs, it differs
with the model as a whole: a 32x32 resnet18's 45 MB of weights stream from memory on every run and
a pruned copy's may fit the cache (the table cannot see either), a small mobile net's layers run
warmer in the model than in the cells. So, for the model being compressed, `prunekit.select.calibrate`
times a few pruned copies of it against the dense model on the device (the latency knapsack's own
choices at several targets) and the profile keeps (predicted ratio, measured ratio) for each
(`SubnetCalibration`). Here is the arithmetic: `calibrated_ratio` maps a prediction of that model
through their monotone fit (isotonic regression, anchored at dense = (1, 1); proportional below
the narrowest copy), `predicted_target` is the inverse (the predicted ratio a selection must aim at
for a *measured* budget), `find_calibration` finds a current one in a profile.

What this cannot fix: two selections with the same predicted ratio but different shapes (the fit is
one curve per model, not per layer), and the timing's own spread (at 32x32 one session's ratio is
15-35 % off, so each copy is timed in several fresh sessions).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from prunekit.latency.layers import arch_key, enumerate_layers
from prunekit.latency.schema import Profile, SubnetCalibration

DEFAULT_SUBNETS = 6
CALIBRATION_SESSIONS = 5
# How the copies were chosen (SubnetCalibration.sampler). A calibration from another sampler is
# not used: random per-group widths measured unlike the knapsack's own choices at 32 px (they
# cut layer4's weights, which the knapsack keeps), so copies are now the knapsack's selections.
SAMPLER = "knapsack-magnitude"


def fit_curve(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Monotone (isotonic) fit of measured over predicted ratio, with dense = (1, 1) held fixed."""
    from sklearn.isotonic import IsotonicRegression

    pts = sorted((float(p), float(m)) for p, m in points if p < 1.0)
    if not pts:
        return [(1.0, 1.0)]
    x = np.array([p for p, _ in pts] + [1.0])
    y = np.array([m for _, m in pts] + [1.0])
    w = np.array([1.0] * len(pts) + [1e6])  # dense is 1 by definition
    iso = IsotonicRegression(increasing=True, y_min=1e-6)
    fitted = iso.fit(x, y, sample_weight=w).predict(x)
    curve: dict[float, float] = {}
    for p, m in zip(x, fitted, strict=True):
        curve[float(p)] = float(m)
    return sorted(curve.items())


def calibrated_ratio(calibration: SubnetCalibration | list[tuple[float, float]], predicted_ratio: float) -> float:
    """The measured ratio the calibration expects for a prediction of `predicted_ratio`."""
    curve = fit_curve(list(calibration.points) if isinstance(calibration, SubnetCalibration) else calibration)
    p = float(predicted_ratio)
    if p >= 1.0:
        return p
    x0, y0 = curve[0]
    if p <= x0:
        return p * y0 / x0
    xs, ys = [c[0] for c in curve], [c[1] for c in curve]
    return float(np.interp(p, xs, ys))


def predicted_target(calibration: SubnetCalibration, budget: float) -> float:
    """The largest predicted ratio whose calibrated (measured) ratio is within `budget`."""
    if budget >= 1.0:
        return float(budget)
    curve = fit_curve(list(calibration.points))
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if calibrated_ratio(curve, mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


STALE = 0.02  # a dense prediction this far from the calibration's: the table has moved since


def find_calibration(profile: Profile, model: nn.Module, input_shape: tuple[int, ...],
                     dense_predicted_ms: float | None = None) -> SubnetCalibration | None:
    """The profile's end-to-end calibration of this architecture at this input shape, if one was
    measured and the table still predicts the dense model as it did then."""
    key = arch_key(enumerate_layers(model, input_shape))  # type: ignore[arg-type]
    found = [r.subnets for r in profile.models.values()
             if r.subnets is not None and r.arch == key and list(r.input_shape) == list(input_shape)]
    if found and dense_predicted_ms is None:
        from prunekit.latency.predict import predict_latency

        dense_predicted_ms = predict_latency(model, profile, input_shape).total_ms  # type: ignore[arg-type]
    for cal in found:
        if cal.sampler == SAMPLER and abs(float(dense_predicted_ms) / cal.dense_predicted_ms - 1.0) <= STALE:  # type: ignore[arg-type]
            return cal
    return None
