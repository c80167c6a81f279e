"""What a selection must reach (`Goal`), and the one entry point that turns scores into keep-sets.

`methods/` decides *what* to score and *when* to prune; this package decides *how many* channels
each group keeps:

    ratio goal, per-group rank   every group keeps the same fraction of its channels (ratio.py)
    ratio goal, global rank      the top fraction of all channels of the model (ratio.py)
    ratio goal, of MACs          the uniform channel ratio whose model has the asked MACs (ratio.py)
    latency goal                 HALP's knapsack over the target's latency table (latency.py)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph
from prunekit.select.ratio import channel_ratio_for_macs, select_global_ratio, select_ratio

RANKS = ("per-group", "global")


@dataclass
class Goal:
    """What the selection must reach: a ratio of channels / MACs, or a latency on a profile.

    `rank` applies to channel-ratio goals: "per-group" removes the same fraction from every
    group, "global" ranks all channels of the model together (AdaSAP_P, Algorithm 2).
    """

    kind: str  # "ratio" | "latency"
    ratio: float = 0.5
    ratio_of: str = "channels"
    round_to: int = 8
    profile: Any = None
    input_shape: tuple[int, int, int, int] = (1, 3, 32, 32)
    target_ms: float | None = None
    dense_ms: float | None = None
    rank: str = "per-group"
    # Measured in the loop (compress --verify): (graph, keep) -> measured pruned/dense ratio,
    # the measured ratio asked for, and the tolerance / tries (prunekit.select.verify).
    measure: Callable[[PruningGraph, dict[str, torch.Tensor]], float] | None = None
    budget: float | None = None
    verify: Any = None
    # The profile's end-to-end calibration of this model (latency.subnets), when the target was aimed through it.
    calibration: Any = None

    def __post_init__(self) -> None:
        if self.kind not in ("ratio", "latency"):
            raise PrunekitError(f"unknown goal kind {self.kind!r}", "use 'ratio' or 'latency'")
        if self.rank not in RANKS:
            raise PrunekitError(f"unknown channel ranking {self.rank!r}", f"use one of {', '.join(RANKS)}")
        if self.kind == "latency" and (self.profile is None or self.target_ms is None):
            raise PrunekitError("a latency goal needs a profile and a target latency")
        if self.measure is not None and (self.kind != "latency" or self.budget is None or self.dense_ms is None):
            raise PrunekitError("measuring in the loop needs a latency budget (a ratio of the dense model)")

    @property
    def start_point(self) -> float:
        """Where a schedule toward this goal starts: the dense latency, or keeping everything."""
        if self.kind == "latency":
            if self.dense_ms is None:
                raise PrunekitError("a scheduled latency goal needs the dense model's latency")
            return float(self.dense_ms)
        return 1.0


def select(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    goal: Goal,
    point: float | None = None,
    original_widths: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Keep-set (sorted channel indices per group) for `goal`, or for an intermediate `point` on
    the way to it: a latency in ms for latency goals, a kept fraction of the original widths for
    ratio goals. Returns (keep, info for the method's log)."""
    if goal.kind == "latency":
        from prunekit.select.latency import select_for_latency

        target = float(goal.target_ms if point is None else point)  # type: ignore[arg-type]

        final = point is None or abs(target - float(goal.target_ms)) <= 1e-9 * max(1.0, target)  # type: ignore[arg-type]

        def select_at(t: float) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            # A schedule's waypoints are chosen on the cheap predictor; the goal itself is checked exactly.
            sel = select_for_latency(graph, scores, goal.profile, goal.input_shape, t, round_to=goal.round_to,
                                     max_exact=4 if final else 0,
                                     floor_at_minimum=final and goal.measure is not None)
            return sel.keep, {"target_ms": round(t, 5), "predicted_ms": round(sel.predicted_ms, 5),
                              "exact_predictions": sel.exact_predictions}

        if goal.measure is None or not final:
            return select_at(target)
        # Measured in the loop: the last selection is timed, and corrected until it measures right.
        from prunekit.select.verify import verify_selection

        out = verify_selection(select_at, lambda keep: goal.measure(graph, keep), target,  # type: ignore[misc]
                               float(goal.dense_ms), float(goal.budget), goal.verify)  # type: ignore[arg-type]
        return out.keep, {**out.info, "verify": out.tries, "verify_met": out.met}
    keep_frac = final_point(graph, scores, goal) if point is None else point
    widths0 = original_widths or graph.widths()
    if goal.rank == "global" and goal.ratio_of == "channels":
        keep = select_global_ratio(scores, keep_frac, widths0, goal.round_to)
    else:
        keep = select_ratio(scores, keep_frac, widths0, goal.round_to)
    return keep, {"keep_fraction": round(keep_frac, 5)}


def final_point(graph: PruningGraph, scores: dict[str, torch.Tensor], goal: Goal) -> float:
    """The goal as a schedule end point: latency in ms, or the kept fraction of channels."""
    if goal.kind == "latency":
        return float(goal.target_ms)  # type: ignore[arg-type]
    if goal.ratio_of == "macs":
        return 1.0 - channel_ratio_for_macs(graph, scores, 1.0 - goal.ratio, goal.round_to)
    return 1.0 - goal.ratio
