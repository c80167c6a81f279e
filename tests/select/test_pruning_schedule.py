"""Pruning schedules hit their target and are monotone."""

from __future__ import annotations

import math

import pytest

from prunekit.errors import PrunekitError
from prunekit.select.schedule import exponential_schedule


@pytest.mark.parametrize(
    "start,final,steps", [(64, 16, 30), (1.0, 0.3, 7), (1.0, 0.5, 1), (10, 40, 5), (3, 3, 4)]
)
def test_exponential_hits_target_and_is_monotone(start, final, steps):
    values = exponential_schedule(start, final, steps)
    assert len(values) == steps and values[-1] == final
    pairs = list(zip([start, *values[:-1]], values, strict=True))
    if final <= start:
        assert all(b <= a for a, b in pairs)
    else:
        assert all(b >= a for a, b in pairs)


def test_exponential_matches_adasap_formula():
    m, k, R = 2048.0, 512.0, 30
    values = exponential_schedule(m, k, R)
    for r in (1, 7, 15, 29):
        a = r / R
        assert values[r - 1] == pytest.approx(math.exp(a * math.log(k) + (1 - a) * math.log(m)))
    # geometric: the same fraction is removed at every step
    ratios = [b / a for a, b in zip([m, *values[:-1]], values, strict=True)]
    assert max(ratios) == pytest.approx(min(ratios))


@pytest.mark.parametrize(
    "call",
    [
        lambda: exponential_schedule(1.0, 0.0, 3),
        lambda: exponential_schedule(-1.0, 0.5, 3),
        lambda: exponential_schedule(1.0, 0.5, 0),
        lambda: exponential_schedule(1.0, float("nan"), 3),
        lambda: exponential_schedule(1.0, 0.5, True),
    ],
)
def test_invalid_schedules_raise(call):
    with pytest.raises(PrunekitError):
        call()
