"""How prunekit times a model: statistics, clocks, and the schedule that compares two models.

A runtime (see `prunekit.runtimes`) turns a model into a `Timer`: a callable that runs the
prepared model `n` times in a row and returns each run's latency in ms. Everything here is
runtime-agnostic and works on timers.

Warm timing (`mode="blocks"`, the default), the way `trtexec` and `onnxruntime_perf_test` time
a model: after a warm-up, consecutive runs of ONE model, so its weights and code stay in the
caches as in a deployment that runs the model over and over. Two models (dense and pruned) are
compared by alternating blocks of `block` consecutive runs (dense block, pruned block, then
pruned first, ...), so that load drift on a shared machine hits both; the first
`block_warmup` runs of every block are not timed (the other model just evicted this one's
weights). The ratio is median(pruned) / median(dense) over all timed runs, and the spread of
the per-block-pair ratios says how stable it was.

`mode="interleaved"` is the older schedule: one run of each model in turn (A B B A ...), the
ratio the median of the per-round ratios. Every run follows a run of the other model, so it
measures a model whose weights were just evicted: at sub-millisecond latencies (32x32 inputs)
that is a cold model no deployment runs (a 32x32 resnet18: 0.65 ms interleaved vs 0.42 ms warm).

Sessions (`sessions`): at sub-millisecond latency the ratio depends on the session as well as on
the models. The same resnet18 / mobilenet_v2 pair at 32x32 (about 0.1-0.8 ms a run), timed in 8
fresh ONNX Runtime sessions on a quiet machine, read ratios spread over 14-36 % of their median,
with more repeats per session not narrowing it (each session places the weights anew, and the
cache hits follow). With `sessions=k` the repeats are split between k fresh sessions of each model
and the ratio is the median of the k sessions' ratios; `compress --verify` and `check` use 5.

Clocks: `cpu` is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID). With one ONNX Runtime
thread the model runs entirely in the calling thread, so on a shared machine this leaves out the
time other processes held the core. `wall` is `time.perf_counter`; `cuda` is CUDA events.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from prunekit.errors import PrunekitError

TimingMode = Literal["blocks", "interleaved"]
TIMING_MODES: tuple[str, ...] = ("blocks", "interleaved")
DEFAULT_BLOCK = 20
DEFAULT_BLOCK_WARMUP = 2


@dataclass
class LatencyStats:
    """Timing of one model: median and 90th percentile over `runs` timed runs (ms)."""

    median_ms: float
    p90_ms: float
    runs: int
    samples_ms: list[float] = field(default_factory=list, repr=False)
    clock: str = "wall"
    fast_ms: float = 0.0  # mean of the fastest 30 % of runs: the quiet-machine estimate

    @classmethod
    def from_samples(cls, samples_ms: list[float], clock: str = "wall") -> LatencyStats:
        if not samples_ms:
            raise PrunekitError("no timed runs to summarise")
        arr = np.asarray(samples_ms, dtype=float)
        values = list(map(float, arr))
        return cls(float(np.median(arr)), float(np.percentile(arr, 90)), len(values), values, clock,
                   band_mean(values))

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "fast_ms": self.fast_ms,
            "runs": self.runs,
            "clock": self.clock,
        }


@dataclass
class PairStats:
    """Dense and pruned timed in one process; `ratio` = pruned / dense latency.

    blocks mode: ratio of the medians over all runs, `block_ratios` the ratio of each block pair.
    interleaved mode: median of the per-round ratios, `block_ratios` those per-round ratios.
    """

    dense: LatencyStats
    pruned: LatencyStats
    ratio: float
    mode: str = "blocks"
    block: int = 1
    block_ratios: list[float] = field(default_factory=list, repr=False)
    sessions: int = 1
    session_ratios: list[float] = field(default_factory=list)

    def spread(self) -> dict[str, float | int]:
        """How much the per-block-pair (or per-round) ratio moved: min, p10, median, p90, max."""
        r = np.asarray(self.block_ratios or [self.ratio], dtype=float)
        return {
            "pairs": int(r.size),
            "min": float(r.min()),
            "p10": float(np.percentile(r, 10)),
            "median": float(np.median(r)),
            "p90": float(np.percentile(r, 90)),
            "max": float(r.max()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense": self.dense.to_dict(),
            "pruned": self.pruned.to_dict(),
            "ratio": self.ratio,
            "mode": self.mode,
            "block": self.block,
            "ratio_spread": self.spread(),
        }


@dataclass
class TimingOptions:
    """How many runs, and in which schedule (see the module doc)."""

    mode: str = "blocks"
    warmup: int = 10
    repeats: int = 100  # timed runs per model
    block: int = DEFAULT_BLOCK
    block_warmup: int = DEFAULT_BLOCK_WARMUP
    clock: str = "auto"  # auto | cpu | wall (a runtime may use its own, e.g. CUDA events)
    # A pair is timed in this many fresh sessions (repeats split between them), ratio = the median
    # of theirs: at sub-millisecond latency one session's ratio can be 15-35 % off (see the module doc).
    sessions: int = 1

    def validate(self) -> TimingOptions:
        if self.mode not in TIMING_MODES:
            raise PrunekitError(f"unknown timing mode {self.mode!r}", f"choose one of: {', '.join(TIMING_MODES)}")
        if self.repeats < 1 or self.warmup < 0:
            raise PrunekitError(f"timing needs repeats >= 1 and warm-up >= 0, got {self.repeats} and {self.warmup}")
        if self.sessions < 1:
            raise PrunekitError(f"--sessions must be >= 1, got {self.sessions}")
        if self.block < 1 or self.block_warmup < 0:
            raise PrunekitError(f"--block must be >= 1 and block warm-up >= 0, got {self.block} and {self.block_warmup}")
        return self

    def per_session(self) -> TimingOptions:
        """The options of one of `sessions` sessions: the repeats split between them."""
        from dataclasses import replace

        return replace(self, sessions=1, repeats=max(1, -(-self.repeats // self.sessions)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "warmup": self.warmup, "repeats": self.repeats}
        if self.mode == "blocks":
            out |= {"block": min(self.block, self.repeats), "block_warmup": self.block_warmup}
        if self.sessions > 1:
            out["sessions"] = self.sessions
        return out


@dataclass
class Timer:
    """One model prepared on one runtime: `timed(n)` runs it n times in a row, returning ms per run."""

    timed: Callable[[int], list[float]]
    clock: str = "wall"
    close: Callable[[], None] | None = None

    def warm(self, n: int) -> None:
        """Run `n` untimed runs (results discarded)."""
        if n > 0:
            self.timed(n)


def band_mean(values: list[float], lo: float = 0.0, hi: float = 0.3) -> float:
    """Mean of the values between the `lo` and `hi` quantiles: robust to interrupted (slow) runs."""
    v = sorted(values)
    a, b = int(len(v) * lo), max(int(len(v) * hi), int(len(v) * lo) + 1)
    mid = v[a:b] or v
    return float(sum(mid) / len(mid))


def resolve_clock(clock: str, threads: int) -> str:
    """'cpu' (calling thread's CPU time) or 'wall' for a CPU run with `threads` intra-op threads."""
    if clock not in ("auto", "cpu", "wall"):
        raise PrunekitError(f"unknown clock {clock!r}", "choose auto, cpu or wall")
    if clock == "auto":
        return "cpu" if threads == 1 else "wall"
    if clock == "cpu" and threads != 1:
        raise PrunekitError("the cpu clock only times single-threaded runs", "use clock='wall' with threads > 1")
    return clock


def clock_timer(step: Callable[[], Any], clock: str) -> Timer:
    """A Timer for a CPU-side `step()` (one inference) timed with the `cpu` or `wall` clock."""
    now = time.thread_time if clock == "cpu" else time.perf_counter

    def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = now()
            step()
            out.append((now() - t0) * 1e3)
        return out

    return Timer(timed, clock)


def time_one(timer: Timer, warmup: int = 10, repeats: int = 50) -> LatencyStats:
    """Warm-up, then `repeats` consecutive timed runs of one model."""
    timer.warm(max(0, warmup))
    return LatencyStats.from_samples(timer.timed(max(1, repeats)), timer.clock)


def _block_sizes(repeats: int, block: int) -> list[int]:
    """Timed runs per block: blocks of `block`, the last one shorter, summing to `repeats`."""
    block = max(1, min(block, repeats))
    n = math.ceil(repeats / block)
    return [block] * (n - 1) + [repeats - block * (n - 1)]


def combine_sessions(pairs: list[PairStats]) -> PairStats:
    """One pair timed in several fresh sessions: all runs pooled per model, ratio = median of the sessions'."""
    ratios = [p.ratio for p in pairs]
    dense = LatencyStats.from_samples([t for p in pairs for t in p.dense.samples_ms], pairs[0].dense.clock)
    pruned = LatencyStats.from_samples([t for p in pairs for t in p.pruned.samples_ms], pairs[0].pruned.clock)
    return PairStats(dense, pruned, float(statistics.median(ratios)), pairs[0].mode, pairs[0].block,
                     [r for p in pairs for r in p.block_ratios], len(pairs), ratios)


def time_pair(dense: Timer, pruned: Timer, options: TimingOptions | None = None) -> PairStats:
    """Time two prepared models in one process with `options.mode` (see the module doc)."""
    opts = (options or TimingOptions()).validate()
    dense.warm(opts.warmup)
    pruned.warm(opts.warmup)
    ta: list[float] = []
    tb: list[float] = []
    if opts.mode == "interleaved":
        ratios = []
        for r in range(max(1, opts.repeats)):
            order = ((dense, ta), (pruned, tb)) if r % 2 == 0 else ((pruned, tb), (dense, ta))
            for timer, acc in order:
                acc.extend(timer.timed(1))
            if ta[-1] > 0:
                ratios.append(tb[-1] / ta[-1])
        return PairStats(LatencyStats.from_samples(ta, dense.clock), LatencyStats.from_samples(tb, pruned.clock),
                         float(statistics.median(ratios)), "interleaved", 1, ratios)
    sizes = _block_sizes(max(1, opts.repeats), opts.block)
    pair_ratios = []
    for i, n in enumerate(sizes):
        order = ((dense, ta), (pruned, tb)) if i % 2 == 0 else ((pruned, tb), (dense, ta))
        got: dict[int, list[float]] = {}
        for timer, acc in order:
            timer.warm(opts.block_warmup)
            runs = timer.timed(n)
            acc.extend(runs)
            got[id(acc)] = runs
        med_a = statistics.median(got[id(ta)])
        if med_a > 0:
            pair_ratios.append(statistics.median(got[id(tb)]) / med_a)
    sa, sb = LatencyStats.from_samples(ta, dense.clock), LatencyStats.from_samples(tb, pruned.clock)
    ratio = sb.median_ms / sa.median_ms if sa.median_ms > 0 else math.inf
    return PairStats(sa, sb, float(ratio), "blocks", sizes[0], pair_ratios)
