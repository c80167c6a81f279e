"""End-to-end calibration of one model on its device: sampled pruned copies, predicted vs measured.

The table prices layers one at a time; a model runs them together. Where that differs, it differs
with the model as a whole: a 32x32 resnet18's 45 MB of weights stream from memory on every run and
a pruned copy's fit the cache (the table cannot see either), a small mobile net's layers run warmer
in the model than in the cells. So, for the model being compressed, `measure_subnets` times `n`
pruned copies with random per-group widths against the dense model on the device, and records
(predicted ratio, measured ratio) for each; `calibrated_ratio` maps any prediction of that model
through their monotone fit (isotonic regression, anchored at dense = (1, 1); proportional below the
narrowest sample). `predicted_target` is the inverse: the predicted ratio a selection must aim at
for a *measured* budget.

What this cannot fix: two selections with the same predicted ratio but different shapes (the fit is
one curve per model, not per layer), and the timing's own spread (at 32x32 one session's ratio is
15-35 % off, so each copy is timed in several fresh sessions).
"""

from __future__ import annotations

import copy
import datetime as _dt
import random
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency.layers import arch_key, enumerate_layers
from prunekit.latency.measure import TimingOptions
from prunekit.latency.schema import Profile, SubnetCalibration

DEFAULT_SUBNETS = 6
CALIBRATION_SESSIONS = 5
# Kept fraction of every group's channels, spread so the copies cover about 0.1-0.8 of dense;
# each group's own fraction is jittered around its copy's level (log-normal, sigma 0.25).
LEVEL_RANGE = (0.3, 0.9)
JITTER = 0.25


def sample_levels(n: int) -> list[float]:
    lo, hi = LEVEL_RANGE
    return [lo + (hi - lo) * i / max(1, n - 1) for i in range(n)] if n > 1 else [0.5 * (lo + hi)]


def sample_keep(graph: object, level: float, rng: random.Random, round_to: int = 8,
                min_fraction: float = 0.05) -> dict[str, torch.Tensor]:
    """A keep-set with per-group widths drawn around `level`, each one a width the latency
    selection itself may choose (`pruning.candidate_widths`); weights do not matter for latency."""
    from prunekit.pruning import candidate_widths

    keep: dict[str, torch.Tensor] = {}
    for g in graph.groups:  # type: ignore[attr-defined]
        if g.name in graph.fixed:  # type: ignore[attr-defined]
            continue
        frac = min(1.0, max(min_fraction, level * float(np.exp(rng.gauss(0.0, JITTER)))))
        cands = candidate_widths(g.width, round_to, max(1, int(round(g.width * min_fraction))),
                                 int(getattr(g, "step", 1) or 1))
        k = min(cands, key=lambda c: abs(c - frac * g.width))
        keep[g.name] = torch.arange(k)
    return keep


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
        if abs(float(dense_predicted_ms) / cal.dense_predicted_ms - 1.0) <= STALE:  # type: ignore[arg-type]
            return cal
    return None


def measure_subnets(
    profile: Profile,
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    n: int = DEFAULT_SUBNETS,
    seed: int = 0,
    round_to: int = 8,
    timing: TimingOptions | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> SubnetCalibration:
    """Time `n` random pruned copies of `model` against it on `profile`'s runtime, here.

    Each copy's predicted ratio comes from the profile (raw, uncalibrated), its measured one from
    warm blocks in `timing.sessions` fresh sessions (default CALIBRATION_SESSIONS).
    """
    from prunekit.latency.predict import predict_latency
    from prunekit.pruning import PruningGraph
    from prunekit.runtimes import Execution, ModelRef, get_runtime

    if n < 1:
        raise PrunekitError(f"--subnets must be at least 1 to calibrate, got {n}")
    rt = get_runtime(profile.runtime)
    rt.require()
    ex = Execution.of_profile(profile, rt)
    timing = timing or TimingOptions(sessions=CALIBRATION_SESSIONS)
    dense = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(1, *input_shape[1:])
    dense_pred = predict_latency(dense, profile, input_shape).total_ms
    dense_ref = ModelRef(module=dense)
    rng = random.Random(seed)
    points: list[tuple[float, float]] = []
    for i, level in enumerate(sample_levels(n)):
        sub = copy.deepcopy(dense)
        graph = PruningGraph(sub, example, type(model).__name__)
        graph.prune(sample_keep(graph, level, rng, round_to))
        sub.eval()
        pred = predict_latency(sub, profile, input_shape).total_ms / dense_pred
        measured = rt.time_pair(dense_ref, ModelRef(module=sub), input_shape, ex, timing).ratio
        points.append((round(pred, 5), round(float(measured), 5)))
        if on_step is not None:
            on_step(i, pred, measured)
    return SubnetCalibration(points=points, dense_predicted_ms=round(dense_pred, 5), sessions=timing.sessions, seed=seed,
                             date=_dt.date.today().isoformat())
