"""`halp`: HALP (Shen et al., 2022), pruning to a latency budget measured on the target.

HALP's group Taylor importance (prunekit.importance "halp": |sum over the group's BatchNorms of
gamma * dL/dgamma + beta * dL/dbeta|, accumulated over the iterations of each pruning interval),
pruned in `prune_steps` steps on the exponential schedule from the dense latency to the goal,
each step a latency knapsack over the target's profile (prunekit.select.latency), with SGD
training in between on one continuous optimizer and LR schedule (methods/scheduled.py).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.methods.registry import Method, MethodResult, register_method
from prunekit.methods.scheduled import ScheduleOptions, run_schedule
from prunekit.pruning import PruningGraph
from prunekit.select import Goal


class HALPOptions(ScheduleOptions):
    """HALP's options: its pruning schedule (HALP's code prunes every 40 iterations for 30 steps)."""


@register_method
class HALP(Method):
    name = "halp"
    help = ("HALP: Taylor importance, pruned in steps on an exponential schedule with SGD in between, "
            "each step a latency knapsack on the profile (needs --target and a latency budget)")
    Options = HALPOptions
    needs_latency_goal = True

    def run(self, ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
        return run_schedule(ctx, model, goal, name=self.name, importance="halp")
