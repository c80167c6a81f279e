"""`magnitude`: one shot, keep the channels with the largest weight magnitude (a quick baseline)."""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.methods.common import importance_scores
from prunekit.methods.registry import Method, MethodResult, register_method
from prunekit.pruning import PruningGraph
from prunekit.select import Goal, select


def one_shot(ctx: Any, model: nn.Module, goal: Goal, name: str, importance: str) -> tuple[PruningGraph, MethodResult]:
    """Score once with `importance`, select for `goal`, remove."""
    graph = PruningGraph(model.cpu(), ctx.example, ctx.settings.model)
    scores = importance_scores(ctx, graph, importance)
    keep, info = select(graph, scores, goal)
    graph.prune(keep)
    return graph, MethodResult(name, steps=[info])


@register_method
class Magnitude(Method):
    name = "magnitude"
    help = "one shot, keep the channels with the largest weight magnitude (a quick baseline)"

    def run(self, ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
        return one_shot(ctx, model, goal, self.name, "magnitude")
