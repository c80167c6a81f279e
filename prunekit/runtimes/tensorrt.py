"""TensorRT as a runtime, and prunekit's one TensorRT engine builder.

`build_serialized_engine` is the only place prunekit drives the TensorRT 10 builder (network from
the ONNX parser, builder config: workspace, precision flags, optimisation profile, INT8
calibration or explicit Q/DQ, timing cache, DLA). `prunekit export --format engine` writes its
result to RUN/<name>.engine; this runtime builds the same way in memory to time a model
(`check`, `profile`): the engine is deserialised and run with CUDA-event timing.

INT8 with TensorRT 10: implicit calibration (an IInt8EntropyCalibrator2 fed with images) is
deprecated since TensorRT 10.1 in favour of explicit quantization (an ONNX with
QuantizeLinear/DequantizeLinear nodes, e.g. from NVIDIA ModelOpt). An ONNX with Q/DQ nodes is
built as is; a plain ONNX is calibrated on images the caller provides while the TensorRT in use
still has IInt8EntropyCalibrator2, and is refused with a clear error otherwise.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.latency.measure import Timer
from prunekit.runtimes.base import Cells, Execution, ModelRef, Runtime, register_runtime

DEFAULT_WORKSPACE_MB = 1024
DEFAULT_MAX_BATCH = 32
TIMING_CACHE = "timing.cache"


@dataclass
class EngineOptions:
    """How to build an engine: precision, memory, shapes, cache, DLA."""

    precision: str = "fp16"  # fp32 | fp16 | int8 (int8 lets TensorRT fall back to fp16 per layer)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    dynamic_batch: bool = False
    batch: int = 1  # the static batch, or the optimisation profile's opt batch
    max_batch: int = DEFAULT_MAX_BATCH
    dla_core: int | None = None
    timing_cache: str = TIMING_CACHE
    target: str | None = None
    jetson: bool = False

    @classmethod
    def for_target(
        cls,
        profile: Any,
        *,
        dynamic_batch: bool,
        batch: int,
        fp16: bool | None = None,
        int8: bool = False,
        workspace_mb: int | None = None,
        dla_core: int | None = None,
        max_batch: int | None = None,
        timing_cache: str | None = None,
    ) -> EngineOptions:
        """Options from a target profile (its precision if it is a TensorRT profile, its name), then flags."""
        precision = "fp16"
        if profile is not None and getattr(profile, "runtime", "") == TensorRT.name:
            precision = str(profile.precision)
        if fp16 is not None:
            precision = "fp16" if fp16 else "fp32"
        if int8:
            precision = "int8"
        name = getattr(profile, "name", None) if profile is not None else None
        device = ""
        if profile is not None:
            device = str(getattr(getattr(profile, "provenance", None), "device_model", "") or "")
        jetson = any(w in f"{name or ''} {device}".lower() for w in ("jetson", "orin", "xavier"))
        opts = cls(
            precision=precision,
            workspace_mb=DEFAULT_WORKSPACE_MB if workspace_mb is None else int(workspace_mb),
            dynamic_batch=dynamic_batch,
            batch=int(batch),
            max_batch=max(DEFAULT_MAX_BATCH, batch) if max_batch is None else int(max_batch),
            dla_core=dla_core,
            timing_cache=timing_cache or TIMING_CACHE,
            target=name,
            jetson=jetson,
        )
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise PrunekitError(f"unknown precision {self.precision!r}", "use fp32, fp16 or int8")
        if not 1 <= self.workspace_mb <= 1 << 20:
            raise PrunekitError(f"--workspace-mb must be between 1 and 1048576, got {self.workspace_mb}")
        if self.batch < 1 or self.max_batch < self.batch:
            raise PrunekitError(f"batch sizes must satisfy 1 <= batch ({self.batch}) <= max batch ({self.max_batch})")
        if self.dla_core is not None and self.dla_core < 0:
            raise PrunekitError(f"--dla-core must be >= 0, got {self.dla_core}")
        if self.dla_core is not None and self.precision == "fp32":
            raise PrunekitError("a DLA core runs FP16 or INT8 only, not FP32", "drop --no-fp16, or drop --dla-core")

    def shapes(self, input_chw: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes of the optimisation profile."""
        if not self.dynamic_batch:
            s = (self.batch, *input_chw)
            return s, s, s
        return (1, *input_chw), (self.batch, *input_chw), (self.max_batch, *input_chw)


@dataclass
class BuiltEngine:
    """A serialized engine, the timing cache after the build, and what built it."""

    serialized: bytes
    timing_cache: bytes
    info: dict[str, Any] = field(default_factory=dict)


def require_tensorrt() -> Any:
    """Import tensorrt (and check for a GPU) or raise MissingDependencyError."""
    reason = TensorRT().available()
    if reason is not None:
        raise MissingDependencyError(reason, TensorRT.install_hint)
    import tensorrt as trt

    return trt


def _parser_errors(parser: Any) -> str:
    out = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node = err.node()
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = f"node {node}" + (f" {name}" if name else "") + (f" ({op})" if op else "")
        out.append(f"{where}: {err.desc()}")
    return "; ".join(out) or "no details from the parser"


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = {getattr(trt.LayerType, "QUANTIZE", None), getattr(trt.LayerType, "DEQUANTIZE", None)} - {None}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _calibrator(trt: Any, batches: list[np.ndarray], cache: Path | None) -> Any:
    """An IInt8EntropyCalibrator2 that feeds `batches` (float32 NCHW) from GPU memory."""
    import torch

    base = trt.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.device_batch: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            # Explicit-batch networks (all networks in TensorRT 10) take the batch from the
            # input's own shape; this value is ignored.
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            self.device_batch = torch.from_numpy(batches[self.index]).cuda().contiguous()
            self.index += 1
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                from prunekit.atomic import write_bytes

                write_bytes(cache, bytes(data))

    return EntropyCalibrator()


def build_serialized_engine(
    trt: Any,
    onnx_model: bytes | str | os.PathLike[str],
    options: EngineOptions,
    *,
    timing_cache: bytes = b"",
    calibration: Callable[[int], list[np.ndarray]] | None = None,
    calibration_cache: Path | None = None,
    label: str = "the model",
) -> BuiltEngine:
    """Build one engine from ONNX with the TensorRT Python API (`trt` is the tensorrt module).

    `calibration(batch)` returns INT8 calibration batches (only asked for a plain ONNX at int8);
    `timing_cache` seeds the builder's timing cache, and the result carries the updated one.
    """
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    if hasattr(trt, "init_libnvinfer_plugins"):  # TensorRT's own plugins (EfficientNMS_TRT) for the parser
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse(onnx_model) if isinstance(onnx_model, bytes) else parser.parse_from_file(str(onnx_model))
    if not parsed:
        raise PrunekitError(f"TensorRT cannot parse {label}: {_parser_errors(parser)}",
                            "re-export with another --opset, or check the TensorRT ONNX operator support matrix")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    notes: list[str] = []
    if options.precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            notes.append("this GPU has no fast FP16; TensorRT may choose FP32 kernels")
        config.set_flag(trt.BuilderFlag.FP16)

    inp = network.get_input(0)
    chw = tuple(int(d) for d in inp.shape)[1:]
    dynamic = any(int(d) < 0 for d in inp.shape)
    lo, opt, hi = options.shapes(chw)
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, lo, opt, hi)
        config.add_optimization_profile(profile)

    if options.precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            notes.append("this GPU has no fast INT8")
        config.set_flag(trt.BuilderFlag.INT8)
        if _has_qdq(trt, network):
            notes.append("explicit quantization: INT8 scales from the ONNX's Q/DQ nodes")
        else:
            if not hasattr(trt, "IInt8EntropyCalibrator2") or calibration is None:
                raise PrunekitError(
                    f"TensorRT {trt.__version__} cannot calibrate INT8 for a plain ONNX here",
                    "give an ONNX with Q/DQ nodes (explicit quantization, e.g. NVIDIA ModelOpt), or use --fp16",
                )
            calib_batch = opt[0]
            batches = calibration(calib_batch)
            config.int8_calibrator = _calibrator(trt, batches, calibration_cache)
            if dynamic:
                cprof = builder.create_optimization_profile()
                cprof.set_shape(inp.name, opt, opt, opt)
                config.set_calibration_profile(cprof)
            notes.append(f"implicit INT8 calibration (IInt8EntropyCalibrator2, {len(batches) * calib_batch} "
                         "images); deprecated since TensorRT 10.1")

    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)

    if options.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if cores == 0:
            raise PrunekitError("--dla-core was given but this device has no DLA cores", "leave --dla-core out")
        if options.dla_core >= cores:
            raise PrunekitError(f"--dla-core {options.dla_core} does not exist; this device has {cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PrunekitError(f"TensorRT failed to build an engine from {label} (see the TensorRT log above)",
                            "try a larger --workspace-mb or another precision")
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"
    cap = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    info = {
        "tensorrt": str(trt.__version__),
        "gpu": gpu,
        "compute_capability": ".".join(map(str, cap)) if cap else None,
        "precision": options.precision,
        "input": {"name": inp.name, "min": list(lo), "opt": list(opt), "max": list(hi), "dynamic": dynamic},
        "outputs": {o.name: [int(d) for d in o.shape] for o in outputs},
        "workspace_mb": options.workspace_mb,
        "dla_core": options.dla_core,
        "build_seconds": round(time.perf_counter() - started, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": notes,
        "portable": False,
    }
    return BuiltEngine(bytes(serialized), bytes(config.get_timing_cache().serialize()), info)


@register_runtime
class TensorRT(Runtime):
    """TensorRT 10 engines built from ONNX, timed with CUDA events."""

    name = "tensorrt"
    summary = "TensorRT 10 engines built from the ONNX files, CUDA-event timing (needs an NVIDIA GPU)"
    default_precision = "fp16"
    precisions = ("fp16", "fp32", "int8")
    install_hint = "install TensorRT 10 and its Python bindings (prunekit's tensorrt extra) on a machine with an NVIDIA GPU"

    def available(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "TensorRT is not installed"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is available on this machine"
        return None

    def version(self) -> str:
        import tensorrt as trt

        return f"tensorrt {trt.__version__}"

    def resolve_device(self, device: str = "auto") -> str:
        if device == "cpu":
            raise PrunekitError("the tensorrt runtime runs on a CUDA GPU, not the CPU", "drop --device")
        self.require()
        return device if device.startswith("cuda:") else "cuda:0"

    def describe(self, execution: Execution) -> str:
        prec = "FP32" if execution.precision == "fp32" else "FP16"
        return f"TensorRT {prec} engines built from the ONNX files, CUDA-event timing"

    def notes(self, execution: Execution) -> list[str]:
        if execution.precision == "int8":
            return ["int8 profile: timed with FP16 engines (INT8 timing needs calibrated engines)"]
        return []

    def alignment(self, execution: Execution) -> tuple[int, int, int]:
        return 8, 8, 8 if execution.precision == "fp16" else 4

    def timer(self, model: ModelRef, input_shape: tuple[int, ...], execution: Execution,
              clock: str = "auto") -> Timer:
        import torch

        from prunekit.runtimes.torch import cuda_event_timer

        trt = require_tensorrt()
        precision = "fp32" if execution.precision == "fp32" else "fp16"
        options = EngineOptions(precision=precision, batch=int(input_shape[0]), max_batch=max(int(input_shape[0]), 1))
        built = build_serialized_engine(trt, model.onnx_bytes(input_shape), options)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(built.serialized)
        context = engine.create_execution_context()
        buffers = []
        for i in range(engine.num_io_tensors):  # a dynamic batch axis is fixed to the timed input's
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and any(d < 0 for d in engine.get_tensor_shape(name)):
                context.set_input_shape(name, tuple(int(d) for d in input_shape))
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(1, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            buf = torch.rand(shape, device="cuda").to(dtype)
            context.set_tensor_address(name, buf.data_ptr())
            buffers.append(buf)
        stream = torch.cuda.Stream()
        timer = cuda_event_timer(lambda: context.execute_async_v3(stream.cuda_stream), stream)

        def close() -> None:
            buffers.clear()

        timer.close = close
        return timer

    def measure_cells(self, info: dict[str, Any], cells: Cells, execution: Execution, batch: int = 1,
                      on_chunk: Callable[[int], None] | None = None) -> dict[tuple[int, int], float]:
        """Median latency (ms) per grid point: one engine per point, built from the layer's ONNX."""
        from prunekit.latency.torch_layers import input_shape_for, layer_module

        out: dict[tuple[int, int], float] = {}
        for cin, cout in cells:
            ref = ModelRef(module=layer_module(info, cin, cout).eval())
            timer = self.timer(ref, input_shape_for(info, cin, batch), execution)
            timer.warm(10)
            out[(cin, cout)] = float(statistics.median(timer.timed(50)))
            if timer.close is not None:
                timer.close()
            if on_chunk is not None:
                on_chunk(1)
        return out
