"""PyTorch eager as a runtime: the PyTorch models themselves, on the CPU or a CUDA GPU.

On a GPU each run is timed with CUDA events (recorded around the call, synchronised after it),
so the time is the GPU's, not the Python launch loop's; on the CPU with the wall clock. A table
unit is Conv -> BatchNorm -> ReLU as separate kernels (what an eager model executes), see
`prunekit.latency.torch_layers`.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from typing import Any

import torch

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import Timer, clock_timer
from prunekit.runtimes.base import Cells, Execution, ModelRef, Runtime, register_runtime


def require_cuda() -> None:
    """Raise MissingDependencyError unless a CUDA GPU is usable."""
    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is available on this machine",
            "run on a machine with an NVIDIA GPU, or use --runtime onnxruntime",
        )


def cuda_event_timer(step: Callable[[], Any], stream: Any = None) -> Timer:
    """A Timer for a GPU `step()`: CUDA events around each run, synchronised after it."""

    def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            step()
            end.record(stream)
            end.synchronize()
            out.append(float(start.elapsed_time(end)))
        return out

    return Timer(timed, "cuda")


def module_timer(model: torch.nn.Module, x: torch.Tensor, clock: str = "wall") -> Timer:
    """A Timer running `model(x)` under inference mode (CUDA events when `x` is on a GPU)."""

    def step() -> None:
        with torch.inference_mode():
            model(x)

    if x.is_cuda:
        torch.cuda.synchronize(x.device)
        return cuda_event_timer(step)
    return clock_timer(step, "cpu" if clock == "cpu" else "wall")


@register_runtime
class TorchEager(Runtime):
    """PyTorch eager execution (CPU, or CUDA with CUDA-event timing)."""

    name = "torch"
    summary = "PyTorch eager on the CPU or a CUDA GPU (CUDA events), timing the PyTorch models"
    precisions = ("fp32", "fp16")

    def version(self) -> str:
        return f"torch {torch.__version__}" + (f" cuda {torch.version.cuda}" if torch.cuda.is_available() else "")

    def resolve_device(self, device: str = "auto") -> str:
        if device == "auto":
            return "cuda:0" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            return "cpu"
        if device.startswith("cuda"):
            require_cuda()
            return device if ":" in device else "cuda:0"
        raise PrunekitError(f"unknown device {device!r}", "choose auto, cpu or cuda")

    def describe(self, execution: Execution) -> str:
        half = " fp16" if execution.precision == "fp16" else ""
        return f"PyTorch eager on {execution.device}{half}"

    def notes(self, execution: Execution) -> list[str]:
        return ["the torch runtime runs the PyTorch models; accuracy is still measured on the ONNX files"]

    def timer(self, model: ModelRef, input_shape: tuple[int, ...], execution: Execution,
              clock: str = "auto") -> Timer:
        dev = torch.device(execution.device)
        if dev.type == "cuda":
            require_cuda()
        dtype = torch.float16 if execution.precision == "fp16" else torch.float32
        module = model.torch_module()
        p = next(module.parameters(), None)
        if p is not None and (p.device != dev or p.dtype != dtype):
            module = copy.deepcopy(module).to(dev, dtype)  # the caller's model stays where it is
        module.eval()
        x = torch.rand(tuple(input_shape), device=dev, dtype=dtype)
        return module_timer(module, x, clock)

    def alignment(self, execution: Execution) -> tuple[int, int, int]:
        if execution.device.startswith("cuda"):
            return 8, 8, 8 if execution.precision == "fp16" else 4
        return 1, 1, 8

    def measure_cells(self, info: dict[str, Any], cells: Cells, execution: Execution, batch: int = 1,
                      on_chunk: Callable[[int], None] | None = None, warmup: int = 5,
                      repeats: int = 25) -> dict[tuple[int, int], float]:
        """Median eager latency (ms) per grid point, each point's module timed warm on its own."""
        from prunekit.latency.torch_layers import input_shape_for, layer_module

        out: dict[tuple[int, int], float] = {}
        for cin, cout in cells:
            ref = ModelRef(module=layer_module(info, cin, cout))
            timer = self.timer(ref, input_shape_for(info, cin, batch), execution)
            timer.warm(warmup)
            out[(cin, cout)] = float(statistics.median(timer.timed(repeats)))
            if on_chunk is not None:
                on_chunk(1)
        return out
