"""The runtime interface and its table.

A runtime is one object (one file under `prunekit/runtimes/`, registered with
`@register_runtime`) that knows how to run a model on some engine: ONNX Runtime on the CPU,
PyTorch eager, TensorRT, ... It answers the same few questions for `check`, `profile`, the
latency predictor and the benchmarks:

- `available()`: None when it can run here, else a one-line reason (`require()` raises it);
- `version()`, `device_model(device)`: what a measured profile records as provenance;
- `timer(model, input_shape, execution)`: the model prepared to be timed (a `latency.measure.Timer`);
  `time_model` / `time_pair` (warm blocks by default, see `latency.measure`) are built on it;
- `measure_cells(info, cells, execution, ...)`: one layer signature timed over a channel grid;
- optional: `choose_threads`, `alignment`, `calibrate` and `graph_constant` (a constant model
  beyond a fixed number, e.g. ONNX Runtime's priced graph).

A model handed to a runtime is a `ModelRef`: a PyTorch module, an ONNX file or bytes, or both;
a runtime that times ONNX exports a module with the one exporter (`prunekit.deploy.onnx`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import (
    LatencyStats,
    PairStats,
    Timer,
    TimingOptions,
    combine_sessions,
    time_one,
    time_pair,
)

if TYPE_CHECKING:
    from torch import nn

    from prunekit.latency.schema import Profile

Cells = list[tuple[int, int]]


@dataclass
class ModelRef:
    """A model as a runtime may need it: a PyTorch module, an ONNX file/bytes, or both."""

    module: nn.Module | None = None
    onnx: bytes | str | os.PathLike[str] | None = None
    _exported: dict[tuple[int, ...], bytes] = field(default_factory=dict, repr=False)

    def onnx_bytes(self, input_shape: tuple[int, ...]) -> bytes:
        """The ONNX graph: the given file/bytes, else the module exported (fast exporter, cached)."""
        if self.onnx is not None:
            if isinstance(self.onnx, bytes):
                return self.onnx
            path = Path(self.onnx)
            if not path.is_file():
                raise PrunekitError(f"ONNX file {path} does not exist")
            return path.read_bytes()
        if self.module is None:
            raise PrunekitError("nothing to time: the model has neither a module nor an ONNX graph")
        key = tuple(int(d) for d in input_shape)
        if key not in self._exported:
            from prunekit.deploy.onnx import to_onnx

            self._exported[key] = to_onnx(self.module, key).data
        return self._exported[key]

    def torch_module(self) -> nn.Module:
        """The PyTorch module (a runtime that runs PyTorch needs one)."""
        if self.module is None:
            raise PrunekitError("this runtime times PyTorch models, and only an ONNX file was given")
        return self.module


def as_ref(model: ModelRef | nn.Module | bytes | str | os.PathLike[str]) -> ModelRef:
    """Wrap a module, an ONNX path or ONNX bytes as a ModelRef (a ModelRef passes through)."""
    if isinstance(model, ModelRef):
        return model
    if isinstance(model, (bytes, str, os.PathLike)):
        return ModelRef(onnx=model)
    return ModelRef(module=model)


@dataclass
class Execution:
    """Where and how a runtime runs: intra-op threads, precision, device (cpu, cuda:0, ...)."""

    threads: int = 1
    precision: str = "fp32"
    device: str = "cpu"

    @classmethod
    def of_profile(cls, profile: Profile, runtime: Runtime) -> Execution:
        """The execution a profile's numbers were measured with (device resolved on this machine)."""
        wanted = str(getattr(profile.provenance, "device", "") or "auto")
        return cls(int(profile.threads or 1), str(profile.precision), runtime.resolve_device(wanted))


class Runtime:
    """Base class of a runtime: override what the engine needs (see the module doc)."""

    name: str = ""
    summary: str = ""  # one line, for --help and `prunekit targets`
    default_precision: str = "fp32"
    precisions: tuple[str, ...] = ("fp32",)
    uses_threads: bool = False  # does `Execution.threads` mean anything to it
    install_hint: str = ""

    # ---------------------------------------------------------------- availability
    def available(self) -> str | None:
        """None when the runtime can run on this machine, else a one-line reason."""
        return None

    def require(self) -> None:
        """Raise MissingDependencyError (exit 2 at the CLI) unless the runtime can run here."""
        reason = self.available()
        if reason is not None:
            raise MissingDependencyError(reason, self.install_hint or None)

    def version(self) -> str:
        """The runtime's name and version, as recorded in a measured profile."""
        raise NotImplementedError

    def resolve_device(self, device: str = "auto") -> str:
        """The device this runtime runs on for a requested one (auto, cpu, cuda, cuda:N)."""
        if device not in ("auto", "cpu"):
            raise PrunekitError(f"the {self.name} runtime runs on the CPU, not {device!r}", "drop --device")
        return "cpu"

    def device_model(self, device: str) -> str:
        """The CPU or GPU model name of `device`."""
        from prunekit.runtimes.machine import cpu_model, gpu_name

        return cpu_model() if device == "cpu" else gpu_name(device)

    def check_precision(self, precision: str) -> str:
        if precision not in self.precisions:
            raise PrunekitError(
                f"the {self.name} runtime is profiled in {', '.join(self.precisions)}, not {precision}",
                "drop --precision" if len(self.precisions) == 1 else f"choose one of: {', '.join(self.precisions)}",
            )
        return precision

    def describe(self, execution: Execution) -> str:
        """How a timing on this runtime was made, in words (for check's table and check.json)."""
        return f"{self.name} on {execution.device}, {execution.precision}"

    def notes(self, execution: Execution) -> list[str]:
        """Caveats that `check` prints next to a timing on this runtime."""
        return []

    # ---------------------------------------------------------------- timing
    def timer(self, model: ModelRef, input_shape: tuple[int, ...], execution: Execution,
              clock: str = "auto") -> Timer:
        """`model` prepared to be timed at `input_shape`."""
        raise NotImplementedError

    def time_model(self, model: ModelRef | Any, input_shape: tuple[int, ...], execution: Execution | None = None,
                   timing: TimingOptions | None = None) -> LatencyStats:
        """Median / p90 of consecutive warm runs of one model."""
        opts = (timing or TimingOptions()).validate()
        timer = self.timer(as_ref(model), input_shape, execution or Execution(), opts.clock)
        try:
            return time_one(timer, opts.warmup, opts.repeats)
        finally:
            if timer.close is not None:
                timer.close()

    def time_pair(self, dense: ModelRef | Any, pruned: ModelRef | Any, input_shape: tuple[int, ...],
                  execution: Execution | None = None, timing: TimingOptions | None = None,
                  pruned_input_shape: tuple[int, ...] | None = None) -> PairStats:
        """Dense and pruned timed in one process, warm blocks by default (see latency.measure)."""
        opts = (timing or TimingOptions()).validate()
        ex = execution or Execution()
        if opts.sessions > 1:  # fresh sessions, repeats split between them; the export is made once
            d, p = as_ref(dense), as_ref(pruned)
            per = opts.per_session()
            return combine_sessions([self.time_pair(d, p, input_shape, ex, per, pruned_input_shape)
                                     for _ in range(opts.sessions)])
        a = self.timer(as_ref(dense), input_shape, ex, opts.clock)
        b = self.timer(as_ref(pruned), pruned_input_shape or input_shape, ex, opts.clock)
        try:
            return time_pair(a, b, opts)
        finally:
            for t in (a, b):
                if t.close is not None:
                    t.close()

    # ---------------------------------------------------------------- profiling
    def measure_cells(self, info: dict[str, Any], cells: Cells, execution: Execution, batch: int = 1,
                      on_chunk: Callable[[int], None] | None = None) -> dict[tuple[int, int], float]:
        """Latency (ms) of one layer signature (`info`, see latency.layers.parse_signature) per cell."""
        raise NotImplementedError

    def alignment(self, execution: Execution) -> tuple[int, int, int]:
        """(align_cin, align_cout, pad): channel multiples the fast kernels want, and their block."""
        return 1, 1, 8

    def choose_threads(self, model: nn.Module, input_shape: tuple[int, ...],
                       candidates: list[int]) -> tuple[int, dict[str, float]] | None:
        """The best thread count for the dense model, or None where threads mean nothing."""
        return None

    def calibrate(self, profile: Profile, model: nn.Module, input_shape: tuple[int, ...],
                  log: Callable[[str], None] | None = None) -> Profile:
        """Fit the profile's constant model on this runtime (default: keep the fixed constant)."""
        return profile

    def graph_constant(self, model: nn.Module, profile: Profile, input_shape: tuple[int, ...]) -> Any:
        """The priced non-table part of `model` (an object with total_ms, by_op, unpriced), or None."""
        return None


# -------------------------------------------------------------------- the table
RUNTIMES: dict[str, Runtime] = {}  # filled by @register_runtime; look up with prunekit.runtimes.get_runtime
R = TypeVar("R", bound=type[Runtime])


def register_runtime(cls: R) -> R:
    """Class decorator: put one instance of a Runtime subclass in the table under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    RUNTIMES[cls.name] = cls()
    return cls
