"""Helpers several methods share: scoring on the run's device, frozen weights, tie-breaking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from prunekit.importance import get_importance
from prunekit.pruning import PruningGraph


def importance_scores(ctx: Any, graph: PruningGraph, kind: str, seed_offset: int = 0) -> dict[str, torch.Tensor]:
    """Importance `kind` (prunekit.importance) of every group of `graph`, computed on the run's
    device; data-driven kinds read training batches of a loader seeded with seed + seed_offset.
    The model ends on the CPU, where the pruning graph works."""
    s = ctx.settings
    importance = get_importance(kind)
    if getattr(ctx.data, "objective", None) is not None and hasattr(importance, "objective"):
        importance.objective = ctx.data.objective  # the data's own loss (a detector's)
    batches = ctx.data.loader("train", s.batch_size, seed=s.seed + seed_offset) if importance.needs_data else None
    graph.model.to(ctx.device)
    try:
        return importance(graph, batches)
    finally:
        graph.model.cpu()


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Weights get no gradient inside (mask / score searches train something else)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def learned_scores(learned: dict[str, torch.Tensor], magnitude: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Learned mask / score values per channel, with magnitude (scaled to 1e-6) only to break
    exact ties (many masks sit at exactly 0 or 1)."""
    out = {}
    for g, m in learned.items():
        mag = magnitude[g].float()
        out[g] = m.detach().float().cpu() + 1e-6 * mag / (mag.max() + 1e-12)
    return out
