"""Selection rules: grouped (latency) knapsack and pruning schedules."""

from prunekit.select.knapsack import (
    brute_force_grouped_knapsack,
    solve_grouped_knapsack,
    total_cost,
    total_value,
)
from prunekit.select.schedule import exponential_schedule, linear_schedule, make_schedule

__all__ = [
    "brute_force_grouped_knapsack",
    "exponential_schedule",
    "linear_schedule",
    "make_schedule",
    "solve_grouped_knapsack",
    "total_cost",
    "total_value",
]
