"""End-to-end calibration's arithmetic (prunekit.latency.subnets): the monotone fit and its inverse
against hand computation. The copies themselves: tests/select/test_calibrate.py."""

from __future__ import annotations

import pytest

from prunekit.latency.schema import SubnetCalibration
from prunekit.latency.subnets import calibrated_ratio, fit_curve, predicted_target


def _cal(points: list[tuple[float, float]]) -> SubnetCalibration:
    return SubnetCalibration(points=points, dense_predicted_ms=1.0)


def test_the_curve_interpolates_through_dense_and_scales_below_the_narrowest_copy():
    cal = _cal([(0.5, 0.25)])
    assert calibrated_ratio(cal, 1.0) == pytest.approx(1.0)
    assert calibrated_ratio(cal, 0.75) == pytest.approx(0.625)  # halfway from (0.5, 0.25) to (1, 1)
    assert calibrated_ratio(cal, 0.2) == pytest.approx(0.1)  # proportional below: 0.2 * 0.25 / 0.5
    assert calibrated_ratio(cal, 1.2) == pytest.approx(1.2)  # a slower-than-dense prediction is kept
    # the inverse: 0.5 measured is reached at 0.5 + (0.5 - 0.25) / 0.75 * 0.5 predicted
    assert predicted_target(cal, 0.5) == pytest.approx(0.5 + 0.25 / 0.75 * 0.5, abs=1e-6)
    assert predicted_target(cal, 0.1) == pytest.approx(0.2, abs=1e-6)


def test_noisy_copies_that_disagree_are_pooled_into_a_monotone_curve():
    curve = fit_curve([(0.4, 0.3), (0.6, 0.2)])  # the faster-measured wider copy: timing noise
    assert curve[0][1] == pytest.approx(0.25) and curve[1][1] == pytest.approx(0.25)
    assert curve[-1] == (1.0, 1.0)
    ys = [m for _, m in curve]
    assert ys == sorted(ys)


def test_the_inverse_of_a_convex_curve_matches_its_exact_inverse():
    cal = _cal([(p / 10, (p / 10) ** 2) for p in range(1, 10)])  # measured = predicted ** 2
    for budget in (0.2, 0.5, 0.7):
        assert predicted_target(cal, budget) == pytest.approx(budget ** 0.5, abs=0.02)
        assert calibrated_ratio(cal, predicted_target(cal, budget)) == pytest.approx(budget, abs=1e-6)
