"""End-to-end latency measurement on the runtimes prunekit targets.

- ONNX Runtime (CPU): `measure_onnx`, and `measure_pair`, which times a dense and a pruned
  model interleaved in one process, because on a shared or throttling machine the *ratio* of
  two interleaved measurements is stable while absolute numbers drift.
- PyTorch eager (CPU, or CUDA timed with CUDA events): `measure_torch`.
- TensorRT (TensorRT 10 Python API, engine built from ONNX): `measure_tensorrt`.

Every function warms up, then reports the median and p90 of many timed runs.

Clock: with one ONNX Runtime thread the model runs entirely in the calling thread, so
`clock="auto"` times it with that thread's CPU time (CLOCK_THREAD_CPUTIME_ID). On a dedicated
device that equals wall time; on a shared machine it leaves out the time other processes held
the core, which otherwise inflates a 30 ms run by 50 % and more. With more threads (the pool's
workers are other threads) the wall clock is used. `clock="wall"` forces wall time.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.errors import MissingDependencyError, PrunekitError

OnnxLike = str | os.PathLike[str] | bytes


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
        arr = np.asarray(samples_ms, dtype=float)
        return cls(
            float(np.median(arr)),
            float(np.percentile(arr, 90)),
            len(samples_ms),
            list(map(float, arr)),
            clock,
            band_mean(list(map(float, arr))),
        )

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
    """Dense and pruned timed interleaved; `ratio` = median of per-round pruned/dense ratios."""

    dense: LatencyStats
    pruned: LatencyStats
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.to_dict(), "pruned": self.pruned.to_dict(), "ratio": self.ratio}


# ----------------------------------------------------------------- ONNX Runtime
def require_onnxruntime() -> Any:
    """Import onnxruntime or raise MissingDependencyError."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


def _onnx_bytes(model: OnnxLike) -> bytes:
    if isinstance(model, bytes):
        return model
    path = Path(model)
    if not path.is_file():
        raise PrunekitError(f"ONNX file {path} does not exist")
    return path.read_bytes()


def ort_session(
    model: OnnxLike,
    threads: int = 1,
    *,
    profile_prefix: str | None = None,
    optimized_path: str | None = None,
    level: str = "all",
) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads and full graph optimisation."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        so.optimized_model_filepath = optimized_path
    try:
        return ort.InferenceSession(_onnx_bytes(model), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PrunekitError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from exc


def input_feed(
    session: Any, input_shape: tuple[int, ...] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random float inputs for every graph input (static shapes, or `input_shape` for the first)."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for i, inp in enumerate(session.get_inputs()):
        shape = list(input_shape) if (i == 0 and input_shape is not None) else inp.shape
        if any(not isinstance(d, int) for d in shape):
            raise PrunekitError(f"input {inp.name!r} has a dynamic shape {inp.shape}", "pass input_shape")
        feed[inp.name] = rng.random(shape, dtype=np.float32)
    return feed


def resolve_clock(clock: str, threads: int) -> str:
    """'cpu' (calling thread's CPU time) or 'wall' for a run with `threads` intra-op threads."""
    if clock not in ("auto", "cpu", "wall"):
        raise PrunekitError(f"unknown clock {clock!r}", "choose auto, cpu or wall")
    if clock == "auto":
        return "cpu" if threads == 1 else "wall"
    if clock == "cpu" and threads != 1:
        raise PrunekitError(
            "the cpu clock only times single-threaded runs", "use clock='wall' with threads > 1"
        )
    return clock


def _timed_run(sess: Any, feed: dict[str, np.ndarray], clock: str) -> float:
    if clock == "cpu":
        t0 = time.thread_time()
        sess.run(None, feed)
        return (time.thread_time() - t0) * 1e3
    t0 = time.perf_counter()
    sess.run(None, feed)
    return (time.perf_counter() - t0) * 1e3


def measure_onnx(
    path_or_bytes: OnnxLike,
    threads: int = 1,
    input_shape: tuple[int, ...] | None = None,
    warmup: int = 10,
    repeats: int = 50,
    clock: str = "auto",
) -> LatencyStats:
    """Median / p90 latency (ms) of one ONNX model on ONNX Runtime CPU (see module doc: clock)."""
    clock = resolve_clock(clock, threads)
    sess = ort_session(path_or_bytes, threads)
    feed = input_feed(sess, input_shape)
    for _ in range(max(0, warmup)):
        sess.run(None, feed)
    samples = [_timed_run(sess, feed, clock) for _ in range(max(1, repeats))]
    return LatencyStats.from_samples(samples, clock)


def measure_pair(
    dense_onnx: OnnxLike,
    pruned_onnx: OnnxLike,
    threads: int = 1,
    input_shape: tuple[int, ...] | None = None,
    warmup: int = 10,
    repeats: int = 50,
    pruned_input_shape: tuple[int, ...] | None = None,
    clock: str = "auto",
) -> PairStats:
    """Time dense and pruned ONNX models alternately in one process (A B A B ...).

    Both see the same machine state, so `ratio` (median of per-round pruned/dense) is reliable
    even when absolute latencies drift on a shared machine.
    """
    clock = resolve_clock(clock, threads)
    sa, sb = ort_session(dense_onnx, threads), ort_session(pruned_onnx, threads)
    fa = input_feed(sa, input_shape)
    fb = input_feed(sb, pruned_input_shape or input_shape)
    for _ in range(max(0, warmup)):
        sa.run(None, fa)
        sb.run(None, fb)
    ta: list[float] = []
    tb: list[float] = []
    for r in range(max(1, repeats)):
        order = ((sa, fa, ta), (sb, fb, tb)) if r % 2 == 0 else ((sb, fb, tb), (sa, fa, ta))
        for sess, feed, acc in order:
            acc.append(_timed_run(sess, feed, clock))
    ratios = [b / a for a, b in zip(ta, tb, strict=True) if a > 0]
    return PairStats(
        LatencyStats.from_samples(ta, clock),
        LatencyStats.from_samples(tb, clock),
        float(statistics.median(ratios)),
    )


def model_to_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    path: str | os.PathLike[str] | None = None,
    opset: int = 17,
) -> bytes:
    """Export `model` (eval mode, fixed input shape) to ONNX bytes for timing; also write `path`.

    Uses the TorchScript-based exporter (`dynamo=False`): it is several times faster than the
    dynamo exporter for a measurement export and gives the same Conv/BN/Relu graph that ONNX
    Runtime then fuses. Release exports are prunekit.export's job, not this helper's.
    """
    was_training = model.training
    model.eval()
    p = next(iter(model.parameters()), None)
    x = torch.zeros(tuple(input_shape), dtype=torch.float32, device=p.device if p is not None else "cpu")
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=True,
            )
    except Exception as exc:
        raise PrunekitError(f"ONNX export for timing failed: {str(exc).splitlines()[0]}") from exc
    finally:
        model.train(was_training)
    data = buf.getvalue()
    if path is not None:
        from prunekit.atomic import write_bytes

        write_bytes(path, data)
    return data


def profile_onnx_nodes(
    model: OnnxLike,
    threads: int,
    input_shape: tuple[int, ...] | None = None,
    warmup: int = 3,
    repeats: int = 20,
) -> tuple[list[dict[str, Any]], bytes]:
    """Per-node kernel times of an ONNX model on ONNX Runtime (its built-in profiler).

    Returns (nodes, optimized_model_bytes); each node dict has name, op_name, input/output
    shapes and `ms`: the mean of the fastest 30 % of its per-run times (the profiler measures
    wall time, and runs that another process interrupted are slow outliers, never fast ones;
    it reports whole microseconds, truncated, so half a microsecond is added back). The optimized graph is the
    one that ran.
    """
    import json

    with tempfile.TemporaryDirectory(prefix="prunekit-prof-") as tmp:
        opt = os.path.join(tmp, "optimized.onnx")
        sess = ort_session(model, threads, profile_prefix=os.path.join(tmp, "p"), optimized_path=opt)
        feed = input_feed(sess, input_shape)
        for _ in range(max(0, warmup)):
            sess.run(None, feed)
        for _ in range(max(1, repeats)):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
        opt_bytes = Path(opt).read_bytes()
    runs: dict[str, list[float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        runs.setdefault(name, []).append(float(e["dur"]))
        if name not in info:
            args = e.get("args", {})
            info[name] = {
                "name": name,
                "op_name": args.get("op_name", ""),
                "inputs": [next(iter(d.values())) for d in args.get("input_type_shape", []) if d],
                "outputs": [next(iter(d.values())) for d in args.get("output_type_shape", []) if d],
            }
    out = []
    for name, durs in runs.items():
        durs = durs[max(0, len(durs) - repeats) :]  # drop warm-up runs
        out.append(info[name] | {"ms": (band_mean(durs) + 0.5) / 1e3, "runs": len(durs)})
    return out, opt_bytes


def band_mean(values: list[float], lo: float = 0.0, hi: float = 0.3) -> float:
    """Mean of the values between the `lo` and `hi` quantiles: robust to interrupted (slow) runs."""
    v = sorted(values)
    a, b = int(len(v) * lo), max(int(len(v) * hi), int(len(v) * lo) + 1)
    mid = v[a:b] or v
    return float(sum(mid) / len(mid))


# ----------------------------------------------------------------- PyTorch / CUDA
def require_cuda() -> None:
    """Raise MissingDependencyError unless a CUDA GPU is usable."""
    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is available on this machine",
            "run on a machine with an NVIDIA GPU, or use --runtime onnxruntime",
        )


def time_module(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Per-run latency samples (ms) of `model(x)`: CUDA events on a GPU, wall clock on the CPU."""
    samples: list[float] = []
    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
            for _ in range(max(1, repeats)):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                end.synchronize()
                samples.append(float(start.elapsed_time(end)))
        else:
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                model(x)
                samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def measure_torch(
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: str = "cpu",
    warmup: int = 10,
    repeats: int = 50,
    half: bool = False,
) -> LatencyStats:
    """Median / p90 latency of eager PyTorch; on CUDA each run is timed with CUDA events."""
    dev = torch.device(device)
    if dev.type == "cuda":
        require_cuda()
    model = model.to(dev).eval()
    dtype = torch.float16 if half else torch.float32
    if half:
        model = model.half()
    x = torch.rand(tuple(input_shape), device=dev, dtype=dtype)
    samples = time_module(model, x, warmup, repeats)
    return LatencyStats.from_samples(samples)


# ----------------------------------------------------------------- TensorRT
def require_tensorrt() -> Any:
    """Import tensorrt (and check for a GPU) or raise MissingDependencyError."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError(
            "TensorRT is not installed",
            "install TensorRT 10 and its Python bindings (prunekit's tensorrt extra) on a machine with an NVIDIA GPU",
        ) from exc
    require_cuda()
    return trt


def build_tensorrt_engine(onnx_model: OnnxLike, fp16: bool = True, workspace_mb: int = 1024) -> Any:
    """Build a TensorRT engine (ICudaEngine) from ONNX with the TensorRT 10 Python API."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(_onnx_bytes(onnx_model)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PrunekitError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PrunekitError("TensorRT failed to build an engine for this model")
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def measure_tensorrt(
    onnx_model: OnnxLike, fp16: bool = True, warmup: int = 20, repeats: int = 100
) -> LatencyStats:
    """Median / p90 latency of a TensorRT engine built from `onnx_model`, timed with CUDA events."""
    trt = require_tensorrt()
    engine = build_tensorrt_engine(onnx_model, fp16=fp16)
    context = engine.create_execution_context()
    buffers = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(engine.get_tensor_shape(name))
        dtype = torch.from_numpy(np.zeros(1, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buf = torch.rand(shape, device="cuda").to(dtype)
        context.set_tensor_address(name, buf.data_ptr())
        buffers.append(buf)
    stream = torch.cuda.Stream()
    samples: list[float] = []
    with torch.cuda.stream(stream):
        for _ in range(max(0, warmup)):
            context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        for _ in range(max(1, repeats)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            context.execute_async_v3(stream.cuda_stream)
            end.record(stream)
            end.synchronize()
            samples.append(float(start.elapsed_time(end)))
    del buffers
    return LatencyStats.from_samples(samples)


def require_runtime(runtime: str) -> None:
    """Raise MissingDependencyError (exit 2 at the CLI) if `runtime` cannot run here."""
    if runtime == "onnxruntime":
        require_onnxruntime()
    elif runtime == "torch":
        return
    elif runtime == "tensorrt":
        require_tensorrt()
    else:
        raise PrunekitError(f"unknown runtime {runtime!r}", "choose onnxruntime, torch or tensorrt")
