"""TensorRT engines from a run's ONNX files, and the equivalent `trtexec` script.

`build_engine` uses the TensorRT 10 Python API (Builder -> network from OnnxParser -> builder
config -> serialized engine) and writes RUN/<name>.engine plus RUN/<name>.engine.json (TensorRT
version, GPU, precision, shapes: an engine only runs on the GPU model and TensorRT version that
built it). `write_build_script` writes RUN/build_engine.sh, the same build as `trtexec` commands,
so a user can build on the target device itself (a Jetson has trtexec but maybe not this Python).

INT8 with TensorRT 10: implicit calibration (an IInt8EntropyCalibrator2 fed with images) is
deprecated since TensorRT 10.1 in favour of explicit quantization (an ONNX with
QuantizeLinear/DequantizeLinear nodes, e.g. from NVIDIA ModelOpt). An ONNX with Q/DQ nodes is
built as is; a plain ONNX is calibrated on training images with IInt8EntropyCalibrator2 while
the TensorRT in use still has it, and is refused with a clear error otherwise.
"""

from __future__ import annotations

import json
import shlex
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.atomic import atomic_path, write_bytes, write_json
from prunekit.errors import MissingDependencyError, PrunekitError

SCRIPT_NAME = "build_engine.sh"
TIMING_CACHE = "timing.cache"
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_MAX_BATCH = 32
TRTEXEC_JETSON = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs trtexec (not on PATH)

INT8_HELP = (
    "INT8 with TensorRT 10: implicit calibration is deprecated since TensorRT 10.1; the recommended "
    "path is explicit quantization, an ONNX with Q/DQ nodes (e.g. from NVIDIA ModelOpt), which is "
    "built as is. For a plain ONNX, prunekit calibrates with IInt8EntropyCalibrator2 on training "
    "images while the installed TensorRT still provides it (and writes <name>.calib, which "
    "build_engine.sh passes to trtexec --calib); otherwise it stops with an error."
)


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
        """Options from a target profile (its precision and name), overridden by explicit flags."""
        precision = "fp16"
        if profile is not None and getattr(profile, "runtime", "") == "tensorrt":
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

    def shapes(self, input_chw: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes of the optimisation profile."""
        if not self.dynamic_batch:
            s = (self.batch, *input_chw)
            return s, s, s
        return (1, *input_chw), (self.batch, *input_chw), (self.max_batch, *input_chw)


# ----------------------------------------------------------------------------- trtexec script
def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def trtexec_args(onnx_name: str, engine_name: str, options: EngineOptions, input_chw: tuple[int, int, int],
                 input_name: str = "input") -> list[str]:
    """The trtexec arguments (after the program name) for one engine."""
    args = [f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if options.precision == "fp16":
        args.append("--fp16")
    elif options.precision == "int8":
        args += ["--int8", "--fp16"]
    args.append(f"--memPoolSize=workspace:{options.workspace_mb}M")
    if options.dynamic_batch:
        lo, opt, hi = options.shapes(input_chw)
        args += [f"--minShapes={input_name}:{_dims(lo)}", f"--optShapes={input_name}:{_dims(opt)}",
                 f"--maxShapes={input_name}:{_dims(hi)}"]
    args.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return args


def build_script(options: EngineOptions, input_chw: tuple[int, int, int], models: tuple[str, ...] = ("pruned", "dense"),
                 input_name: str = "input") -> str:
    """The text of build_engine.sh: one trtexec call per model, run from the run folder."""
    prec = options.precision
    lines = [
        "#!/usr/bin/env sh",
        "# Build TensorRT engines for this run ON THE TARGET DEVICE (engines are tied to the GPU model",
        "# and TensorRT version that build them). Written by `prunekit export`; "
        f"target: {options.target or 'none given'}, precision {prec}, "
        + (f"batch {options.batch} (dynamic 1..{options.max_batch})" if options.dynamic_batch else f"static batch {options.batch}")
        + ".",
        "# Set TRTEXEC to trtexec's path if it is not on PATH.",
        "set -eu",
        'cd "$(dirname "$0")"',
        f'if [ -z "${{TRTEXEC:-}}" ]; then if command -v trtexec >/dev/null 2>&1; then TRTEXEC=trtexec; '
        f"else TRTEXEC={TRTEXEC_JETSON}; fi; fi",
    ]
    if prec == "int8":
        lines += [
            "# INT8: an ONNX with Q/DQ nodes carries its own scales. A plain ONNX needs <name>.calib,",
            "# written by `prunekit export --format engine --int8` on a machine with TensorRT; without",
            "# it trtexec uses placeholder scales, which are valid for timing only, not for accuracy.",
        ]
    if options.jetson and options.dla_core is None:
        lines += [
            "# Jetson with DLA (AGX Orin, Xavier): add --useDLACore=0 --allowGPUFallback to run on a DLA core",
            "# (or re-export with --dla-core 0).",
        ]
    for name in models:
        args = trtexec_args(f"{name}.onnx", f"{name}.engine", options, input_chw, input_name)
        cmd = '"$TRTEXEC" ' + " ".join(shlex.quote(a) for a in args)
        if prec == "int8":
            lines.append(f'CALIB=""; if [ -f {name}.calib ]; then CALIB="--calib={name}.calib"; '
                         f'else echo "warning: no {name}.calib: INT8 scales are placeholders (timing only)" >&2; fi')
            cmd += " $CALIB"
        lines.append(cmd)
    return "\n".join(lines) + "\n"


def write_build_script(run_dir: str | Path, options: EngineOptions, input_chw: tuple[int, int, int],
                       models: tuple[str, ...] = ("pruned", "dense")) -> Path:
    """Atomically write RUN/build_engine.sh (executable)."""
    path = Path(run_dir) / SCRIPT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(build_script(options, input_chw, models), encoding="utf-8")
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IRUSR | stat.S_IRGRP | stat.S_IXGRP
                  | stat.S_IROTH | stat.S_IXOTH)
    return path


# ----------------------------------------------------------------------------- engine build
@dataclass
class EngineResult:
    """What build_engine wrote."""

    engines: dict[str, str]
    sidecars: dict[str, str]
    build_script: str
    timing_cache: str
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _calibrator(trt: Any, batches: list[np.ndarray], cache: Path) -> Any:
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
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            write_bytes(cache, bytes(data))

    return EntropyCalibrator()


def _calibration_batches(settings: dict[str, Any], batch: int, n_images: int) -> list[np.ndarray]:
    """Calibration images from the run's TRAINING split (validation stays an honest test)."""
    from prunekit.data import load_data

    data = load_data(str(settings["data"]), int(settings["input_size"]), int(settings["num_classes"]))
    out: list[np.ndarray] = []
    for x, _ in data.loader("train", batch_size=batch, shuffle=True, seed=0):
        if len(x) < batch:
            break
        out.append(x.numpy().astype(np.float32))
        if len(out) * batch >= n_images:
            break
    if not out:
        raise PrunekitError(f"no calibration images: the training split of {settings['data']} has fewer than {batch}")
    return out


def build_one(trt: Any, onnx_path: Path, engine_path: Path, options: EngineOptions, cache_path: Path,
              calib: tuple[dict[str, Any], int] | None = None) -> dict[str, Any]:
    """Build one serialized engine with the TensorRT Python API and write it with its JSON sidecar."""
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise PrunekitError(f"TensorRT cannot parse {onnx_path}: {_parser_errors(parser)}",
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
    lo, opt, hi = options.shapes(chw)  # type: ignore[arg-type]
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
            if not hasattr(trt, "IInt8EntropyCalibrator2") or calib is None:
                raise PrunekitError(
                    f"TensorRT {trt.__version__} cannot calibrate INT8 for a plain ONNX here",
                    "give an ONNX with Q/DQ nodes (explicit quantization, e.g. NVIDIA ModelOpt), or use --fp16",
                )
            settings, n_images = calib
            calib_batch = opt[0]
            batches = _calibration_batches(settings, calib_batch, n_images)
            config.int8_calibrator = _calibrator(trt, batches, engine_path.with_suffix(".calib"))
            if dynamic:
                cprof = builder.create_optimization_profile()
                cprof.set_shape(inp.name, opt, opt, opt)
                config.set_calibration_profile(cprof)
            notes.append(f"implicit INT8 calibration (IInt8EntropyCalibrator2, {len(batches) * calib_batch} "
                         "training images); deprecated since TensorRT 10.1")

    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)

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
        raise PrunekitError(f"TensorRT failed to build an engine from {onnx_path.name} (see the TensorRT log above)",
                            "try a larger --workspace-mb or another precision")
    write_bytes(engine_path, bytes(serialized))
    write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"
    cap = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    info = {
        "engine": engine_path.name,
        "onnx": onnx_path.name,
        "tensorrt": str(trt.__version__),
        "gpu": gpu,
        "compute_capability": ".".join(map(str, cap)) if cap else None,
        "precision": options.precision,
        "input": {"name": inp.name, "min": list(lo), "opt": list(opt), "max": list(hi), "dynamic": dynamic},
        "outputs": {o.name: [int(d) for d in o.shape] for o in outputs},
        "workspace_mb": options.workspace_mb,
        "dla_core": options.dla_core,
        "timing_cache": cache_path.name,
        "build_seconds": round(time.perf_counter() - started, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": notes,
        "portable": False,
    }
    write_json(engine_path.with_name(engine_path.name + ".json"), info)
    return info


def build_engine(
    run_path: str | Path,
    target: str | None = None,
    *,
    fp16: bool | None = None,
    int8: bool = False,
    workspace_mb: int | None = None,
    dla_core: int | None = None,
    timing_cache: str | None = None,
    max_batch: int | None = None,
    models: tuple[str, ...] = ("pruned", "dense"),
    calibration_images: int = 512,
    opset: int | None = None,
    dynamic_batch: bool | None = None,
) -> EngineResult:
    """Build RUN/<model>.engine (+ .engine.json) for each model with TensorRT, from RUN/<model>.onnx.

    Exports the ONNX files first when the run has none (or when `dynamic_batch` is given and the
    existing files have the other kind of batch axis; `opset` is used for that export). Always (re)writes build_engine.sh for the
    same options first, so that where TensorRT or a GPU is missing (MissingDependencyError) the
    user can still build on the device with trtexec.
    """
    from prunekit.deploy.onnx_export import _profile, export_onnx
    from prunekit.deploy.ort_model import input_hw, load_checked_onnx, static_batch
    from prunekit.latency.measure import require_tensorrt
    from prunekit.runs import RunFolder, load_run

    folder = RunFolder(Path(run_path))
    run = load_run(folder.path)  # validates the folder (exists, finished)
    export_kw: dict[str, Any] = {"target": target}
    if opset is not None:
        export_kw["opset"] = opset
    if not all(folder.file(f"{m}.onnx").exists() for m in models):
        export_onnx(folder.path, dynamic_batch=bool(dynamic_batch), **export_kw)
    protos = {m: load_checked_onnx(folder.file(f"{m}.onnx")) for m in models}
    if dynamic_batch is not None and any((static_batch(p) is None) != dynamic_batch for p in protos.values()):
        export_onnx(folder.path, dynamic_batch=dynamic_batch, **export_kw)
        protos = {m: load_checked_onnx(folder.file(f"{m}.onnx")) for m in models}
    first = protos[models[0]]
    batch = static_batch(first)
    hw = input_hw(first) or (int(run.settings["input_size"]),) * 2
    profile = _profile(target or run.settings.get("target"))
    opt_batch = batch or (profile.batch_size if profile is not None else 1)
    options = EngineOptions.for_target(
        profile, dynamic_batch=batch is None, batch=opt_batch, fp16=fp16, int8=int8, workspace_mb=workspace_mb,
        dla_core=dla_core, max_batch=max_batch, timing_cache=timing_cache,
    )
    script = write_build_script(folder.path, options, (3, *hw), models)
    try:
        trt = require_tensorrt()
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"{exc.message}; wrote {script} with the equivalent trtexec commands",
            "copy the run folder to the target device and run build_engine.sh there (engines are not portable)",
        ) from None
    cache_path = folder.file(options.timing_cache) if not Path(options.timing_cache).is_absolute() \
        else Path(options.timing_cache)
    engines, sidecars, info = {}, {}, {}
    for m in models:
        engine_path = folder.file(f"{m}.engine")
        info[m] = build_one(trt, folder.file(f"{m}.onnx"), engine_path, options, cache_path,
                            calib=(run.settings, calibration_images))
        engines[m] = str(engine_path)
        sidecars[m] = str(engine_path) + ".json"
    return EngineResult(engines, sidecars, str(script), str(cache_path), info)


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of an engine (what built it), or {} if absent."""
    p = Path(str(engine_path) + ".json")
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
