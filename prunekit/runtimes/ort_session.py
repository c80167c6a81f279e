"""ONNX Runtime CPU sessions: the low-level helpers of the onnxruntime runtime.

Shared by `prunekit.runtimes.onnxruntime` (the runtime object), the ONNX Runtime layer tables
(`prunekit.latency.ort_layers`, `prunekit.latency.ort_graph`) and the exported-model evaluator
(`prunekit.deploy.ort_model`). Not a runtime itself: the table has nothing to register here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import Timer, band_mean, clock_timer, resolve_clock

OnnxLike = str | os.PathLike[str] | bytes


def require_onnxruntime() -> Any:
    """Import onnxruntime or raise MissingDependencyError."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


def onnx_bytes(model: OnnxLike) -> bytes:
    """The serialized model: `model` itself, or the content of the file it names."""
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
        return ort.InferenceSession(onnx_bytes(model), so, providers=["CPUExecutionProvider"])
    except PrunekitError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PrunekitError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from exc


def input_feed(session: Any, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float inputs for every graph input (static shapes, or `input_shape` for the first)."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for i, inp in enumerate(session.get_inputs()):
        shape = list(input_shape) if (i == 0 and input_shape is not None) else inp.shape
        if any(not isinstance(d, int) for d in shape):
            raise PrunekitError(f"input {inp.name!r} has a dynamic shape {inp.shape}", "pass input_shape")
        feed[inp.name] = rng.random(shape, dtype=np.float32)
    return feed


def session_timer(model: OnnxLike, threads: int = 1, input_shape: tuple[int, ...] | None = None,
                  clock: str = "auto") -> Timer:
    """A Timer running `model` in its own session on random inputs (see latency.measure: clocks)."""
    clock = resolve_clock(clock, threads)
    sess = ort_session(model, threads)
    feed = input_feed(sess, input_shape)
    return clock_timer(lambda: sess.run(None, feed), clock)


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
    it reports whole microseconds, truncated, so half a microsecond is added back). The
    optimized graph is the one that ran.
    """
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
        durs = durs[max(0, len(durs) - repeats):]  # drop warm-up runs
        out.append(info[name] | {"ms": (band_mean(durs) + 0.5) / 1e3, "runs": len(durs)})
    return out, opt_bytes
