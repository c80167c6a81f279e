"""ONNX Runtime on the CPU: the runtime of `cpu-ort` and of every profile with `runtime: onnxruntime`.

- Timing: one InferenceSession per model (full graph optimisation, `threads` intra-op threads,
  sequential execution) on random inputs. With one thread the run is timed with the calling
  thread's CPU time (see `prunekit.latency.measure`: clocks).
- Layer tables: many grid points per session (`prunekit.latency.ort_layers` builds the graphs),
  each point's kernel time read from ONNX Runtime's profiler.
- Constant model `ort-graph`: the model's optimized graph priced node by node
  (`prunekit.latency.ort_graph`), calibrated at the end of `prunekit profile`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prunekit.latency.measure import Timer
from prunekit.runtimes.base import Cells, Execution, ModelRef, Runtime, register_runtime
from prunekit.runtimes.ort_session import ort_session, profile_onnx_nodes, session_timer

if TYPE_CHECKING:
    from torch import nn

    from prunekit.latency.schema import Profile


@register_runtime
class OnnxRuntimeCPU(Runtime):
    """ONNX Runtime, CPU execution provider."""

    name = "onnxruntime"
    summary = "ONNX Runtime on the CPU (CPUExecutionProvider), timing the ONNX files"
    uses_threads = True
    install_hint = "pip install onnxruntime"

    def available(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:  # pragma: no cover - a core dependency
            return "onnxruntime is not installed"
        return None

    def version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    def resolve_device(self, device: str = "auto") -> str:
        if device.startswith("cuda"):
            from prunekit.errors import PrunekitError

            raise PrunekitError("the onnxruntime runtime is profiled on the CPU", "drop --device or use --runtime torch")
        return super().resolve_device(device)

    def describe(self, execution: Execution) -> str:
        return f"ONNX Runtime CPU, {execution.threads} thread(s)"

    def timer(self, model: ModelRef, input_shape: tuple[int, ...], execution: Execution,
              clock: str = "auto") -> Timer:
        return session_timer(model.onnx_bytes(input_shape), execution.threads, input_shape, clock)

    # ---------------------------------------------------------------- profiling
    def measure_cells(self, info: dict[str, Any], cells: Cells, execution: Execution, batch: int = 1,
                      on_chunk: Callable[[int], None] | None = None, target_s: float = 0.5,
                      min_repeats: int = 10, max_repeats: int = 40) -> dict[tuple[int, int], float]:
        """Kernel time (ms) of the layer at every (cin, cout) cell, via ONNX Runtime's profiler."""
        from prunekit.latency.ort_layers import (
            GMACS_PER_S,
            TAG,
            WeightPool,
            build_cells_graph,
            cell_macs,
            chunk_cells,
        )

        out: dict[tuple[int, int], float] = {}
        weights = WeightPool()
        for chunk in chunk_cells(info, cells, batch):
            est_ms = sum(cell_macs(info, a, b, batch) for a, b in chunk) / (GMACS_PER_S * 1e6) + 0.05 * len(chunk)
            repeats = int(min(max_repeats, max(min_repeats, target_s * 1e3 / max(est_ms, 1e-3))))
            graph = build_cells_graph(info, chunk, batch, weights)
            nodes, _ = profile_onnx_nodes(graph, execution.threads, warmup=2, repeats=repeats)
            per: dict[int, float] = {}
            for n in nodes:
                m = TAG.match(n["name"])
                if m:
                    j = int(m.group(1))
                    per[j] = per.get(j, 0.0) + n["ms"]
            for j, cell in enumerate(chunk):
                if j not in per:
                    raise RuntimeError(f"ONNX Runtime profile has no node for grid point {cell}")
                out[cell] = per[j]
            if on_chunk is not None:
                on_chunk(len(chunk))
        return out

    def alignment(self, execution: Execution) -> tuple[int, int, int]:
        """(align_cin, align_cout, pad) of this machine's ONNX Runtime convolution kernels.

        Reads ONNX Runtime's optimized graph for small probe convs: which input widths get the
        blocked NCHWc kernels, and the block size their weights are padded to.
        """
        import onnx

        from prunekit.latency.ort_layers import build_cells_graph

        def nchwc_block(cin: int, cout: int) -> int | None:
            info = {"op": "conv", "kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "input_hw": (8, 8)}
            graph = build_cells_graph(info, [(cin, cout)], 1)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "opt.onnx")
                ort_session(graph, execution.threads, optimized_path=path)
                opt = onnx.load(path)
            if not any(n.domain.endswith("nchwc") and n.op_type == "Conv" for n in opt.graph.node):
                return None
            dims = [list(t.dims) for t in opt.graph.initializer if len(t.dims) == 4]
            return int(dims[0][0]) if dims else None

        padded = nchwc_block(32, 1)
        if padded is None:
            return 1, 1, 8  # no blocked kernels: plain GEMM convolution everywhere
        pad = padded
        align_cin = pad
        for a in (1, 2, 4, 8, 16):
            if nchwc_block(16 + a, 16) is not None:
                align_cin = a
                break
        align_cout = 1 if nchwc_block(32, 17) is not None else pad
        return align_cin, align_cout, pad

    def choose_threads(self, model: nn.Module, input_shape: tuple[int, ...],
                       candidates: list[int], repeats: int = 40) -> tuple[int, dict[str, float]] | None:
        """The fastest thread count for the dense model (each count's fastest of `repeats` runs).

        Compares each count's fastest run: on a machine shared with other work the median mostly
        measures how often a run was interrupted (worse the more threads it needs), while the
        fastest run shows what the thread count does on a quiet machine.
        """
        from prunekit.runtimes.ort_session import input_feed

        data = ModelRef(module=model).onnx_bytes(input_shape)
        sessions = {t: ort_session(data, t) for t in candidates}
        feeds = {t: input_feed(s, input_shape) for t, s in sessions.items()}
        times: dict[int, list[float]] = {t: [] for t in candidates}
        for t, s in sessions.items():
            for _ in range(3):
                s.run(None, feeds[t])
        for _ in range(repeats):
            for t, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feeds[t])
                times[t].append((time.perf_counter() - t0) * 1e3)
        fastest = {t: min(v) for t, v in times.items()}
        best = min(fastest, key=lambda t: fastest[t])
        return best, {str(t): round(v, 4) for t, v in fastest.items()}

    def calibrate(self, profile: Profile, model: nn.Module, input_shape: tuple[int, ...],
                  log: Callable[[str], None] | None = None) -> Profile:
        from prunekit.latency.ort_graph import calibrate_constant

        if log is not None:
            log("calibrating the constant model (ONNX Runtime profiler on the dense and a pruned copy)")
        return calibrate_constant(profile, model, input_shape, "model")  # type: ignore[arg-type]

    def graph_constant(self, model: nn.Module, profile: Profile, input_shape: tuple[int, ...]) -> Any:
        if profile.constant.method != "ort-graph":
            return None
        from prunekit.latency.ort_graph import graph_constant

        return graph_constant(model, profile, input_shape)  # type: ignore[arg-type]
