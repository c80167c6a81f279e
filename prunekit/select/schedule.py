"""Pruning schedules: how much to keep after each of R pruning steps.

AdaSAP (following HALP) shrinks the kept amount exponentially: with m the starting amount, k the
final target and a = r / R, step r keeps ``k_r = exp(a log k + (1 - a) log m)``, i.e. a geometric
interpolation, so every step removes the same *fraction* of what is left. The amount can be a
channel count, a kept ratio or a latency budget.
"""

from __future__ import annotations

import math

from prunekit.errors import PrunekitError


def _check(start: float, final: float, steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrunekitError(f"a schedule needs an integer number of steps >= 1, got {steps!r}")
    for name, value in (("start", start), ("final", final)):
        if not math.isfinite(value) or value <= 0:
            raise PrunekitError(f"schedule {name} must be finite and > 0, got {value}")


def exponential_schedule(start: float, final: float, steps: int) -> list[float]:
    """``[k_1, ..., k_R]`` with ``k_r = exp(a log final + (1 - a) log start)``, ``a = r / steps``.

    Monotone from ``start`` (not included) to ``final`` (the last value, exactly).
    """
    _check(start, final, steps)
    log_m, log_k = math.log(start), math.log(final)
    values = [math.exp((r / steps) * log_k + (1 - r / steps) * log_m) for r in range(1, steps)]
    values.append(float(final))
    # exp/log round-off must not break monotonicity next to an exact endpoint
    if final <= start:
        values = [min(max(v, final), start) for v in values]
    else:
        values = [max(min(v, final), start) for v in values]
    return values
