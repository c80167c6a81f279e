"""Selection: how many channels each group keeps (goal, ratio rules, latency knapsack, schedules).

`methods/` decides what to score and when; `select(graph, scores, goal)` decides how many.
"""

from prunekit.select.goal import RANKS, Goal, final_point, select
from prunekit.select.knapsack import (
    brute_force_grouped_knapsack,
    solve_grouped_knapsack,
    total_cost,
    total_value,
)
from prunekit.select.ratio import channel_ratio_for_macs, select_global_ratio, select_ratio
from prunekit.select.schedule import exponential_schedule

__all__ = [
    "RANKS",
    "Goal",
    "brute_force_grouped_knapsack",
    "channel_ratio_for_macs",
    "exponential_schedule",
    "final_point",
    "select",
    "select_global_ratio",
    "select_ratio",
    "solve_grouped_knapsack",
    "total_cost",
    "total_value",
]
