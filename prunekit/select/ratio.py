"""Ratio rules: how many channels each group keeps for a channel or MACs ratio.

- `select_ratio`: every group keeps the same fraction of its original width (rounded to
  `round_to`), filled with its highest-scoring channels;
- `select_global_ratio`: the highest-scoring channels of the whole model, `keep_fraction` of all
  channels, so groups whose channels score low lose more (AdaSAP_P ranks neurons globally);
  every group keeps at least one channel (`round_to` where the group is wider than that);
- `channel_ratio_for_macs`: the uniform channel ratio whose pruned model has a given fraction of
  the dense MACs (bisection on trial copies).

Global ranking compares scores across groups, so it needs an importance on one scale for the
whole model (prunekit.importance gives that).
"""

from __future__ import annotations

import copy

import torch

from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph, count_macs_params, kept_width, select_by_ratio


def _check_fraction(keep_fraction: float) -> None:
    if not 0.0 < keep_fraction <= 1.0:
        raise PrunekitError(f"kept fraction must be in (0, 1], got {keep_fraction}")


def _top(s: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(s.float(), k).indices.sort().values


def select_ratio(
    scores: dict[str, torch.Tensor], keep_fraction: float, original_widths: dict[str, int], round_to: int = 8
) -> dict[str, torch.Tensor]:
    """Per-group rule: each group keeps `keep_fraction` of its original width (never more than it
    has now), its highest-scoring channels."""
    _check_fraction(keep_fraction)
    keep: dict[str, torch.Tensor] = {}
    for name, s in scores.items():
        k = min(kept_width(original_widths[name], keep_fraction, round_to), len(s))
        keep[name] = _top(s, k)
    return keep


def select_global_ratio(
    scores: dict[str, torch.Tensor], keep_fraction: float, original_widths: dict[str, int], round_to: int = 8
) -> dict[str, torch.Tensor]:
    """Global rule: keep the `keep_fraction` x (all original channels) highest scores of the model.

    Each group's share of the global top set is rounded to a multiple of `round_to` (where the
    group is wider than `round_to`) and is at least one channel, so the total can differ from the
    exact count by the rounding. Ties are broken by group order then index, deterministically.
    """
    _check_fraction(keep_fraction)
    names = list(scores)
    if not names:
        return {}
    total = sum(original_widths[n] for n in names)
    budget = min(int(round(keep_fraction * total)), sum(len(scores[n]) for n in names))
    flat = torch.cat([scores[n].detach().float().cpu().reshape(-1) for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i, dtype=torch.long) for i, n in enumerate(names)])
    order = torch.sort(flat, descending=True, stable=True).indices[:budget]
    counts = torch.bincount(owner[order], minlength=len(names)).tolist()
    keep: dict[str, torch.Tensor] = {}
    for i, name in enumerate(names):
        width = len(scores[name])
        k = kept_width(width, counts[i] / width, round_to) if width else 0
        keep[name] = _top(scores[name], max(1, min(k, width)))
    return keep


def channel_ratio_for_macs(graph: PruningGraph, scores: dict[str, torch.Tensor], macs_fraction: float,
                           round_to: int) -> float:
    """Uniform channel ratio (bisection) whose pruned model has <= macs_fraction of the MACs."""
    dense_macs, _ = count_macs_params(graph.model, graph.example_input)

    def macs_at(r: float) -> float:
        trial = copy.deepcopy(graph.model).cpu()
        g = PruningGraph(trial, graph.example_input, graph.model_name)
        g.prune(select_by_ratio(scores, r, round_to=round_to))
        return count_macs_params(trial, graph.example_input)[0] / dense_macs

    lo, hi = 0.0, 0.99
    for _ in range(12):
        mid = (lo + hi) / 2
        if macs_at(mid) <= macs_fraction:
            hi = mid
        else:
            lo = mid
    return hi
