"""Grouped (multiple-choice) knapsack: pick one option per group, maximise value, cost <= budget.

HALP's selection step: each channel group offers one option per kept width k, with value = the
summed importance of its top-k channels and cost = the latency of the layers touching it at
that width. ``solve_grouped_knapsack`` solves it by dynamic programming over a discretised cost
axis.

Discretisation and its guarantee. Each group's cheapest option is taken as its baseline, so the
DP only discretises the *extra* cost ``c - min_cost(group)`` against the slack
``budget - sum(min_cost)``; the slack is cut into ``resolution`` units and every extra cost is
rounded UP to whole units. Hence:

* the returned choice never exceeds the budget (rounded costs are upper bounds of the true ones;
  up to the float rounding of summing the costs);
* the all-cheapest choice is always representable, so the solver is feasible exactly when the
  true problem is;
* its value is optimal among choices whose rounded cost fits; in particular it is at least the
  true optimum for the budget reduced by ``n_groups * slack / resolution`` (each group loses
  less than one unit to rounding).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from prunekit.errors import PrunekitError

Option = tuple[float, float]  # (cost, value)

DEFAULT_RESOLUTION = 2000


def _validate(groups: Sequence[Sequence[Option]], budget: float) -> None:
    if not math.isfinite(budget):
        raise PrunekitError(f"knapsack budget must be finite, got {budget}")
    if len(groups) == 0:
        raise PrunekitError("knapsack needs at least one group")
    for gi, group in enumerate(groups):
        if len(group) == 0:
            raise PrunekitError(f"knapsack group {gi} has no options", "every group needs at least one width")
        for cost, value in group:
            if not (math.isfinite(cost) and math.isfinite(value)) or cost < 0:
                raise PrunekitError(
                    f"knapsack group {gi} has an invalid option (cost={cost}, value={value})",
                    "costs must be finite and >= 0, values finite",
                )


def _infeasible(min_total: float, budget: float) -> PrunekitError:
    return PrunekitError(
        f"the budget {budget:.6g} cannot be met: the minimum reachable cost is {min_total:.6g}",
        f"raise the budget to at least {min_total:.6g} or allow narrower widths",
    )


def total_cost(groups: Sequence[Sequence[Option]], choice: Sequence[int]) -> float:
    """Sum of the chosen options' costs."""
    return math.fsum(groups[g][j][0] for g, j in enumerate(choice))


def total_value(groups: Sequence[Sequence[Option]], choice: Sequence[int]) -> float:
    """Sum of the chosen options' values."""
    return math.fsum(groups[g][j][1] for g, j in enumerate(choice))


def solve_grouped_knapsack(
    groups: Sequence[Sequence[Option]], budget: float, resolution: int = DEFAULT_RESOLUTION
) -> list[int]:
    """Choose exactly one option index per group maximising total value with total cost <= budget.

    ``groups[g][j] = (cost, value)``. Exact DP over ``resolution`` units of the slack above the
    all-cheapest choice (see the module docstring for the guarantee). Ties go to the lower
    option index. Raises ``PrunekitError`` (with the minimum reachable cost) when even the
    cheapest option of every group exceeds the budget. O(groups x options x resolution), numpy.
    """
    _validate(groups, budget)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise PrunekitError(f"knapsack resolution must be an integer >= 1, got {resolution!r}")
    costs = [np.asarray([c for c, _ in g], dtype=np.float64) for g in groups]
    values = [np.asarray([v for _, v in g], dtype=np.float64) for g in groups]
    base = [float(c.min()) for c in costs]
    min_total = math.fsum(base)
    if min_total > budget:
        raise _infeasible(min_total, budget)
    slack = budget - min_total
    extras = [c - b for c, b in zip(costs, base, strict=True)]

    if slack <= 0:  # only zero-extra options fit
        units = [np.where(e > 0, resolution + 1, 0) for e in extras]
    else:
        unit = slack / resolution
        units = [np.ceil(e / unit) for e in extras]
        # ceil of a float quotient can land one unit low when e/unit rounds down onto an integer
        units = [np.where(u * unit < e, u + 1, u) for u, e in zip(units, extras, strict=True)]
    units = [np.minimum(u, resolution + 1).astype(np.int64) for u in units]

    width = resolution + 1
    neg = -np.inf
    dp = np.zeros(width)  # dp[b] = best value with at most b units used
    back = np.empty((len(groups), width), dtype=np.int32)
    axis = np.arange(width)
    for g, (u, v) in enumerate(zip(units, values, strict=True)):
        src = axis[None, :] - u[:, None]  # (options, width)
        ok = src >= 0
        cand = np.where(ok, dp[np.clip(src, 0, None)] + v[:, None], neg)
        best = np.argmax(cand, axis=0)
        back[g] = best
        dp = cand[best, axis]

    if not np.isfinite(dp[resolution]):  # cannot happen (all-cheapest fits); defensive
        raise _infeasible(min_total, budget)
    choice = [0] * len(groups)
    b = resolution
    for g in range(len(groups) - 1, -1, -1):
        j = int(back[g, b])
        choice[g] = j
        b -= int(units[g][j])
    return choice


def brute_force_grouped_knapsack(
    groups: Sequence[Sequence[Option]], budget: float, max_combinations: int = 2_000_000
) -> list[int]:
    """Exhaustive reference solver (for tests): the exact optimum over true, undiscretised costs."""
    _validate(groups, budget)
    n = math.prod(len(g) for g in groups)
    if n > max_combinations:
        raise PrunekitError(f"brute force over {n} combinations is too large (max {max_combinations})")
    best: list[int] | None = None
    best_value = -math.inf
    for choice in itertools.product(*(range(len(g)) for g in groups)):
        if total_cost(groups, choice) <= budget:
            value = total_value(groups, choice)
            if value > best_value:
                best, best_value = list(choice), value
    if best is None:
        raise _infeasible(math.fsum(min(c for c, _ in g) for g in groups), budget)
    return best
