"""Torch-Pruning r8 matched to a measured latency: what the equal-latency benchmarks compare against.

`tp_uniform` is Torch-Pruning's own uniform magnitude pruning (L2 group importance, the same
channel fraction removed everywhere, widths on multiples of 8, the output layers kept);
`match_latency` bisects that fraction until the measured latency ratio is within a tolerance of
the one asked for, and returns the closest candidate seen (at 32 px a cache cliff can make an
exact match impossible; the caller reports what was measured).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from prunekit.pruning import find_classifier


def tp_uniform(dense: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    """A copy of `dense` with `ratio` of every group's channels removed by Torch-Pruning (round_to=8)."""
    model = copy.deepcopy(dense).eval()
    # a Faster R-CNN traces its static stand-in: the real forward hides the RPN head from the graph
    traced = {"forward_fn": lambda m, x: m.trace_forward(x)} if hasattr(model, "trace_forward") else {}
    tp.pruner.MagnitudePruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                              pruning_ratio=ratio, ignored_layers=find_classifier(model, example),
                              round_to=8, **traced).step()
    return model


def match_latency(
    dense: nn.Module,
    example: torch.Tensor,
    target_ratio: float,
    measure: Callable[[nn.Module], float],
    start: float,
    steps: int = 8,
    tol: float = 0.02,
) -> tuple[float, float, nn.Module]:
    """(ratio, measured latency ratio, model) of the uniform pruning closest to `target_ratio`,
    bisecting the removed fraction from `start` for at most `steps` measurements."""
    lo, hi, r = 0.0, 0.95, start
    best: tuple[float, float, nn.Module] | None = None
    for _ in range(steps):
        cand = tp_uniform(dense, example, r)
        m = measure(cand)
        if best is None or abs(m / target_ratio - 1) < abs(best[1] / target_ratio - 1):
            best = (r, m, cand)
        if abs(m / target_ratio - 1) <= tol:
            break
        lo, hi = (r, hi) if m > target_ratio else (lo, r)
        r = (lo + hi) / 2
    assert best is not None
    return best
