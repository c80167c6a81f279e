"""Grouped knapsack: equals brute force, respects the budget, reports infeasibility, is fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from prunekit.errors import PrunekitError
from prunekit.select.knapsack import (
    brute_force_grouped_knapsack,
    solve_grouped_knapsack,
    total_cost,
    total_value,
)


def _random_groups(rng, integer_costs: bool):
    groups = []
    for _ in range(rng.integers(1, 5)):
        n = int(rng.integers(1, 6))
        costs = rng.integers(0, 8, n).astype(float) if integer_costs else rng.uniform(0, 5, n)
        values = rng.normal(0, 3, n)
        groups.append(list(zip(costs.tolist(), values.tolist(), strict=True)))
    return groups


def test_equals_brute_force_on_grid_costs():
    """Integer costs with one DP unit = 1: discretisation is exact, so the optimum must match."""
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 250:
        groups = _random_groups(rng, integer_costs=True)
        min_total = sum(min(c for c, _ in g) for g in groups)
        max_total = sum(max(c for c, _ in g) for g in groups)
        budget = float(rng.integers(int(min_total), int(max_total) + 1))
        slack = int(budget - min_total)
        choice = solve_grouped_knapsack(groups, budget, resolution=max(slack, 1))
        best = brute_force_grouped_knapsack(groups, budget)
        assert len(choice) == len(groups)
        assert total_cost(groups, choice) <= budget
        assert total_value(groups, choice) == pytest.approx(total_value(groups, best), abs=1e-9)
        checked += 1


def test_float_costs_within_discretisation_guarantee():
    """Feasible always; value between the true optimum at budget - groups*unit and at budget."""
    rng = np.random.default_rng(1)
    for _ in range(250):
        groups = _random_groups(rng, integer_costs=False)
        min_total = sum(min(c for c, _ in g) for g in groups)
        max_total = sum(max(c for c, _ in g) for g in groups)
        budget = float(rng.uniform(min_total, max_total + 0.5))
        resolution = int(rng.integers(1, 60))
        choice = solve_grouped_knapsack(groups, budget, resolution=resolution)
        value = total_value(groups, choice)
        assert total_cost(groups, choice) <= budget
        assert value <= total_value(groups, brute_force_grouped_knapsack(groups, budget)) + 1e-9
        reduced = budget - len(groups) * (budget - min_total) / resolution
        if reduced >= min_total:
            lower = total_value(groups, brute_force_grouped_knapsack(groups, reduced))
            assert value >= lower - 1e-9


def test_budget_exactly_at_minimum_cost():
    groups = [[(1.0, 5.0), (0.3, 1.0)], [(0.2, 0.0), (0.9, 9.0)]]
    assert solve_grouped_knapsack(groups, 0.5) == [1, 0]
    assert solve_grouped_knapsack([[(0.0, 1.0), (0.0, 2.0)]], 0.0) == [1]


def test_prefers_value_over_cost_when_it_fits():
    groups = [[(1.0, 1.0), (2.0, 3.0), (3.0, 3.5)], [(1.0, 2.0), (2.0, 2.1)]]
    assert solve_grouped_knapsack(groups, 4.0, resolution=100) == [2, 0]
    assert solve_grouped_knapsack(groups, 3.9, resolution=100) == [1, 0]


def test_infeasible_reports_minimum_reachable_cost():
    groups = [[(2.0, 1.0), (3.0, 2.0)], [(1.5, 0.0)]]
    with pytest.raises(PrunekitError, match="minimum reachable cost is 3.5"):
        solve_grouped_knapsack(groups, 3.0)
    with pytest.raises(PrunekitError, match="3.5"):
        brute_force_grouped_knapsack(groups, 3.0)


@pytest.mark.parametrize(
    "groups,budget,resolution",
    [
        ([], 1.0, 10),
        ([[]], 1.0, 10),
        ([[(-1.0, 1.0)]], 1.0, 10),
        ([[(1.0, float("nan"))]], 1.0, 10),
        ([[(1.0, 1.0)]], float("inf"), 10),
        ([[(1.0, 1.0)]], 2.0, 0),
    ],
)
def test_invalid_input_raises(groups, budget, resolution):
    with pytest.raises(PrunekitError):
        solve_grouped_knapsack(groups, budget, resolution=resolution)


def test_halp_sized_problem_is_fast():
    """60 groups x 64 widths x 2000 units (a ResNet-50-sized HALP step) in well under a second."""
    rng = np.random.default_rng(2)
    groups = []
    for _ in range(60):
        costs = np.sort(rng.uniform(0.01, 1.0, 64))
        values = np.cumsum(np.sort(rng.uniform(0, 1, 64))[::-1])
        groups.append(list(zip(costs.tolist(), values.tolist(), strict=True)))
    budget = 0.5 * sum(g[-1][0] for g in groups)
    start = time.perf_counter()
    choice = solve_grouped_knapsack(groups, budget, resolution=2000)
    elapsed = time.perf_counter() - start
    assert total_cost(groups, choice) <= budget
    assert elapsed < 1.0, f"knapsack took {elapsed:.3f} s"
