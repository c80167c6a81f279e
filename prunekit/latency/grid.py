"""Channel grids for latency tables, and the interpolation that keeps their staircase.

Runtimes run their fast kernels on blocks of channels and pad a layer up to the next block:
latency is a *staircase* in the channel count (ONNX Runtime's NCHWc CPU kernels: blocks of 16
floats with AVX-512, 8 with AVX2; TensorRT FP16 tensor-core tiles). Some widths cannot use
the fast kernels at all (ONNX Runtime 1.2x: an input channel count that is not a multiple of
4 falls back to the generic NCHW convolution), which gives a second, slower, smooth curve.
A profile states both quanta: `align_cin` / `align_cout` (widths that are not multiples take
the slow path; 1 = no slow path) and `pad` (the block the fast kernels pad to).

The grid (`make_grid`): every multiple of `step` up to `fine_limit`, then about `divisions`
multiples of `pad` up to the layer's width, plus the dense width; on an axis with a slow path,
also slow-path samples (`p - align/2`): one per `pad` block up to `fine_limit`, then at every
other coarse point. For a grouped conv every point moves to the multiples of the group count on
either side of it.

Interpolation (`axis_weights`, per axis, then bilinear): exact at grid points; a width below
the smallest grid point costs the smallest point of its class (never less); above the largest it is an error
(MissingSignatureError: measure the wider layer). Elsewhere only
grid points of the query's class (fast / slow path) are used. Fast class: if the neighbours
are at most one `pad` block apart, the query costs what the upper neighbour costs (the runtime
pads up to it: a step, not a ramp); across coarser gaps, linear. Slow class: linear (the
generic kernels' cost is smooth in the width).
"""

from __future__ import annotations

import math


def is_fast(c: int, align: int) -> bool:
    """Whether width `c` can use the runtime's fast (blocked) kernels."""
    return align <= 1 or c % align == 0


def make_grid(
    width: int,
    step: int = 8,
    pad: int = 16,
    align: int = 1,
    fine_limit: int = 64,
    divisions: int = 16,
    multiple_of: int = 1,
) -> list[int]:
    """Grid widths for one axis of a layer whose dense width is `width`.

    `multiple_of` keeps grouped-conv widths divisible by the group count.
    """
    if width <= 0:
        raise ValueError("width must be positive")
    step, pad = max(1, step), max(1, pad)
    pts: set[int] = {width}
    pts.update(range(step, min(width, fine_limit) + 1, step))
    coarse_pts: list[int] = []
    if width > fine_limit:
        coarse = max(step, pad, int(math.ceil(width / max(1, divisions) / pad) * pad))
        c = int(math.ceil(fine_limit / pad) * pad) + coarse
        while c < width:
            coarse_pts.append(c)
            c += coarse
        pts.update(coarse_pts)
    if align > 1:
        # one slow-path sample per pad block up to fine_limit, then at every other coarse point:
        # the slow (generic-kernel) curve is smooth, a few samples suffice for linear interpolation
        half = max(1, align // 2)
        blocks = {p for p in pts if p % pad == 0 and p <= fine_limit}
        blocks |= set(coarse_pts[1::2]) | {int(math.ceil(width / pad) * pad)}
        for p in blocks:
            q = p - half
            if 0 < q <= width and not is_fast(q, align):
                pts.add(q)
    if multiple_of > 1:
        # a grouped conv's widths are multiples of its group count: move every point to the multiples
        # on either side of it (dropping the points that are not multiples left g6 with 30 and 48 only)
        m = multiple_of
        near = {q for p in pts for q in (p // m * m, -(-p // m) * m)}
        pts = {q for q in near if m <= q <= width} | {width}
    return sorted(pts)


def axis_weights(grid: list[int], c: int, align: int = 1, pad: int = 16) -> list[tuple[int, float]]:
    """(index, weight) pairs that interpolate width `c` on a sorted `grid` (see module doc).

    Raises ValueError when `c` is outside the measured range.
    """
    if not grid:
        raise ValueError("empty grid")
    if c in grid:
        return [(grid.index(c), 1.0)]
    if c > grid[-1] or c < 1:
        raise ValueError(f"width {c} is outside the measured range {grid[0]}..{grid[-1]}")
    fast = is_fast(c, align)
    if c < grid[0]:  # narrower than anything measured: the runtime pads it up at least that far,
        # to the smallest point of its own class (a slow-path sample must not price a fast width)
        return [(next((i for i, g in enumerate(grid) if is_fast(g, align) == fast), 0), 1.0)]
    same = [i for i, g in enumerate(grid) if is_fast(g, align) == fast]
    lo = max((i for i in same if grid[i] < c), default=None)
    hi = min((i for i in same if grid[i] > c), default=None)
    if hi is None:  # no point of the same class above: use any neighbours
        lo = max((i for i, g in enumerate(grid) if g < c), default=None)
        hi = min(i for i, g in enumerate(grid) if g > c)
    if lo is None or (fast and grid[hi] - grid[lo] <= pad):
        return [(hi, 1.0)]
    t = (c - grid[lo]) / (grid[hi] - grid[lo])
    return [(lo, 1.0 - t), (hi, t)]
