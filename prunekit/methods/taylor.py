"""`taylor`: one shot, first-order Taylor importance on training batches (a data-aware baseline)."""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.methods.magnitude import one_shot
from prunekit.methods.registry import Method, MethodResult, register_method
from prunekit.pruning import PruningGraph
from prunekit.select import Goal


@register_method
class Taylor(Method):
    name = "taylor"
    help = "one shot, first-order Taylor importance |w * dL/dw| on training batches"

    def run(self, ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
        return one_shot(ctx, model, goal, self.name, "taylor")
