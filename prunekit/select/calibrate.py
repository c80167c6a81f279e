"""Calibrate a model's latency predictions on its device with the knapsack's own choices, timed.

`prunekit.latency.subnets` maps a prediction through (predicted, measured) ratios of pruned
copies of the model. Which copies matters: at 32x32 on a CPU whose cache the dense resnet18's
weights overflow, copies with random per-group widths (the first sampler) cut layer4's weights and
measured far faster than predicted, while the knapsack, which prices layer4 as nearly free at that
resolution, keeps its weights, and its choices measured about as predicted; a curve from random
copies aimed the main job's first candidate at 0.76 predicted and it measured 0.75, not 0.5.
So the copies are the latency knapsack's selections (magnitude importance: no data needed,
and what decides the shape is mostly the latency cost) at `n` targets spread between the minimum
widths and dense, timed against dense in fresh sessions (`verify.runtime_measure`).

Six copies spread over the whole range leave steps between them: at 32 px the resnet18 copies
predicted 0.29 and 0.44 of dense measured 0.20 and 0.54 (a cliff in between), and budget 0.3,
aimed by interpolation, measured 0.47. So `refine_calibration` then times the knapsack's choice at
the aim for the budget asked (the measured loop of `verify`, on magnitude copies, before any
training): while it measures outside the window it moves the aim, and every copy it times joins
the calibration kept in the profile, and the aim it chose is kept per budget (`aims`), so the
next run at that budget aims there without timing anything.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency.schema import Profile, SubnetCalibration
from prunekit.latency.subnets import CALIBRATION_SESSIONS, SAMPLER
from prunekit.pruning import PruningGraph
from prunekit.select.latency import minimum_widths, predict_current, predict_for_keep, select_for_latency
from prunekit.select.verify import VerifyOptions, verify_selection

Keep = dict[str, torch.Tensor]
HIGHEST = 0.92  # the widest copy's predicted ratio (dense itself is the anchor (1, 1))
REFINE_TRIES = 3  # copies timed at (corrected) aims for the budget asked
NEAR = 0.01  # a calibration point this close (predicted ratio) to the aim, measured in the window: no refining


def calibration_keeps(graph: PruningGraph, profile: Profile, input_shape: tuple[int, int, int, int], n: int,
                      round_to: int = 8) -> list[Keep]:
    """The knapsack's choices at `n` predicted targets from just above the minimum widths to HIGHEST
    of dense (duplicates dropped: a model with little room may give fewer)."""
    scores = graph.importance("magnitude")
    dense = predict_current(graph, profile, input_shape).total_ms
    _, min_ms = minimum_widths(graph, profile, input_shape, round_to)
    lo = min(HIGHEST, max(0.1, 1.02 * min_ms / dense))
    targets = [lo + (HIGHEST - lo) * i / max(1, n - 1) for i in range(n)] if n > 1 else [0.5 * (lo + HIGHEST)]
    keeps: list[Keep] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    for t in targets:
        sel = select_for_latency(graph, scores, profile, input_shape, t * dense, round_to=round_to,
                                 floor_at_minimum=True)
        key = tuple(sorted((g, len(k)) for g, k in sel.keep.items()))
        if key not in seen:
            seen.add(key)
            keeps.append(sel.keep)
    return keeps


def measure_calibration(
    graph: PruningGraph,
    profile: Profile,
    input_shape: tuple[int, int, int, int],
    measure: Callable[[PruningGraph, Keep], float],
    n: int,
    round_to: int = 8,
    on_step: Callable[[int, int, float, float], None] | None = None,
) -> SubnetCalibration:
    """(predicted, measured) ratios of the knapsack's choices; `measure(graph, keep)` times one."""
    if n < 1:
        raise PrunekitError(f"--subnets must be at least 1 to calibrate, got {n}")
    dense = predict_current(graph, profile, input_shape).total_ms
    keeps = calibration_keeps(graph, profile, input_shape, n, round_to)
    points: list[tuple[float, float]] = []
    for i, keep in enumerate(keeps):
        pred = predict_for_keep(graph, keep, profile, input_shape) / dense
        measured = float(measure(graph, keep))
        points.append((round(pred, 5), round(measured, 5)))
        if on_step is not None:
            on_step(i, len(keeps), pred, measured)
    return SubnetCalibration(points=points, dense_predicted_ms=round(dense, 5), sessions=CALIBRATION_SESSIONS,
                             sampler=SAMPLER, date=_dt.date.today().isoformat())


def calibrate_profile(
    path: str | Path,
    profile: Profile,
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    key: str,
    n: int,
    round_to: int = 8,
    console: Console | None = None,
    model_name: str = "model",
) -> SubnetCalibration:
    """Time `n` knapsack choices of `model` here on `profile`'s runtime and keep them in the
    profile file at `path` under the model record `key`; returns the calibration."""
    from prunekit.latency.profiler import save_calibration
    from prunekit.select.verify import runtime_measure

    dense = copy.deepcopy(model).cpu().eval()
    graph = PruningGraph(copy.deepcopy(dense), torch.zeros(1, *input_shape[1:]), model_name)
    measure = runtime_measure(profile, input_shape, dense)
    if console is not None:
        console.print(f"{key}: timing up to {n} pruned copies (the latency knapsack's choices) against the dense "
                      "model end to end, to calibrate this model's predictions", highlight=False)

    def step(i: int, total: int, pred: float, measured: float) -> None:
        if console is not None:
            console.print(f"  copy {i + 1}/{total}: predicted {pred:.3f} of dense, measured {measured:.3f}",
                          highlight=False)

    cal = measure_calibration(graph, profile, input_shape, measure, n, round_to, step)
    save_calibration(Path(path), dense, input_shape, key, cal)
    return cal


def timed_at_aim(calibration: SubnetCalibration, aim: float, budget: float, window: VerifyOptions) -> bool:
    """Whether a copy predicted within NEAR of `aim` was timed inside the window around `budget`."""
    return any(abs(p - aim) <= NEAR and window.low * budget <= m <= window.high * budget
               for p, m in calibration.points)


def refine_calibration(
    path: str | Path,
    profile: Profile,
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    key: str,
    calibration: SubnetCalibration,
    budget: float,
    round_to: int = 8,
    console: Console | None = None,
    model_name: str = "model",
    tries: int = REFINE_TRIES,
) -> tuple[SubnetCalibration, float]:
    """Time the knapsack's choice at the calibrated aim for `budget` (a measured ratio of dense) and
    correct the aim until one measures within [0.94, 1.03] x budget (at most `tries` copies).

    Returns the calibration with every timed copy added (kept in the profile at `path`) and the
    predicted ratio to select at: the copy that measured closest to the budget inside the window,
    else the refined calibration's own aim.
    """
    from prunekit.latency.profiler import save_calibration
    from prunekit.latency.subnets import predicted_target
    from prunekit.select.verify import runtime_measure

    if f"{budget:g}" in calibration.aims:  # refined once for this budget: the same command aims the same
        return calibration, calibration.aims[f"{budget:g}"]
    window = VerifyOptions(max_tries=max(1, tries))
    aim = predicted_target(calibration, budget)
    if not 0.0 < budget < 1.0 or timed_at_aim(calibration, aim, budget, window):
        return calibration, aim
    dense = copy.deepcopy(model).cpu().eval()
    graph = PruningGraph(copy.deepcopy(dense), torch.zeros(1, *input_shape[1:]), model_name)
    scores = graph.importance("magnitude")
    dense_ms = predict_current(graph, profile, input_shape).total_ms
    measure = runtime_measure(profile, input_shape, dense)

    def select_at(target_ms: float) -> tuple[Keep, dict[str, float]]:
        sel = select_for_latency(graph, scores, profile, input_shape, target_ms, round_to=round_to,
                                 floor_at_minimum=True)
        return sel.keep, {"predicted_ms": predict_for_keep(graph, sel.keep, profile, input_shape)}

    def timed(keep: Keep) -> float:
        ratio = float(measure(graph, keep))
        if console is not None:
            pred = predict_for_keep(graph, keep, profile, input_shape) / dense_ms
            console.print(f"  at the aim for {budget}: predicted {pred:.3f} of dense, measured {ratio:.3f}",
                          highlight=False)
        return ratio

    result = verify_selection(select_at, timed, aim * dense_ms, dense_ms, budget, window)
    new = [(t["predicted_ratio"], t["measured_ratio"]) for t in result.tries]
    points = sorted([*calibration.points, *new])
    if any(t["within_tolerance"] for t in result.tries):  # verify_selection kept the closest of those
        aim = float(result.info["predicted_ms"]) / dense_ms
    else:
        aim = predicted_target(calibration.model_copy(update={"points": points}), budget)
    refined = calibration.model_copy(update={"points": points, "aims": {**calibration.aims, f"{budget:g}": round(aim, 5)}})
    save_calibration(Path(path), dense, input_shape, key, refined)
    return refined, aim
