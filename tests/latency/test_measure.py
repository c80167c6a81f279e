"""The timing schedules, on scripted timers: warm blocks see a warm model, interleaving a cold one."""

from __future__ import annotations

import pytest

from prunekit.errors import PrunekitError
from prunekit.latency.measure import LatencyStats, Timer, TimingOptions, resolve_clock, time_one, time_pair


class CacheModel:
    """Two models sharing one cache: a run right after a run of the OTHER model pays `cold_ms` more
    (its weights stream from memory again), the same for both, as at sub-millisecond latencies."""

    def __init__(self, dense_ms: float, pruned_ms: float, cold_ms: float = 0.3) -> None:
        self.ms = {"dense": dense_ms, "pruned": pruned_ms}
        self.cold = cold_ms
        self.last: str | None = None
        self.log: list[tuple[str, int]] = []  # (model, runs) per call, in order

    def timer(self, name: str) -> Timer:
        def timed(n: int) -> list[float]:
            self.log.append((name, n))
            out = []
            for _ in range(n):
                out.append(self.ms[name] + (self.cold if self.last not in (None, name) else 0.0))
                self.last = name
            return out

        return Timer(timed, "wall")


def test_blocks_measure_the_warm_ratio_interleaving_the_cold_one():
    cache = CacheModel(dense_ms=1.0, pruned_ms=0.4)
    warm = time_pair(cache.timer("dense"), cache.timer("pruned"), TimingOptions(warmup=3, repeats=60, block=20))
    assert warm.mode == "blocks" and warm.block == 20
    assert warm.dense.median_ms == pytest.approx(1.0) and warm.pruned.median_ms == pytest.approx(0.4)
    assert warm.ratio == pytest.approx(0.4)
    assert warm.spread()["pairs"] == 3 and warm.spread()["min"] == pytest.approx(0.4)

    cache = CacheModel(dense_ms=1.0, pruned_ms=0.4)
    cold = time_pair(cache.timer("dense"), cache.timer("pruned"), TimingOptions(mode="interleaved", repeats=60))
    # runs that follow the other model pay the cold penalty: a cold model no deployment runs
    assert cold.mode == "interleaved"
    assert cold.dense.p90_ms == pytest.approx(1.3) and cold.pruned.p90_ms == pytest.approx(0.7)
    assert cold.pruned.median_ms / cold.dense.median_ms > 0.41


def test_blocks_alternate_order_and_warm_each_block():
    cache = CacheModel(1.0, 0.5)
    pair = time_pair(cache.timer("dense"), cache.timer("pruned"),
                     TimingOptions(warmup=4, repeats=45, block=20, block_warmup=2))
    # warm-up of both, then blocks D P | P D | D P of 20, 20, 5 timed runs, each after 2 untimed runs
    assert cache.log[:2] == [("dense", 4), ("pruned", 4)]
    blocks = cache.log[2:]
    assert blocks == [("dense", 2), ("dense", 20), ("pruned", 2), ("pruned", 20),
                      ("pruned", 2), ("pruned", 20), ("dense", 2), ("dense", 20),
                      ("dense", 2), ("dense", 5), ("pruned", 2), ("pruned", 5)]
    assert pair.dense.runs == pair.pruned.runs == 45
    assert pair.ratio == pytest.approx(0.5)  # the untimed block warm-up absorbs the cold first run
    d = pair.to_dict()
    assert d["mode"] == "blocks" and d["ratio_spread"]["pairs"] == 3


def test_interleaved_alternates_single_runs():
    cache = CacheModel(1.0, 0.5, cold_ms=0.0)
    pair = time_pair(cache.timer("dense"), cache.timer("pruned"), TimingOptions(mode="interleaved", warmup=0, repeats=4))
    assert [n for _, n in cache.log] == [1] * 8
    assert [m for m, _ in cache.log] == ["dense", "pruned", "pruned", "dense"] * 2
    assert pair.ratio == pytest.approx(0.5) and len(pair.block_ratios) == 4


def test_fewer_repeats_than_a_block():
    cache = CacheModel(1.0, 0.5)
    pair = time_pair(cache.timer("dense"), cache.timer("pruned"), TimingOptions(repeats=7, block=20))
    assert pair.dense.runs == 7 and pair.block == 7


def test_time_one_and_stats():
    cache = CacheModel(2.0, 1.0)
    stats = time_one(cache.timer("dense"), warmup=2, repeats=5)
    assert cache.log == [("dense", 2), ("dense", 5)]
    assert stats.runs == 5 and stats.median_ms == stats.p90_ms == stats.fast_ms == 2.0
    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 100.0])
    assert s.median_ms == 2.5 and s.fast_ms == 1.0 and s.p90_ms > 3.0


@pytest.mark.parametrize(
    "options, message",
    [
        (TimingOptions(mode="bursts"), "unknown timing mode"),
        (TimingOptions(repeats=0), "repeats >= 1"),
        (TimingOptions(block=0), "--block must be >= 1"),
    ],
)
def test_bad_timing_options(options, message):
    with pytest.raises(PrunekitError, match=message):
        options.validate()


def test_clock_choice():
    assert resolve_clock("auto", 1) == "cpu" and resolve_clock("auto", 2) == "wall"
    with pytest.raises(PrunekitError, match="single-threaded"):
        resolve_clock("cpu", 2)
    with pytest.raises(PrunekitError, match="unknown clock"):
        resolve_clock("tsc", 1)
