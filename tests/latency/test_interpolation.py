"""Table interpolation: exact on the grid, staircase kept, slow-path class respected, no silent zero."""

from __future__ import annotations

import pytest
from latency_helpers import provenance

from prunekit.latency.grid import axis_weights, make_grid
from prunekit.latency.profile import MissingSignatureError, Profile, TableEntry

SIG = "conv:k3x3:s1x1:p1x1:28x28"


def staircase_profile() -> Profile:
    """cout staircase with 16-channel steps measured every 8; cin 30 and 46 are slow-path samples."""
    cin = [16, 30, 32, 46, 48, 64]
    cout = [8, 16, 24, 32, 40, 48, 56, 64]
    step = {8: 1.0, 16: 1.0, 24: 2.0, 32: 2.0, 40: 3.0, 48: 3.0, 56: 4.0, 64: 4.0}
    slow = {30: 1.5, 46: 1.5}
    ms = [[step[o] * (c / 16) * slow.get(c, 1.0) for o in cout] for c in cin]
    return Profile(
        name="stairs",
        runtime="onnxruntime",
        provenance=provenance(),
        align_cin=4,
        align_cout=1,
        pad=16,
        table={SIG: TableEntry(cin=cin, cout=cout, ms=ms)},
    )


def test_exact_at_grid_points():
    p = staircase_profile()
    e = p.table[SIG]
    for i, c in enumerate(e.cin):
        for j, o in enumerate(e.cout):
            assert p.layer_latency(SIG, c, o) == pytest.approx(e.ms[i][j])


def test_staircase_is_not_smoothed():
    p = staircase_profile()
    # 17..32 output channels all cost the 32-channel step; 33 jumps to the next step
    assert p.layer_latency(SIG, 16, 17) == pytest.approx(p.layer_latency(SIG, 16, 32))
    assert p.layer_latency(SIG, 16, 31) == pytest.approx(p.layer_latency(SIG, 16, 32))
    assert p.layer_latency(SIG, 16, 33) == pytest.approx(p.layer_latency(SIG, 16, 48))
    assert p.layer_latency(SIG, 16, 33) > p.layer_latency(SIG, 16, 32)


def test_slow_path_widths_use_slow_samples_only():
    p = staircase_profile()
    # cin 34 is not a multiple of 4: interpolate between the slow samples 30 and 46, never the fast 32/48
    fast32 = p.layer_latency(SIG, 32, 64)
    slow = p.layer_latency(SIG, 34, 64)
    lo, hi = p.layer_latency(SIG, 30, 64), p.layer_latency(SIG, 46, 64)
    assert lo < slow < hi and slow > fast32
    # cin 36 is a multiple of 4: fast class, the runtime pads it to the next block (48)
    assert p.layer_latency(SIG, 36, 64) == pytest.approx(p.layer_latency(SIG, 48, 64))


def test_linear_between_coarse_points():
    w = axis_weights([64, 128, 256], 192, align=1, pad=16)
    assert w == [(1, 0.5), (2, 0.5)]


def test_outside_range_and_missing_signature_raise():
    p = staircase_profile()
    with pytest.raises(MissingSignatureError, match="outside the measured range"):
        p.layer_latency(SIG, 16, 80)
    with pytest.raises(MissingSignatureError) as exc:
        p.layer_latency("conv:k5x5:s1x1:p2x2:7x7", 8, 8)
    assert "conv:k5x5:s1x1:p2x2:7x7" in exc.value.message
    assert "prunekit profile --target stairs --runtime onnxruntime --model" in exc.value.hint


def test_grid_widths_and_make_grid():
    p = staircase_profile()
    assert p.grid_widths(SIG, "cout") == [8, 16, 24, 32, 40, 48, 56, 64]
    assert p.grid_widths(SIG, "cin") == [16, 30, 32, 46, 48, 64]
    g = make_grid(512, step=8, pad=16, align=4, fine_limit=64, divisions=16)
    assert g[:8] == [8, 14, 16, 24, 30, 32, 40, 46] and g[-1] == 512
    assert all(c % 16 == 0 or c % 4 != 0 or c <= 64 for c in g)
    assert len(g) < 40
    assert any(c % 4 != 0 for c in g if c > 64)  # slow-path samples also at large widths


def test_below_grid_costs_the_smallest_point():
    p = staircase_profile()
    assert p.layer_latency(SIG, 16, 3) == pytest.approx(p.layer_latency(SIG, 16, 8))


def test_below_grid_uses_its_own_class():
    # lazy grid (step 16) with slow-path samples 14 / 30: a fast width 4 pads up to 16, not to slow 14
    grid = [14, 16, 30, 32]
    assert axis_weights(grid, 4, align=4, pad=16) == [(1, 1.0)]
    assert axis_weights(grid, 6, align=4, pad=16) == [(0, 1.0)]  # 6 is slow-path itself


def test_grouped_grid_keeps_its_density():
    # regnet_y_400mf: 48 channels in 6 groups on the lazy grid; multiples of 6 only, on both sides
    # of every ungrouped point (filtering left [30, 48]: any pruned width cost the dense layer)
    g = make_grid(48, step=16, pad=16, align=4, fine_limit=32, divisions=8, multiple_of=6)
    assert all(c % 6 == 0 for c in g) and g[-1] == 48
    assert g == [12, 18, 30, 36, 42, 48]
    w = dict(axis_weights(g, 36, align=4, pad=16))
    assert w == {g.index(36): 1.0}
    w24 = axis_weights(g, 24, align=4, pad=16)  # fast, between fast 12 and 36: linear, below dense
    assert [g[i] for i, _ in w24] == [12, 36]
    assert make_grid(64, step=8, pad=16, multiple_of=1) == make_grid(64, step=8, pad=16)
